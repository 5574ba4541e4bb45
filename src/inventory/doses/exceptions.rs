//! The decrement-exceptions queue (docs/domain.md, "Doses administered over HL7"): a dose that
//! matched no stock waits here, never dropped, until someone assigns it to a lot (which
//! decrements) or dismisses it with a reason. This module, with the rest of `doses`, owns
//! `decrement_exceptions`.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::super::{catalog, lots, Place};
use super::decide::Status;
use super::matching::{Match, NoMatch};
use super::report::Outcome;
use super::write::{self, Done, Given};
use crate::accounts::audit::{self, Who};
use crate::accounts::Scope;
use crate::domain::{Eligibility, Funding, FundingSource};
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db, Dialect, Page};

/// Puts the dose in the queue with why it matched no stock; `row_done` when its row already
/// says `exception`.
pub async fn queue(
    conn: &mut AnyConnection,
    place: &Place,
    id: i64,
    (reason, words): NoMatch,
    message_id: Option<&str>,
    row_done: bool,
) -> Result<Outcome> {
    if !row_done {
        write::set_status(conn, id, Status::Exception).await?;
    }
    let exception_id = sqlx::query(
        "INSERT INTO decrement_exceptions (location_code, administration_id, reason_code, reason, message_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&place.code)
    .bind(id)
    .bind(reason.as_str())
    .bind(&words)
    .bind(message_id)
    .bind(now_millis())
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?;
    Ok(Outcome::Exception {
        administration_id: id,
        exception_id,
        reason,
        words,
    })
}

/// Closes a dose's open exceptions (a later report superseded them, or someone resolved them).
pub async fn close(conn: &mut AnyConnection, administration_id: i64, actor: &str, why: &str) -> Result<()> {
    sqlx::query(
        "UPDATE decrement_exceptions SET resolved_at = $1, resolved_by = $2, resolution = $3 \
         WHERE administration_id = $4 AND resolved_at IS NULL",
    )
    .bind(now_millis())
    .bind(actor)
    .bind(why)
    .bind(administration_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The location's unresolved decrement exceptions queued before `before` (epoch ms), oldest
/// first: (id, queued at).
pub async fn open_before(conn: &mut AnyConnection, code: &str, before: i64) -> Result<Vec<(i64, i64)>> {
    sqlx::query(
        "SELECT id, created_at FROM decrement_exceptions WHERE location_code = $1 AND resolved_at IS NULL AND created_at < $2 \
         ORDER BY created_at, id",
    )
    .bind(code)
    .bind(before)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("created_at")?)))
    .collect::<sqlx::Result<_>>()
    .map_err(Into::into)
}

/// A queued dose as the clinic and the state see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecrementException {
    pub id: i64,
    pub location: String,
    pub administration_id: i64,
    /// unknown_vaccine | no_lot | unknown_lot | lot_not_here | no_stock | ambiguous_funding
    pub reason_code: String,
    pub reason: String,
    /// The lot number the EHR sent.
    pub lot: String,
    pub cvx: Option<String>,
    pub ndc: Option<String>,
    pub patient_id: String,
    pub administered_at: String,
    pub message_id: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

const EXCEPTION_COLUMNS: &str =
    "x.id, x.location_code, x.administration_id, x.reason_code, x.reason, a.lot_number, a.cvx, \
    a.ndc, a.patient_id, a.administered_at, x.message_id, x.created_at, x.resolved_at, x.resolved_by, x.resolution \
    FROM decrement_exceptions x JOIN administrations a ON a.id = x.administration_id";

fn exception_row(r: &sqlx::any::AnyRow) -> sqlx::Result<DecrementException> {
    Ok(DecrementException {
        id: r.try_get("id")?,
        location: r.try_get("location_code")?,
        administration_id: r.try_get("administration_id")?,
        reason_code: r.try_get("reason_code")?,
        reason: r.try_get("reason")?,
        lot: r.try_get("lot_number")?,
        cvx: r.try_get("cvx")?,
        ndc: r.try_get("ndc")?,
        patient_id: r.try_get("patient_id")?,
        administered_at: rfc3339(r.try_get("administered_at")?),
        message_id: r.try_get("message_id")?,
        created_at: rfc3339(r.try_get("created_at")?),
        resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(rfc3339),
        resolved_by: r.try_get("resolved_by")?,
        resolution: r.try_get("resolution")?,
    })
}

/// The queue of location `code` (in the caller's scope), oldest first: a page of it.
pub async fn exceptions_at(
    db: &Db,
    scope: &Scope,
    code: &str,
    include_resolved: bool,
    page: Page,
) -> Result<(Vec<DecrementException>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let place = super::super::place(&mut conn, scope, code).await?;
    let list = exceptions(&mut conn, &place, include_resolved, page).await?;
    Ok(page.cut(list, |x| x.id))
}

/// Resolves a queued dose in its own transaction.
pub async fn resolve_now(db: &Db, scope: &Scope, id: i64, body: &Resolution, who: &Who) -> Result<DecrementException> {
    let mut tx = db.begin().await?;
    let x = resolve(&mut tx, scope, id, body, &who.actor).await?;
    let entry = audit::Entry::new("decrement_exception.resolve", "decrement_exception", [id])
        .at(None, Some(&x.location))
        .changed("resolution", serde_json::Value::Null, x.resolution.clone());
    audit::record(&mut tx, who, entry).await?;
    tx.commit().await?;
    Ok(x)
}

/// Up to `page.limit + 1` of the queue past `page.after`, oldest first.
async fn exceptions(
    conn: &mut AnyConnection,
    place: &Place,
    include_resolved: bool,
    page: Page,
) -> Result<Vec<DecrementException>> {
    let rows = sqlx::query(&format!(
        "SELECT {EXCEPTION_COLUMNS} WHERE x.location_code = $1 AND ($2 = 1 OR x.resolved_at IS NULL) AND x.id > $3 \
         ORDER BY x.id LIMIT $4"
    ))
    .bind(&place.code)
    .bind(include_resolved as i64)
    .bind(page.after.unwrap_or(0))
    .bind(page.limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(exception_row).collect::<sqlx::Result<_>>()?)
}

/// How someone resolves a queued dose: assign it to a lot (which decrements), or dismiss it.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// The lot the dose came from (as in the inventory).
    #[serde(default)]
    pub lot_id: Option<i64>,
    /// The unit; default the location's unit for the product, else the one holding the most.
    #[serde(default)]
    pub unit_id: Option<i64>,
    /// Dismiss without a decrement (e.g. the dose was not from tracked stock): why.
    #[serde(default)]
    pub dismiss: Option<String>,
}

pub async fn resolve(
    conn: &mut AnyConnection,
    scope: &Scope,
    exception_id: i64,
    body: &Resolution,
    actor: &str,
) -> Result<DecrementException> {
    // Locks the exception (PostgreSQL) so two people resolving it at once decrement once.
    let lock = match Dialect::of(conn) {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE OF x",
    };
    let r = sqlx::query(&format!("SELECT {EXCEPTION_COLUMNS} WHERE x.id = $1{lock}"))
        .bind(exception_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no decrement exception {exception_id}")))?;
    let x = exception_row(&r)?;
    let place = super::super::place(conn, scope, &x.location)
        .await
        .map_err(|_| Error::NotFound(format!("no decrement exception {exception_id}")))?;
    if x.resolved_at.is_some() {
        return Err(Error::Conflict(format!(
            "decrement exception {exception_id} was already resolved: {}",
            x.resolution.unwrap_or_default()
        )));
    }
    match (body.lot_id, body.dismiss.as_deref().map(str::trim)) {
        (None, Some(why)) if !why.is_empty() => {
            close(conn, x.administration_id, actor, &format!("dismissed: {why}")).await?;
            write::set_status(conn, x.administration_id, Status::Dismissed).await?;
        }
        (Some(lot_id), None) => {
            let a = sqlx::query(
                "SELECT administered_at, eligibility, funding_source, message_id, source, cvx FROM administrations WHERE id = $1",
            )
            .bind(x.administration_id)
            .fetch_one(&mut *conn)
            .await?;
            // A lot this location never held is, to the caller, no lot at all: the same answer
            // whether it does not exist or another PIN holds it.
            let no_lot = || {
                Error::Invalid(format!(
                    "no lot {lot_id} at {}; see the location's inventory",
                    place.code
                ))
            };
            let held_here = sqlx::query("SELECT 1 FROM stock WHERE location_code = $1 AND lot_id = $2")
                .bind(&place.code)
                .bind(lot_id)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if !held_here {
                return Err(no_lot());
            }
            // The lot must be of the dose's vaccine.
            let lot = lots::record(conn, lot_id).await?.ok_or_else(no_lot)?;
            let product = catalog::get(conn, &lot.ndc)
                .await?
                .ok_or_else(|| Error::unreadable("lots", lot_id, format!("NDC {} is not in the catalog", lot.ndc)))?;
            let dose_cvx: Option<String> = a.try_get("cvx")?;
            if dose_cvx.as_deref().is_some_and(|c| c != product.cvx) {
                return Err(Error::Invalid(format!(
                    "lot {} is {} (CVX {}); the dose was CVX {}: assign a lot of that vaccine",
                    lot.lot,
                    product.name,
                    product.cvx,
                    dose_cvx.unwrap_or_default()
                )));
            }
            let stock = sqlx::query(&format!(
                "SELECT s.unit_id, s.on_hand, l.funding, l.expires_on, \
                 (SELECT COUNT(*) FROM holds h WHERE h.unit_id = s.unit_id AND h.lot_id = s.lot_id AND h.ended_at IS NULL) AS held, \
                 (SELECT COUNT(*) FROM location_product_units p WHERE p.location_code = s.location_code AND p.ndc = l.ndc AND p.unit_id = s.unit_id) AS preferred \
                 FROM stock s JOIN lots l ON l.id = s.lot_id WHERE s.location_code = $1 AND s.lot_id = $2 AND s.on_hand > 0{}",
                if body.unit_id.is_some() { " AND s.unit_id = $3" } else { "" }
            ))
            .bind(&place.code)
            .bind(lot_id)
            .bind(body.unit_id.unwrap_or(0))
            .fetch_all(&mut *conn)
            .await?;
            let ranked = stock
                .iter()
                .map(|s| Ok(((s.try_get::<i64, _>("preferred")?, s.try_get::<i64, _>("on_hand")?), s)))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
            let best = ranked
                .into_iter()
                .max_by_key(|(rank, _)| *rank)
                .map(|(_, s)| s)
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "lot {lot_id} has no doses on hand at {}{}; receive or adjust it first",
                        place.code,
                        body.unit_id.map(|u| format!(" in unit {u}")).unwrap_or_default()
                    ))
                })?;
            let at: i64 = a.try_get("administered_at")?;
            let unreadable = |what: String| Error::unreadable("administrations", x.administration_id, what);
            let funding: String = best.try_get("funding")?;
            let expires: String = best.try_get("expires_on")?;
            let m = Match {
                unit_id: best.try_get("unit_id")?,
                lot_id,
                lot: lot.lot.clone(),
                funding: Funding::parse(&funding).map_err(|e| Error::unreadable("lots", lot_id, e))?,
                expires_on: chrono::NaiveDate::parse_from_str(&expires, "%Y-%m-%d")
                    .map_err(|_| Error::unreadable("lots", lot_id, format!("expires_on {expires:?}")))?,
                held: best.try_get::<i64, _>("held")? > 0,
            };
            let source: String = a.try_get("source")?;
            let source =
                super::report::Source::parse(&source).ok_or_else(|| unreadable(format!("source {source:?}")))?;
            let eligibility = a
                .try_get::<Option<String>, _>("eligibility")?
                .map(|e| Eligibility::parse(&e))
                .transpose()
                .map_err(|e| unreadable(e.0))?;
            let funding_source = a
                .try_get::<Option<String>, _>("funding_source")?
                .map(|f| FundingSource::parse(&f))
                .transpose()
                .map_err(|e| unreadable(e.0))?;
            let given = Given {
                at,
                day: crate::store::from_millis(at).with_timezone(&place.tz).date_naive(),
                eligibility,
                funding_source,
                source: source.as_str(),
                message_id: a.try_get("message_id")?,
            };
            write::decrement(conn, &place, x.administration_id, &m, given, actor, Done::Nothing).await?;
            close(conn, x.administration_id, actor, &format!("assigned to lot {lot_id}")).await?;
        }
        _ => {
            return Err(Error::Invalid(
                "send {\"lot_id\": N} to assign the dose to a lot (it decrements), or {\"dismiss\": \"why\"}".into(),
            ))
        }
    }
    let r = sqlx::query(&format!("SELECT {EXCEPTION_COLUMNS} WHERE x.id = $1"))
        .bind(exception_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(exception_row(&r)?)
}
