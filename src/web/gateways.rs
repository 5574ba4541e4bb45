//! Routes of identity on the broker: gateways registered at locations, and the readings held
//! because their sender may not speak for their logger.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::require_state;
use super::error::ApiError;
use super::extract::{page_of, Body, Id, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::registry::gateways::{self, Gateway, NewGateway};
use crate::store::now_millis;
use crate::telemetry::held::{self, HeldReading};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}/gateways", get(list).post(register))
        .route("/locations/{code}/gateways/{gateway}", delete(remove))
        .route("/held-readings", get(list_held))
}

#[derive(Serialize, ToSchema)]
pub struct GatewayList {
    pub gateways: Vec<Gateway>,
}

/// Files readings held until now that the registry's change made acceptable. The change
/// itself has committed: a failure here is logged and the periodic re-filing catches up.
pub(super) async fn refile(s: &AppState) {
    if let Err(e) = held::refile(&s.db).await {
        tracing::warn!(error = %e, "could not re-file held readings now; the next periodic pass will");
    }
}

async fn with_held(s: &AppState, mut list: Vec<Gateway>) -> Result<Vec<Gateway>, ApiError> {
    let ids: Vec<String> = list.iter().map(|g| g.id.clone()).collect();
    let counts = held::count_by_gateway(&s.db, &ids).await?;
    for g in &mut list {
        g.held_readings = counts.get(&g.id).copied().unwrap_or(0);
    }
    Ok(list)
}

/// The gateways registered at a location: when each was last heard, the loggers it brought,
/// its spool depth and warnings, and its held readings.
#[utoipa::path(get, path = "/api/v1/locations/{code}/gateways", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path)), responses((status = 200, body = GatewayList), (status = 404)))]
async fn list(State(s): State<AppState>, caller: Caller, Id(code): Id<String>) -> Result<Json<GatewayList>, ApiError> {
    let list = gateways::list(&s.db, &caller.scope, &code).await?;
    Ok(Json(GatewayList {
        gateways: with_held(&s, list).await?,
    }))
}

/// Registers a gateway at the location (state coordinators, or a clinic token covering it).
/// Its readings held until now are filed into the record. A gateway registered at another
/// location answers 409 "already in use elsewhere"; at this one, it is renamed (200).
#[utoipa::path(post, path = "/api/v1/locations/{code}/gateways", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = NewGateway,
    responses((status = 201, body = Gateway), (status = 200, body = Gateway), (status = 400), (status = 404), (status = 409)))]
async fn register(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<NewGateway>,
) -> Result<(StatusCode, Json<Gateway>), ApiError> {
    let fresh = gateways::register(&s.db, &caller, &code, &body, now_millis()).await?;
    refile(&s).await;
    let list = with_held(&s, gateways::list(&s.db, &caller.scope, &code).await?).await?;
    let gateway = list
        .into_iter()
        .find(|g| g.id == body.id)
        .ok_or_else(|| ApiError::NotFound(format!("no gateway {}", body.id)))?;
    let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(gateway)))
}

/// Takes a gateway off the location: what it sends from now on is held.
#[utoipa::path(delete, path = "/api/v1/locations/{code}/gateways/{gateway}", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path), ("gateway" = String, Path)), responses((status = 204), (status = 404)))]
async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Id((code, id)): Id<(String, String)>,
) -> Result<StatusCode, ApiError> {
    gateways::remove(&s.db, &caller, &code, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct HeldReadingList {
    pub held_readings: Vec<HeldReading>,
    /// Pass as `cursor` for older entries; null when there are none.
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HeldParams {
    /// Only those that came through this gateway.
    gateway: Option<String>,
    /// Only those of this logger.
    serial: Option<String>,
    /// Only those held for this reason.
    reason: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// At most this many, newest first: 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// Readings kept in full but in no unit's record, because their sender may not speak for the
/// logger (state coordinators), newest first.
#[utoipa::path(get, path = "/api/v1/held-readings", tag = "telemetry", security(("bearer" = [])),
    params(HeldParams), responses((status = 200, body = HeldReadingList), (status = 400), (status = 403)))]
async fn list_held(
    State(s): State<AppState>,
    caller: Caller,
    Params(p): Params<HeldParams>,
) -> Result<Json<HeldReadingList>, ApiError> {
    require_state(&caller, "the list of held readings")?;
    let page = page_of(p.limit, p.cursor.as_deref())?;
    let filter = held::Filter {
        gateway: p.gateway,
        serial: p.serial,
        reason: p.reason,
    };
    let (held_readings, next) = held::page(&s.db, &filter, page).await?;
    Ok(Json(HeldReadingList {
        held_readings,
        next: next.map(|n| n.to_string()),
    }))
}
