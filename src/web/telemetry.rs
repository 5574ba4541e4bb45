//! Routes about ingest itself: the dead letters (payloads refused, with the reason).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::require_state;
use super::error::ApiError;
use super::extract::Params;
use super::AppState;
use crate::accounts::Caller;
use crate::telemetry::dead_letters::{self, DeadLetter};

pub fn router() -> Router<AppState> {
    Router::new().route("/dead-letters", get(list))
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `before` for older entries; null when there are none.
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadLetterParams {
    /// Entries with an id below this (the `next` of the previous page).
    before: Option<i64>,
    /// At most this many, newest first: 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// Payloads the ingest refused, newest first (state coordinators).
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "telemetry", security(("bearer" = [])),
    params(DeadLetterParams), responses((status = 200, body = DeadLetterList), (status = 400), (status = 403)))]
async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Params(p): Params<DeadLetterParams>,
) -> Result<Json<DeadLetterList>, ApiError> {
    require_state(&caller, "the dead-letter list")?;
    // `before` is this list's cursor (it predates `cursor` and stays for its users).
    let page = crate::store::Page {
        after: p.before,
        ..super::extract::page_of(p.limit, None)?
    };
    let (dead_letters, next) = dead_letters::page(&s.db, page).await?;
    Ok(Json(DeadLetterList {
        dead_letters,
        next: next.map(|n| n.to_string()),
    }))
}
