//! The program's stock that needs someone, for the state home: lots on "Do Not Use" hold
//! waiting for a manufacturer's determination, and lots on the shelf that expire soon.

use sqlx::Row;

use super::Result;
use crate::store::listing::{Attention, Listing, Window};
use crate::store::Db;

/// Open holds, the oldest first.
pub async fn holds(db: &Db, w: Window) -> Result<Listing> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM holds WHERE ended_at IS NULL")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(
        "SELECT h.id, h.excursion_id, h.placed_at, l.lot_number, l.funding, l.expires_on, pr.name AS product, \
                COALESCE(s.on_hand, 0) AS on_hand, p.location_code, p.location_name, p.unit_name \
         FROM holds h JOIN lots l ON l.id = h.lot_id JOIN products pr ON pr.ndc = l.ndc \
         JOIN unit_places p ON p.unit_id = h.unit_id \
         LEFT JOIN stock s ON s.unit_id = h.unit_id AND s.lot_id = h.lot_id \
         WHERE h.ended_at IS NULL ORDER BY h.placed_at, h.id LIMIT $1 OFFSET $2",
    )
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let excursion: Option<i64> = r.try_get("excursion_id")?;
            Ok(Attention {
                key: r.try_get::<i64, _>("id")?.to_string(),
                location_code: r.try_get("location_code")?,
                place: r.try_get("location_name")?,
                what: format!(
                    "{} lot {} ({}), {} doses in {}{}",
                    r.try_get::<String, _>("product")?,
                    r.try_get::<String, _>("lot_number")?,
                    r.try_get::<String, _>("funding")?.to_uppercase(),
                    r.try_get::<i64, _>("on_hand")?,
                    r.try_get::<String, _>("unit_name")?,
                    excursion.map_or(String::new(), |x| format!(", excursion {x}")),
                ),
                since: Some(r.try_get("placed_at")?),
                due: Some(r.try_get("expires_on")?),
                first: excursion.is_some(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}

/// Lots with doses on a shelf that expire by `until` (`YYYY-MM-DD`, inclusive), the soonest
/// first; `first` when they expire by `soon`. Expired lots are not listed: they are wastage
/// to record, which the location's inventory shows.
pub async fn expiring(db: &Db, today: &str, soon: &str, until: &str, w: Window) -> Result<Listing> {
    let total: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM stock s JOIN lots l ON l.id = s.lot_id \
         WHERE s.on_hand > 0 AND l.expires_on >= $1 AND l.expires_on <= $2",
    )
    .bind(today)
    .bind(until)
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(
        "SELECT l.id, l.lot_number, l.funding, l.expires_on, pr.name AS product, s.on_hand, \
                p.location_code, p.location_name, p.unit_name \
         FROM stock s JOIN lots l ON l.id = s.lot_id JOIN products pr ON pr.ndc = l.ndc \
         JOIN unit_places p ON p.unit_id = s.unit_id \
         WHERE s.on_hand > 0 AND l.expires_on >= $1 AND l.expires_on <= $2 \
         ORDER BY l.expires_on, l.id, s.unit_id LIMIT $3 OFFSET $4",
    )
    .bind(today)
    .bind(until)
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let expires: String = r.try_get("expires_on")?;
            Ok(Attention {
                key: r.try_get::<i64, _>("id")?.to_string(),
                location_code: r.try_get("location_code")?,
                place: r.try_get("location_name")?,
                what: format!(
                    "{} lot {} ({}), {} doses in {}",
                    r.try_get::<String, _>("product")?,
                    r.try_get::<String, _>("lot_number")?,
                    r.try_get::<String, _>("funding")?.to_uppercase(),
                    r.try_get::<i64, _>("on_hand")?,
                    r.try_get::<String, _>("unit_name")?,
                ),
                since: None,
                first: expires.as_str() <= soon,
                due: Some(expires),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}
