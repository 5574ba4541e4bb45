//! What a clinic must follow up after doses were given: borrowing records (with their reason
//! to complete) and the revaccination review list (doses from expired, held or exposed lots).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::super::{place, Error, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::store::{now_millis, rfc3339, Db, Page};

/// docs/domain.md, "Inventory": why public stock was used for a private patient or the reverse.
pub const BORROWING_REASONS: &[&str] = &[
    "private_order_delayed",
    "private_stock_nonviable_on_arrival",
    "vfc_order_delayed",
    "vfc_stock_nonviable_on_arrival",
    "other",
];

#[derive(Debug, Serialize, ToSchema)]
pub struct Borrowing {
    pub id: i64,
    pub location: String,
    pub administration_id: i64,
    pub lot_id: i64,
    pub lot: String,
    pub ndc: String,
    pub patient_id: String,
    pub administered_at: String,
    /// The patient's eligibility (HL7 table 0064).
    pub eligibility: String,
    /// The funding of the stock used.
    pub stock_funding: String,
    /// One of private_order_delayed, private_stock_nonviable_on_arrival, vfc_order_delayed,
    /// vfc_stock_nonviable_on_arrival, other; null until completed.
    pub reason: Option<String>,
    pub note: Option<String>,
    pub reason_by: Option<String>,
}

const COLUMNS: &str = "b.id, b.location_code, b.administration_id, b.lot_id, l.lot_number, l.ndc, a.patient_id, \
    a.administered_at, b.eligibility, b.stock_funding, b.reason, b.note, b.reason_by \
    FROM borrowing b JOIN lots l ON l.id = b.lot_id JOIN administrations a ON a.id = b.administration_id";

fn row(r: &sqlx::any::AnyRow) -> sqlx::Result<Borrowing> {
    Ok(Borrowing {
        id: r.try_get("id")?,
        location: r.try_get("location_code")?,
        administration_id: r.try_get("administration_id")?,
        lot_id: r.try_get("lot_id")?,
        lot: r.try_get("lot_number")?,
        ndc: r.try_get("ndc")?,
        patient_id: r.try_get("patient_id")?,
        administered_at: rfc3339(r.try_get("administered_at")?),
        eligibility: r.try_get("eligibility")?,
        stock_funding: r.try_get("stock_funding")?,
        reason: r.try_get("reason")?,
        note: r.try_get("note")?,
        reason_by: r.try_get("reason_by")?,
    })
}

/// A location's borrowing records, newest first.
pub async fn borrowing(db: &Db, caller: &Caller, code: &str, page: Page) -> Result<(Vec<Borrowing>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} WHERE b.location_code = $1 AND b.id < $2 ORDER BY b.id DESC LIMIT $3"
    ))
    .bind(&place.code)
    .bind(page.after.unwrap_or(i64::MAX))
    .bind(page.limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let list = rows.iter().map(row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(page.cut(list, |b| b.id))
}

/// Body of `PUT /api/v1/borrowing/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BorrowingReason {
    pub reason: String,
    /// Required with `other`.
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn complete(db: &Db, caller: &Caller, id: i64, body: &BorrowingReason) -> Result<Borrowing> {
    if !BORROWING_REASONS.contains(&body.reason.as_str()) {
        return Err(Error::Invalid(format!(
            "\"reason\" must be one of {}",
            BORROWING_REASONS.join(", ")
        )));
    }
    if body.reason == "other" && body.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(Error::Invalid(
            "with reason \"other\", say what happened in \"note\"".into(),
        ));
    }
    let mut tx = db.begin().await?;
    let r = sqlx::query(&format!("SELECT {COLUMNS} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no borrowing record {id}")))?;
    let b = row(&r)?;
    place(&mut tx, &caller.scope, &b.location)
        .await
        .map_err(|_| Error::NotFound(format!("no borrowing record {id}")))?;
    sqlx::query("UPDATE borrowing SET reason = $1, note = $2, reason_by = $3, updated_at = $4 WHERE id = $5")
        .bind(&body.reason)
        .bind(body.note.as_deref().map(str::trim))
        .bind(caller.actor())
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query(&format!("SELECT {COLUMNS} WHERE b.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let entry = audit::Entry::new("borrowing.complete", "borrowing", [id])
        .at(None, Some(&b.location))
        .changed("reason", b.reason.clone(), body.reason.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(row(&r)?)
}

/// A dose the clinic should review for revaccination.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewDose {
    pub administration_id: i64,
    pub patient_id: String,
    pub administered_at: String,
    pub lot_id: i64,
    pub lot: String,
    pub unit_id: i64,
    /// expired_lot | lot_on_hold | exposed (given between an excursion's start and its lot's
    /// determination; not listed once the manufacturer found the lot viable)
    pub why: Vec<String>,
    pub excursion_ids: Vec<i64>,
}

/// The doses to review, in the order they were recorded (by administration id).
pub async fn revaccination(db: &Db, caller: &Caller, code: &str, page: Page) -> Result<(Vec<ReviewDose>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let now = now_millis();
    // Doses with a review flag, or from stock an excursion held (not found viable) and given
    // before the hold ended; whether they were given after the excursion began is asked of the
    // cold chain, which owns the excursions.
    let rows = sqlx::query(
        "SELECT a.id, a.patient_id, a.administered_at, a.lot_id, a.unit_id, a.review, l.lot_number, h.excursion_id \
         FROM administrations a JOIN lots l ON l.id = a.lot_id \
         LEFT JOIN holds h ON h.unit_id = a.unit_id AND h.lot_id = a.lot_id AND h.excursion_id IS NOT NULL \
           AND (h.outcome IS NULL OR h.outcome <> 'released') \
           AND a.administered_at <= COALESCE(h.ended_at, $2) \
         WHERE a.location_code = $1 AND a.status = 'decremented' AND (a.review IS NOT NULL OR h.id IS NOT NULL) \
         AND a.id > $3 ORDER BY a.id",
    )
    .bind(&place.code)
    .bind(now)
    .bind(page.after.unwrap_or(0))
    .fetch_all(&mut *conn)
    .await?;
    let held: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.try_get::<Option<i64>, _>("excursion_id").ok().flatten())
        .collect();
    let began = crate::coldchain::excursions::started_at(&mut conn, &held).await?;
    let mut out: Vec<ReviewDose> = Vec::new();
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let at: i64 = r.try_get("administered_at")?;
        let excursion: Option<i64> = r
            .try_get::<Option<i64>, _>("excursion_id")?
            .filter(|x| began.get(x).is_some_and(|start| at >= *start));
        if excursion.is_none() && r.try_get::<Option<String>, _>("review")?.is_none() {
            continue;
        }
        if let Some(last) = out.last_mut().filter(|d| d.administration_id == id) {
            last.excursion_ids.extend(excursion);
            continue;
        }
        if out.len() as i64 > page.limit {
            break;
        }
        let mut why: Vec<String> = r
            .try_get::<Option<String>, _>("review")?
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        if excursion.is_some() {
            why.push("exposed".into());
        }
        out.push(ReviewDose {
            administration_id: id,
            patient_id: r.try_get("patient_id")?,
            administered_at: rfc3339(r.try_get("administered_at")?),
            lot_id: r.try_get("lot_id")?,
            lot: r.try_get("lot_number")?,
            unit_id: r.try_get("unit_id")?,
            why,
            excursion_ids: excursion.into_iter().collect(),
        });
    }
    Ok(page.cut(out, |d| d.administration_id))
}

/// What waits for a person at a location: doses that matched no stock, and borrowing records
/// without their reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub unmatched: i64,
    pub borrowing: i64,
}

/// What waits at location `code` (in `scope`).
pub async fn waiting_at(db: &Db, scope: &crate::accounts::Scope, code: &str) -> Result<Waiting> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, scope, code).await?;
    let r = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM decrement_exceptions WHERE location_code = $1 AND resolved_at IS NULL) AS unmatched, \
         (SELECT COUNT(*) FROM borrowing WHERE location_code = $1 AND reason IS NULL) AS borrowing",
    )
    .bind(&place.code)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Waiting {
        unmatched: r.try_get("unmatched")?,
        borrowing: r.try_get("borrowing")?,
    })
}
