//! The API's OpenAPI document at `/api/openapi.json`, generated from the handlers.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "vfc-monitor", description = "Vaccine cold-chain, inventory and ordering monitor for the VFC program. \
        Every /api/v1 route needs `Authorization: Bearer <token>` or the session cookie of \
        POST /api/v1/session (then unsafe methods need `X-CSRF-Token`); errors are {\"error\":{\"code\",\"message\"}}."),
    paths(
        super::registry::list_locations, super::registry::create_location, super::registry::get_location,
        super::registry::update_location, super::registry::list_units, super::registry::create_unit,
        super::registry::get_unit, super::registry::update_unit, super::registry::assign_logger, super::registry::unassign_logger,
        super::registry::unit_readings, super::registry::list_loggers, super::registry::get_logger,
        super::registry::logger_readings, super::telemetry::list,
        super::gateways::list, super::gateways::register, super::gateways::remove, super::gateways::list_held,
        super::coldchain::get_program, super::coldchain::put_program, super::coldchain::get_unit_rules,
        super::coldchain::put_unit_rules, super::excursions::list_excursions, super::excursions::get_excursion,
        super::excursions::acknowledge, super::excursions::review, super::coldchain::add_downtime, super::coldchain::list_downtime, super::coldchain::end_downtime,
        super::coldchain::daily, super::coldchain::sign_day, super::coldchain::device_alerts, super::coldchain::rule_history, super::coldchain::acknowledge_device,
        super::coldchain::evaluation_failures, super::coldchain::rule_changes,
        super::inventory::list_products, super::inventory::add_product, super::inventory::inventory,
        super::inventory::inventory_across, super::inventory::receive, super::inventory::waste, super::inventory::give_back,
        super::inventory::adjust, super::inventory::reverse, super::inventory::lot_ledger, super::inventory::correct_lot, super::inventory::list_transfers,
        super::inventory::transfer, super::inventory::get_transfer, super::inventory::approve_transfer,
        super::inventory::reject_transfer, super::inventory::list_reconciliations, super::inventory::reconcile,
        super::inventory::list_holds, super::inventory::place_hold, super::inventory::release_hold,
        super::inventory::excursion_holds, super::doses::product_units, super::doses::set_product_unit,
        super::doses::facility_ids, super::doses::set_facility_ids, super::doses::exceptions,
        super::doses::resolve_exception, super::doses::borrowing, super::doses::complete_borrowing,
        super::doses::revaccination, super::hl7::hl7, super::hl7::administrations,
        super::accounts::create_account, super::accounts::list_accounts, super::accounts::get_account,
        super::accounts::update_account, super::accounts::disable_account, super::accounts::enable_account,
        super::accounts::reset_second_factor, super::accounts::create_token, super::accounts::list_tokens,
        super::accounts::location_tokens, super::accounts::revoke_token, super::accounts::audit_trail,
        super::session::sign_in, super::session::sign_out, super::session::me, super::session::start_totp,
        super::session::confirm_totp, super::session::accept_invitation, super::session::request_reset,
        super::session::reset_password,
        super::orders::get_profile, super::orders::put_profile, super::orders::no_doses, super::orders::prerequisites,
        super::orders::waive, super::orders::suggestion, super::orders::location_orders, super::orders::create,
        super::orders::queue, super::orders::get_order, super::orders::edit, super::orders::submit,
        super::orders::local_approve, super::orders::approve, super::orders::deny, super::orders::give_back,
        super::orders::cancel, super::orders::close_line, super::orders::receive_order, super::orders::export,
        super::orders::export_again, super::orders::shipments,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
