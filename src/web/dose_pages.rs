//! Doses administered that need a person, as pages beside the inventory: the queue of doses that
//! matched no stock, each resolved to the lot it came from or dismissed with a reason, and the
//! borrowing records (doses given from the other funding's stock), each completed with its
//! reason for the borrowing report.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::extract::Id;
use super::forms::{
    local, page_after, place_and_viewer, stock_choices, stock_in, writer_at, zone, ListQuery, Posted, RowForms, Sent,
};
use super::AppState;
use crate::accounts::audit::Who;
use crate::accounts::Caller;
use crate::inventory::doses::review::{self, BorrowingReason, BORROWING_REASONS};
use crate::inventory::doses::{self, Resolution};
use crate::inventory::stock;
use crate::registry::locations::Location;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}/decrement-exceptions", get(exceptions))
        .route("/decrement-exceptions/{id}/resolve", post(resolve))
        .route("/locations/{code}/borrowing", get(borrowing))
        .route("/borrowing/{id}", post(complete))
}

async fn exceptions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let path = format!("/locations/{code}/decrement-exceptions");
    match place_and_viewer(&s, &headers, &code, &path).await {
        Ok((caller, csrf, place)) => {
            let notice = q.done.is_some().then_some("The dose is resolved.");
            exception_queue(&s, &caller, csrf, &place, q.after, notice, None).await
        }
        Err(r) => r,
    }
}

/// The open queue, oldest first; `refused` is an exception's form sent back with its error.
async fn exception_queue(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    place: &Location,
    after: Option<i64>,
    notice: Option<&str>,
    refused: Option<(i64, Sent)>,
) -> Response {
    let (queue, lines) = match (
        doses::exceptions_at(&s.db, &caller.scope, &place.code, false, page_after(after)).await,
        stock::of_location(&s.db, caller, &place.code, None, false).await,
    ) {
        (Ok(q), Ok(l)) => (q, l),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let (queue, next) = queue;
    let tz = zone(place);
    let forms = RowForms::new(refused);
    let rows: Vec<Value> = queue
        .iter()
        .map(|x| {
            let sent = forms.of(x.id);
            context! {
                id => x.id,
                why => x.reason.clone(),
                lot => x.lot.clone(),
                cvx => x.cvx.clone(),
                ndc => x.ndc.clone(),
                patient => x.patient_id.clone(),
                at => local(&x.administered_at, tz),
                // The lots of the dose's vaccine (all lots when none is of it: the EHR may have
                // sent the wrong code).
                choices => {
                    let same: Vec<&stock::StockLine> = lines.iter().filter(|l| x.cvx.as_deref() == Some(l.cvx.as_str())).collect();
                    if same.is_empty() { stock_choices(&lines) } else { stock_choices(same) }
                },
                form => sent.form(),
                field => sent.field.clone(),
                error => sent.error.clone(),
            }
        })
        .collect();
    super::pages::render(
        forms.status(),
        "exceptions.html",
        context! {
            title => format!("Unmatched doses at {} ({})", place.name, place.code),
            code => place.code.clone(),
            here => "decrement-exceptions",
            rows,
            next,
            notice,
            error => forms.error(),
            timezone => tz.name(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
        },
    )
}

async fn resolve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let code = f.get("code").cloned().unwrap_or_default();
    let back = format!("/locations/{code}/decrement-exceptions");
    let Posted {
        caller,
        place,
        csrf,
        sent,
    } = match writer_at(&s, &headers, &f, &code, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = match (stock_in(&sent, "stock"), sent.text("dismiss")) {
        (Some(_), Some(_)) | (None, None) => {
            let sent = sent.refused(
                Some("stock"),
                "Choose the lot the dose came from, or say why it is dismissed — one of the two.",
            );
            return exception_queue(&s, &caller, csrf, &place, None, None, Some((id, sent))).await;
        }
        (Some((unit_id, lot_id)), None) => Resolution {
            lot_id: Some(lot_id),
            unit_id: Some(unit_id),
            dismiss: None,
        },
        (None, Some(why)) => Resolution {
            lot_id: None,
            unit_id: None,
            dismiss: Some(why),
        },
    };
    match doses::resolve_now(&s.db, &caller.scope, id, &body, &Who::of(&caller)).await {
        Ok(x) if x.location == place.code => {
            Redirect::to(&format!("/locations/{code}/decrement-exceptions?done=1")).into_response()
        }
        Ok(x) => Redirect::to(&format!("/locations/{}/decrement-exceptions?done=1", x.location)).into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            let sent = sent.refused(Some("stock"), e.to_string());
            exception_queue(&s, &caller, csrf, &place, None, None, Some((id, sent))).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn borrowing(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let path = format!("/locations/{code}/borrowing");
    match place_and_viewer(&s, &headers, &code, &path).await {
        Ok((caller, csrf, place)) => {
            let notice = q.done.is_some().then_some("The reason is recorded.");
            borrowing_list(&s, &caller, csrf, &place, q.after, notice, None).await
        }
        Err(r) => r,
    }
}

/// Words for a borrowing reason code.
fn reason_words(code: &str) -> &'static str {
    match code {
        "private_order_delayed" => "the private order was delayed",
        "private_stock_nonviable_on_arrival" => "private stock arrived not viable",
        "vfc_order_delayed" => "the VFC order was delayed",
        "vfc_stock_nonviable_on_arrival" => "VFC stock arrived not viable",
        _ => "other (say what happened)",
    }
}

async fn borrowing_list(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    place: &Location,
    after: Option<i64>,
    notice: Option<&str>,
    refused: Option<(i64, Sent)>,
) -> Response {
    let (list, next) = match review::borrowing(&s.db, caller, &place.code, page_after(after)).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = zone(place);
    let forms = RowForms::new(refused);
    let rows: Vec<Value> = list
        .iter()
        .map(|b| {
            let sent = forms.of(b.id);
            context! {
                id => b.id,
                lot => b.lot.clone(),
                ndc => b.ndc.clone(),
                patient => b.patient_id.clone(),
                at => local(&b.administered_at, tz),
                eligibility => b.eligibility.clone(),
                stock_funding => b.stock_funding.to_uppercase(),
                reason => b.reason.as_deref().map(reason_words),
                note => b.note.clone(),
                reason_by => b.reason_by.as_deref().map(super::pages::person),
                form => sent.form(),
                field => sent.field.clone(),
                error => sent.error.clone(),
            }
        })
        .collect();
    super::pages::render(
        forms.status(),
        "borrowing.html",
        context! {
            title => format!("Borrowing at {} ({})", place.name, place.code),
            code => place.code.clone(),
            here => "borrowing",
            rows,
            reasons => BORROWING_REASONS.iter().map(|r| context! { code => *r, words => reason_words(r) }).collect::<Vec<_>>(),
            next,
            notice,
            error => forms.error(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
        },
    )
}

async fn complete(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let code = f.get("code").cloned().unwrap_or_default();
    let back = format!("/locations/{code}/borrowing");
    let Posted {
        caller,
        place,
        csrf,
        sent,
    } = match writer_at(&s, &headers, &f, &code, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = BorrowingReason {
        reason: sent.text("reason").unwrap_or_default(),
        note: sent.text("note"),
    };
    if body.reason.is_empty() {
        let sent = sent.refused(Some("reason"), "Choose why stock of the other funding was used.");
        return borrowing_list(&s, &caller, csrf, &place, None, None, Some((id, sent))).await;
    }
    match review::complete(&s.db, &caller, id, &body).await {
        Ok(b) => Redirect::to(&format!("/locations/{}/borrowing?done=1", b.location)).into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            let sent = sent.refused_by_service(&e);
            borrowing_list(&s, &caller, csrf, &place, None, None, Some((id, sent))).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
