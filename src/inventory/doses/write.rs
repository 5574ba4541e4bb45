//! Writing doses: the `administrations` row, one dose off the stock with its ledger row,
//! giving a dose back, and the borrowing record. The fast path, [`taken`], writes a new dose
//! that matched stock in one round trip.

use chrono::NaiveDate;
use sqlx::{AnyConnection, Row};

use super::super::ledger::{self, Entry, Kind};
use super::super::Place;
use super::decide::{Prior, Status};
use super::matching::{review_flags, Match};
use super::report::{Action, DoseReport, Flag, Outcome};
use crate::domain::{Eligibility, FundingSource};
use crate::error::{Error, Result};
use crate::store::{now_millis, Dialect};

/// How a dose is known again when the EHR sends it: its ORC-3, or (patient, vaccine, day, lot).
pub struct Keys {
    pub natural: String,
    /// The vaccine's CVX, when the catalog knows it.
    pub cvx: Option<String>,
}

impl Keys {
    pub fn of(d: &DoseReport, cvx: Option<&str>) -> Keys {
        let vaccine = cvx.map(str::to_string).unwrap_or_else(|| d.vaccine.describe());
        let lot = d.lot.as_ref().map(|l| l.key().to_string()).unwrap_or_default();
        Keys {
            natural: format!("{}|{}|{}|{}", d.patient_id, vaccine, d.day.format("%Y%m%d"), lot),
            cvx: cvx.map(str::to_string),
        }
    }
}

/// The dose on record with this ORC-3 or natural key at the location, if any.
pub struct OnRecord {
    pub id: i64,
    pub prior: Prior,
}

/// Looks the dose up: by ORC-3 first; else (or without one) the same patient, vaccine, day and
/// lot. A natural-key match that carries its own, different ORC-3 is another dose.
pub async fn on_record(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    keys: &Keys,
) -> Result<Option<OnRecord>> {
    let orc = d.orc_key.as_deref();
    // A deleted dose is found too: a delete that arrived before the report it deletes is kept
    // as one, and a later (newer) report of the same dose brings it back.
    let r = sqlx::query(
        "SELECT id, status, lot_key, cvx, orc_key, reported_at FROM ( \
         SELECT id, status, UPPER(lot_number) AS lot_key, cvx, orc_key, reported_at, 0 AS pri FROM administrations \
         WHERE location_code = $1 AND orc_key = $2 \
         UNION ALL SELECT id, status, UPPER(lot_number) AS lot_key, cvx, orc_key, reported_at, 1 AS pri FROM administrations \
         WHERE location_code = $1 AND natural_key = $3) found ORDER BY pri, id DESC LIMIT 1",
    )
    .bind(&place.code)
    .bind(orc)
    .bind(&keys.natural)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = r else { return Ok(None) };
    let found: Option<String> = r.try_get("orc_key")?;
    if !(found.as_deref() == orc || orc.is_none() || found.is_none()) {
        return Ok(None);
    }
    let id: i64 = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let status =
        Status::parse(&status).ok_or_else(|| Error::unreadable("administrations", id, format!("status {status:?}")))?;
    let lot_key: String = r.try_get("lot_key")?;
    let cvx: Option<String> = r.try_get("cvx")?;
    let report_lot = d.lot.as_ref().map(|l| l.key().to_string()).unwrap_or_default();
    let same = lot_key == report_lot && cvx.as_deref().unwrap_or("") == keys.cvx.as_deref().unwrap_or("");
    Ok(Some(OnRecord {
        id,
        prior: Prior {
            status,
            same,
            reported_at: r.try_get("reported_at")?,
        },
    }))
}

/// Binds a dose's administration columns as `$1`…`$13`: location, ORC-3, natural key,
/// patient, CVX, NDC, lot number, when, eligibility, funding source, source, message id, now.
fn bind_dose<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    place: &'q Place,
    d: &'q DoseReport,
    keys: &'q Keys,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&place.code)
        .bind(&d.orc_key)
        .bind(&keys.natural)
        .bind(&d.patient_id)
        .bind(keys.cvx.as_deref())
        .bind(match &d.vaccine {
            super::super::catalog::Vaccine::Ndc(n) => Some(n.to_string()),
            super::super::catalog::Vaccine::Cvx(_) => None,
        })
        .bind(d.lot.as_ref().map(|l| l.as_str()).unwrap_or(""))
        .bind(d.administered_at)
        .bind(d.eligibility.map(Eligibility::as_str))
        .bind(d.funding_source.map(FundingSource::as_str))
        .bind(d.source.as_str())
        .bind(&d.message_id)
        .bind(now_millis())
}

/// The row of a new dose that matched no stock.
pub async fn queued_row(conn: &mut AnyConnection, place: &Place, d: &DoseReport, keys: &Keys) -> Result<i64> {
    let sql = "INSERT INTO administrations (location_code, orc_key, natural_key, patient_id, cvx, ndc, lot_number, \
        administered_at, eligibility, funding_source, status, source, message_id, created_at, updated_at, reported_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'exception', $11, $12, $13, $13, $14) RETURNING id";
    Ok(bind_dose(sqlx::query(sql), place, d, keys)
        .bind(d.reported_at)
        .fetch_one(&mut *conn)
        .await?
        .try_get("id")?)
}

/// A delete (or a correction to not given) of a dose not on record, kept as a dose in `status`:
/// the report it corrects, arriving later and older, then changes nothing.
pub async fn tombstone(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    keys: &Keys,
    status: Status,
) -> Result<()> {
    let sql = "INSERT INTO administrations (location_code, orc_key, natural_key, patient_id, cvx, ndc, lot_number, \
        administered_at, eligibility, funding_source, status, source, message_id, created_at, updated_at, reported_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $14, $11, $12, $13, $13, $15)";
    bind_dose(sqlx::query(sql), place, d, keys)
        .bind(status.as_str())
        .bind(d.reported_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The dose on record now stands as of a report made at `at`.
pub async fn reported(conn: &mut AnyConnection, id: i64, at: i64) -> Result<()> {
    sqlx::query("UPDATE administrations SET reported_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A dose that matched stock, written in one round trip unless it is already on record (by
/// ORC-3, or by patient, vaccine, day and lot as [`on_record`] reads them): its row, one dose
/// off the stock and the ledger row. `None`: on record already, nothing written. A row written
/// without its dose (the stock went meanwhile) is an error, and the caller's transaction is
/// rolled back.
///
/// The two databases run different SQL here, for one round trip each: SQLite has no
/// data-modifying CTEs, so it runs the three statements in one call, chained by `changes()` and
/// `last_insert_rowid()`; PostgreSQL runs one statement of data-modifying CTEs.
pub async fn taken(
    conn: &mut AnyConnection,
    place: &Place,
    d: &DoseReport,
    keys: &Keys,
    m: &Match,
    actor: &str,
) -> Result<Option<i64>> {
    const ADMIN: &str = "INSERT INTO administrations (location_code, orc_key, natural_key, patient_id, cvx, ndc, \
        lot_number, administered_at, eligibility, funding_source, status, source, message_id, created_at, updated_at, \
        lot_id, unit_id, review, reported_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'decremented', $11, $12, \
        $13, $13, $14, $15, $16, $18 WHERE NOT EXISTS (SELECT 1 FROM administrations WHERE location_code = $1 AND orc_key = $2) \
        AND NOT EXISTS (SELECT 1 FROM administrations WHERE location_code = $1 AND natural_key = $3 \
        AND ($2 IS NULL OR orc_key IS NULL)) RETURNING id";
    // The event is dated when the dose was given, but never after it was recorded: the ledger
    // holds no future (an EHR's fast clock), so a count taken now finds the dose before it.
    const EVENT: &str = "INSERT INTO stock_events (location_code, unit_id, lot_id, kind, doses, source, source_ref, \
        administration_id, occurred_at, recorded_at, actor)";
    let sql = match Dialect::of(conn) {
        Dialect::Sqlite => format!(
            "{ADMIN}; UPDATE stock SET on_hand = on_hand - 1, updated_at = $13 WHERE unit_id = $15 AND lot_id = $14 \
             AND on_hand >= 1 AND changes() = 1; \
             {EVENT} SELECT $1, $15, $14, 'administration', -1, $11, $12, last_insert_rowid(), MIN($8, $13), $13, $17 \
             WHERE changes() = 1 RETURNING id"
        ),
        Dialect::Postgres => format!(
            "WITH a AS ({ADMIN}), s AS (UPDATE stock SET on_hand = on_hand - 1, updated_at = $13 WHERE unit_id = $15 \
             AND lot_id = $14 AND on_hand >= 1 AND EXISTS (SELECT 1 FROM a) RETURNING unit_id), \
             e AS ({EVENT} SELECT $1, $15, $14, 'administration', -1, $11, $12, a.id, LEAST($8, $13), $13, $17 FROM a, s RETURNING id) \
             SELECT a.id, 0 AS o FROM a UNION ALL SELECT e.id, 1 AS o FROM e ORDER BY o"
        ),
    };
    let (_, review) = review_flags(m, d.day);
    let rows = bind_dose(sqlx::query(&sql), place, d, keys)
        .bind(m.lot_id)
        .bind(m.unit_id)
        .bind(review)
        .bind(actor)
        .bind(d.reported_at)
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

/// Brings a dose on record up to date with a corrected report (lot, date, eligibility,
/// funding), before it is taken again.
pub async fn refresh(conn: &mut AnyConnection, id: i64, d: &DoseReport, keys: &Keys) -> Result<()> {
    sqlx::query(
        "UPDATE administrations SET natural_key = $1, cvx = $2, lot_number = $3, administered_at = $4, eligibility = $5, \
         funding_source = $6, message_id = $7, review = NULL, lot_id = NULL, unit_id = NULL, updated_at = $8 WHERE id = $9",
    )
    .bind(&keys.natural)
    .bind(keys.cvx.as_deref())
    .bind(d.lot.as_ref().map(|l| l.as_str()).unwrap_or(""))
    .bind(d.administered_at)
    .bind(d.eligibility.map(Eligibility::as_str))
    .bind(d.funding_source.map(FundingSource::as_str))
    .bind(&d.message_id)
    .bind(now_millis())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_status(conn: &mut AnyConnection, id: i64, status: Status) -> Result<()> {
    sqlx::query("UPDATE administrations SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now_millis())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Puts the dose back on the shelf it came from: the opposite of its decrement, linked to it.
pub async fn give_back(conn: &mut AnyConnection, place: &Place, id: i64, actor: &str, d: &DoseReport) -> Result<()> {
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
        e.source = d.source.as_str();
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

/// A correction that is no longer borrowing takes its record away.
pub async fn no_borrowing(conn: &mut AnyConnection, administration_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM borrowing WHERE administration_id = $1")
        .bind(administration_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The dose facts a decrement records.
pub struct Given<'a> {
    pub at: i64,
    pub day: NaiveDate,
    pub eligibility: Option<Eligibility>,
    pub funding_source: Option<FundingSource>,
    pub source: &'a str,
    pub message_id: Option<String>,
}

impl<'a> From<&'a DoseReport> for Given<'a> {
    fn from(d: &'a DoseReport) -> Self {
        Given {
            at: d.administered_at,
            day: d.day,
            eligibility: d.eligibility,
            funding_source: d.funding_source,
            source: d.source.as_str(),
            message_id: d.message_id.clone(),
        }
    }
}

/// What of a decrement is already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Nothing,
    /// The administration row, the stock and the ledger row ([`taken`]).
    RowAndLedger,
}

/// Takes the dose off the shelf (unless [`taken`] did) and records why it needs a look
/// (revaccination review, borrowing, a funding the stock does not have).
pub async fn decrement(
    conn: &mut AnyConnection,
    place: &Place,
    id: i64,
    m: &Match,
    given: Given<'_>,
    actor: &str,
    done: Done,
) -> Result<Outcome> {
    let (mut flags, review) = review_flags(m, given.day);
    if done == Done::Nothing {
        let mut e = Entry::new(&place.code, m.unit_id, m.lot_id, Kind::Administration, -1, actor);
        e.administration_id = Some(id);
        e.occurred_at = given.at;
        e.source = given.source;
        e.source_ref = given.message_id.clone();
        ledger::record(conn, &e).await?;
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
    // docs/domain.md, "Inventory": a V01 patient given public stock, or a V02–V05 patient given
    // private stock, is borrowing.
    match given.eligibility.filter(|e| e.borrows(m.funding)) {
        Some(eligibility) => {
            let now = now_millis();
            sqlx::query(
                "INSERT INTO borrowing (location_code, administration_id, lot_id, eligibility, stock_funding, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (administration_id) DO UPDATE SET lot_id = excluded.lot_id, \
                 eligibility = excluded.eligibility, stock_funding = excluded.stock_funding, updated_at = excluded.updated_at",
            )
            .bind(&place.code)
            .bind(id)
            .bind(m.lot_id)
            .bind(eligibility.as_str())
            .bind(m.funding.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?;
            flags.push(Flag::Borrowing {
                eligibility,
                funding: m.funding,
            });
        }
        // A corrected dose that is no longer borrowing loses its record; a new one has none.
        None if done == Done::Nothing => no_borrowing(conn, id).await?,
        None => {}
    }
    if let Some(said) = given
        .funding_source
        .map(FundingSource::funding)
        .filter(|f| *f != m.funding)
    {
        flags.push(Flag::FundingMismatch { said, stock: m.funding });
    }
    absorb_counted(conn, place, m, given.at, actor).await?;
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
    let lines: Vec<super::super::reconcile::CountLine> = serde_json::from_str(&r.try_get::<String, _>("lines")?)
        .map_err(|e| Error::unreadable("reconciliations", id, format!("lines: {e}")))?;
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
