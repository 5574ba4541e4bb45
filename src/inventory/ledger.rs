//! The stock ledger: one immutable row per change, and on-hand per (unit, lot) moved in the same
//! transaction. On hand never goes below zero: a change that would take it there is refused
//! with how many doses there are.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{Error, Result};
use crate::accounts::audit::{self, Who};
use crate::store::{now_millis, rfc3339};

/// What happened to the stock (docs/domain.md, "Movements").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Receipt,
    Administration,
    Wastage,
    Return,
    TransferIn,
    TransferOut,
    Adjustment,
    Hold,
    Release,
    Reversal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receipt => "receipt",
            Kind::Administration => "administration",
            Kind::Wastage => "wastage",
            Kind::Return => "return",
            Kind::TransferIn => "transfer_in",
            Kind::TransferOut => "transfer_out",
            Kind::Adjustment => "adjustment",
            Kind::Hold => "hold",
            Kind::Release => "release",
            Kind::Reversal => "reversal",
        }
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub location: &'a str,
    pub unit_id: i64,
    pub lot_id: i64,
    pub kind: Kind,
    /// Change to on hand: negative when doses leave the shelf.
    pub doses: i64,
    pub reason_code: Option<&'a str>,
    pub note: Option<&'a str>,
    /// api | hl7 | json | order | excursion | reconciliation
    pub source: &'a str,
    pub source_ref: Option<String>,
    pub reverses: Option<i64>,
    pub administration_id: Option<i64>,
    pub transfer_id: Option<i64>,
    pub hold_id: Option<i64>,
    pub from_unit_id: Option<i64>,
    pub occurred_at: i64,
    pub actor: &'a str,
}

impl<'a> Entry<'a> {
    pub fn new(location: &'a str, unit_id: i64, lot_id: i64, kind: Kind, doses: i64, actor: &'a str) -> Self {
        Entry {
            location,
            unit_id,
            lot_id,
            kind,
            doses,
            reason_code: None,
            note: None,
            source: "api",
            source_ref: None,
            reverses: None,
            administration_id: None,
            transfer_id: None,
            hold_id: None,
            from_unit_id: None,
            occurred_at: now_millis(),
            actor,
        }
    }
}

/// Records `e` and moves on hand; `Conflict` when there are not enough doses.
pub async fn record(conn: &mut AnyConnection, e: &Entry<'_>) -> Result<i64> {
    let now = now_millis();
    if e.doses > 0 {
        sqlx::query(
            "INSERT INTO stock (unit_id, lot_id, location_code, on_hand, first_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (unit_id, lot_id) DO UPDATE SET on_hand = stock.on_hand + excluded.on_hand, updated_at = excluded.updated_at",
        )
        .bind(e.unit_id)
        .bind(e.lot_id)
        .bind(e.location)
        .bind(e.doses)
        .bind(e.occurred_at.min(now))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    } else if e.doses < 0 {
        let moved = sqlx::query(
            "UPDATE stock SET on_hand = on_hand + $1, updated_at = $2 WHERE unit_id = $3 AND lot_id = $4 AND on_hand + $1 >= 0",
        )
        .bind(e.doses)
        .bind(now)
        .bind(e.unit_id)
        .bind(e.lot_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if moved == 0 {
            let have = on_hand(conn, e.unit_id, e.lot_id).await?;
            return Err(Error::Conflict(format!(
                "only {have} dose(s) of lot {} are on hand in unit {}; {} cannot take {}",
                lot_label(conn, e.lot_id).await?,
                e.unit_id,
                e.kind.as_str(),
                -e.doses
            )));
        }
    }
    let id = sqlx::query(
        "INSERT INTO stock_events (location_code, unit_id, lot_id, kind, doses, reason_code, note, source, source_ref, \
         reverses, administration_id, transfer_id, hold_id, from_unit_id, occurred_at, recorded_at, actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
    )
    .bind(e.location)
    .bind(e.unit_id)
    .bind(e.lot_id)
    .bind(e.kind.as_str())
    .bind(e.doses)
    .bind(e.reason_code)
    .bind(e.note)
    .bind(e.source)
    .bind(&e.source_ref)
    .bind(e.reverses)
    .bind(e.administration_id)
    .bind(e.transfer_id)
    .bind(e.hold_id)
    .bind(e.from_unit_id)
    // The ledger never holds the future: a dose an EHR dates a few minutes ahead (a fast clock)
    // happened by now, and a count taken now must find it before, not after.
    .bind(e.occurred_at.min(now))
    .bind(now)
    .bind(e.actor)
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?;
    Ok(id)
}

pub async fn on_hand(conn: &mut AnyConnection, unit_id: i64, lot_id: i64) -> Result<i64> {
    Ok(
        sqlx::query("SELECT on_hand FROM stock WHERE unit_id = $1 AND lot_id = $2")
            .bind(unit_id)
            .bind(lot_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("on_hand"))
            .transpose()?
            .unwrap_or(0),
    )
}

async fn lot_label(conn: &mut AnyConnection, lot_id: i64) -> Result<String> {
    Ok(sqlx::query("SELECT lot_number FROM lots WHERE id = $1")
        .bind(lot_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get("lot_number"))
        .transpose()?
        .unwrap_or_else(|| lot_id.to_string()))
}

/// A ledger row as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub location: String,
    pub unit_id: i64,
    pub lot_id: i64,
    /// receipt | administration | wastage | return | transfer_in | transfer_out | adjustment | hold | release | reversal
    pub kind: String,
    /// Change to on hand.
    pub doses: i64,
    pub reason_code: Option<String>,
    pub note: Option<String>,
    pub source: String,
    pub source_ref: Option<String>,
    /// The event this one reverses.
    pub reverses: Option<i64>,
    /// The event that reversed this one, if any.
    pub reversed_by: Option<i64>,
    pub administration_id: Option<i64>,
    pub transfer_id: Option<i64>,
    pub hold_id: Option<i64>,
    pub occurred_at: String,
    pub recorded_at: String,
    pub actor: String,
}

/// The ledger of one lot at one location, oldest first.
pub async fn of_lot(conn: &mut AnyConnection, location: &str, lot_id: i64) -> Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT e.*, r.id AS reversed_by FROM stock_events e LEFT JOIN stock_events r ON r.reverses = e.id \
         WHERE e.location_code = $1 AND e.lot_id = $2 ORDER BY e.occurred_at, e.id",
    )
    .bind(location)
    .bind(lot_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                id: r.try_get("id")?,
                location: r.try_get("location_code")?,
                unit_id: r.try_get("unit_id")?,
                lot_id: r.try_get("lot_id")?,
                kind: r.try_get("kind")?,
                doses: r.try_get("doses")?,
                reason_code: r.try_get("reason_code")?,
                note: r.try_get("note")?,
                source: r.try_get("source")?,
                source_ref: r.try_get("source_ref")?,
                reverses: r.try_get("reverses")?,
                reversed_by: r.try_get("reversed_by")?,
                administration_id: r.try_get("administration_id")?,
                transfer_id: r.try_get("transfer_id")?,
                hold_id: r.try_get("hold_id")?,
                occurred_at: rfc3339(r.try_get("occurred_at")?),
                recorded_at: rfc3339(r.try_get("recorded_at")?),
                actor: r.try_get("actor")?,
            })
        })
        .collect::<sqlx::Result<_>>()
        .map_err(Error::from)
}

/// Reverses a receipt, wastage, return or adjustment entered by mistake: a new row with the
/// opposite change, linked to it. Doses administered are corrected by their EHR (RXA-21 D or
/// U), transfers by a transfer back, holds by a determination.
/// Reverses a stock event of location `code` (in the caller's scope), in its own transaction.
pub async fn reverse_at(
    db: &crate::store::Db,
    scope: &crate::accounts::Scope,
    code: &str,
    id: i64,
    reason: &str,
    who: &Who,
) -> Result<i64> {
    let mut tx = db.begin().await?;
    let place = super::place(&mut tx, scope, code).await?;
    let event_id = reverse(&mut tx, &place.code, id, reason, &who.actor).await?;
    let entry = audit::Entry::new("stock.reverse", "stock_event", [id, event_id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("reason", serde_json::Value::Null, reason);
    audit::record(&mut tx, who, entry).await?;
    tx.commit().await?;
    Ok(event_id)
}

pub async fn reverse(
    conn: &mut AnyConnection,
    location: &str,
    event_id: i64,
    reason: &str,
    actor: &str,
) -> Result<i64> {
    let r = sqlx::query("SELECT unit_id, lot_id, kind, doses FROM stock_events WHERE id = $1 AND location_code = $2")
        .bind(event_id)
        .bind(location)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no stock event {event_id} at {location}")))?;
    let kind: String = r.try_get("kind")?;
    if !["receipt", "wastage", "return", "adjustment"].contains(&kind.as_str()) {
        return Err(Error::Conflict(format!(
            "a {kind} is not reversed here: doses administered are corrected by the EHR (delete or update), \
             transfers by a transfer back, holds by a determination"
        )));
    }
    let taken = sqlx::query("SELECT id FROM stock_events WHERE reverses = $1")
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(t) = taken {
        return Err(Error::Conflict(format!(
            "stock event {event_id} was already reversed by event {}",
            t.try_get::<i64, _>("id")?
        )));
    }
    let mut e = Entry::new(
        location,
        r.try_get("unit_id")?,
        r.try_get("lot_id")?,
        Kind::Reversal,
        -r.try_get::<i64, _>("doses")?,
        actor,
    );
    e.reverses = Some(event_id);
    e.note = Some(reason);
    e.reason_code = Some(&kind);
    record(conn, &e).await
}
