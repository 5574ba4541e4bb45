//! An order as the API shows it — lines with what was approved, shipped, backordered and
//! received; its history, waivers, shipments and emails — and the lists: a location's orders
//! and the state's review queue, each order with its location's stored prerequisite status,
//! its previous order's date and requested-minus-suggested per line.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::readiness::{self, Readiness};
use super::waivers::Waiver;
use super::Status;
use crate::accounts::{Caller, Scope};
use crate::alerts::outbox::{self, EmailRecord};
use crate::alerts::About;
use crate::error::{Error, Result};
use crate::store::{rfc3339, Db, Page};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLine {
    pub id: i64,
    pub ndc: String,
    pub product: Option<String>,
    /// vfc | state
    pub funding: String,
    /// As the clinic asked.
    pub doses: i64,
    /// As the state approved (null until approved).
    pub approved_doses: Option<i64>,
    pub reduction_reason: Option<String>,
    /// The suggestion when the order was submitted.
    pub suggested: Option<i64>,
    /// doses − suggested: what a reviewer looks at first.
    pub requested_minus_suggested: Option<i64>,
    pub shipped_doses: i64,
    /// Doses the distributor reported backordered and not shipped since.
    pub backordered_doses: i64,
    pub received_doses: i64,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    pub closed_reason: Option<String>,
}

impl OrderLine {
    /// What the line is for now: approved doses, else requested.
    pub fn wanted(&self) -> i64 {
        self.approved_doses.unwrap_or(self.doses)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryRow {
    pub status: String,
    pub actor: String,
    pub at: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Received {
    pub id: i64,
    /// Where the doses went (none when nothing arrived).
    pub unit_id: Option<i64>,
    pub lot_id: Option<i64>,
    pub doses_received: i64,
    /// ok | too_warm | too_cold | damaged
    pub condition: String,
    pub shortfall_reason: Option<String>,
    /// The "Do Not Use" hold placed when it arrived in any condition but ok.
    pub hold_id: Option<i64>,
    pub received_by: String,
    pub received_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Shipment {
    pub id: i64,
    pub order_line_id: i64,
    pub ndc: String,
    pub lot: Option<String>,
    pub expires_on: Option<String>,
    pub doses: i64,
    pub backordered_doses: i64,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub ship_date: Option<String>,
    /// Shipped by the manufacturer (frozen varicella), not the distributor.
    pub direct_ship: bool,
    pub imported_at: String,
    pub received: Option<Received>,
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub id: i64,
    pub location: String,
    pub pin: String,
    pub set: String,
    pub status: Status,
    pub urgent: bool,
    pub urgent_reason: Option<String>,
    pub note: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub submitted_at: Option<String>,
    pub approved_at: Option<String>,
    /// Why it was denied, returned or cancelled.
    pub decision_reason: Option<String>,
    pub export_batch_id: Option<i64>,
    /// The location's previous submitted order.
    pub last_order_at: Option<String>,
    pub lines: Vec<OrderLine>,
    /// The location's prerequisite status as last computed (lists), or at submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prerequisites: Option<Readiness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waivers: Option<Vec<Waiver>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipments: Option<Vec<Shipment>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<EmailRecord>>,
}

const ORDER_COLUMNS: &str = "o.id, o.location_code, o.pin, o.set_name, o.status, o.urgent, o.urgent_reason, o.note, \
    o.created_by, o.created_at, o.submitted_at, o.approved_at, o.decision_reason, o.export_batch_id, \
    (SELECT MAX(p.submitted_at) FROM orders p WHERE p.location_code = o.location_code AND p.id <> o.id \
     AND p.submitted_at < COALESCE(o.submitted_at, 9223372036854775807)) AS last_order_at";

fn order_row(r: &sqlx::any::AnyRow) -> Result<Order> {
    let id: i64 = r.try_get("id")?;
    let raw: String = r.try_get("status")?;
    Ok(Order {
        id,
        location: r.try_get("location_code")?,
        pin: r.try_get("pin")?,
        set: r.try_get("set_name")?,
        status: Status::parse(&raw).ok_or_else(|| Error::unreadable("orders", id, format!("status {raw:?}")))?,
        urgent: r.try_get::<i64, _>("urgent")? != 0,
        urgent_reason: r.try_get("urgent_reason")?,
        note: r.try_get("note")?,
        created_by: r.try_get("created_by")?,
        created_at: rfc3339(r.try_get("created_at")?),
        submitted_at: r.try_get::<Option<i64>, _>("submitted_at")?.map(rfc3339),
        approved_at: r.try_get::<Option<i64>, _>("approved_at")?.map(rfc3339),
        decision_reason: r.try_get("decision_reason")?,
        export_batch_id: r.try_get("export_batch_id")?,
        last_order_at: r.try_get::<Option<i64>, _>("last_order_at")?.map(rfc3339),
        lines: Vec::new(),
        prerequisites: None,
        history: None,
        waivers: None,
        shipments: None,
        emails: None,
    })
}

/// The lines of orders `ids`, by order.
pub async fn lines_of(conn: &mut AnyConnection, ids: &[i64]) -> Result<HashMap<i64, Vec<OrderLine>>> {
    let mut out: HashMap<i64, Vec<OrderLine>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let names = crate::inventory::catalog::names(conn).await?;
    let sql = format!(
        "SELECT l.id, l.order_id, l.ndc, l.funding, l.doses, l.approved_doses, l.reduction_reason, l.suggested, \
         l.closed_at, l.closed_by, l.closed_reason, \
         CAST(COALESCE((SELECT SUM(s.doses) FROM shipment_lines s WHERE s.order_line_id = l.id), 0) AS BIGINT) AS shipped, \
         CAST(COALESCE((SELECT SUM(s.backordered_doses) FROM shipment_lines s WHERE s.order_line_id = l.id), 0) AS BIGINT) AS backordered, \
         CAST(COALESCE((SELECT SUM(r.doses_received) FROM order_receipts r WHERE r.order_line_id = l.id), 0) AS BIGINT) AS received \
         FROM order_lines l WHERE l.order_id IN ({}) ORDER BY l.order_id, l.id",
        crate::store::placeholders(ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id);
    }
    for r in q.fetch_all(&mut *conn).await? {
        let (doses, approved): (i64, Option<i64>) = (r.try_get("doses")?, r.try_get("approved_doses")?);
        let suggested: Option<i64> = r.try_get("suggested")?;
        let shipped: i64 = r.try_get("shipped")?;
        let closed_at: Option<i64> = r.try_get("closed_at")?;
        let reported_backorder: i64 = r.try_get("backordered")?;
        let ndc: String = r.try_get("ndc")?;
        let line = OrderLine {
            id: r.try_get("id")?,
            product: names.get(&ndc).cloned(),
            ndc,
            funding: r.try_get("funding")?,
            doses,
            approved_doses: approved,
            reduction_reason: r.try_get("reduction_reason")?,
            suggested,
            requested_minus_suggested: suggested.map(|s| doses - s),
            shipped_doses: shipped,
            backordered_doses: if reported_backorder > 0 && closed_at.is_none() {
                (approved.unwrap_or(doses) - shipped).max(0)
            } else {
                0
            },
            received_doses: r.try_get("received")?,
            closed_at: closed_at.map(rfc3339),
            closed_by: r.try_get("closed_by")?,
            closed_reason: r.try_get("closed_reason")?,
        };
        out.entry(r.try_get("order_id")?).or_default().push(line);
    }
    Ok(out)
}

/// Order `id` with everything about it, in the caller's connection.
pub async fn full(conn: &mut AnyConnection, db: &Db, scope: &Scope, id: i64) -> Result<Order> {
    super::head(conn, scope, id).await?;
    let r = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1"))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let mut o = order_row(&r)?;
    o.lines = lines_of(conn, &[id]).await?.remove(&id).unwrap_or_default();
    o.history = Some(
        sqlx::query("SELECT status, actor, at, note FROM order_events WHERE order_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(HistoryRow {
                    status: r.try_get("status")?,
                    actor: r.try_get("actor")?,
                    at: rfc3339(r.try_get("at")?),
                    note: r.try_get("note")?,
                })
            })
            .collect::<sqlx::Result<_>>()?,
    );
    o.waivers = Some(super::waivers::of_order(conn, id).await?);
    o.shipments = Some(shipments(conn, id).await?);
    o.prerequisites = readiness::stored(conn, std::slice::from_ref(&o.location))
        .await?
        .remove(&o.location);
    o.emails = Some(outbox::about(db, About::Order(id)).await?);
    Ok(o)
}

pub async fn get(db: &Db, caller: &Caller, id: i64) -> Result<Order> {
    let mut conn = db.pool.acquire().await?;
    full(&mut conn, db, &caller.scope, id).await
}

async fn shipments(conn: &mut AnyConnection, order_id: i64) -> Result<Vec<Shipment>> {
    let rows = sqlx::query(
        "SELECT s.id, s.order_line_id, s.ndc, s.lot, s.expires_on, s.doses, s.backordered_doses, s.carrier, \
         s.tracking_number, s.ship_date, s.direct_ship, s.imported_at, r.id AS receipt_id, r.unit_id, r.lot_id, \
         r.doses_received, r.condition, r.shortfall_reason, r.hold_id, r.received_by, r.received_at \
         FROM shipment_lines s LEFT JOIN order_receipts r ON r.shipment_line_id = s.id WHERE s.order_id = $1 ORDER BY s.id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let receipt: Option<i64> = r.try_get("receipt_id")?;
            Ok(Shipment {
                id: r.try_get("id")?,
                order_line_id: r.try_get("order_line_id")?,
                ndc: r.try_get("ndc")?,
                lot: r.try_get("lot")?,
                expires_on: r.try_get("expires_on")?,
                doses: r.try_get("doses")?,
                backordered_doses: r.try_get("backordered_doses")?,
                carrier: r.try_get("carrier")?,
                tracking_number: r.try_get("tracking_number")?,
                ship_date: r.try_get("ship_date")?,
                direct_ship: r.try_get::<i64, _>("direct_ship")? != 0,
                imported_at: rfc3339(r.try_get("imported_at")?),
                received: match receipt {
                    None => None,
                    Some(id) => Some(Received {
                        id,
                        unit_id: r.try_get("unit_id")?,
                        lot_id: r.try_get("lot_id")?,
                        doses_received: r.try_get("doses_received")?,
                        condition: r.try_get("condition")?,
                        shortfall_reason: r.try_get("shortfall_reason")?,
                        hold_id: r.try_get("hold_id")?,
                        received_by: r.try_get("received_by")?,
                        received_at: rfc3339(r.try_get("received_at")?),
                    }),
                },
            })
        })
        .collect::<sqlx::Result<_>>()
        .map_err(Into::into)
}

/// Which orders a list holds.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    pub status: Option<Status>,
    pub pin: Option<String>,
    pub urgent: Option<bool>,
    /// One location's orders.
    pub location: Option<String>,
}

/// Orders the scope covers, oldest first (the review queue) or newest first (a location's
/// list), each with its lines and its location's stored prerequisite status.
pub async fn list(
    db: &Db,
    scope: &Scope,
    f: &Filter,
    page: Page,
    newest_first: bool,
) -> Result<(Vec<Order>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let (cond, param) = scope.sql_filter("o.pin", "o.location_code", 1);
    let (cmp, dir) = if newest_first { ("<", "DESC") } else { (">", "ASC") };
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders o WHERE {cond} AND ($2 = '' OR o.status = $2) AND ($3 = '' OR o.pin = $3) \
         AND ($4 < 0 OR o.urgent = $4) AND ($5 = '' OR o.location_code = $5) AND o.id {cmp} $6 ORDER BY o.id {dir} LIMIT $7"
    );
    let after = page.after.unwrap_or(if newest_first { i64::MAX } else { 0 });
    let rows = sqlx::query(&sql)
        .bind(param.unwrap_or_default())
        .bind(f.status.map(Status::as_str).unwrap_or(""))
        .bind(f.pin.as_deref().unwrap_or(""))
        .bind(f.urgent.map_or(-1, i64::from))
        .bind(f.location.as_deref().unwrap_or(""))
        .bind(after)
        .bind(page.limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let mut orders = rows.iter().map(order_row).collect::<Result<Vec<_>>>()?;
    let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let mut lines = lines_of(&mut conn, &ids).await?;
    let mut codes: Vec<String> = orders.iter().map(|o| o.location.clone()).collect();
    codes.sort();
    codes.dedup();
    let statuses = readiness::stored(&mut conn, &codes).await?;
    for o in orders.iter_mut() {
        o.lines = lines.remove(&o.id).unwrap_or_default();
        o.prerequisites = statuses.get(&o.location).cloned();
    }
    Ok(page.cut(orders, |o| o.id))
}

/// A location's orders, newest first; 404 for a location outside the scope, as everywhere.
pub async fn of_location(db: &Db, caller: &Caller, code: &str, page: Page) -> Result<(Vec<Order>, Option<i64>)> {
    let place = {
        let mut conn = db.pool.acquire().await?;
        crate::inventory::place(&mut conn, &caller.scope, code).await?
    };
    let f = Filter {
        location: Some(place.code),
        ..Default::default()
    };
    list(db, &caller.scope, &f, page, true).await
}
