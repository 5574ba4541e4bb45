//! The ordering pages of a location and of the state.
//!
//! - `/locations/{code}/orders`: the prerequisites checklist (each failed check links to the
//!   page that fixes it), the suggestion with its inputs and editable quantities, submit (urgent
//!   with a reason) or keep as a draft, and the location's orders.
//! - `/orders`: the state's review queue, requested against suggested, with the distributor's
//!   export download and the shipment file upload.
//!
//! One order's page and its actions are in `order_page`.

use std::collections::HashMap;

use axum::extract::{Multipart, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
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
use crate::orders::view::{self, Filter};
use crate::orders::{exchange, export, suggest, waivers, Status};
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}/orders", get(location_orders).post(create))
        .route("/locations/{code}/no-doses-report", post(no_doses))
        .route("/orders", get(queue))
        .route("/orders/export", post(export_file))
        .route("/shipments", post(shipments))
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

#[derive(serde::Deserialize, Default)]
struct QueueQuery {
    status: Option<String>,
    urgent: Option<String>,
    notice: Option<String>,
}

/// The review queue: the state's, or a clinic's own orders across its places.
async fn queue(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<QueueQuery>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, "/orders").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    queue_page(&s, &caller, csrf, &q, None).await
}

async fn queue_page(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    q: &QueueQuery,
    report: Option<Value>,
) -> Response {
    let status = match q.status.as_deref() {
        None => Some(Status::InReview),
        Some("") | Some("any") => None,
        Some(raw) => match Status::parse(raw) {
            Some(st) => Some(st),
            None => return super::pages::not_found(),
        },
    };
    let f = Filter {
        status,
        pin: None,
        urgent: q.urgent.as_deref().map(|u| u == "on" || u == "true"),
        location: None,
    };
    let (orders, _) = match view::list(
        &s.db,
        &caller.scope,
        &f,
        Page {
            limit: 200,
            after: None,
        },
        false,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let codes: Vec<String> = orders.iter().map(|o| o.location.clone()).collect();
    let names = crate::registry::locations::names(&s.db, &codes)
        .await
        .unwrap_or_default();
    let mut rows: Vec<&view::Order> = orders.iter().collect();
    // Urgent first, then the oldest submission: the order the state works in.
    rows.sort_by_key(|o| (!o.urgent, o.submitted_at.clone(), o.id));
    let rows: Vec<Value> = rows
        .iter()
        .map(|o| {
            let over: i64 = o.lines.iter().filter_map(|l| l.requested_minus_suggested).sum();
            context! {
                id => o.id,
                location => o.location.clone(),
                place => names.get(&o.location).cloned(),
                status => o.status.as_str().replace('_', " "),
                urgent => o.urgent,
                urgent_reason => o.urgent_reason.clone(),
                submitted_at => o.submitted_at.as_deref().map(|t| t.get(..16).unwrap_or(t).replace('T', " ")),
                requested => o.lines.iter().map(|l| l.doses).sum::<i64>(),
                suggested => o.lines.iter().filter_map(|l| l.suggested).sum::<i64>(),
                over,
                ready => o.prerequisites.as_ref().map(|r| r.ready),
                last_order_at => o.last_order_at.as_deref().map(|t| t.get(..10).unwrap_or(t).to_string()),
            }
        })
        .collect();
    let notice = match q.notice.as_deref() {
        Some("nothing-to-export") => Some("No approved order is waiting to be sent."),
        _ => None,
    };
    super::pages::render(
        StatusCode::OK,
        "orders_queue.html",
        context! {
            title => if caller.is_state() { "Orders to review" } else { "Orders" },
            rows,
            status => status.map(|s| s.as_str()).unwrap_or("any"),
            statuses => Status::ALL.iter().map(|s| context! { value => s.as_str(), text => s.as_str().replace('_', " ") }).collect::<Vec<_>>(),
            urgent => f.urgent == Some(true),
            state => caller.is_state(),
            may_act => csrf.is_some() && caller.is_state() && !caller.read_only(),
            csrf_token => csrf,
            report,
            notice,
            wide => true,
        },
    )
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf_token: Option<String>,
}

/// The distributor's export file of every approved order not sent yet, as a download.
async fn export_file(State(s): State<AppState>, headers: HeaderMap, axum::Form(f): axum::Form<CsrfForm>) -> Response {
    let caller = match super::pages::form_writer(&s, &headers, f.csrf_token.as_deref(), "/orders").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !caller.is_state() {
        return super::pages::not_found();
    }
    match export::export(&s.db, &caller).await {
        Ok(b) if b.orders == 0 => Redirect::to("/orders?notice=nothing-to-export").into_response(),
        Ok(b) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::HeaderName::from_static("x-export-batch"), b.id.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"vfc-orders-{}.csv\"", b.id),
                ),
            ],
            b.csv,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The distributor's shipment file, uploaded from the queue page: imported whole or not at all;
/// the page lists every bad row by its line.
async fn shipments(State(s): State<AppState>, headers: HeaderMap, mut form: Multipart) -> Response {
    let mut csrf = None;
    let mut text = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let Ok(bytes) = field.bytes().await else {
                    return super::pages::message(
                        StatusCode::BAD_REQUEST,
                        "The file did not arrive whole",
                        &["Choose the file again and upload it."],
                        Some(("/orders", "Back to the orders")),
                    );
                };
                match name.as_str() {
                    "csrf_token" => csrf = Some(String::from_utf8_lossy(&bytes).to_string()),
                    "file" => text = Some(bytes),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => {
                return super::pages::message(
                    StatusCode::BAD_REQUEST,
                    "The upload could not be read",
                    &["Choose the shipment file (CSV) and upload it from the orders page."],
                    Some(("/orders", "Back to the orders")),
                )
            }
        }
    }
    let caller = match super::pages::form_writer(&s, &headers, csrf.as_deref(), "/orders").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !caller.is_state() {
        return super::pages::not_found();
    }
    let q = QueueQuery {
        status: Some("any".into()),
        ..Default::default()
    };
    let Some(Ok(text)) = text.as_deref().map(std::str::from_utf8) else {
        let report = context! { error => "Choose the shipment file: a CSV file in UTF-8." };
        return queue_page(&s, &caller, csrf, &q, Some(report)).await;
    };
    let report = match exchange::import_shipments(&s.db, &caller, text).await {
        Ok(done) => context! {
            imported => done.imported,
            already => done.already_imported,
            orders => done.orders.iter().map(|o| context! { id => o.id, status => o.status.as_str().replace('_', " ") }).collect::<Vec<_>>(),
        },
        Err(crate::error::Error::RefusedWith { message, details, .. }) => context! {
            error => message,
            bad_rows => details.get("bad_rows").map(|v| Value::from(minijinja::value::Serde(v))),
        },
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            context! { error => e.to_string() }
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    queue_page(&s, &caller, csrf, &q, Some(report)).await
}
