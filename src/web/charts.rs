//! Charts as their own URLs, beside the pages: `/units/{id}/chart.svg?from=&to=` (RFC 3339;
//! default the last 24 hours) and the same readings as CSV (`/units/{id}/chart.csv`). A token or
//! a signed-in person; a unit outside the caller's scope is a 404.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::extract::{query_time, Id};
use super::AppState;
use crate::coldchain::chart;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/units/{id}/chart.svg", get(svg))
        .route("/units/{id}/chart.csv", get(csv))
}

#[derive(serde::Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
}

async fn chart_of(
    s: &AppState,
    headers: &HeaderMap,
    id: i64,
    w: &Window,
    path: &str,
) -> Result<crate::charts::TempChart, Response> {
    let caller = match super::auth::page_caller(s, headers).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let next = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
            return Err(Redirect::to(&format!("/login?next={next}")).into_response());
        }
        Err(e) => return Err(e.into_response()),
    };
    let to = query_time("to", w.to.as_deref())
        .map_err(IntoResponse::into_response)?
        .unwrap_or_else(crate::store::now_millis);
    let from = query_time("from", w.from.as_deref())
        .map_err(IntoResponse::into_response)?
        .unwrap_or(to - 86_400_000);
    chart::of_unit(&s.db, &caller.scope, id, from, to)
        .await
        .map_err(|e| ApiError::from(e).into_response())
}

async fn svg(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(w): Query<Window>) -> Response {
    let chart = match chart_of(&s, &headers, id, &w, &format!("/units/{id}/chart.svg")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match chart.svg(900, 360) {
        Ok(svg) => {
            super::pages::secured(([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")], svg).into_response())
        }
        Err(e) => ApiError::Internal(anyhow::anyhow!(e)).into_response(),
    }
}

async fn csv(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(w): Query<Window>) -> Response {
    match chart_of(&s, &headers, id, &w, &format!("/units/{id}/chart.csv")).await {
        Ok(c) => super::pages::secured(
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"unit-{id}-readings.csv\""),
                    ),
                ],
                chart::csv(&c),
            )
                .into_response(),
        ),
        Err(r) => r,
    }
}
