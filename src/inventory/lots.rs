//! Lots: a manufacturer's lot of one product, held with one funding (the same lot number held
//! as VFC and as private stock is two lots). This module, with the ledger, owns `lots`.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{Error, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::domain::{parse_date, Funding, LotNumber, Ndc};
use crate::store::{now_millis, Db};

/// Finds or creates the lot; an expiration date that disagrees with the one on record is refused.
pub async fn lot_for(
    conn: &mut AnyConnection,
    ndc: &str,
    lot: &LotNumber,
    funding: Funding,
    expires_on: chrono::NaiveDate,
) -> Result<i64> {
    let ndc = Ndc::parse(ndc)?;
    let product = sqlx::query(
        "SELECT ndc FROM products WHERE ndc = $1 UNION SELECT ndc FROM product_use_ndcs WHERE use_ndc = $1",
    )
    .bind(ndc.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        Error::Invalid(format!(
            "NDC {ndc} is not in the catalog; load CDC's NDC files with `vfc catalog import --ndc FILE` \
             or add it with POST /api/v1/catalog/products"
        ))
    })?;
    let sale: String = product.try_get("ndc")?;
    let expires = expires_on.format("%Y-%m-%d").to_string();
    if let Some(r) = sqlx::query("SELECT id, expires_on FROM lots WHERE ndc = $1 AND lot_key = $2 AND funding = $3")
        .bind(&sale)
        .bind(lot.key())
        .bind(funding.as_str())
        .fetch_optional(&mut *conn)
        .await?
    {
        let known: String = r.try_get("expires_on")?;
        if known != expires {
            return Err(Error::Invalid(format!(
                "lot {} of {sale} is on record with another expiration date than {expires}; check the label, \
                 and if the record is wrong ask the state VFC coordinator to correct it (PUT /api/v1/lots/{{id}})",
                lot.as_str()
            )));
        }
        return Ok(r.try_get("id")?);
    }
    Ok(sqlx::query(
        "INSERT INTO lots (ndc, lot_number, lot_key, funding, expires_on, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (ndc, lot_key, funding) DO UPDATE SET lot_key = excluded.lot_key RETURNING id",
    )
    .bind(&sale)
    .bind(lot.as_str())
    .bind(lot.key())
    .bind(funding.as_str())
    .bind(&expires)
    .bind(now_millis())
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?)
}

/// Body of `PUT /api/v1/lots/{id}` (state coordinators): corrects a lot's expiration date, which
/// every location holding the lot shares.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LotCorrection {
    /// YYYY-MM-DD, as on the manufacturer's label.
    pub expires_on: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LotRecord {
    pub id: i64,
    pub ndc: String,
    pub lot: String,
    pub funding: String,
    pub expires_on: String,
}

/// A lot by id.
pub async fn record(conn: &mut AnyConnection, id: i64) -> Result<Option<LotRecord>> {
    let r = sqlx::query("SELECT id, ndc, lot_number, funding, expires_on FROM lots WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    r.map(|r| {
        Ok(LotRecord {
            id: r.try_get("id")?,
            ndc: r.try_get("ndc")?,
            lot: r.try_get("lot_number")?,
            funding: r.try_get("funding")?,
            expires_on: r.try_get("expires_on")?,
        })
    })
    .transpose()
}

pub async fn correct_lot(db: &Db, caller: &Caller, id: i64, body: &LotCorrection) -> Result<LotRecord> {
    if !caller.is_state() {
        return Err(Error::Forbidden(
            "correcting a lot's record is for state VFC coordinators".into(),
        ));
    }
    if body.reason.trim().is_empty() {
        return Err(Error::Invalid("\"reason\" is required".into()));
    }
    let expires = parse_date("expires_on", &body.expires_on)?
        .format("%Y-%m-%d")
        .to_string();
    let mut tx = db.begin().await?;
    let before: Option<String> = sqlx::query_scalar("SELECT expires_on FROM lots WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let r =
        sqlx::query("UPDATE lots SET expires_on = $1 WHERE id = $2 RETURNING id, ndc, lot_number, funding, expires_on")
            .bind(&expires)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no lot {id}")))?;
    let entry = audit::Entry::new("lot.correct", "lot", [id])
        .changed("expires_on", before, expires.as_str())
        .changed("reason", serde_json::Value::Null, body.reason.trim());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    tracing::info!(lot = id, expires_on = %expires, reason = %body.reason.trim(), by = %caller.actor(), "lot expiration corrected");
    Ok(LotRecord {
        id: r.try_get("id")?,
        ndc: r.try_get("ndc")?,
        lot: r.try_get("lot_number")?,
        funding: r.try_get("funding")?,
        expires_on: r.try_get("expires_on")?,
    })
}
