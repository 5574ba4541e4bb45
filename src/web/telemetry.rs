//! Routes about ingest itself: the dead letters (payloads refused, with the reason).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::auth::require_state;
use super::error::ApiError;
use super::extract::Params;
use super::AppState;
use crate::accounts::Caller;
use crate::store::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new().route("/dead-letters", get(dead_letters))
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    /// The payload's first 4 KiB, as text.
    pub payload: String,
    pub payload_bytes: i64,
    pub reason: String,
    pub received_at: String,
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
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<i64>,
}

/// Payloads the ingest refused, newest first (state coordinators).
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "telemetry", security(("bearer" = [])),
    params(DeadLetterParams), responses((status = 200, body = DeadLetterList), (status = 403)))]
async fn dead_letters(
    State(s): State<AppState>,
    caller: Caller,
    Params(p): Params<DeadLetterParams>,
) -> Result<Json<DeadLetterList>, ApiError> {
    require_state(&caller, "the dead-letter list")?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let rows = sqlx::query(
        "SELECT id, topic, payload, payload_bytes, reason, received_at FROM dead_letters \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(p.before.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(&s.db.pool)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get("id")?,
                topic: r.try_get("topic")?,
                payload: r.try_get("payload")?,
                payload_bytes: r.try_get("payload_bytes")?,
                reason: r.try_get("reason")?,
                received_at: rfc3339(r.try_get("received_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next = (out.len() as i64 > limit).then(|| {
        out.truncate(limit as usize);
        out.last().map(|d| d.id.to_string())
    });
    Ok(Json(DeadLetterList {
        dead_letters: out,
        next: next.flatten(),
    }))
}
