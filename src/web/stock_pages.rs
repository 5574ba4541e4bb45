//! The forms that change a location's stock by hand, beside its inventory page: a receipt (the
//! product found by typing part of its name or NDC) and wastage and returns with the VFC reason
//! codes (docs/domain.md, "Inventory"). Their paths are the API's without `/api/v1`: the page is
//! the GET, the form posts to the same path. A form with a mistake comes back with the person's
//! input kept and the error by its field; a recorded one leads to the lot's ledger.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::context;

use super::error::ApiError;
use super::extract::Id;
use super::forms::{doses_in, place_and_viewer, product_for, stock_choices, stock_in, writer_at, Posted, Sent};
use super::AppState;
use crate::accounts::Caller;
use crate::domain::Funding;
use crate::inventory::catalog;
use crate::inventory::ledger::Kind;
use crate::inventory::movements::{self, Receipt, ReceiptLine, Removal, REASONS};
use crate::inventory::stock;
use crate::registry::locations::Location;

/// Reasons that cannot be a return, which sends back unopened doses (docs/domain.md): lost,
/// broken, drawn up, an opened multi-dose vial.
const OPENED_OR_GONE: [&str; 4] = ["11", "12A", "12B", "MDV"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}/receipts", get(receipt_page).post(receive))
        .route("/locations/{code}/wastage", get(wastage_page).post(waste))
        .route("/locations/{code}/returns", get(return_page).post(give_back))
}

async fn receipt_page(State(s): State<AppState>, headers: HeaderMap, Id(code): Id<String>) -> Response {
    let path = format!("/locations/{code}/receipts");
    match place_and_viewer(&s, &headers, &code, &path).await {
        Ok((caller, csrf, place)) => receipt_form(&s, &caller, csrf, &place, Sent::default()).await,
        Err(r) => r,
    }
}

async fn receipt_form(s: &AppState, caller: &Caller, csrf: Option<String>, place: &Location, sent: Sent) -> Response {
    let (units, products) = match (
        crate::registry::units::list(&s.db, &caller.scope, &place.code).await,
        catalog::list(&s.db).await,
    ) {
        (Ok(u), Ok(p)) => (u, p),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    super::pages::render(
        sent.status(),
        "receipt.html",
        context! {
            title => format!("Receive stock at {} ({})", place.name, place.code),
            code => place.code.clone(),
            here => "receipts",
            units => units.iter().map(|u| context! { id => u.id, name => u.name.clone() }).collect::<Vec<_>>(),
            products => products.iter().map(|p| format!("{} · {}", p.ndc, p.name)).collect::<Vec<_>>(),
            form => sent.form(),
            field => sent.field.clone(),
            error => sent.error.clone(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
        },
    )
}

async fn receive(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/locations/{code}/receipts");
    let Posted {
        caller,
        place,
        csrf,
        sent,
    } = match writer_at(&s, &headers, &f, &code, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let products = match catalog::list(&s.db).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let body = (|| {
        let unit_id = sent
            .text("unit_id")
            .and_then(|v| v.parse().ok())
            .ok_or((Some("unit_id"), "Choose the unit the stock went into.".to_string()))?;
        let product =
            product_for(&products, &sent.text("product").unwrap_or_default()).map_err(|e| (Some("product"), e))?;
        let lot = sent
            .text("lot")
            .ok_or((Some("lot"), "Type the lot number from the box.".to_string()))?;
        let expires_on = sent
            .text("expires_on")
            .ok_or((Some("expires_on"), "Give the expiry date from the box.".to_string()))?;
        let funding = sent.text("funding").and_then(|v| Funding::parse(&v).ok()).ok_or((
            Some("funding"),
            "Choose whose stock it is: VFC, state or private.".to_string(),
        ))?;
        let doses = doses_in(&sent, "doses").map_err(|e| (Some("doses"), e))?;
        Ok::<_, (Option<&str>, String)>(Receipt {
            unit_id,
            lines: vec![ReceiptLine {
                ndc: product.ndc.clone(),
                lot,
                expires_on,
                funding,
                doses,
            }],
            received_at: None,
            reference: sent.text("reference"),
        })
    })();
    let body = match body {
        Ok(b) => b,
        Err((field, error)) => return receipt_form(&s, &caller, csrf, &place, sent.refused(field, error)).await,
    };
    match movements::receive(&s.db, &caller, &code, &body).await {
        Ok(m) => match m.events.first() {
            Some(l) => Redirect::to(&format!(
                "/locations/{code}/inventory?lot={}&done=received#ledger",
                l.lot_id
            ))
            .into_response(),
            None => Redirect::to(&format!("/locations/{code}/inventory")).into_response(),
        },
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            let sent = sent.refused_by_service(&e);
            receipt_form(&s, &caller, csrf, &place, sent).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn wastage_page(State(s): State<AppState>, headers: HeaderMap, Id(code): Id<String>) -> Response {
    removal_page(s, headers, code, Kind::Wastage).await
}

async fn return_page(State(s): State<AppState>, headers: HeaderMap, Id(code): Id<String>) -> Response {
    removal_page(s, headers, code, Kind::Return).await
}

fn removal_path(code: &str, kind: Kind) -> String {
    match kind {
        Kind::Return => format!("/locations/{code}/returns"),
        _ => format!("/locations/{code}/wastage"),
    }
}

async fn removal_page(s: AppState, headers: HeaderMap, code: String, kind: Kind) -> Response {
    match place_and_viewer(&s, &headers, &code, &removal_path(&code, kind)).await {
        Ok((caller, csrf, place)) => removal_form(&s, &caller, csrf, &place, kind, Sent::default()).await,
        Err(r) => r,
    }
}

async fn removal_form(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    place: &Location,
    kind: Kind,
    sent: Sent,
) -> Response {
    let lines = match stock::of_location(&s.db, caller, &place.code, None, false).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let returning = kind == Kind::Return;
    super::pages::render(
        sent.status(),
        "removal.html",
        context! {
            title => format!("{} at {} ({})", if returning { "Return doses" } else { "Waste doses" }, place.name, place.code),
            code => place.code.clone(),
            action => removal_path(&place.code, kind),
            here => if returning { "returns" } else { "wastage" },
            returning,
            // A lot held after an excursion is returned or wasted by its review, not here.
            stock => stock_choices(lines.iter().filter(|l| l.holds.iter().all(|h| h.excursion_id.is_none()))),
            held => lines
                .iter()
                .flat_map(|l| l.holds.iter().filter_map(move |h| h.excursion_id.map(|x| context! {
                    what => format!("{} lot {} in {}", l.product, l.lot, l.unit),
                    excursion => x,
                })))
                .collect::<Vec<_>>(),
            reasons => REASONS
                .iter()
                .filter(|(c, _)| !returning || !OPENED_OR_GONE.contains(c))
                .map(|(c, d)| context! { code => *c, words => *d })
                .collect::<Vec<_>>(),
            form => sent.form(),
            field => sent.field.clone(),
            error => sent.error.clone(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
        },
    )
}

async fn waste(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    remove(s, headers, code, Kind::Wastage, f).await
}

async fn give_back(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    remove(s, headers, code, Kind::Return, f).await
}

async fn remove(s: AppState, headers: HeaderMap, code: String, kind: Kind, f: HashMap<String, String>) -> Response {
    let Posted {
        caller,
        place,
        csrf,
        sent,
    } = match writer_at(&s, &headers, &f, &code, &removal_path(&code, kind)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = (|| {
        let (unit_id, lot_id) =
            stock_in(&sent, "stock").ok_or((Some("stock"), "Choose the lot the doses came from.".to_string()))?;
        let doses = doses_in(&sent, "doses").map_err(|e| (Some("doses"), e))?;
        let reason_code = sent
            .text("reason_code")
            .ok_or((Some("reason_code"), "Choose the reason from the list.".to_string()))?;
        Ok::<_, (Option<&str>, String)>(Removal {
            unit_id,
            lot_id,
            doses,
            reason_code,
            note: sent.text("note"),
        })
    })();
    let body = match body {
        Ok(b) => b,
        Err((field, error)) => return removal_form(&s, &caller, csrf, &place, kind, sent.refused(field, error)).await,
    };
    match movements::remove(&s.db, &caller, &code, kind, &body).await {
        Ok(_) => Redirect::to(&format!(
            "/locations/{code}/inventory?lot={}&done={}#ledger",
            body.lot_id,
            if kind == Kind::Return { "returned" } else { "wasted" }
        ))
        .into_response(),
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            let sent = sent.refused_by_service(&e);
            removal_form(&s, &caller, csrf, &place, kind, sent).await
        }
        Err(crate::error::Error::NotFound(_)) => {
            let sent = sent.refused(Some("stock"), "That lot is not in that unit any more; choose again.");
            removal_form(&s, &caller, csrf, &place, kind, sent).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
