//! Data loggers: what each is (make, model, interval, calibration) and what it last said about
//! itself (battery, probe, gateway). This module owns `loggers`; which unit a logger serves is
//! [`super::assignments`].

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::assignments::{
    assignment_from_row, serial_history, AssignLogger, Assignment, ASSIGNMENT_COLUMNS, ASSIGNMENT_FROM,
};
use super::{Error, Result};
use crate::accounts::Caller;
use crate::domain::LoggerSerial;
use crate::readings::{self, Reading};
use crate::store::{rfc3339, Db};

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

pub(super) async fn update_details(db: &Db, serial: &LoggerSerial, b: &AssignLogger) -> Result<()> {
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

/// What is known of a logger when it is first named (by an import, or an assignment).
pub struct Registration<'a> {
    pub serial: &'a LoggerSerial,
    pub make: Option<&'a str>,
    pub model: Option<&'a str>,
    pub reading_interval_s: Option<i64>,
}

/// Registers a logger unless it is known already (what is known of it stays).
pub async fn register(tx: &mut Transaction<'static, Any>, l: &Registration<'_>, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO loggers (serial, make, model, reading_interval_s, first_seen_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (serial) DO NOTHING",
    )
    .bind(l.serial.as_str())
    .bind(l.make)
    .bind(l.model)
    .bind(l.reading_interval_s)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Registers serials seen on the broker for the first time (readings of a serial no unit has
/// are kept, and the state coordinator sees the logger among the unassigned ones).
pub async fn seen(
    tx: &mut Transaction<'static, Any>,
    serials: &[String],
    at: i64,
) -> std::result::Result<(), sqlx::Error> {
    for serial in serials {
        sqlx::query("INSERT INTO loggers (serial, first_seen_at) VALUES ($1, $2) ON CONFLICT (serial) DO NOTHING")
            .bind(serial)
            .bind(at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// What a logger (or its gateway) said about itself; absent fields keep what was known.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub battery_pct: Option<f64>,
    pub probe_connected: Option<bool>,
    pub firmware: Option<String>,
    pub gateway: Option<String>,
    pub spool_depth: Option<i64>,
}

/// Records a logger's status as of `at`.
pub async fn record_status(
    tx: &mut Transaction<'static, Any>,
    serial: &str,
    s: &Status,
    at: i64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE loggers SET battery_pct = COALESCE($1, battery_pct), \
         probe_connected = COALESCE($2, probe_connected), firmware = COALESCE($3, firmware), \
         gateway = COALESCE($4, gateway), spool_depth = COALESCE($5, spool_depth), status_at = $6 \
         WHERE serial = $7",
    )
    .bind(s.battery_pct)
    .bind(s.probe_connected.map(i64::from))
    .bind(s.firmware.clone())
    .bind(s.gateway.clone())
    .bind(s.spool_depth)
    .bind(at)
    .bind(serial)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
    if caller.is_state() {
        logger.last_reading = readings::latest(db, serial, i64::MIN).await?;
        return Ok(LoggerDetail { logger, history });
    }
    // A clinic sees only what the logger said while it served the clinic's units: a logger that
    // moved to another PIN reports its readings, battery and gateway to its new owner alone.
    let mut last: Option<Reading> = None;
    for a in &history {
        if let Some(r) = readings::latest_between(db, serial, a.from_ms, a.to_ms).await? {
            if last.as_ref().is_none_or(|l| r.ts > l.ts) {
                last = Some(r);
            }
        }
    }
    logger.last_reading = last;
    let status_at = row.try_get::<Option<i64>, _>("status_at")?;
    let ours = status_at.is_some_and(|t| {
        history
            .iter()
            .any(|a| a.from_ms <= t && a.to_ms.is_none_or(|to| t < to))
    });
    if !ours {
        logger.battery_pct = None;
        logger.probe_connected = None;
        logger.firmware = None;
        logger.gateway = None;
        logger.spool_depth = None;
        logger.status_at = None;
    }
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
