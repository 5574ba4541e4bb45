//! Transfers of doses between units and locations (docs/domain.md, "Inventory"): within what the
//! caller's token covers at once, to another PIN after the state approves. This module owns
//! `transfers`.
//!
//! A token scoped to one location moves doses between that location's units; to a sibling
//! location (same PIN) it needs a token for the PIN, or the state. A request to another PIN may
//! name any well-formed location code: it is recorded whether or not that location exists — the
//! sender learns nothing of another PIN — and the state approves or rejects it.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::ledger::{self, Entry, Kind};
use super::movements::stock_row;
use super::{place, today, unit_of, Error, Place, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::{Caller, Scope};
use crate::domain::{Doses, LocationCode};
use crate::store::{now_millis, rfc3339, Db, Page};

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
        lines: serde_json::from_str(&r.try_get::<String, _>("lines")?).map_err(|e| {
            Error::unreadable(
                "transfers",
                r.try_get::<i64, _>("id").unwrap_or_default(),
                format!("lines: {e}"),
            )
        })?,
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
    if let Some(unit) = super::routing::unit_for_lot(conn, &to.code, lot_id).await? {
        return Ok(unit);
    }
    let same_kind = crate::registry::units::same_kind_at(conn, from_unit, &to.code).await?;
    match same_kind.as_slice() {
        [one] => Ok(*one),
        _ => Err(Error::Invalid(format!(
            "say which unit of {} receives the doses: \"to_unit_id\"",
            to.code
        ))),
    }
}

/// Moves the doses: out of the sending unit, into the receiving one, in one transaction.
async fn complete(conn: &mut AnyConnection, t: &Transfer, to_unit: i64, actor: &str, at: i64) -> Result<()> {
    crate::coldchain::downtime::refuse_stock_if_out_of_service(conn, to_unit, now_millis()).await?;
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
    let mut tx = db.begin().await?;
    let from = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &from, body.from_unit_id).await?;
    for line in &body.lines {
        check_movable(&mut tx, &from, body.from_unit_id, line).await?;
    }
    let to_code = match &body.to_location {
        None => LocationCode::parse(&from.code)?,
        Some(c) => LocationCode::parse(c)?,
    };
    let to_pin = to_code.pin().as_str().to_string();
    let to_code = to_code.to_string();
    let cross_pin = to_pin != from.pin;
    let covered = caller.scope.covers_code(&to_pin, &to_code);
    if !covered && !cross_pin {
        return Err(Error::Forbidden(format!(
            "a transfer to {to_code}, another location of PIN {to_pin}, needs a token for the whole PIN or the state \
             VFC coordinator; this token covers {} only",
            from.code
        )));
    }
    // Outside the caller's scope the receiving location is not looked up: the request is kept as
    // named, and the state finds out whether it exists.
    let to = match covered {
        true => Some(place(&mut tx, &caller.scope, &to_code).await?),
        false => None,
    };
    let to_unit = match (&to, body.to_unit_id) {
        (Some(to), Some(u)) => {
            unit_of(&mut tx, to, u).await?;
            Some(u)
        }
        (Some(to), None) if !cross_pin => {
            Some(receiving_unit(&mut tx, to, body.from_unit_id, body.lines[0].lot_id).await?)
        }
        _ => None,
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
    .bind(&to_code)
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
    let entry = audit::Entry::new("transfer.request", "transfer", [id])
        .at(Some(&from.pin), Some(&from.code))
        .changed("to_location", serde_json::Value::Null, t.to_location.as_str())
        .changed("status", serde_json::Value::Null, t.status.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
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

/// A location's transfers, sent or received, newest first.
pub async fn list_transfers(db: &Db, caller: &Caller, code: &str, page: Page) -> Result<(Vec<Transfer>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows = sqlx::query(
        "SELECT * FROM transfers WHERE (from_location = $1 OR to_location = $1) AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(&place.code)
    .bind(page.after.unwrap_or(i64::MAX))
    .bind(page.limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let list = rows.iter().map(transfer_row).collect::<Result<Vec<_>>>()?;
    Ok(page.cut(list, |t| t.id))
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
    let mut tx = db.begin().await?;
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
        let to = place(&mut tx, &Scope::Program, &t.to_location).await.map_err(|_| {
            Error::Conflict(format!(
                "{} is not a registered VFC location: reject the request with a note for the sender",
                t.to_location
            ))
        })?;
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
    let action = if approve { "transfer.approve" } else { "transfer.reject" };
    let entry = audit::Entry::new(action, "transfer", [id])
        .at(None, Some(&t.from_location))
        .changed("status", "pending", t.status.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(t)
}
