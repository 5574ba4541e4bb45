//! Inventory: the lot ledger of every location (docs/domain.md, "Inventory").
//!
//! Every change to stock is a row in `stock_events` ([`ledger`]), and on-hand per (storage unit,
//! lot) is kept current in the same transaction. Doses administered ([`doses`]) come from EHRs
//! over HL7 (`crate::hl7`) or JSON; an excursion puts the lots it touched on hold ([`holds`]),
//! and [`exposure`] adds up each lot's time out of range across units and transfers.

pub mod catalog;

pub mod doses;
pub mod exposure;
pub mod history;
pub mod holds;
pub mod ledger;
pub mod lots;
pub mod movements;
pub mod reconcile;

pub mod routing;
pub mod stock;
pub mod transfers;
pub mod usage;
pub mod waiting;

use chrono_tz::Tz;
use sqlx::AnyConnection;

use crate::accounts::Scope;
pub use crate::error::{Error, Result};

/// A location as the inventory needs it.
#[derive(Debug, Clone)]
pub struct Place {
    pub code: String,
    pub pin: String,
    pub tz: Tz,
    /// The latest physical count's `as_of`, if any.
    pub last_count_at: Option<i64>,
}

/// The location `code` if the scope covers it; `NotFound` otherwise, as everywhere.
pub async fn place(conn: &mut AnyConnection, scope: &Scope, code: &str) -> Result<Place> {
    let key = crate::domain::LocationCode::parse(code)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| code.to_string());
    match crate::registry::locations::find_in(conn, &key).await? {
        Some(found) if scope.covers_code(&found.pin, &found.code) => Ok(Place {
            last_count_at: reconcile::last_count_at(conn, &found.code).await?,
            tz: found.tz()?,
            code: found.code,
            pin: found.pin,
        }),
        _ => Err(Error::NotFound(format!("no location {code}"))),
    }
}

/// Checks that `unit_id` is a storage unit of `place`.
pub async fn unit_of(conn: &mut AnyConnection, place: &Place, unit_id: i64) -> Result<String> {
    match crate::registry::units::name_at(conn, unit_id, &place.code).await? {
        Some(name) => Ok(name),
        None => Err(Error::Invalid(format!(
            "unit {unit_id} is not a storage unit of {}; see GET /api/v1/locations/{}/units",
            place.code, place.code
        ))),
    }
}

/// Today in the location's time zone, as `YYYY-MM-DD`.
pub fn today(tz: Tz, now_ms: i64) -> chrono::NaiveDate {
    crate::store::from_millis(now_ms).with_timezone(&tz).date_naive()
}

/// An optional RFC 3339 instant from a request body, as epoch ms.
pub fn parse_time(name: &str, raw: Option<&str>) -> Result<Option<i64>> {
    raw.map(|raw| {
        let ms = chrono::DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                Error::Invalid(format!(
                    "\"{name}\" {raw:?} is not an RFC 3339 time such as 2026-11-25T13:00:00Z"
                ))
            })?;
        Ok(crate::domain::check_instant(name, ms)?)
    })
    .transpose()
}
