//! Files accepted readings into the record, the one way both the live ingest and the re-filing
//! of held readings do it: each (serial, ts) stored once, a resend with another temperature
//! kept as a dead letter with both values, and the serials queued for the cold chain's
//! evaluator from their earliest new reading — all in the caller's transaction.

use sqlx::{Any, Transaction};

use super::dead_letters::{self, dead, Refused};
use crate::readings::{self, NewReading};

/// What [`file`] did.
#[derive(Debug, Default)]
pub struct Filed {
    pub stored: u64,
    /// Resends with another temperature, as dead letters to insert.
    pub conflicts: Vec<Refused>,
}

/// Stores `rows` (sorted by serial and time, so concurrent instances lock in one order).
pub async fn file(
    tx: &mut Transaction<'static, Any>,
    rows: &[NewReading],
    received_at: i64,
) -> Result<Filed, sqlx::Error> {
    let inserted = readings::insert(tx, rows, received_at).await?;
    // The same (serial, time) again with another temperature: the first stays in the record,
    // the second is kept as a dead letter with both values, never dropped as a duplicate.
    let conflicts: Vec<Refused> = inserted
        .conflicts
        .iter()
        .map(|c| {
            let at = crate::store::rfc3339(c.ts);
            let payload =
                serde_json::json!({"serial": c.serial, "ts": at, "stored_temp_c": c.stored_c, "sent_temp_c": c.sent_c});
            dead(
                &format!("vfc/loggers/{}/readings", c.serial),
                payload.to_string().as_bytes(),
                format!(
                    "conflicting_duplicate: {} at {at} is stored as {} °C and was sent again as {} °C; the first is kept",
                    c.serial, c.stored_c, c.sent_c
                ),
            )
        })
        .collect();
    metrics::counter!("vfc_readings_conflicting_total").increment(conflicts.len() as u64);
    readings::dirty::mark(tx, rows.iter().map(|r| (r.serial.as_str(), r.ts))).await?;
    Ok(Filed {
        stored: inserted.stored,
        conflicts,
    })
}

/// Inserts dead letters and keeps their table within its cap.
pub async fn refuse(tx: &mut Transaction<'static, Any>, refused: &[Refused], at: i64) -> Result<(), sqlx::Error> {
    for d in refused {
        dead_letters::insert(&mut **tx, d, at).await?;
    }
    if !refused.is_empty() {
        dead_letters::prune(&mut **tx, dead_letters::KEEP_ROWS).await?;
    }
    Ok(())
}
