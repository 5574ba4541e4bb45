//! The program's orders that need the state, for the state home: orders in review (urgent
//! first), and locations whose stored order prerequisites fail. Both read stored statuses
//! (`order_readiness` is kept by the order upkeep), never recomputed per view.

use sqlx::Row;

use crate::error::Result;
use crate::store::listing::{Attention, Listing, Window};
use crate::store::Db;

/// Orders waiting for the state's review: urgent ones first, then the oldest submission.
pub async fn in_review(db: &Db, w: Window) -> Result<Listing> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE status = 'in_review'")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(
        "SELECT o.id, o.location_code, o.set_name, o.urgent, o.urgent_reason, o.submitted_at, \
                (SELECT COUNT(*) FROM order_lines x WHERE x.order_id = o.id) AS lines \
         FROM orders o WHERE o.status = 'in_review' \
         ORDER BY o.urgent DESC, o.submitted_at, o.id LIMIT $1 OFFSET $2",
    )
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let urgent = r.try_get::<i64, _>("urgent")? != 0;
            let reason: Option<String> = r.try_get("urgent_reason")?;
            let id: i64 = r.try_get("id")?;
            Ok(Attention {
                key: id.to_string(),
                location_code: r.try_get("location_code")?,
                place: None,
                what: format!(
                    "Order {id} ({} set, {} lines){}",
                    r.try_get::<String, _>("set_name")?,
                    r.try_get::<i64, _>("lines")?,
                    match (urgent, reason) {
                        (true, Some(why)) => format!(", urgent: {why}"),
                        (true, None) => ", urgent".to_string(),
                        _ => String::new(),
                    }
                ),
                since: r.try_get("submitted_at")?,
                due: None,
                first: urgent,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}

/// Locations whose stored prerequisites fail, by code; `what` names the failed checks.
pub async fn not_ready(db: &Db, w: Window) -> Result<Listing> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM order_readiness WHERE ready = 0")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(
        "SELECT location_code, checks, computed_at FROM order_readiness WHERE ready = 0 \
         ORDER BY location_code LIMIT $1 OFFSET $2",
    )
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let code: String = r.try_get("location_code")?;
            let checks: String = r.try_get("checks")?;
            // The stored checks, as GET …/orders/prerequisites answers them; unreadable ones
            // still list the location (its status says not ready).
            let failed: Vec<String> = serde_json::from_str::<Vec<super::readiness::Check>>(&checks)
                .map(|cs| {
                    cs.into_iter()
                        .filter(|c| !c.ok && c.waiver.is_none())
                        .map(|c| c.check.replace('_', " "))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Attention {
                key: code.clone(),
                location_code: code,
                place: None,
                what: if failed.is_empty() {
                    "Order prerequisites not met".to_string()
                } else {
                    format!("Not met: {}", failed.join(", "))
                },
                since: Some(r.try_get("computed_at")?),
                due: None,
                first: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}
