//! The outbox: emails written in the same transaction as the change that needs them, and
//! delivered later by the [`sender`](super::sender). This module owns the `outbox` table.
//!
//! It knows nothing of what an email says: whoever needs one composes it (the cold chain its
//! alerts, `crate::coldchain::notices`) and hands it here with what it is about, so the record
//! of an excursion or a logger condition can show every email it caused.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::store::{now_millis, rfc3339, Db};

/// Someone to write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

impl Recipient {
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Recipient {
            name: name.into(),
            email: email.into(),
        }
    }
}

/// What an email is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    Excursion(i64),
    /// A logger condition (`device_alerts`).
    Device(i64),
    /// A storage unit as a whole: its monitoring stopped or resumed.
    Unit(i64),
    /// A vaccine order: its approval, denial, return, shipment or receipt.
    Order(i64),
    /// A person's account (an invitation, a password reset, a notice about the account);
    /// recorded in the audit trail, not on the email.
    Account,
}

/// A composed email, ready to queue.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    pub about: About,
    /// Why it is sent (alert, escalation, reminder, back_in_range, no_data, …), shown with it.
    pub purpose: &'a str,
    pub to: &'a Recipient,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Queues an email in the caller's transaction: it is sent if and only if that commits.
pub async fn enqueue(tx: &mut AnyConnection, email: &Email<'_>) -> Result<(), sqlx::Error> {
    enqueue_with(tx, email, None).await
}

/// Queues an email with a chart (a PNG image, shown in the message beside its text).
pub async fn enqueue_with(
    tx: &mut AnyConnection,
    email: &Email<'_>,
    chart_png: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    let (excursion_id, device_alert_id, unit_id, order_id) = match email.about {
        About::Excursion(id) => (Some(id), None, None, None),
        About::Device(id) => (None, Some(id), None, None),
        About::Unit(id) => (None, None, Some(id), None),
        About::Order(id) => (None, None, None, Some(id)),
        About::Account => (None, None, None, None),
    };
    let now = now_millis();
    sqlx::query(
        "INSERT INTO outbox (excursion_id, device_alert_id, unit_id, order_id, purpose, recipient_name, recipient_email, subject, body, \
         status, attempts, next_attempt_at, created_at, chart_png) VALUES ($1, $2, $3, $10, $4, $5, $6, $7, $8, 'pending', 0, $9, $9, $11)",
    )
    .bind(excursion_id)
    .bind(device_alert_id)
    .bind(unit_id)
    .bind(email.purpose)
    .bind(&email.to.name)
    .bind(&email.to.email)
    .bind(email.subject)
    .bind(email.body)
    .bind(now)
    .bind(order_id)
    .bind(chart_png.map(hex::encode))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An email due to be sent, as the sender takes it.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub recipient_name: String,
    pub recipient_email: String,
    pub subject: String,
    pub body: String,
    /// Tries so far.
    pub attempts: i64,
    /// A chart to show beside the text (PNG).
    pub chart_png: Option<Vec<u8>>,
}

/// Takes up to 20 emails due at `now`, each reserved for `lease_ms` (after a crash mid-send it
/// is due again). PostgreSQL takes them `FOR UPDATE SKIP LOCKED`, so two instances take
/// different rows.
pub async fn take_due(db: &Db, now: i64, lease_ms: i64) -> Result<Vec<Due>, sqlx::Error> {
    let skip_locked = db.dialect().skip_locked(None);
    let rows = sqlx::query(&format!(
        "UPDATE outbox SET next_attempt_at = $2 WHERE id IN (SELECT id FROM outbox \
         WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT 20{skip_locked}) \
         RETURNING id, recipient_name, recipient_email, subject, body, attempts, chart_png"
    ))
    .bind(now)
    .bind(now + lease_ms)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                id: r.try_get("id")?,
                recipient_name: r.try_get("recipient_name")?,
                recipient_email: r.try_get("recipient_email")?,
                subject: r.try_get("subject")?,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
                // A chart that cannot be read costs the email its picture, never the email.
                chart_png: r
                    .try_get::<Option<String>, _>("chart_png")?
                    .and_then(|h| hex::decode(h).ok()),
            })
        })
        .collect()
}

/// What became of a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Not now (server down, folder not writable): tried again with backoff.
    Retry(String),
    /// Refused for good (5xx, malformed address): recorded, not tried again.
    Permanent(String),
}

/// Records a try: sent, failed for good, or due again after a backoff of 5 s, 10 s, 20 s … at
/// most 5 minutes.
pub async fn record(
    tx: &mut AnyConnection,
    id: i64,
    delivery: Delivery,
    attempts: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (status, error, next) = match delivery {
        Delivery::Sent => ("sent", None, now),
        Delivery::Permanent(e) => ("failed", Some(e), now),
        Delivery::Retry(e) => ("pending", Some(e), now + (5_000i64 << attempts.min(6)).min(300_000)),
    };
    sqlx::query(
        "UPDATE outbox SET status = $1, attempts = $2, last_error = $3, next_attempt_at = $4, \
         sent_at = CASE WHEN $1 = 'sent' THEN $5 ELSE sent_at END WHERE id = $6",
    )
    .bind(status)
    .bind(attempts)
    .bind(error)
    .bind(next)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An email as the record of what it is about shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmailRecord {
    pub purpose: String,
    pub to: String,
    /// pending | sent | failed (refused for good; the error says why)
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
}

/// Every email about an excursion or a logger condition, oldest first.
pub async fn about(db: &Db, about: About) -> Result<Vec<EmailRecord>, sqlx::Error> {
    let (column, id) = match about {
        About::Excursion(id) => ("excursion_id", id),
        About::Device(id) => ("device_alert_id", id),
        About::Unit(id) => ("unit_id", id),
        About::Order(id) => ("order_id", id),
        About::Account => return Ok(Vec::new()),
    };
    let rows = sqlx::query(&format!(
        "SELECT purpose, recipient_email, status, attempts, last_error, sent_at FROM outbox WHERE {column} = $1 ORDER BY id"
    ))
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EmailRecord {
                purpose: r.try_get("purpose")?,
                to: r.try_get("recipient_email")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(rfc3339),
            })
        })
        .collect()
}
