//! Routes of the cold chain: the program's settings, a unit's rules, and excursions.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::auth::require_state;
use super::error::ApiError;
use super::extract::{query_time, Body, Id, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::coldchain::rules::{self, ProgramSettings, Rule};
use crate::registry::units;
use crate::store::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/program", get(get_program).put(put_program))
        .route("/units/{id}/rules", get(get_unit_rules).put(put_unit_rules))
        .route("/units/{id}/rules/history", get(rule_history))
        .route("/excursions", get(list_excursions))
        .route("/excursions/{id}", get(get_excursion))
        .route("/excursions/{id}/acknowledge", axum::routing::post(acknowledge))
        .route("/excursions/{id}/review", axum::routing::post(review))
        .route("/units/{id}/downtime", get(list_downtime).post(add_downtime))
        .route(
            "/units/{id}/downtime/{downtime_id}/end",
            axum::routing::post(end_downtime),
        )
        .route("/units/{id}/daily", get(daily))
        .route("/device-alerts", get(device_alerts))
        .route(
            "/device-alerts/{id}/acknowledge",
            axum::routing::post(acknowledge_device),
        )
        .route("/units/{id}/daily/{date}/sign", axum::routing::post(sign_day))
}

/// The program's defaults per unit kind, state coordinators and escalation delays.
#[utoipa::path(get, path = "/api/v1/program", tag = "coldchain", security(("bearer" = [])),
    responses((status = 200, body = ProgramSettings), (status = 403)))]
async fn get_program(State(s): State<AppState>, caller: Caller) -> Result<Json<ProgramSettings>, ApiError> {
    require_state(&caller, "the program's settings")?;
    Ok(Json(rules::program(&s.db).await?))
}

#[utoipa::path(put, path = "/api/v1/program", tag = "coldchain", security(("bearer" = [])),
    request_body = ProgramSettings, responses((status = 200, body = ProgramSettings), (status = 400), (status = 403)))]
async fn put_program(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<ProgramSettings>,
) -> Result<Json<ProgramSettings>, ApiError> {
    require_state(&caller, "changing the program's settings")?;
    body.check().map_err(ApiError::BadRequest)?;
    rules::save_program(&s.db, &body, &caller.actor()).await?;
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
    let own = rules::unit_override(&s.db, id).await?;
    let source = if own.is_some() { "unit" } else { "program" };
    let rules = match own {
        Some(r) => r,
        None => rules::effective(&s.db, id, unit.kind).await?,
    };
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
    responses((status = 200, body = UnitRules), (status = 400), (status = 404)))]
async fn put_unit_rules(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(raw): Body<serde_json::Value>,
) -> Result<Json<UnitRules>, ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    // "rules" must be there: absent is a mistake, null is the explicit way back to the program's.
    if raw.get("rules").is_none() {
        return Err(ApiError::bad_request(
            "send {\"rules\":[…]} for the unit's own rules, or {\"rules\":null} to follow the program's",
        ));
    }
    let body: PutUnitRules =
        serde_json::from_value(raw).map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    if let Some(r) = &body.rules {
        rules::check_rules(r).map_err(ApiError::BadRequest)?;
    }
    rules::save_unit_rules(&s.db, id, body.rules.as_deref(), &caller.actor()).await?;
    get_unit_rules(State(s), caller, Id(id)).await
}

#[derive(Serialize, ToSchema)]
pub struct Excursion {
    pub id: i64,
    pub unit_id: i64,
    pub location: String,
    pub serial: String,
    pub started_at: String,
    /// First reading back in range; null while open.
    pub ended_at: Option<String>,
    pub last_reading_at: String,
    pub min_c: f64,
    pub max_c: f64,
    pub readings: i64,
    /// Known time out of range (gaps excluded).
    pub minutes_out_of_range: f64,
    /// Time covered by gaps in the readings: neither in range nor out.
    pub minutes_unknown: f64,
    pub above_range: bool,
    pub below_range: bool,
    pub range: crate::registry::units::Range,
    /// open | closed | reviewed
    pub status: String,
    /// A rule was met and someone was paged.
    pub alerted: bool,
    pub detected_late: bool,
    /// Why nobody was paged, when a rule was met in a maintenance window or long ago.
    pub suppressed: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    /// The excursion worksheet, once reviewed.
    pub review: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ExcursionList {
    pub excursions: Vec<Excursion>,
}

#[derive(Serialize, ToSchema)]
pub struct AlarmInfo {
    pub rule_id: String,
    pub rule: serde_json::Value,
    pub met_at: String,
    pub paged: bool,
}

#[derive(Serialize, ToSchema)]
pub struct EmailInfo {
    pub purpose: String,
    pub to: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ExcursionDetail {
    #[serde(flatten)]
    pub excursion: Excursion,
    /// The rules met, each as it was at the time.
    pub alarms: Vec<AlarmInfo>,
    pub emails: Vec<EmailInfo>,
}

const COLUMNS: &str =
    "e.id, e.unit_id, u.location_code, l.pin, e.serial, e.started_at, e.ended_at, e.last_reading_at, \
    e.min_c, e.max_c, e.readings, e.out_ms, e.unknown_ms, e.above_range, e.below_range, e.range_min_c, e.range_max_c, \
    e.status, e.alerted, e.detected_late, e.suppressed, e.acknowledged_at, e.acknowledged_by, e.review";
const FROM: &str = "excursions e JOIN units u ON u.id = e.unit_id JOIN locations l ON l.code = u.location_code";

fn from_row(r: &AnyRow) -> Result<Excursion, sqlx::Error> {
    Ok(Excursion {
        id: r.try_get("id")?,
        unit_id: r.try_get("unit_id")?,
        location: r.try_get("location_code")?,
        serial: r.try_get("serial")?,
        started_at: rfc3339(r.try_get("started_at")?),
        ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
        last_reading_at: rfc3339(r.try_get("last_reading_at")?),
        min_c: r.try_get("min_c")?,
        max_c: r.try_get("max_c")?,
        readings: r.try_get("readings")?,
        minutes_out_of_range: r.try_get::<i64, _>("out_ms")? as f64 / 60_000.0,
        minutes_unknown: r.try_get::<i64, _>("unknown_ms")? as f64 / 60_000.0,
        above_range: r.try_get::<i64, _>("above_range")? == 1,
        below_range: r.try_get::<i64, _>("below_range")? == 1,
        range: crate::registry::units::Range {
            min_c: r.try_get("range_min_c")?,
            max_c: r.try_get("range_max_c")?,
        },
        status: r.try_get("status")?,
        alerted: r.try_get::<i64, _>("alerted")? == 1,
        detected_late: r.try_get::<i64, _>("detected_late")? == 1,
        suppressed: r.try_get("suppressed")?,
        acknowledged_at: r.try_get::<Option<i64>, _>("acknowledged_at")?.map(rfc3339),
        acknowledged_by: r.try_get("acknowledged_by")?,
        review: r
            .try_get::<Option<String>, _>("review")?
            .and_then(|s| serde_json::from_str(&s).ok()),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExcursionFilter {
    /// Location code.
    location: Option<String>,
    unit: Option<i64>,
    /// open | closed | reviewed
    status: Option<String>,
    /// Started at or after (RFC 3339).
    from: Option<String>,
    /// Started at or before (RFC 3339).
    to: Option<String>,
}

/// Excursions the caller may see, newest first.
#[utoipa::path(get, path = "/api/v1/excursions", tag = "coldchain", security(("bearer" = [])),
    params(ExcursionFilter), responses((status = 200, body = ExcursionList), (status = 400)))]
async fn list_excursions(
    State(s): State<AppState>,
    caller: Caller,
    Params(f): Params<ExcursionFilter>,
) -> Result<Json<ExcursionList>, ApiError> {
    let (from, to) = (
        query_time("from", f.from.as_deref())?,
        query_time("to", f.to.as_deref())?,
    );
    if let Some(st) = &f.status {
        if !["open", "closed", "reviewed"].contains(&st.as_str()) {
            return Err(ApiError::bad_request("\"status\" must be open, closed or reviewed"));
        }
    }
    let (scope_cond, scope_param) = caller.scope.sql_filter("l.pin", "l.code", 1);
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE {scope_cond} AND ($2 IS NULL OR l.code = $2) AND ($3 IS NULL OR e.unit_id = $3) \
         AND ($4 IS NULL OR e.status = $4) AND e.started_at >= $5 AND e.started_at <= $6 ORDER BY e.started_at DESC, e.id DESC LIMIT 10000"
    );
    let location = f.location.as_deref().map(|c| {
        crate::domain::LocationCode::parse(c)
            .map(|c| c.to_string())
            .unwrap_or_else(|_| c.to_string())
    });
    let rows = sqlx::query(&sql)
        .bind(scope_param.unwrap_or_default())
        .bind(location)
        .bind(f.unit)
        .bind(f.status)
        .bind(from.unwrap_or(i64::MIN))
        .bind(to.unwrap_or(i64::MAX))
        .fetch_all(&s.db.pool)
        .await?;
    Ok(Json(ExcursionList {
        excursions: rows.iter().map(from_row).collect::<Result<_, _>>()?,
    }))
}

pub(super) async fn visible(s: &AppState, caller: &Caller, id: i64) -> Result<Excursion, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&s.db.pool)
        .await?
        .filter(|r| {
            let pin: String = r.try_get("pin").unwrap_or_default();
            let code: String = r.try_get("location_code").unwrap_or_default();
            caller.scope.covers_code(&pin, &code)
        })
        .ok_or_else(|| ApiError::NotFound(format!("no excursion {id}")))?;
    Ok(from_row(&row)?)
}

/// Acknowledges the alert (stops escalation). Acknowledging again changes nothing.
#[utoipa::path(post, path = "/api/v1/excursions/{id}/acknowledge", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Excursion), (status = 404)))]
async fn acknowledge(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Excursion>, ApiError> {
    visible(&s, &caller, id).await?;
    crate::alerts::ack::acknowledge(&s.db, id, &caller.actor()).await?;
    Ok(Json(visible(&s, &caller, id).await?))
}

/// The excursion worksheet (docs/domain.md, "After an excursion"). Every lot the excursion put on
/// hold needs its determination: viable releases it, not viable returns or wastes it (7A/7B).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// Who reviewed (name, title).
    pub reviewed_by: String,
    /// What happened.
    pub cause: String,
    /// When the excursion was found (RFC 3339).
    #[serde(default)]
    pub found_at: Option<String>,
    #[serde(default)]
    pub temp_when_found_c: Option<f64>,
    #[serde(default)]
    pub room_temp_c: Option<f64>,
    pub corrective_action: String,
    /// Who was contacted (manufacturers, the program).
    #[serde(default)]
    pub contacted: Vec<String>,
    #[serde(default)]
    pub manufacturer_case_number: Option<String>,
    /// One entry per affected lot (by `lot_id`, or `lot` number with `funding`):
    /// `determination` viable | not_viable, and for not_viable `action` return (default) | waste.
    #[serde(default)]
    pub lot_determinations: Vec<crate::inventory::holds::Determination>,
    #[serde(default)]
    pub preventive_action: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Records the review; the excursion must be over (back in range) first.
#[utoipa::path(post, path = "/api/v1/excursions/{id}/review", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Review,
    responses((status = 200, body = Excursion), (status = 400), (status = 404), (status = 409)))]
async fn review(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Review>,
) -> Result<Json<Excursion>, ApiError> {
    let e = visible(&s, &caller, id).await?;
    if e.status == "open" {
        return Err(ApiError::Conflict(
            "the unit is still out of range: review once it is back in range".into(),
        ));
    }
    if e.status == "reviewed" {
        return Err(ApiError::Conflict(format!(
            "excursion {id} was already reviewed by {}; a review is a record and is not replaced",
            e.review
                .as_ref()
                .and_then(|r| r["reviewed_by"].as_str())
                .unwrap_or("someone")
        )));
    }
    for (name, v, lo, hi) in [
        ("temp_when_found_c", body.temp_when_found_c, -100.0, 100.0),
        ("room_temp_c", body.room_temp_c, -40.0, 60.0),
    ] {
        if v.is_some_and(|t| !(lo..=hi).contains(&t)) {
            return Err(ApiError::bad_request(format!(
                "\"{name}\" must be between {lo} and {hi} °C"
            )));
        }
    }
    for (name, v) in [
        ("reviewed_by", &body.reviewed_by),
        ("cause", &body.cause),
        ("corrective_action", &body.corrective_action),
    ] {
        if v.trim().is_empty() {
            return Err(ApiError::bad_request(format!("\"{name}\" is required")));
        }
    }
    query_time("found_at", body.found_at.as_deref())?;
    let mut stored = serde_json::to_value(&body).map_err(anyhow::Error::from)?;
    stored["recorded_by"] = serde_json::Value::String(caller.actor());
    stored["recorded_at"] = serde_json::Value::String(rfc3339(crate::store::now_millis()));
    let mut tx = s.db.pool.begin().await?;
    // The manufacturer's determinations act on the holds in the same transaction as the review.
    crate::inventory::holds::determine(&mut tx, id, e.above_range, &body.lot_determinations, &caller.actor()).await?;
    sqlx::query("UPDATE excursions SET review = $1, status = 'reviewed', updated_at = $2 WHERE id = $3")
        .bind(stored.to_string())
        .bind(crate::store::now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(visible(&s, &caller, id).await?))
}

/// Body of `POST /api/v1/units/{id}/downtime`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDowntime {
    /// out_of_service | maintenance (defrost, move, repair)
    pub kind: String,
    pub reason: String,
    /// Start (RFC 3339); default now.
    #[serde(default)]
    pub from: Option<String>,
    /// End (RFC 3339); required for maintenance, open-ended for out of service.
    #[serde(default)]
    pub until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Downtime {
    pub id: i64,
    pub kind: String,
    pub reason: String,
    pub from: String,
    pub until: Option<String>,
    pub created_by: String,
}

fn downtime_from_row(r: &AnyRow) -> Result<Downtime, sqlx::Error> {
    Ok(Downtime {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        reason: r.try_get("reason")?,
        from: rfc3339(r.try_get("from_ts")?),
        until: r.try_get::<Option<i64>, _>("until_ts")?.map(rfc3339),
        created_by: r.try_get("created_by")?,
    })
}

#[derive(Serialize, ToSchema)]
pub struct DowntimeList {
    pub downtime: Vec<Downtime>,
}

/// Marks a unit out of service or in maintenance: readings are kept and excursions recorded,
/// with the reason, but nobody is paged.
#[utoipa::path(post, path = "/api/v1/units/{id}/downtime", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewDowntime,
    responses((status = 201, body = Downtime), (status = 400), (status = 404)))]
async fn add_downtime(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<NewDowntime>,
) -> Result<(axum::http::StatusCode, Json<Downtime>), ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    if !["out_of_service", "maintenance"].contains(&body.kind.as_str()) {
        return Err(ApiError::bad_request("\"kind\" must be out_of_service or maintenance"));
    }
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "\"reason\" is required (e.g. \"defrost\", \"moving the unit\")",
        ));
    }
    let now = crate::store::now_millis();
    // Default: the start of this minute, so a reading stamped in whole seconds just now is covered.
    let from = query_time("from", body.from.as_deref())?.unwrap_or(now - now.rem_euclid(60_000));
    let until = query_time("until", body.until.as_deref())?;
    match (body.kind.as_str(), until) {
        ("maintenance", None) => return Err(ApiError::bad_request("a maintenance window needs \"until\"")),
        (_, Some(u)) if u <= from => return Err(ApiError::bad_request("\"until\" must be after \"from\"")),
        ("maintenance", Some(u)) if u - from > 14 * 86_400_000 => {
            return Err(ApiError::bad_request(
                "a maintenance window lasts at most 14 days; use out_of_service for longer",
            ))
        }
        _ => {}
    }
    let new_id: i64 = sqlx::query(
        "INSERT INTO unit_downtime (unit_id, kind, reason, from_ts, until_ts, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(id)
    .bind(&body.kind)
    .bind(body.reason.trim())
    .bind(from)
    .bind(until)
    .bind(caller.actor())
    .bind(now)
    .fetch_one(&s.db.pool)
    .await?
    .try_get("id")?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(Downtime {
            id: new_id,
            kind: body.kind,
            reason: body.reason.trim().to_string(),
            from: rfc3339(from),
            until: until.map(rfc3339),
            created_by: caller.actor(),
        }),
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
    let rows = sqlx::query(
        "SELECT id, kind, reason, from_ts, until_ts, created_by FROM unit_downtime WHERE unit_id = $1 ORDER BY from_ts DESC",
    )
    .bind(id)
    .fetch_all(&s.db.pool)
    .await?;
    let downtime = rows.iter().map(downtime_from_row).collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(DowntimeList { downtime }))
}

#[utoipa::path(get, path = "/api/v1/excursions/{id}", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = ExcursionDetail), (status = 404)))]
async fn get_excursion(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<ExcursionDetail>, ApiError> {
    let excursion = visible(&s, &caller, id).await?;
    let alarms = sqlx::query(
        "SELECT a.rule_id, a.rule, a.met_at, a.paged FROM alarms a JOIN alarm_excursions x ON x.alarm_id = a.id \
         WHERE x.excursion_id = $1 ORDER BY a.met_at",
    )
    .bind(id)
    .fetch_all(&s.db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(AlarmInfo {
            rule_id: r.try_get("rule_id")?,
            rule: serde_json::from_str(&r.try_get::<String, _>("rule")?).unwrap_or_default(),
            met_at: rfc3339(r.try_get("met_at")?),
            paged: r.try_get::<i64, _>("paged")? == 1,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let emails = sqlx::query(
        "SELECT purpose, recipient_email, status, attempts, last_error, sent_at FROM outbox WHERE excursion_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&s.db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(EmailInfo {
            purpose: r.try_get("purpose")?,
            to: r.try_get("recipient_email")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            last_error: r.try_get("last_error")?,
            sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(rfc3339),
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(ExcursionDetail {
        excursion,
        alarms,
        emails,
    }))
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
    pub days: Vec<crate::coldchain::daily::Day>,
}

fn parse_day(name: &str, raw: Option<&str>) -> Result<chrono::NaiveDate, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::bad_request(format!("\"{name}\" is required: a date such as 2026-11-25")))?;
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request(format!("\"{name}\" {raw:?} is not a date such as 2026-11-25")))
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
    let unit = units::get(&s.db, &caller.scope, id).await?;
    let (from, to) = (parse_day("from", p.from.as_deref())?, parse_day("to", p.to.as_deref())?);
    if to < from || (to - from).num_days() > 366 {
        return Err(ApiError::bad_request(
            "\"to\" must be on or after \"from\" and at most 366 days later",
        ));
    }
    let location = crate::registry::locations::get(&s.db, &caller.scope, &unit.location).await?;
    let tz: chrono_tz::Tz = location.timezone.parse().unwrap_or(chrono_tz::UTC);
    let start = crate::coldchain::daily::day_start(tz, from);
    let end = crate::coldchain::daily::day_start(tz, to.succ_opt().unwrap_or(to));
    let mut conn = s.db.pool.acquire().await?;
    // A margin on both sides so the first and last readings of each day are weighted right.
    let margin = 6 * 3_600_000;
    let (samples, _, gap_ms) =
        crate::coldchain::evaluate::primary_samples(&mut conn, id, start - margin, end + margin).await?;
    let mut days = crate::coldchain::daily::days(&samples, tz, from, to, (unit.range.min_c, unit.range.max_c), gap_ms);
    let signed = sqlx::query(
        "SELECT day, signed_by, signed_at FROM daily_signoffs WHERE unit_id = $1 AND day >= $2 AND day <= $3",
    )
    .bind(id)
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(&mut *conn)
    .await?;
    for r in signed {
        let day: String = r.try_get("day")?;
        if let Some(d) = days.iter_mut().find(|d| d.date == day) {
            d.signed_by = r.try_get("signed_by")?;
            d.signed_at = Some(rfc3339(r.try_get("signed_at")?));
        }
    }
    Ok(Json(DayList { days }))
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
    responses((status = 201), (status = 400), (status = 404), (status = 409)))]
async fn sign_day(
    State(s): State<AppState>,
    caller: Caller,
    Id((id, date)): Id<(i64, String)>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    // The body is optional: `{"note": "…"}` or nothing.
    let body: SignDay = if body.iter().all(u8::is_ascii_whitespace) {
        SignDay::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))?
    };
    let unit = units::get(&s.db, &caller.scope, id).await?;
    let day = parse_day("date", Some(&date))?;
    let location = crate::registry::locations::get(&s.db, &caller.scope, &unit.location).await?;
    let tz: chrono_tz::Tz = location.timezone.parse().unwrap_or(chrono_tz::UTC);
    if day > chrono::Utc::now().with_timezone(&tz).date_naive() {
        return Err(ApiError::bad_request(format!(
            "{day} has not begun yet in {}",
            location.timezone
        )));
    }
    let now = crate::store::now_millis();
    let note = body.note;
    let inserted = sqlx::query(
        "INSERT INTO daily_signoffs (unit_id, day, signed_by, signed_at, note, source) VALUES ($1, $2, $3, $4, $5, 'api') \
         ON CONFLICT (unit_id, day) DO NOTHING",
    )
    .bind(id)
    .bind(day.to_string())
    .bind(caller.actor())
    .bind(now)
    .bind(note)
    .execute(&s.db.pool)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::Conflict(format!("{day} of unit {id} is already signed off")));
    }
    Ok((
        axum::http::StatusCode::CREATED,
        Json(serde_json::json!({"date": day.to_string(), "signed_by": caller.actor(), "signed_at": rfc3339(now)})),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceAlert {
    pub id: i64,
    pub serial: String,
    pub unit_id: i64,
    pub location: String,
    /// no_data | battery_low | probe_disconnected | calibration_expiring | calibration_expired
    pub kind: String,
    pub detail: String,
    pub started_at: String,
    /// Null while the condition lasts.
    pub ended_at: Option<String>,
    pub acknowledged_by: Option<String>,
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
    let (scope_cond, scope_param) = caller.scope.sql_filter("l.pin", "l.code", 1);
    let open = if f.open == Some(true) {
        " AND d.ended_at IS NULL"
    } else {
        ""
    };
    let rows = sqlx::query(&format!(
        "SELECT d.id, d.serial, d.unit_id, l.code, d.kind, d.detail, d.started_at, d.ended_at, d.acknowledged_by FROM device_alerts d \
         JOIN units u ON u.id = d.unit_id JOIN locations l ON l.code = u.location_code WHERE {scope_cond}{open} \
         ORDER BY d.started_at DESC, d.id DESC LIMIT 10000"
    ))
    .bind(scope_param.unwrap_or_default())
    .fetch_all(&s.db.pool)
    .await?;
    let device_alerts = rows
        .iter()
        .map(|r| {
            Ok(DeviceAlert {
                id: r.try_get("id")?,
                serial: r.try_get("serial")?,
                unit_id: r.try_get("unit_id")?,
                location: r.try_get("code")?,
                kind: r.try_get("kind")?,
                detail: r.try_get("detail")?,
                started_at: rfc3339(r.try_get("started_at")?),
                ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
                acknowledged_by: r.try_get("acknowledged_by")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(DeviceAlertList { device_alerts }))
}

#[derive(Serialize, ToSchema)]
pub struct RuleChange {
    /// unit_rules | unit_range
    pub subject: String,
    pub before: Option<serde_json::Value>,
    pub after: serde_json::Value,
    pub changed_by: String,
    pub changed_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct RuleHistory {
    pub changes: Vec<RuleChange>,
}

/// Every change to the unit's rules and range: who, when, before and after.
#[utoipa::path(get, path = "/api/v1/units/{id}/rules/history", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = RuleHistory), (status = 404)))]
async fn rule_history(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<RuleHistory>, ApiError> {
    units::get(&s.db, &caller.scope, id).await?;
    let rows = sqlx::query(
        "SELECT subject, before, after, changed_by, changed_at FROM rule_changes WHERE unit_id = $1 ORDER BY changed_at, id",
    )
    .bind(id)
    .fetch_all(&s.db.pool)
    .await?;
    let json = |v: Option<String>| v.and_then(|s| serde_json::from_str(&s).ok());
    let changes = rows
        .iter()
        .map(|r| {
            Ok(RuleChange {
                subject: r.try_get("subject")?,
                before: json(r.try_get("before")?),
                after: json(Some(r.try_get("after")?)).unwrap_or_default(),
                changed_by: r.try_get("changed_by")?,
                changed_at: rfc3339(r.try_get("changed_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(RuleHistory { changes }))
}

/// Acknowledges a logger condition (stops its escalation).
#[utoipa::path(post, path = "/api/v1/device-alerts/{id}/acknowledge", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404)))]
async fn acknowledge_device(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<axum::http::StatusCode, ApiError> {
    let row = sqlx::query(
        "SELECT l.pin, l.code FROM device_alerts d JOIN units u ON u.id = d.unit_id JOIN locations l ON l.code = u.location_code WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(&s.db.pool)
    .await?
    .filter(|r| caller.scope.covers_code(&r.try_get::<String, _>("pin").unwrap_or_default(), &r.try_get::<String, _>("code").unwrap_or_default()))
    .ok_or_else(|| ApiError::NotFound(format!("no device alert {id}")))?;
    let _ = row;
    crate::alerts::ack::acknowledge_device(&s.db, id, &caller.actor()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
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
    let now = crate::store::now_millis();
    let done = sqlx::query(
        "UPDATE unit_downtime SET until_ts = $1 WHERE id = $2 AND unit_id = $3 AND from_ts <= $1 AND (until_ts IS NULL OR until_ts > $1)",
    )
    .bind(now)
    .bind(downtime_id)
    .bind(id)
    .execute(&s.db.pool)
    .await?
    .rows_affected();
    let r = sqlx::query(
        "SELECT id, kind, reason, from_ts, until_ts, created_by FROM unit_downtime WHERE id = $1 AND unit_id = $2",
    )
    .bind(downtime_id)
    .bind(id)
    .fetch_optional(&s.db.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no downtime {downtime_id} on unit {id}")))?;
    if done == 0 {
        return Err(ApiError::Conflict(
            "this period is not in force now (it ended, or has not begun)".into(),
        ));
    }
    Ok(Json(downtime_from_row(&r)?))
}
