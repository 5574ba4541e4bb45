//! What the evaluator writes as it judges a unit's readings, inside the unit's savepoint.
//!
//! Writes are keyed so re-judging the same readings changes nothing: an excursion by (unit,
//! start), an alarm by (unit, rule, first reading that counted). Re-evaluation after backfilled
//! or out-of-order readings therefore never duplicates an excursion or an email.

use sqlx::{AnyConnection, Row};

use crate::coldchain::episodes::{Episode, Hit};
use crate::coldchain::rules::Rule;
use crate::coldchain::stock::Alarmed;
use crate::error::Result;

/// Takes SQLite's write lock at once (a write that matches no row still takes it), so a
/// transaction that reads and then writes cannot find its snapshot outdated by another
/// writer's commit in between. PostgreSQL locks the rows it selects instead.
pub async fn claim_writer(tx: &mut AnyConnection) -> Result<()> {
    sqlx::query("UPDATE excursions SET id = id WHERE id < 0")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The start of the earliest excursion on record that is still running at `start` (so a
/// re-evaluation never cuts through one), if any.
pub async fn running_at(tx: &mut AnyConnection, unit_id: i64, start: i64) -> Result<Option<i64>> {
    Ok(sqlx::query(
        "SELECT MIN(started_at) AS s FROM excursions WHERE unit_id = $1 AND started_at < $2 \
         AND (ended_at IS NULL OR ended_at >= $2)",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_one(&mut *tx)
    .await?
    .try_get::<Option<i64>, _>("s")?)
}

/// How an episode is written.
pub struct Written {
    pub id: i64,
    /// It was open and someone had been paged before this write: if it is closed now, the
    /// people told get "back in range".
    pub was_open_and_alerted: bool,
}

/// Writes an episode: a new excursion, or the same one (same unit and start) brought up to date.
pub async fn upsert(
    tx: &mut AnyConnection,
    unit_id: i64,
    serial: &str,
    ep: &Episode,
    range: (f64, f64),
    late_ms: i64,
    now: i64,
) -> Result<Written> {
    let mut before = sqlx::query("SELECT id, ended_at, alerted FROM excursions WHERE unit_id = $1 AND started_at = $2")
        .bind(unit_id)
        .bind(ep.started_at)
        .fetch_optional(&mut *tx)
        .await?;
    if before.is_none() {
        // A fragment on record that this episode contains: readings of a backlog judged before
        // the earlier ones arrived. It becomes the whole excursion, keeping its id, so whoever
        // was paged, the holds placed and every link emailed go on pointing at one excursion
        // (docs/domain.md: an excursion runs from the first reading out of range to the first
        // back in, whatever order they arrive in). A paged fragment first.
        before = sqlx::query(
            "SELECT id, ended_at, alerted FROM excursions WHERE unit_id = $1 AND started_at > $2 AND started_at < $3 \
             ORDER BY alerted DESC, started_at LIMIT 1",
        )
        .bind(unit_id)
        .bind(ep.started_at)
        .bind(ep.ended_at.unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await?;
    }
    let status = if ep.ended_at.is_some() { "closed" } else { "open" };
    if let Some(b) = before {
        let id: i64 = b.try_get("id")?;
        let was_open_and_alerted =
            b.try_get::<Option<i64>, _>("ended_at")?.is_none() && b.try_get::<i64, _>("alerted")? == 1;
        sqlx::query(
            "UPDATE excursions SET ended_at = $1, last_reading_at = $2, min_c = $3, max_c = $4, readings = $5, \
             out_ms = $6, unknown_ms = $7, above_range = $8, below_range = $9, \
             status = CASE WHEN status = 'reviewed' THEN status ELSE $10 END, updated_at = $11, started_at = $13 \
             WHERE id = $12",
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
        .bind(ep.started_at)
        .execute(&mut *tx)
        .await?;
        return Ok(Written {
            id,
            was_open_and_alerted,
        });
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
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    Ok(Written {
        id,
        was_open_and_alerted: false,
    })
}

/// Removes excursions from `start` on that re-evaluation no longer finds (an earlier reading
/// arrived and split or shortened them) — unless someone was paged or has reviewed them.
pub async fn drop_stale(tx: &mut AnyConnection, unit_id: i64, start: i64, found_starts: &[i64]) -> Result<()> {
    let stale = sqlx::query(
        "SELECT id, started_at FROM excursions WHERE unit_id = $1 AND started_at >= $2 AND alerted = 0 AND status <> 'reviewed'",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_all(&mut *tx)
    .await?;
    for s in stale {
        if found_starts.contains(&s.try_get::<i64, _>("started_at")?) {
            continue;
        }
        let id: i64 = s.try_get("id")?;
        sqlx::query("DELETE FROM alarm_excursions WHERE excursion_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM excursions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Records a rule met, once per (unit, rule, anchor); `None` when it was on record already.
pub async fn new_alarm(
    tx: &mut AnyConnection,
    unit_id: i64,
    rule: &Rule,
    hit: &Hit,
    paged: bool,
    now: i64,
) -> Result<Option<i64>> {
    let snapshot = serde_json::to_string(rule).expect("a rule serialises");
    let row = sqlx::query(
        "INSERT INTO alarms (unit_id, rule_id, rule, anchor_ts, met_at, severity, paged, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (unit_id, rule_id, anchor_ts) DO NOTHING RETURNING id",
    )
    .bind(unit_id)
    .bind(&rule.id)
    .bind(snapshot)
    .bind(hit.anchor_ts)
    .bind(hit.met_at)
    .bind(rule.severity.as_str())
    .bind(paged as i64)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// The (rule, anchor) keys of a unit's alarms anchored at or after `from`: a rule met again on
/// re-judging is already on record and costs nothing more.
pub async fn alarm_keys(
    tx: &mut AnyConnection,
    unit_id: i64,
    from: i64,
) -> Result<std::collections::HashSet<(String, i64)>> {
    let rows = sqlx::query("SELECT rule_id, anchor_ts FROM alarms WHERE unit_id = $1 AND anchor_ts >= $2")
        .bind(unit_id)
        .bind(from)
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("rule_id")?, r.try_get("anchor_ts")?)))
        .collect()
}

/// Links an alarm to an excursion its readings fall in.
pub async fn link(tx: &mut AnyConnection, alarm_id: i64, excursion_id: i64) -> Result<()> {
    sqlx::query("INSERT INTO alarm_excursions (alarm_id, excursion_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(alarm_id)
        .bind(excursion_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Records why nobody was paged for an excursion (not once someone has been).
pub async fn suppress(tx: &mut AnyConnection, excursion_id: i64, reason: &str) -> Result<()> {
    sqlx::query("UPDATE excursions SET suppressed = $1 WHERE id = $2 AND alerted = 0")
        .bind(reason)
        .bind(excursion_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Marks an excursion alerted; true when this is its first alert (so the caller emails once,
/// whichever of its rules is met first). Escalation counts from now.
pub async fn first_alert(tx: &mut AnyConnection, excursion_id: i64, now: i64) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE excursions SET alerted = 1, suppressed = NULL, alerted_at = $2, last_notified_at = $2 \
         WHERE id = $1 AND alerted = 0",
    )
    .bind(excursion_id)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1)
}

/// Marks an excursion covered by an alarm whose email another excursion carries (a cumulative
/// rule met across several short episodes).
pub async fn covered(tx: &mut AnyConnection, excursion_id: i64) -> Result<()> {
    sqlx::query("UPDATE excursions SET alerted = 1, suppressed = NULL WHERE id = $1")
        .bind(excursion_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Excursions of the unit that met a rule, are not reviewed, and were running at or after
/// `start`: their lots must be on hold.
/// One excursion as its holds need it, if it exists.
pub async fn alarmed_one(tx: &mut AnyConnection, id: i64) -> Result<Option<Alarmed>> {
    let row = sqlx::query(
        "SELECT e.id, e.unit_id, p.location_code, e.started_at, e.ended_at, e.above_range \
         FROM excursions e JOIN unit_places p ON p.unit_id = e.unit_id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| {
        Ok(Alarmed {
            id: r.try_get("id")?,
            unit_id: r.try_get("unit_id")?,
            location_code: r.try_get("location_code")?,
            started_at: r.try_get("started_at")?,
            ended_at: r.try_get("ended_at")?,
            above_range: r.try_get::<i64, _>("above_range")? == 1,
        })
    })
    .transpose()
}

pub async fn alarmed_since(tx: &mut AnyConnection, unit_id: i64, start: i64) -> Result<Vec<Alarmed>> {
    let rows = sqlx::query(
        "SELECT DISTINCT e.id, e.unit_id, p.location_code, e.started_at, e.ended_at, e.above_range \
         FROM alarm_excursions ae JOIN excursions e ON e.id = ae.excursion_id JOIN unit_places p ON p.unit_id = e.unit_id \
         WHERE e.unit_id = $1 AND e.status <> 'reviewed' AND (e.ended_at IS NULL OR e.ended_at >= $2) ORDER BY e.id",
    )
    .bind(unit_id)
    .bind(start)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Alarmed {
                id: r.try_get("id")?,
                unit_id: r.try_get("unit_id")?,
                location_code: r.try_get("location_code")?,
                started_at: r.try_get("started_at")?,
                ended_at: r.try_get("ended_at")?,
                above_range: r.try_get::<i64, _>("above_range")? == 1,
            })
        })
        .collect()
}

/// An alerted excursion nobody has acknowledged, as escalation weighs it.
#[derive(Debug, Clone)]
pub struct Unacknowledged {
    pub id: i64,
    pub alerted_at: i64,
    pub level: i64,
    pub last_notified_at: Option<i64>,
}

/// Alerted, unacknowledged, unreviewed excursions whose last email was at or before `quiet_since`,
/// taken so two instances never escalate the same one (see [`crate::store::Dialect::skip_locked`]).
pub async fn unacknowledged(tx: &mut AnyConnection, quiet_since: i64) -> Result<Vec<Unacknowledged>> {
    let lock = crate::store::Dialect::of(tx).skip_locked(Some("e"));
    let rows = sqlx::query(&format!(
        "SELECT e.id, e.alerted_at, e.escalation_level, e.last_notified_at FROM excursions e \
         WHERE e.alerted_at IS NOT NULL AND e.acknowledged_at IS NULL AND e.status <> 'reviewed' \
         AND (e.last_notified_at IS NULL OR e.last_notified_at <= $1) ORDER BY e.id LIMIT 100{lock}"
    ))
    .bind(quiet_since)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Unacknowledged {
                id: r.try_get("id")?,
                alerted_at: r.try_get("alerted_at")?,
                level: r.try_get("escalation_level")?,
                last_notified_at: r.try_get("last_notified_at")?,
            })
        })
        .collect()
}

/// Records an escalation step: who has been told now, and when.
pub async fn escalated(tx: &mut AnyConnection, excursion_id: i64, level: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE excursions SET escalation_level = $1, last_notified_at = $2 WHERE id = $3")
        .bind(level)
        .bind(now)
        .bind(excursion_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
