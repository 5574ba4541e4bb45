//! Where an order with the distributor stands, from its lines: received when every line is
//! received or closed, else shipped, partially shipped or backordered; and returned orders
//! that expire when not corrected in time.

use sqlx::AnyConnection;

use super::{head, notify, transition, view, Status};
use crate::accounts::audit::{self, Who};
use crate::error::Result;
use crate::store::{now_millis, Db};

/// How many of the order's shipment lines that shipped doses have no receipt yet.
pub async fn unreceived_shipment_lines(conn: &mut AnyConnection, order_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM shipment_lines s WHERE s.order_id = $1 AND s.doses > 0 \
         AND NOT EXISTS (SELECT 1 FROM order_receipts r WHERE r.shipment_line_id = s.id)",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Sets an order with the distributor to what its lines say: received when every line is
/// received or closed; else shipped, partially shipped or backordered. Tells the clinic when it
/// becomes received. Returns the status it is in.
pub async fn settle(conn: &mut AnyConnection, id: i64, actor: &str) -> Result<Status> {
    let order = head(conn, &crate::accounts::Scope::Program, id).await?;
    if !order.status.with_distributor() && order.status != Status::Approved {
        return Ok(order.status);
    }
    let lines = view::lines_of(conn, &[id]).await?.remove(&id).unwrap_or_default();
    let unreceived = unreceived_shipment_lines(conn, id).await?;
    let open: Vec<_> = lines
        .iter()
        .filter(|l| l.closed_at.is_none() && l.wanted() > 0)
        .collect();
    let all_shipped = open.iter().all(|l| l.shipped_doses >= l.wanted());
    let received = all_shipped && unreceived == 0 && (order.status != Status::Approved || open.is_empty());
    let to = if received {
        Status::Received
    } else if order.status == Status::Approved {
        Status::Approved
    } else if all_shipped {
        Status::Shipped
    } else if lines.iter().any(|l| l.shipped_doses > 0) {
        Status::PartiallyShipped
    } else if open.iter().any(|l| l.backordered_doses > 0) {
        Status::Backordered
    } else {
        order.status
    };
    if to != order.status {
        transition(conn, &order, to, actor, None).await?;
        if to == Status::Received {
            let text = format!(
                "Order {id} for {} is received: every line arrived or was closed.",
                order.location
            );
            notify::tell(
                conn,
                id,
                &order.location,
                "order_received",
                &format!("VFC order {id} received"),
                &text,
                false,
            )
            .await?;
        }
    }
    Ok(to)
}

/// Expires returned orders not resubmitted in time (the supervised sweep). Returns how many.
pub async fn expire_returned(db: &Db) -> Result<usize> {
    let program = crate::coldchain::settings::program(db).await?.ordering;
    let before = now_millis() - (program.returned_expire_days * 86_400_000.0) as i64;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE status = 'returned' AND returned_at < $1 ORDER BY id LIMIT 500",
    )
    .bind(before)
    .fetch_all(&db.pool)
    .await?;
    let mut n = 0;
    for id in ids {
        let mut tx = db.begin().await?;
        let order = head(&mut tx, &crate::accounts::Scope::Program, id).await?;
        if order.status != Status::Returned {
            continue;
        }
        let why = format!(
            "not corrected and resubmitted within {} days",
            program.returned_expire_days
        );
        transition(&mut tx, &order, Status::Expired, "system", Some(&why)).await?;
        let entry = audit::Entry::new("order.expire", "order", [id])
            .at(Some(&order.pin), Some(&order.location))
            .changed("status", order.status.as_str(), Status::Expired.as_str());
        audit::record(&mut tx, &Who::system(), entry).await?;
        tx.commit().await?;
        n += 1;
    }
    Ok(n)
}
