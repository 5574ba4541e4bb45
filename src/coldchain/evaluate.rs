//! The evaluator: judges units whose primary logger has new readings, and records what it
//! finds — excursions, alarms, and the emails they need — in one transaction per unit.
//!
//! The ingest marks serials dirty in its own transaction (`coldchain_dirty`), so a crash between
//! the two loses nothing: the evaluator picks the mark up after a restart. Evaluation recomputes
//! a window of readings from scratch and writes with stable keys ((unit, start) for excursions,
//! (unit, rule, anchor) for alarms), so re-evaluating — after backfilled or out-of-order
//! readings — never duplicates an excursion or an email. The unit's row lock serialises
//! instances.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Acquire;
use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::episodes::{self, Episode, Hit, Sample};
use super::rules::{self, Rule};
use crate::alerts::outbox;
use crate::domain::UnitKind;
use crate::store::{now_millis, Db};

const MIN: i64 = 60_000;
/// A reading that reaches the service this much after it was taken was backfilled.
const LATE_AFTER_MS: i64 = 15 * MIN;

/// Marks serials as having new readings from `since` (called inside the ingest transaction).
pub async fn mark_dirty(
    tx: &mut Transaction<'static, Any>,
    serials: &[(String, i64)],
    version: i64,
) -> Result<(), sqlx::Error> {
    for chunk in serials.chunks(200) {
        let mut sql = String::from("INSERT INTO coldchain_dirty (serial, since_ts, version) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3));
        }
        sql.push_str(
            " ON CONFLICT (serial) DO UPDATE SET version = excluded.version, since_ts = \
             CASE WHEN excluded.since_ts < coldchain_dirty.since_ts THEN excluded.since_ts ELSE coldchain_dirty.since_ts END",
        );
        let mut q = sqlx::query(&sql);
        for (serial, since) in chunk {
            q = q.bind(serial).bind(*since).bind(version);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Runs until cancelled: evaluates whatever is dirty, then waits for the ingest's nudge.
pub async fn run(
    db: Db,
    links: outbox::Links,
    ingest: Arc<crate::telemetry::mqtt::MqttHealth>,
    outbox: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match evaluate_pending(&db, &links).await {
            Ok(0) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ingest.committed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(_) => {
                backoff = Duration::from_millis(100);
                outbox.notify_one();
            }
            Err(e) => {
                tracing::error!(error = ?e, retry_in = ?backoff, "cold-chain evaluation failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

/// Evaluates up to 200 dirty serials in one transaction; returns how many.
///
/// One transaction per pass, not per unit: on SQLite every writer waits for the one lock, so
/// fewer, larger transactions keep the ingest, the sender and the evaluator from queueing
/// behind each other.
pub async fn evaluate_pending(db: &Db, links: &outbox::Links) -> anyhow::Result<usize> {
    let rows = sqlx::query("SELECT serial, since_ts, version FROM coldchain_dirty ORDER BY since_ts LIMIT 200")
        .fetch_all(&db.pool)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let program = rules::program(db).await?;
    // Each unit once, from the earliest new reading of any of its serials, in id order so two
    // instances lock units in the same order.
    let mut units: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut marks = Vec::with_capacity(rows.len());
    for r in &rows {
        let serial: String = r.try_get("serial")?;
        let since: i64 = r.try_get("since_ts")?;
        marks.push((serial.clone(), r.try_get::<i64, _>("version")?));
        let found = sqlx::query(
            "SELECT DISTINCT unit_id FROM logger_assignments WHERE serial = $1 AND role = 'primary' \
             AND (to_ts IS NULL OR to_ts > $2)",
        )
        .bind(&serial)
        .bind(since)
        .fetch_all(&db.pool)
        .await?;
        for u in found {
            let e = units.entry(u.try_get("unit_id")?).or_insert(since);
            *e = (*e).min(since);
        }
    }
    let mut tx = db.pool.begin().await?;
    for (unit_id, since) in units {
        evaluate_unit(&mut tx, &program, links, unit_id, since).await?;
    }
    // Only if nothing arrived meanwhile; otherwise the next pass sees the newer mark.
    for (serial, version) in marks {
        sqlx::query("DELETE FROM coldchain_dirty WHERE serial = $1 AND version = $2")
            .bind(&serial)
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

struct UnitInfo {
    kind: UnitKind,
    range: (f64, f64),
}

/// Re-judges a unit's readings from `since` (minus the longest rule window).
pub async fn evaluate_unit(
    tx: &mut Transaction<'static, Any>,
    program: &rules::ProgramSettings,
    links: &outbox::Links,
    unit_id: i64,
    since: i64,
) -> anyhow::Result<()> {
    // Takes the unit's row lock (PostgreSQL) or the write lock (SQLite) before reading, so two
    // evaluators never interleave on one unit.
    sqlx::query("UPDATE units SET kind = kind WHERE id = $1")
        .bind(unit_id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT kind, range_min_c, range_max_c FROM units WHERE id = $1")
        .bind(unit_id)
        .fetch_one(&mut **tx)
        .await?;
    let kind = UnitKind::parse(&row.try_get::<String, _>("kind")?)?;
    let unit = UnitInfo {
        kind,
        range: (row.try_get("range_min_c")?, row.try_get("range_max_c")?),
    };
    let rules: Vec<Rule> = match sqlx::query("SELECT rules FROM unit_rules WHERE unit_id = $1")
        .bind(unit_id)
        .fetch_optional(&mut **tx)
        .await?
    {
        Some(r) => serde_json::from_str(&r.try_get::<String, _>("rules")?)?,
        None => program.rules.for_kind(unit.kind).to_vec(),
    };
    let lookback = rules
        .iter()
        .map(|r| r.window_minutes.unwrap_or(0).max(r.minutes) * MIN)
        .max()
        .unwrap_or(0)
        .max(24 * 60 * MIN);
    let mut start = since - lookback;
    // Never cut through an excursion already on record: start at its beginning.
    if let Some(r) = sqlx::query(
        "SELECT MIN(started_at) AS s FROM excursions WHERE unit_id = $1 AND started_at < $2 \
         AND (ended_at IS NULL OR ended_at >= $2)",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_optional(&mut **tx)
    .await?
    {
        if let Some(s) = r.try_get::<Option<i64>, _>("s")? {
            start = start.min(s);
        }
    }
    let (samples, serial, gap_ms) = primary_samples(tx, unit_id, start, i64::MAX).await?;
    let Some(serial) = serial else { return Ok(()) };
    let found = episodes::episodes(&samples, unit.range, gap_ms);
    let hits = episodes::hits(&samples, unit.range, &rules, gap_ms);
    let now = now_millis();
    let late_ms = (gap_ms).max(LATE_AFTER_MS);

    let mut ids = Vec::with_capacity(found.len());
    for ep in &found {
        let (id, was_open) = upsert_excursion(tx, unit_id, &serial, ep, unit.range, late_ms, now).await?;
        ids.push(id);
        if was_open && ep.ended_at.is_some() {
            let state: Vec<(String, String)> = program
                .state_coordinators
                .iter()
                .map(|p| (p.name.clone(), p.email.clone()))
                .collect();
            outbox::back_in_range(tx, links, id, &state).await?;
        }
    }
    // Episodes that re-evaluation no longer finds (an earlier reading arrived and split or
    // shortened them) go, unless someone was paged or has reviewed them.
    let starts: Vec<i64> = found.iter().map(|e| e.started_at).collect();
    let stale = sqlx::query(
        "SELECT id, started_at FROM excursions WHERE unit_id = $1 AND started_at >= $2 AND alerted = 0 AND status <> 'reviewed'",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_all(&mut **tx)
    .await?;
    for s in stale {
        if !starts.contains(&s.try_get::<i64, _>("started_at")?) {
            let id: i64 = s.try_get("id")?;
            sqlx::query("DELETE FROM alarm_excursions WHERE excursion_id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM excursions WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }

    for hit in &hits {
        let rule = rules.iter().find(|r| r.id == hit.rule_id).expect("hit of a known rule");
        record_alarm(tx, links, unit_id, rule, hit, &found, &ids, program, now).await?;
    }
    // Lots in the unit during an excursion that met a rule go on hold ("Do Not Use"), in this
    // transaction; stock that arrives while it lasts is held too.
    let alarmed = sqlx::query(
        "SELECT DISTINCT ae.excursion_id FROM alarm_excursions ae JOIN excursions e ON e.id = ae.excursion_id \
         WHERE e.unit_id = $1 AND e.status <> 'reviewed' AND (e.ended_at IS NULL OR e.ended_at >= $2)",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_all(&mut **tx)
    .await?;
    for r in alarmed {
        // In its own savepoint: a failure here must not cost the excursion or its alert; the
        // next pass tries again (holding is idempotent).
        let id: i64 = r.try_get("excursion_id")?;
        let mut sp = tx.begin().await?;
        match crate::inventory::holds::hold_for_excursion(&mut sp, id).await {
            Ok(_) => sp.commit().await?,
            Err(e) => {
                sp.rollback().await?;
                tracing::error!(excursion = id, error = ?e, "could not put the excursion's lots on hold; will retry");
            }
        }
    }
    Ok(())
}

/// The unit's primary readings in `[start, end)`, the serial serving it latest, and the gap
/// length (two logging intervals).
pub async fn primary_samples(
    conn: &mut sqlx::AnyConnection,
    unit_id: i64,
    start: i64,
    end: i64,
) -> anyhow::Result<(Vec<Sample>, Option<String>, i64)> {
    let windows = sqlx::query(
        "SELECT a.serial, a.from_ts, a.to_ts, l.reading_interval_s FROM logger_assignments a \
         JOIN loggers l ON l.serial = a.serial \
         WHERE a.unit_id = $1 AND a.role = 'primary' AND (a.to_ts IS NULL OR a.to_ts > $2) ORDER BY a.from_ts",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_all(&mut *conn)
    .await?;
    let mut samples = Vec::new();
    let mut serial = None;
    let mut interval_s = 0i64;
    for w in windows {
        let s: String = w.try_get("serial")?;
        let from: i64 = w.try_get("from_ts")?;
        let to: Option<i64> = w.try_get("to_ts")?;
        interval_s = interval_s.max(w.try_get::<Option<i64>, _>("reading_interval_s")?.unwrap_or(300));
        let rows = sqlx::query(
            "SELECT ts, temp_c, received_at FROM readings WHERE serial = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
        )
        .bind(&s)
        .bind(start.max(from))
        .bind(to.unwrap_or(i64::MAX).min(end))
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            samples.push(Sample {
                ts: r.try_get("ts")?,
                temp_c: r.try_get("temp_c")?,
                received_at: r.try_get("received_at")?,
            });
        }
        serial = Some(s);
    }
    samples.sort_by_key(|s| s.ts);
    Ok((samples, serial, 2 * interval_s.max(1) * 1000))
}

/// Writes an episode; returns its id and whether it was open before this write.
async fn upsert_excursion(
    tx: &mut Transaction<'static, Any>,
    unit_id: i64,
    serial: &str,
    ep: &Episode,
    range: (f64, f64),
    late_ms: i64,
    now: i64,
) -> anyhow::Result<(i64, bool)> {
    let before = sqlx::query("SELECT id, ended_at, alerted FROM excursions WHERE unit_id = $1 AND started_at = $2")
        .bind(unit_id)
        .bind(ep.started_at)
        .fetch_optional(&mut **tx)
        .await?;
    let status = if ep.ended_at.is_some() { "closed" } else { "open" };
    if let Some(b) = before {
        let id: i64 = b.try_get("id")?;
        let was_open_alerted =
            b.try_get::<Option<i64>, _>("ended_at")?.is_none() && b.try_get::<i64, _>("alerted")? == 1;
        sqlx::query(
            "UPDATE excursions SET ended_at = $1, last_reading_at = $2, min_c = $3, max_c = $4, readings = $5, \
             out_ms = $6, unknown_ms = $7, above_range = $8, below_range = $9, \
             status = CASE WHEN status = 'reviewed' THEN status ELSE $10 END, updated_at = $11 WHERE id = $12",
        )
        .bind(ep.ended_at)
        .bind(ep.last_reading_at)
        .bind(ep.min_c)
        .bind(ep.max_c)
        .bind(ep.readings as i64)
        .bind(ep.out_ms)
        .bind(ep.unknown_ms)
        .bind(ep.above as i64)
        .bind(ep.below as i64)
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        return Ok((id, was_open_alerted));
    }
    let detected_late = (ep.first_received_at - ep.started_at > late_ms) as i64;
    let id: i64 = sqlx::query(
        "INSERT INTO excursions (unit_id, serial, started_at, ended_at, last_reading_at, min_c, max_c, readings, out_ms, \
         unknown_ms, above_range, below_range, range_min_c, range_max_c, status, alerted, detected_late, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, $16, $17, $17) RETURNING id",
    )
    .bind(unit_id)
    .bind(serial)
    .bind(ep.started_at)
    .bind(ep.ended_at)
    .bind(ep.last_reading_at)
    .bind(ep.min_c)
    .bind(ep.max_c)
    .bind(ep.readings as i64)
    .bind(ep.out_ms)
    .bind(ep.unknown_ms)
    .bind(ep.above as i64)
    .bind(ep.below as i64)
    .bind(range.0)
    .bind(range.1)
    .bind(status)
    .bind(detected_late)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok((id, false))
}

/// Why nobody is paged for a rule met at `met_at` (received at `received_at`), if so.
async fn suppression(
    tx: &mut Transaction<'static, Any>,
    unit_id: i64,
    hit: &Hit,
    late_limit_ms: i64,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let downtime = sqlx::query(
        "SELECT kind, reason FROM unit_downtime WHERE unit_id = $1 AND from_ts <= $2 AND (until_ts IS NULL OR until_ts > $2) \
         ORDER BY from_ts DESC LIMIT 1",
    )
    .bind(unit_id)
    .bind(hit.met_at)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(d) = downtime {
        let kind: String = d.try_get("kind")?;
        let reason: String = d.try_get("reason")?;
        return Ok(Some(format!("unit {} : {reason}", kind.replace('_', " "))));
    }
    // domain: readings older than a day when they arrive are recorded, not paged as if now.
    if now - hit.met_at > late_limit_ms && hit.met_received_at - hit.met_at > late_limit_ms {
        return Ok(Some(
            "readings arrived more than the program's late-page limit after they were taken".into(),
        ));
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
async fn record_alarm(
    tx: &mut Transaction<'static, Any>,
    links: &outbox::Links,
    unit_id: i64,
    rule: &Rule,
    hit: &Hit,
    found: &[Episode],
    ids: &[i64],
    program: &rules::ProgramSettings,
    now: i64,
) -> anyhow::Result<()> {
    let suppressed = suppression(
        tx,
        unit_id,
        hit,
        (program.late_page_limit_hours * 3_600_000.0) as i64,
        now,
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO alarms (unit_id, rule_id, rule, anchor_ts, met_at, severity, paged, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (unit_id, rule_id, anchor_ts) DO NOTHING RETURNING id",
    )
    .bind(unit_id)
    .bind(&rule.id)
    .bind(serde_json::to_string(rule)?)
    .bind(hit.anchor_ts)
    .bind(hit.met_at)
    .bind(
        serde_json::to_value(rule.severity)?
            .as_str()
            .unwrap_or("critical")
            .to_string(),
    )
    .bind(suppressed.is_none() as i64)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = inserted else { return Ok(()) };
    let alarm_id: i64 = row.try_get("id")?;
    // The excursions the rule's readings fall in; the one holding the reading that met it
    // carries the email.
    let mut lead = None;
    let mut linked = Vec::new();
    for (ep, id) in found.iter().zip(ids) {
        let overlaps = ep.started_at <= hit.span.1 && ep.end_or_last() >= hit.span.0;
        if !overlaps {
            continue;
        }
        sqlx::query("INSERT INTO alarm_excursions (alarm_id, excursion_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(alarm_id)
            .bind(*id)
            .execute(&mut **tx)
            .await?;
        linked.push(*id);
        if ep.started_at <= hit.met_at && ep.end_or_last() >= hit.met_at {
            lead = Some(*id);
        }
        lead = lead.or(Some(*id));
    }
    let Some(lead) = lead else { return Ok(()) };
    match &suppressed {
        Some(reason) => {
            sqlx::query("UPDATE excursions SET suppressed = $1 WHERE id = $2 AND alerted = 0")
                .bind(reason)
                .bind(lead)
                .execute(&mut **tx)
                .await?;
        }
        None => {
            // One alert per excursion, whichever of its rules is met first.
            let first = sqlx::query(
                "UPDATE excursions SET alerted = 1, suppressed = NULL, alerted_at = $2, last_notified_at = $2 \
                 WHERE id = $1 AND alerted = 0",
            )
            .bind(lead)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                == 1;
            if first {
                outbox::alert(tx, links, lead, rule).await?;
            }
            // A cumulative rule met by several short episodes: the alarm covers them all.
            for id in linked {
                sqlx::query("UPDATE excursions SET alerted = 1, suppressed = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}
