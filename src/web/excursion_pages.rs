//! An excursion's page (`/excursions/{id}`): the chart from 6 hours before to 6 hours after,
//! what happened, the lots on hold with their outcome, and "acknowledge" once. The email's
//! acknowledgement link leads here after sign-in.

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
use crate::coldchain::excursions;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/excursions/{id}", get(page))
        .route("/excursions/{id}/acknowledge", post(acknowledge))
}

#[derive(serde::Deserialize)]
struct Notice {
    acknowledged: Option<String>,
}

const SIX_HOURS: i64 = 6 * 3_600_000;

async fn page(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(n): Query<Notice>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, &format!("/excursions/{id}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let x = match excursions::visible(&s.db, &caller.scope, id).await {
        Ok(x) => x,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
    };
    let start = ms(&x.started_at);
    let end = x.ended_at.as_deref().map_or_else(|| ms(&x.last_reading_at), ms);
    let to = (end + SIX_HOURS).min(crate::store::now_millis().max(end + 60_000));
    let chart = match crate::coldchain::chart::of_unit(&s.db, &caller.scope, x.unit_id, start - SIX_HOURS, to).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let svg = match chart.svg(900, 360) {
        Ok(svg) => svg,
        Err(e) => return ApiError::Internal(anyhow::anyhow!(e)).into_response(),
    };
    let holds = match crate::inventory::holds::of_visible_excursion(&s.db, &caller.scope, id).await {
        Ok(h) => h,
        Err(e) => return ApiError::from(e).into_response(),
    };
    super::pages::render(
        StatusCode::OK,
        "excursion.html",
        context! {
            title => format!("Excursion {id}"),
            x => minijinja::Value::from(minijinja::value::Serde(&x)),
            minutes_out => format!("{:.0}", x.minutes_out_of_range),
            minutes_unknown => format!("{:.0}", x.minutes_unknown),
            chart => minijinja::Value::from_safe_string(svg),
            alt => chart.alt,
            holds => minijinja::Value::from(minijinja::value::Serde(&holds)),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
            notice => n.acknowledged.map(|_| "Acknowledged: the escalation stops.".to_string()),
        },
    )
}

#[derive(serde::Deserialize)]
struct Form {
    csrf_token: Option<String>,
}

async fn acknowledge(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    axum::Form(f): axum::Form<Form>,
) -> Response {
    let back = format!("/excursions/{id}");
    let caller = match super::pages::form_writer(&s, &headers, f.csrf_token.as_deref(), &back).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if excursions::visible(&s.db, &caller.scope, id).await.is_err() {
        return super::pages::not_found();
    }
    match excursions::acknowledge(&s.db, id, &caller.actor(), &Who::of(&caller)).await {
        Ok(_) => Redirect::to(&format!("/excursions/{id}?acknowledged=1")).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
