//! The program's open excursions, oldest first, for the state home: read from the stored
//! excursions (their status is kept as readings arrive), never recomputed per view.

use sqlx::Row;

use crate::error::Result;
use crate::store::listing::{Attention, Listing, Window};
use crate::store::Db;

/// Open excursions across the program, the oldest first; an unacknowledged one is `first`.
pub async fn open(db: &Db, w: Window) -> Result<Listing> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM excursions WHERE status = 'open'")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(
        "SELECT e.id, e.started_at, e.min_c, e.max_c, e.acknowledged_at, e.acknowledged_by, \
                p.location_code, p.location_name, p.unit_name \
         FROM excursions e JOIN unit_places p ON p.unit_id = e.unit_id \
         WHERE e.status = 'open' ORDER BY e.started_at, e.id LIMIT $1 OFFSET $2",
    )
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let acknowledged: Option<i64> = r.try_get("acknowledged_at")?;
            let by: Option<String> = r.try_get("acknowledged_by")?;
            let unit: String = r.try_get("unit_name")?;
            let (lo, hi): (f64, f64) = (r.try_get("min_c")?, r.try_get("max_c")?);
            Ok(Attention {
                key: r.try_get::<i64, _>("id")?.to_string(),
                location_code: r.try_get("location_code")?,
                place: r.try_get("location_name")?,
                what: match by {
                    Some(by) if acknowledged.is_some() => {
                        format!("{unit}: {lo:.1} to {hi:.1} °C, acknowledged by {by}")
                    }
                    _ => format!("{unit}: {lo:.1} to {hi:.1} °C, not acknowledged"),
                },
                since: Some(r.try_get("started_at")?),
                due: None,
                first: acknowledged.is_none(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}
