//! The logger's own conditions: no data (power or network loss), battery low, probe
//! disconnected, calibration certificate expiring within 30 days or expired (docs/domain.md,
//! "Data loggers": an expired certificate makes the logger non-compliant; a logger that goes
//! quiet is itself an alarm). Each episode is one row of `device_alerts` (owned here) and one
//! email to the location's primary coordinator when it opens — not one per reading; it closes
//! when the condition clears, and escalates like an excursion until someone acknowledges it.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::accounts::Scope;
use crate::alerts::links::Subject;
use crate::alerts::{outbox, About, Email, Links, Recipient};
use crate::error::{Error, Result};
use crate::registry::assignments::{self, Serving};
use crate::store::{now_millis, rfc3339, Db};

const MIN: i64 = 60_000;
/// Battery below this is low; it clears a little above, so a flickering reading does not
/// open and close episodes.
const BATTERY_LOW_PCT: f64 = 20.0;
const BATTERY_OK_PCT: f64 = 25.0;
const CALIBRATION_WARNING_DAYS: i64 = 30;

/// A logger's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NoData,
    BatteryLow,
    ProbeDisconnected,
    CalibrationExpired,
    CalibrationExpiring,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::NoData,
        Kind::BatteryLow,
        Kind::ProbeDisconnected,
        Kind::CalibrationExpired,
        Kind::CalibrationExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoData => "no_data",
            Kind::BatteryLow => "battery_low",
            Kind::ProbeDisconnected => "probe_disconnected",
            Kind::CalibrationExpired => "calibration_expired",
            Kind::CalibrationExpiring => "calibration_expiring",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// Runs the checks every few seconds until cancelled; a pass that fails is an error the
/// supervisor restarts the task on.
pub async fn run(db: Db, links: Links, outbox: Arc<Notify>, cancel: CancellationToken) -> anyhow::Result<()> {
    loop {
        if check(&db, &links, now_millis()).await? > 0 {
            outbox.notify_one();
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Whether each condition holds for a logger now: `Some(true)` opens (or keeps) an episode,
/// `Some(false)` closes it, `None` leaves it as it is.
fn conditions(s: &Serving, last: Option<i64>, now: i64, today: NaiveDate) -> Vec<(Kind, Option<bool>, String)> {
    let interval = s.reading_interval_s.unwrap_or(300) * 1000;
    // A logger registered with a past "from" has been watched only since it was registered.
    let watched_since = s.from_ms.max(s.created_at);
    // docs/domain.md: no data for max(2 × the logging interval, 60 min).
    let quiet_after = (2 * interval).max(60 * MIN);
    let since = last.unwrap_or(watched_since);
    // A certificate date that cannot be read is no proof of calibration: it is its own
    // "calibration expired" condition, naming the stored value, and the other conditions are
    // checked as usual.
    let (expired, expiring) = match &s.calibration_expires_on {
        None => ((None, String::new()), (None, String::new())),
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(expires) => {
                let days_left = (expires - today).num_days();
                (
                    (
                        Some(days_left < 0),
                        format!("calibration certificate expired on {expires}: the logger is not compliant"),
                    ),
                    (
                        Some((0..=CALIBRATION_WARNING_DAYS).contains(&days_left)),
                        format!("calibration certificate expires on {expires}: arrange recalibration or a replacement"),
                    ),
                )
            }
            Err(_) => (unreadable_calibration(s, d), (Some(false), String::new())),
        },
    };
    vec![
        (
            Kind::NoData,
            Some(now - since > quiet_after),
            format!(
                "no reading since {}: check the logger's power and network",
                rfc3339(since)
            ),
        ),
        (
            Kind::BatteryLow,
            // Between the two thresholds nothing changes: an open episode stays open.
            s.battery_pct.and_then(|b| {
                if b < BATTERY_LOW_PCT {
                    Some(true)
                } else if b >= BATTERY_OK_PCT {
                    Some(false)
                } else {
                    None
                }
            }),
            format!(
                "battery at {:.0} %: replace or charge it",
                s.battery_pct.unwrap_or_default()
            ),
        ),
        (
            Kind::ProbeDisconnected,
            s.probe_connected.map(|p| !p),
            "the probe is disconnected: readings are not the vaccine's temperature".into(),
        ),
        (Kind::CalibrationExpired, expired.0, expired.1),
        (Kind::CalibrationExpiring, expiring.0, expiring.1),
    ]
}

/// A logger whose stored calibration expiry cannot be read: its calibration counts as expired,
/// the detail naming the value.
fn unreadable_calibration(s: &Serving, stored: &str) -> (Option<bool>, String) {
    let why = Error::unreadable(
        "loggers",
        &s.serial,
        format!("calibration_expires_on {stored:?} is not YYYY-MM-DD"),
    );
    metrics::counter!("vfc_device_check_failures_total").increment(1);
    tracing::error!(error = %why, "treating the logger's calibration as expired");
    (
        Some(true),
        format!("{why}: no valid calibration certificate is on record; record its expiry date again when you assign the logger"),
    )
}

/// Opens and closes condition episodes for every logger serving a unit; returns how many
/// opened. One logger whose record cannot be read is logged and counted, and the rest are
/// checked as usual.
pub async fn check(db: &Db, links: &Links, now: i64) -> anyhow::Result<usize> {
    let today = crate::store::from_millis(now).date_naive();
    let mut opened = 0;
    for s in assignments::serving_now(db).await? {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                metrics::counter!("vfc_device_check_failures_total").increment(1);
                tracing::error!(error = %e, "cannot check this logger's conditions; the others go on");
                continue;
            }
        };
        match check_one(db, links, &s, now, today).await {
            Ok(n) => opened += n,
            Err(e) if db.dialect().is_transient_error(&e) => return Err(e),
            Err(e) => {
                metrics::counter!("vfc_device_check_failures_total").increment(1);
                tracing::error!(serial = %s.serial, error = ?e, "cannot check this logger's conditions; the others go on");
            }
        }
    }
    Ok(opened)
}

/// Opens and closes one logger's condition episodes; how many opened.
async fn check_one(db: &Db, links: &Links, s: &Serving, now: i64, today: NaiveDate) -> anyhow::Result<usize> {
    let last = crate::readings::last_taken_at(db, &s.serial).await?;
    let mut opened = 0;
    for (kind, holds, detail) in conditions(s, last, now, today) {
        match holds {
            Some(true) => {
                let new = Condition {
                    serial: &s.serial,
                    unit_id: s.unit_id,
                    kind,
                    detail: &detail,
                };
                let to = Recipient::new(s.primary_name.clone(), s.primary_email.clone());
                if open(db, links, &new, &to, now).await? {
                    opened += 1;
                }
            }
            Some(false) => close(db, &s.serial, kind, now).await?,
            None => {}
        }
    }
    Ok(opened)
}

/// A condition found on a logger serving a unit.
struct Condition<'a> {
    serial: &'a str,
    unit_id: i64,
    kind: Kind,
    detail: &'a str,
}

/// Opens an episode unless one is open; emails the primary coordinator in the same transaction.
async fn open(db: &Db, links: &Links, c: &Condition<'_>, to: &Recipient, now: i64) -> anyhow::Result<bool> {
    let mut tx = db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO device_alerts (serial, unit_id, kind, detail, started_at, last_notified_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (serial, kind) WHERE ended_at IS NULL DO NOTHING RETURNING id",
    )
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

async fn close(db: &Db, serial: &str, kind: Kind, now: i64) -> Result<()> {
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
    let subject = format!(
        "VFC logger alert: {} {}: {what} ({})",
        d.location_code, d.unit_name, d.serial
    );
    for to in recipients {
        let body = format!(
            "{name},\n\n{opening}The data logger {serial} in the {unit} at {code}: {detail}.\n\n\
             Until it is fixed the unit's temperature is not being recorded reliably: check the unit's \
             thermometer and record its temperature by hand, and keep the backup logger in place.\n\n\
             Acknowledge that you are handling it (this link is yours; it stops the escalation):\n{url}\n\n— vfc-monitor\n",
            name = to.name,
            serial = d.serial,
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
pub async fn acknowledge(db: &Db, id: i64, by: &str) -> Result<()> {
    sqlx::query(
        "UPDATE device_alerts SET acknowledged_at = $1, acknowledged_by = $2 WHERE id = $3 AND acknowledged_at IS NULL",
    )
    .bind(now_millis())
    .bind(by)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAlert {
    pub id: i64,
    pub serial: String,
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
                serial: r.try_get("serial")?,
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
