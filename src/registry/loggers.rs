//! Data loggers: what each is (make, model, interval, calibration) and what it last said about
//! itself (battery, probe, gateway). This module owns `loggers`; which unit a logger serves is
//! [`super::assignments`].

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::assignments::{assignment_from_row, serial_history, AssignLogger, Assignment};
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

/// Registers serials seen on the broker for the first time, each with the gateway it came
/// through, if any (readings of a serial no unit has are kept; the state coordinator sees the
/// logger among the unassigned ones, and so does the location of the gateway that first
/// brought it).
pub async fn seen(
    tx: &mut Transaction<'static, Any>,
    serials: &[(String, Option<String>)],
    at: i64,
) -> std::result::Result<(), sqlx::Error> {
    for (serial, via) in serials {
        sqlx::query(
            "INSERT INTO loggers (serial, first_seen_at, seen_via) VALUES ($1, $2, $3) \
             ON CONFLICT (serial) DO UPDATE SET seen_via = COALESCE(loggers.seen_via, excluded.seen_via)",
        )
        .bind(serial)
        .bind(at)
        .bind(via.clone())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Which of `serials` the registry knows.
pub async fn known(
    conn: &mut sqlx::AnyConnection,
    serials: &[&str],
) -> std::result::Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut out = std::collections::HashSet::new();
    for chunk in serials.chunks(500) {
        let sql = format!(
            "SELECT serial FROM loggers WHERE serial IN ({})",
            crate::store::placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for s in chunk {
            q = q.bind(*s);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(r.try_get("serial")?);
        }
    }
    Ok(out)
}

/// How many loggers first seen through `gateway` no unit has now (a gateway may bring only so
/// many strangers: random serials must not grow the registry without end).
pub async fn unassigned_seen_via(
    conn: &mut sqlx::AnyConnection,
    gateway: &str,
) -> std::result::Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM loggers g WHERE g.seen_via = $1 AND NOT EXISTS \
         (SELECT 1 FROM logger_assignments a WHERE a.serial = g.serial AND a.to_ts IS NULL)",
    )
    .bind(gateway)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")
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

/// A logger serving one of a location's units now, with its calibration.
#[derive(Debug, Clone)]
pub struct Serving {
    pub serial: String,
    pub unit_id: i64,
    pub unit_name: String,
    pub role: String,
    /// YYYY-MM-DD; none on record.
    pub calibration_expires_on: Option<String>,
    /// What it last said of its battery, and when (epoch ms).
    pub battery_pct: Option<f64>,
    pub status_at: Option<i64>,
    pub reading_interval_s: Option<i64>,
}

/// The loggers serving the units of a location now; the location was read in the caller's
/// scope ([`super::locations::get`]).
pub async fn serving_at(db: &Db, location: &super::locations::Location) -> Result<Vec<Serving>> {
    let mut conn = db.pool.acquire().await?;
    serving_location(&mut conn, &location.code).await
}

/// The loggers serving location `code`'s units now (open assignments).
pub async fn serving_location(conn: &mut sqlx::AnyConnection, code: &str) -> Result<Vec<Serving>> {
    sqlx::query(
        "SELECT a.serial, a.unit_id, a.role, u.name, g.calibration_expires_on, g.battery_pct, g.status_at, g.reading_interval_s \
         FROM logger_assignments a \
         JOIN units u ON u.id = a.unit_id JOIN loggers g ON g.serial = a.serial \
         WHERE u.location_code = $1 AND a.to_ts IS NULL ORDER BY a.unit_id, a.role, a.serial",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Serving {
            serial: r.try_get("serial")?,
            unit_id: r.try_get("unit_id")?,
            unit_name: r.try_get("name")?,
            role: r.try_get("role")?,
            calibration_expires_on: r.try_get("calibration_expires_on")?,
            battery_pct: r.try_get("battery_pct")?,
            status_at: r.try_get("status_at")?,
            reading_interval_s: r.try_get("reading_interval_s")?,
        })
    })
    .collect::<sqlx::Result<_>>()
    .map_err(Into::into)
}

/// Loggers the caller may see, by serial, a page at a time (at most `limit`, after the serial
/// `after`): one query for the loggers and where they serve, one for their latest readings.
/// Unassigned loggers (readings from serials no unit has) are the state coordinator's, and a
/// clinic's when they were first seen through one of its gateways; otherwise a clinic sees
/// only loggers serving its units.
pub async fn list(
    db: &Db,
    caller: &Caller,
    filter: Filter,
    after: Option<&str>,
    limit: i64,
) -> Result<(Vec<Logger>, Option<String>)> {
    let (scope_cond, scope_param) = caller.scope.sql_filter("l.pin", "u.location_code", 2);
    // A clinic sees the unassigned loggers first seen through its own gateways.
    let (via_cond, _) = caller.scope.sql_filter("vl.pin", "vg.location_code", 2);
    let seen_by_own = format!(
        "a.unit_id IS NULL AND g.seen_via IN (SELECT vg.id FROM gateways vg JOIN locations vl ON vl.code = vg.location_code \
         WHERE {via_cond})"
    );
    let cond = match (filter, caller.is_state()) {
        (Filter::Unassigned, true) => format!("a.unit_id IS NULL AND {scope_cond}"),
        (Filter::Unassigned, false) => seen_by_own,
        (Filter::All, true) => scope_cond,
        (Filter::All, false) => format!("((a.unit_id IS NOT NULL AND {scope_cond}) OR ({seen_by_own}))"),
        (Filter::Assigned, _) => format!("a.unit_id IS NOT NULL AND {scope_cond}"),
    };
    let sql = format!(
        "SELECT g.serial, g.make, g.model, g.reading_interval_s, g.calibrated_on, g.calibration_expires_on, \
         g.battery_pct, g.probe_connected, g.firmware, g.gateway, g.spool_depth, g.status_at, g.first_seen_at, \
         a.unit_id, u.location_code, l.pin, a.role, a.from_ts, a.to_ts \
         FROM loggers g LEFT JOIN logger_assignments a ON a.serial = g.serial AND a.to_ts IS NULL \
         LEFT JOIN units u ON u.id = a.unit_id LEFT JOIN locations l ON l.code = u.location_code \
         WHERE g.serial > $1 AND {cond} ORDER BY g.serial LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after.unwrap_or(""))
        .bind(scope_param.unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(&db.pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut logger = logger_from_row(r)?;
        if r.try_get::<Option<i64>, _>("unit_id")?.is_some() {
            logger.assignment = Some(assignment_from_row(r)?);
        }
        out.push(logger);
    }
    let (mut out, next) = crate::store::cut(limit, out, |l| l.serial.clone());
    let serials: Vec<String> = out.iter().map(|l| l.serial.clone()).collect();
    let latest = readings::latest_of(db, &serials).await?;
    for logger in &mut out {
        // A clinic sees readings only from since the logger has served it.
        let since = match (&logger.assignment, caller.is_state()) {
            (_, true) => i64::MIN,
            (Some(a), false) => a.from_ms,
            (None, false) => i64::MAX,
        };
        logger.last_reading = latest
            .get(&logger.serial)
            .filter(|(ts, _)| *ts >= since)
            .map(|(ts, t)| Reading {
                ts: rfc3339(*ts),
                temp_c: *t,
                serial: logger.serial.clone(),
                role: None,
            });
    }
    Ok((out, next))
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
    // What the logger is now set to (interval, calibration) is its current owner's business.
    if logger.assignment.is_none() {
        logger.reading_interval_s = None;
        logger.calibrated_on = None;
        logger.calibration_expires_on = None;
    }
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
