//! What is on the shelf: on hand per (unit, lot) with its status (usable, on hold, expiring
//! within 90 days, expired) and its cumulative exposure.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::exposure::{self, Exposure};
use super::{place, today, Error, Place, Result};
use crate::accounts::{Caller, Scope};
use crate::store::{now_millis, Db};

/// docs/domain.md: tell the program at least 90 days before stock would expire unused.
pub const EXPIRY_WARNING_DAYS: i64 = 90;

#[derive(Debug, Serialize, ToSchema)]
pub struct StockLine {
    pub location: String,
    pub lot_id: i64,
    pub ndc: String,
    pub cvx: String,
    pub product: String,
    pub lot: String,
    pub expires_on: String,
    /// vfc | private | state
    pub funding: String,
    pub unit_id: i64,
    pub unit: String,
    pub on_hand: i64,
    /// usable | on_hold | expiring | expired. Only usable and expiring stock may be given.
    pub status: String,
    /// Open holds on this stock ("Do Not Use"), with their excursion when there is one.
    pub holds: Vec<HoldRef>,
    pub exposure: Exposure,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldRef {
    pub hold_id: i64,
    pub excursion_id: Option<i64>,
    pub reason: String,
}

pub fn status(expires_on: &str, held: bool, today: chrono::NaiveDate) -> &'static str {
    let expiring_by = (today + chrono::Duration::days(EXPIRY_WARNING_DAYS))
        .format("%Y-%m-%d")
        .to_string();
    if held {
        "on_hold"
    } else if expires_on < today.format("%Y-%m-%d").to_string().as_str() {
        "expired"
    } else if expires_on <= expiring_by.as_str() {
        "expiring"
    } else {
        "usable"
    }
}

async fn lines(conn: &mut AnyConnection, place: &Place, include_empty: bool) -> Result<Vec<StockLine>> {
    let rows = sqlx::query(
        "SELECT s.lot_id, s.unit_id, s.on_hand, u.unit_name AS unit, l.ndc, l.lot_number, l.expires_on, l.funding, \
         p.cvx, p.name AS product FROM stock s JOIN lots l ON l.id = s.lot_id JOIN products p ON p.ndc = l.ndc \
         JOIN unit_places u ON u.unit_id = s.unit_id WHERE s.location_code = $1 AND (s.on_hand > 0 OR $2 = 1) \
         ORDER BY p.name, l.expires_on, l.lot_number, s.unit_id",
    )
    .bind(&place.code)
    .bind(include_empty as i64)
    .fetch_all(&mut *conn)
    .await?;
    let today = today(place.tz, now_millis());
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (lot_id, unit_id): (i64, i64) = (r.try_get("lot_id")?, r.try_get("unit_id")?);
        let holds: Vec<HoldRef> = sqlx::query(
            "SELECT id, excursion_id, reason FROM holds WHERE unit_id = $1 AND lot_id = $2 AND ended_at IS NULL ORDER BY id",
        )
        .bind(unit_id)
        .bind(lot_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|h| {
            Ok(HoldRef {
                hold_id: h.try_get("id")?,
                excursion_id: h.try_get("excursion_id")?,
                reason: h.try_get("reason")?,
            })
        })
        .collect::<sqlx::Result<_>>()?;
        let expires_on: String = r.try_get("expires_on")?;
        let exposure = exposure::for_lot(conn, lot_id, &[unit_id])
            .await?
            .remove(&unit_id)
            .unwrap_or_default();
        out.push(StockLine {
            location: place.code.clone(),
            lot_id,
            ndc: r.try_get("ndc")?,
            cvx: r.try_get("cvx")?,
            product: r.try_get("product")?,
            lot: r.try_get("lot_number")?,
            status: status(&expires_on, !holds.is_empty(), today).to_string(),
            expires_on,
            funding: r.try_get("funding")?,
            unit_id,
            unit: r.try_get("unit")?,
            on_hand: r.try_get("on_hand")?,
            holds,
            exposure,
        });
    }
    Ok(out)
}

fn keep(status: Option<&str>) -> Result<impl Fn(&StockLine) -> bool + '_> {
    if let Some(s) = status {
        if !["usable", "on_hold", "expiring", "expired"].contains(&s) {
            return Err(Error::Invalid(format!(
                "status {s:?} must be usable, on_hold, expiring or expired"
            )));
        }
    }
    Ok(move |l: &StockLine| status.is_none_or(|s| s == l.status))
}

/// Every unit that stores vaccine now (held or not).
pub async fn stocked_units(db: &Db) -> Result<Vec<i64>> {
    let rows = sqlx::query("SELECT DISTINCT unit_id FROM stock WHERE on_hand > 0 ORDER BY unit_id")
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("unit_id")?)).collect()
}

/// Whether vaccine is stored in a unit now (held or not).
pub async fn in_unit(db: &Db, unit_id: i64) -> Result<bool> {
    let lots: i64 = sqlx::query("SELECT COUNT(*) AS n FROM stock WHERE unit_id = $1 AND on_hand > 0")
        .bind(unit_id)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    Ok(lots > 0)
}

/// A location's stock.
pub async fn of_location(
    db: &Db,
    caller: &Caller,
    code: &str,
    status: Option<&str>,
    include_empty: bool,
) -> Result<Vec<StockLine>> {
    let keep = keep(status)?;
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    Ok(lines(&mut conn, &place, include_empty)
        .await?
        .into_iter()
        .filter(keep)
        .collect())
}

/// Stock across every location the caller sees (a state coordinator's view), by status.
pub async fn across(db: &Db, scope: &Scope, status: Option<&str>) -> Result<Vec<StockLine>> {
    let keep = keep(status)?;
    let mut conn = db.pool.acquire().await?;
    let codes: Vec<(String, String)> = sqlx::query(
        "SELECT DISTINCT p.location_code AS code, p.pin FROM stock s JOIN unit_places p ON p.unit_id = s.unit_id WHERE s.on_hand > 0 ORDER BY p.location_code",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("code")?, r.try_get("pin")?)))
    .collect::<sqlx::Result<_>>()?;
    let mut out = Vec::new();
    for (code, _) in codes.iter().filter(|(c, p)| scope.covers_code(p, c)) {
        let place = place(&mut conn, scope, code).await?;
        out.extend(lines(&mut conn, &place, false).await?.into_iter().filter(&keep));
    }
    Ok(out)
}

/// A lot's ledger at a location, checked against the caller's scope.
pub async fn ledger(db: &Db, caller: &Caller, code: &str, lot_id: i64) -> Result<Vec<super::ledger::Event>> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let events = super::ledger::of_lot(&mut conn, &place.code, lot_id).await?;
    if events.is_empty() {
        return Err(Error::NotFound(format!("lot {lot_id} has no ledger at {}", place.code)));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_flagged_90_days_ahead() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert_eq!(status("2026-11-24", false, today), "expired");
        assert_eq!(status("2026-11-25", false, today), "expiring");
        assert_eq!(status("2027-02-23", false, today), "expiring");
        assert_eq!(status("2027-02-24", false, today), "usable");
        assert_eq!(status("2030-01-01", true, today), "on_hold");
    }
}
