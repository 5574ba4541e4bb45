//! HTTP: the JSON API under `/api/v1` (docs/architecture.md, "Public contracts → HTTP"),
//! `/healthz`, `/metrics` and `/api/openapi.json`. One module per group of routes, each with its
//! router; handlers parse the request, call the capability that owns the answer, and shape the
//! response — there is no SQL here.

mod accounts;
mod ack;
mod audit_pages;
pub mod auth;
mod coldchain;
mod count_pages;
mod device_pages;
mod dose_pages;
mod doses;
pub mod error;
mod excursion_pages;
mod excursions;
mod extract;
mod forms;
mod gateways;
mod hl7;
mod inventory;
mod inventory_pages;
mod location_pages;
mod me_pages;
mod openapi;
mod ops;
mod order_page;
mod order_pages;
mod orders;
pub mod pages;
mod people_pages;
mod queue_pages;
mod registry;
mod session;
mod state_home;
mod stock_pages;
mod telemetry;
mod transfer_pages;
mod unit_pages;

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::coldchain::stock::ExposedStock;
use crate::config::Settings;
use crate::store::Db;
use crate::supervise::Tasks;
use crate::telemetry::mqtt::MqttHealth;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub mqtt: Arc<MqttHealth>,
    /// The background tasks and their states, for `/healthz`.
    pub tasks: Tasks,
    pub metrics: Option<PrometheusHandle>,
    /// Key that signs acknowledgement links.
    pub ack_key: Arc<Vec<u8>>,
    /// Where HL7 messages are recorded (concurrent ones committed together).
    pub intake: crate::hl7::intake::Intake,
    /// What a review's determinations do to the stock (the inventory's holds).
    pub stock: Arc<dyn ExposedStock>,
    /// The base of links in emails (invitations, resets) and whether cookies are `Secure`.
    pub public_url: url::Url,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(registry::router())
        .merge(gateways::router())
        .merge(telemetry::router())
        .merge(coldchain::router())
        .merge(excursions::router())
        .merge(inventory::router())
        .merge(doses::router())
        .merge(hl7::router())
        .merge(orders::router())
        .merge(accounts::router())
        .merge(session::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .nest("/api/v1", api)
        .merge(ops::router())
        .merge(ack::router())
        .merge(pages::router())
        .merge(state_home::router())
        .merge(unit_pages::router())
        .merge(location_pages::router())
        .merge(excursion_pages::router())
        .merge(order_pages::router())
        .merge(inventory_pages::router())
        .merge(stock_pages::router())
        .merge(count_pages::router())
        .merge(me_pages::router())
        .merge(dose_pages::router())
        .merge(transfer_pages::router())
        .merge(device_pages::router())
        .merge(people_pages::router())
        .merge(audit_pages::router())
        .merge(queue_pages::router())
        .merge(order_page::router())
        .merge(openapi::router())
        .fallback(|| async {
            error::ApiError::NotFound("no such route; the API is described at /api/openapi.json".into())
        })
        .method_not_allowed_fallback(|| async {
            error::ApiError::MethodNotAllowed("this route does not take that method; see /api/openapi.json".into())
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state)
}

/// A handler that panicked answers 500 in the API's error shape, and is counted and logged;
/// the service goes on.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    metrics::counter!("vfc_http_panics_total").increment(1);
    error::ApiError::Internal(anyhow::anyhow!("a request handler panicked: {what}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_in_the_apis_error_shape() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("a bug");
                    }
                    "unreachable"
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let request = axum::http::Request::get("/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal");
        assert!(
            !v["error"]["message"].as_str().unwrap().contains("a bug"),
            "nothing internal shown: {v}"
        );
    }
}
