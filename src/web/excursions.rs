//! Routes of excursions: the list, one excursion with its alarms and emails, acknowledgement,
//! and the review (the excursion worksheet).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{query_time, Body, Id, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::alerts::outbox::{self, About, EmailRecord};
use crate::coldchain::excursions::review::{self, Review};
use crate::coldchain::excursions::{self, AlarmInfo, Excursion, Filter, Status};
use crate::domain::LocationCode;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/excursions", get(list_excursions))
        .route("/excursions/{id}", get(get_excursion))
        .route("/excursions/{id}/acknowledge", post(acknowledge))
        .route("/excursions/{id}/review", post(review))
}

#[derive(Serialize, ToSchema)]
pub struct ExcursionList {
    pub excursions: Vec<Excursion>,
}

#[derive(Serialize, ToSchema)]
pub struct ExcursionDetail {
    #[serde(flatten)]
    pub excursion: Excursion,
    /// The rules met, each as it was at the time.
    pub alarms: Vec<AlarmInfo>,
    pub emails: Vec<EmailRecord>,
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

/// Excursions the caller may see, newest first (at most 10,000).
#[utoipa::path(get, path = "/api/v1/excursions", tag = "coldchain", security(("bearer" = [])),
    params(ExcursionFilter), responses((status = 200, body = ExcursionList), (status = 400)))]
async fn list_excursions(
    State(s): State<AppState>,
    caller: Caller,
    Params(f): Params<ExcursionFilter>,
) -> Result<Json<ExcursionList>, ApiError> {
    let filter = Filter {
        // A code that is not one names no location the caller has: the list is empty.
        location: match f.location.as_deref().map(LocationCode::parse) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return Ok(Json(ExcursionList { excursions: vec![] })),
        },
        unit: f.unit,
        status: f
            .status
            .as_deref()
            .map(Status::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("\"status\": {e}")))?,
        from: query_time("from", f.from.as_deref())?,
        to: query_time("to", f.to.as_deref())?,
    };
    Ok(Json(ExcursionList {
        excursions: excursions::list(&s.db, &caller.scope, &filter).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/excursions/{id}", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = ExcursionDetail), (status = 404)))]
async fn get_excursion(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<ExcursionDetail>, ApiError> {
    let excursion = excursions::visible(&s.db, &caller.scope, id).await?;
    Ok(Json(ExcursionDetail {
        excursion,
        alarms: excursions::alarms_of(&s.db, id).await?,
        emails: outbox::about(&s.db, About::Excursion(id)).await?,
    }))
}

/// Acknowledges the alert (stops escalation). Acknowledging again changes nothing.
#[utoipa::path(post, path = "/api/v1/excursions/{id}/acknowledge", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Excursion), (status = 404)))]
async fn acknowledge(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Excursion>, ApiError> {
    excursions::visible(&s.db, &caller.scope, id).await?;
    excursions::acknowledge(&s.db, id, &caller.actor(), &crate::accounts::audit::Who::of(&caller)).await?;
    Ok(Json(excursions::visible(&s.db, &caller.scope, id).await?))
}

/// Records the excursion worksheet (docs/domain.md, "After an excursion") once the unit is back
/// in range; every lot the excursion put on hold needs its determination. A review is a record:
/// a second one is refused (409), even one sent at the same moment.
#[utoipa::path(post, path = "/api/v1/excursions/{id}/review", tag = "coldchain", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Review,
    responses((status = 200, body = Excursion), (status = 400), (status = 404), (status = 409)))]
async fn review(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Review>,
) -> Result<Json<Excursion>, ApiError> {
    let done = review::record(
        &s.db,
        &caller.scope,
        id,
        &body,
        &crate::accounts::audit::Who::of(&caller),
        s.stock.as_ref(),
    )
    .await?;
    Ok(Json(done))
}
