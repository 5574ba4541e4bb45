//! How doses find their way: the unit a location's daily doses of a product come from, and
//! the ids an EHR uses for a location (MSH-4, RXA-11.4). This module owns
//! `location_product_units` and `facility_ids`.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{place, unit_of, Error, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::domain::Ndc;
use crate::store::Db;

/// The location a registered facility id names (upper case), if any.
pub async fn facility_location(conn: &mut AnyConnection, id: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query("SELECT location_code FROM facility_ids WHERE facility_id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("location_code"))
            .transpose()?,
    )
}

/// The unit location `code` uses for the product of lot `lot_id`, if it has set one.
pub async fn unit_for_lot(conn: &mut AnyConnection, code: &str, lot_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query(
        "SELECT p.unit_id FROM location_product_units p JOIN lots l ON l.ndc = p.ndc WHERE p.location_code = $1 AND l.id = $2",
    )
    .bind(code)
    .bind(lot_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get("unit_id"))
    .transpose()?)
}

/// The unit location `code` puts product `ndc` in, if it has set one (frozen varicella: the
/// freezer).
pub async fn unit_for_ndc(conn: &mut AnyConnection, code: &str, ndc: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query("SELECT unit_id FROM location_product_units WHERE location_code = $1 AND ndc = $2")
            .bind(code)
            .bind(ndc)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("unit_id"))
            .transpose()?,
    )
}

/// Body of `PUT /api/v1/locations/{code}/product-units`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUnit {
    pub ndc: String,
    /// The unit this location's daily doses of the product come from.
    pub unit_id: i64,
}

pub async fn set_product_unit(db: &Db, caller: &Caller, code: &str, body: &ProductUnit) -> Result<Vec<ProductUnit>> {
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &place, body.unit_id).await?;
    let ndc = Ndc::parse(&body.ndc)?;
    let known = sqlx::query("SELECT 1 FROM products WHERE ndc = $1")
        .bind(ndc.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Err(Error::Invalid(format!(
            "NDC {ndc} is not a unit-of-sale NDC in the catalog"
        )));
    }
    sqlx::query(
        "INSERT INTO location_product_units (location_code, ndc, unit_id) VALUES ($1, $2, $3) \
         ON CONFLICT (location_code, ndc) DO UPDATE SET unit_id = excluded.unit_id",
    )
    .bind(&place.code)
    .bind(ndc.as_str())
    .bind(body.unit_id)
    .execute(&mut *tx)
    .await?;
    let entry = audit::Entry::new("product_unit.set", "location", [place.code.as_str()])
        .at(Some(&place.pin), Some(&place.code))
        .changed(ndc.as_str(), serde_json::Value::Null, body.unit_id);
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    product_units(db, caller, code).await
}

pub async fn product_units(db: &Db, caller: &Caller, code: &str) -> Result<Vec<ProductUnit>> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows = sqlx::query("SELECT ndc, unit_id FROM location_product_units WHERE location_code = $1 ORDER BY ndc")
        .bind(&place.code)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ProductUnit {
                ndc: r.try_get("ndc")?,
                unit_id: r.try_get("unit_id")?,
            })
        })
        .collect()
}

/// Body of `PUT /api/v1/locations/{code}/facility-ids`: the ids this location's EHR puts in
/// MSH-4 or RXA-11.4, besides the location code itself. Replaces the list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilityIds {
    pub facility_ids: Vec<String>,
}

pub async fn set_facility_ids(db: &Db, caller: &Caller, code: &str, body: &FacilityIds) -> Result<FacilityIds> {
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    sqlx::query("DELETE FROM facility_ids WHERE location_code = $1")
        .bind(&place.code)
        .execute(&mut *tx)
        .await?;
    for id in &body.facility_ids {
        let id = id.trim().to_ascii_uppercase();
        if id.is_empty() || id.len() > 64 {
            return Err(Error::Invalid("facility ids are 1 to 64 characters".into()));
        }
        // A location code always names its own location; it cannot be another's alias.
        if crate::domain::LocationCode::parse(&id).is_ok() {
            return Err(Error::Invalid(format!(
                "{id} reads as a location code: an EHR may send location codes as they are; \
                 register only its own names for this location (e.g. \"BAYVIEW-MAIN\")"
            )));
        }
        let taken = sqlx::query("SELECT location_code FROM facility_ids WHERE facility_id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(t) = taken {
            let other: String = t.try_get("location_code")?;
            // Facility ids are unique across the program: outside the caller's scope this says
            // the id is taken, and nothing more.
            let sees = crate::domain::LocationCode::parse(&other).is_ok_and(|c| caller.scope.covers(&c));
            return Err(Error::Conflict(if sees {
                format!("facility id {id} already names {other}")
            } else {
                format!("facility id {id} is already in use elsewhere")
            }));
        }
        sqlx::query("INSERT INTO facility_ids (facility_id, location_code) VALUES ($1, $2)")
            .bind(&id)
            .bind(&place.code)
            .execute(&mut *tx)
            .await?;
    }
    let entry = audit::Entry::new("facility_ids.set", "location", [place.code.as_str()])
        .at(Some(&place.pin), Some(&place.code))
        .changed("facility_ids", serde_json::Value::Null, body.facility_ids.clone());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    crate::registry::directory_changed();
    facility_ids(db, caller, code).await
}

pub async fn facility_ids(db: &Db, caller: &Caller, code: &str) -> Result<FacilityIds> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows = sqlx::query("SELECT facility_id FROM facility_ids WHERE location_code = $1 ORDER BY facility_id")
        .bind(&place.code)
        .fetch_all(&mut *conn)
        .await?;
    Ok(FacilityIds {
        facility_ids: rows
            .iter()
            .map(|r| r.try_get("facility_id"))
            .collect::<sqlx::Result<_>>()?,
    })
}
