//! One order's page (`/orders/{id}`) and what is done to it from there: its lines (requested,
//! suggested, approved, shipped, received), its status timeline and tracking numbers; submit
//! (urgent with a reason) and cancel for the clinic; approve (reducing a line with a reason),
//! deny and return for the state, beside a chart of the doses given each month of each product
//! ordered; and the receive-shipment form for what arrived.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::extract::Id;
use super::AppState;
use crate::accounts::Caller;
use crate::orders::life::{self, Submit};
use crate::orders::receive::{self, Condition, Receive, ReceiveLine, SHORTFALL_REASONS};
use crate::orders::review::{self, Approve, Decision, LineDecision, Reason};
use crate::orders::view;
use crate::orders::Status;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders/{id}", get(page))
        .route("/orders/{id}/submit", post(submit))
        .route("/orders/{id}/approve", post(approve))
        .route("/orders/{id}/deny", post(deny))
        .route("/orders/{id}/return", post(give_back))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/receive", post(receive_form))
}

#[derive(serde::Deserialize, Default)]
struct Notice {
    notice: Option<String>,
}

fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "draft" => "Kept as a draft: submit it when it is ready.",
        "submitted" => "Submitted: the state VFC coordinator reviews it next.",
        "approved" => "Approved: it goes to the distributor with the next export.",
        "denied" => "Denied: the clinic's coordinators are told why.",
        "returned" => "Returned to the clinic to change and submit again.",
        "cancelled" => "Cancelled.",
        "received" => "Received: the doses are in the inventory.",
        _ => return None,
    })
}

async fn page(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(n): Query<Notice>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, &format!("/orders/{id}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    show(&s, &caller, csrf, id, n.notice.as_deref().and_then(notice_text), None).await
}

/// The order's page; `error` when a form of it was refused (the refusal's words, at the top).
pub async fn show(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    id: i64,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let o = match view::get(&s.db, caller, id).await {
        Ok(o) => o,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let location = match crate::registry::locations::get(&s.db, &caller.scope, &o.location).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = location.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
    let local = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    let writes = csrf.is_some() && !caller.read_only();
    let state = caller.is_state();
    // The chart of doses given per month, for the state's review.
    let chart = if state {
        let products: Vec<String> = o.lines.iter().filter_map(|l| l.product.clone()).collect();
        match crate::inventory::usage::monthly(&s.db, &o.location, &products, tz, 12).await {
            Ok((months, series)) => {
                let c = crate::charts::MonthlyChart {
                    alt: format!(
                        "Doses administered each month at {} over the last 12 months, for {}",
                        o.location,
                        series.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    months,
                    series: series.into_iter().collect(),
                };
                c.svg(900, 300).ok().map(|svg| (svg, c.alt))
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        None
    };
    let lines: Vec<Value> = o
        .lines
        .iter()
        .map(|l| {
            context! {
                id => l.id,
                ndc => l.ndc.clone(),
                product => l.product.clone().unwrap_or_else(|| l.ndc.clone()),
                funding => l.funding.to_uppercase(),
                doses => l.doses,
                suggested => l.suggested,
                over => l.requested_minus_suggested,
                approved => l.approved_doses,
                reduction_reason => l.reduction_reason.clone(),
                shipped => l.shipped_doses,
                backordered => l.backordered_doses,
                received => l.received_doses,
                closed => l.closed_at.is_some(),
            }
        })
        .collect();
    let shipments: Vec<Value> = o
        .shipments
        .iter()
        .flatten()
        .map(|sh| {
            let product = o
                .lines
                .iter()
                .find(|l| l.id == sh.order_line_id)
                .and_then(|l| l.product.clone())
                .unwrap_or_else(|| sh.ndc.clone());
            context! {
                id => sh.id,
                product,
                ndc => sh.ndc.clone(),
                lot => sh.lot.clone(),
                expires_on => sh.expires_on.clone(),
                doses => sh.doses,
                backordered => sh.backordered_doses,
                carrier => sh.carrier.clone(),
                tracking => sh.tracking_number.clone(),
                ship_date => sh.ship_date.clone(),
                direct_ship => sh.direct_ship,
                received => sh.received.as_ref().map(|r| context! {
                    doses => r.doses_received,
                    condition => r.condition.replace('_', " "),
                    by => super::pages::person(&r.received_by),
                    at => local(&r.received_at),
                }),
            }
        })
        .collect();
    let history: Vec<Value> = o
        .history
        .iter()
        .flatten()
        .map(|h| {
            context! {
                status => h.status.replace('_', " "),
                actor => super::pages::person(&h.actor),
                at => local(&h.at),
                note => h.note.clone(),
            }
        })
        .collect();
    let units: Vec<Value> = if o.shipments.iter().flatten().any(|sh| sh.received.is_none()) {
        match crate::registry::units::list(&s.db, &caller.scope, &o.location).await {
            Ok(us) => us
                .iter()
                .map(|u| context! { id => u.id, name => u.name.clone() })
                .collect(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        Vec::new()
    };
    let may_receive = writes
        && !state
        && o.shipments
            .iter()
            .flatten()
            .any(|sh| sh.received.is_none() && sh.doses > 0);
    super::pages::render(
        if error.is_some() {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        },
        "order.html",
        context! {
            title => format!("Order {id}"),
            o => Value::from(minijinja::value::Serde(&o)),
            status_text => o.status.as_str().replace('_', " "),
            place => location.name.clone(),
            created_by => super::pages::person(&o.created_by),
            created_at => local(&o.created_at),
            submitted_at => o.submitted_at.as_deref().map(local),
            lines,
            shipments,
            history,
            checks => o.prerequisites.as_ref().map(|r| r.checks.iter().map(|c| context! {
                name => c.check.replace('_', " "), ok => c.ok, waived => c.waiver.is_some(), detail => c.detail.clone(),
            }).collect::<Vec<_>>()),
            chart => chart.as_ref().map(|(svg, _)| Value::from_safe_string(svg.clone())),
            chart_alt => chart.map(|(_, alt)| alt),
            may_submit => writes && !state && matches!(o.status, Status::Draft | Status::Returned),
            may_cancel => writes && matches!(o.status, Status::Draft | Status::Returned | Status::PendingLocalApproval | Status::InReview),
            may_review => writes && state && o.status == Status::InReview,
            may_receive,
            units,
            conditions => [("ok", "as expected"), ("too_warm", "too warm"), ("too_cold", "too cold"), ("damaged", "damaged")]
                .iter().map(|&(v, t)| context! { value => v, text => t }).collect::<Vec<_>>(),
            shortfalls => SHORTFALL_REASONS.iter().map(|&(v, t)| context! { value => v, text => t }).collect::<Vec<_>>(),
            csrf_token => csrf,
            notice,
            error,
            wide => true,
        },
    )
}

/// Who sends an order's form, and the order's page to come back to with the refusal's words.
async fn writer(s: &AppState, headers: &HeaderMap, f: &HashMap<String, String>, id: i64) -> Result<Caller, Response> {
    super::pages::form_writer(
        s,
        headers,
        f.get("csrf_token").map(String::as_str),
        &format!("/orders/{id}"),
    )
    .await
}

/// Back to the order's page with why a form of it was not done.
async fn refused(
    s: &AppState,
    caller: &Caller,
    f: &HashMap<String, String>,
    id: i64,
    why: impl Into<String>,
) -> Response {
    show(s, caller, f.get("csrf_token").cloned(), id, None, Some(why.into())).await
}

/// After a form: to the order with a notice, or back to its page with why not.
async fn done<T>(
    s: &AppState,
    caller: &Caller,
    f: &HashMap<String, String>,
    id: i64,
    r: crate::error::Result<T>,
    notice: &str,
) -> Response {
    match r {
        Ok(_) => Redirect::to(&format!("/orders/{id}?notice={notice}")).into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(
            e @ (crate::error::Error::Invalid(_)
            | crate::error::Error::Conflict(_)
            | crate::error::Error::Forbidden(_)
            | crate::error::Error::Refused { .. }
            | crate::error::Error::RefusedWith { .. }),
        ) => refused(s, caller, f, id, e.to_string()).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn text(f: &HashMap<String, String>, k: &str) -> Option<String> {
    f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

type Form = axum::Form<HashMap<String, String>>;

async fn submit(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let urgent = f.get("urgent").is_some_and(|v| v == "on" || v == "true");
    let urgent_reason = text(&f, "urgent_reason");
    if urgent && urgent_reason.is_none() {
        return refused(&s, &caller, &f, id, "Say why the order is urgent.").await;
    }
    let r = life::submit(&s.db, &caller, id, &Submit { urgent, urgent_reason }).await;
    done(&s, &caller, &f, id, r, "submitted").await
}

/// Approves with each line's quantity (`doses_{line}`); a reduced line needs its reason
/// (`reason_{line}`).
async fn approve(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut lines = Vec::new();
    for (k, v) in &f {
        let Some(line) = k.strip_prefix("doses_").and_then(|l| l.parse::<i64>().ok()) else {
            continue;
        };
        let Ok(doses) = v.trim().parse::<i64>() else {
            return refused(
                &s,
                &caller,
                &f,
                id,
                format!("Line {line}: doses are a whole number (not {v:?})."),
            )
            .await;
        };
        lines.push(LineDecision {
            id: line,
            doses,
            reason: text(&f, &format!("reason_{line}")),
        });
    }
    lines.sort_by_key(|l| l.id);
    let r = review::approve(
        &s.db,
        &caller,
        id,
        &Approve {
            lines,
            note: text(&f, "note"),
        },
    )
    .await;
    done(&s, &caller, &f, id, r, "approved").await
}

async fn decide(s: AppState, headers: HeaderMap, id: i64, f: HashMap<String, String>, d: Decision) -> Response {
    let caller = match writer(&s, &headers, &f, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if d != Decision::Cancel && !caller.is_state() {
        return super::pages::not_found();
    }
    let r = review::decide(
        &s.db,
        &caller,
        id,
        d,
        &Reason {
            reason: text(&f, "reason").unwrap_or_default(),
        },
    )
    .await;
    let notice = match d {
        Decision::Deny => "denied",
        Decision::Return => "returned",
        Decision::Cancel => "cancelled",
    };
    done(&s, &caller, &f, id, r, notice).await
}

async fn deny(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    decide(s, headers, id, f, Decision::Deny).await
}

async fn give_back(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    decide(s, headers, id, f, Decision::Return).await
}

async fn cancel(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    decide(s, headers, id, f, Decision::Cancel).await
}

/// What arrived, per shipment line: `received_{line}` doses, `lot_{line}`, `expires_{line}`,
/// `condition_{line}` and, when fewer arrived than shipped, `shortfall_{line}`.
async fn receive_form(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut lines = Vec::new();
    for (k, v) in &f {
        let Some(line) = k.strip_prefix("received_").and_then(|l| l.parse::<i64>().ok()) else {
            continue;
        };
        if v.trim().is_empty() {
            continue; // not arrived yet: received later
        }
        let Ok(doses) = v.trim().parse::<i64>() else {
            return refused(
                &s,
                &caller,
                &f,
                id,
                format!("Doses received are a whole number (not {v:?})."),
            )
            .await;
        };
        let condition = match f.get(&format!("condition_{line}")).map(String::as_str) {
            Some("too_warm") => Condition::TooWarm,
            Some("too_cold") => Condition::TooCold,
            Some("damaged") => Condition::Damaged,
            _ => Condition::Ok,
        };
        lines.push(ReceiveLine {
            shipment_line_id: line,
            unit_id: text(&f, &format!("unit_{line}")).and_then(|u| u.parse().ok()),
            doses_received: doses,
            lot: text(&f, &format!("lot_{line}")),
            expires_on: text(&f, &format!("expires_{line}")),
            condition,
            shortfall_reason: text(&f, &format!("shortfall_{line}")),
        });
    }
    if lines.is_empty() {
        return refused(
            &s,
            &caller,
            &f,
            id,
            "Fill in the doses that arrived for at least one box.",
        )
        .await;
    }
    lines.sort_by_key(|l| l.shipment_line_id);
    let r = receive::receive(
        &s.db,
        &caller,
        id,
        &Receive {
            lines,
            note: text(&f, "note"),
        },
    )
    .await;
    done(&s, &caller, &f, id, r, "received").await
}
