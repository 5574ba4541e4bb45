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

mod change;

pub use change::{assign, unassign, PrimaryChange, Watcher};

use super::{Error, Result};
use crate::domain::LoggerRole;
use crate::readings;
use crate::store::{rfc3339, Db};

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

/// Units with no primary logger now, each with since when: the end of its last primary's
/// service, or its creation when it never had one.
pub async fn without_primary(db: &Db) -> Result<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT u.id, COALESCE((SELECT MAX(a.to_ts) FROM logger_assignments a WHERE a.unit_id = u.id AND a.role = 'primary'), \
         u.created_at) AS since FROM units u WHERE NOT EXISTS (SELECT 1 FROM logger_assignments a WHERE a.unit_id = u.id \
         AND a.role = 'primary' AND a.to_ts IS NULL) ORDER BY u.id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("since")?)))
        .collect()
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

/// One stretch of a serial's service: `[from, to)` at a unit of `pin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedAt {
    pub from: i64,
    pub to: Option<i64>,
    pub pin: String,
}

/// Every stretch of service of each of `serials`, in one query: the ingest asks, per reading,
/// which PIN its logger served at that time.
pub async fn pins_of(
    conn: &mut AnyConnection,
    serials: &[&str],
) -> std::result::Result<std::collections::HashMap<String, Vec<ServedAt>>, sqlx::Error> {
    let mut out: std::collections::HashMap<String, Vec<ServedAt>> = Default::default();
    for chunk in serials.chunks(500) {
        let sql = format!(
            "SELECT a.serial, a.from_ts, a.to_ts, l.pin FROM logger_assignments a JOIN units u ON u.id = a.unit_id \
             JOIN locations l ON l.code = u.location_code WHERE a.serial IN ({})",
            crate::store::placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for s in chunk {
            q = q.bind(*s);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.entry(r.try_get("serial")?).or_default().push(ServedAt {
                from: r.try_get("from_ts")?,
                to: r.try_get("to_ts")?,
                pin: r.try_get("pin")?,
            });
        }
    }
    Ok(out)
}
