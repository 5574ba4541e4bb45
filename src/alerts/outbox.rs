//! Composing alert emails into the outbox (inside the caller's transaction).
//!
//! What an alert says comes from docs/domain.md, "After an excursion": which location and unit,
//! the temperature now, since when, min/max so far, and what to do now — label the vaccine
//! "Do Not Use", keep it at proper temperature, do not discard it, contact the manufacturer(s)
//! and the program.

use chrono::TimeZone;
use sqlx::{Any, Row, Transaction};

use crate::coldchain::rules::Rule;
use crate::store::{now_millis, rfc3339};

struct Facts {
    location_code: String,
    location_name: String,
    timezone: chrono_tz::Tz,
    unit_name: String,
    started_at: i64,
    ended_at: Option<i64>,
    min_c: f64,
    max_c: f64,
    range: (f64, f64),
    detected_late: bool,
    now_temp: Option<(i64, f64)>,
}

async fn facts(tx: &mut Transaction<'static, Any>, excursion_id: i64) -> anyhow::Result<Facts> {
    let r = sqlx::query(
        "SELECT e.serial, e.started_at, e.ended_at, e.min_c, e.max_c, e.range_min_c, e.range_max_c, e.detected_late, \
         u.name AS unit_name, l.code, l.name AS location_name, l.timezone \
         FROM excursions e JOIN units u ON u.id = e.unit_id JOIN locations l ON l.code = u.location_code WHERE e.id = $1",
    )
    .bind(excursion_id)
    .fetch_one(&mut **tx)
    .await?;
    let serial: String = r.try_get("serial")?;
    let latest = sqlx::query("SELECT ts, temp_c FROM readings WHERE serial = $1 ORDER BY ts DESC LIMIT 1")
        .bind(&serial)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(Facts {
        location_code: r.try_get("code")?,
        location_name: r.try_get("location_name")?,
        timezone: r.try_get::<String, _>("timezone")?.parse().unwrap_or(chrono_tz::UTC),
        unit_name: r.try_get("unit_name")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        min_c: r.try_get("min_c")?,
        max_c: r.try_get("max_c")?,
        range: (r.try_get("range_min_c")?, r.try_get("range_max_c")?),
        detected_late: r.try_get::<i64, _>("detected_late")? == 1,
        now_temp: latest
            .map(|l| Ok::<_, sqlx::Error>((l.try_get("ts")?, l.try_get("temp_c")?)))
            .transpose()?,
    })
}

fn local(tz: chrono_tz::Tz, ms: i64) -> String {
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M %Z").to_string(),
        None => rfc3339(ms),
    }
}

fn temp(c: f64) -> String {
    format!("{c:.1} °C ({:.1} °F)", c * 9.0 / 5.0 + 32.0)
}

/// What links in emails need: the public address and the key that signs acknowledgements.
#[derive(Clone)]
pub struct Links {
    pub public_url: url::Url,
    pub key: Vec<u8>,
}

impl Links {
    /// The recipient's own link to acknowledge the excursion.
    pub fn ack_url(&self, excursion_id: i64, email: &str) -> String {
        format!(
            "{}ack/{}",
            self.public_url,
            super::ack::token(&self.key, excursion_id, email, now_millis())
        )
    }
}

/// Who is told about an excursion, and why.
pub enum Purpose<'a> {
    /// The first alert, to the primary coordinator.
    Alert(&'a Rule),
    /// Nobody acknowledged: the next people up.
    Escalation {
        minutes_unacknowledged: i64,
    },
    /// Still nobody acknowledged.
    Reminder {
        minutes_unacknowledged: i64,
    },
    BackInRange,
}

impl Purpose<'_> {
    fn key(&self) -> &'static str {
        match self {
            Purpose::Alert(_) => "alert",
            Purpose::Escalation { .. } => "escalation",
            Purpose::Reminder { .. } => "reminder",
            Purpose::BackInRange => "back_in_range",
        }
    }
}

/// The location's primary and backup coordinators of an excursion's unit.
pub async fn coordinators(
    tx: &mut Transaction<'static, Any>,
    excursion_id: i64,
) -> anyhow::Result<[(String, String); 2]> {
    let r = sqlx::query(
        "SELECT l.primary_name, l.primary_email, l.backup_name, l.backup_email FROM excursions e \
         JOIN units u ON u.id = e.unit_id JOIN locations l ON l.code = u.location_code WHERE e.id = $1",
    )
    .bind(excursion_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok([
        (r.try_get("primary_name")?, r.try_get("primary_email")?),
        (r.try_get("backup_name")?, r.try_get("backup_email")?),
    ])
}

/// Queues one email per recipient about an excursion, each with its own acknowledgement link.
pub async fn notify(
    tx: &mut Transaction<'static, Any>,
    links: &Links,
    excursion_id: i64,
    purpose: Purpose<'_>,
    recipients: &[(String, String)],
) -> anyhow::Result<()> {
    let f = facts(tx, excursion_id).await?;
    let now_line = f
        .now_temp
        .map(|(ts, t)| format!("{} at {}", temp(t), local(f.timezone, ts)))
        .unwrap_or_else(|| "no reading yet".into());
    let back = match f.ended_at {
        Some(t) => format!("Back in range since: {}\n", local(f.timezone, t)),
        None => String::new(),
    };
    let late = if f.detected_late {
        format!(
            "\nThis excursion was found in readings that reached us late (the logger was offline). \
             It began at {}, not just now.\n",
            local(f.timezone, f.started_at)
        )
    } else {
        String::new()
    };
    let place = format!("{} {}", f.location_code, f.unit_name);
    let since = local(f.timezone, f.started_at);
    let (subject, opening) = match &purpose {
        Purpose::Alert(rule) => (
            format!("VFC temperature alert: {place} out of range since {since}"),
            format!("Rule met: {}\n", rule.describe()),
        ),
        Purpose::Escalation { minutes_unacknowledged } => (
            format!("VFC temperature alert, not acknowledged: {place} out of range since {since}"),
            format!(
                "Nobody has acknowledged this alert in {minutes_unacknowledged} minutes; you are the next contact.\n"
            ),
        ),
        Purpose::Reminder { minutes_unacknowledged } => (
            format!("Reminder, VFC temperature alert: {place} out of range since {since}"),
            format!("Still not acknowledged after {minutes_unacknowledged} minutes.\n"),
        ),
        Purpose::BackInRange => (
            format!("VFC temperature back in range: {place}"),
            "The unit is back in range. Keep the affected vaccine labelled \"Do Not Use\" until the \
             manufacturer's determination for each lot.\n"
                .to_string(),
        ),
    };
    for to in recipients {
        let body = format!(
            "{name},\n\n\
             The {unit} at {loc_name} ({loc}) went out of its storage range ({lo:.1} to {hi:.1} °C).\n\
             {opening}\n\
             Temperature now:  {now_line}\n\
             Out of range since: {since}\n{back}\
             Lowest / highest so far: {min} / {max}\n{late}\n\
             What to do now:\n\
             1. Label the vaccine in this unit \"Do Not Use\" and keep it at the proper temperature\n   \
                (move it to a working unit if this one cannot hold temperature).\n\
             2. Do not discard any vaccine.\n\
             3. Contact the manufacturer(s) of every affected lot and the VFC program; the manufacturer\n   \
                decides per lot whether it can still be used.\n\
             4. Record what happened: when found, temperature and room temperature, cause, actions.\n\n\
             Acknowledge that you are handling it (this link is yours; it stops the escalation):\n{ack}\n\n\
             — vfc-monitor\n",
            name = to.0,
            unit = f.unit_name,
            loc_name = f.location_name,
            loc = f.location_code,
            lo = f.range.0,
            hi = f.range.1,
            min = temp(f.min_c),
            max = temp(f.max_c),
            ack = links.ack_url(excursion_id, &to.1),
        );
        enqueue(tx, excursion_id, purpose.key(), to, &subject, &body).await?;
    }
    Ok(())
}

/// Queues the first alert of an excursion to the location's primary coordinator.
pub async fn alert(
    tx: &mut Transaction<'static, Any>,
    links: &Links,
    excursion_id: i64,
    rule: &Rule,
) -> anyhow::Result<()> {
    let [primary, _] = coordinators(tx, excursion_id).await?;
    notify(tx, links, excursion_id, Purpose::Alert(rule), &[primary]).await
}

/// Queues "back in range" to everyone the alert has reached so far.
pub async fn back_in_range(
    tx: &mut Transaction<'static, Any>,
    links: &Links,
    excursion_id: i64,
    state: &[(String, String)],
) -> anyhow::Result<()> {
    let [primary, backup] = coordinators(tx, excursion_id).await?;
    let level: i64 = sqlx::query("SELECT escalation_level FROM excursions WHERE id = $1")
        .bind(excursion_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("escalation_level")?;
    let mut to = vec![primary];
    if level >= 1 {
        to.push(backup);
    }
    if level >= 2 {
        to.extend(state.iter().cloned());
    }
    notify(tx, links, excursion_id, Purpose::BackInRange, &to).await
}

async fn enqueue(
    tx: &mut Transaction<'static, Any>,
    excursion_id: i64,
    purpose: &str,
    to: &(String, String),
    subject: &str,
    body: &str,
) -> anyhow::Result<()> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO outbox (excursion_id, purpose, recipient_name, recipient_email, subject, body, status, attempts, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
    )
    .bind(excursion_id)
    .bind(purpose)
    .bind(&to.0)
    .bind(&to.1)
    .bind(subject)
    .bind(body)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
