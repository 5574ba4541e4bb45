//! Stock coming in and going out by hand: receipts, wastage, returns, adjustments, transfers,
//! and the settings that route doses (which unit a product's daily doses come from, which EHR
//! facility ids name a location).

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::codes::{parse_date, Doses, Funding, LotNumber, Ndc};
use super::ledger::{self, Entry, Kind};
use super::{place, today, unit_of, Error, Place, Result};
use crate::accounts::{Caller, Scope};
use crate::store::{now_millis, rfc3339, Db};

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
    let mut tx = db.pool.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &place, body.unit_id).await?;
    if body.lines.is_empty() {
        return Err(Error::Invalid("a receipt needs at least one line in \"lines\"".into()));
    }
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
    tx.commit().await?;
    Ok(Movement { events })
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
    let mut tx = db.pool.begin().await?;
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
    tx.commit().await?;
    Ok(Movement { events: vec![m] })
}

/// docs/domain.md: only after the manufacturer's determination may held lots be used or written off.
async fn not_awaiting_determination(conn: &mut AnyConnection, unit_id: i64, lot_id: i64) -> Result<()> {
    match super::holds::excursion_hold(conn, unit_id, lot_id).await? {
        Some(x) => Err(Error::Conflict(format!(
            "lot {lot_id} in unit {unit_id} is on hold for excursion {x}: record the manufacturer's determination in \
             POST /api/v1/excursions/{x}/review (not viable: it is returned or wasted there)"
        ))),
        None => Ok(()),
    }
}

async fn stock_row(conn: &mut AnyConnection, place: &Place, unit_id: i64, lot_id: i64) -> Result<()> {
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
    let mut tx = db.pool.begin().await?;
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
    tx.commit().await?;
    Ok(Movement { events: vec![m] })
}

/// Body of `POST /api/v1/locations/{code}/transfers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    pub from_unit_id: i64,
    /// Another location (a suffix location of the same PIN, or another PIN, which needs the
    /// state's approval); default this one.
    #[serde(default)]
    pub to_location: Option<String>,
    /// The receiving unit; default the unit the receiving location uses for the product, or its
    /// only unit of the same kind.
    #[serde(default)]
    pub to_unit_id: Option<i64>,
    pub lines: Vec<TransferLine>,
    pub reason: String,
    /// When the doses moved (RFC 3339), for a transfer recorded afterwards; default now.
    #[serde(default)]
    pub transferred_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLine {
    pub lot_id: i64,
    pub doses: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Transfer {
    pub id: i64,
    pub from_location: String,
    pub to_location: String,
    pub from_unit_id: i64,
    pub to_unit_id: Option<i64>,
    pub lines: Vec<TransferLine>,
    pub reason: String,
    /// pending (another PIN: waits for the state) | completed | rejected
    pub status: String,
    pub requested_by: String,
    pub requested_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_note: Option<String>,
}

fn transfer_row(r: &sqlx::any::AnyRow) -> Result<Transfer> {
    Ok(Transfer {
        id: r.try_get("id")?,
        from_location: r.try_get("from_location")?,
        to_location: r.try_get("to_location")?,
        from_unit_id: r.try_get("from_unit_id")?,
        to_unit_id: r.try_get("to_unit_id")?,
        lines: serde_json::from_str(&r.try_get::<String, _>("lines")?).unwrap_or_default(),
        reason: r.try_get("reason")?,
        status: r.try_get("status")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: rfc3339(r.try_get("requested_at")?),
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(rfc3339),
        decision_note: r.try_get("decision_note")?,
    })
}

/// Stock that may travel: not on hold, not expired (docs/domain.md: transfers go to another VFC
/// provider and must be usable there).
async fn check_movable(conn: &mut AnyConnection, place: &Place, unit_id: i64, line: &TransferLine) -> Result<()> {
    Doses::parse(line.doses)?;
    stock_row(conn, place, unit_id, line.lot_id).await?;
    if super::holds::is_held(conn, unit_id, line.lot_id).await? {
        return Err(Error::Conflict(format!(
            "lot {} in unit {unit_id} is on hold (Do Not Use) and cannot be transferred until its determination",
            line.lot_id
        )));
    }
    let exp: String = sqlx::query("SELECT expires_on FROM lots WHERE id = $1")
        .bind(line.lot_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get("expires_on")?;
    if exp < today(place.tz, now_millis()).format("%Y-%m-%d").to_string() {
        return Err(Error::Conflict(format!(
            "lot {} expired on {exp}; expired stock is returned or wasted, not transferred",
            line.lot_id
        )));
    }
    let have = ledger::on_hand(conn, unit_id, line.lot_id).await?;
    if have < line.doses {
        return Err(Error::Conflict(format!(
            "only {have} dose(s) of lot {} are on hand in unit {unit_id}",
            line.lot_id
        )));
    }
    Ok(())
}

async fn receiving_unit(conn: &mut AnyConnection, to: &Place, from_unit: i64, lot_id: i64) -> Result<i64> {
    let by_product = sqlx::query(
        "SELECT p.unit_id FROM location_product_units p JOIN lots l ON l.ndc = p.ndc WHERE p.location_code = $1 AND l.id = $2",
    )
    .bind(&to.code)
    .bind(lot_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(r) = by_product {
        return Ok(r.try_get("unit_id")?);
    }
    let same_kind = sqlx::query(
        "SELECT u.id FROM units u JOIN units f ON f.kind = u.kind WHERE f.id = $1 AND u.location_code = $2",
    )
    .bind(from_unit)
    .bind(&to.code)
    .fetch_all(&mut *conn)
    .await?;
    match same_kind.as_slice() {
        [one] => Ok(one.try_get("id")?),
        _ => Err(Error::Invalid(format!(
            "say which unit of {} receives the doses: \"to_unit_id\"",
            to.code
        ))),
    }
}

/// Moves the doses: out of the sending unit, into the receiving one, in one transaction.
async fn complete(conn: &mut AnyConnection, t: &Transfer, to_unit: i64, actor: &str, at: i64) -> Result<()> {
    for line in &t.lines {
        let mut out = Entry::new(
            &t.from_location,
            t.from_unit_id,
            line.lot_id,
            Kind::TransferOut,
            -line.doses,
            actor,
        );
        out.occurred_at = at;
        out.transfer_id = Some(t.id);
        out.note = Some(&t.reason);
        ledger::record(conn, &out).await?;
        let mut inn = Entry::new(
            &t.to_location,
            to_unit,
            line.lot_id,
            Kind::TransferIn,
            line.doses,
            actor,
        );
        inn.occurred_at = at;
        inn.transfer_id = Some(t.id);
        inn.from_unit_id = Some(t.from_unit_id);
        inn.note = Some(&t.reason);
        ledger::record(conn, &inn).await?;
    }
    sqlx::query("UPDATE transfers SET status = 'completed', to_unit_id = $1 WHERE id = $2")
        .bind(to_unit)
        .bind(t.id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn transfer(db: &Db, caller: &Caller, code: &str, body: &NewTransfer) -> Result<Transfer> {
    if body.reason.trim().is_empty() {
        return Err(Error::Invalid("\"reason\" is required for a transfer".into()));
    }
    if body.lines.is_empty() {
        return Err(Error::Invalid("a transfer needs at least one line in \"lines\"".into()));
    }
    let mut tx = db.pool.begin().await?;
    let from = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &from, body.from_unit_id).await?;
    for line in &body.lines {
        check_movable(&mut tx, &from, body.from_unit_id, line).await?;
    }
    // The receiving location is looked up whatever the caller's scope: a clinic may send to
    // another provider, and learns no more than that the code exists.
    let to = match &body.to_location {
        None => from.clone(),
        Some(c) => place(&mut tx, &Scope::Program, c).await?,
    };
    let cross_pin = to.pin != from.pin;
    let to_unit = match body.to_unit_id {
        Some(u) if !cross_pin || caller.scope.covers_code(&to.pin, &to.code) => {
            unit_of(&mut tx, &to, u).await?;
            Some(u)
        }
        Some(_) => None,
        None if cross_pin => None,
        None => Some(receiving_unit(&mut tx, &to, body.from_unit_id, body.lines[0].lot_id).await?),
    };
    if to_unit == Some(body.from_unit_id) {
        return Err(Error::Invalid("the doses are already in that unit".into()));
    }
    let now = now_millis();
    let id: i64 = sqlx::query(
        "INSERT INTO transfers (from_location, to_location, from_unit_id, to_unit_id, lines, reason, status, requested_by, requested_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING id",
    )
    .bind(&from.code)
    .bind(&to.code)
    .bind(body.from_unit_id)
    .bind(to_unit)
    .bind(serde_json::to_string(&body.lines).map_err(|e| Error::Invalid(e.to_string()))?)
    .bind(body.reason.trim())
    .bind(caller.actor())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let t = get_transfer(&mut tx, id).await?;
    // To another PIN the program must approve first (docs/domain.md, "Transfers").
    if !cross_pin {
        let at = super::parse_time("transferred_at", body.transferred_at.as_deref())?.unwrap_or(now);
        if at > now + 60_000 {
            return Err(Error::Invalid("\"transferred_at\" is in the future".into()));
        }
        complete(
            &mut tx,
            &t,
            to_unit.expect("a unit within the PIN"),
            &caller.actor(),
            at,
        )
        .await?;
    }
    let t = get_transfer(&mut tx, id).await?;
    tx.commit().await?;
    Ok(t)
}

async fn get_transfer(conn: &mut AnyConnection, id: i64) -> Result<Transfer> {
    let r = sqlx::query("SELECT * FROM transfers WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no transfer {id}")))?;
    transfer_row(&r)
}

/// A transfer the caller may see: sent from or to a location in scope.
pub async fn visible_transfer(db: &Db, scope: &Scope, id: i64) -> Result<Transfer> {
    let mut conn = db.pool.acquire().await?;
    let t = get_transfer(&mut conn, id).await?;
    let sees = |c: &str| crate::domain::LocationCode::parse(c).is_ok_and(|code| scope.covers(&code));
    if sees(&t.from_location) || sees(&t.to_location) {
        Ok(t)
    } else {
        Err(Error::NotFound(format!("no transfer {id}")))
    }
}

pub async fn list_transfers(db: &Db, caller: &Caller, code: &str) -> Result<Vec<Transfer>> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows = sqlx::query("SELECT * FROM transfers WHERE from_location = $1 OR to_location = $1 ORDER BY id DESC")
        .bind(&place.code)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(transfer_row).collect()
}

/// Body of `POST /api/v1/transfers/{id}/approve` and `/reject` (state coordinators).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Approve: the receiving unit when the request did not name one.
    #[serde(default)]
    pub to_unit_id: Option<i64>,
    /// Reject: why (required); approve: optional note.
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn decide(db: &Db, caller: &Caller, id: i64, approve: bool, body: &Decision) -> Result<Transfer> {
    if !caller.is_state() {
        return Err(Error::Forbidden(
            "approving a transfer to another PIN is for state VFC coordinators".into(),
        ));
    }
    let mut tx = db.pool.begin().await?;
    // Locks the request (PostgreSQL) so two approvals never move the doses twice.
    sqlx::query("UPDATE transfers SET status = status WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let t = get_transfer(&mut tx, id).await?;
    if t.status != "pending" {
        return Err(Error::Conflict(format!("transfer {id} is already {}", t.status)));
    }
    let now = now_millis();
    if approve {
        let from = place(&mut tx, &Scope::Program, &t.from_location).await?;
        let to = place(&mut tx, &Scope::Program, &t.to_location).await?;
        for line in &t.lines {
            check_movable(&mut tx, &from, t.from_unit_id, line).await?;
        }
        let to_unit = match body.to_unit_id.or(t.to_unit_id) {
            Some(u) => {
                unit_of(&mut tx, &to, u).await?;
                u
            }
            None => receiving_unit(&mut tx, &to, t.from_unit_id, t.lines[0].lot_id).await?,
        };
        complete(&mut tx, &t, to_unit, &caller.actor(), now).await?;
    } else {
        if body.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(Error::Invalid("a rejection needs a \"note\" saying why".into()));
        }
        sqlx::query("UPDATE transfers SET status = 'rejected' WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE transfers SET decided_by = $1, decided_at = $2, decision_note = $3 WHERE id = $4")
        .bind(caller.actor())
        .bind(now)
        .bind(body.note.as_deref())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let t = get_transfer(&mut tx, id).await?;
    tx.commit().await?;
    Ok(t)
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
    let mut tx = db.pool.begin().await?;
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
    let mut tx = db.pool.begin().await?;
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
        let taken = sqlx::query(
            "SELECT f.location_code, l.pin FROM facility_ids f JOIN locations l ON l.code = f.location_code WHERE f.facility_id = $1",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(t) = taken {
            let (other, pin): (String, String) = (t.try_get("location_code")?, t.try_get("pin")?);
            let named = if caller.scope.covers_code(&pin, &other) {
                other
            } else {
                "another location".into()
            };
            return Err(Error::Conflict(format!("facility id {id} already names {named}")));
        }
        sqlx::query("INSERT INTO facility_ids (facility_id, location_code) VALUES ($1, $2)")
            .bind(&id)
            .bind(&place.code)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    super::directory_changed();
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
    let r =
        sqlx::query("UPDATE lots SET expires_on = $1 WHERE id = $2 RETURNING id, ndc, lot_number, funding, expires_on")
            .bind(&expires)
            .bind(id)
            .fetch_optional(&db.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no lot {id}")))?;
    tracing::info!(lot = id, expires_on = %expires, reason = %body.reason.trim(), by = %caller.actor(), "lot expiration corrected");
    Ok(LotRecord {
        id: r.try_get("id")?,
        ndc: r.try_get("ndc")?,
        lot: r.try_get("lot_number")?,
        funding: r.try_get("funding")?,
        expires_on: r.try_get("expires_on")?,
    })
}
