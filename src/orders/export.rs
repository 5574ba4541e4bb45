//! What the state sends the distributor (README, "Ordering", with an example): an export batch
//! holds every approved order not yet exported and marks them sent; it is kept, so a lost
//! response loses nothing.

use sqlx::Row;

use super::{head, transition, view, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

pub const EXPORT_COLUMNS: [&str; 12] = [
    "order_id",
    "line_id",
    "pin",
    "suffix",
    "ship_to",
    "delivery_hours",
    "instructions",
    "ndc",
    "funding",
    "doses",
    "urgent",
    "approved_at",
];

/// An export batch: its id and the CSV.
pub struct Batch {
    pub id: i64,
    pub csv: String,
    pub orders: i64,
}

/// `POST /api/v1/orders/export` (state): every approved order not yet exported, marked sent.
pub async fn export(db: &Db, caller: &Caller) -> Result<Batch> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query("SELECT id FROM orders WHERE status = 'approved' AND export_batch_id IS NULL ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.try_get("id")).collect::<sqlx::Result<_>>()?;
    let mut lines = view::lines_of(&mut tx, &ids).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(EXPORT_COLUMNS).map_err(csv_error)?;
    let now = now_millis();
    let batch: i64 = sqlx::query(
        "INSERT INTO order_exports (csv, orders, created_by, created_at) VALUES ('', $1, $2, $3) RETURNING id",
    )
    .bind(ids.len() as i64)
    .bind(caller.actor())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let mut places = Vec::new();
    for id in &ids {
        let order = head(&mut tx, &caller.scope, *id).await?;
        places.push((order.pin.clone(), order.location.clone()));
        let r = sqlx::query("SELECT urgent, approved_at FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let (profile, _) = super::profile::stored(&mut tx, &order.location).await?;
        let suffix = order.location.strip_prefix(order.pin.as_str()).map(str::to_string);
        let urgent = r.try_get::<i64, _>("urgent")? != 0;
        let approved_at: Option<i64> = r.try_get("approved_at")?;
        for l in lines.remove(id).unwrap_or_default() {
            if l.closed_at.is_some() || l.wanted() == 0 {
                continue;
            }
            out.write_record([
                id.to_string(),
                l.id.to_string(),
                order.pin.clone(),
                suffix.clone().unwrap_or_default(),
                profile.ship_to.clone().unwrap_or_default(),
                profile.delivery_hours.clone().unwrap_or_default(),
                profile.instructions.clone().unwrap_or_default(),
                l.ndc.clone(),
                l.funding.clone(),
                l.wanted().to_string(),
                urgent.to_string(),
                approved_at.map(rfc3339).unwrap_or_default(),
            ])
            .map_err(csv_error)?;
        }
        sqlx::query("UPDATE orders SET export_batch_id = $1 WHERE id = $2")
            .bind(batch)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        transition(
            &mut tx,
            &order,
            Status::Sent,
            &caller.actor(),
            Some(&format!("export batch {batch}")),
        )
        .await?;
    }
    let csv = String::from_utf8(out.into_inner().map_err(|e| csv_error(e.into_error()))?).expect("CSV of UTF-8 fields");
    sqlx::query("UPDATE order_exports SET csv = $1 WHERE id = $2")
        .bind(&csv)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
    // One row for the request: the orders it sent (by their ids, so each order's trail finds
    // it), placed at their location when they are all of one.
    let entry = if ids.is_empty() {
        audit::Entry::new("orders.export", "order_export", [batch])
    } else {
        audit::Entry::new("orders.export", "order", ids.clone())
    }
    .changed("export_batch", serde_json::Value::Null, batch)
    .changed("status", Status::Approved.as_str(), Status::Sent.as_str());
    let entry = match super::one_place(&places) {
        Some((pin, code)) => entry.at(Some(pin), Some(code)),
        None => entry,
    };
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Batch {
        id: batch,
        csv,
        orders: ids.len() as i64,
    })
}

fn csv_error(e: impl std::fmt::Display) -> Error {
    Error::Database(sqlx::Error::Protocol(format!("writing CSV: {e}")))
}

/// `GET /api/v1/orders/exports/{id}` (state): the batch as it was sent.
pub async fn batch(db: &Db, id: i64) -> Result<Batch> {
    let r = sqlx::query("SELECT id, csv, orders FROM order_exports WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no export batch {id}")))?;
    Ok(Batch {
        id,
        csv: r.try_get("csv")?,
        orders: r.try_get("orders")?,
    })
}
