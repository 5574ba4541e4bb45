//! A location's home (`/locations/{code}`): every storage unit as a tile — its temperature and
//! status, the age of its last reading, its loggers' battery and calibration, its open alerts —
//! and today's check, signed with one press (the daily sign-off the order prerequisites read).
//! Forms post here with the page's CSRF token and come back to the page.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;

use super::error::ApiError;
use super::extract::Id;
use super::AppState;
use crate::accounts::audit::Who;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}", get(home))
        .route("/units/{id}/daily/{date}/sign", post(sign))
}

#[derive(serde::Deserialize)]
struct Notice {
    signed: Option<String>,
}

async fn home(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(n): Query<Notice>,
) -> Response {
    let path = format!("/locations/{code}");
    let (caller, csrf) = match super::pages::viewer(&s, &headers, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (location, tiles) = match crate::coldchain::tiles::of_location(&s.db, &caller.scope, &code).await {
        Ok(t) => t,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let waiting = match crate::inventory::doses::review::waiting_at(&s.db, &caller.scope, &location.code).await {
        Ok(w) => w,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let one = |v: Option<f64>| v.map_or("—".to_string(), |c| format!("{c:.1} °C"));
    let tiles: Vec<minijinja::Value> = tiles
        .iter()
        .map(|t| {
            context! {
                unit_id => t.unit_id,
                name => t.name.clone(),
                status => t.status,
                status_text => t.status_text.clone(),
                temp => t.temp_c.map(|c| format!("{c:.1}")),
                range_text => format!("{:.1} to {:.1} °C", t.range.0, t.range.1),
                age => t.age_minutes.map(crate::coldchain::tiles::minutes),
                open_excursions => t.open_excursions.clone(),
                loggers => t.loggers.iter().map(|l| context! {
                    serial => l.serial.clone(),
                    role => l.role.clone(),
                    battery => l.battery_pct.map_or("not reported".to_string(), |b| format!("{b:.0} %")),
                    calibration_due => l.calibration_due,
                    calibration_expires_on => l.calibration_expires_on.clone(),
                }).collect::<Vec<_>>(),
                today => t.today.clone(),
                today_min => one(t.today_min_c),
                today_max => one(t.today_max_c),
                signed_by => t.signed_by.clone(),
            }
        })
        .collect();
    super::pages::render(
        StatusCode::OK,
        "location.html",
        context! {
            title => format!("{} ({})", location.name, location.code),
            location => minijinja::Value::from(minijinja::value::Serde(&location)),
            tiles,
            unmatched => waiting.unmatched,
            borrowing => waiting.borrowing,
            may_sign => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
            notice => n.signed.map(|d| format!("Today's check ({d}) is signed.")),
        },
    )
}

#[derive(serde::Deserialize)]
struct SignForm {
    csrf_token: Option<String>,
}

/// Signs a day's check from the location's page, then back to it.
async fn sign(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id((id, date)): Id<(i64, String)>,
    axum::Form(f): axum::Form<SignForm>,
) -> Response {
    let caller = match super::pages::form_writer(&s, &headers, f.csrf_token.as_deref(), &format!("/units/{id}")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(day) = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d") else {
        return super::pages::not_found();
    };
    let unit = match crate::registry::units::get(&s.db, &caller.scope, id).await {
        Ok(u) => u,
        Err(_) => return super::pages::not_found(),
    };
    match crate::coldchain::daily::sign(&s.db, &caller.scope, id, day, None, &Who::of(&caller)).await {
        Ok(_) => Redirect::to(&format!("/locations/{}?signed={day}", unit.location)).into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => super::pages::message(
            StatusCode::CONFLICT,
            "Not signed",
            &[e.to_string().as_str()],
            Some((&format!("/locations/{}", unit.location), "Back to the location")),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}
