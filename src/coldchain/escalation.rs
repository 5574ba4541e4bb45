//! Escalation: an alert nobody acknowledged goes to the backup coordinator, then to the
//! program's state coordinators, with a reminder at a fixed interval until someone
//! acknowledges (delays from the program's settings: 30 min, 2 h, every hour by default;
//! docs/domain.md, "Alerts and escalation"). Logger conditions go the same way.
//!
//! Due items are taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so with several instances
//! each step is sent once; the step is recorded in the same transaction as its emails. Each item
//! has its own savepoint: one that cannot be composed (a row this version cannot read) is
//! logged, counted in `vfc_escalation_failures_total` and tried again on the next pass, while
//! every other alert escalates as usual.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::notices::{self, Next, Purpose};
use super::rules::Escalation;
use super::stock::ExposedStock;
use super::{devices, excursions, settings};
use sqlx::Acquire;

use crate::alerts::{Links, Recipient};
use crate::error::Error;
use crate::store::{now_millis, Db, Dialect};

/// Escalates whatever is due every second until cancelled; a pass that fails is an error the
/// supervisor restarts the task on.
pub async fn run(
    db: Db,
    links: Links,
    program: settings::InForce,
    stock: Arc<dyn ExposedStock>,
    outbox: Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if escalate_due(&db, &links, &program, stock.as_ref()).await? > 0 {
            outbox.notify_one();
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Sends every escalation step and reminder that is due; returns how many items moved.
pub async fn escalate_due(
    db: &Db,
    links: &Links,
    program: &settings::InForce,
    stock: &dyn ExposedStock,
) -> anyhow::Result<usize> {
    let program = program.get(db).await?;
    let minutes = |m: f64| (m * 60_000.0) as i64;
    let delays = Delays {
        backup: minutes(program.escalation.backup_after_minutes),
        state: minutes(program.escalation.state_after_minutes),
        reminder: minutes(program.escalation.reminder_every_minutes),
    };
    let state: Vec<Recipient> = program
        .state_coordinators
        .iter()
        .map(|p| Recipient::new(p.name.clone(), p.email.clone()))
        .collect();
    let now = now_millis();
    // Nothing can be due before the shortest delay has passed since the last email.
    let quiet_since = now - delays.backup.min(delays.state).min(delays.reminder);
    let mut tx = db.begin().await?;
    if db.dialect() == Dialect::Sqlite {
        // Take SQLite's write lock first: a read-then-write transaction could otherwise find
        // its snapshot outdated by the ingest's commits.
        excursions::record::claim_writer(&mut tx).await?;
    }
    let mut moved = 0;
    for e in excursions::record::unacknowledged(&mut tx, quiet_since).await? {
        let elapsed = now - e.alerted_at;
        let since_last = now - e.last_notified_at.unwrap_or(e.alerted_at);
        let Some(step) = next_step(e.level, elapsed, since_last, &delays, !state.is_empty()) else {
            continue;
        };
        let waited = elapsed / 60_000;
        let mut sp = tx.begin().await?;
        let done: crate::error::Result<()> = async {
            let [primary, backup] = notices::coordinators(&mut sp, e.id).await?;
            let (level, to) = step.recipients(e.level, primary, backup, &state);
            let purpose = match step {
                Step::Reminder => Purpose::Reminder {
                    minutes_unacknowledged: waited,
                },
                _ => Purpose::Escalation {
                    minutes_unacknowledged: waited,
                },
            };
            let told = notices::Told {
                phone: program.phone.as_deref(),
                next: next_after(level, e.alerted_at, now, &program.escalation, !state.is_empty()),
                also_met: &[],
                stock,
            };
            notices::excursion(&mut sp, links, e.id, purpose, &to, &told).await?;
            excursions::record::escalated(&mut sp, e.id, level, now).await
        }
        .await;
        if settle(sp, done, db.dialect(), "excursion", e.id).await? {
            moved += 1;
        }
    }
    for d in devices::unacknowledged(&mut tx, quiet_since).await? {
        let elapsed = now - d.started_at;
        let since_last = now - d.last_notified_at.unwrap_or(d.started_at);
        let Some(step) = next_step(d.level, elapsed, since_last, &delays, !state.is_empty()) else {
            continue;
        };
        let (level, to) = step.recipients(d.level, d.primary, d.backup, &state);
        let waited = elapsed / 60_000;
        let opening = match step {
            Step::Reminder => format!("Reminder: still not acknowledged after {waited} minutes.\n"),
            _ => format!("Nobody has acknowledged this in {waited} minutes; you are the next contact.\n"),
        };
        let mut sp = tx.begin().await?;
        let done: crate::error::Result<()> = async {
            devices::notify(&mut sp, links, d.id, &opening, &to).await?;
            devices::escalated(&mut sp, d.id, level, now).await
        }
        .await;
        if settle(sp, done, db.dialect(), "device alert", d.id).await? {
            moved += 1;
        }
    }
    tx.commit().await?;
    Ok(moved)
}

/// Commits one item's savepoint, or rolls it back and logs why; a passing database failure ends
/// the pass instead (the supervisor retries it). Whether the item moved.
async fn settle(
    sp: sqlx::Transaction<'_, sqlx::Any>,
    done: crate::error::Result<()>,
    dialect: Dialect,
    what: &'static str,
    id: i64,
) -> anyhow::Result<bool> {
    match done {
        Ok(()) => {
            sp.commit().await?;
            if failing().remove(&(what, id)) {
                tracing::info!(item = what, id, "escalated after earlier failures");
            }
            Ok(true)
        }
        Err(Error::Database(e)) if dialect.is_transient(&e) => Err(e.into()),
        Err(e) => {
            sp.rollback().await?;
            metrics::counter!("vfc_escalation_failures_total").increment(1);
            // Once per item as an error, not once a second: the counter keeps the pace.
            if failing().insert((what, id)) {
                tracing::error!(item = what, id, error = %e, "cannot escalate this one; tried again every pass, the others go on");
            } else {
                tracing::debug!(item = what, id, error = %e, "still cannot escalate this one");
            }
            Ok(false)
        }
    }
}

/// The items whose escalation is failing now, so each is logged as an error once.
fn failing() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<(&'static str, i64)>> {
    static FAILING: std::sync::Mutex<std::collections::BTreeSet<(&'static str, i64)>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    FAILING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The program's delays, in ms: backup after, state after, a reminder every.
struct Delays {
    backup: i64,
    state: i64,
    reminder: i64,
}

/// Who is told next about an alert at `level` (0 primary told, 1 backup, 2 state) that began
/// to be told at `alerted_at`, once this step's email (at `now`) is sent, and when.
pub fn next_after(level: i64, alerted_at: i64, now: i64, e: &Escalation, has_state: bool) -> Option<Next> {
    let ms = |m: f64| (m * 60_000.0) as i64;
    let reminder = now + ms(e.reminder_every_minutes);
    match level {
        0 => Some(Next::Backup((alerted_at + ms(e.backup_after_minutes)).max(now))),
        1 if has_state && alerted_at + ms(e.state_after_minutes) <= reminder => {
            Some(Next::State((alerted_at + ms(e.state_after_minutes)).max(now)))
        }
        _ => Some(Next::Reminder(reminder)),
    }
}

/// The next person up, or a reminder to everyone told so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Backup,
    State,
    Reminder,
}

/// What is due for an alert at `level` (0 primary told, 1 backup, 2 state), `elapsed` after it
/// began and `since_last` after its last email.
fn next_step(level: i64, elapsed: i64, since_last: i64, delays: &Delays, has_state: bool) -> Option<Step> {
    if level < 1 && elapsed >= delays.backup {
        Some(Step::Backup)
    } else if level < 2 && elapsed >= delays.state && has_state {
        Some(Step::State)
    } else if since_last >= delays.reminder {
        Some(Step::Reminder)
    } else {
        None
    }
}

impl Step {
    /// The level after this step, and whom it emails.
    fn recipients(
        self,
        level: i64,
        primary: Recipient,
        backup: Recipient,
        state: &[Recipient],
    ) -> (i64, Vec<Recipient>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const DELAYS: Delays = Delays {
        backup: 30,
        state: 120,
        reminder: 60,
    };

    #[test]
    fn the_backup_is_told_after_its_delay_then_the_state_then_reminders() {
        assert_eq!(next_step(0, 29, 29, &DELAYS, true), None);
        assert_eq!(next_step(0, 30, 30, &DELAYS, true), Some(Step::Backup));
        assert_eq!(next_step(1, 119, 89, &DELAYS, true), Some(Step::Reminder));
        assert_eq!(next_step(1, 120, 10, &DELAYS, true), Some(Step::State));
        assert_eq!(next_step(2, 500, 59, &DELAYS, true), None);
        assert_eq!(next_step(2, 500, 60, &DELAYS, true), Some(Step::Reminder));
    }

    #[test]
    fn an_alert_says_who_is_told_next_and_when() {
        let e = Escalation {
            backup_after_minutes: 30.0,
            state_after_minutes: 120.0,
            reminder_every_minutes: 60.0,
        };
        const M: i64 = 60_000;
        assert_eq!(next_after(0, 0, 0, &e, true), Some(Next::Backup(30 * M)));
        assert_eq!(next_after(1, 0, 30 * M, &e, true), Some(Next::Reminder(90 * M)));
        assert_eq!(next_after(1, 0, 90 * M, &e, true), Some(Next::State(120 * M)));
        assert_eq!(next_after(1, 0, 90 * M, &e, false), Some(Next::Reminder(150 * M)));
        assert_eq!(next_after(2, 0, 120 * M, &e, true), Some(Next::Reminder(180 * M)));
    }

    #[test]
    fn without_state_coordinators_the_alert_keeps_reminding_the_clinic() {
        assert_eq!(next_step(1, 500, 10, &DELAYS, false), None);
        assert_eq!(next_step(1, 500, 60, &DELAYS, false), Some(Step::Reminder));
        let p = Recipient::new("P", "p@x.org");
        let b = Recipient::new("B", "b@x.org");
        let (level, to) = Step::Reminder.recipients(1, p.clone(), b.clone(), &[]);
        assert_eq!((level, to), (1, vec![p, b]));
    }
}
