//! Which logger served which unit when. This module owns `logger_assignments`.
//!
//! An assignment says a logger served a unit in a role over `[from, to)`. A logger swapped out
//! for calibration keeps its past readings with the unit it served then; its replacement
//! continues the unit's record (docs/domain.md, "Data loggers"). Readings are never moved: which
//! unit a reading belongs to is derived from this history.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use utoipa::ToSchema;

use super::{loggers, units, Error, Result};
use crate::accounts::{Caller, Scope};
use crate::domain::{LoggerRole, LoggerSerial};
use crate::readings;
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

pub(super) const ASSIGNMENT_COLUMNS: &str = "a.unit_id, u.location_code, l.pin, a.serial, a.role, a.from_ts, a.to_ts";
pub(super) const ASSIGNMENT_FROM: &str =
    "logger_assignments a JOIN units u ON u.id = a.unit_id JOIN locations l ON l.code = u.location_code";

pub(super) fn assignment_from_row(r: &AnyRow) -> Result<Assignment> {
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

/// A unit's windows on the readings: every assignment it has had.
pub async fn unit_windows(db: &Db, unit_id: i64) -> Result<Vec<readings::Window>> {
    Ok(unit_history(db, unit_id)
        .await?
        .into_iter()
        .map(|a| readings::Window {
            serial: a.serial,
            from: a.from_ms,
            to: a.to_ms,
            role: Some(a.role),
        })
        .collect())
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

pub(super) async fn serial_history(db: &Db, serial: &str) -> Result<Vec<(Assignment, String)>> {
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
            loggers::update_details(db, &serial, body).await?;
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
    if !caller.is_state()
        && from < now - 15 * 60_000
        && readings::any_between(db, serial.as_str(), from, now - 15 * 60_000).await?
    {
        return Err(Error::Forbidden(format!(
            "logger {serial} has readings from before now that no unit of yours had; \
             backdating \"from\" over them is for the state VFC coordinator"
        )));
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
    let named = loggers::Registration {
        serial: &serial,
        make: None,
        model: None,
        reading_interval_s: None,
    };
    loggers::register(&mut tx, &named, now).await?;
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
        readings::dirty::mark(&mut tx, &[(serial.to_string(), from)]).await?;
    }
    tx.commit().await?;
    loggers::update_details(db, &serial, body).await?;
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

/// A span of time, `[from, to)`, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
}

/// Whether `serial` served `unit_id` (in any role) over the whole span.
pub async fn serves_over(tx: &mut Transaction<'static, Any>, unit_id: i64, serial: &str, span: Span) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT id FROM logger_assignments WHERE unit_id = $1 AND serial = $2 AND from_ts <= $3 AND (to_ts IS NULL OR to_ts >= $4)",
    )
    .bind(unit_id)
    .bind(serial)
    .bind(span.from)
    .bind(span.to)
    .fetch_optional(&mut **tx)
    .await?
    .is_some())
}

/// A unit `serial` served during any part of the span, if any.
pub async fn unit_served_over(tx: &mut Transaction<'static, Any>, serial: &str, span: Span) -> Result<Option<i64>> {
    Ok(sqlx::query(
        "SELECT unit_id FROM logger_assignments WHERE serial = $1 AND from_ts < $2 AND (to_ts IS NULL OR to_ts > $3)",
    )
    .bind(serial)
    .bind(span.to)
    .bind(span.from)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.try_get("unit_id"))
    .transpose()?)
}

/// Whether some logger served `unit_id` in `role` during any part of the span.
pub async fn role_taken_over(
    tx: &mut Transaction<'static, Any>,
    unit_id: i64,
    role: LoggerRole,
    span: Span,
) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT id FROM logger_assignments WHERE unit_id = $1 AND role = $2 AND from_ts < $3 AND (to_ts IS NULL OR to_ts > $4)",
    )
    .bind(unit_id)
    .bind(role.as_str())
    .bind(span.to)
    .bind(span.from)
    .fetch_optional(&mut **tx)
    .await?
    .is_some())
}

/// Records that `serial` served `unit_id` in `role` over a span in the past (an imported file's).
pub async fn record_past(
    tx: &mut Transaction<'static, Any>,
    unit_id: i64,
    serial: &str,
    role: LoggerRole,
    span: Span,
    actor: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO logger_assignments (unit_id, serial, role, from_ts, to_ts, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(unit_id)
    .bind(serial)
    .bind(role.as_str())
    .bind(span.from)
    .bind(span.to)
    .bind(actor)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The units `serial` has served as primary logger at or after `since`: its new readings from
/// then on are theirs to judge.
pub async fn primary_units(db: &Db, serial: &str, since: i64) -> Result<Vec<i64>> {
    let rows = sqlx::query(
        "SELECT DISTINCT unit_id FROM logger_assignments WHERE serial = $1 AND role = 'primary' \
         AND (to_ts IS NULL OR to_ts > $2)",
    )
    .bind(serial)
    .bind(since)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("unit_id")?)).collect()
}

/// A span in which a logger served a unit as its primary.
#[derive(Debug, Clone)]
pub struct PrimaryWindow {
    pub serial: String,
    pub from: i64,
    pub to: Option<i64>,
    pub reading_interval_s: Option<i64>,
}

/// The unit's primary loggers still serving at or after `start`, oldest first.
pub async fn primary_windows(conn: &mut AnyConnection, unit_id: i64, start: i64) -> Result<Vec<PrimaryWindow>> {
    let rows = sqlx::query(
        "SELECT a.serial, a.from_ts, a.to_ts, l.reading_interval_s FROM logger_assignments a \
         JOIN loggers l ON l.serial = a.serial \
         WHERE a.unit_id = $1 AND a.role = 'primary' AND (a.to_ts IS NULL OR a.to_ts > $2) ORDER BY a.from_ts",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PrimaryWindow {
                serial: r.try_get("serial")?,
                from: r.try_get("from_ts")?,
                to: r.try_get("to_ts")?,
                reading_interval_s: r.try_get("reading_interval_s")?,
            })
        })
        .collect()
}

/// A logger serving a unit now, with what its condition checks need.
#[derive(Debug, Clone)]
pub struct Serving {
    pub serial: String,
    pub unit_id: i64,
    pub role: LoggerRole,
    pub from_ms: i64,
    /// When the assignment was recorded (a backdated "from" is watched only since then).
    pub created_at: i64,
    pub reading_interval_s: Option<i64>,
    pub battery_pct: Option<f64>,
    pub probe_connected: Option<bool>,
    /// YYYY-MM-DD as stored.
    pub calibration_expires_on: Option<String>,
    pub primary_name: String,
    pub primary_email: String,
}

/// Every logger serving a unit now; a row that cannot be read is an error of its own, so one
/// logger never keeps the others from being checked.
pub async fn serving_now(db: &Db) -> Result<Vec<Result<Serving>>> {
    let rows = sqlx::query(
        "SELECT a.serial, a.unit_id, a.role, a.from_ts, a.created_at, g.reading_interval_s, g.battery_pct, g.probe_connected, \
         g.calibration_expires_on, l.primary_name, l.primary_email \
         FROM logger_assignments a JOIN loggers g ON g.serial = a.serial JOIN units u ON u.id = a.unit_id \
         JOIN locations l ON l.code = u.location_code WHERE a.to_ts IS NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            let serial: String = r.try_get("serial")?;
            Ok(Serving {
                role: LoggerRole::parse(&role)
                    .map_err(|e| Error::unreadable("logger_assignments", format!("of {serial}"), e.0))?,
                serial,
                unit_id: r.try_get("unit_id")?,
                from_ms: r.try_get("from_ts")?,
                created_at: r.try_get("created_at")?,
                reading_interval_s: r.try_get("reading_interval_s")?,
                battery_pct: r.try_get("battery_pct")?,
                probe_connected: r.try_get::<Option<i64>, _>("probe_connected")?.map(|p| p != 0),
                calibration_expires_on: r.try_get("calibration_expires_on")?,
                primary_name: r.try_get("primary_name")?,
                primary_email: r.try_get("primary_email")?,
            })
        })
        .collect())
}
