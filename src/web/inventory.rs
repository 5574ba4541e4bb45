//! Routes of the inventory: catalog, stock, movements, lots, transfers, reconciliations and
//! holds. How doses are routed and followed up is [`super::doses`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::StateCoordinator;
use super::error::ApiError;
use super::extract::{page_of, Body, Id, PageParams, Params};
use super::AppState;
use crate::accounts::Caller;
use crate::inventory::catalog::{self, NewProduct, Product};
use crate::inventory::holds::{self, Hold, NewHold};
use crate::inventory::ledger::{self, Event, Kind};
use crate::inventory::lots::{self, LotCorrection, LotRecord};
use crate::inventory::movements::{self, Adjustment, Movement, Receipt, Removal};
use crate::inventory::reconcile::{self, NewReconciliation, Reconciliation};
use crate::inventory::stock::{self, StockLine};
use crate::inventory::transfers::{self, Decision, NewTransfer, Transfer};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/catalog/products", get(list_products).post(add_product))
        .route("/inventory", get(inventory_across))
        .route("/locations/{code}/inventory", get(inventory))
        .route("/locations/{code}/receipts", post(receive))
        .route("/locations/{code}/wastage", post(waste))
        .route("/locations/{code}/returns", post(give_back))
        .route("/locations/{code}/adjustments", post(adjust))
        .route("/locations/{code}/stock-events/{id}/reverse", post(reverse))
        .route("/locations/{code}/lots/{lot_id}/ledger", get(lot_ledger))
        .route("/lots/{id}", put(correct_lot))
        .route("/locations/{code}/transfers", get(list_transfers).post(transfer))
        .route("/transfers/{id}", get(get_transfer))
        .route("/transfers/{id}/approve", post(approve_transfer))
        .route("/transfers/{id}/reject", post(reject_transfer))
        .route(
            "/locations/{code}/reconciliations",
            get(list_reconciliations).post(reconcile),
        )
        .route("/locations/{code}/holds", get(list_holds).post(place_hold))
        .route("/holds/{id}/release", post(release_hold))
        .route("/excursions/{id}/holds", get(excursion_holds))
}

#[derive(Serialize, ToSchema)]
pub struct ProductList {
    pub products: Vec<Product>,
}

/// The vaccine catalog: products by unit-of-sale NDC, with CVX and MVX.
#[utoipa::path(get, path = "/api/v1/catalog/products", tag = "inventory", security(("bearer" = [])),
    responses((status = 200, body = ProductList)))]
async fn list_products(State(s): State<AppState>, _caller: Caller) -> Result<Json<ProductList>, ApiError> {
    Ok(Json(ProductList {
        products: catalog::list(&s.db).await?,
    }))
}

/// Adds or corrects a product (state coordinators); CDC's files come in with `vfc catalog import`.
#[utoipa::path(post, path = "/api/v1/catalog/products", tag = "inventory", security(("bearer" = [])),
    request_body = NewProduct, responses((status = 201, body = Product), (status = 400), (status = 403)))]
async fn add_product(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Body(body): Body<NewProduct>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    Ok((StatusCode::CREATED, Json(catalog::add(&s.db, &caller, &body).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InventoryQuery {
    /// usable | on_hold | expiring | expired
    status: Option<String>,
    /// Also list lots with nothing on hand.
    #[serde(default)]
    include_empty: bool,
}

#[derive(Serialize, ToSchema)]
pub struct LotList {
    pub lots: Vec<StockLine>,
}

/// On hand per lot and unit, with status and cumulative exposure.
#[utoipa::path(get, path = "/api/v1/locations/{code}/inventory", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path), InventoryQuery), responses((status = 200, body = LotList), (status = 404)))]
async fn inventory(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(q): Params<InventoryQuery>,
) -> Result<Json<LotList>, ApiError> {
    Ok(Json(LotList {
        lots: stock::of_location(&s.db, &caller, &code, q.status.as_deref(), q.include_empty).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AcrossQuery {
    /// usable | on_hold | expiring | expired
    status: Option<String>,
}

/// Stock across every location the token sees, e.g. `?status=expiring` for the program's
/// 90-day expiry list.
#[utoipa::path(get, path = "/api/v1/inventory", tag = "inventory", security(("bearer" = [])),
    params(AcrossQuery), responses((status = 200, body = LotList)))]
async fn inventory_across(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<AcrossQuery>,
) -> Result<Json<LotList>, ApiError> {
    Ok(Json(LotList {
        lots: stock::across(&s.db, &caller.scope, q.status.as_deref()).await?,
    }))
}

/// Records a shipment put into a unit; lots are created on first receipt.
#[utoipa::path(post, path = "/api/v1/locations/{code}/receipts", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Receipt,
    responses((status = 201, body = Movement), (status = 400), (status = 404)))]
async fn receive(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<Receipt>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(movements::receive(&s.db, &caller, &code, &body).await?),
    ))
}

/// Wastage: doses disposed of on site, with the reason code.
#[utoipa::path(post, path = "/api/v1/locations/{code}/wastage", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Removal,
    responses((status = 201, body = Movement), (status = 400), (status = 409)))]
async fn waste(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<Removal>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(movements::remove(&s.db, &caller, &code, Kind::Wastage, &body).await?),
    ))
}

/// A return: unopened expired or spoiled doses sent back, with the reason code.
#[utoipa::path(post, path = "/api/v1/locations/{code}/returns", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Removal,
    responses((status = 201, body = Movement), (status = 400), (status = 409)))]
async fn give_back(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<Removal>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(movements::remove(&s.db, &caller, &code, Kind::Return, &body).await?),
    ))
}

/// An adjustment (+ or −) with its reason.
#[utoipa::path(post, path = "/api/v1/locations/{code}/adjustments", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = Adjustment,
    responses((status = 201, body = Movement), (status = 400), (status = 409)))]
async fn adjust(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<Adjustment>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(movements::adjust(&s.db, &caller, &code, &body).await?),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reverse {
    /// Why the event was a mistake.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Reversed {
    pub event_id: i64,
}

/// Reverses a receipt, wastage, return or adjustment entered by mistake (a new, opposite event).
#[utoipa::path(post, path = "/api/v1/locations/{code}/stock-events/{id}/reverse", tag = "inventory",
    security(("bearer" = [])), params(("code" = String, Path), ("id" = i64, Path)), request_body = Reverse,
    responses((status = 201, body = Reversed), (status = 404), (status = 409)))]
async fn reverse(
    State(s): State<AppState>,
    caller: Caller,
    Id((code, id)): Id<(String, i64)>,
    Body(body): Body<Reverse>,
) -> Result<(StatusCode, Json<Reversed>), ApiError> {
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request("\"reason\" is required"));
    }
    let event_id = ledger::reverse_at(
        &s.db,
        &caller.scope,
        &code,
        id,
        body.reason.trim(),
        &crate::accounts::audit::Who::of(&caller),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Reversed { event_id })))
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// Where every dose of a lot went at this location: its ledger, oldest first.
#[utoipa::path(get, path = "/api/v1/locations/{code}/lots/{lot_id}/ledger", tag = "inventory",
    security(("bearer" = [])), params(("code" = String, Path), ("lot_id" = i64, Path)),
    responses((status = 200, body = EventList), (status = 404)))]
async fn lot_ledger(
    State(s): State<AppState>,
    caller: Caller,
    Id((code, lot_id)): Id<(String, i64)>,
) -> Result<Json<EventList>, ApiError> {
    Ok(Json(EventList {
        events: stock::ledger(&s.db, &caller, &code, lot_id).await?,
    }))
}

/// Corrects a lot's expiration date for every location that holds it (state coordinators).
#[utoipa::path(put, path = "/api/v1/lots/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = LotCorrection,
    responses((status = 200, body = LotRecord), (status = 403), (status = 404)))]
async fn correct_lot(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(id): Id<i64>,
    Body(body): Body<LotCorrection>,
) -> Result<Json<LotRecord>, ApiError> {
    Ok(Json(lots::correct_lot(&s.db, &caller, id, &body).await?))
}

#[derive(Serialize, ToSchema)]
pub struct TransferList {
    pub transfers: Vec<Transfer>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/locations/{code}/transfers", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path), PageParams), responses((status = 200, body = TransferList), (status = 400), (status = 404)))]
async fn list_transfers(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(p): Params<PageParams>,
) -> Result<Json<TransferList>, ApiError> {
    let (transfers, next) = transfers::list_transfers(&s.db, &caller, &code, p.page()?).await?;
    Ok(Json(TransferList {
        transfers,
        next: next.map(|n| n.to_string()),
    }))
}

/// Transfers doses: between units or suffix locations of a PIN at once; to another PIN after
/// the state approves.
#[utoipa::path(post, path = "/api/v1/locations/{code}/transfers", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = NewTransfer,
    responses((status = 201, body = Transfer), (status = 400), (status = 409)))]
async fn transfer(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<NewTransfer>,
) -> Result<(StatusCode, Json<Transfer>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(transfers::transfer(&s.db, &caller, &code, &body).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/transfers/{id}", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Transfer), (status = 404)))]
async fn get_transfer(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Transfer>, ApiError> {
    Ok(Json(transfers::visible_transfer(&s.db, &caller.scope, id).await?))
}

/// Approves a transfer to another PIN (state coordinators): the doses move.
#[utoipa::path(post, path = "/api/v1/transfers/{id}/approve", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = Transfer), (status = 403), (status = 409)))]
async fn approve_transfer(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(id): Id<i64>,
    body: Option<Json<Decision>>,
) -> Result<Json<Transfer>, ApiError> {
    transfers::visible_transfer(&s.db, &caller.scope, id).await?;
    let body = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(transfers::decide(&s.db, &caller, id, true, &body).await?))
}

/// Rejects a transfer to another PIN (state coordinators), with a note saying why.
#[utoipa::path(post, path = "/api/v1/transfers/{id}/reject", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = Transfer), (status = 400), (status = 403), (status = 409)))]
async fn reject_transfer(
    State(s): State<AppState>,
    StateCoordinator(caller): StateCoordinator,
    Id(id): Id<i64>,
    Body(body): Body<Decision>,
) -> Result<Json<Transfer>, ApiError> {
    transfers::visible_transfer(&s.db, &caller.scope, id).await?;
    Ok(Json(transfers::decide(&s.db, &caller, id, false, &body).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ReconciliationList {
    pub reconciliations: Vec<Reconciliation>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// A location's reconciliations, latest first.
#[utoipa::path(get, path = "/api/v1/locations/{code}/reconciliations", tag = "inventory",
    security(("bearer" = [])), params(("code" = String, Path), PageParams),
    responses((status = 200, body = ReconciliationList), (status = 400), (status = 404)))]
async fn list_reconciliations(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(p): Params<PageParams>,
) -> Result<Json<ReconciliationList>, ApiError> {
    let (reconciliations, next) = reconcile::list(&s.db, &caller, &code, p.page()?).await?;
    Ok(Json(ReconciliationList {
        reconciliations,
        next: next.map(|n| n.to_string()),
    }))
}

/// Records a physical count as of a time; differences become adjustments with their reasons.
#[utoipa::path(post, path = "/api/v1/locations/{code}/reconciliations", tag = "inventory",
    security(("bearer" = [])), params(("code" = String, Path)), request_body = NewReconciliation,
    responses((status = 201, body = Reconciliation), (status = 400), (status = 409)))]
async fn reconcile(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<NewReconciliation>,
) -> Result<(StatusCode, Json<Reconciliation>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(reconcile::record(&s.db, &caller, &code, &body).await?),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct HoldList {
    pub holds: Vec<Hold>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoldQuery {
    /// Only holds still in force.
    #[serde(default)]
    open: bool,
    /// At most this many (1 to 1000, default 100), newest first.
    limit: Option<i64>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// "Do Not Use" holds at a location, newest first.
#[utoipa::path(get, path = "/api/v1/locations/{code}/holds", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path), HoldQuery), responses((status = 200, body = HoldList), (status = 404)))]
async fn list_holds(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(q): Params<HoldQuery>,
) -> Result<Json<HoldList>, ApiError> {
    let page = page_of(q.limit, q.cursor.as_deref())?;
    let (holds, next) = holds::list(&s.db, &caller, &code, q.open, page).await?;
    Ok(Json(HoldList {
        holds,
        next: next.map(|n| n.to_string()),
    }))
}

/// Holds stock by hand (e.g. a recall notice).
#[utoipa::path(post, path = "/api/v1/locations/{code}/holds", tag = "inventory", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = NewHold,
    responses((status = 201, body = Hold), (status = 400), (status = 409)))]
async fn place_hold(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Body(body): Body<NewHold>,
) -> Result<(StatusCode, Json<Hold>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(holds::place_hold(&s.db, &caller, &code, &body).await?),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub note: String,
}

/// Releases a hold placed by hand; an excursion's hold ends with the determination in its review.
#[utoipa::path(post, path = "/api/v1/holds/{id}/release", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = Release,
    responses((status = 200, body = Hold), (status = 404), (status = 409)))]
async fn release_hold(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<Release>,
) -> Result<Json<Hold>, ApiError> {
    if body.note.trim().is_empty() {
        return Err(ApiError::bad_request(
            "\"note\" is required: why the stock may be used again",
        ));
    }
    Ok(Json(holds::release(&s.db, &caller, id, body.note.trim()).await?))
}

/// The lots an excursion put on hold, with their determinations once reviewed.
#[utoipa::path(get, path = "/api/v1/excursions/{id}/holds", tag = "inventory", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = HoldList), (status = 404)))]
async fn excursion_holds(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<Json<HoldList>, ApiError> {
    // As many as the lots that were in the unit: one page.
    Ok(Json(HoldList {
        holds: holds::of_visible_excursion(&s.db, &caller.scope, id).await?,
        next: None,
    }))
}
