//! Units whose logger has gone quiet ("no data"), as the device checks stored them, for the
//! state home: read, never recomputed per view.

use sqlx::Row;

use crate::error::Result;
use crate::store::listing::{Attention, Listing, Window};
use crate::store::Db;

/// Units with an open "no data" episode, the longest silent first.
pub async fn no_data(db: &Db, w: Window) -> Result<Listing> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM device_alerts WHERE kind = 'no_data' AND ended_at IS NULL")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(
        "SELECT d.unit_id, d.serial, d.started_at, d.acknowledged_at, p.location_code, p.location_name, p.unit_name \
         FROM device_alerts d JOIN unit_places p ON p.unit_id = d.unit_id \
         WHERE d.kind = 'no_data' AND d.ended_at IS NULL ORDER BY d.started_at, d.id LIMIT $1 OFFSET $2",
    )
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let unit: String = r.try_get("unit_name")?;
            let serial: String = r.try_get("serial")?;
            Ok(Attention {
                key: r.try_get::<i64, _>("unit_id")?.to_string(),
                location_code: r.try_get("location_code")?,
                place: r.try_get("location_name")?,
                what: if serial.is_empty() {
                    format!("{unit}: no logger sends readings")
                } else {
                    format!("{unit}: no readings from logger {serial}")
                },
                since: Some(r.try_get("started_at")?),
                due: None,
                first: r.try_get::<Option<i64>, _>("acknowledged_at")?.is_none(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}
