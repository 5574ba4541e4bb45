//! Held readings: kept in full, in no unit's record, never judged, because who sent them may
//! not speak for the logger ([`super::identity`]). This module owns `held_readings`.
//!
//! A held reading counts as committed for its gateway's confirmation (it is stored), is counted
//! in `/metrics` and listed for the state (`GET /api/v1/held-readings`). When the registry
//! changes so that it becomes acceptable — the gateway registered, the logger assigned at the
//! gateway's PIN for that time — [`refile`] moves it into the record, where the evaluator
//! judges it as late data.

use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::identity::{distinct, Context, Reason, Sender};
use super::record;
use crate::error::{Error, Result};
use crate::readings::NewReading;
use crate::registry::loggers;
use crate::store::{now_millis, rfc3339, Db, Page};

/// The most held readings kept: past it the oldest go (counted in
/// `vfc_held_readings_pruned_total`), so a misconfigured gateway cannot fill the disk.
pub const KEEP_ROWS: i64 = 100_000;

/// Held readings re-judged per transaction.
const REFILE_PAGE: i64 = 2_000;

/// A reading to hold.
#[derive(Debug, Clone)]
pub struct Hold {
    /// The topic's gateway; empty on a logger's own topic.
    pub gateway: String,
    pub serial: String,
    pub ts: i64,
    pub temp_c: f64,
    pub reason: Reason,
    /// The payload's `gateway`, when it was not the topic's.
    pub claimed: Option<String>,
}

/// Holds readings (a resend of one already held is kept once) and keeps the table within its
/// cap; returns how many were new.
pub async fn insert(
    tx: &mut Transaction<'static, Any>,
    held: &[Hold],
    at: i64,
) -> std::result::Result<u64, sqlx::Error> {
    let mut new = 0;
    for h in held {
        new += sqlx::query(
            "INSERT INTO held_readings (gateway, serial, ts, temp_c, reason, claimed_gateway, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (gateway, serial, ts) DO NOTHING",
        )
        .bind(&h.gateway)
        .bind(&h.serial)
        .bind(h.ts)
        .bind(h.temp_c)
        .bind(h.reason.as_str())
        .bind(h.claimed.clone())
        .bind(at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    if !held.is_empty() {
        prune(tx, KEEP_ROWS).await?;
    }
    Ok(new)
}

async fn prune(tx: &mut Transaction<'static, Any>, keep: i64) -> std::result::Result<u64, sqlx::Error> {
    let gone = sqlx::query("DELETE FROM held_readings WHERE id <= (SELECT MAX(id) FROM held_readings) - $1")
        .bind(keep)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if gone > 0 {
        metrics::counter!("vfc_held_readings_pruned_total").increment(gone);
        tracing::warn!(
            pruned = gone,
            kept = keep,
            "held readings over their limit: the oldest were removed"
        );
    }
    Ok(gone)
}

/// A held reading as the state sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldReading {
    pub id: i64,
    /// The gateway whose topic it came on; null on a logger's own topic.
    pub gateway: Option<String>,
    pub serial: String,
    pub ts: String,
    pub temp_c: f64,
    /// `unknown_gateway`, `logger_not_served_by_gateway`, `gateway_mismatch` or
    /// `unassigned_logger_cap`.
    pub reason: String,
    /// The gateway the payload claimed, when it was not the topic's.
    pub claimed_gateway: Option<String>,
    pub received_at: String,
}

/// What to list.
#[derive(Debug, Default)]
pub struct Filter {
    pub gateway: Option<String>,
    pub serial: Option<String>,
    pub reason: Option<String>,
}

/// Held readings below the cursor, newest first; and the cursor of the next page.
pub async fn page(db: &Db, filter: &Filter, page: Page) -> Result<(Vec<HeldReading>, Option<i64>)> {
    if let Some(r) = &filter.reason {
        if Reason::parse(r).is_none() {
            return Err(Error::Invalid(format!(
                "reason {r:?} is not one of unknown_gateway, logger_not_served_by_gateway, gateway_mismatch, unassigned_logger_cap"
            )));
        }
    }
    let rows = sqlx::query(
        "SELECT id, gateway, serial, ts, temp_c, reason, claimed_gateway, received_at FROM held_readings \
         WHERE id < $1 AND ($2 = '' OR gateway = $2) AND ($3 = '' OR serial = $3) AND ($4 = '' OR reason = $4) \
         ORDER BY id DESC LIMIT $5",
    )
    .bind(page.after.unwrap_or(i64::MAX))
    .bind(filter.gateway.clone().unwrap_or_default())
    .bind(filter.serial.clone().unwrap_or_default())
    .bind(filter.reason.clone().unwrap_or_default())
    .bind(page.limit + 1)
    .fetch_all(&db.pool)
    .await?;
    let out = rows
        .iter()
        .map(|r| {
            let gateway: String = r.try_get("gateway")?;
            Ok(HeldReading {
                id: r.try_get("id")?,
                gateway: (!gateway.is_empty()).then_some(gateway),
                serial: r.try_get("serial")?,
                ts: rfc3339(r.try_get("ts")?),
                temp_c: r.try_get("temp_c")?,
                reason: r.try_get("reason")?,
                claimed_gateway: r.try_get("claimed_gateway")?,
                received_at: rfc3339(r.try_get("received_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(page.cut(out, |h| h.id))
}

/// How many readings are held per gateway, for `ids`.
pub async fn count_by_gateway(db: &Db, ids: &[String]) -> Result<std::collections::HashMap<String, i64>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT gateway, COUNT(*) AS n FROM held_readings WHERE gateway IN ({}) GROUP BY gateway",
        crate::store::placeholders(ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("gateway")?, r.try_get("n")?)))
        .collect()
}

/// What [`refile`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refiled {
    /// Held readings now in a unit's record (or duplicates of readings already there).
    pub filed: u64,
    /// Held readings that stay held.
    pub still_held: u64,
}

/// Judges every held reading again against the registry as it is now, and files those that
/// have become acceptable. Run after anything that can make one so: a gateway registered, a
/// logger assigned, and at start.
pub async fn refile(db: &Db) -> Result<Refiled> {
    let mut done = Refiled::default();
    let mut after = 0i64;
    loop {
        let mut tx = db.begin().await?;
        let rows = sqlx::query(
            "SELECT id, gateway, serial, ts, temp_c, reason, claimed_gateway FROM held_readings \
             WHERE id > $1 AND reason <> $2 ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(Reason::GatewayMismatch.as_str())
        .bind(REFILE_PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("id")?;
        let mut held = Vec::with_capacity(rows.len());
        for r in &rows {
            held.push((
                r.try_get::<i64, _>("id")?,
                r.try_get::<String, _>("gateway")?,
                r.try_get::<String, _>("serial")?,
                r.try_get::<i64, _>("ts")?,
                r.try_get::<f64, _>("temp_c")?,
                r.try_get::<String, _>("reason")?,
            ));
        }
        let gateways: Vec<&str> = distinct(held.iter().map(|h| h.1.as_str()).filter(|g| !g.is_empty()));
        let serials: Vec<&str> = distinct(held.iter().map(|h| h.2.as_str()));
        let mut ctx = Context::load(&mut tx, &gateways, &serials).await?;
        let verdicts = ctx.judge_all(held.iter().map(|h| {
            let gateway = (!h.1.is_empty()).then_some(h.1.as_str());
            (
                Sender {
                    gateway,
                    claimed: gateway,
                },
                h.2.as_str(),
                h.3,
            )
        }));
        let mut rows_to_file = Vec::new();
        let mut filed_ids = Vec::new();
        let mut seen = Vec::new();
        for (h, verdict) in held.iter().zip(verdicts) {
            match verdict {
                Ok(()) => {
                    filed_ids.push(h.0);
                    rows_to_file.push(NewReading {
                        serial: h.2.clone(),
                        ts: h.3,
                        temp_c: h.4,
                        gateway: (!h.1.is_empty()).then(|| h.1.clone()),
                    });
                    seen.push((h.2.clone(), (!h.1.is_empty()).then(|| h.1.clone())));
                }
                Err(reason) => {
                    done.still_held += 1;
                    if reason.as_str() != h.5 {
                        sqlx::query("UPDATE held_readings SET reason = $1 WHERE id = $2")
                            .bind(reason.as_str())
                            .bind(h.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
        if !rows_to_file.is_empty() {
            let now = now_millis();
            rows_to_file.sort_by(|a, b| (&a.serial, a.ts).cmp(&(&b.serial, b.ts)));
            seen.sort();
            seen.dedup();
            loggers::seen(&mut tx, &seen, now).await?;
            let filed = record::file(&mut tx, &rows_to_file, now).await?;
            record::refuse(&mut tx, &filed.conflicts, now).await?;
            for chunk in filed_ids.chunks(500) {
                let sql = format!(
                    "DELETE FROM held_readings WHERE id IN ({})",
                    crate::store::placeholders(chunk.len())
                );
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            done.filed += filed_ids.len() as u64;
        }
        tx.commit().await?;
    }
    if done.filed > 0 {
        metrics::counter!("vfc_held_readings_refiled_total").increment(done.filed);
        tracing::info!(
            filed = done.filed,
            still_held = done.still_held,
            "held readings re-filed into the record"
        );
    }
    Ok(done)
}

/// How often held readings are judged again without a registry change asking for it (after a
/// re-filing that failed, or a change made by another instance).
const REFILE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Re-files held readings at start and every [`REFILE_EVERY`] until `cancel`.
pub async fn run(db: Db, cancel: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    loop {
        refile(&db).await?;
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(REFILE_EVERY) => {}
        }
    }
}
