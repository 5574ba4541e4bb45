//! Doses administered: the decrement (docs/domain.md, "Doses administered over HL7" and
//! "Inventory"). One report — from an HL7 RXA group or a JSON entry — becomes at most one
//! decrement, however often the EHR sends it. This module owns `administrations`,
//! `decrement_exceptions` and `borrowing`.
//!
//! - Only a dose given here (RXA-9 = 00) and completed or partly given (CP, PA) takes a dose
//!   off the shelf; historical, refused and not-given doses never do.
//! - The same dose is its ORC-3 (id and namespace) or, without one, (PID-3, vaccine, date,
//!   lot): EHRs resend whole histories, and a dose never decrements twice.
//! - Delete (D) gives the dose back; update (U) to another lot moves the decrement.
//! - A dose that matches no stock goes to the decrement-exceptions queue, never nowhere.
//!
//! The parts: [`report`] (the dose and its outcome), [`matching`] (which stock), [`decide`]
//! (what a report does to a dose on record — a pure function), [`write`] (the rows), and
//! [`exceptions`] (the queue). [`apply_known`] puts them together.

pub mod decide;
pub mod exceptions;
pub mod matching;
pub mod report;
pub mod review;
pub mod write;

use sqlx::AnyConnection;

use super::catalog;
use super::{Error, Place, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Scope;
use crate::store::Db;
use decide::{Nothing, Step};
use matching::{StockCache, Wanted};
use write::{Done, Keys};

pub use exceptions::{exceptions_at, resolve, resolve_now, DecrementException, Resolution};
pub use report::{Action, DoseReport, Flag, Outcome, Source, Unmatched};

/// The location an EHR's facility id names: a location code, or an id registered for one.
pub async fn facility(conn: &mut AnyConnection, id: &str) -> Result<Option<Place>> {
    let id = id.trim().to_ascii_uppercase();
    // A location code names its location; only other ids are looked up as registered aliases.
    let code = match crate::domain::LocationCode::parse(&id) {
        Ok(c) => Some(c.to_string()),
        Err(_) => super::routing::facility_location(conn, &id).await?,
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

/// How many doses on record at location `code` took a dose off the shelf.
pub async fn decremented_at(db: &Db, code: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM administrations WHERE location_code = $1 AND status = 'decremented'")
            .bind(code)
            .fetch_one(&db.pool)
            .await?,
    )
}

/// When a dose was last recorded at location `code` (HL7 or JSON, whatever became of it), for
/// the orders' "doses reported" check.
pub async fn last_recorded_at(conn: &mut AnyConnection, code: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(created_at) FROM administrations WHERE location_code = $1")
            .bind(code)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Doses reported together for one location (the JSON route): one transaction, one report at
/// a time, committed at the end.
pub struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    place: Place,
}

impl Batch {
    /// Opens a batch for location `code` in the caller's scope.
    pub async fn open(db: &Db, scope: &Scope, code: &str) -> Result<Batch> {
        let mut tx = db.begin().await?;
        let place = super::place(&mut tx, scope, code).await?;
        Ok(Batch { tx, place })
    }

    /// The location's time zone, in which its EHR's dates are read.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.place.tz
    }

    pub async fn apply(&mut self, d: &DoseReport, actor: &str) -> Result<Outcome> {
        apply(&mut self.tx, &self.place, d, actor).await
    }

    /// Commits the batch with its one audit row naming the doses it recorded.
    pub async fn commit(mut self, who: &Who, administration_ids: Vec<i64>) -> Result<()> {
        let entry = audit::Entry::new("doses.report", "administration", administration_ids)
            .at(Some(&self.place.pin), Some(&self.place.code));
        audit::record(&mut self.tx, who, entry).await?;
        self.tx.commit().await?;
        Ok(())
    }
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
    let keys = Keys::of(d, cvx.as_deref());
    let vaccine = d.vaccine.describe();
    let wanted = Wanted {
        ndcs,
        lot: d.lot.as_ref(),
        eligibility: d.eligibility,
        funding_source: d.funding_source,
        vaccine: &vaccine,
    };
    // The common case first: a new dose given here that matches stock is written in one
    // statement that also checks it is not on record yet. Why a dose matched nothing is kept
    // for the queue, should it turn out to be new.
    let mut unmatched = None;
    if d.counts() {
        match matching::find(conn, place, &wanted, stock.as_deref_mut()).await? {
            Ok(m) => {
                if let Some(id) = write::taken(conn, place, d, &keys, &m, actor).await? {
                    if let (Some(cache), Some(lot)) = (stock.as_deref_mut(), d.lot.as_ref()) {
                        matching::took(cache, place, lot, ndcs, &m);
                    }
                    return write::decrement(conn, place, id, &m, d.into(), actor, Done::RowAndLedger).await;
                }
            }
            Err(why) => unmatched = Some(why),
        }
    }
    // Anything below may move stock the cache does not follow.
    if let Some(cache) = stock {
        cache.clear();
    }
    let record = write::on_record(conn, place, d, &keys).await?;
    let step = decide::step(record.as_ref().map(|r| r.prior), d.action, d.counts(), d.reported_at);
    if let (true, Some(r)) = (step.records_time(), &record) {
        write::reported(conn, r.id, d.reported_at).await?;
    }
    let not_given = || d.not_given.clone().unwrap_or_default();
    match (step, record) {
        (Step::Nothing(Nothing::Stale), _) => Ok(Outcome::NothingToDo {
            why: "a later report of this dose is on record (by MSH-7): it has the last word, this one changes nothing"
                .into(),
        }),
        (Step::Tombstone(status), _) => {
            // Kept, so the report this one corrects changes nothing if it arrives later.
            write::tombstone(conn, place, d, &keys, status).await?;
            Ok(Outcome::NothingToDo {
                why: "no such dose on record; nothing to give back (the correction is kept, so the dose reported \
                      later with an earlier MSH-7 changes nothing)"
                    .into(),
            })
        }
        (Step::Nothing(Nothing::AlreadyNotCounted), _) => Ok(Outcome::NothingToDo {
            why: "the dose is not counted already".into(),
        }),
        (Step::NotCounted, _) => Ok(Outcome::NotCounted { why: not_given() }),
        (Step::Queue, _) => {
            // A new dose that matched no stock: it waits in the queue, never dropped. (One
            // that matched was written above; only an ORC-3 or natural key on record sends it
            // here.)
            let Some(why) = unmatched else {
                return Err(Error::Conflict(
                    "the dose matched stock but could not be written; nothing was recorded, send it again".into(),
                ));
            };
            let id = write::queued_row(conn, place, d, &keys).await?;
            exceptions::queue(conn, place, id, why, d.message_id.as_deref(), true).await
        }
        (_, None) => unreachable!("a dose not on record is queued, not counted, or nothing"),
        (Step::Duplicate, Some(r)) => Ok(Outcome::Duplicate {
            administration_id: r.id,
        }),
        (
            Step::Retake {
                give_back,
                close_exceptions,
            },
            Some(r),
        ) => {
            settle(conn, place, d, r.id, give_back, close_exceptions, actor).await?;
            // An update (another lot, date, eligibility or funding): the decrement moves.
            write::refresh(conn, r.id, d, &keys).await?;
            take(conn, place, d, r.id, &wanted, actor).await
        }
        (
            Step::End {
                give_back,
                close_exceptions,
                status,
            },
            Some(r),
        ) => {
            settle(conn, place, d, r.id, give_back, close_exceptions, actor).await?;
            write::set_status(conn, r.id, status).await?;
            if give_back {
                write::no_borrowing(conn, r.id).await?;
                Ok(Outcome::GivenBack {
                    administration_id: r.id,
                })
            } else {
                Ok(Outcome::NothingToDo {
                    why: "the dose was waiting in the exceptions queue; it is closed".into(),
                })
            }
        }
    }
}

/// Undoes what a dose on record did before a correction: gives its dose back, closes its
/// queued exceptions.
async fn settle(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    id: i64,
    give_back: bool,
    close_exceptions: bool,
    actor: &str,
) -> Result<()> {
    if give_back {
        write::give_back(conn, place, id, actor, d).await?;
    }
    if close_exceptions {
        exceptions::close(conn, id, actor, "superseded by a later report from the EHR").await?;
    }
    Ok(())
}

/// Takes a dose on record off the shelf, or queues it as an exception.
async fn take(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    id: i64,
    wanted: &Wanted<'_>,
    actor: &str,
) -> Result<Outcome> {
    match matching::find(conn, place, wanted, None).await? {
        Ok(m) => write::decrement(conn, place, id, &m, d.into(), actor, Done::Nothing).await,
        Err(why) => exceptions::queue(conn, place, id, why, d.message_id.as_deref(), false).await,
    }
}
