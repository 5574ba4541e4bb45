//! The record of logger conditions: opening and closing episodes, what their emails say, and
//! who acknowledged them. One row of `device_alerts` per episode.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::Kind;
use crate::accounts::audit::{Entry, Who};
use crate::accounts::Scope;
use crate::alerts::links::Subject;
use crate::alerts::{outbox, About, Email, Links, Recipient};
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

/// A condition found on a logger serving a unit.
pub(super) struct Condition<'a> {
    pub serial: &'a str,
    pub unit_id: i64,
    pub kind: Kind,
    pub detail: &'a str,
}

/// Opens an episode unless one is open; emails the primary coordinator in the same transaction.
pub(super) async fn open(db: &Db, links: &Links, c: &Condition<'_>, to: &Recipient, now: i64) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    // One open episode per logger and kind, or, for a unit without a logger, per unit and kind:
    // the conflict targets name the partial unique indexes exactly.
    let target = if c.serial.is_empty() {
        "(unit_id, kind) WHERE ended_at IS NULL AND serial = ''"
    } else {
        "(serial, kind) WHERE ended_at IS NULL AND serial <> ''"
    };
    let inserted = sqlx::query(&format!(
        "INSERT INTO device_alerts (serial, unit_id, kind, detail, started_at, last_notified_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT {target} DO NOTHING RETURNING id"
    ))
    .bind(c.serial)
    .bind(c.unit_id)
    .bind(c.kind.as_str())
    .bind(c.detail)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        tx.rollback().await?;
        return Ok(false);
    };
    notify(&mut tx, links, row.try_get("id")?, "", std::slice::from_ref(to)).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn close(db: &Db, serial: &str, kind: Kind, now: i64) -> Result<()> {
    sqlx::query("UPDATE device_alerts SET ended_at = $1 WHERE serial = $2 AND kind = $3 AND ended_at IS NULL")
        .bind(now)
        .bind(serial)
        .bind(kind.as_str())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Queues one email per recipient about a logger condition, each with its own acknowledgement
/// link; `opening` says why they get it (empty for the first alert).
pub async fn notify(
    tx: &mut AnyConnection,
    links: &Links,
    id: i64,
    opening: &str,
    recipients: &[Recipient],
) -> Result<()> {
    let d = facts(tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no logger condition {id}")))?;
    let what = d.kind.as_str().replace('_', " ");
    let (logger, which) = match d.serial.as_str() {
        "" => ("no logger".to_string(), "No data logger watches".to_string()),
        serial => (serial.to_string(), format!("The data logger {serial} in")),
    };
    let subject = format!(
        "VFC logger alert: {} {}: {what} ({logger})",
        d.location_code, d.unit_name
    );
    for to in recipients {
        let body = format!(
            "{name},\n\n{opening}{which} the {unit} at {code}: {detail}.\n\n\
             Until it is fixed the unit's temperature is not being recorded reliably: check the unit's \
             thermometer and record its temperature by hand, and keep the backup logger in place.\n\n\
             Acknowledge that you are handling it (this link is yours; it stops the escalation):\n{url}\n\n— vfc-monitor\n",
            name = to.name,
            unit = d.unit_name,
            code = d.location_code,
            detail = d.detail,
            url = links.ack_url(Subject::Device(id), &to.email),
        );
        let email = Email {
            about: About::Device(id),
            purpose: d.kind.as_str(),
            to,
            subject: &subject,
            body: &body,
        };
        outbox::enqueue(tx, &email).await?;
    }
    Ok(())
}

/// What an email or a page says about a logger condition.
#[derive(Debug, Clone)]
pub struct Facts {
    pub id: i64,
    pub serial: String,
    pub kind: Kind,
    pub detail: String,
    pub started_at: i64,
    pub unit_name: String,
    pub location_code: String,
    pub location_name: String,
    pub pin: String,
    pub acknowledged: Option<(String, i64)>,
}

/// The facts of one, on a connection of its own.
pub async fn find(db: &Db, id: i64) -> Result<Option<Facts>> {
    let mut conn = db.pool.acquire().await?;
    facts(&mut conn, id).await
}

pub async fn facts(conn: &mut AnyConnection, id: i64) -> Result<Option<Facts>> {
    let Some(r) = sqlx::query(
        "SELECT d.serial, d.kind, d.detail, d.started_at, d.acknowledged_by, d.acknowledged_at, p.unit_name, \
         p.location_code, p.location_name, p.pin FROM device_alerts d JOIN unit_places p ON p.unit_id = d.unit_id \
         WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let kind: String = r.try_get("kind")?;
    Ok(Some(Facts {
        id,
        serial: r.try_get("serial")?,
        kind: Kind::parse(&kind).ok_or_else(|| Error::unreadable("device_alerts", id, format!("kind {kind:?}")))?,
        detail: r.try_get("detail")?,
        started_at: r.try_get("started_at")?,
        unit_name: r.try_get("unit_name")?,
        location_code: r.try_get("location_code")?,
        location_name: r.try_get("location_name")?,
        pin: r.try_get("pin")?,
        acknowledged: match (
            r.try_get::<Option<String>, _>("acknowledged_by")?,
            r.try_get::<Option<i64>, _>("acknowledged_at")?,
        ) {
            (Some(by), Some(at)) => Some((by, at)),
            _ => None,
        },
    }))
}

/// A logger condition the scope covers; `NotFound` otherwise.
pub async fn visible(db: &Db, scope: &Scope, id: i64) -> Result<Facts> {
    let mut conn = db.pool.acquire().await?;
    match facts(&mut conn, id).await? {
        Some(f) if scope.covers_code(&f.pin, &f.location_code) => Ok(f),
        _ => Err(Error::NotFound(format!("no device alert {id}"))),
    }
}

/// Acknowledges a logger condition once (the first acknowledgement stands).
pub async fn acknowledge(db: &Db, id: i64, by: &str, who: &Who) -> Result<()> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE device_alerts SET acknowledged_at = $1, acknowledged_by = $2 WHERE id = $3 AND acknowledged_at IS NULL",
    )
    .bind(now_millis())
    .bind(by)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        let unit_id: i64 = sqlx::query("SELECT unit_id FROM device_alerts WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("unit_id")?;
        let entry = Entry::new("device_alert.acknowledge", "device_alert", [id]).changed(
            "acknowledged_by",
            serde_json::Value::Null,
            by,
        );
        crate::registry::units::audited(&mut tx, who, entry, unit_id).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAlert {
    pub id: i64,
    /// The logger; null when no logger watches the unit (a unit that stores vaccine without one).
    pub serial: Option<String>,
    pub unit_id: i64,
    pub location: String,
    pub kind: Kind,
    pub detail: String,
    pub started_at: String,
    /// Null while the condition lasts.
    pub ended_at: Option<String>,
    pub acknowledged_by: Option<String>,
}

/// Most conditions one list returns.
pub const MAX_LIST: i64 = 10_000;

/// The conditions of loggers in scope, newest first; `open_only` keeps those lasting now.
pub async fn list(db: &Db, scope: &Scope, open_only: bool) -> Result<Vec<DeviceAlert>> {
    let (scope_cond, scope_param) = scope.sql_filter("p.pin", "p.location_code", 1);
    let open = if open_only { " AND d.ended_at IS NULL" } else { "" };
    let rows = sqlx::query(&format!(
        "SELECT d.id, d.serial, d.unit_id, p.location_code, d.kind, d.detail, d.started_at, d.ended_at, d.acknowledged_by \
         FROM device_alerts d JOIN unit_places p ON p.unit_id = d.unit_id WHERE {scope_cond}{open} \
         ORDER BY d.started_at DESC, d.id DESC LIMIT {MAX_LIST}"
    ))
    .bind(scope_param.unwrap_or_default())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get("id")?;
            let kind: String = r.try_get("kind")?;
            Ok(DeviceAlert {
                id,
                serial: Some(r.try_get::<String, _>("serial")?).filter(|s| !s.is_empty()),
                unit_id: r.try_get("unit_id")?,
                location: r.try_get("location_code")?,
                kind: Kind::parse(&kind)
                    .ok_or_else(|| Error::unreadable("device_alerts", id, format!("kind {kind:?}")))?,
                detail: r.try_get("detail")?,
                started_at: rfc3339(r.try_get("started_at")?),
                ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
                acknowledged_by: r.try_get("acknowledged_by")?,
            })
        })
        .collect()
}

/// A lasting, unacknowledged condition as escalation weighs it.
#[derive(Debug, Clone)]
pub struct Unacknowledged {
    pub id: i64,
    pub started_at: i64,
    pub level: i64,
    pub last_notified_at: Option<i64>,
    pub primary: Recipient,
    pub backup: Recipient,
}

/// Lasting, unacknowledged conditions (an expiring certificate is a notice, not escalated)
/// whose last email was at or before `quiet_since`, taken so two instances never escalate
/// the same one.
pub async fn unacknowledged(tx: &mut AnyConnection, quiet_since: i64) -> Result<Vec<Unacknowledged>> {
    let lock = crate::store::Dialect::of(tx).skip_locked(Some("d"));
    let rows = sqlx::query(&format!(
        "SELECT d.id, d.started_at, d.escalation_level, d.last_notified_at, p.primary_name, p.primary_email, \
         p.backup_name, p.backup_email FROM device_alerts d JOIN unit_places p ON p.unit_id = d.unit_id \
         WHERE d.ended_at IS NULL AND d.acknowledged_at IS NULL AND d.kind <> 'calibration_expiring' \
         AND (d.last_notified_at IS NULL OR d.last_notified_at <= $1) ORDER BY d.id LIMIT 100{lock}"
    ))
    .bind(quiet_since)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Unacknowledged {
                id: r.try_get("id")?,
                started_at: r.try_get("started_at")?,
                level: r.try_get("escalation_level")?,
                last_notified_at: r.try_get("last_notified_at")?,
                primary: Recipient::new(
                    r.try_get::<String, _>("primary_name")?,
                    r.try_get::<String, _>("primary_email")?,
                ),
                backup: Recipient::new(
                    r.try_get::<String, _>("backup_name")?,
                    r.try_get::<String, _>("backup_email")?,
                ),
            })
        })
        .collect()
}

/// Records an escalation step of a logger condition.
pub async fn escalated(tx: &mut AnyConnection, id: i64, level: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE device_alerts SET escalation_level = $1, last_notified_at = $2 WHERE id = $3")
        .bind(level)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Units whose own "no data" episode (no logger watches them) is open.
pub(super) async fn unwatched_now(db: &Db) -> Result<Vec<i64>> {
    let rows = sqlx::query("SELECT unit_id FROM device_alerts WHERE serial = '' AND ended_at IS NULL")
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("unit_id")?)).collect()
}

/// Closes a unit's own "no data" episode: a logger watches it again, or it stores nothing.
pub(super) async fn close_unwatched(db: &Db, unit_id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE device_alerts SET ended_at = $1 WHERE serial = '' AND unit_id = $2 AND ended_at IS NULL")
        .bind(now)
        .bind(unit_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}
