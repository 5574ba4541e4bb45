//! Routes of orders (README, "Ordering"): a location's ordering profile, prerequisites, waivers
//! and suggestion; orders and their life; the state's queue, export batches and shipment files.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::StateCoordinator;
use super::error::ApiError;
use super::extract::{Body, Id, PageParams, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::orders::exchange::{self, Imported};
use crate::orders::export;
use crate::orders::life::{self, Draft, Edit, Submit};
use crate::orders::profile::{self, Profile, ProfileView};
use crate::orders::readiness::{self, Readiness};
use crate::orders::receive::{self, Receive};
use crate::orders::review::{self, Approve, Decision, Reason};
use crate::orders::suggest::{self, Suggestion};
use crate::orders::view::{self, Filter, Order};
use crate::orders::waivers::{self, NewWaiver, NoDoses, NoDosesReport, Waiver};
use crate::orders::Status;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations/{code}/ordering", get(get_profile).put(put_profile))
        .route("/locations/{code}/no-doses-report", post(no_doses))
        .route("/locations/{code}/orders/prerequisites", get(prerequisites))
        .route("/locations/{code}/orders/waivers", post(waive))
        .route("/locations/{code}/orders/suggestion", get(suggestion))
        .route("/locations/{code}/orders", get(location_orders).post(create))
        .route("/orders", get(queue))
        .route("/orders/export", post(export))
        .route("/orders/exports/{id}", get(export_again))
        .route("/orders/{id}", get(get_order).patch(edit))
        .route("/orders/{id}/submit", post(submit))
        .route("/orders/{id}/local-approve", post(local_approve))
        .route("/orders/{id}/approve", post(approve))
        .route("/orders/{id}/deny", post(deny))
        .route("/orders/{id}/return", post(give_back))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/lines/{line_id}/close", post(close_line))
        .route("/orders/{id}/receive", post(receive_order))
        .route("/shipments", post(shipments))
}

/// A location's ordering profile, with the frequency its last 12 months call for beside it.
#[utoipa::path(get, path = "/api/v1/locations/{code}/ordering", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path)), responses((status = 200, body = ProfileView), (status = 404)))]
async fn get_profile(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
) -> Result<Json<ProfileView>, ApiError> {
    Ok(Json(profile::view(&s.db, &caller, &code).await?))
}

/// Sets a location's ordering profile (state coordinators).
#[utoipa::path(put, path = "/api/v1/locations/{code}/ordering", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Profile,
    responses((status = 200, body = ProfileView), (status = 400), (status = 403), (status = 404)))]
async fn put_profile(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(code): Id<String>,
    Body(body): Body<Profile>,
) -> Result<Json<ProfileView>, ApiError> {
    Ok(Json(profile::save(&s.db, &caller, &code, body).await?))
}

/// "No doses were given here since …": satisfies the doses-reported prerequisite.
#[utoipa::path(post, path = "/api/v1/locations/{code}/no-doses-report", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = NoDoses,
    responses((status = 201, body = NoDosesReport), (status = 400), (status = 404)))]
async fn no_doses(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<NoDoses>,
) -> Result<(StatusCode, Json<NoDosesReport>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(waivers::report_no_doses(&s.db, &caller, &code, &body).await?),
    ))
}

/// The prerequisites of an order at this location, computed now; each failed check says what
/// to fix.
#[utoipa::path(get, path = "/api/v1/locations/{code}/orders/prerequisites", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path)), responses((status = 200, body = Readiness), (status = 404)))]
async fn prerequisites(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
) -> Result<Json<Readiness>, ApiError> {
    Ok(Json(readiness::of_location(&s.db, &caller, &code).await?))
}

/// Waives one check for one location, for its next submission or the program's days (state).
#[utoipa::path(post, path = "/api/v1/locations/{code}/orders/waivers", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = NewWaiver,
    responses((status = 201, body = Waiver), (status = 400), (status = 403), (status = 404)))]
async fn waive(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(code): Id<String>,
    Body(body): Body<NewWaiver>,
) -> Result<(StatusCode, Json<Waiver>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(waivers::waive(&s.db, &caller, &code, &body).await?),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SetQuery {
    /// The order set (default `routine`).
    set: Option<String>,
}

/// Suggested quantities: one line per brand of the set and per funding, with every input.
#[utoipa::path(get, path = "/api/v1/locations/{code}/orders/suggestion", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path), SetQuery), responses((status = 200, body = Suggestion), (status = 400), (status = 404)))]
async fn suggestion(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(q): Params<SetQuery>,
) -> Result<Json<Suggestion>, ApiError> {
    Ok(Json(
        suggest::of_location(&s.db, &caller, &code, q.set.as_deref()).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<Order>,
    /// The `cursor` of the next page, if there is one.
    pub next: Option<String>,
}

/// A location's orders, newest first.
#[utoipa::path(get, path = "/api/v1/locations/{code}/orders", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path), PageParams), responses((status = 200, body = OrderList), (status = 404)))]
async fn location_orders(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(p): Params<PageParams>,
) -> Result<Json<OrderList>, ApiError> {
    let (orders, next) = view::of_location(&s.db, &caller, &code, p.page()?).await?;
    Ok(Json(OrderList {
        orders,
        next: next.map(|n| n.to_string()),
    }))
}

/// Starts an order (a draft) for an order set.
#[utoipa::path(post, path = "/api/v1/locations/{code}/orders", tag = "orders", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Draft,
    responses((status = 201, body = Order), (status = 400), (status = 404)))]
async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<Draft>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(life::create(&s.db, &caller, &code, &body).await?),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// e.g. in_review (the state's review queue)
    status: Option<String>,
    pin: Option<String>,
    urgent: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Orders the caller sees, oldest first: the state's queue with `?status=in_review`. Each order
/// carries its location's stored prerequisite status, its previous order's date and
/// requested-minus-suggested per line.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(QueueQuery), responses((status = 200, body = OrderList), (status = 400)))]
async fn queue(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<QueueQuery>,
) -> Result<Json<OrderList>, ApiError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(Status::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status {raw:?} is not one of {}",
                Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?),
    };
    let f = Filter {
        status,
        pin: q.pin.filter(|p| !p.is_empty()),
        urgent: q.urgent,
        location: None,
    };
    let page = super::extract::page_of(q.limit, q.cursor.as_deref())?;
    let (orders, next) = view::list(&s.db, &caller.scope, &f, page, false).await?;
    Ok(Json(OrderList {
        orders,
        next: next.map(|n| n.to_string()),
    }))
}

/// An order: lines, statuses, history, waivers, shipments and emails.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Order), (status = 404)))]
async fn get_order(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Order>, ApiError> {
    Ok(Json(view::get(&s.db, &caller, id).await?))
}

/// Changes a draft or a returned order (set, lines, note).
#[utoipa::path(patch, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Edit,
    responses((status = 200, body = Order), (status = 400), (status = 404), (status = 409)))]
async fn edit(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Edit>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(life::edit(&s.db, &caller, id, &body).await?))
}

/// Submits an order: 409 `prerequisites` with the failed checks, or 409 `outside_window`
/// unless urgent with a reason. Clinic staff may not submit.
#[utoipa::path(post, path = "/api/v1/orders/{id}/submit", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Submit,
    responses((status = 200, body = Order), (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn submit(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Submit>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(life::submit(&s.db, &caller, id, &body).await?))
}

/// The provider of record's approval, where the program asks for one before the state's.
#[utoipa::path(post, path = "/api/v1/orders/{id}/local-approve", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Order), (status = 403), (status = 404), (status = 409)))]
async fn local_approve(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Order>, ApiError> {
    Ok(Json(life::local_approve(&s.db, &caller, id).await?))
}

/// Approves an order, reducing lines with a reason (state).
#[utoipa::path(post, path = "/api/v1/orders/{id}/approve", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Approve,
    responses((status = 200, body = Order), (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn approve(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(id): Id<i64>,
    Body(body): Body<Approve>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(review::approve(&s.db, &caller, id, &body).await?))
}

/// Denies an order, with the reason (state).
#[utoipa::path(post, path = "/api/v1/orders/{id}/deny", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Reason,
    responses((status = 200, body = Order), (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn deny(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(id): Id<i64>,
    Body(body): Body<Reason>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(review::decide(&s.db, &caller, id, Decision::Deny, &body).await?))
}

/// Returns an order for correction, with the reason (state); it expires if not resubmitted.
#[utoipa::path(post, path = "/api/v1/orders/{id}/return", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Reason,
    responses((status = 200, body = Order), (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn give_back(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(id): Id<i64>,
    Body(body): Body<Reason>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(review::decide(&s.db, &caller, id, Decision::Return, &body).await?))
}

/// Cancels an order before it is approved, with the reason.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Reason,
    responses((status = 200, body = Order), (status = 400), (status = 404), (status = 409)))]
async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Reason>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(review::decide(&s.db, &caller, id, Decision::Cancel, &body).await?))
}

/// Closes a line that will not ship, e.g. a cancelled backorder (state).
#[utoipa::path(post, path = "/api/v1/orders/{id}/lines/{line_id}/close", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path), ("line_id" = i64, Path)), request_body = Reason,
    responses((status = 200, body = Order), (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn close_line(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id((id, line_id)): Id<(i64, i64)>,
    Body(body): Body<Reason>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(review::close_line(&s.db, &caller, id, line_id, &body).await?))
}

/// Receives shipment lines into stock (409 with what was received for a line received before).
#[utoipa::path(post, path = "/api/v1/orders/{id}/receive", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Receive,
    responses((status = 200, body = Order), (status = 400), (status = 404), (status = 409)))]
async fn receive_order(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Receive>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(receive::receive(&s.db, &caller, id, &body).await?))
}

fn csv_response(batch: export::Batch) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::HeaderName::from_static("x-export-batch"), batch.id.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"vfc-orders-{}.csv\"", batch.id),
            ),
        ],
        batch.csv,
    )
        .into_response()
}

/// Exports every approved order not yet exported as CSV, marking them sent (state). The batch
/// id is in `X-Export-Batch`.
#[utoipa::path(post, path = "/api/v1/orders/export", tag = "orders", security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403)))]
async fn export(State(s): State<AppState>, StateCoordinator(caller): StateCoordinator) -> Result<Response, ApiError> {
    Ok(csv_response(export::export(&s.db, &caller).await?))
}

/// An export batch again, as it was first sent (state).
#[utoipa::path(get, path = "/api/v1/orders/exports/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, content_type = "text/csv", body = String), (status = 403), (status = 404)))]
async fn export_again(
    State(s): State<AppState>,
    StateCoordinator(_caller): StateCoordinator,
    Id(id): Id<i64>,
) -> Result<Response, ApiError> {
    Ok(csv_response(export::batch(&s.db, id).await?))
}

/// Imports the distributor's shipment file (state, `text/csv`): all or nothing, 422 with every
/// bad row.
#[utoipa::path(post, path = "/api/v1/shipments", tag = "orders", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = Imported), (status = 400), (status = 403), (status = 422)))]
async fn shipments(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    body: axum::body::Bytes,
) -> Result<Json<Imported>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("send the shipment file as UTF-8 CSV (Content-Type: text/csv)"))?;
    Ok(Json(exchange::import_shipments(&s.db, &caller, text).await?))
}
