//! End-to-end confirmation for gateways (docs/architecture.md: `gateway`, `epoch`, `seq`).
//!
//! The mark N of (gateway, epoch, serial) means every reading with `seq` ≤ N is committed —
//! stored, a duplicate, or a dead letter. A seq that arrives past a gap waits in
//! `gateway_pending` and the mark stops at the gap until the missing seq arrives. The mark is
//! computed inside the ingest transaction, under the mark row's lock on PostgreSQL, so it
//! survives restarts and is the same whichever instance publishes it.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Any, Row, Transaction};

use crate::registry::gateways;
use crate::store::Db;

/// Most seqs kept waiting past a gap per (gateway, epoch, serial). A gateway whose seqs jump
/// far ahead (a bug, or a forged gap) fills this and no more: the seqs past it are dropped,
/// counted and shown on the gateway, and the mark waits until the gateway sends them again
/// (it republishes whatever stays unconfirmed), so dropping one loses no reading.
pub const MAX_PENDING: usize = 10_000;

/// (gateway, epoch, serial)
pub type Key = (String, String, String);

/// Folds the seqs a batch committed into the marks; returns each key's mark afterwards.
pub async fn advance(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    seqs: BTreeMap<Key, BTreeSet<u64>>,
    now: i64,
) -> Result<Vec<(Key, u64)>, sqlx::Error> {
    let mut marks = Vec::with_capacity(seqs.len());
    // BTreeMap order: keys are locked in one global order, so two instances cannot deadlock.
    for (key, new) in seqs {
        let (gateway, epoch, serial) = &key;
        sqlx::query(
            "INSERT INTO gateway_marks (gateway, epoch, serial, seq, updated_at) VALUES ($1, $2, $3, 0, $4) \
             ON CONFLICT (gateway, epoch, serial) DO NOTHING",
        )
        .bind(gateway)
        .bind(epoch)
        .bind(serial)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let lock = db.dialect().for_update();
        let mark: i64 = sqlx::query(&format!(
            "SELECT seq FROM gateway_marks WHERE gateway = $1 AND epoch = $2 AND serial = $3{lock}"
        ))
        .bind(gateway)
        .bind(epoch)
        .bind(serial)
        .fetch_one(&mut **tx)
        .await?
        .try_get("seq")?;
        let mut mark = mark as u64;
        let mut ahead: BTreeSet<u64> = new.into_iter().filter(|s| *s > mark).collect();
        if ahead.is_empty() {
            marks.push((key, mark));
            continue;
        }
        // Seqs that arrived earlier past a gap may now be reachable.
        let pending = sqlx::query("SELECT seq FROM gateway_pending WHERE gateway = $1 AND epoch = $2 AND serial = $3")
            .bind(gateway)
            .bind(epoch)
            .bind(serial)
            .fetch_all(&mut **tx)
            .await?;
        let had_pending = !pending.is_empty();
        let mut was_pending = BTreeSet::new();
        for r in pending {
            was_pending.insert(r.try_get::<i64, _>("seq")? as u64);
        }
        ahead.extend(was_pending.iter().copied());
        let old_mark = mark;
        while ahead.first() == Some(&(mark + 1)) {
            mark += 1;
            ahead.pop_first();
        }
        if had_pending {
            sqlx::query("DELETE FROM gateway_pending WHERE gateway = $1 AND epoch = $2 AND serial = $3 AND seq <= $4")
                .bind(gateway)
                .bind(epoch)
                .bind(serial)
                .bind(mark as i64)
                .execute(&mut **tx)
                .await?;
        }
        let still_pending = was_pending.iter().filter(|s| **s > mark).count();
        let room = MAX_PENDING.saturating_sub(still_pending);
        let fresh: Vec<u64> = ahead.difference(&was_pending).copied().collect();
        if fresh.len() > room {
            let dropped = (fresh.len() - room) as u64;
            metrics::counter!("vfc_gateway_gaps_dropped_total").increment(dropped);
            tracing::warn!(%gateway, %serial, dropped, "gateway seqs past a gap over the cap: dropped until sent again");
            gateways::gaps_dropped(tx, gateway, dropped).await?;
        }
        for s in fresh.iter().take(room) {
            sqlx::query(
                "INSERT INTO gateway_pending (gateway, epoch, serial, seq) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(gateway)
            .bind(epoch)
            .bind(serial)
            .bind(*s as i64)
            .execute(&mut **tx)
            .await?;
        }
        if mark != old_mark {
            sqlx::query(
                "UPDATE gateway_marks SET seq = $1, updated_at = $2 WHERE gateway = $3 AND epoch = $4 AND serial = $5",
            )
            .bind(mark as i64)
            .bind(now)
            .bind(gateway)
            .bind(epoch)
            .bind(serial)
            .execute(&mut **tx)
            .await?;
        }
        marks.push((key, mark));
    }
    Ok(marks)
}
