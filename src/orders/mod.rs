//! Vaccine orders (README, "Ordering"; docs/domain.md, "Ordering (VFC)"): each suffix location
//! orders its public stock on its own profile ([`profile`]), once its prerequisites are met or
//! waived ([`readiness`]), starting from a suggestion it can redo by hand ([`suggest`]), written
//! and submitted by the clinic ([`life`]); the state reviews ([`review`]), the distributor's
//! files say what was sent ([`export`]) and shipped ([`exchange`]), and the clinic receives against the
//! shipment ([`receive`]); [`progress`] says where an order with the distributor stands. Every
//! transition is in the order's history and the audit trail, and the location's coordinators
//! are emailed ([`notify`]).
//!
//! This folder owns `ordering_profiles`, `orders`, `order_lines`, `order_events`,
//! `order_waivers`, `no_dose_reports`, `order_readiness`, `order_exports`, `shipment_lines` and
//! `order_receipts`.

pub mod exchange;
pub mod export;
pub mod life;
pub mod notify;
pub mod profile;
pub mod progress;
pub mod readiness;
pub mod receive;
pub mod review;
pub mod suggest;
pub mod view;
pub mod waiting;
pub mod waivers;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::accounts::Scope;
use crate::error::{Error, Result};
use crate::store::now_millis;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = OrderStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    PendingLocalApproval,
    InReview,
    Returned,
    Approved,
    Denied,
    Cancelled,
    Expired,
    Sent,
    Backordered,
    PartiallyShipped,
    Shipped,
    Received,
}

impl Status {
    pub const ALL: [Status; 13] = [
        Status::Draft,
        Status::PendingLocalApproval,
        Status::InReview,
        Status::Returned,
        Status::Approved,
        Status::Denied,
        Status::Cancelled,
        Status::Expired,
        Status::Sent,
        Status::Backordered,
        Status::PartiallyShipped,
        Status::Shipped,
        Status::Received,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::PendingLocalApproval => "pending_local_approval",
            Self::InReview => "in_review",
            Self::Returned => "returned",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Sent => "sent",
            Self::Backordered => "backordered",
            Self::PartiallyShipped => "partially_shipped",
            Self::Shipped => "shipped",
            Self::Received => "received",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Submitted and not yet received or closed: its lines count as stock on order.
    pub fn on_order(self) -> bool {
        matches!(
            self,
            Self::PendingLocalApproval
                | Self::InReview
                | Self::Approved
                | Self::Sent
                | Self::Backordered
                | Self::PartiallyShipped
                | Self::Shipped
        )
    }

    /// The clinic may still change the lines.
    pub fn editable(self) -> bool {
        matches!(self, Self::Draft | Self::Returned)
    }

    /// With the distributor: shipment rows may come for it.
    pub fn with_distributor(self) -> bool {
        matches!(
            self,
            Self::Sent | Self::Backordered | Self::PartiallyShipped | Self::Shipped
        )
    }
}

/// The statuses `on_order` counts, for SQL.
pub const ON_ORDER_SQL: &str =
    "('pending_local_approval', 'in_review', 'approved', 'sent', 'backordered', 'partially_shipped', 'shipped')";

/// An order's row, as the functions here need it.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: i64,
    pub location: String,
    pub pin: String,
    pub set: String,
    pub status: Status,
    pub urgent: bool,
    pub submitted_at: Option<i64>,
    pub returned_at: Option<i64>,
}

/// Reads order `id` if the scope covers its location; `NotFound` otherwise (another PIN's order
/// is not there at all).
pub async fn head(conn: &mut AnyConnection, scope: &Scope, id: i64) -> Result<Head> {
    let r = sqlx::query(
        "SELECT id, location_code, pin, set_name, status, urgent, submitted_at, returned_at FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let not_found = || Error::NotFound(format!("no order {id}"));
    let r = r.ok_or_else(not_found)?;
    let (location, pin): (String, String) = (r.try_get("location_code")?, r.try_get("pin")?);
    if !scope.covers_code(&pin, &location) {
        return Err(not_found());
    }
    let raw: String = r.try_get("status")?;
    Ok(Head {
        id,
        status: Status::parse(&raw).ok_or_else(|| Error::unreadable("orders", id, format!("status {raw:?}")))?,
        location,
        pin,
        set: r.try_get("set_name")?,
        urgent: r.try_get::<i64, _>("urgent")? != 0,
        submitted_at: r.try_get("submitted_at")?,
        returned_at: r.try_get("returned_at")?,
    })
}

/// Moves an order to `to` and writes the history row, in the caller's transaction. The status
/// it leaves must still be `from` (two reviewers at once: the second is told).
pub async fn transition(
    conn: &mut AnyConnection,
    order: &Head,
    to: Status,
    actor: &str,
    note: Option<&str>,
) -> Result<()> {
    let now = now_millis();
    let moved = sqlx::query("UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
        .bind(to.as_str())
        .bind(now)
        .bind(order.id)
        .bind(order.status.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if moved == 0 {
        return Err(Error::Conflict(format!(
            "order {} changed while you were looking at it; read it again (GET /api/v1/orders/{})",
            order.id, order.id
        )));
    }
    history(conn, order.id, to, actor, note, now).await
}

/// One row of an order's history.
pub async fn history(
    conn: &mut AnyConnection,
    order_id: i64,
    status: Status,
    actor: &str,
    note: Option<&str>,
    at: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO order_events (order_id, status, actor, at, note) VALUES ($1, $2, $3, $4, $5)")
        .bind(order_id)
        .bind(status.as_str())
        .bind(actor)
        .bind(at)
        .bind(note)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What a transition not allowed from the current status answers.
pub fn not_now(order: &Head, what: &str, allowed: &[Status]) -> Error {
    Error::Conflict(format!(
        "order {} is {}; it can be {what} only when {}",
        order.id,
        order.status.as_str(),
        allowed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")
    ))
}

/// A required, trimmed reason.
pub fn reason(raw: Option<&str>, what: &str) -> Result<String> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if r.chars().count() <= 500 => Ok(r.to_string()),
        Some(_) => Err(Error::Invalid(format!("\"reason\" ({what}) is at most 500 characters"))),
        None => Err(Error::Invalid(format!("give a \"reason\": {what}"))),
    }
}

/// An optional, trimmed note of at most 1000 characters.
pub fn note(raw: Option<&str>) -> Result<Option<String>> {
    match raw.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() > 1000 => Err(Error::Invalid("\"note\" is at most 1000 characters".into())),
        n => Ok(n.map(str::to_string)),
    }
}

/// The one (PIN, location) all of `places` share, if they share one.
pub fn one_place(places: &[(String, String)]) -> Option<(&str, &str)> {
    let (first, rest) = places.split_first()?;
    rest.iter()
        .all(|p| p == first)
        .then_some((first.0.as_str(), first.1.as_str()))
}
