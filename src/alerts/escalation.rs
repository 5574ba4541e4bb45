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
        let (new_level, purpose, to): (i64, Purpose, Vec<(String, String)>) = if level < 1 && elapsed >= backup_after {
            (
                1,
                Purpose::Escalation {
                    minutes_unacknowledged: waited,
                },
                vec![backup],
            )
        } else if level < 2 && elapsed >= state_after && !state.is_empty() {
            (
                2,
                Purpose::Escalation {
                    minutes_unacknowledged: waited,
                },
                state.clone(),
            )
        } else if now - last >= every {
            let mut to = vec![primary];
            if level >= 1 {
                to.push(backup);
            }
            if level >= 2 {
                to.extend(state.iter().cloned());
            }
            (
                level,
                Purpose::Reminder {
                    minutes_unacknowledged: waited,
                },
                to,
            )
        } else {
            continue;
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
    tx.commit().await?;
    Ok(moved)
}
