//! Transfers as a page (`/locations/{code}/transfers`): doses of a lot to another unit here or
//! another location (another PIN waits for the state's approval), and the recent transfers
//! with their status.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::context;

use super::error::ApiError;
use super::extract::Id;
use super::forms::{
    doses_in, local, place_and_viewer, stock_choices, stock_in, writer_at, zone, ListQuery, Posted, Sent,
};
use super::AppState;
use crate::accounts::Caller;
use crate::inventory::stock;
use crate::inventory::transfers::{self, NewTransfer, TransferLine};
use crate::registry::locations::Location;

pub fn router() -> Router<AppState> {
    Router::new().route("/locations/{code}/transfers", get(transfer_page).post(transfer))
}

async fn transfer_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(d): Query<ListQuery>,
) -> Response {
    let path = format!("/locations/{code}/transfers");
    match place_and_viewer(&s, &headers, &code, &path).await {
        Ok((caller, csrf, place)) => {
            let notice = match d.done.as_deref() {
                Some("completed") => Some("The doses moved."),
                Some("pending") => Some("The transfer waits for the state's approval; the doses move then."),
                _ => None,
            };
            transfer_form(&s, &caller, csrf, &place, notice, Sent::default()).await
        }
        Err(r) => r,
    }
}

async fn transfer_form(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    place: &Location,
    notice: Option<&str>,
    sent: Sent,
) -> Response {
    let (lines, units, recent) = match (
        stock::of_location(&s.db, caller, &place.code, None, false).await,
        crate::registry::units::list(&s.db, &caller.scope, &place.code).await,
        transfers::list_transfers(&s.db, caller, &place.code, crate::store::Page::first()).await,
    ) {
        (Ok(l), Ok(u), Ok((t, _))) => (l, u, t),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return ApiError::from(e).into_response(),
    };
    let lot_names: HashMap<i64, String> = lines
        .iter()
        .map(|l| (l.lot_id, format!("{} lot {}", l.product, l.lot)))
        .collect();
    super::pages::render(
        sent.status(),
        "transfer.html",
        context! {
            title => format!("Transfer doses from {} ({})", place.name, place.code),
            code => place.code.clone(),
            here => "transfers",
            // Only stock that may travel: not on hold, not expired.
            stock => stock_choices(lines.iter().filter(|l| l.status == "usable" || l.status == "expiring")),
            units => units.iter().map(|u| context! { id => u.id, name => u.name.clone() }).collect::<Vec<_>>(),
            transfers => recent.iter().map(|t| context! {
                id => t.id,
                to => t.to_location.clone(),
                from => t.from_location.clone(),
                status => t.status.clone(),
                reason => t.reason.clone(),
                at => local(&t.requested_at, zone(place)),
                by => super::pages::person(&t.requested_by),
                lines => t.lines.iter().map(|l| format!(
                    "{} × {}",
                    l.doses,
                    lot_names.get(&l.lot_id).cloned().unwrap_or_else(|| format!("lot {}", l.lot_id))
                )).collect::<Vec<_>>(),
            }).collect::<Vec<_>>(),
            notice,
            form => sent.form(),
            field => sent.field.clone(),
            error => sent.error.clone(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
        },
    )
}

async fn transfer(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/locations/{code}/transfers");
    let Posted {
        caller,
        place,
        csrf,
        sent,
    } = match writer_at(&s, &headers, &f, &code, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = (|| {
        let (unit_id, lot_id) =
            stock_in(&sent, "stock").ok_or((Some("stock"), "Choose the lot to move.".to_string()))?;
        let doses = doses_in(&sent, "doses").map_err(|e| (Some("doses"), e))?;
        let to_location = match sent.text("to_location") {
            None => None,
            Some(v) => Some(
                crate::domain::LocationCode::parse(&v)
                    .map_err(|_| {
                        (
                            Some("to_location"),
                            "A location code is the PIN and its suffix, such as 012345B.".to_string(),
                        )
                    })?
                    .to_string(),
            ),
        };
        let to_unit_id = sent.text("to_unit_id").and_then(|v| v.parse().ok());
        if to_location.as_deref().is_none_or(|l| l == place.code) && to_unit_id.is_none_or(|u| u == unit_id) {
            return Err((
                Some("to_unit_id"),
                "Choose another unit here, or give another location's code.".to_string(),
            ));
        }
        let reason = sent
            .text("reason")
            .ok_or((Some("reason"), "Say why the doses move.".to_string()))?;
        Ok::<_, (Option<&str>, String)>(NewTransfer {
            from_unit_id: unit_id,
            // A unit of this location is only the receiving unit when the doses stay here.
            to_unit_id: if to_location.as_deref().is_none_or(|l| l == place.code) {
                to_unit_id
            } else {
                None
            },
            to_location,
            lines: vec![TransferLine { lot_id, doses }],
            reason,
            transferred_at: None,
        })
    })();
    let body = match body {
        Ok(b) => b,
        Err((field, error)) => return transfer_form(&s, &caller, csrf, &place, None, sent.refused(field, error)).await,
    };
    match transfers::transfer(&s.db, &caller, &code, &body).await {
        Ok(t) => Redirect::to(&format!("/locations/{code}/transfers?done={}", t.status)).into_response(),
        Err(
            e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_) | crate::error::Error::NotFound(_)),
        ) => {
            let sent = sent.refused_by_service(&e);
            transfer_form(&s, &caller, csrf, &place, None, sent).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
