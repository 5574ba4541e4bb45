//! Receiving against the shipment (README, "Ordering"): each shipment line once, into the unit
//! the clinic names or the one its product goes to (frozen varicella: the freezer), written as
//! inventory receipts with the order line's funding in the same transaction. Less than shipped
//! needs a reason code; stock that arrived too warm, too cold or damaged is received and put on
//! "Do Not Use" hold at once, and the state and the coordinators are told.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::view::{self, Order};
use super::{head, not_now, notify, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::domain::Funding;
use crate::error::{Error, Result};
use crate::inventory::{self, holds, movements, routing};
use crate::store::{now_millis, Db};

/// Why fewer doses arrived than shipped.
pub const SHORTFALL_REASONS: &[(&str, &str)] = &[
    ("short_shipped", "fewer doses in the box than on the packing list"),
    ("damaged_in_transit", "vials or syringes broken or leaking on arrival"),
    ("lost_in_transit", "a box of the shipment did not arrive"),
    ("wrong_product", "another product arrived instead"),
    ("other", "another reason, said in the note"),
];

/// How a shipment line arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ArrivalCondition)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Ok,
    TooWarm,
    TooCold,
    Damaged,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::TooWarm => "too_warm",
            Self::TooCold => "too_cold",
            Self::Damaged => "damaged",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveLine {
    pub shipment_line_id: i64,
    /// Default: the unit the location puts this product in (PUT …/product-units).
    #[serde(default)]
    pub unit_id: Option<i64>,
    pub doses_received: i64,
    /// As on the box; default: the shipment file's.
    #[serde(default)]
    pub lot: Option<String>,
    /// YYYY-MM-DD, as on the box; default: the shipment file's.
    #[serde(default)]
    pub expires_on: Option<String>,
    pub condition: Condition,
    /// Required when fewer doses arrived than shipped: short_shipped, damaged_in_transit,
    /// lost_in_transit, wrong_product or other.
    #[serde(default)]
    pub shortfall_reason: Option<String>,
}

/// Body of `POST /api/v1/orders/{id}/receive`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    pub lines: Vec<ReceiveLine>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Refuses a shipment line of order `id` received before, saying what was received.
async fn already_received(conn: &mut AnyConnection, id: i64, shipment_line_id: i64) -> Result<()> {
    let Some(done) = sqlx::query(
        "SELECT id, doses_received, condition, received_by FROM order_receipts WHERE shipment_line_id = $1 AND order_id = $2",
    )
    .bind(shipment_line_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let doses: i64 = done.try_get("doses_received")?;
    let mut details = serde_json::Map::new();
    details.insert(
        "received".into(),
        serde_json::json!({
            "receipt_id": done.try_get::<i64, _>("id")?,
            "shipment_line_id": shipment_line_id,
            "doses_received": doses,
            "condition": done.try_get::<String, _>("condition")?,
            "received_by": done.try_get::<String, _>("received_by")?,
        }),
    );
    Err(Error::RefusedWith {
        code: "already_received",
        message: format!(
            "shipment line {shipment_line_id} was already received ({doses} doses); a correction is a stock adjustment, not a second receipt"
        ),
        details,
    })
}

pub async fn receive(db: &Db, caller: &Caller, id: i64, body: &Receive) -> Result<Order> {
    if body.lines.is_empty() {
        return Err(Error::Invalid("a receipt needs at least one line in \"lines\"".into()));
    }
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    for l in &body.lines {
        already_received(&mut tx, id, l.shipment_line_id).await?;
    }
    if !order.status.with_distributor() {
        return Err(not_now(
            &order,
            "received",
            &[
                Status::Sent,
                Status::Backordered,
                Status::PartiallyShipped,
                Status::Shipped,
            ],
        ));
    }
    let place = inventory::place(&mut tx, &caller.scope, &order.location).await?;
    let lines = view::lines_of(&mut tx, &[id]).await?.remove(&id).unwrap_or_default();
    let actor = caller.actor();
    let now = now_millis();
    let mut problems = Vec::new();
    let mut shortfalls = Vec::new();
    let mut receipt_ids = Vec::new();
    for (i, l) in body.lines.iter().enumerate() {
        let at = |m: String| Error::Invalid(format!("lines[{i}]: {m}"));
        if body.lines[..i].iter().any(|o| o.shipment_line_id == l.shipment_line_id) {
            return Err(at(format!("shipment line {} appears twice", l.shipment_line_id)));
        }
        let s = sqlx::query(
            "SELECT order_id, order_line_id, ndc, doses, lot, expires_on FROM shipment_lines WHERE id = $1",
        )
        .bind(l.shipment_line_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(s) = s.filter(|s| s.try_get::<i64, _>("order_id").ok() == Some(id)) else {
            return Err(at(format!(
                "order {id} has no shipment line {}; see the order's \"shipments\" (GET /api/v1/orders/{id})",
                l.shipment_line_id
            )));
        };
        let (line_id, ndc, shipped): (i64, String, i64) =
            (s.try_get("order_line_id")?, s.try_get("ndc")?, s.try_get("doses")?);
        if shipped == 0 {
            return Err(at(format!(
                "shipment line {} only reports a backorder; nothing arrived to receive",
                l.shipment_line_id
            )));
        }
        if l.doses_received < 0 || l.doses_received > shipped {
            return Err(at(format!(
                "\"doses_received\" is 0 to the {shipped} doses shipped; more arrived than shipped is a stock adjustment"
            )));
        }
        let shortfall = if l.doses_received < shipped {
            let code = l
                .shortfall_reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    at(format!(
                        "{shipped} doses shipped and {} received: give a \"shortfall_reason\", one of {}",
                        l.doses_received,
                        SHORTFALL_REASONS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
                    ))
                })?;
            if !SHORTFALL_REASONS.iter().any(|(c, _)| *c == code) {
                return Err(at(format!(
                    "shortfall_reason {code:?} is not one of {}",
                    SHORTFALL_REASONS
                        .iter()
                        .map(|(c, d)| format!("{c} ({d})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            shortfalls.push(format!(
                "{} of {shipped} doses of {ndc} arrived ({code})",
                l.doses_received
            ));
            Some(code.to_string())
        } else {
            None
        };
        let funding = lines
            .iter()
            .find(|ol| ol.id == line_id)
            .map(|ol| Funding::parse(&ol.funding))
            .transpose()?
            .ok_or_else(|| Error::unreadable("shipment_lines", l.shipment_line_id, "its order line is gone"))?;
        let (mut unit_id, mut event, mut lot_id, mut hold) = (None, None, None, None);
        if let Some(u) = l.unit_id {
            inventory::unit_of(&mut tx, &place, u).await.map_err(|e| match e {
                Error::Invalid(m) => at(m),
                e => e,
            })?;
            unit_id = Some(u);
        }
        if l.doses_received > 0 {
            let unit = match unit_id {
                Some(u) => u,
                None => routing::unit_for_ndc(&mut tx, &place.code, &ndc)
                    .await?
                    .ok_or_else(|| {
                        at(format!(
                            "give \"unit_id\": {} has no unit set for {ndc} (PUT /api/v1/locations/{}/product-units)",
                            place.code, place.code
                        ))
                    })?,
            };
            let shipped_lot: Option<String> = s.try_get("lot")?;
            let shipped_expiry: Option<String> = s.try_get("expires_on")?;
            let lot = l
                .lot
                .clone()
                .or(shipped_lot)
                .ok_or_else(|| at("give the \"lot\" on the box".into()))?;
            let expires_on = l
                .expires_on
                .clone()
                .or(shipped_expiry)
                .ok_or_else(|| at("give \"expires_on\" as on the box (YYYY-MM-DD)".into()))?;
            let arrival = movements::Arrival {
                unit_id: unit,
                ndc: &ndc,
                lot: &lot,
                expires_on: &expires_on,
                funding,
                doses: l.doses_received,
                source_ref: format!("order:{id}:shipment_line:{}", l.shipment_line_id),
            };
            let (e, lot_number) = movements::receive_order_line(&mut tx, &place, &arrival, &actor)
                .await
                .map_err(|e| match e {
                    Error::Invalid(m) => at(m),
                    e => e,
                })?;
            (unit_id, event, lot_id) = (Some(unit), Some(e), Some(lot_number));
            if l.condition != Condition::Ok {
                let why = format!("arrived {} with order {id}", l.condition.as_str().replace('_', " "));
                hold = Some(holds::hold_in(&mut tx, &place.code, unit, lot_number, &why, &actor).await?);
                problems.push(format!(
                    "{} doses of {ndc} lot {} arrived {} and are on hold (Do Not Use) in unit {unit}: \
                     call the manufacturer for a determination",
                    l.doses_received,
                    lot.trim(),
                    l.condition.as_str().replace('_', " ")
                ));
            }
        }
        let rid: i64 = sqlx::query(
            "INSERT INTO order_receipts (shipment_line_id, order_id, order_line_id, unit_id, lot_id, doses_received, condition, \
             shortfall_reason, stock_event_id, hold_id, received_by, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(l.shipment_line_id)
        .bind(id)
        .bind(line_id)
        .bind(unit_id)
        .bind(lot_id)
        .bind(l.doses_received)
        .bind(l.condition.as_str())
        .bind(&shortfall)
        .bind(event)
        .bind(hold)
        .bind(&actor)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        receipt_ids.push(rid);
    }
    let note = body.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let mut said = Vec::new();
    said.extend(shortfalls.iter().cloned());
    said.extend(problems.iter().cloned());
    if let Some(n) = note {
        said.push(n.to_string());
    }
    super::history(
        &mut tx,
        id,
        order.status,
        &actor,
        Some(&format!(
            "received {} shipment line(s){}",
            receipt_ids.len(),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {}", said.join("; "))
            }
        )),
        now,
    )
    .await?;
    if !problems.is_empty() {
        let text = format!(
            "Stock of order {id} arrived at {} in a condition that needs a determination:\n- {}",
            order.location,
            problems.join("\n- ")
        );
        notify::tell(
            &mut tx,
            id,
            &order.location,
            "order_arrived_damaged",
            &format!("VFC order {id}: stock on hold at arrival"),
            &text,
            true,
        )
        .await?;
    }
    let now_status = super::progress::settle(&mut tx, id, &actor).await?;
    let entry = audit::Entry::new("order.receive", "order_receipt", receipt_ids.clone())
        .at(Some(&order.pin), Some(&order.location))
        .changed("status", order.status.as_str(), now_status.as_str())
        .changed("order_id", serde_json::Value::Null, id)
        .changed("lines", serde_json::Value::Null, receipt_ids.len());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    let mut conn = db.pool.acquire().await?;
    view::full(&mut conn, db, &caller.scope, id).await
}
