//! The cold chain's queue of new readings (`coldchain_dirty`): one row per serial with the
//! earliest new reading's time, written in the same transaction as the readings themselves, so
//! a crash between storing readings and judging them loses nothing — the evaluator finds the
//! mark after a restart.

use sqlx::{Any, Row, Transaction};

use crate::error::Result;
use crate::store::Db;

/// A serial with readings not judged yet, from `since` on. `version` changes with every new
/// mark, so clearing a mark that moved meanwhile clears nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub serial: String,
    pub since: i64,
    pub version: i64,
}

/// Marks serials as having new readings from `since` (inside the transaction that stored them);
/// a serial given more than once is marked from its earliest time.
pub async fn mark<'a>(
    tx: &mut Transaction<'static, Any>,
    serials: impl IntoIterator<Item = (&'a str, i64)>,
) -> std::result::Result<(), sqlx::Error> {
    let version = rand::random::<i64>();
    // One row per serial, its earliest time: PostgreSQL refuses an upsert that meets a row
    // twice in one statement.
    let mut earliest: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (serial, since) in serials {
        let e = earliest.entry(serial).or_insert(since);
        *e = (*e).min(since);
    }
    let serials: Vec<(&str, i64)> = earliest.into_iter().collect();
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

/// Up to `limit` marks, oldest readings first.
pub async fn pending(db: &Db, limit: i64) -> Result<Vec<Mark>> {
    let rows = sqlx::query("SELECT serial, since_ts, version FROM coldchain_dirty ORDER BY since_ts LIMIT $1")
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Mark {
                serial: r.try_get("serial")?,
                since: r.try_get("since_ts")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// Clears a mark once judged — unless a newer one replaced it meanwhile (the next pass sees it).
pub async fn clear(tx: &mut Transaction<'static, Any>, mark: &Mark) -> Result<()> {
    sqlx::query("DELETE FROM coldchain_dirty WHERE serial = $1 AND version = $2")
        .bind(&mark.serial)
        .bind(mark.version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
