//! The logger's own conditions: no data (power or network loss), battery low, probe
//! disconnected, calibration certificate expiring within 30 days or expired (docs/domain.md, "Data
//! loggers": an expired certificate makes the logger non-compliant; a logger that goes quiet is
//! itself an alarm). Each episode is one row and one email to the location's primary
//! coordinator when it opens — not one per reading; it closes when the condition clears.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use sqlx::{Any, Transaction};

use crate::alerts::outbox::Links;
use crate::store::{now_millis, rfc3339, Db};

const MIN: i64 = 60_000;
/// Battery below this is low; it clears a little above, so a flickering reading does not
/// open and close episodes.
const BATTERY_LOW_PCT: f64 = 20.0;
const BATTERY_OK_PCT: f64 = 25.0;
const CALIBRATION_WARNING_DAYS: i64 = 30;

pub async fn run(db: Db, links: Links, outbox: Arc<Notify>, cancel: CancellationToken) {
    loop {
        match check(&db, &links).await {
            Ok(0) => {}
            Ok(_) => outbox.notify_one(),
            Err(e) => tracing::error!(error = ?e, "logger condition check failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Opens and closes condition episodes for every logger serving a unit; returns how many opened.
pub async fn check(db: &Db, links: &Links) -> anyhow::Result<usize> {
    let now = now_millis();
    let today = chrono::Utc::now().date_naive();
    let loggers = sqlx::query(
        "SELECT a.serial, a.unit_id, a.role, a.from_ts, a.created_at, g.reading_interval_s, g.battery_pct, g.probe_connected, \
         g.calibration_expires_on, l.primary_name, l.primary_email \
         FROM logger_assignments a JOIN loggers g ON g.serial = a.serial JOIN units u ON u.id = a.unit_id \
         JOIN locations l ON l.code = u.location_code WHERE a.to_ts IS NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut opened = 0;
    for r in loggers {
        let serial: String = r.try_get("serial")?;
        let unit_id: i64 = r.try_get("unit_id")?;
        let interval = r.try_get::<Option<i64>, _>("reading_interval_s")?.unwrap_or(300) * 1000;
        // A logger registered with a past "from" has been watched only since it was registered.
        let from_ts: i64 = r.try_get::<i64, _>("from_ts")?.max(r.try_get("created_at")?);
        let last = sqlx::query("SELECT MAX(ts) AS t FROM readings WHERE serial = $1")
            .bind(&serial)
            .fetch_one(&db.pool)
            .await?
            .try_get::<Option<i64>, _>("t")?;
        // docs/domain.md: no data for max(2 × the logging interval, 60 min).
        let quiet_after = (2 * interval).max(60 * MIN);
        let since = last.unwrap_or(from_ts);
        let no_data = now - since > quiet_after;
        let battery: Option<f64> = r.try_get("battery_pct")?;
        let probe: Option<i64> = r.try_get("probe_connected")?;
        let expires = r
            .try_get::<Option<String>, _>("calibration_expires_on")?
            .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
        let days_left = expires.map(|d| (d - today).num_days());
        let conditions: [(&str, Option<bool>, String); 5] = [
            (
                "no_data",
                Some(no_data),
                format!(
                    "no reading since {}: check the logger's power and network",
                    rfc3339(since)
                ),
            ),
            (
                "battery_low",
                // Between the two thresholds nothing changes: an open episode stays open.
                battery.and_then(|b| {
                    if b < BATTERY_LOW_PCT {
                        Some(true)
                    } else if b >= BATTERY_OK_PCT {
                        Some(false)
                    } else {
                        None
                    }
                }),
                format!("battery at {:.0} %: replace or charge it", battery.unwrap_or_default()),
            ),
            (
                "probe_disconnected",
                probe.map(|p| p == 0),
                "the probe is disconnected: readings are not the vaccine's temperature".into(),
            ),
            (
                "calibration_expired",
                days_left.map(|d| d < 0),
                format!(
                    "calibration certificate expired on {}: the logger is not compliant",
                    expires.map(|d| d.to_string()).unwrap_or_default()
                ),
            ),
            (
                "calibration_expiring",
                days_left.map(|d| (0..=CALIBRATION_WARNING_DAYS).contains(&d)),
                format!(
                    "calibration certificate expires on {}: arrange recalibration or a replacement",
                    expires.map(|d| d.to_string()).unwrap_or_default()
                ),
            ),
        ];
        for (kind, holds, detail) in conditions {
            match holds {
                Some(true) => {
                    let to: (String, String) = (r.try_get("primary_name")?, r.try_get("primary_email")?);
                    if open(db, links, (&serial, unit_id), kind, &detail, now, &to).await? {
                        opened += 1;
                    }
                }
                Some(false) => close(db, &serial, kind, now).await?,
                None => {}
            }
        }
    }
    Ok(opened)
}

#[allow(clippy::too_many_arguments)]
async fn open(
    db: &Db,
    links: &Links,
    (serial, unit_id): (&str, i64),
    kind: &str,
    detail: &str,
    now: i64,
    to: &(String, String),
) -> anyhow::Result<bool> {
    let mut tx = db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO device_alerts (serial, unit_id, kind, detail, started_at, last_notified_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (serial, kind) WHERE ended_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(serial)
    .bind(unit_id)
    .bind(kind)
    .bind(detail)
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

/// Queues one email per recipient about a logger condition, each with its own
/// acknowledgement link; `opening` says why they get it (empty for the first alert).
pub async fn notify(
    tx: &mut Transaction<'static, Any>,
    links: &Links,
    id: i64,
    opening: &str,
    recipients: &[(String, String)],
) -> anyhow::Result<()> {
    let r = sqlx::query(
        "SELECT d.serial, d.kind, d.detail, u.name AS unit_name, l.code FROM device_alerts d \
         JOIN units u ON u.id = d.unit_id JOIN locations l ON l.code = u.location_code WHERE d.id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let (serial, kind, detail): (String, String, String) =
        (r.try_get("serial")?, r.try_get("kind")?, r.try_get("detail")?);
    let (code, unit_name): (String, String) = (r.try_get("code")?, r.try_get("unit_name")?);
    let what = kind.replace('_', " ");
    let subject = format!("VFC logger alert: {code} {unit_name}: {what} ({serial})");
    let now = now_millis();
    for to in recipients {
        let token = crate::alerts::ack::subject_token(&links.key, crate::alerts::ack::Subject::Device(id), &to.1, now);
        let body = format!(
            "{name},\n\n{opening}The data logger {serial} in the {unit_name} at {code}: {detail}.\n\n\
             Until it is fixed the unit's temperature is not being recorded reliably: check the unit's \
             thermometer and record its temperature by hand, and keep the backup logger in place.\n\n\
             Acknowledge that you are handling it (this link is yours; it stops the escalation):\n{url}ack/{token}\n\n— vfc-monitor\n",
            name = to.0,
            url = links.public_url,
        );
        sqlx::query(
            "INSERT INTO outbox (excursion_id, device_alert_id, purpose, recipient_name, recipient_email, subject, body, status, \
             attempts, next_attempt_at, created_at) VALUES (NULL, $1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
        )
        .bind(id)
        .bind(&kind)
        .bind(&to.0)
        .bind(&to.1)
        .bind(&subject)
        .bind(body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn close(db: &Db, serial: &str, kind: &str, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE device_alerts SET ended_at = $1 WHERE serial = $2 AND kind = $3 AND ended_at IS NULL")
        .bind(now)
        .bind(serial)
        .bind(kind)
        .execute(&db.pool)
        .await?;
    Ok(())
}
