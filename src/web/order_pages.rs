//! The ordering pages of a location and of the state.
//!
//! - `/locations/{code}/orders`: the prerequisites checklist (each failed check links to the
//!   page that fixes it), the suggestion with its inputs and editable quantities, submit (urgent
//!   with a reason) or keep as a draft, and the location's orders.
//!
//! The state's queue is in `queue_pages`; one order's page and its actions in `order_page`.

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
use crate::orders::life::{self, Draft, LineIn, Submit};
use crate::orders::readiness::{self, Check};
use crate::orders::view;
use crate::orders::{suggest, waivers};
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}/orders", get(location_orders).post(create))
        .route("/locations/{code}/no-doses-report", post(no_doses))
}

/// Where a failed prerequisite is fixed.
fn fix_of(c: &Check, code: &str) -> (String, &'static str) {
    match c.check.as_str() {
        "reconciliation" => (format!("/locations/{code}/inventory"), "Count the stock"),
        "doses_reported" => ("#no-doses".to_string(), "Report that no doses were given"),
        "temperature_records" => (format!("/locations/{code}"), "Open the units' daily logs"),
        "unreviewed_excursions" => (format!("/locations/{code}"), "Review the excursions"),
        "calibration_current" => (format!("/locations/{code}"), "See the loggers"),
        "decrement_exceptions" => (format!("/locations/{code}/inventory"), "Resolve the queued doses"),
        _ => (format!("/locations/{code}"), "Open the location"),
    }
}

fn check_view(c: &Check, code: &str) -> Value {
    let (href, fix) = fix_of(c, code);
    // The detail names what to fix: an excursion by its number links to it directly.
    let excursion = c
        .detail
        .split("excursion ")
        .nth(1)
        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse::<i64>().ok());
    let href = match (c.check.as_str(), excursion) {
        ("unreviewed_excursions", Some(id)) => format!("/excursions/{id}#worksheet"),
        _ => href,
    };
    context! {
        name => c.check.replace('_', " "),
        ok => c.ok,
        waived => c.waiver.is_some(),
        detail => c.detail.clone(),
        href,
        fix,
    }
}

#[derive(serde::Deserialize, Default)]
struct LocationQuery {
    set: Option<String>,
    notice: Option<String>,
}

async fn location_orders(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(q): Query<LocationQuery>,
) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, &format!("/locations/{code}/orders")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notice = match q.notice.as_deref() {
        Some("no-doses") => Some("Recorded: no doses were given here since that day."),
        _ => None,
    };
    show_location(&s, &caller, csrf, &code, q.set.as_deref(), notice, None).await
}

/// A form sent back with a mistake: what was typed, and the error by its field.
struct Returned {
    values: HashMap<String, String>,
    field: Option<String>,
    error: String,
}

async fn show_location(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    code: &str,
    set: Option<&str>,
    notice: Option<&str>,
    returned: Option<Returned>,
) -> Response {
    let location = match crate::registry::locations::get(&s.db, &caller.scope, code).await {
        Ok(l) => l,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let code = location.code.clone();
    let ready = match readiness::of_location(&s.db, caller, &code).await {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let suggestion = match suggest::of_location(&s.db, caller, &code, set).await {
        Ok(x) => x,
        Err(e @ crate::error::Error::Invalid(_)) => {
            return super::pages::message(
                StatusCode::BAD_REQUEST,
                "No such order set",
                &[e.to_string().as_str()],
                Some((&format!("/locations/{code}/orders"), "The routine set")),
            )
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (orders, _) = match view::of_location(&s.db, caller, &code, Page { limit: 50, after: None }).await {
        Ok(o) => o,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (values, field, error, status) = match returned {
        Some(r) => (r.values, r.field, Some(r.error), StatusCode::UNPROCESSABLE_ENTITY),
        None => (HashMap::new(), None, None, StatusCode::OK),
    };
    let lines: Vec<Value> = suggestion
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            context! {
                i,
                ndc => l.ndc.clone(),
                product => l.product.clone(),
                funding => l.funding.clone(),
                package => l.package,
                monthly_use => format!("{:.1}", l.monthly_use),
                months => l.months,
                max_stock => l.max_stock,
                usable_on_hand => l.usable_on_hand,
                on_order => l.on_order,
                suggested => l.suggested,
                flags => l.flags.iter().map(|f| f.replace('_', " ")).collect::<Vec<_>>(),
                doses => values.get(&format!("doses_{i}")).cloned().unwrap_or_else(|| l.suggested.to_string()),
            }
        })
        .collect();
    let orders: Vec<Value> = orders
        .iter()
        .map(|o| {
            context! {
                id => o.id,
                status => o.status.as_str().replace('_', " "),
                set => o.set.clone(),
                urgent => o.urgent,
                created_at => o.created_at.get(..10).unwrap_or(&o.created_at).to_string(),
                submitted_at => o.submitted_at.as_deref().map(|t| t.get(..10).unwrap_or(t).to_string()),
                doses => o.lines.iter().map(|l| l.doses).sum::<i64>(),
            }
        })
        .collect();
    let today = chrono::Utc::now()
        .with_timezone(&location.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC))
        .date_naive();
    super::pages::render(
        status,
        "location_orders.html",
        context! {
            title => format!("Orders of {} ({})", location.name, code),
            code => code.clone(),
            ready => ready.ready,
            checks => ready.checks.iter().map(|c| check_view(c, &code)).collect::<Vec<_>>(),
            doses_check_failed => ready.checks.iter().any(|c| c.check == "doses_reported" && !c.ok),
            set => suggestion.set.clone(),
            lines,
            orders,
            form => Value::from(minijinja::value::Serde(&values)),
            field,
            error,
            notice,
            today => today.to_string(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
            wide => true,
        },
    )
}

/// The suggestion form's lines (`ndc_{i}`, `funding_{i}`, `doses_{i}`) with a dose or more.
fn lines_of(f: &HashMap<String, String>) -> Result<Vec<LineIn>, (String, String)> {
    let mut out = Vec::new();
    for i in 0.. {
        let Some(ndc) = f.get(&format!("ndc_{i}")) else {
            break;
        };
        let field = format!("doses_{i}");
        let raw = f.get(&field).map(|v| v.trim()).unwrap_or("");
        let doses = if raw.is_empty() {
            0
        } else {
            match raw.parse::<i64>() {
                Ok(d) if d >= 0 => d,
                _ => return Err((field, format!("Doses are a whole number, 0 or more (not {raw:?})."))),
            }
        };
        if doses > 0 {
            out.push(LineIn {
                ndc: ndc.clone(),
                funding: f.get(&format!("funding_{i}")).cloned().unwrap_or_default(),
                doses,
            });
        }
    }
    Ok(out)
}

/// Creates the order from the suggestion form, as a draft or submitted at once.
async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/locations/{code}/orders");
    let caller = match super::pages::form_writer(&s, &headers, f.get("csrf_token").map(String::as_str), &back).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let csrf = f.get("csrf_token").cloned();
    let set = f.get("set").cloned().filter(|v| !v.is_empty());
    let returned = |field: Option<String>, error: String| Returned {
        values: f
            .iter()
            .filter(|(k, _)| *k != "csrf_token")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        field,
        error,
    };
    let lines = match lines_of(&f) {
        Ok(l) if l.is_empty() => {
            let r = returned(None, "Order at least one dose: every quantity is 0.".into());
            return show_location(&s, &caller, csrf, &code, set.as_deref(), None, Some(r)).await;
        }
        Ok(l) => l,
        Err((field, e)) => {
            let r = returned(Some(field), e);
            return show_location(&s, &caller, csrf, &code, set.as_deref(), None, Some(r)).await;
        }
    };
    let submit = f.get("action").map(String::as_str) == Some("submit");
    let urgent = f.get("urgent").is_some_and(|v| v == "on" || v == "true");
    let urgent_reason = f
        .get("urgent_reason")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    if submit && urgent && urgent_reason.is_none() {
        let r = returned(Some("urgent_reason".into()), "Say why the order is urgent.".into());
        return show_location(&s, &caller, csrf, &code, set.as_deref(), None, Some(r)).await;
    }
    let draft = Draft {
        set,
        lines,
        note: f.get("note").map(|v| v.trim().to_string()).filter(|v| !v.is_empty()),
    };
    let order = match life::create(&s.db, &caller, &code, &draft).await {
        Ok(o) => o,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => {
            let r = returned(None, e.to_string());
            return show_location(&s, &caller, csrf, &code, draft.set.as_deref(), None, Some(r)).await;
        }
    };
    if !submit {
        return Redirect::to(&format!("/orders/{}?notice=draft", order.id)).into_response();
    }
    match life::submit(&s.db, &caller, order.id, &Submit { urgent, urgent_reason }).await {
        Ok(_) => Redirect::to(&format!("/orders/{}?notice=submitted", order.id)).into_response(),
        // The draft is kept: its page says why it was not submitted, and submits it later.
        Err(e) => super::order_page::show(&s, &caller, csrf, order.id, None, Some(e.to_string())).await,
    }
}

#[derive(serde::Deserialize)]
struct NoDosesForm {
    csrf_token: Option<String>,
    since: String,
}

async fn no_doses(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<NoDosesForm>,
) -> Response {
    let back = format!("/locations/{code}/orders");
    let caller = match super::pages::form_writer(&s, &headers, f.csrf_token.as_deref(), &back).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match waivers::report_no_doses(&s.db, &caller, &code, &waivers::NoDoses { since: f.since.clone() }).await {
        Ok(_) => Redirect::to(&format!("{back}?notice=no-doses")).into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e) => {
            let mut values = HashMap::new();
            values.insert("since".to_string(), f.since);
            let r = Returned {
                values,
                field: Some("since".into()),
                error: e.to_string(),
            };
            show_location(&s, &caller, f.csrf_token, &code, None, None, Some(r)).await
        }
    }
}
