//! The state's review of an order (README, "Ordering"): approve (reducing a line needs a
//! reason, increasing one is refused), deny or return it for correction; the clinic may cancel
//! before approval; the state closes a line that will not ship. Each is one transaction: the
//! status, the history row, the audit row and the emails.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::view::{self, Order};
use super::{head, history, not_now, note, notify, progress, reason, transition, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

async fn finish(db: &Db, caller: &Caller, id: i64) -> Result<Order> {
    let mut conn = db.pool.acquire().await?;
    view::full(&mut conn, db, &caller.scope, id).await
}

/// A reviewer's change to one line.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineDecision {
    pub id: i64,
    pub doses: i64,
    /// Required when `doses` is below what was asked.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /api/v1/orders/{id}/approve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Lines approved at other quantities than asked; the rest are approved as asked.
    #[serde(default)]
    pub lines: Vec<LineDecision>,
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn approve(db: &Db, caller: &Caller, id: i64, body: &Approve) -> Result<Order> {
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    if order.status != Status::InReview {
        return Err(not_now(&order, "approved", &[Status::InReview]));
    }
    let lines = view::lines_of(&mut tx, &[id]).await?.remove(&id).unwrap_or_default();
    let mut reductions = Vec::new();
    for (i, d) in body.lines.iter().enumerate() {
        let at = |m: String| Error::Invalid(format!("lines[{i}]: {m}"));
        let Some(line) = lines.iter().find(|l| l.id == d.id) else {
            return Err(at(format!("order {id} has no line {}", d.id)));
        };
        if body.lines[..i].iter().any(|o| o.id == d.id) {
            return Err(at(format!("line {} appears twice", d.id)));
        }
        if d.doses < 0 {
            return Err(at("\"doses\" is 0 or more".into()));
        }
        if d.doses > line.doses {
            return Err(at(format!(
                "line {} asked for {} doses; a reviewer may reduce a line but not increase it \
                 (return the order for correction instead)",
                d.id, line.doses
            )));
        }
        if d.doses < line.doses {
            let why = reason(d.reason.as_deref(), &format!("why line {} is reduced", d.id))?;
            reductions.push((line.clone(), d.doses, why));
        }
    }
    let cut_to_nothing = lines
        .iter()
        .all(|l| reductions.iter().any(|(r, doses, _)| r.id == l.id && *doses == 0));
    if cut_to_nothing {
        return Err(Error::Invalid(
            "every line would be approved at 0 doses: deny the order instead (POST …/deny with the reason)".into(),
        ));
    }
    let now = now_millis();
    sqlx::query("UPDATE order_lines SET approved_doses = doses WHERE order_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for (line, doses, why) in &reductions {
        sqlx::query("UPDATE order_lines SET approved_doses = $1, reduction_reason = $2 WHERE id = $3")
            .bind(doses)
            .bind(why)
            .bind(line.id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE orders SET approved_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let note = note(body.note.as_deref())?;
    transition(&mut tx, &order, Status::Approved, &caller.actor(), note.as_deref()).await?;
    let mut text = format!("Order {id} for {} was approved.", order.location);
    if reductions.is_empty() {
        text.push_str(" Every line was approved as asked.");
    } else {
        text.push_str("\n\nReduced:");
        for (line, doses, why) in &reductions {
            text.push_str(&format!(
                "\n- {} ({}): {} doses asked, {} approved. Why: {}",
                line.product.as_deref().unwrap_or(&line.ndc),
                line.funding,
                line.doses,
                doses,
                why
            ));
        }
    }
    if let Some(n) = &note {
        text.push_str(&format!("\n\nThe reviewer's note: {n}"));
    }
    notify::tell(
        &mut tx,
        id,
        &order.location,
        "order_approved",
        &format!("VFC order {id} approved"),
        &text,
        false,
    )
    .await?;
    let entry = audit::Entry::new("order.approve", "order", [id])
        .at(Some(&order.pin), Some(&order.location))
        .changed("status", order.status.as_str(), Status::Approved.as_str())
        .changed(
            "reduced",
            serde_json::Value::Null,
            reductions
                .iter()
                .map(|(l, d, why)| serde_json::json!({"line_id": l.id, "from": l.doses, "to": d, "reason": why}))
                .collect::<Vec<_>>(),
        );
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    finish(db, caller, id).await
}

/// Body of deny, return and cancel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

/// The decisions that end or return an order with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Deny,
    Return,
    Cancel,
}

pub async fn decide(db: &Db, caller: &Caller, id: i64, d: Decision, body: &Reason) -> Result<Order> {
    let (to, verb, allowed, action): (Status, &str, &[Status], &'static str) = match d {
        Decision::Deny => (
            Status::Denied,
            "denied",
            &[Status::PendingLocalApproval, Status::InReview],
            "order.deny",
        ),
        Decision::Return => (
            Status::Returned,
            "returned for correction",
            &[Status::PendingLocalApproval, Status::InReview],
            "order.return",
        ),
        Decision::Cancel => (
            Status::Cancelled,
            "cancelled",
            &[
                Status::Draft,
                Status::PendingLocalApproval,
                Status::InReview,
                Status::Returned,
            ],
            "order.cancel",
        ),
    };
    let why = reason(Some(&body.reason), &format!("why the order is {verb}"))?;
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    if !allowed.contains(&order.status) {
        return Err(not_now(&order, verb, allowed));
    }
    let now = now_millis();
    sqlx::query("UPDATE orders SET decision_reason = $1, returned_at = CASE WHEN $2 = 1 THEN $3 ELSE returned_at END WHERE id = $4")
        .bind(&why)
        .bind((d == Decision::Return) as i64)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    transition(&mut tx, &order, to, &caller.actor(), Some(&why)).await?;
    match d {
        Decision::Deny => {
            let text = format!("Order {id} for {} was denied.\n\nWhy: {why}", order.location);
            notify::tell(
                &mut tx,
                id,
                &order.location,
                "order_denied",
                &format!("VFC order {id} denied"),
                &text,
                false,
            )
            .await?;
        }
        Decision::Return => {
            let program = crate::coldchain::settings::program_in(&mut tx).await?.ordering;
            let text = format!(
                "Order {id} for {} was returned for correction.\n\nWhy: {why}\n\nCorrect it (PATCH /api/v1/orders/{id}) and submit it again \
                 within {} days, or it expires.",
                order.location, program.returned_expire_days
            );
            notify::tell(
                &mut tx,
                id,
                &order.location,
                "order_returned",
                &format!("VFC order {id} returned for correction"),
                &text,
                false,
            )
            .await?;
        }
        Decision::Cancel => {}
    }
    let entry = audit::Entry::new(action, "order", [id])
        .at(Some(&order.pin), Some(&order.location))
        .changed("status", order.status.as_str(), to.as_str())
        .changed("reason", serde_json::Value::Null, why.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    finish(db, caller, id).await
}

/// `POST /api/v1/orders/{id}/lines/{line_id}/close` (state): a line that will not ship.
pub async fn close_line(db: &Db, caller: &Caller, id: i64, line_id: i64, body: &Reason) -> Result<Order> {
    let why = reason(Some(&body.reason), "why the line will not ship")?;
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    let allowed = [
        Status::Approved,
        Status::Sent,
        Status::Backordered,
        Status::PartiallyShipped,
        Status::Shipped,
    ];
    if !allowed.contains(&order.status) {
        return Err(not_now(&order, "have a line closed", &allowed));
    }
    let now = now_millis();
    let closed = sqlx::query(
        "UPDATE order_lines SET closed_at = $1, closed_by = $2, closed_reason = $3 WHERE id = $4 AND order_id = $5 AND closed_at IS NULL",
    )
    .bind(now)
    .bind(caller.actor())
    .bind(&why)
    .bind(line_id)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if closed == 0 {
        let exists = view::lines_of(&mut tx, &[id])
            .await?
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .any(|l| l.id == line_id);
        return Err(if exists {
            Error::Conflict(format!("line {line_id} of order {id} is already closed"))
        } else {
            Error::NotFound(format!("order {id} has no line {line_id}"))
        });
    }
    history(
        &mut tx,
        id,
        order.status,
        &caller.actor(),
        Some(&format!("line {line_id} closed: {why}")),
        now,
    )
    .await?;
    let now_status = progress::settle(&mut tx, id, &caller.actor()).await?;
    let entry = audit::Entry::new("order.close_line", "order_line", [line_id])
        .at(Some(&order.pin), Some(&order.location))
        .changed("status", order.status.as_str(), now_status.as_str())
        .changed("order_id", serde_json::Value::Null, id)
        .changed("reason", serde_json::Value::Null, why.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    finish(db, caller, id).await
}
