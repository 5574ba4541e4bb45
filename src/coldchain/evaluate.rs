//! The evaluator: judges units whose primary logger has new readings, and records what it
//! finds — excursions, alarms, the emails they need and the holds on the unit's stock.
//!
//! The ingest marks serials dirty in the same transaction as their readings
//! (`crate::readings::dirty`), so a crash between the two loses nothing: the evaluator picks
//! the mark up after a restart. Judging recomputes a window of readings from scratch and writes
//! with stable keys ([`super::excursions::record`]), so re-judging — after backfilled or
//! out-of-order readings — never duplicates an excursion or an email.
//!
//! **Alarms that cannot silently stop.** Each unit is judged in its own savepoint: a unit that
//! fails (its stored rules cannot be read, a bug meets its data, even a panic) is rolled back
//! alone and put in [`super::quarantine`] with the error — its coordinators are emailed — and
//! every other unit is judged as usual. Within a unit, each alarm and each excursion's holds
//! have a savepoint of their own: one that fails costs neither the excursions on record nor the
//! other alarms and holds, and the unit is retried. A passing database error (deadlock, lost
//! connection, SQLite busy) is not the unit's fault: the whole pass is retried instead. The
//! program's settings come through [`settings::InForce`], so an unreadable program document
//! never stops judging. The unit's row lock (PostgreSQL) or SQLite's one writer serialise
//! instances.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::{Acquire, AnyConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::episodes::{self, Episode, Hit};
use super::excursions::record;
use super::rules::{ProgramSettings, Rule};
use super::stock::ExposedStock;
use super::{downtime, notices, primary, quarantine, settings};
use crate::alerts::{Links, Recipient};
use crate::error::{Error, Result};
use crate::readings::dirty;
use crate::registry::{assignments, units};
use crate::store::{now_millis, Db};

type Tx = AnyConnection;

const MIN: i64 = 60_000;
/// A reading that reaches the service this much after it was taken was backfilled.
const LATE_AFTER_MS: i64 = 15 * MIN;
/// Most dirty serials one pass takes.
const PASS_LIMIT: i64 = 200;

/// What the evaluator needs, handed to it by the composition root.
#[derive(Clone)]
pub struct Evaluator {
    pub db: Db,
    pub links: Links,
    /// What an alarmed excursion does to the stock in its unit (the inventory's holds).
    pub stock: Arc<dyn ExposedStock>,
    pub program: settings::InForce,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub judged: usize,
    pub failed: usize,
    /// More dirty serials were waiting than one pass takes.
    pub more: bool,
}

/// Judges whatever is dirty, then waits for the ingest's nudge (`wake`) or a second, until
/// cancelled. A pass that fails on the database is an error the supervisor restarts the task on.
pub async fn run(
    ev: Evaluator,
    wake: Arc<Notify>,
    outbox: Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let pass = ev.pass(now_millis()).await?;
        if pass.judged > 0 {
            outbox.notify_one();
        }
        if pass.judged + pass.failed == 0 && !pass.more {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if cancel.is_cancelled() {
            return Ok(());
        }
    }
}

impl Evaluator {
    /// Judges the units of up to 200 dirty serials, and quarantined units due for a retry, in
    /// one transaction with a savepoint per unit.
    ///
    /// One transaction per pass, not per unit: on SQLite every writer waits for the one lock, so
    /// fewer, larger transactions keep the ingest, the sender and the evaluator from queueing
    /// behind each other.
    pub async fn pass(&self, now: i64) -> anyhow::Result<Pass> {
        let marks = dirty::pending(&self.db, PASS_LIMIT).await?;
        let quarantined = quarantine::now(&self.db, now).await?;
        if marks.is_empty() && quarantined.due.is_empty() {
            return Ok(Pass::default());
        }
        let program = self.program.get(&self.db).await?;
        let state: Vec<Recipient> = program
            .state_coordinators
            .iter()
            .map(|p| Recipient::new(p.name.clone(), p.email.clone()))
            .collect();
        // Each unit once, from the earliest new reading of any of its serials, in id order so
        // two instances lock units in the same order.
        let mut units: BTreeMap<i64, i64> = BTreeMap::new();
        for m in &marks {
            for u in assignments::primary_units(&self.db, &m.serial, m.since).await? {
                let e = units.entry(u).or_insert(m.since);
                *e = (*e).min(m.since);
            }
        }
        for (&u, &since) in &quarantined.due {
            let e = units.entry(u).or_insert(since);
            *e = (*e).min(since);
        }
        let mut pass = Pass {
            more: marks.len() as i64 >= PASS_LIMIT,
            ..Pass::default()
        };
        let mut tx = self.db.begin().await?;
        for (unit_id, since) in units {
            if quarantined.waiting.contains(&unit_id) && quarantine::waiting(&mut tx, unit_id, since, now).await? {
                continue;
            }
            let mut sp = (&mut *tx).begin().await?;
            let judged = AssertUnwindSafe(self.judge(&mut sp, &program, &state, unit_id, since))
                .catch_unwind()
                .await;
            match judged {
                Ok(Ok(problems)) if problems.is_empty() => {
                    sp.commit().await?;
                    if quarantined.contains(unit_id) && quarantine::recovered(&mut tx, unit_id, &state).await? {
                        tracing::info!(unit = unit_id, "unit judged again after failures; out of quarantine");
                    }
                    pass.judged += 1;
                }
                Ok(Ok(problems)) => {
                    // What was judged stays (excursions, the alarms and holds that worked); the
                    // unit is retried for the rest.
                    sp.commit().await?;
                    let error = problems.join("; ");
                    tracing::error!(unit = unit_id, %error, "part of this unit's judgement failed; it is retried with backoff");
                    quarantine::failed(&mut tx, unit_id, since, &error, now, &state).await?;
                    metrics::counter!("vfc_evaluation_failures_total").increment(1);
                    pass.failed += 1;
                }
                Ok(Err(e)) if self.db.dialect().is_transient_error(&e) => {
                    // Not the unit's fault: the pass is retried as a whole (the supervisor
                    // restarts the task) and no unit is quarantined for it.
                    return Err(e.context(format!("judging unit {unit_id}")));
                }
                Ok(Err(e)) => {
                    sp.rollback().await?;
                    let error = format!("{e:#}");
                    tracing::error!(unit = unit_id, %error, "cannot judge this unit; it is retried with backoff, the others go on");
                    quarantine::failed(&mut tx, unit_id, since, &error, now, &state).await?;
                    metrics::counter!("vfc_evaluation_failures_total").increment(1);
                    pass.failed += 1;
                }
                Err(panic) => {
                    // The connection may be mid-statement: give up this pass's transaction and
                    // record the failure on its own, so the next pass leaves the unit alone.
                    drop(sp);
                    drop(tx);
                    let error = format!("the evaluation panicked: {}", panic_text(&panic));
                    tracing::error!(unit = unit_id, %error, "cannot judge this unit; it is retried with backoff, the others go on");
                    let mut alone = self.db.begin().await?;
                    quarantine::failed(&mut alone, unit_id, since, &error, now, &state).await?;
                    alone.commit().await?;
                    metrics::counter!("vfc_evaluation_failures_total").increment(1);
                    pass.failed += 1;
                    return Ok(pass);
                }
            }
        }
        // Only if nothing arrived meanwhile; otherwise the next pass sees the newer mark. A
        // quarantined unit keeps the readings it still has to judge in its own row.
        for m in &marks {
            dirty::clear(&mut tx, m).await?;
        }
        tx.commit().await?;
        metrics::counter!("vfc_units_evaluated_total").increment(pass.judged as u64);
        metrics::counter!("vfc_evaluation_passes_total").increment(1);
        Ok(pass)
    }

    /// Re-judges a unit's readings from `since` (minus the longest rule window). Returns what
    /// failed in an alarm's or a hold's own savepoint (the rest of the judgement stands).
    async fn judge(
        &self,
        tx: &mut Tx,
        program: &ProgramSettings,
        state: &[Recipient],
        unit_id: i64,
        since: i64,
    ) -> anyhow::Result<Vec<String>> {
        // Takes the unit's row lock (PostgreSQL) or the write lock (SQLite) before reading, so
        // two evaluators never interleave on one unit.
        let unit = units::lock_for_judging(tx, unit_id).await?;
        let (rules, _) = settings::effective(tx, program, unit_id, unit.kind).await?;
        let lookback = rules
            .iter()
            .map(|r| r.window_minutes.unwrap_or(0).max(r.minutes) * MIN)
            .max()
            .unwrap_or(0)
            .max(24 * 60 * MIN);
        let mut start = since.saturating_sub(lookback);
        // Never cut through an excursion already on record: start at its beginning.
        if let Some(s) = record::running_at(tx, unit_id, start).await? {
            start = start.min(s);
        }
        let primary = primary::record(tx, unit_id, start, i64::MAX).await?;
        let Some(serial) = primary.serial else {
            return Ok(Vec::new());
        };
        let range = (unit.range.min_c, unit.range.max_c);
        let found = episodes::episodes(&primary.samples, range, primary.gap_ms);
        let hits = episodes::hits(&primary.samples, range, &rules, primary.gap_ms);
        let now = now_millis();
        let late_ms = primary.gap_ms.max(LATE_AFTER_MS);

        let mut ids = Vec::with_capacity(found.len());
        for ep in &found {
            let w = record::upsert(tx, unit_id, &serial, ep, range, late_ms, now).await?;
            ids.push(w.id);
            if w.was_open_and_alerted && ep.ended_at.is_some() {
                let told = notices::Told {
                    phone: program.phone.as_deref(),
                    next: None,
                    also_met: &[],
                    stock: self.stock.as_ref(),
                };
                notices::back_in_range(tx, &self.links, w.id, state, &told).await?;
            }
        }
        let starts: Vec<i64> = found.iter().map(|e| e.started_at).collect();
        record::drop_stale(tx, unit_id, start, &starts).await?;

        let judgement = Judgement {
            links: &self.links,
            stock: self.stock.as_ref(),
            program,
            has_state: !state.is_empty(),
            hits: &hits,
            rules: &rules,
            unit_id,
            found: &found,
            ids: &ids,
            late_limit_ms: (program.late_page_limit_hours * 3_600_000.0) as i64,
            now,
        };
        let mut problems = Vec::new();
        let recorded = match hits.iter().map(|h| h.anchor_ts).min() {
            Some(from) => record::alarm_keys(tx, unit_id, from).await?,
            None => Default::default(),
        };
        for hit in &hits {
            if recorded.contains(&(hit.rule_id.clone(), hit.anchor_ts)) {
                continue;
            }
            let Some(rule) = rules.iter().find(|r| r.id == hit.rule_id) else {
                anyhow::bail!("rule {} was met but is not among the unit's rules", hit.rule_id);
            };
            // In its own savepoint: an alarm that cannot be recorded or emailed is rolled back
            // alone and tried again when the unit is retried; the excursions stay on record.
            let mut sp = tx.begin().await?;
            match judgement.alarm(&mut sp, rule, hit).await {
                Ok(()) => sp.commit().await?,
                Err(e) => {
                    sp.rollback().await?;
                    if matches!(&e, Error::Database(d) if self.db.dialect().is_transient(d)) {
                        return Err(e.into());
                    }
                    problems.push(format!(
                        "rule {} met at {}: {e}",
                        rule.id,
                        crate::store::rfc3339(hit.met_at)
                    ));
                }
            }
        }
        // Lots in the unit during an excursion that met a rule go on hold ("Do Not Use"), in
        // this transaction; stock that arrives while it lasts is held too.
        for alarmed in record::alarmed_since(tx, unit_id, start).await? {
            // In its own savepoint: a failure here must not cost the excursion or its alert;
            // the next pass tries again (holding is idempotent).
            let mut sp = tx.begin().await?;
            match self.stock.hold(&mut sp, &alarmed).await {
                Ok(_) => sp.commit().await?,
                Err(e) => {
                    sp.rollback().await?;
                    if self.db.dialect().is_transient_error(&e) {
                        return Err(e);
                    }
                    problems.push(format!(
                        "the lots of excursion {} could not be put on hold: {e:#}",
                        alarmed.id
                    ));
                }
            }
        }
        Ok(problems)
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// One unit's judgement: what an alarm needs to know to be recorded and, perhaps, emailed.
struct Judgement<'a> {
    links: &'a Links,
    stock: &'a dyn ExposedStock,
    program: &'a ProgramSettings,
    /// The program has state coordinators to escalate to.
    has_state: bool,
    /// Every rule met in this pass, and the unit's rules.
    hits: &'a [Hit],
    rules: &'a [Rule],
    unit_id: i64,
    /// The episodes found, and their excursion ids, in the same order.
    found: &'a [Episode],
    ids: &'a [i64],
    /// Readings this much late when they arrive are recorded without paging.
    late_limit_ms: i64,
    now: i64,
}

impl Judgement<'_> {
    /// Puts the excursion's lots on hold before its first email, so the email lists them. In a
    /// savepoint of its own: a failure costs the email its lots, never the email (the pass
    /// holds them again after the alarms).
    async fn hold_before_telling(&self, tx: &mut Tx, id: i64) -> Result<()> {
        let Some(alarmed) = record::alarmed_one(tx, id).await? else {
            return Ok(());
        };
        let mut sp = sqlx::Acquire::begin(&mut *tx).await?;
        match self.stock.hold(&mut sp, &alarmed).await {
            Ok(_) => sp.commit().await?,
            Err(e) => {
                sp.rollback().await?;
                tracing::warn!(excursion = id, error = %e, "the lots could not be held before the alert; the pass tries again");
            }
        }
        Ok(())
    }

    /// Why nobody is paged for this rule met, if so.
    async fn suppression(&self, tx: &mut Tx, hit: &Hit) -> Result<Option<String>> {
        if let Some(d) = downtime::in_force(tx, self.unit_id, hit.met_at).await? {
            return Ok(Some(d));
        }
        // docs/domain.md: readings older than a day when they arrive are recorded, not paged as if now.
        if self.now - hit.met_at > self.late_limit_ms && hit.met_received_at - hit.met_at > self.late_limit_ms {
            return Ok(Some(
                "readings arrived more than the program's late-page limit after they were taken".into(),
            ));
        }
        Ok(None)
    }

    /// Records a rule met and links it to the excursions its readings fall in; the excursion
    /// holding the reading that met it carries the email — one alert per excursion.
    async fn alarm(&self, tx: &mut Tx, rule: &Rule, hit: &Hit) -> Result<()> {
        let suppressed = self.suppression(tx, hit).await?;
        let Some(alarm_id) = record::new_alarm(tx, self.unit_id, rule, hit, suppressed.is_none(), self.now).await?
        else {
            return Ok(());
        };
        let mut lead = None;
        let mut linked = Vec::new();
        for (ep, id) in self.found.iter().zip(self.ids) {
            let overlaps = ep.started_at <= hit.span.1 && ep.end_or_last() >= hit.span.0;
            if !overlaps {
                continue;
            }
            record::link(tx, alarm_id, *id).await?;
            linked.push(*id);
            if ep.started_at <= hit.met_at && ep.end_or_last() >= hit.met_at {
                lead = Some(*id);
            }
            lead = lead.or(Some(*id));
        }
        let Some(lead) = lead else { return Ok(()) };
        match &suppressed {
            Some(reason) => record::suppress(tx, lead, reason).await?,
            None => {
                if record::first_alert(tx, lead, self.now).await? {
                    self.hold_before_telling(tx, lead).await?;
                    // Every rule met in this pass by the lead's episode, so the email lists them
                    // all (the plainest first), not only the first one found.
                    let also: Vec<Rule> = match self.ids.iter().position(|id| *id == lead) {
                        Some(i) => {
                            let ep = &self.found[i];
                            self.hits
                                .iter()
                                .filter(|h| h.span.0 <= ep.end_or_last() && h.span.1 >= ep.started_at)
                                .filter_map(|h| self.rules.iter().find(|r| r.id == h.rule_id).cloned())
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    let told = notices::Told {
                        phone: self.program.phone.as_deref(),
                        next: super::escalation::next_after(
                            0,
                            self.now,
                            self.now,
                            &self.program.escalation,
                            self.has_state,
                        ),
                        also_met: &also,
                        stock: self.stock,
                    };
                    notices::alert(tx, self.links, lead, rule, &told).await?;
                }
                // A cumulative rule met by several short episodes: the alarm covers them all.
                for id in linked {
                    record::covered(tx, id).await?;
                }
            }
        }
        Ok(())
    }
}
