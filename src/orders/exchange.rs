//! The state's exchange with the distributor, as files (README, "Ordering": both formats with an
//! example). An export batch holds every approved order not yet exported and marks them sent;
//! it is kept, so a lost response loses nothing. A shipment file is imported all or nothing:
//! one bad row refuses the whole file with every bad row and why; a row imported again is not
//! counted twice.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::view::{self, OrderLine};
use super::{head, notify, progress, transition, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

pub const EXPORT_COLUMNS: [&str; 12] = [
    "order_id",
    "line_id",
    "pin",
    "suffix",
    "ship_to",
    "delivery_hours",
    "instructions",
    "ndc",
    "funding",
    "doses",
    "urgent",
    "approved_at",
];

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

/// An export batch: its id and the CSV.
pub struct Batch {
    pub id: i64,
    pub csv: String,
    pub orders: i64,
}

/// `POST /api/v1/orders/export` (state): every approved order not yet exported, marked sent.
pub async fn export(db: &Db, caller: &Caller) -> Result<Batch> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query("SELECT id FROM orders WHERE status = 'approved' AND export_batch_id IS NULL ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.try_get("id")).collect::<sqlx::Result<_>>()?;
    let mut lines = view::lines_of(&mut tx, &ids).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(EXPORT_COLUMNS).map_err(csv_error)?;
    let now = now_millis();
    let batch: i64 = sqlx::query(
        "INSERT INTO order_exports (csv, orders, created_by, created_at) VALUES ('', $1, $2, $3) RETURNING id",
    )
    .bind(ids.len() as i64)
    .bind(caller.actor())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    for id in &ids {
        let order = head(&mut tx, &caller.scope, *id).await?;
        let r = sqlx::query("SELECT urgent, approved_at FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let (profile, _) = super::profile::stored(&mut tx, &order.location).await?;
        let suffix = order.location.strip_prefix(order.pin.as_str()).map(str::to_string);
        let urgent = r.try_get::<i64, _>("urgent")? != 0;
        let approved_at: Option<i64> = r.try_get("approved_at")?;
        for l in lines.remove(id).unwrap_or_default() {
            if l.closed_at.is_some() || l.wanted() == 0 {
                continue;
            }
            out.write_record([
                id.to_string(),
                l.id.to_string(),
                order.pin.clone(),
                suffix.clone().unwrap_or_default(),
                profile.ship_to.clone().unwrap_or_default(),
                profile.delivery_hours.clone().unwrap_or_default(),
                profile.instructions.clone().unwrap_or_default(),
                l.ndc.clone(),
                l.funding.clone(),
                l.wanted().to_string(),
                urgent.to_string(),
                approved_at.map(rfc3339).unwrap_or_default(),
            ])
            .map_err(csv_error)?;
        }
        sqlx::query("UPDATE orders SET export_batch_id = $1 WHERE id = $2")
            .bind(batch)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        transition(
            &mut tx,
            &order,
            Status::Sent,
            &caller.actor(),
            Some(&format!("export batch {batch}")),
        )
        .await?;
    }
    let csv = String::from_utf8(out.into_inner().map_err(|e| csv_error(e.into_error()))?).expect("CSV of UTF-8 fields");
    sqlx::query("UPDATE order_exports SET csv = $1 WHERE id = $2")
        .bind(&csv)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
    let mut objects = vec![batch];
    objects.extend(&ids);
    let entry = audit::Entry::new("orders.export", "order_export", objects).changed(
        "orders",
        serde_json::Value::Null,
        ids.len(),
    );
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Batch {
        id: batch,
        csv,
        orders: ids.len() as i64,
    })
}

fn csv_error(e: impl std::fmt::Display) -> Error {
    Error::Database(sqlx::Error::Protocol(format!("writing CSV: {e}")))
}

/// `GET /api/v1/orders/exports/{id}` (state): the batch as it was sent.
pub async fn batch(db: &Db, id: i64) -> Result<Batch> {
    let r = sqlx::query("SELECT id, csv, orders FROM order_exports WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no export batch {id}")))?;
    Ok(Batch {
        id,
        csv: r.try_get("csv")?,
        orders: r.try_get("orders")?,
    })
}

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
        match check_row(&mut tx, &record, &mut orders, &mut in_file).await? {
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
    for r in &rows {
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
    let mut objects = new_ids.clone();
    objects.extend(&touched);
    let entry = audit::Entry::new("orders.shipments", "shipment_line", objects)
        .changed("rows", serde_json::Value::Null, rows.len())
        .changed("already_imported", serde_json::Value::Null, again);
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(Imported {
        imported,
        already_imported: again,
        orders: statuses,
    })
}

/// Reads and checks one row; `Ok(Err(why))` for a bad row.
async fn check_row(
    conn: &mut AnyConnection,
    rec: &csv::StringRecord,
    orders: &mut HashMap<i64, (super::Head, Vec<OrderLine>)>,
    in_file: &mut HashMap<i64, i64>,
) -> Result<std::result::Result<Row10, String>> {
    let f = |i: usize| rec.get(i).unwrap_or("").trim().to_string();
    let opt = |i: usize| Some(f(i)).filter(|s| !s.is_empty());
    let Ok(order_id) = f(0).parse::<i64>() else {
        return Ok(Err(format!("order_id {:?} is not a number", f(0))));
    };
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
    let ndc = match crate::domain::Ndc::parse(&f(1)) {
        Ok(n) => n.as_str().to_string(),
        Err(e) => return Ok(Err(e.0)),
    };
    let Some(line) = lines.iter().find(|l| l.ndc == ndc && l.closed_at.is_none()) else {
        return Ok(Err(format!("order {order_id} has no open line for NDC {ndc}")));
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
    if doses > 0 {
        if lot.is_none() {
            return Ok(Err("a row that ships doses names their lot".into()));
        }
        match &expires_on {
            None => return Ok(Err("a row that ships doses gives expires_on".into())),
            Some(e) => {
                if let Err(e) = crate::domain::parse_date("expires_on", e) {
                    return Ok(Err(e.0));
                }
            }
        }
    }
    let ship_date = opt(8);
    if let Some(d) = &ship_date {
        if let Err(e) = crate::domain::parse_date("ship_date", d) {
            return Ok(Err(e.0));
        }
    }
    let direct = match f(9).to_ascii_lowercase().as_str() {
        "true" => true,
        "false" | "" => false,
        other => return Ok(Err(format!("direct_ship {other:?} must be true or false"))),
    };
    let key = rec.iter().map(str::trim).collect::<Vec<_>>().join("\u{1f}");
    // A row seen before is not counted again, and not checked against what it already counts.
    let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM shipment_lines WHERE row_key = $1")
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?;
    if seen.is_none() {
        let so_far = line.shipped_doses + in_file.get(&line.id).copied().unwrap_or(0);
        let remaining = (line.wanted() - so_far).max(0);
        if doses + backordered > remaining {
            return Ok(Err(format!(
                "line {} of order {order_id} is for {} doses of {ndc} with {so_far} shipped so far; \
                 {doses} shipped and {backordered} backordered is more than the {remaining} left",
                line.id,
                line.wanted(),
            )));
        }
        *in_file.entry(line.id).or_default() += doses;
    }
    Ok(Ok(Row10 {
        order_id,
        line_id: line.id,
        ndc,
        lot,
        expires_on,
        doses,
        backordered,
        carrier: opt(6),
        tracking: opt(7),
        ship_date,
        direct,
        key,
    }))
}
