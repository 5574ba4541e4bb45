//! An order's life (README, "Ordering"): a draft the clinic writes (staff may), submitted by a
//! coordinator inside its window (or urgent, with a reason) once the prerequisites pass or are
//! waived; approved locally first where the program asks; then the state approves (reducing a
//! line needs a reason, increasing one is refused), denies or returns it for correction (a
//! returned order expires after the program's days); the clinic may cancel before approval;
//! the state closes a line that will not ship. Each step is one transaction: the status, the
//! history row, the audit row and the emails.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::profile::{self, Profile};
use super::view::{self, Order};
use super::{head, history, not_now, note, readiness, reason, suggest, transition, Head, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::{Caller, Role};
use crate::domain::ordering::OrderingSettings;
use crate::domain::{Doses, Funding, Ndc};
use crate::error::{Error, Result};
use crate::inventory::catalog::{self, Product};
use crate::inventory::{self, Place};
use crate::store::{now_millis, Db};

/// A line as the clinic writes it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineIn {
    /// Unit-of-sale NDC of a product in the order set.
    pub ndc: String,
    /// vfc | state (private stock is never ordered here).
    pub funding: String,
    /// Whole doses, more than 0.
    pub doses: i64,
}

/// Body of `POST /api/v1/locations/{code}/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    /// The order set (default `routine`).
    #[serde(default)]
    pub set: Option<String>,
    pub lines: Vec<LineIn>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `PATCH /api/v1/orders/{id}`: what changes (lines replace the order's lines).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    #[serde(default)]
    pub set: Option<String>,
    #[serde(default)]
    pub lines: Option<Vec<LineIn>>,
    #[serde(default)]
    pub note: Option<String>,
}

struct Checked {
    ndc: String,
    funding: Funding,
    doses: i64,
}

/// Checks lines against the location's set and the program's fundings.
fn check_lines(
    code: &str,
    lines: &[LineIn],
    set: &str,
    profile: &Profile,
    program: &OrderingSettings,
    products: &[Product],
) -> Result<Vec<Checked>> {
    if lines.is_empty() {
        return Err(Error::Invalid("an order needs at least one line in \"lines\"".into()));
    }
    if lines.len() > 200 {
        return Err(Error::Invalid("an order has at most 200 lines".into()));
    }
    let in_set = profile.products_of(set, products)?;
    let mut out: Vec<Checked> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let at = |m: String| Error::Invalid(format!("lines[{i}]: {m}"));
        let ndc = Ndc::parse(&l.ndc).map_err(|e| at(e.0))?;
        if !in_set.iter().any(|p| p.ndc == ndc.as_str()) {
            return Err(at(format!(
                "{ndc} is not in {code}'s {set:?} order set; see GET /api/v1/locations/{code}/orders/suggestion?set={set}"
            )));
        }
        let funding = Funding::parse(l.funding.trim()).map_err(|e| at(e.0))?;
        if !funding.is_public() {
            return Err(at(
                "private stock is never ordered here: order it from the distributor with the practice's own funds"
                    .into(),
            ));
        }
        if !program.fundings.contains(&funding) {
            return Err(at(format!(
                "the program orders {} stock only",
                program
                    .fundings
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )));
        }
        if l.doses <= 0 {
            return Err(at(format!("\"doses\" must be a whole number above 0, not {}", l.doses)));
        }
        let doses = Doses::parse(l.doses).map_err(|e| at(e.0))?.get();
        if out.iter().any(|c| c.ndc == ndc.as_str() && c.funding == funding) {
            return Err(at(format!(
                "{ndc} ({}) is on two lines; send one line each",
                funding.as_str()
            )));
        }
        out.push(Checked {
            ndc: ndc.as_str().to_string(),
            funding,
            doses,
        });
    }
    Ok(out)
}

async fn write_lines(conn: &mut AnyConnection, order_id: i64, lines: &[Checked]) -> Result<()> {
    for l in lines {
        sqlx::query("INSERT INTO order_lines (order_id, ndc, funding, doses) VALUES ($1, $2, $3, $4)")
            .bind(order_id)
            .bind(&l.ndc)
            .bind(l.funding.as_str())
            .bind(l.doses)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn finish(conn: &mut AnyConnection, db: &Db, caller: &Caller, id: i64) -> Result<Order> {
    view::full(conn, db, &caller.scope, id).await
}

pub async fn create(db: &Db, caller: &Caller, code: &str, body: &Draft) -> Result<Order> {
    let products = catalog::list(db).await?;
    let mut tx = db.begin().await?;
    let place = inventory::place(&mut tx, &caller.scope, code).await?;
    let program = crate::coldchain::settings::program_in(&mut tx).await?.ordering;
    let (profile, _) = profile::stored(&mut tx, &place.code).await?;
    let set = body.set.as_deref().map(str::trim).unwrap_or(profile::ROUTINE);
    let lines = check_lines(&place.code, &body.lines, set, &profile, &program, &products)?;
    let now = now_millis();
    let actor = caller.actor();
    let id: i64 = sqlx::query(
        "INSERT INTO orders (location_code, pin, set_name, status, urgent, note, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, 'draft', 0, $4, $5, $6, $6) RETURNING id",
    )
    .bind(&place.code)
    .bind(&place.pin)
    .bind(set)
    .bind(note(body.note.as_deref())?)
    .bind(&actor)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    write_lines(&mut tx, id, &lines).await?;
    history(&mut tx, id, Status::Draft, &actor, None, now).await?;
    let entry = audit::Entry::new("order.create", "order", [id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("set", serde_json::Value::Null, set)
        .changed(
            "lines",
            serde_json::Value::Null,
            serde_json::to_value(&body.lines).expect("plain data"),
        );
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    let mut conn = db.pool.acquire().await?;
    finish(&mut conn, db, caller, id).await
}

pub async fn edit(db: &Db, caller: &Caller, id: i64, body: &Edit) -> Result<Order> {
    let products = catalog::list(db).await?;
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    if !order.status.editable() {
        return Err(not_now(&order, "changed", &[Status::Draft, Status::Returned]));
    }
    let program = crate::coldchain::settings::program_in(&mut tx).await?.ordering;
    let (profile, _) = profile::stored(&mut tx, &order.location).await?;
    let set = body.set.as_deref().map(str::trim).unwrap_or(&order.set).to_string();
    let mut entry = audit::Entry::new("order.update", "order", [id]).at(Some(&order.pin), Some(&order.location));
    if set != order.set {
        entry = entry.changed("set", order.set.as_str(), set.as_str());
    }
    let lines = match &body.lines {
        Some(lines) => Some(check_lines(
            &order.location,
            lines,
            &set,
            &profile,
            &program,
            &products,
        )?),
        None => {
            // A new set must still hold every line's product.
            let kept: Vec<LineIn> = view::lines_of(&mut tx, &[id])
                .await?
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|l| LineIn {
                    ndc: l.ndc,
                    funding: l.funding,
                    doses: l.doses,
                })
                .collect();
            check_lines(&order.location, &kept, &set, &profile, &program, &products)?;
            None
        }
    };
    if let Some(lines) = &lines {
        sqlx::query("DELETE FROM order_lines WHERE order_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_lines(&mut tx, id, lines).await?;
        entry = entry.changed(
            "lines",
            serde_json::Value::Null,
            serde_json::to_value(body.lines.as_ref().expect("given")).expect("plain data"),
        );
    }
    let new_note = match &body.note {
        Some(n) => note(Some(n))?,
        None => None,
    };
    sqlx::query(
        "UPDATE orders SET set_name = $1, note = CASE WHEN $2 = 1 THEN $3 ELSE note END, updated_at = $4 WHERE id = $5",
    )
    .bind(&set)
    .bind(body.note.is_some() as i64)
    .bind(new_note)
    .bind(now_millis())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    let mut conn = db.pool.acquire().await?;
    finish(&mut conn, db, caller, id).await
}

/// Body of `POST /api/v1/orders/{id}/submit`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    #[serde(default)]
    pub urgent: bool,
    /// Required when urgent: why the order cannot wait for the window.
    #[serde(default)]
    pub urgent_reason: Option<String>,
}

/// Whether a returned order is past its days for correction.
fn expired(order: &Head, program: &OrderingSettings, now: i64) -> bool {
    order.status == Status::Returned
        && order
            .returned_at
            .is_some_and(|at| now - at > (program.returned_expire_days * 86_400_000.0) as i64)
}

pub async fn submit(db: &Db, caller: &Caller, id: i64, body: &Submit) -> Result<Order> {
    let products = catalog::list(db).await?;
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    if !order.status.editable() {
        return Err(not_now(&order, "submitted", &[Status::Draft, Status::Returned]));
    }
    let now = now_millis();
    let program = crate::coldchain::settings::program_in(&mut tx).await?.ordering;
    if expired(&order, &program, now) {
        return Err(Error::Conflict(format!(
            "order {id} was returned more than {} days ago and has expired; start a new order",
            program.returned_expire_days
        )));
    }
    let urgent_reason = if body.urgent {
        Some(reason(
            body.urgent_reason.as_deref(),
            "why this order cannot wait for the window",
        )?)
    } else {
        None
    };
    let place = inventory::place(&mut tx, &caller.scope, &order.location).await?;
    let (profile, _) = profile::stored(&mut tx, &place.code).await?;
    let today = inventory::today(place.tz, now);
    if let Some(window) = profile.window_for(&order.set) {
        if !body.urgent && !window.contains(today) {
            let next = window.next_open(today);
            let mut details = serde_json::Map::new();
            details.insert("window".into(), serde_json::to_value(window).expect("plain data"));
            details.insert("next_window_opens".into(), next.map(|d| d.to_string()).into());
            return Err(Error::RefusedWith {
                code: "outside_window",
                message: format!(
                    "{} orders its {:?} set in the {} half of months {:?}; today ({today}) is outside it{}. \
                     Wait for the window, or submit as urgent with an \"urgent_reason\"",
                    place.code,
                    order.set,
                    match window.half {
                        crate::domain::ordering::Half::First => "first",
                        crate::domain::ordering::Half::Second => "second",
                    },
                    window.months,
                    next.map(|d| format!("; it next opens on {d}")).unwrap_or_default()
                ),
                details,
            });
        }
    }
    let ready = readiness::compute(
        &mut tx,
        &place,
        &program.prerequisites,
        program.temperature_lookback_days,
        Some(id),
    )
    .await?;
    if !ready.ready {
        let failed = ready.failed();
        let mut details = serde_json::Map::new();
        details.insert("checks".into(), serde_json::to_value(&failed).expect("plain data"));
        return Err(Error::RefusedWith {
            code: "prerequisites",
            message: format!(
                "{} is not ready to order: {}",
                place.code,
                failed
                    .iter()
                    .map(|c| format!("{}: {}", c.check, c.detail))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            details,
        });
    }
    let lines = view::lines_of(&mut tx, &[id]).await?.remove(&id).unwrap_or_default();
    // The lines must still be orderable (the set or the catalog may have changed since).
    let as_written: Vec<LineIn> = lines
        .iter()
        .map(|l| LineIn {
            ndc: l.ndc.clone(),
            funding: l.funding.clone(),
            doses: l.doses,
        })
        .collect();
    check_lines(&place.code, &as_written, &order.set, &profile, &program, &products)?;
    let suggestion = suggest::compute(&mut tx, &place, &profile, &program, &order.set, &products).await?;
    for l in &lines {
        let cvx_mvx = products
            .iter()
            .find(|p| p.ndc == l.ndc)
            .map(|p| (p.cvx.clone(), p.mvx.clone()));
        let suggested = suggestion
            .iter()
            .find(|s| s.funding == l.funding && Some((s.cvx.clone(), s.mvx.clone())) == cvx_mvx)
            .map(|s| s.suggested);
        sqlx::query("UPDATE order_lines SET suggested = $1 WHERE id = $2")
            .bind(suggested)
            .bind(l.id)
            .execute(&mut *tx)
            .await?;
    }
    let to = if program.local_approval {
        Status::PendingLocalApproval
    } else {
        Status::InReview
    };
    let actor = caller.actor();
    sqlx::query(
        "UPDATE orders SET urgent = $1, urgent_reason = $2, submitted_at = $3, returned_at = NULL WHERE id = $4",
    )
    .bind(body.urgent as i64)
    .bind(&urgent_reason)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let waived: Vec<&str> = ready
        .checks
        .iter()
        .filter(|c| c.waiver.is_some())
        .map(|c| c.check.as_str())
        .collect();
    let note = match (&urgent_reason, waived.is_empty()) {
        (Some(r), true) => Some(format!("urgent: {r}")),
        (Some(r), false) => Some(format!("urgent: {r}; waived: {}", waived.join(", "))),
        (None, false) => Some(format!("waived: {}", waived.join(", "))),
        (None, true) => None,
    };
    transition(&mut tx, &order, to, &actor, note.as_deref()).await?;
    // The submission uses every waiver in force (a waiver is good for the next submission),
    // and the location's stored status is what holds after it.
    let in_force: Vec<i64> = super::waivers::waivers_in_force(&mut tx, &place.code, now)
        .await?
        .into_iter()
        .map(|(_, w)| w.id)
        .collect();
    super::waivers::use_waivers(&mut tx, &in_force, id).await?;
    let after = readiness::compute(
        &mut tx,
        &place,
        &program.prerequisites,
        program.temperature_lookback_days,
        None,
    )
    .await?;
    readiness::store(&mut tx, &place.code, &after).await?;
    let mut entry = audit::Entry::new("order.submit", "order", [id])
        .at(Some(&order.pin), Some(&order.location))
        .changed("status", order.status.as_str(), to.as_str());
    if body.urgent {
        entry = entry.changed("urgent_reason", serde_json::Value::Null, urgent_reason.clone());
    }
    if !waived.is_empty() {
        entry = entry.changed("waived", serde_json::Value::Null, waived.clone());
    }
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    let mut conn = db.pool.acquire().await?;
    finish(&mut conn, db, caller, id).await
}

/// `POST /api/v1/orders/{id}/local-approve`: the provider of record lets the state see it.
pub async fn local_approve(db: &Db, caller: &Caller, id: i64) -> Result<Order> {
    let mut tx = db.begin().await?;
    let order = head(&mut tx, &caller.scope, id).await?;
    let may = caller
        .grants
        .iter()
        .any(|g| g.role == Role::ProviderOfRecord && g.scope.covers_code(&order.pin, &order.location));
    if !may {
        return Err(Error::refused(
            "scope",
            "the location's provider of record approves its orders before the state reviews them",
        ));
    }
    if order.status != Status::PendingLocalApproval {
        return Err(not_now(&order, "approved locally", &[Status::PendingLocalApproval]));
    }
    transition(
        &mut tx,
        &order,
        Status::InReview,
        &caller.actor(),
        Some("approved by the provider of record"),
    )
    .await?;
    let entry = audit::Entry::new("order.local_approve", "order", [id])
        .at(Some(&order.pin), Some(&order.location))
        .changed("status", order.status.as_str(), Status::InReview.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    let mut conn = db.pool.acquire().await?;
    finish(&mut conn, db, caller, id).await
}

/// The location of an order the caller sees, for routes that need it.
pub async fn place_of(db: &Db, caller: &Caller, id: i64) -> Result<Place> {
    let mut conn = db.pool.acquire().await?;
    let order = head(&mut conn, &caller.scope, id).await?;
    inventory::place(&mut conn, &caller.scope, &order.location).await
}
