//! Routes about doses administered, besides taking them in (`super::hl7`): which unit a
//! product's doses come from and which ids an EHR uses for a location, and the follow-up lists
//! (decrement exceptions, borrowing, revaccination review).

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{page_of, Body, Id, PageParams, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::inventory::doses::review::{self, Borrowing, BorrowingReason, ReviewDose};
use crate::inventory::doses::{self, DecrementException, Resolution};
use crate::inventory::routing::{self, FacilityIds, ProductUnit};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/locations/{code}/product-units",
            get(product_units).put(set_product_unit),
        )
        .route(
            "/locations/{code}/facility-ids",
            get(facility_ids).put(set_facility_ids),
        )
        .route("/locations/{code}/decrement-exceptions", get(exceptions))
        .route("/decrement-exceptions/{id}/resolve", post(resolve_exception))
        .route("/locations/{code}/borrowing", get(borrowing))
        .route("/borrowing/{id}", put(complete_borrowing))
        .route("/locations/{code}/revaccination-review", get(revaccination))
}

#[derive(Serialize, ToSchema)]
pub struct ProductUnitList {
    pub product_units: Vec<ProductUnit>,
}

#[utoipa::path(get, path = "/api/v1/locations/{code}/product-units", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), responses((status = 200, body = ProductUnitList)))]
async fn product_units(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
) -> Result<Json<ProductUnitList>, ApiError> {
    Ok(Json(ProductUnitList {
        product_units: routing::product_units(&s.db, &caller, &code).await?,
    }))
}

/// Marks the unit a product's daily doses come from (doses administered decrement it first).
#[utoipa::path(put, path = "/api/v1/locations/{code}/product-units", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = ProductUnit,
    responses((status = 200, body = ProductUnitList), (status = 400)))]
async fn set_product_unit(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<ProductUnit>,
) -> Result<Json<ProductUnitList>, ApiError> {
    Ok(Json(ProductUnitList {
        product_units: routing::set_product_unit(&s.db, &caller, &code, &body).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/locations/{code}/facility-ids", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), responses((status = 200, body = FacilityIds)))]
async fn facility_ids(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
) -> Result<Json<FacilityIds>, ApiError> {
    Ok(Json(routing::facility_ids(&s.db, &caller, &code).await?))
}

/// Replaces the EHR facility ids (MSH-4, RXA-11.4) that name this location.
#[utoipa::path(put, path = "/api/v1/locations/{code}/facility-ids", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = FacilityIds,
    responses((status = 200, body = FacilityIds), (status = 400), (status = 409)))]
async fn set_facility_ids(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<FacilityIds>,
) -> Result<Json<FacilityIds>, ApiError> {
    Ok(Json(routing::set_facility_ids(&s.db, &caller, &code, &body).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ExceptionList {
    pub exceptions: Vec<DecrementException>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExceptionQuery {
    /// Include resolved ones.
    #[serde(default)]
    all: bool,
    /// At most this many (1 to 1000, default 100), oldest first.
    limit: Option<i64>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Doses that matched no stock, waiting to be assigned to a lot.
#[utoipa::path(get, path = "/api/v1/locations/{code}/decrement-exceptions", tag = "inventory",
    security(("bearer" = [])), params(("code" = String, Path), ExceptionQuery),
    responses((status = 200, body = ExceptionList), (status = 404)))]
async fn exceptions(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(q): Params<ExceptionQuery>,
) -> Result<Json<ExceptionList>, ApiError> {
    let page = page_of(q.limit, q.cursor.as_deref())?;
    let (exceptions, next) = doses::exceptions_at(&s.db, &caller.scope, &code, q.all, page).await?;
    Ok(Json(ExceptionList {
        exceptions,
        next: next.map(|n| n.to_string()),
    }))
}

/// Assigns a queued dose to a lot (it decrements then), or dismisses it with a reason.
#[utoipa::path(post, path = "/api/v1/decrement-exceptions/{id}/resolve", tag = "inventory",
    security(("bearer" = [])), params(("id" = i64, Path)), request_body = Resolution,
    responses((status = 200, body = DecrementException), (status = 400), (status = 404), (status = 409)))]
async fn resolve_exception(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Resolution>,
) -> Result<Json<DecrementException>, ApiError> {
    Ok(Json(
        doses::resolve_now(
            &s.db,
            &caller.scope,
            id,
            &body,
            &crate::accounts::audit::Who::of(&caller),
        )
        .await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct BorrowingList {
    pub borrowing: Vec<Borrowing>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// Doses given from stock of the other funding, with their reasons (to complete).
#[utoipa::path(get, path = "/api/v1/locations/{code}/borrowing", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path), PageParams), responses((status = 200, body = BorrowingList), (status = 400), (status = 404)))]
async fn borrowing(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(p): Params<PageParams>,
) -> Result<Json<BorrowingList>, ApiError> {
    let (borrowing, next) = review::borrowing(&s.db, &caller, &code, p.page()?).await?;
    Ok(Json(BorrowingList {
        borrowing,
        next: next.map(|n| n.to_string()),
    }))
}

/// Completes a borrowing record's reason.
#[utoipa::path(put, path = "/api/v1/borrowing/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = BorrowingReason,
    responses((status = 200, body = Borrowing), (status = 400), (status = 404)))]
async fn complete_borrowing(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<BorrowingReason>,
) -> Result<Json<Borrowing>, ApiError> {
    Ok(Json(review::complete(&s.db, &caller, id, &body).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ReviewList {
    pub doses: Vec<ReviewDose>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// Doses given from expired, held or exposed lots: the clinic's revaccination review.
#[utoipa::path(get, path = "/api/v1/locations/{code}/revaccination-review", tag = "inventory",
    security(("bearer" = [])), params(("code" = String, Path), PageParams),
    responses((status = 200, body = ReviewList), (status = 400), (status = 404)))]
async fn revaccination(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(p): Params<PageParams>,
) -> Result<Json<ReviewList>, ApiError> {
    let (doses, next) = review::revaccination(&s.db, &caller, &code, p.page()?).await?;
    Ok(Json(ReviewList {
        doses,
        next: next.map(|n| n.to_string()),
    }))
}
