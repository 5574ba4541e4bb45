//! `/orders`: the state's review queue (or a clinic's own orders across its places), urgent
//! first, requested against suggested with each location's stored prerequisites; the
//! distributor's export download and the shipment file upload (all or nothing: a bad file lists
//! every bad row and changes nothing).

use axum::extract::{Multipart, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::AppState;
use crate::accounts::Caller;
use crate::orders::view::{self, Filter};
use crate::orders::{exchange, export, Status};
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders", get(queue))
        .route("/orders/export", post(export_file))
        .route("/shipments", post(shipments))
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
