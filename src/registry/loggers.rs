//! Data loggers and their assignment history.
//!
//! An assignment says a logger served a unit in a role over `[from, to)`. A logger swapped out
//! for calibration keeps its past readings with the unit it served then; its replacement
//! continues the unit's record (docs/domain.md, "Data loggers"). Readings are never moved: which
//! unit a reading belongs to is derived from this history.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::readings::{self, Reading};
use super::{units, Error, Result};
use crate::accounts::{Caller, Scope};
use crate::domain::{LoggerRole, LoggerSerial};
use crate::store::{millis, now_millis, rfc3339, Db};

/// Body of `PUT /api/v1/units/{id}/logger`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignLogger {
    pub serial: String,
    #[serde(default)]
    pub make: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Seconds between readings (CDC: at most 1800; many programs use 300).
    #[serde(default)]
    pub reading_interval_s: Option<i64>,
    /// Date of the calibration certificate, YYYY-MM-DD.
    #[serde(default)]
    pub calibrated_on: Option<NaiveDate>,
    /// Expiry of the calibration certificate, YYYY-MM-DD.
    #[serde(default)]
    pub calibration_expires_on: Option<NaiveDate>,
    /// `primary` (default) or `backup`.
    #[serde(default)]
    pub role: Option<LoggerRole>,
    /// When the logger started serving the unit (RFC 3339); default now.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
}

/// One logger serving one unit over a time span.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Assignment {
    pub unit_id: i64,
    pub location: String,
    pub serial: String,
    pub role: LoggerRole,
    pub from: String,
    pub to: Option<String>,
    #[serde(skip)]
    pub from_ms: i64,
    #[serde(skip)]
    pub to_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Logger {
    pub serial: String,
    pub make: Option<String>,
    pub model: Option<String>,
    pub reading_interval_s: Option<i64>,
    pub calibrated_on: Option<String>,
    pub calibration_expires_on: Option<String>,
    pub battery_pct: Option<f64>,
    pub probe_connected: Option<bool>,
    pub firmware: Option<String>,
    pub gateway: Option<String>,
    pub spool_depth: Option<i64>,
    pub status_at: Option<String>,
    pub first_seen_at: String,
    /// Where it serves now; null when unassigned.
    pub assignment: Option<Assignment>,
    pub last_reading: Option<Reading>,
}

/// `GET /api/v1/loggers/{serial}`: the logger and the assignments the caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoggerDetail {
    #[serde(flatten)]
    pub logger: Logger,
    pub history: Vec<Assignment>,
}

const ASSIGNMENT_COLUMNS: &str = "a.unit_id, u.location_code, l.pin, a.serial, a.role, a.from_ts, a.to_ts";
const ASSIGNMENT_FROM: &str =
    "logger_assignments a JOIN units u ON u.id = a.unit_id JOIN locations l ON l.code = u.location_code";

fn assignment_from_row(r: &AnyRow) -> Result<Assignment> {
    let role: String = r.try_get("role")?;
    let from_ms: i64 = r.try_get("from_ts")?;
    let to_ms: Option<i64> = r.try_get("to_ts")?;
    Ok(Assignment {
        unit_id: r.try_get("unit_id")?,
        location: r.try_get("location_code")?,
        serial: r.try_get("serial")?,
        role: LoggerRole::parse(&role)?,
        from: rfc3339(from_ms),
        to: to_ms.map(rfc3339),
        from_ms,
        to_ms,
    })
}

/// Loggers serving a unit now.
pub async fn current_assignments(db: &Db, unit_id: i64) -> Result<Vec<Assignment>> {
    let rows = sqlx::query(&format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM {ASSIGNMENT_FROM} WHERE a.unit_id = $1 AND a.to_ts IS NULL ORDER BY a.role DESC, a.from_ts"
    ))
    .bind(unit_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(assignment_from_row).collect()
}

/// Every assignment a unit has had, oldest first.
pub async fn unit_history(db: &Db, unit_id: i64) -> Result<Vec<Assignment>> {
    let rows = sqlx::query(&format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM {ASSIGNMENT_FROM} WHERE a.unit_id = $1 ORDER BY a.from_ts, a.id"
    ))
    .bind(unit_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(assignment_from_row).collect()
}

async fn serial_history(db: &Db, serial: &str) -> Result<Vec<(Assignment, String)>> {
    let rows = sqlx::query(&format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM {ASSIGNMENT_FROM} WHERE a.serial = $1 ORDER BY a.from_ts, a.id"
    ))
    .bind(serial)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((assignment_from_row(r)?, r.try_get("pin")?)))
        .collect()
}

/// Puts a logger on a unit (registering the logger if new). The unit's current logger in the
/// same role, and the logger's current unit, end where this begins.
pub async fn assign(db: &Db, caller: &Caller, unit_id: i64, body: &AssignLogger) -> Result<Assignment> {
    let unit = units::get(db, &caller.scope, unit_id).await?;
    let serial = LoggerSerial::parse(&body.serial)?;
    let role = body.role.unwrap_or(LoggerRole::Primary);
    let now = now_millis();
    // Default: the start of this minute, so a reading stamped in whole seconds just now is the
    // unit's.
    let from = body.from.map(millis).unwrap_or(now - now.rem_euclid(60_000));
    if from > now + 60_000 {
        return Err(Error::Invalid("\"from\" may not be in the future".into()));
    }
    if let Some(i) = body.reading_interval_s {
        if !(1..=86_400).contains(&i) {
            return Err(Error::Invalid(
                "reading_interval_s must be 1 to 86400 seconds (CDC: at most 1800)".into(),
            ));
        }
    }
    if let (Some(on), Some(exp)) = (body.calibrated_on, body.calibration_expires_on) {
        if exp <= on {
            return Err(Error::Invalid(
                "calibration_expires_on must come after calibrated_on".into(),
            ));
        }
    }

    let history = serial_history(db, serial.as_str()).await?;
    // Where the logger serves now: moving it needs the right to see that unit too.
    if let Some((open, pin)) = history.iter().find(|(a, _)| a.to_ms.is_none()) {
        if !caller.scope.covers_code(pin, &open.location) {
            return Err(Error::Forbidden(format!(
                "logger {serial} serves a unit outside this token's scope; the state VFC coordinator can release it"
            )));
        }
        if open.unit_id == unit_id && open.role == role {
            update_details(db, &serial, body).await?;
            return Ok(open.clone());
        }
        if from < open.from_ms {
            return Err(Error::Conflict(format!(
                "logger {serial} has served unit {} since {}; \"from\" must not be earlier",
                open.unit_id, open.from
            )));
        }
    }
    if let Some((closed, pin)) = history.iter().rev().find(|(a, _)| a.to_ms.is_some_and(|t| t > from)) {
        // Name the unit only to whoever may see it.
        let unit = if caller.scope.covers_code(pin, &closed.location) {
            format!(" unit {}", closed.unit_id)
        } else {
            String::new()
        };
        return Err(Error::Conflict(format!(
            "logger {serial} served{unit} until {}; \"from\" must be at or after that",
            closed.to.as_deref().unwrap_or_default()
        )));
    }
    // A unit's record has one logger per role at a time, past spans included.
    if let Some(prev) = unit_history(db, unit_id)
        .await?
        .into_iter()
        .rev()
        .find(|a| a.role == role && a.to_ms.is_some_and(|t| t > from))
    {
        return Err(Error::Conflict(format!(
            "unit {unit_id} had {} logger {} until {}; \"from\" must be at or after that",
            role.as_str(),
            prev.serial,
            prev.to.as_deref().unwrap_or_default()
        )));
    }
    // Readings a serial took while no unit had it are the state coordinator's: a clinic may
    // not claim them by backdating "from".
    if !caller.is_state() && from < now - 15 * 60_000 {
        let claimed = sqlx::query("SELECT ts FROM readings WHERE serial = $1 AND ts >= $2 AND ts < $3 LIMIT 1")
            .bind(serial.as_str())
            .bind(from)
            .bind(now - 15 * 60_000)
            .fetch_optional(&db.pool)
            .await?;
        if claimed.is_some() {
            return Err(Error::Forbidden(format!(
                "logger {serial} has readings from before now that no unit of yours had; \
                 backdating \"from\" over them is for the state VFC coordinator"
            )));
        }
    }
    let replaced = current_assignments(db, unit_id)
        .await?
        .into_iter()
        .find(|a| a.role == role);
    if let Some(r) = &replaced {
        if from < r.from_ms {
            return Err(Error::Conflict(format!(
                "unit {unit_id}'s {} logger {} has served since {}; \"from\" must not be earlier",
                role.as_str(),
                r.serial,
                r.from
            )));
        }
    }

    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO loggers (serial, first_seen_at) VALUES ($1, $2) ON CONFLICT (serial) DO NOTHING")
        .bind(serial.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    // End the logger's current assignment (it moves) and the unit's current one in this role
    // (it is replaced); both end exactly where the new one begins.
    sqlx::query("UPDATE logger_assignments SET to_ts = $1 WHERE to_ts IS NULL AND (serial = $2 OR (unit_id = $3 AND role = $4))")
        .bind(from)
        .bind(serial.as_str())
        .bind(unit_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO logger_assignments (unit_id, serial, role, from_ts, to_ts, created_by, created_at) \
         VALUES ($1, $2, $3, $4, NULL, $5, $6)",
    )
    .bind(unit_id)
    .bind(serial.as_str())
    .bind(role.as_str())
    .bind(from)
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if crate::store::is_unique_violation(&e) {
            Error::Conflict(format!(
                "logger {serial} was assigned elsewhere at the same moment; try again"
            ))
        } else {
            e.into()
        }
    })?;
    // Readings it took before this assignment was made are now the unit's record: they are
    // judged like new ones (an excursion among them opens, late, and alarms by the rules).
    if from < now - 60_000 {
        crate::coldchain::evaluate::mark_dirty(&mut tx, &[(serial.to_string(), from)], rand::random::<i64>()).await?;
    }
    tx.commit().await?;
    update_details(db, &serial, body).await?;
    Ok(Assignment {
        unit_id,
        location: unit.location,
        serial: serial.to_string(),
        role,
        from: rfc3339(from),
        to: None,
        from_ms: from,
        to_ms: None,
    })
}

async fn update_details(db: &Db, serial: &LoggerSerial, b: &AssignLogger) -> Result<()> {
    sqlx::query(
        "UPDATE loggers SET make = COALESCE($1, make), model = COALESCE($2, model), \
         reading_interval_s = COALESCE($3, reading_interval_s), calibrated_on = COALESCE($4, calibrated_on), \
         calibration_expires_on = COALESCE($5, calibration_expires_on) WHERE serial = $6",
    )
    .bind(b.make.clone())
    .bind(b.model.clone())
    .bind(b.reading_interval_s)
    .bind(b.calibrated_on.map(|d| d.to_string()))
    .bind(b.calibration_expires_on.map(|d| d.to_string()))
    .bind(serial.as_str())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Takes a logger off a unit at `at` (default now).
pub async fn unassign(
    db: &Db,
    scope: &Scope,
    unit_id: i64,
    serial: &str,
    at: Option<DateTime<Utc>>,
) -> Result<Assignment> {
    units::get(db, scope, unit_id).await?;
    let mut current = current_assignments(db, unit_id)
        .await?
        .into_iter()
        .find(|a| a.serial == serial)
        .ok_or_else(|| Error::NotFound(format!("logger {serial} does not serve unit {unit_id} now")))?;
    let now = now_millis();
    let to = at.map(millis).unwrap_or(now);
    if to > now + 60_000 {
        return Err(Error::Invalid("\"at\" may not be in the future".into()));
    }
    if to < current.from_ms {
        return Err(Error::Conflict(format!(
            "logger {serial} began serving at {}; it cannot end before",
            current.from
        )));
    }
    sqlx::query("UPDATE logger_assignments SET to_ts = $1 WHERE unit_id = $2 AND serial = $3 AND to_ts IS NULL")
        .bind(to)
        .bind(unit_id)
        .bind(serial)
        .execute(&db.pool)
        .await?;
    current.to_ms = Some(to);
    current.to = Some(rfc3339(to));
    Ok(current)
}

const LOGGER_COLUMNS: &str = "serial, make, model, reading_interval_s, calibrated_on, calibration_expires_on, \
    battery_pct, probe_connected, firmware, gateway, spool_depth, status_at, first_seen_at";

fn logger_from_row(r: &AnyRow) -> Result<Logger> {
    Ok(Logger {
        serial: r.try_get("serial")?,
        make: r.try_get("make")?,
        model: r.try_get("model")?,
        reading_interval_s: r.try_get("reading_interval_s")?,
        calibrated_on: r.try_get("calibrated_on")?,
        calibration_expires_on: r.try_get("calibration_expires_on")?,
        battery_pct: r.try_get("battery_pct")?,
        probe_connected: r.try_get::<Option<i64>, _>("probe_connected")?.map(|p| p != 0),
        firmware: r.try_get("firmware")?,
        gateway: r.try_get("gateway")?,
        spool_depth: r.try_get("spool_depth")?,
        status_at: r.try_get::<Option<i64>, _>("status_at")?.map(rfc3339),
        first_seen_at: rfc3339(r.try_get("first_seen_at")?),
        assignment: None,
        last_reading: None,
    })
}

/// Which loggers to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    Assigned,
    Unassigned,
}

/// Loggers the caller may see. Unassigned loggers (readings from serials no unit has) belong
/// to the state coordinator: a clinic sees only loggers serving its units.
pub async fn list(db: &Db, caller: &Caller, filter: Filter) -> Result<Vec<Logger>> {
    if !caller.is_state() && filter == Filter::Unassigned {
        return Err(Error::Forbidden(
            "the list of unassigned loggers is the state VFC coordinator's".into(),
        ));
    }
    let rows = sqlx::query(&format!("SELECT {LOGGER_COLUMNS} FROM loggers ORDER BY serial"))
        .fetch_all(&db.pool)
        .await?;
    let open = sqlx::query(&format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM {ASSIGNMENT_FROM} WHERE a.to_ts IS NULL"
    ))
    .fetch_all(&db.pool)
    .await?;
    let mut current = std::collections::HashMap::new();
    for r in &open {
        let pin: String = r.try_get("pin")?;
        let a = assignment_from_row(r)?;
        if caller.scope.covers_code(&pin, &a.location) {
            current.insert(a.serial.clone(), a);
        } else {
            current.insert(a.serial.clone(), Assignment { unit_id: -1, ..a });
        }
    }
    let mut out = Vec::new();
    for r in &rows {
        let mut logger = logger_from_row(r)?;
        let assignment = current.get(&logger.serial).cloned();
        let keep = match (&assignment, filter) {
            (Some(a), _) if a.unit_id < 0 => false, // serves a unit outside the caller's scope
            (Some(_), Filter::Unassigned) | (None, Filter::Assigned) => false,
            (None, _) => caller.is_state(),
            (Some(_), _) => true,
        };
        if keep {
            // A clinic sees readings only from since the logger has served it.
            let since = match (&assignment, caller.is_state()) {
                (_, true) => i64::MIN,
                (Some(a), false) => a.from_ms,
                (None, false) => i64::MAX,
            };
            logger.last_reading = readings::latest(db, &logger.serial, since).await?;
            logger.assignment = assignment;
            out.push(logger);
        }
    }
    Ok(out)
}

/// One logger and the assignments the caller may see. A clinic sees a logger that serves or
/// served one of its units; anything else is `NotFound`.
pub async fn detail(db: &Db, caller: &Caller, serial: &str) -> Result<LoggerDetail> {
    let not_found = || Error::NotFound(format!("no logger {serial}"));
    let row = sqlx::query(&format!("SELECT {LOGGER_COLUMNS} FROM loggers WHERE serial = $1"))
        .bind(serial)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(not_found)?;
    let history: Vec<Assignment> = serial_history(db, serial)
        .await?
        .into_iter()
        .filter(|(a, pin)| caller.scope.covers_code(pin, &a.location))
        .map(|(a, _)| a)
        .collect();
    if !caller.is_state() && history.is_empty() {
        return Err(not_found());
    }
    let mut logger = logger_from_row(&row)?;
    logger.assignment = history.iter().find(|a| a.to_ms.is_none()).cloned();
    // A clinic sees the latest reading only from a time the logger served it.
    let since = if caller.is_state() {
        i64::MIN
    } else {
        history.iter().map(|a| a.from_ms).min().unwrap_or(i64::MAX)
    };
    logger.last_reading = readings::latest(db, serial, since).await?;
    Ok(LoggerDetail { logger, history })
}

/// The spans in which the caller may read a logger's readings: everything for the state, the
/// logger's assignments within scope for a clinic.
pub async fn visible_windows(db: &Db, caller: &Caller, serial: &str) -> Result<Vec<readings::Window>> {
    let detail = detail(db, caller, serial).await?;
    if caller.is_state() {
        return Ok(vec![readings::Window {
            serial: serial.to_string(),
            from: i64::MIN,
            to: None,
            role: None,
        }]);
    }
    Ok(detail
        .history
        .iter()
        .map(|a| readings::Window {
            serial: a.serial.clone(),
            from: a.from_ms,
            to: a.to_ms,
            role: Some(a.role),
        })
        .collect())
}
