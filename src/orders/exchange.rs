//! The distributor's shipment file (README, "Ordering", with an example), imported all or
//! nothing: one bad row refuses the whole file with every bad row and why; a row imported again
//! is not counted twice. What is sent to the distributor is [`super::export`].

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::view::{self, OrderLine};
use super::{head, notify, progress, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

pub const SHIPMENT_COLUMNS: [&str; 10] = [
    "order_id",
    "ndc",
    "lot",
    "expires_on",
    "doses",
    "backordered_doses",
    "carrier",
    "tracking_number",
    "ship_date",
    "direct_ship",
];

/// A bad row of a shipment file: its line number in the file (the header is line 1) and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct BadRow {
    pub line: u64,
    pub error: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    /// Rows recorded now.
    pub imported: usize,
    /// Rows recorded before (the same row again): not counted twice.
    pub already_imported: usize,
    /// The orders the file touched, with their status now.
    pub orders: Vec<ImportedOrder>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedOrder {
    pub id: i64,
    pub status: Status,
}

struct Row10 {
    order_id: i64,
    line_id: i64,
    ndc: String,
    lot: Option<String>,
    expires_on: Option<String>,
    doses: i64,
    backordered: i64,
    carrier: Option<String>,
    tracking: Option<String>,
    ship_date: Option<String>,
    direct: bool,
    key: String,
    /// Imported before: not counted again.
    seen: bool,
}

/// `POST /api/v1/shipments` (state, `text/csv`).
pub async fn import_shipments(db: &Db, caller: &Caller, text: &str) -> Result<Imported> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::Invalid(format!("the file is not CSV: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    if header != SHIPMENT_COLUMNS {
        return Err(Error::Invalid(format!(
            "the header must be exactly {}; it is {}",
            SHIPMENT_COLUMNS.join(","),
            header.join(",")
        )));
    }
    let mut tx = db.begin().await?;
    let mut bad = Vec::new();
    let mut rows: Vec<Row10> = Vec::new();
    let mut orders: HashMap<i64, (super::Head, Vec<OrderLine>)> = HashMap::new();
    // Doses shipped per line so far in this file, to refuse more than ordered across rows.
    let mut in_file: HashMap<i64, i64> = HashMap::new();
    // How many times each row (as parsed) has come so far in this file: two identical rows are
    // two boxes, and each is its own shipment line.
    let mut repeats: HashMap<String, usize> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push(BadRow {
                    line,
                    error: format!("not a CSV row of 10 fields: {e}"),
                });
                continue;
            }
        };
        match check_row(&mut tx, &record, &mut orders, &mut in_file, &mut repeats).await? {
            Ok(row) => rows.push(row),
            Err(error) => bad.push(BadRow { line, error }),
        }
    }
    if rows.is_empty() && bad.is_empty() {
        return Err(Error::Invalid("the file has no rows below its header".into()));
    }
    if !bad.is_empty() {
        let mut details = serde_json::Map::new();
        details.insert("rows".into(), serde_json::to_value(&bad).expect("plain data"));
        return Err(Error::RefusedWith {
            code: "bad_rows",
            message: format!(
                "{} row(s) of the file are wrong; nothing was imported. Fix them and send the whole file again: {}",
                bad.len(),
                bad.iter()
                    .map(|b| format!("line {}: {}", b.line, b.error))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            details,
        });
    }
    let now = now_millis();
    let actor = caller.actor();
    let (mut imported, mut again) = (0, 0);
    let mut new_ids = Vec::new();
    let mut shipped_now: HashMap<i64, Vec<String>> = HashMap::new();
    for r in rows.iter() {
        if r.seen {
            again += 1;
            continue;
        }
        let id: Option<i64> = sqlx::query(
            "INSERT INTO shipment_lines (order_id, order_line_id, ndc, lot, expires_on, doses, backordered_doses, carrier, \
             tracking_number, ship_date, direct_ship, row_key, imported_by, imported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (row_key) DO NOTHING RETURNING id",
        )
        .bind(r.order_id)
        .bind(r.line_id)
        .bind(&r.ndc)
        .bind(&r.lot)
        .bind(&r.expires_on)
        .bind(r.doses)
        .bind(r.backordered)
        .bind(&r.carrier)
        .bind(&r.tracking)
        .bind(&r.ship_date)
        .bind(r.direct as i64)
        .bind(&r.key)
        .bind(&actor)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?;
        match id {
            Some(id) => {
                imported += 1;
                new_ids.push(id);
                if r.doses > 0 {
                    shipped_now.entry(r.order_id).or_default().push(format!(
                        "{} doses of {} (lot {}){}: {} {}{}",
                        r.doses,
                        r.ndc,
                        r.lot.as_deref().unwrap_or("?"),
                        if r.direct {
                            ", shipped direct by the manufacturer"
                        } else {
                            ""
                        },
                        r.carrier.as_deref().unwrap_or("carrier not given"),
                        r.tracking
                            .as_deref()
                            .map(|t| format!("tracking {t}"))
                            .unwrap_or_default(),
                        r.ship_date
                            .as_deref()
                            .map(|d| format!(", shipped {d}"))
                            .unwrap_or_default(),
                    ));
                }
                if r.backordered > 0 {
                    shipped_now
                        .entry(r.order_id)
                        .or_default()
                        .push(format!("{} doses of {} backordered", r.backordered, r.ndc));
                }
            }
            None => again += 1,
        }
    }
    let mut touched: Vec<i64> = rows.iter().map(|r| r.order_id).collect();
    touched.sort();
    touched.dedup();
    let mut statuses = Vec::new();
    for id in &touched {
        let status = progress::settle(&mut tx, *id, &actor).await?;
        if let Some(what) = shipped_now.get(id) {
            let (order, _) = &orders[id];
            let text = format!(
                "Order {id} for {}: the distributor reports\n- {}\n\nIt is now {}. Receive it against the shipment: \
                 POST /api/v1/orders/{id}/receive.",
                order.location,
                what.join("\n- "),
                status.as_str()
            );
            notify::tell(
                &mut tx,
                *id,
                &order.location,
                "order_shipped",
                &format!("VFC order {id}: {}", status.as_str().replace('_', " ")),
                &text,
                false,
            )
            .await?;
        }
        statuses.push(ImportedOrder { id: *id, status });
    }
    let places: Vec<(String, String)> = touched
        .iter()
        .filter_map(|id| orders.get(id).map(|(h, _)| (h.pin.clone(), h.location.clone())))
        .collect();
    let entry = audit::Entry::new("orders.shipments", "order", touched.clone())
        .changed("shipment_lines", serde_json::Value::Null, new_ids.clone())
        .changed("already_imported", serde_json::Value::Null, again)
        .changed(
            "status",
            serde_json::Value::Null,
            statuses
                .iter()
                .map(|o| serde_json::json!({"order_id": o.id, "status": o.status}))
                .collect::<Vec<_>>(),
        );
    let entry = match super::one_place(&places) {
        Some((pin, code)) => entry.at(Some(pin), Some(code)),
        None => entry,
    };
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Imported {
        imported,
        already_imported: again,
        orders: statuses,
    })
}

/// Reads and checks one row; `Ok(Err(why))` for a bad row. A row imported before (the same
/// fields, the same repeat within its file) is recognised first and not checked again.
async fn check_row(
    conn: &mut AnyConnection,
    rec: &csv::StringRecord,
    orders: &mut HashMap<i64, (super::Head, Vec<OrderLine>)>,
    in_file: &mut HashMap<i64, i64>,
    repeats: &mut HashMap<String, usize>,
) -> Result<std::result::Result<Row10, String>> {
    let f = |i: usize| rec.get(i).unwrap_or("").trim().to_string();
    let opt = |i: usize| Some(f(i)).filter(|s| !s.is_empty());
    let Ok(order_id) = f(0).parse::<i64>() else {
        return Ok(Err(format!("order_id {:?} is not a number", f(0))));
    };
    let ndc = match crate::domain::Ndc::parse(&f(1)) {
        Ok(n) => n.as_str().to_string(),
        Err(e) => return Ok(Err(e.0)),
    };
    let number = |i: usize, name: &str| -> std::result::Result<i64, String> {
        let raw = f(i);
        if raw.is_empty() {
            return Ok(0);
        }
        match raw.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(format!("{name} {raw:?} must be a whole number, 0 or more")),
        }
    };
    let (doses, backordered) = match (number(4, "doses"), number(5, "backordered_doses")) {
        (Ok(d), Ok(b)) => (d, b),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    if doses == 0 && backordered == 0 {
        return Ok(Err(
            "a row ships doses, backorders doses, or both; this one does neither".into(),
        ));
    }
    let (lot, expires_on) = (opt(2), opt(3));
    let mut expiry = None;
    if let Some(e) = &expires_on {
        match crate::domain::parse_date("expires_on", e) {
            Ok(d) => expiry = Some(d.to_string()),
            Err(e) => return Ok(Err(e.0)),
        }
    }
    if doses > 0 && (lot.is_none() || expiry.is_none()) {
        return Ok(Err("a row that ships doses names their lot and expires_on".into()));
    }
    let ship_date = match opt(8) {
        None => None,
        Some(d) => match crate::domain::parse_date("ship_date", &d) {
            Ok(d) => Some(d.to_string()),
            Err(e) => return Ok(Err(e.0)),
        },
    };
    let direct = match f(9).to_ascii_lowercase().as_str() {
        "true" => true,
        "false" | "" => false,
        other => return Ok(Err(format!("direct_ship {other:?} must be true or false"))),
    };
    // The row as parsed (NDC in 5-4-2, lot in upper case, dates as dates), and which repeat of
    // it in this file.
    let fields = [
        order_id.to_string(),
        ndc.clone(),
        lot.as_deref().unwrap_or("").to_uppercase(),
        expiry.clone().unwrap_or_default(),
        doses.to_string(),
        backordered.to_string(),
        f(6).to_uppercase(),
        f(7).to_uppercase(),
        ship_date.clone().unwrap_or_default(),
        direct.to_string(),
    ]
    .join("\u{1f}");
    let nth = repeats.entry(fields.clone()).or_insert(0);
    *nth += 1;
    let key = format!("{fields}\u{1f}{nth}");
    let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM shipment_lines WHERE row_key = $1")
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?;
    let row = |line_id: i64, seen: bool| Row10 {
        order_id,
        line_id,
        ndc: ndc.clone(),
        lot: lot.clone(),
        expires_on: expiry.clone(),
        doses,
        backordered,
        carrier: opt(6),
        tracking: opt(7),
        ship_date: ship_date.clone(),
        direct,
        key: key.clone(),
        seen,
    };
    if seen.is_some() {
        return Ok(Ok(row(0, true)));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = orders.entry(order_id) {
        let h = match head(conn, &crate::accounts::Scope::Program, order_id).await {
            Ok(h) => h,
            Err(Error::NotFound(_)) => return Ok(Err(format!("there is no order {order_id}"))),
            Err(e) => return Err(e),
        };
        let lines = view::lines_of(conn, &[order_id])
            .await?
            .remove(&order_id)
            .unwrap_or_default();
        slot.insert((h, lines));
    }
    let (order, lines) = &orders[&order_id];
    if !order.status.with_distributor() {
        return Ok(Err(format!(
            "order {order_id} is {}; shipments are for orders sent to the distributor",
            order.status.as_str()
        )));
    }
    let left = |l: &OrderLine| (l.wanted() - l.shipped_doses - in_file.get(&l.id).copied().unwrap_or(0)).max(0);
    let of_ndc: Vec<&OrderLine> = lines.iter().filter(|l| l.ndc == ndc).collect();
    if of_ndc.is_empty() {
        return Ok(Err(format!("order {order_id} has no line for NDC {ndc}")));
    }
    // The first open line of the NDC with doses left (an order may hold one NDC as VFC and as
    // state stock; the file does not say which, so they fill in line order).
    let open: Vec<&&OrderLine> = of_ndc.iter().filter(|l| l.closed_at.is_none()).collect();
    let Some(line) = open.iter().find(|l| left(l) > 0).or(open.first()) else {
        return Ok(Err(format!(
            "order {order_id}'s line for NDC {ndc} was closed ({}); it ships no more",
            of_ndc[0].closed_reason.as_deref().unwrap_or("no reason given")
        )));
    };
    let remaining = left(line);
    if doses + backordered > remaining {
        return Ok(Err(format!(
            "line {} of order {order_id} is for {} doses of {ndc} with {} shipped so far; \
             {doses} shipped and {backordered} backordered is more than the {remaining} left",
            line.id,
            line.wanted(),
            line.wanted() - remaining,
        )));
    }
    *in_file.entry(line.id).or_default() += doses;
    Ok(Ok(row(line.id, false)))
}
