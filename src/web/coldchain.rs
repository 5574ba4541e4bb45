//! Routes of the cold chain: the program's settings, a unit's rules and their history,
//! maintenance and out-of-service periods, the daily record, the loggers' own conditions, and
//! the units the evaluator cannot judge now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{require_state, StateCoordinator};
use super::error::ApiError;
use super::extract::{page_of, query_time, Body, Id, Params};
use super::AppState;
use crate::accounts::audit::Who;
use crate::accounts::Caller;
use crate::coldchain::changes::{self, RuleChange};
use crate::coldchain::daily::{self, Day, SignOff};
use crate::coldchain::devices::{self, DeviceAlert};
use crate::coldchain::downtime::{self, Downtime, NewDowntime};
use crate::coldchain::quarantine::{self, Failure};
use crate::coldchain::rules::{ProgramSettings, Rule};
use crate::coldchain::settings;
use crate::domain::parse_date;
use crate::registry::units;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/program", get(get_program).put(put_program))
        .route("/units/{id}/rules", get(get_unit_rules).put(put_unit_rules))
        .route("/units/{id}/rules/history", get(rule_history))
        .route("/units/{id}/downtime", get(list_downtime).post(add_downtime))
        .route("/units/{id}/downtime/{downtime_id}/end", post(end_downtime))
        .route("/units/{id}/daily", get(daily))
        .route("/units/{id}/daily/{date}/sign", post(sign_day))
        .route("/device-alerts", get(device_alerts))
        .route("/device-alerts/{id}/acknowledge", post(acknowledge_device))
        .route("/evaluation-failures", get(evaluation_failures))
        .route("/rule-changes", get(rule_changes))
}

/// The program's defaults per unit kind, state coordinators and escalation delays.
#[utoipa::path(get, path = "/api/v1/program", tag = "coldchain", security(("bearer" = [])),
    responses((status = 200, body = ProgramSettings), (status = 403)))]
async fn get_program(State(s): State<AppState>, caller: Caller) -> Result<Json<ProgramSettings>, ApiError> {
    require_state(&caller, "the program's settings")?;
    Ok(Json(settings::program(&s.db).await?))
}

#[utoipa::path(put, path = "/api/v1/program", tag = "coldchain", security(("bearer" = [])),
    request_body = ProgramSettings, responses((status = 200, body = ProgramSettings), (status = 400), (status = 403)))]
async fn put_program(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Body(body): Body<ProgramSettings>,
) -> Result<Json<ProgramSettings>, ApiError> {
    settings::save_program(&s.db, &body, &caller).await?;
    Ok(Json(body))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UnitRules {
    /// The rules that judge the unit now.
    pub rules: Vec<Rule>,
    /// "unit" when the unit has its own, "program" when it follows the program's defaults.
    #[serde(default)]
    pub source: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/units/{id}/rules", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = UnitRules), (status = 404)))]
async fn get_unit_rules(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<UnitRules>, ApiError> {
    let unit = units::get(&s.db, &caller.scope, id).await?;
    let (rules, source) = settings::effective_now(&s.db, id, unit.kind).await?;
    Ok(Json(UnitRules {
        rules,
        source: Some(source.into()),
    }))
}

/// Replaces the unit's rules (`{"rules":[…]}`); `{"rules":null}` returns it to the program's.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutUnitRules {
    pub rules: Option<Vec<Rule>>,
}

#[utoipa::path(put, path = "/api/v1/units/{id}/rules", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PutUnitRules,
    responses((status = 200, body = UnitRules), (status = 400), (status = 403), (status = 404)))]
async fn put_unit_rules(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(raw): Body<serde_json::Value>,
) -> Result<Json<UnitRules>, ApiError> {
    let unit = units::get(&s.db, &caller.scope, id).await?;
    // "rules" must be there: absent is a mistake, null is the explicit way back to the program's.
    if raw.get("rules").is_none() {
        return Err(ApiError::bad_request(
            "send {\"rules\":[…]} for the unit's own rules, or {\"rules\":null} to follow the program's",
        ));
    }
    let body: PutUnitRules =
        serde_json::from_value(raw).map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    settings::save_unit_rules(&s.db, &unit, body.rules.as_deref(), &caller).await?;
    get_unit_rules(State(s), caller, Id(id)).await
}

#[derive(Serialize, ToSchema)]
pub struct RuleHistory {
    pub changes: Vec<RuleChange>,
}

/// Every change to what guards the unit — its rules, range, downtime and primary logger: who,
/// when, before and after.
#[utoipa::path(get, path = "/api/v1/units/{id}/rules/history", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = RuleHistory), (status = 404)))]
async fn rule_history(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<RuleHistory>, ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    Ok(Json(RuleHistory {
        changes: changes::history(&s.db, id).await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DowntimeList {
    pub downtime: Vec<Downtime>,
}

/// Marks a unit out of service or in maintenance: readings are kept and excursions recorded,
/// with the reason, but nobody is paged.
#[utoipa::path(post, path = "/api/v1/units/{id}/downtime", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewDowntime,
    responses((status = 201, body = Downtime), (status = 400), (status = 403), (status = 404)))]
async fn add_downtime(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<NewDowntime>,
) -> Result<(StatusCode, Json<Downtime>), ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    let stocked = crate::inventory::stock::in_unit(&s.db, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(downtime::add(&s.db, id, &body, &caller, stocked).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/units/{id}/downtime", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DowntimeList), (status = 404)))]
async fn list_downtime(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<DowntimeList>, ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    Ok(Json(DowntimeList {
        downtime: downtime::list(&s.db, id).await?,
    }))
}

/// Ends a maintenance window or out-of-service period now: alerts page people again.
#[utoipa::path(post, path = "/api/v1/units/{id}/downtime/{downtime_id}/end", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path), ("downtime_id" = i64, Path)), responses((status = 200, body = Downtime), (status = 404), (status = 409)))]
async fn end_downtime(
    State(s): State<AppState>,
    caller: Caller,
    Id((id, downtime_id)): Id<(i64, i64)>,
) -> Result<Json<Downtime>, ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    Ok(Json(downtime::end(&s.db, id, downtime_id, &caller).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DayRange {
    /// First day, YYYY-MM-DD (local to the location).
    from: Option<String>,
    /// Last day, YYYY-MM-DD, inclusive; at most 366 days after `from`.
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DayList {
    pub days: Vec<Day>,
}

fn day(name: &str, raw: Option<&str>) -> Result<chrono::NaiveDate, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::bad_request(format!("\"{name}\" is required: a date such as 2026-11-25")))?;
    Ok(parse_date(name, raw)?)
}

/// The unit's min/max record per day in its location's time zone, from its readings, with
/// each day's sign-off.
#[utoipa::path(get, path = "/api/v1/units/{id}/daily", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path), DayRange), responses((status = 200, body = DayList), (status = 400), (status = 404)))]
async fn daily(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Params(p): Params<DayRange>,
) -> Result<Json<DayList>, ApiError> {
    let (from, to) = (day("from", p.from.as_deref())?, day("to", p.to.as_deref())?);
    Ok(Json(DayList {
        days: daily::of_unit(&s.db, &caller.scope, id, from, to).await?,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SignDay {
    #[serde(default)]
    pub note: Option<String>,
}

/// Signs off a day's min/max record (once).
#[utoipa::path(post, path = "/api/v1/units/{id}/daily/{date}/sign", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path), ("date" = String, Path)), request_body = SignDay,
    responses((status = 201, body = SignOff), (status = 400), (status = 404), (status = 409)))]
async fn sign_day(
    State(s): State<AppState>,
    caller: Caller,
    Id((id, date)): Id<(i64, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SignOff>), ApiError> {
    // The body is optional: `{"note": "…"}` or nothing.
    let body: SignDay = if body.iter().all(u8::is_ascii_whitespace) {
        SignDay::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))?
    };
    let day = day("date", Some(&date))?;
    let signed = daily::sign(&s.db, &caller.scope, id, day, body.note.as_deref(), &Who::of(&caller)).await?;
    Ok((StatusCode::CREATED, Json(signed)))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceAlertList {
    pub device_alerts: Vec<DeviceAlert>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeviceAlertFilter {
    /// true: only conditions that last now.
    open: Option<bool>,
}

/// The loggers' own conditions (no data, battery, probe, calibration), newest first.
#[utoipa::path(get, path = "/api/v1/device-alerts", tag = "coldchain", security(("bearer" = [])),
    params(DeviceAlertFilter), responses((status = 200, body = DeviceAlertList)))]
async fn device_alerts(
    State(s): State<AppState>,
    caller: Caller,
    Params(f): Params<DeviceAlertFilter>,
) -> Result<Json<DeviceAlertList>, ApiError> {
    Ok(Json(DeviceAlertList {
        device_alerts: devices::list(&s.db, &caller.scope, f.open == Some(true)).await?,
    }))
}

/// Acknowledges a logger condition (stops its escalation).
#[utoipa::path(post, path = "/api/v1/device-alerts/{id}/acknowledge", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404)))]
async fn acknowledge_device(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<StatusCode, ApiError> {
    devices::visible(&s.db, &caller.scope, id).await?;
    devices::acknowledge(&s.db, id, &caller.actor(), &Who::of(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct FailureList {
    pub evaluation_failures: Vec<Failure>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesParams {
    /// Changes made at or after this time (RFC 3339); default 30 days ago.
    from: Option<String>,
    /// At most this many (1 to 1000, default 100).
    limit: Option<i64>,
    /// `next` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChangeList {
    pub changes: Vec<RuleChange>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// Every change to a unit's rules, range, downtime or primary logger, and to the program's
/// settings, oldest first (state coordinators).
#[utoipa::path(get, path = "/api/v1/rule-changes", tag = "coldchain", security(("bearer" = [])),
    params(ChangesParams), responses((status = 200, body = ChangeList), (status = 400), (status = 403)))]
async fn rule_changes(
    State(s): State<AppState>,
    _state: StateCoordinator,
    Params(p): Params<ChangesParams>,
) -> Result<Json<ChangeList>, ApiError> {
    let from = query_time("from", p.from.as_deref())?.unwrap_or_else(|| crate::store::now_millis() - 30 * 86_400_000);
    let page = page_of(p.limit, p.cursor.as_deref())?;
    let (changes, next) = changes::since(&s.db, from, page).await?;
    Ok(Json(ChangeList {
        changes,
        next: next.map(|n| n.to_string()),
    }))
}

/// Units the evaluator cannot judge now, with the error that names what to fix; each is retried
/// with backoff while every other unit is judged as usual (state coordinators).
#[utoipa::path(get, path = "/api/v1/evaluation-failures", tag = "coldchain", security(("bearer" = [])),
    responses((status = 200, body = FailureList), (status = 403)))]
async fn evaluation_failures(State(s): State<AppState>, caller: Caller) -> Result<Json<FailureList>, ApiError> {
    require_state(&caller, "the list of units the evaluator cannot judge")?;
    Ok(Json(FailureList {
        evaluation_failures: quarantine::list(&s.db).await?,
    }))
}
