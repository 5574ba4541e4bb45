//! Operations: `/healthz` (database and broker) and `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// 200 when the database answers, the MQTT subscription is live and every background task is
/// running; 503 with the failing part named otherwise (`"tasks":{"evaluator":"restarting",…}`).
/// What needs a person while the service runs — units that cannot be judged, program settings
/// that cannot be read — is listed in `warnings` with status `attention` (still 200: the
/// service itself is up, and every other unit is judged).
async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let database = match tokio::time::timeout(std::time::Duration::from_secs(3), s.db.ping()).await {
        Ok(Ok(())) => "ok",
        _ => "unreachable",
    };
    let broker = match (s.mqtt.is_connected(), s.mqtt.is_subscribed()) {
        (true, true) => "subscribed",
        (true, false) => "connected",
        _ => "disconnected",
    };
    let tasks = s.tasks.states();
    let warnings =
        match tokio::time::timeout(std::time::Duration::from_secs(3), crate::coldchain::warnings(&s.db)).await {
            Ok(Ok(w)) => w,
            _ => Vec::new(),
        };
    let ok = database == "ok" && broker == "subscribed" && s.tasks.down().is_empty();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": match (ok, warnings.is_empty()) {
                (false, _) => "degraded",
                (true, true) => "ok",
                (true, false) => "attention",
            },
            "warnings": warnings,
            "database": database,
            "database_kind": s.db.dialect().as_str(),
            "broker": broker,
            "tasks": tasks,
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
