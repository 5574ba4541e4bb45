//! Stock coming in and going out by hand: receipts, wastage, returns and adjustments, each a
//! ledger row (docs/domain.md, "Inventory"). Transfers are [`super::transfers`]; lots
//! [`super::lots`]; which unit and which EHR ids route doses, [`super::routing`].

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::ledger::{self, Entry, Kind};
use super::lots::lot_for;
use super::{place, unit_of, Error, Place, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::domain::{parse_date, Doses, Funding, LotNumber};
use crate::store::{now_millis, Db};

/// Wastage and return reasons (docs/domain.md: one state's form), plus an open multi-dose vial.
pub const REASONS: &[(&str, &str)] = &[
    ("2", "recall"),
    ("3", "spoiled or contaminated"),
    ("4", "expired"),
    ("5", "lost or damaged in transit"),
    ("6", "failure to store properly on receipt"),
    ("7A", "unit too warm"),
    ("7B", "unit too cold"),
    ("7C", "mechanical failure"),
    ("7D", "natural disaster or power outage"),
    ("11", "lost or unaccounted for"),
    ("12A", "dropped or broken vial"),
    ("12B", "drawn up but not administered"),
    ("12C", "light exposure"),
    ("12D", "other"),
    ("MDV", "open multi-dose vial, not all doses used"),
];

pub fn check_reason(code: &str) -> Result<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(c, _)| *c)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "reason_code {code:?} is not one of {}",
                REASONS
                    .iter()
                    .map(|(c, d)| format!("{c} ({d})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Body of `POST /api/v1/locations/{code}/receipts`: a shipment put into one unit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub unit_id: i64,
    pub lines: Vec<ReceiptLine>,
    /// When the shipment was put away (RFC 3339); default now.
    #[serde(default)]
    pub received_at: Option<String>,
    /// Shipment or packing-list reference.
    #[serde(default)]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLine {
    /// Unit-of-sale (or unit-of-use) NDC, e.g. 00006-4047-41.
    pub ndc: String,
    pub lot: String,
    /// YYYY-MM-DD
    pub expires_on: String,
    pub funding: Funding,
    pub doses: i64,
}

/// A stock line after a movement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Moved {
    pub event_id: i64,
    pub lot_id: i64,
    pub unit_id: i64,
    pub lot: String,
    pub ndc: String,
    pub doses: i64,
    pub on_hand: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Movement {
    pub events: Vec<Moved>,
}

async fn moved(conn: &mut AnyConnection, event_id: i64, unit_id: i64, lot_id: i64, doses: i64) -> Result<Moved> {
    let r = sqlx::query("SELECT lot_number, ndc FROM lots WHERE id = $1")
        .bind(lot_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Moved {
        event_id,
        lot_id,
        unit_id,
        lot: r.try_get("lot_number")?,
        ndc: r.try_get("ndc")?,
        doses,
        on_hand: ledger::on_hand(conn, unit_id, lot_id).await?,
    })
}

pub async fn receive(db: &Db, caller: &Caller, code: &str, body: &Receipt) -> Result<Movement> {
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &place, body.unit_id).await?;
    if body.lines.is_empty() {
        return Err(Error::Invalid("a receipt needs at least one line in \"lines\"".into()));
    }
    crate::coldchain::downtime::refuse_stock_if_out_of_service(&mut tx, body.unit_id, now_millis()).await?;
    let at = super::parse_time("received_at", body.received_at.as_deref())?.unwrap_or_else(now_millis);
    let actor = caller.actor();
    let mut events = Vec::new();
    for (i, line) in body.lines.iter().enumerate() {
        let at_line = |e: crate::domain::ParseError| Error::Invalid(format!("lines[{i}]: {}", e.0));
        let lot = LotNumber::parse(&line.lot).map_err(at_line)?;
        let doses = Doses::parse(line.doses).map_err(at_line)?;
        let expires = parse_date("expires_on", &line.expires_on).map_err(at_line)?;
        let lot_id = lot_for(&mut tx, &line.ndc, &lot, line.funding, expires)
            .await
            .map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("lines[{i}]: {m}")),
                e => e,
            })?;
        let mut e = Entry::new(&place.code, body.unit_id, lot_id, Kind::Receipt, doses.get(), &actor);
        e.occurred_at = at;
        e.note = body.reference.as_deref();
        let id = ledger::record(&mut tx, &e).await?;
        events.push(moved(&mut tx, id, body.unit_id, lot_id, doses.get()).await?);
    }
    let ids: Vec<i64> = events.iter().map(|m| m.event_id).collect();
    let entry = audit::Entry::new("stock.receive", "stock_event", ids)
        .at(Some(&place.pin), Some(&place.code))
        .changed("unit_id", serde_json::Value::Null, body.unit_id)
        .changed("lines", serde_json::Value::Null, body.lines.len());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Movement { events })
}

/// Doses arriving from an order's shipment, put into one unit.
pub struct Arrival<'a> {
    pub unit_id: i64,
    pub ndc: &'a str,
    pub lot: &'a str,
    pub expires_on: &'a str,
    pub funding: Funding,
    pub doses: i64,
    /// The order and shipment line, e.g. `order:12:shipment_line:40`.
    pub source_ref: String,
}

/// Records an order's arrival in the caller's transaction: the receipt row (source `order`,
/// with the order's funding) and the lot, created on first receipt. Returns the event and the
/// lot.
pub async fn receive_order_line(
    conn: &mut AnyConnection,
    place: &Place,
    a: &Arrival<'_>,
    actor: &str,
) -> Result<(i64, i64)> {
    unit_of(conn, place, a.unit_id).await?;
    crate::coldchain::downtime::refuse_stock_if_out_of_service(conn, a.unit_id, now_millis()).await?;
    let lot = LotNumber::parse(a.lot)?;
    let doses = Doses::parse(a.doses)?;
    let expires = parse_date("expires_on", a.expires_on)?;
    let lot_id = lot_for(conn, a.ndc, &lot, a.funding, expires).await?;
    let mut e = Entry::new(&place.code, a.unit_id, lot_id, Kind::Receipt, doses.get(), actor);
    e.source = "order";
    e.source_ref = Some(a.source_ref.clone());
    Ok((ledger::record(conn, &e).await?, lot_id))
}

/// Body of wastage and return: doses of one lot leaving a unit, with the form's reason code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Removal {
    pub unit_id: i64,
    pub lot_id: i64,
    pub doses: i64,
    /// 2, 3, 4, 5, 6, 7A, 7B, 7C, 7D, 11, 12A, 12B, 12C, 12D or MDV (docs/domain.md).
    pub reason_code: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// Wastage (disposed of on site) or a return (unopened, expired or spoiled, back to the distributor).
pub async fn remove(db: &Db, caller: &Caller, code: &str, kind: Kind, body: &Removal) -> Result<Movement> {
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &place, body.unit_id).await?;
    let doses = Doses::parse(body.doses)?;
    let reason = check_reason(&body.reason_code)?;
    stock_row(&mut tx, &place, body.unit_id, body.lot_id).await?;
    not_awaiting_determination(&mut tx, body.unit_id, body.lot_id).await?;
    let actor = caller.actor();
    let mut e = Entry::new(&place.code, body.unit_id, body.lot_id, kind, -doses.get(), &actor);
    e.reason_code = Some(reason);
    e.note = body.note.as_deref();
    let id = ledger::record(&mut tx, &e).await?;
    let m = moved(&mut tx, id, body.unit_id, body.lot_id, -doses.get()).await?;
    let action = if kind == Kind::Wastage {
        "stock.waste"
    } else {
        "stock.return"
    };
    let entry = audit::Entry::new(action, "stock_event", [id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("doses", serde_json::Value::Null, -doses.get())
        .changed("reason_code", serde_json::Value::Null, body.reason_code.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Movement { events: vec![m] })
}

/// docs/domain.md: only after the manufacturer's determination may held lots be used or written off.
pub(super) async fn not_awaiting_determination(conn: &mut AnyConnection, unit_id: i64, lot_id: i64) -> Result<()> {
    match super::holds::excursion_hold(conn, unit_id, lot_id).await? {
        Some(x) => Err(Error::Conflict(format!(
            "lot {lot_id} in unit {unit_id} is on hold for excursion {x}: record the manufacturer's determination in \
             POST /api/v1/excursions/{x}/review (not viable: it is returned or wasted there)"
        ))),
        None => Ok(()),
    }
}

pub(super) async fn stock_row(conn: &mut AnyConnection, place: &Place, unit_id: i64, lot_id: i64) -> Result<()> {
    sqlx::query("SELECT 1 FROM stock WHERE unit_id = $1 AND lot_id = $2 AND location_code = $3")
        .bind(unit_id)
        .bind(lot_id)
        .bind(&place.code)
        .fetch_optional(&mut *conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "unit {unit_id} has never held lot {lot_id}; see GET /api/v1/locations/{}/inventory",
                place.code
            ))
        })
}

/// Body of `POST /api/v1/locations/{code}/adjustments`: a correction with its reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    pub unit_id: i64,
    pub lot_id: i64,
    /// Change to on hand, + or −.
    pub doses: i64,
    pub reason: String,
}

pub async fn adjust(db: &Db, caller: &Caller, code: &str, body: &Adjustment) -> Result<Movement> {
    if body.doses == 0 || body.doses.abs() > Doses::MAX {
        return Err(Error::Invalid("\"doses\" must be a non-zero change to on hand".into()));
    }
    if body.reason.trim().is_empty() {
        return Err(Error::Invalid(
            "\"reason\" is required: every difference is explained".into(),
        ));
    }
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &place, body.unit_id).await?;
    stock_row(&mut tx, &place, body.unit_id, body.lot_id).await?;
    not_awaiting_determination(&mut tx, body.unit_id, body.lot_id).await?;
    let actor = caller.actor();
    let mut e = Entry::new(
        &place.code,
        body.unit_id,
        body.lot_id,
        Kind::Adjustment,
        body.doses,
        &actor,
    );
    e.note = Some(body.reason.trim());
    let id = ledger::record(&mut tx, &e).await?;
    let m = moved(&mut tx, id, body.unit_id, body.lot_id, body.doses).await?;
    let entry = audit::Entry::new("stock.adjust", "stock_event", [id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("doses", serde_json::Value::Null, body.doses)
        .changed("reason", serde_json::Value::Null, body.reason.trim());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Movement { events: vec![m] })
}
