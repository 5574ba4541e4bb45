//! Doses administered: the decrement (docs/domain.md, "Doses administered over HL7" and
//! "Inventory"). One report — from an HL7 RXA group or a JSON entry — becomes at most one
//! decrement, however often the EHR sends it.
//!
//! - Only a dose given here (RXA-9 = 00) and completed or partly given (CP, PA) takes a dose
//!   off the shelf; historical, refused and not-given doses never do.
//! - The same dose is its ORC-3 (id and namespace) or, without one, (PID-3, vaccine, date,
//!   lot): EHRs resend whole histories, and a dose never decrements twice.
//! - Delete (D) gives the dose back; update (U) to another lot moves the decrement.
//! - A dose that matches no stock goes to the decrement-exceptions queue, never nowhere.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::catalog::{self, Vaccine};
use super::codes::LotNumber;
use super::ledger::{self, Entry, Kind};
use super::{Error, Place, Result};
use crate::accounts::Scope;
use crate::store::{now_millis, rfc3339};

/// RXA-21.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Update,
    Delete,
}

/// A dose as an EHR reports it, parsed.
#[derive(Debug, Clone)]
pub struct DoseReport {
    /// ORC-3 as `id^namespace`.
    pub orc_key: Option<String>,
    /// PID-3 as `id^authority`.
    pub patient_id: String,
    pub vaccine: Vaccine,
    pub lot: Option<LotNumber>,
    /// When the dose was given, epoch ms, and its day as the EHR wrote it (YYYYMMDD).
    pub administered_at: i64,
    pub day: String,
    /// RXA-9 = 00 and RXA-20 CP or PA: the dose left this clinic's shelf.
    pub given_here: bool,
    /// Why not, when not (historical, refused, not administered).
    pub not_given: Option<String>,
    pub action: Action,
    /// HL7 table 0064 (V01…V07).
    pub eligibility: Option<String>,
    /// VXC50 public, VXC2 state, PHC70 private.
    pub funding_source: Option<String>,
    pub message_id: Option<String>,
    /// hl7 | json
    pub source: &'static str,
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Decremented {
        administration_id: i64,
        lot_id: i64,
        /// The lot number, for people.
        lot: String,
        unit_id: i64,
        flags: Vec<Flag>,
    },
    /// The same dose again: nothing changed.
    Duplicate { administration_id: i64 },
    /// Delete, or a correction to not given: the dose went back on the shelf.
    GivenBack { administration_id: i64 },
    /// Kept in the exceptions queue for someone to assign to a lot.
    Exception {
        administration_id: i64,
        exception_id: i64,
        reason_code: &'static str,
        reason: String,
    },
    /// Historical, refused or not administered: inventory unchanged.
    NotCounted { why: String },
    /// A delete of a dose not on record.
    NothingToDo { why: String },
}

/// Something a clinic must look at about a decremented dose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// Given from an expired lot: revaccination review.
    ExpiredLot(String),
    /// Given from a lot on hold (Do Not Use): revaccination review.
    HeldLot,
    /// Given from stock of the other funding: borrowing, reason to complete.
    Borrowing { eligibility: String, funding: String },
    /// The EHR named a funding source (OBX 30963-3) the stock used does not have.
    FundingMismatch { said: String, stock: String },
}

impl Outcome {
    /// A sentence for the clinic (HL7 ERR-8, JSON `message`) when the outcome needs a look.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            Outcome::Decremented { flags, lot, .. } => flags
                .iter()
                .map(|f| match f {
                    Flag::ExpiredLot(on) => format!(
                        "lot {lot} expired on {on}: the dose was decremented and is listed for revaccination review"
                    ),
                    Flag::HeldLot => format!(
                        "lot {lot} is on hold (Do Not Use): the dose was decremented and is listed for revaccination review"
                    ),
                    Flag::Borrowing { eligibility, funding } => format!(
                        "a {eligibility} patient was given {funding} stock of lot {lot}: recorded as borrowing; complete its reason"
                    ),
                    Flag::FundingMismatch { said, stock } => format!(
                        "the funding source says {said} but lot {lot} is held here only as {stock} stock; check the EHR's funding"
                    ),
                })
                .collect(),
            Outcome::Exception { reason, .. } => vec![format!("{reason}; kept in the decrement-exceptions queue")],
            _ => vec![],
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Decremented { .. } => "decremented",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::GivenBack { .. } => "given_back",
            Outcome::Exception { .. } => "exception",
            Outcome::NotCounted { .. } => "not_counted",
            Outcome::NothingToDo { .. } => "nothing_to_do",
        }
    }
}

/// The location an EHR's facility id names: a location code, or an id registered for one.
pub async fn facility(conn: &mut AnyConnection, id: &str) -> Result<Option<Place>> {
    let id = id.trim().to_ascii_uppercase();
    // A location code names its location; only other ids are looked up as registered aliases.
    let code = match crate::domain::LocationCode::parse(&id) {
        Ok(c) => Some(c.to_string()),
        Err(_) => sqlx::query("SELECT location_code FROM facility_ids WHERE facility_id = $1")
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("location_code"))
            .transpose()?,
    };
    match code {
        Some(c) => match super::place(conn, &Scope::Program, &c).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    }
}

struct Existing {
    id: i64,
    status: String,
    lot_key: String,
    cvx: Option<String>,
}

async fn existing(
    conn: &mut AnyConnection,
    place: &Place,
    orc: Option<&str>,
    natural: &str,
) -> Result<Option<Existing>> {
    // By ORC-3 first; else (or without one) the same patient, vaccine, day and lot.
    let r = sqlx::query(
        "SELECT id, status, lot_key, cvx, orc_key FROM ( \
         SELECT id, status, UPPER(lot_number) AS lot_key, cvx, orc_key, 0 AS pri FROM administrations \
         WHERE location_code = $1 AND orc_key = $2 \
         UNION ALL SELECT id, status, UPPER(lot_number) AS lot_key, cvx, orc_key, 1 AS pri FROM administrations \
         WHERE location_code = $1 AND natural_key = $3 AND status <> 'deleted') found ORDER BY pri, id DESC LIMIT 1",
    )
    .bind(&place.code)
    .bind(orc)
    .bind(natural)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = r else { return Ok(None) };
    let found: Option<String> = r.try_get("orc_key")?;
    // A natural-key match that carries its own, different ORC-3 is another dose.
    if found.as_deref() == orc || orc.is_none() || found.is_none() {
        Ok(Some(existing_row(&r)?))
    } else {
        Ok(None)
    }
}

fn existing_row(r: &sqlx::any::AnyRow) -> sqlx::Result<Existing> {
    Ok(Existing {
        id: r.try_get("id")?,
        status: r.try_get("status")?,
        lot_key: r.try_get("lot_key")?,
        cvx: r.try_get("cvx")?,
    })
}

/// Records one report at `place`, in the caller's transaction.
pub async fn apply(conn: &mut AnyConnection, place: &Place, d: &DoseReport, actor: &str) -> Result<Outcome> {
    let products = catalog::products_for(conn, &d.vaccine).await?;
    apply_known(conn, place, d, actor, &products, None).await
}

/// [`apply`] with the vaccine's products already looked up, and the stock rows a batch has read
/// (the HL7 intake keeps both for a batch).
pub async fn apply_known(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    actor: &str,
    products: &(Vec<String>, Option<String>),
    mut stock: Option<&mut StockCache>,
) -> Result<Outcome> {
    let (ndcs, cvx) = products;
    let vaccine_key = cvx.clone().unwrap_or_else(|| d.vaccine.describe());
    // How messages name the vaccine: "CVX 116", "NDC 00006-4047-41".
    let named = d.vaccine.describe();
    let lot_key = d.lot.as_ref().map(|l| l.key().to_string()).unwrap_or_default();
    let natural = format!("{}|{}|{}|{}", d.patient_id, vaccine_key, d.day, lot_key);
    let counts = d.given_here && d.action != Action::Delete;
    // The common case first: a new dose given here that matches stock is written in one
    // statement that also checks it is not on record yet. Why a dose matched nothing is kept
    // for the queue, should it turn out to be new.
    let mut unmatched = None;
    if counts {
        match find_stock(
            conn,
            place,
            ndcs,
            d.lot.as_ref(),
            d.eligibility.as_deref(),
            d.funding_source.as_deref(),
            &named,
            stock.as_deref_mut(),
        )
        .await
        {
            Ok(m) => {
                let (_, review) = review_flags(&m, &d.day);
                if let Some(id) = insert_taken(conn, place, d, &natural, cvx.as_deref(), &m, review, actor).await? {
                    if let (Some(cache), Some(lot)) = (stock.as_deref_mut(), d.lot.as_ref()) {
                        took(cache, place, lot, ndcs, &m);
                    }
                    return decrement(conn, place, id, &m, d, actor, Done::RowAndLedger).await;
                }
            }
            Err(("database", e)) => return Err(Error::Database(sqlx::Error::Protocol(e))),
            Err(why) => unmatched = Some(why),
        }
    }
    // Anything below may move stock the cache does not follow.
    if let Some(cache) = stock {
        cache.clear();
    }
    let prior = existing(conn, place, d.orc_key.as_deref(), &natural).await?;

    let Some(prior) = prior else {
        if d.action == Action::Delete {
            return Ok(Outcome::NothingToDo {
                why: "no such dose on record; nothing to give back".into(),
            });
        }
        if !counts {
            return Ok(Outcome::NotCounted {
                why: d.not_given.clone().unwrap_or_default(),
            });
        }
        // A new dose that matched no stock: it waits in the queue, never dropped. (One that
        // matched was written above; only an ORC-3 or natural key on record sends it here.)
        let Some((code, reason)) = unmatched else {
            return Err(Error::Conflict(
                "the dose matched stock but could not be written; nothing was recorded, send it again".into(),
            ));
        };
        let id = insert_exception(conn, place, d, &natural, cvx.as_deref()).await?;
        return queue(conn, place, id, code, reason, d.message_id.as_deref(), true).await;
    };

    // A dose we know.
    let same = prior.lot_key == lot_key && prior.cvx.as_deref().unwrap_or("") == cvx.as_deref().unwrap_or("");
    let update = d.action == Action::Update;
    let ended = if d.action == Action::Delete {
        "deleted"
    } else {
        "not_given"
    };
    match prior.status.as_str() {
        // Only an update (U) or a delete (D) corrects a dose on record: a history resent with
        // the dose marked historical or refused does not undo it.
        _ if d.action == Action::Add && !counts => Ok(Outcome::NotCounted {
            why: d.not_given.clone().unwrap_or_default(),
        }),
        "decremented" | "exception" | "dismissed" if counts && same && !update => Ok(Outcome::Duplicate {
            administration_id: prior.id,
        }),
        "decremented" => {
            give_back(conn, place, prior.id, actor, d).await?;
            if counts {
                // An update (another lot, date, eligibility or funding): the decrement moves.
                refresh(conn, prior.id, d, &natural, cvx.as_deref()).await?;
                take(conn, place, d, prior.id, ndcs, &named, actor).await
            } else {
                set_status(conn, prior.id, ended).await?;
                sqlx::query("DELETE FROM borrowing WHERE administration_id = $1")
                    .bind(prior.id)
                    .execute(&mut *conn)
                    .await?;
                Ok(Outcome::GivenBack {
                    administration_id: prior.id,
                })
            }
        }
        "exception" => {
            close_exceptions(conn, prior.id, actor, "superseded by a later report from the EHR").await?;
            if counts {
                refresh(conn, prior.id, d, &natural, cvx.as_deref()).await?;
                take(conn, place, d, prior.id, ndcs, &named, actor).await
            } else {
                set_status(conn, prior.id, ended).await?;
                Ok(Outcome::NothingToDo {
                    why: "the dose was waiting in the exceptions queue; it is closed".into(),
                })
            }
        }
        // Deleted, not given or dismissed before, and given now: record it again.
        _ if counts => {
            refresh(conn, prior.id, d, &natural, cvx.as_deref()).await?;
            take(conn, place, d, prior.id, ndcs, &named, actor).await
        }
        _ => Ok(Outcome::NothingToDo {
            why: "the dose is not counted already".into(),
        }),
    }
}

/// Binds a dose's administration columns as `$1`…`$13`: location, ORC-3, natural key,
/// patient, CVX, NDC, lot number, when, eligibility, funding source, source, message id, now.
fn bind_dose<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    place: &'q Place,
    d: &'q DoseReport,
    natural: &'q str,
    cvx: Option<&'q str>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&place.code)
        .bind(&d.orc_key)
        .bind(natural)
        .bind(&d.patient_id)
        .bind(cvx)
        .bind(match &d.vaccine {
            Vaccine::Ndc(n) => Some(n.to_string()),
            Vaccine::Cvx(_) => None,
        })
        .bind(d.lot.as_ref().map(|l| l.as_str()).unwrap_or(""))
        .bind(d.administered_at)
        .bind(&d.eligibility)
        .bind(&d.funding_source)
        .bind(d.source)
        .bind(&d.message_id)
        .bind(now_millis())
}

/// The row of a new dose that matched no stock.
async fn insert_exception(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    natural: &str,
    cvx: Option<&str>,
) -> Result<i64> {
    let sql = "INSERT INTO administrations (location_code, orc_key, natural_key, patient_id, cvx, ndc, lot_number, \
        administered_at, eligibility, funding_source, status, source, message_id, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'exception', $11, $12, $13, $13) RETURNING id";
    Ok(bind_dose(sqlx::query(sql), place, d, natural, cvx)
        .fetch_one(&mut *conn)
        .await?
        .try_get("id")?)
}

/// A dose that matched stock, written in one round trip unless it is already on record (by
/// ORC-3, or by patient, vaccine, day and lot as [`existing`] reads them): its row, one dose
/// off the stock and the ledger row. SQLite runs the three statements in one call, chained by
/// `changes()` and `last_insert_rowid()`; PostgreSQL runs one statement of data-modifying
/// CTEs. `None`: on record already, nothing written. A row written without its dose (the stock
/// went meanwhile) is an error, and the caller's transaction is rolled back.
#[allow(clippy::too_many_arguments)]
async fn insert_taken(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    natural: &str,
    cvx: Option<&str>,
    m: &Match,
    review: Option<String>,
    actor: &str,
) -> Result<Option<i64>> {
    const ADMIN: &str = "INSERT INTO administrations (location_code, orc_key, natural_key, patient_id, cvx, ndc, \
        lot_number, administered_at, eligibility, funding_source, status, source, message_id, created_at, updated_at, \
        lot_id, unit_id, review) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'decremented', $11, $12, $13, $13, \
        $14, $15, $16 WHERE NOT EXISTS (SELECT 1 FROM administrations WHERE location_code = $1 AND orc_key = $2) \
        AND NOT EXISTS (SELECT 1 FROM administrations WHERE location_code = $1 AND natural_key = $3 \
        AND status <> 'deleted' AND ($2 IS NULL OR orc_key IS NULL)) RETURNING id";
    const EVENT: &str = "INSERT INTO stock_events (location_code, unit_id, lot_id, kind, doses, source, source_ref, \
        administration_id, occurred_at, recorded_at, actor)";
    let sqlite = conn.backend_name() == "SQLite";
    let sql = if sqlite {
        format!(
            "{ADMIN}; UPDATE stock SET on_hand = on_hand - 1, updated_at = $13 WHERE unit_id = $15 AND lot_id = $14 \
             AND on_hand >= 1 AND changes() = 1; \
             {EVENT} SELECT $1, $15, $14, 'administration', -1, $11, $12, last_insert_rowid(), $8, $13, $17 \
             WHERE changes() = 1 RETURNING id"
        )
    } else {
        format!(
            "WITH a AS ({ADMIN}), s AS (UPDATE stock SET on_hand = on_hand - 1, updated_at = $13 WHERE unit_id = $15 \
             AND lot_id = $14 AND on_hand >= 1 AND EXISTS (SELECT 1 FROM a) RETURNING unit_id), \
             e AS ({EVENT} SELECT $1, $15, $14, 'administration', -1, $11, $12, a.id, $8, $13, $17 FROM a, s RETURNING id) \
             SELECT a.id, 0 AS o FROM a UNION ALL SELECT e.id, 1 AS o FROM e ORDER BY o"
        )
    };
    let rows = bind_dose(sqlx::query(&sql), place, d, natural, cvx)
        .bind(m.lot_id)
        .bind(m.unit_id)
        .bind(review)
        .bind(actor)
        .fetch_all(&mut *conn)
        .await?;
    match rows.len() {
        0 => Ok(None),
        2 => Ok(Some(rows[0].try_get("id")?)),
        _ => Err(Error::Conflict(format!(
            "lot {} in unit {} had no dose left to take; the dose was not recorded, send it again",
            m.lot_id, m.unit_id
        ))),
    }
}

async fn refresh(conn: &mut AnyConnection, id: i64, d: &DoseReport, natural: &str, cvx: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE administrations SET natural_key = $1, cvx = $2, lot_number = $3, administered_at = $4, eligibility = $5, \
         funding_source = $6, message_id = $7, review = NULL, lot_id = NULL, unit_id = NULL, updated_at = $8 WHERE id = $9",
    )
    .bind(natural)
    .bind(cvx)
    .bind(d.lot.as_ref().map(|l| l.as_str()).unwrap_or(""))
    .bind(d.administered_at)
    .bind(&d.eligibility)
    .bind(&d.funding_source)
    .bind(&d.message_id)
    .bind(now_millis())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn set_status(conn: &mut AnyConnection, id: i64, status: &str) -> Result<()> {
    sqlx::query("UPDATE administrations SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Puts the dose back on the shelf it came from: the opposite of its decrement, linked to it.
async fn give_back(conn: &mut AnyConnection, place: &Place, id: i64, actor: &str, d: &DoseReport) -> Result<()> {
    let taken = sqlx::query(
        "SELECT e.id, e.unit_id, e.lot_id FROM stock_events e WHERE e.administration_id = $1 AND e.kind = 'administration' \
         AND NOT EXISTS (SELECT 1 FROM stock_events r WHERE r.reverses = e.id) ORDER BY e.id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(t) = taken {
        let mut e = Entry::new(
            &place.code,
            t.try_get("unit_id")?,
            t.try_get("lot_id")?,
            Kind::Reversal,
            1,
            actor,
        );
        e.reverses = Some(t.try_get("id")?);
        e.administration_id = Some(id);
        e.source = d.source;
        e.source_ref = d.message_id.clone();
        e.reason_code = Some("administration");
        e.note = Some(match d.action {
            Action::Delete => "the EHR deleted the dose",
            _ => "the EHR corrected the dose",
        });
        ledger::record(conn, &e).await?;
    }
    Ok(())
}

/// The stock a dose comes out of, or why there is none.
#[derive(Debug)]
pub struct Match {
    pub unit_id: i64,
    pub lot_id: i64,
    pub lot: String,
    pub funding: String,
    pub expires_on: String,
    pub held: bool,
}

/// Stock rows a dose could come from, as read once per HL7 batch: a batch's doses mostly name
/// the same lots. The intake takes a dose off the cached row when it writes one, and drops the
/// cache when anything else writes.
pub type StockCache = std::collections::HashMap<String, Vec<Cand>>;

fn stock_key(place: &Place, lot: &LotNumber, ndcs: &[String]) -> String {
    format!("{}|{}|{}", place.code, lot.key(), ndcs.join(","))
}

/// Notes in the cache that a dose of `m` was written.
pub fn took(cache: &mut StockCache, place: &Place, lot: &LotNumber, ndcs: &[String], m: &Match) {
    if let Some(c) = cache
        .get_mut(&stock_key(place, lot, ndcs))
        .and_then(|cs| cs.iter_mut().find(|c| c.unit_id == m.unit_id && c.lot_id == m.lot_id))
    {
        c.on_hand -= 1;
    }
}

#[derive(Debug, Clone)]
pub struct Cand {
    unit_id: i64,
    lot_id: i64,
    lot: String,
    on_hand: i64,
    funding: String,
    expires_on: String,
    held: bool,
    preferred: bool,
}

async fn load_candidates(
    conn: &mut AnyConnection,
    place: &Place,
    ndcs: &[String],
    lot: &LotNumber,
    vaccine: &str,
) -> std::result::Result<Vec<Cand>, (&'static str, String)> {
    let list = ndcs
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",");
    let rows = sqlx::query(&format!(
        "SELECT s.unit_id, s.lot_id, s.on_hand, l.funding, l.expires_on, l.ndc, l.lot_number, \
         (SELECT COUNT(*) FROM holds h WHERE h.unit_id = s.unit_id AND h.lot_id = s.lot_id AND h.ended_at IS NULL) AS held, \
         (SELECT COUNT(*) FROM location_product_units p WHERE p.location_code = s.location_code AND p.ndc = l.ndc AND p.unit_id = s.unit_id) AS preferred \
         FROM stock s JOIN lots l ON l.id = s.lot_id WHERE s.location_code = $1 AND l.lot_key = $2 AND l.ndc IN ({list})"
    ))
    .bind(&place.code)
    .bind(lot.key())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| ("database", e.to_string()))?;
    if rows.is_empty() {
        // Elsewhere in this PIN only: another provider's stock is not told.
        let anywhere = sqlx::query(&format!(
            "SELECT 1 FROM stock s JOIN lots l ON l.id = s.lot_id JOIN locations c ON c.code = s.location_code \
             WHERE l.lot_key = $1 AND l.ndc IN ({list}) AND c.pin = $2"
        ))
        .bind(lot.key())
        .bind(&place.pin)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| ("database", e.to_string()))?
        .is_some();
        return Err(if anywhere {
            (
                "lot_not_here",
                format!("lot {} of {vaccine} is not stocked at {}", lot.as_str(), place.code),
            )
        } else {
            (
                "unknown_lot",
                format!("lot {} of {vaccine} is not in this provider's inventory", lot.as_str()),
            )
        });
    }
    rows.iter()
        .map(|r| {
            Ok(Cand {
                unit_id: r.try_get("unit_id")?,
                lot_id: r.try_get("lot_id")?,
                lot: r.try_get("lot_number")?,
                on_hand: r.try_get("on_hand")?,
                funding: r.try_get("funding")?,
                expires_on: r.try_get("expires_on")?,
                held: r.try_get::<i64, _>("held")? > 0,
                preferred: r.try_get::<i64, _>("preferred")? > 0,
            })
        })
        .collect::<sqlx::Result<_>>()
        .map_err(|e| ("database", e.to_string()))
}

/// Matches lot + vaccine + location; funding source, then eligibility, picks VFC or private
/// stock when a lot number exists as both; the location's unit for the product comes first.
#[allow(clippy::too_many_arguments)]
pub async fn find_stock(
    conn: &mut AnyConnection,
    place: &Place,
    ndcs: &[String],
    lot: Option<&LotNumber>,
    eligibility: Option<&str>,
    funding_source: Option<&str>,
    vaccine: &str,
    cache: Option<&mut StockCache>,
) -> std::result::Result<Match, (&'static str, String)> {
    if ndcs.is_empty() {
        return Err((
            "unknown_vaccine",
            format!("{vaccine} is not in the vaccine catalog (load CDC's files with `vfc catalog import`)"),
        ));
    }
    let Some(lot) = lot else {
        return Err(("no_lot", "the dose has no lot number (RXA-15)".to_string()));
    };
    let key = stock_key(place, lot, ndcs);
    let cached = cache.as_ref().and_then(|c| c.get(&key).cloned());
    let mut cands = match cached {
        Some(c) => c,
        None => {
            let c = load_candidates(conn, place, ndcs, lot, vaccine).await?;
            if let Some(cache) = cache {
                cache.insert(key, c.clone());
            }
            c
        }
    };
    let mut fundings: Vec<String> = cands.iter().map(|c| c.funding.clone()).collect();
    fundings.sort();
    fundings.dedup();
    if fundings.len() > 1 {
        // docs/domain.md: funding source (30963-3) first, then eligibility (64994-7).
        let wanted: Option<&[&str]> = match (funding_source, eligibility) {
            (Some("VXC50"), _) => Some(&["vfc"]),
            (Some("VXC2"), _) => Some(&["state"]),
            (Some("PHC70"), _) => Some(&["private"]),
            (_, Some("V01")) => Some(&["private"]),
            (_, Some("V02" | "V03" | "V04" | "V05" | "V07")) => Some(&["vfc", "state"]),
            _ => None,
        };
        let Some(wanted) = wanted else {
            return Err((
                "ambiguous_funding",
                format!(
                    "lot {} is held as {} stock and the dose says neither its funding source nor its eligibility",
                    lot.as_str(),
                    fundings.join(" and ")
                ),
            ));
        };
        cands.retain(|c| wanted.contains(&c.funding.as_str()));
        if cands.is_empty() {
            return Err((
                "lot_not_here",
                format!(
                    "lot {} is not stocked at {} with the funding the dose names",
                    lot.as_str(),
                    place.code
                ),
            ));
        }
    }
    cands.sort_by_key(|c| (!c.preferred, c.held, -c.on_hand));
    let Some(c) = cands.into_iter().find(|c| c.on_hand > 0) else {
        return Err((
            "no_stock",
            format!(
                "no doses of lot {} are left at {} (the ledger shows 0 on hand)",
                lot.as_str(),
                place.code
            ),
        ));
    };
    Ok(Match {
        unit_id: c.unit_id,
        lot_id: c.lot_id,
        lot: c.lot,
        funding: c.funding,
        expires_on: c.expires_on,
        held: c.held,
    })
}

/// Takes the dose off the shelf, or queues it as an exception.
async fn take(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    id: i64,
    ndcs: &[String],
    vaccine: &str,
    actor: &str,
) -> Result<Outcome> {
    let found = find_stock(
        conn,
        place,
        ndcs,
        d.lot.as_ref(),
        d.eligibility.as_deref(),
        d.funding_source.as_deref(),
        vaccine,
        None,
    )
    .await;
    let m = match found {
        Ok(m) => m,
        Err(("database", e)) => return Err(Error::Database(sqlx::Error::Protocol(e))),
        Err((code, reason)) => return queue(conn, place, id, code, reason, d.message_id.as_deref(), false).await,
    };
    decrement(conn, place, id, &m, d, actor, Done::Nothing).await
}

/// Why a dose from this stock goes on the revaccination review list: the flags and the stored
/// words. A dose given from an expired or held lot did leave the shelf; the clinic reviews it.
fn review_flags(m: &Match, day: &str) -> (Vec<Flag>, Option<String>) {
    let mut flags = Vec::new();
    let given_on = format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..8]);
    if m.expires_on < given_on {
        flags.push(Flag::ExpiredLot(m.expires_on.clone()));
    }
    if m.held {
        flags.push(Flag::HeldLot);
    }
    let words: Vec<&str> = flags
        .iter()
        .map(|f| match f {
            Flag::ExpiredLot(_) => "expired_lot",
            _ => "lot_on_hold",
        })
        .collect();
    let review = (!words.is_empty()).then(|| words.join(","));
    (flags, review)
}

/// The dose facts a decrement records.
struct Given<'a> {
    at: i64,
    day: &'a str,
    eligibility: Option<&'a str>,
    funding_source: Option<&'a str>,
    source: &'a str,
    message_id: Option<String>,
}

impl<'a> From<&'a DoseReport> for Given<'a> {
    fn from(d: &'a DoseReport) -> Self {
        Given {
            at: d.administered_at,
            day: &d.day,
            eligibility: d.eligibility.as_deref(),
            funding_source: d.funding_source.as_deref(),
            source: d.source,
            message_id: d.message_id.clone(),
        }
    }
}

/// What of a decrement is already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Nothing,
    /// The administration row, the stock and the ledger row ([`insert_taken`]).
    RowAndLedger,
}

/// Takes the dose off the shelf and records why it needs a look (review, borrowing).
async fn decrement<'a>(
    conn: &mut AnyConnection,
    place: &Place,
    id: i64,
    m: &Match,
    given: impl Into<Given<'a>>,
    actor: &str,
    done: Done,
) -> Result<Outcome> {
    let Given {
        at,
        day,
        eligibility,
        funding_source,
        source,
        message_id,
    } = given.into();
    let (mut flags, review) = review_flags(m, day);
    if done != Done::RowAndLedger {
        let mut e = Entry::new(&place.code, m.unit_id, m.lot_id, Kind::Administration, -1, actor);
        e.administration_id = Some(id);
        e.occurred_at = at;
        e.source = source;
        e.source_ref = message_id;
        ledger::record(conn, &e).await?;
    }
    if done == Done::Nothing {
        sqlx::query(
            "UPDATE administrations SET status = 'decremented', lot_id = $1, unit_id = $2, review = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(m.lot_id)
        .bind(m.unit_id)
        .bind(review)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    // docs/domain.md: a V01 patient given public stock, or a V02–V05 patient given private stock.
    let borrowed = match eligibility {
        Some("V01") => m.funding != "private",
        Some("V02" | "V03" | "V04" | "V05") => m.funding == "private",
        _ => false,
    };
    if let (true, Some(elig)) = (borrowed, eligibility) {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO borrowing (location_code, administration_id, lot_id, eligibility, stock_funding, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (administration_id) DO UPDATE SET lot_id = excluded.lot_id, \
             eligibility = excluded.eligibility, stock_funding = excluded.stock_funding, updated_at = excluded.updated_at",
        )
        .bind(&place.code)
        .bind(id)
        .bind(m.lot_id)
        .bind(elig)
        .bind(&m.funding)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        flags.push(Flag::Borrowing {
            eligibility: elig.to_string(),
            funding: m.funding.clone(),
        });
    } else if done != Done::RowAndLedger {
        // A correction that is no longer borrowing takes its record away.
        sqlx::query("DELETE FROM borrowing WHERE administration_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    let named = match funding_source {
        Some("VXC50") => Some("vfc"),
        Some("VXC2") => Some("state"),
        Some("PHC70") => Some("private"),
        _ => None,
    };
    if let Some(said) = named.filter(|f| *f != m.funding) {
        flags.push(Flag::FundingMismatch {
            said: said.to_string(),
            stock: m.funding.clone(),
        });
    }
    absorb_counted(conn, place, m, at, actor).await?;
    Ok(Outcome::Decremented {
        administration_id: id,
        lot_id: m.lot_id,
        lot: m.lot.clone(),
        unit_id: m.unit_id,
        flags,
    })
}

/// A dose given before a physical count but reported after it: the count already left it out
/// and its adjustment took it off, so the first count after the dose gives it back — at most
/// as many doses as that count's adjustment took (docs/domain.md, reconciliation; nothing counted
/// twice).
async fn absorb_counted(conn: &mut AnyConnection, place: &Place, m: &Match, at: i64, actor: &str) -> Result<()> {
    if place.last_count_at.is_none_or(|t| at > t) {
        return Ok(());
    }
    let Some(r) = sqlx::query(
        "SELECT id, as_of, lines FROM reconciliations WHERE location_code = $1 AND as_of >= $2 ORDER BY as_of, id LIMIT 1",
    )
    .bind(&place.code)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let id: i64 = r.try_get("id")?;
    let lines: Vec<super::reconcile::CountLine> =
        serde_json::from_str(&r.try_get::<String, _>("lines")?).unwrap_or_default();
    let Some(took) = lines
        .iter()
        .find(|l| l.unit_id == m.unit_id && l.lot_id == m.lot_id && l.adjustment < 0)
        .map(|l| -l.adjustment)
    else {
        return Ok(());
    };
    let given_back: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(doses), 0) AS BIGINT) AS n FROM stock_events WHERE source = 'reconciliation' \
         AND source_ref = $1 AND unit_id = $2 AND lot_id = $3 AND doses > 0",
    )
    .bind(id.to_string())
    .bind(m.unit_id)
    .bind(m.lot_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    if given_back >= took {
        return Ok(());
    }
    let mut e = Entry::new(&place.code, m.unit_id, m.lot_id, Kind::Adjustment, 1, actor);
    e.occurred_at = r.try_get("as_of")?;
    e.reason_code = Some("reconciliation");
    e.note = Some("a dose given before the count was reported after it: the count had already left it out");
    e.source = "reconciliation";
    e.source_ref = Some(id.to_string());
    ledger::record(conn, &e).await?;
    Ok(())
}

async fn queue(
    conn: &mut AnyConnection,
    place: &Place,
    id: i64,
    code: &'static str,
    reason: String,
    message_id: Option<&str>,
    row_done: bool,
) -> Result<Outcome> {
    if !row_done {
        set_status(conn, id, "exception").await?;
    }
    let exception_id = sqlx::query(
        "INSERT INTO decrement_exceptions (location_code, administration_id, reason_code, reason, message_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&place.code)
    .bind(id)
    .bind(code)
    .bind(&reason)
    .bind(message_id)
    .bind(now_millis())
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?;
    Ok(Outcome::Exception {
        administration_id: id,
        exception_id,
        reason_code: code,
        reason,
    })
}

async fn close_exceptions(conn: &mut AnyConnection, administration_id: i64, actor: &str, why: &str) -> Result<()> {
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

pub async fn exceptions(
    conn: &mut AnyConnection,
    place: &Place,
    include_resolved: bool,
) -> Result<Vec<DecrementException>> {
    let rows = sqlx::query(&format!(
        "SELECT {EXCEPTION_COLUMNS} WHERE x.location_code = $1 AND ($2 = 1 OR x.resolved_at IS NULL) ORDER BY x.id"
    ))
    .bind(&place.code)
    .bind(include_resolved as i64)
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
    let lock = if conn.backend_name() == "SQLite" {
        ""
    } else {
        " FOR UPDATE OF x"
    };
    let r = sqlx::query(&format!("SELECT {EXCEPTION_COLUMNS} WHERE x.id = $1{lock}"))
        .bind(exception_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no decrement exception {exception_id}")))?;
    let x = exception_row(&r)?;
    let place = super::place(conn, scope, &x.location)
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
            close_exceptions(conn, x.administration_id, actor, &format!("dismissed: {why}")).await?;
            set_status(conn, x.administration_id, "dismissed").await?;
        }
        (Some(lot_id), None) => {
            let a = sqlx::query(
                "SELECT administered_at, eligibility, funding_source, message_id, source, cvx FROM administrations WHERE id = $1",
            )
            .bind(x.administration_id)
            .fetch_one(&mut *conn)
            .await?;
            // The lot must be of the dose's vaccine.
            let product = sqlx::query(
                "SELECT p.cvx, p.name, l.lot_number FROM lots l JOIN products p ON p.ndc = l.ndc WHERE l.id = $1",
            )
            .bind(lot_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::Invalid(format!("no lot {lot_id}; see the location's inventory")))?;
            let dose_cvx: Option<String> = a.try_get("cvx")?;
            let lot_cvx: String = product.try_get("cvx")?;
            if dose_cvx.as_deref().is_some_and(|c| c != lot_cvx) {
                return Err(Error::Invalid(format!(
                    "lot {} is {} (CVX {lot_cvx}); the dose was CVX {}: assign a lot of that vaccine",
                    product.try_get::<String, _>("lot_number")?,
                    product.try_get::<String, _>("name")?,
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
            let best = stock
                .iter()
                .max_by_key(|s| {
                    (
                        s.try_get::<i64, _>("preferred").unwrap_or(0),
                        s.try_get::<i64, _>("on_hand").unwrap_or(0),
                    )
                })
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "lot {lot_id} has no doses on hand at {}{}; receive or adjust it first",
                        place.code,
                        body.unit_id.map(|u| format!(" in unit {u}")).unwrap_or_default()
                    ))
                })?;
            let at: i64 = a.try_get("administered_at")?;
            let m = Match {
                unit_id: best.try_get("unit_id")?,
                lot_id,
                lot: product.try_get("lot_number")?,
                funding: best.try_get("funding")?,
                expires_on: best.try_get("expires_on")?,
                held: best.try_get::<i64, _>("held")? > 0,
            };
            let day = crate::store::from_millis(at)
                .with_timezone(&place.tz)
                .format("%Y%m%d")
                .to_string();
            let source: String = a.try_get("source")?;
            let source = if source == "hl7" { "hl7" } else { "json" };
            let eligibility: Option<String> = a.try_get("eligibility")?;
            let funding_source: Option<String> = a.try_get("funding_source")?;
            let given = Given {
                at,
                day: &day,
                eligibility: eligibility.as_deref(),
                funding_source: funding_source.as_deref(),
                source,
                message_id: a.try_get("message_id")?,
            };
            decrement(conn, &place, x.administration_id, &m, given, actor, Done::Nothing).await?;
            close_exceptions(conn, x.administration_id, actor, &format!("assigned to lot {lot_id}")).await?;
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
