//! Dead letters: payloads the ingest refused, with the reason (a bad payload never takes the
//! service down and is never lost without a trace). This module owns `dead_letters`.

use serde::Serialize;
use sqlx::{Any, Row};
use utoipa::ToSchema;

use crate::error::Result;
use crate::store::{rfc3339, Db, Page};

/// Dead letters keep the start of the payload: enough to see what was wrong, bounded in size.
const KEEP: usize = 4096;
/// The most dead letters kept: a sender that sends nothing but garbage fills the table to
/// here, and the oldest go (counted in `vfc_dead_letters_pruned_total`).
pub const KEEP_ROWS: i64 = 100_000;

/// A refused message, ready to store.
#[derive(Debug)]
pub struct Refused {
    topic: String,
    payload: String,
    bytes: usize,
    reason: String,
}

/// A refused message: its topic, the start of its payload, and why.
pub fn dead(topic: &str, payload: &[u8], reason: String) -> Refused {
    let keep = &payload[..payload.len().min(KEEP)];
    // PostgreSQL text cannot hold NUL: show it as the replacement character.
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    Refused {
        topic: clean(topic),
        payload: clean(&String::from_utf8_lossy(keep)),
        bytes: payload.len(),
        reason: clean(&reason),
    }
}

/// Removes the oldest dead letters beyond the newest `keep`; how many went.
pub async fn prune<'e, E: sqlx::Executor<'e, Database = Any>>(
    exec: E,
    keep: i64,
) -> std::result::Result<u64, sqlx::Error> {
    let gone = sqlx::query("DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - $1")
        .bind(keep)
        .execute(exec)
        .await?
        .rows_affected();
    if gone > 0 {
        metrics::counter!("vfc_dead_letters_pruned_total").increment(gone);
        tracing::warn!(
            pruned = gone,
            kept = keep,
            "dead letters over their limit: the oldest were removed"
        );
    }
    Ok(gone)
}

pub async fn insert<'e, E: sqlx::Executor<'e, Database = Any>>(
    exec: E,
    d: &Refused,
    at: i64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (topic, payload, payload_bytes, reason, received_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&d.topic)
    .bind(&d.payload)
    .bind(d.bytes as i64)
    .bind(&d.reason)
    .bind(at)
    .execute(exec)
    .await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    /// The payload's first 4 KiB, as text.
    pub payload: String,
    pub payload_bytes: i64,
    pub reason: String,
    pub received_at: String,
}

/// Dead letters with an id below `page.after`, newest first; and the cursor of the next page,
/// if there is one.
pub async fn page(db: &Db, page: Page) -> Result<(Vec<DeadLetter>, Option<i64>)> {
    let rows = sqlx::query(
        "SELECT id, topic, payload, payload_bytes, reason, received_at FROM dead_letters \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(page.after.unwrap_or(i64::MAX))
    .bind(page.limit + 1)
    .fetch_all(&db.pool)
    .await?;
    let out = rows
        .iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get("id")?,
                topic: r.try_get("topic")?,
                payload: r.try_get("payload")?,
                payload_bytes: r.try_get("payload_bytes")?,
                reason: r.try_get("reason")?,
                received_at: rfc3339(r.try_get("received_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(page.cut(out, |d| d.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_their_limit_the_oldest_dead_letters_go_and_the_newest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::config::DatabaseUrl::Sqlite(dir.path().join("t.db"));
        let db = Db::connect(&url).await.unwrap();
        for i in 0..5 {
            insert(&db.pool, &dead("vfc/loggers/X/readings", b"{", format!("bad {i}")), i)
                .await
                .unwrap();
        }
        assert_eq!(prune(&db.pool, 3).await.unwrap(), 2);
        let (kept, _) = page(&db, Page::first()).await.unwrap();
        let reasons: Vec<&str> = kept.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons, ["bad 4", "bad 3", "bad 2"]);
        assert_eq!(prune(&db.pool, 3).await.unwrap(), 0, "within the limit nothing goes");
    }
}
