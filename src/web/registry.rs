//! Routes of the registry: locations, storage units, loggers and readings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{query_time, Body, Id, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::readings::{self, Cursor, Page, MAX_PAGE};
use crate::registry::assignments::{self, AssignLogger, Assignment};
use crate::registry::locations::{self, Location, LocationUpdate, NewLocation};
use crate::registry::loggers::{self, Logger, LoggerDetail};
use crate::registry::units::{self, NewUnit, Unit, UnitDetail};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations", get(list_locations).post(create_location))
        .route("/locations/{code}", get(get_location).put(update_location))
        .route("/locations/{code}/units", get(list_units).post(create_unit))
        .route("/units/{id}", get(get_unit).put(update_unit))
        .route("/units/{id}/logger", put(assign_logger))
        .route("/units/{id}/logger/{serial}", delete(unassign_logger))
        .route("/units/{id}/readings", get(unit_readings))
        .route("/loggers", get(list_loggers))
        .route("/loggers/{serial}", get(get_logger))
        .route("/loggers/{serial}/readings", get(logger_readings))
}

#[derive(Serialize, ToSchema)]
pub struct LocationList {
    pub locations: Vec<Location>,
}

#[derive(Serialize, ToSchema)]
pub struct UnitList {
    pub units: Vec<Unit>,
}

#[derive(Serialize, ToSchema)]
pub struct LoggerList {
    pub loggers: Vec<Logger>,
    /// The cursor of the next page (a serial), when there is one.
    pub next: Option<String>,
}

/// Lists the locations the token may see.
#[utoipa::path(get, path = "/api/v1/locations", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = LocationList), (status = 401)))]
async fn list_locations(State(s): State<AppState>, caller: Caller) -> Result<Json<LocationList>, ApiError> {
    let mut list = locations::list(&s.db, &caller.scope).await?;
    locations::link_accounts(&s.db, &mut list).await?;
    Ok(Json(LocationList { locations: list }))
}

/// Registers a suffix location of a PIN (state coordinators, or a clinic token for its own PIN).
#[utoipa::path(post, path = "/api/v1/locations", tag = "registry", security(("bearer" = [])),
    request_body = NewLocation,
    responses((status = 201, body = Location), (status = 400), (status = 403), (status = 409)))]
async fn create_location(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<NewLocation>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(locations::create(&s.db, &caller, &body).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/locations/{code}", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path, description = "PIN and suffix, e.g. 012345A")),
    responses((status = 200, body = Location), (status = 404)))]
async fn get_location(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
) -> Result<Json<Location>, ApiError> {
    let mut one = [locations::get(&s.db, &caller.scope, &code).await?];
    locations::link_accounts(&s.db, &mut one).await?;
    let [location] = one;
    Ok(Json(location))
}

/// Changes a location's name, time zone, address or coordinators.
#[utoipa::path(put, path = "/api/v1/locations/{code}", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = LocationUpdate,
    responses((status = 200, body = Location), (status = 400), (status = 404)))]
async fn update_location(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<LocationUpdate>,
) -> Result<Json<Location>, ApiError> {
    Ok(Json(
        locations::update(
            &s.db,
            &caller,
            &code,
            &body,
            &crate::coldchain::coordinators::StateIsTold,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/locations/{code}/units", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path)), responses((status = 200, body = UnitList), (status = 404)))]
async fn list_units(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
) -> Result<Json<UnitList>, ApiError> {
    Ok(Json(UnitList {
        units: units::list(&s.db, &caller.scope, &code).await?,
    }))
}

/// Adds a storage unit; its range defaults to the CDC range of its kind. A clinic's unit may
/// have a narrower range than its kind's, not a wider one (403 `state_approval_required`).
#[utoipa::path(post, path = "/api/v1/locations/{code}/units", tag = "registry", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = NewUnit,
    responses((status = 201, body = Unit), (status = 400), (status = 403), (status = 404)))]
async fn create_unit(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<NewUnit>,
) -> Result<(StatusCode, Json<Unit>), ApiError> {
    if let (false, Some(r)) = (caller.is_state(), body.range) {
        locations::get(&s.db, &caller.scope, &code).await?;
        crate::coldchain::rules::range_no_looser(body.kind, None, (r.min_c, r.max_c)).map_err(|why| {
            ApiError::StateApprovalRequired(format!("{why}: only the state VFC coordinator may set such a range"))
        })?;
    }
    Ok((
        StatusCode::CREATED,
        Json(units::create(&s.db, &caller, &code, &body).await?),
    ))
}

/// A unit with its loggers and latest reading.
#[utoipa::path(get, path = "/api/v1/units/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = UnitDetail), (status = 404)))]
async fn get_unit(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<UnitDetail>, ApiError> {
    Ok(Json(units::detail(&s.db, &caller.scope, id).await?))
}

/// Renames a unit or overrides its temperature range; range changes are recorded.
#[utoipa::path(put, path = "/api/v1/units/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = crate::registry::units::UnitUpdate,
    responses((status = 200, body = Unit), (status = 400), (status = 403), (status = 404)))]
async fn update_unit(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<crate::registry::units::UnitUpdate>,
) -> Result<Json<Unit>, ApiError> {
    Ok(Json(
        crate::coldchain::settings::update_unit(&s.db, &caller, id, &body).await?,
    ))
}

/// Puts a logger on the unit (as primary unless `role` says backup), from `from` (default now).
/// The unit's previous logger in that role, and the logger's previous unit, end there.
#[utoipa::path(put, path = "/api/v1/units/{id}/logger", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = AssignLogger,
    responses((status = 200, body = Assignment), (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn assign_logger(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<AssignLogger>,
) -> Result<Json<Assignment>, ApiError> {
    let watcher = crate::coldchain::changes::PrimaryLoggers;
    let assignment = assignments::assign(&s.db, &caller, id, &body, &watcher).await?;
    // Readings held because the logger was not this PIN's may be now.
    super::gateways::refile(&s).await;
    Ok(Json(assignment))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AtParams {
    /// When the logger stopped serving (RFC 3339); default now.
    at: Option<DateTime<Utc>>,
}

/// Takes a logger off the unit; its readings until then stay with the unit.
#[utoipa::path(delete, path = "/api/v1/units/{id}/logger/{serial}", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path), ("serial" = String, Path), AtParams),
    responses((status = 200, body = Assignment), (status = 404)))]
async fn unassign_logger(
    State(s): State<AppState>,
    caller: Caller,
    Id((id, serial)): Id<(i64, String)>,
    Params(p): Params<AtParams>,
) -> Result<Json<Assignment>, ApiError> {
    let ended = assignments::unassign(
        &s.db,
        &caller,
        id,
        &serial,
        p.at,
        &crate::coldchain::changes::PrimaryLoggers,
    )
    .await?;
    // Readings held after a backdated end may now belong to no unit, which a gateway may bring.
    super::gateways::refile(&s).await;
    Ok(Json(ended))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RangeParams {
    /// Start, RFC 3339 (inclusive).
    #[param(required = true)]
    from: Option<String>,
    /// End, RFC 3339 (inclusive).
    #[param(required = true)]
    to: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Page size, at most 100000 (the default).
    limit: Option<usize>,
}

impl RangeParams {
    fn parse(&self) -> Result<(i64, i64, Option<Cursor>, usize), ApiError> {
        let at = |name: &str, v: &Option<String>| -> Result<i64, ApiError> {
            query_time(name, v.as_deref())?.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "\"{name}\" is required: an RFC 3339 time such as 2026-11-25T13:00:00Z"
                ))
            })
        };
        let (from, to) = (at("from", &self.from)?, at("to", &self.to)?);
        if from > to {
            return Err(ApiError::bad_request("\"from\" must not be after \"to\""));
        }
        let cursor = self.cursor.as_deref().map(Cursor::decode).transpose()?;
        let limit = self.limit.unwrap_or(MAX_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::bad_request(format!("\"limit\" must be 1 to {MAX_PAGE}")));
        }
        Ok((from, to, cursor, limit))
    }
}

/// The unit's temperature record: readings of every logger that served it, at the time it did,
/// in time order. Pages of at most 100,000; follow `next`.
#[utoipa::path(get, path = "/api/v1/units/{id}/readings", tag = "registry", security(("bearer" = [])),
    params(("id" = i64, Path), RangeParams),
    responses((status = 200, body = Page), (status = 400), (status = 404)))]
async fn unit_readings(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Params(p): Params<RangeParams>,
) -> Result<Json<Page>, ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    let (from, to, cursor, limit) = p.parse()?;
    let windows = assignments::unit_windows(&s.db, id).await?;
    Ok(Json(
        readings::page(&s.db, &windows, from, to, cursor.as_ref(), limit).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LoggerFilter {
    /// true: serving a unit now; false: serving none (state coordinators only).
    assigned: Option<bool>,
    /// At most this many (1 to 1000, default 100), by serial.
    limit: Option<i64>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Loggers: a clinic sees those serving its units; the state also sees loggers no unit has.
#[utoipa::path(get, path = "/api/v1/loggers", tag = "registry", security(("bearer" = [])),
    params(LoggerFilter), responses((status = 200, body = LoggerList), (status = 400), (status = 403)))]
async fn list_loggers(
    State(s): State<AppState>,
    caller: Caller,
    Params(p): Params<LoggerFilter>,
) -> Result<Json<LoggerList>, ApiError> {
    let filter = match p.assigned {
        None => loggers::Filter::All,
        Some(true) => loggers::Filter::Assigned,
        Some(false) => loggers::Filter::Unassigned,
    };
    let limit = super::extract::page_of(p.limit, None)?.limit;
    let (loggers, next) = loggers::list(&s.db, &caller, filter, p.cursor.as_deref(), limit).await?;
    Ok(Json(LoggerList { loggers, next }))
}

#[utoipa::path(get, path = "/api/v1/loggers/{serial}", tag = "registry", security(("bearer" = [])),
    params(("serial" = String, Path)), responses((status = 200, body = LoggerDetail), (status = 404)))]
async fn get_logger(
    State(s): State<AppState>,
    caller: Caller,
    Id(serial): Id<String>,
) -> Result<Json<LoggerDetail>, ApiError> {
    Ok(Json(loggers::detail(&s.db, &caller, &serial).await?))
}

/// A logger's own readings: all of them for the state; for a clinic, those taken while the
/// logger served one of its units.
#[utoipa::path(get, path = "/api/v1/loggers/{serial}/readings", tag = "registry", security(("bearer" = [])),
    params(("serial" = String, Path), RangeParams),
    responses((status = 200, body = Page), (status = 404)))]
async fn logger_readings(
    State(s): State<AppState>,
    caller: Caller,
    Id(serial): Id<String>,
    Params(p): Params<RangeParams>,
) -> Result<Json<Page>, ApiError> {
    let windows = loggers::visible_windows(&s.db, &caller, &serial).await?;
    let (from, to, cursor, limit) = p.parse()?;
    Ok(Json(
        readings::page(&s.db, &windows, from, to, cursor.as_ref(), limit).await?,
    ))
}
