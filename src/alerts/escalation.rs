//! Escalation: an alert nobody acknowledged goes to the backup coordinator, then to the
//! program's state coordinators, with a reminder at a fixed interval until someone
//! acknowledges (delays from the program's settings: 30 min, 2 h, every hour by default).
//!
//! Due excursions are taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so with several
//! instances each step is sent once; the step is recorded in the same transaction as its
//! emails.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outbox::{self, Links, Purpose};
use crate::coldchain::rules;
use crate::store::{now_millis, Db, DbKind};

pub async fn run(db: Db, links: Links, outbox_nudge: Arc<Notify>, cancel: CancellationToken) {
    loop {
        match escalate_due(&db, &links).await {
            Ok(0) => {}
            Ok(_) => outbox_nudge.notify_one(),
            Err(e) => tracing::error!(error = ?e, "escalation failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Sends every escalation step and reminder that is due; returns how many excursions moved.
pub async fn escalate_due(db: &Db, links: &Links) -> anyhow::Result<usize> {
    let program = rules::program(db).await?;
    let minutes = |m: f64| (m * 60_000.0) as i64;
    let (backup_after, state_after, every) = (
        minutes(program.escalation.backup_after_minutes),
        minutes(program.escalation.state_after_minutes),
        minutes(program.escalation.reminder_every_minutes),
    );
    let delays = (backup_after, state_after, every);
    let now = now_millis();
    let mut tx = db.pool.begin().await?;
    let lock = match db.kind {
        DbKind::Postgres => " FOR UPDATE OF e SKIP LOCKED",
        DbKind::Sqlite => {
            // Take SQLite's write lock first: a read-then-write transaction could otherwise
            // find its snapshot outdated by the ingest's commits.
            sqlx::query("UPDATE service_secrets SET name = name WHERE name = ''")
                .execute(&mut *tx)
                .await?;
            ""
        }
    };
    let due = sqlx::query(&format!(
        "SELECT e.id, e.alerted_at, e.escalation_level, e.last_notified_at FROM excursions e \
         WHERE e.alerted_at IS NOT NULL AND e.acknowledged_at IS NULL AND e.status <> 'reviewed' \
         AND (e.last_notified_at IS NULL OR e.last_notified_at <= $1) ORDER BY e.id LIMIT 100{lock}"
    ))
    // Nothing can be due before the shortest delay has passed since the last email.
    .bind(now - backup_after.min(state_after).min(every))
    .fetch_all(&mut *tx)
    .await?;
    let state: Vec<(String, String)> = program
        .state_coordinators
        .iter()
        .map(|p| (p.name.clone(), p.email.clone()))
        .collect();
    let mut moved = 0;
    for r in due {
        let id: i64 = r.try_get("id")?;
        let alerted_at: i64 = r.try_get("alerted_at")?;
        let level: i64 = r.try_get("escalation_level")?;
        let last = r.try_get::<Option<i64>, _>("last_notified_at")?.unwrap_or(alerted_at);
        let elapsed = now - alerted_at;
        let waited = elapsed / 60_000;
        let [primary, backup] = outbox::coordinators(&mut tx, id).await?;
        let Some(step) = next_step(level, elapsed, now - last, delays, !state.is_empty()) else {
            continue;
        };
        let (new_level, to) = step.recipients(level, primary, backup, &state);
        let purpose = match step {
            Step::Reminder => Purpose::Reminder {
                minutes_unacknowledged: waited,
            },
            _ => Purpose::Escalation {
                minutes_unacknowledged: waited,
            },
        };
        outbox::notify(&mut tx, links, id, purpose, &to).await?;
        sqlx::query("UPDATE excursions SET escalation_level = $1, last_notified_at = $2 WHERE id = $3")
            .bind(new_level)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        moved += 1;
    }

    // Logger conditions go the same way while they last.
    let due = sqlx::query(&format!(
        "SELECT d.id, d.started_at, d.escalation_level, d.last_notified_at, l.primary_name, l.primary_email, \
         l.backup_name, l.backup_email FROM device_alerts d JOIN units u ON u.id = d.unit_id \
         JOIN locations l ON l.code = u.location_code WHERE d.ended_at IS NULL AND d.acknowledged_at IS NULL \
         AND d.kind <> 'calibration_expiring' \
         AND (d.last_notified_at IS NULL OR d.last_notified_at <= $1) ORDER BY d.id LIMIT 100{}",
        if db.kind == DbKind::Postgres {
            " FOR UPDATE OF d SKIP LOCKED"
        } else {
            ""
        }
    ))
    .bind(now - backup_after.min(state_after).min(every))
    .fetch_all(&mut *tx)
    .await?;
    for r in due {
        let id: i64 = r.try_get("id")?;
        let started: i64 = r.try_get("started_at")?;
        let level: i64 = r.try_get("escalation_level")?;
        let last = r.try_get::<Option<i64>, _>("last_notified_at")?.unwrap_or(started);
        let primary = (r.try_get("primary_name")?, r.try_get("primary_email")?);
        let backup = (r.try_get("backup_name")?, r.try_get("backup_email")?);
        let Some(step) = next_step(level, now - started, now - last, delays, !state.is_empty()) else {
            continue;
        };
        let (new_level, to) = step.recipients(level, primary, backup, &state);
        let waited = (now - started) / 60_000;
        let opening = match step {
            Step::Reminder => format!("Reminder: still not acknowledged after {waited} minutes.\n"),
            _ => format!("Nobody has acknowledged this in {waited} minutes; you are the next contact.\n"),
        };
        crate::coldchain::devices::notify(&mut tx, links, id, &opening, &to).await?;
        sqlx::query("UPDATE device_alerts SET escalation_level = $1, last_notified_at = $2 WHERE id = $3")
            .bind(new_level)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        moved += 1;
    }
    tx.commit().await?;
    Ok(moved)
}

/// The next person up, or a reminder to everyone told so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Backup,
    State,
    Reminder,
}

/// What is due for an alert at `level` (0 primary told, 1 backup, 2 state), `elapsed` after it
/// began and `since_last` after its last email; `delays` = (backup, state, reminder) in ms.
fn next_step(level: i64, elapsed: i64, since_last: i64, delays: (i64, i64, i64), has_state: bool) -> Option<Step> {
    let (backup_after, state_after, every) = delays;
    if level < 1 && elapsed >= backup_after {
        Some(Step::Backup)
    } else if level < 2 && elapsed >= state_after && has_state {
        Some(Step::State)
    } else if since_last >= every {
        Some(Step::Reminder)
    } else {
        None
    }
}

type Person = (String, String);

impl Step {
    /// The level after this step, and whom it emails.
    fn recipients(self, level: i64, primary: Person, backup: Person, state: &[Person]) -> (i64, Vec<Person>) {
        match self {
            Step::Backup => (1, vec![backup]),
            Step::State => (2, state.to_vec()),
            Step::Reminder => {
                let mut to = vec![primary];
                if level >= 1 {
                    to.push(backup);
                }
                if level >= 2 {
                    to.extend(state.iter().cloned());
                }
                (level, to)
            }
        }
    }
}
