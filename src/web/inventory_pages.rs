//! A location's inventory (`/locations/{code}/inventory`): its lots by unit, marked by expiry
//! (expired, under 30 days, 30–90 days) and when on "Do Not Use" hold, with each lot's ledger
//! at `/locations/{code}/inventory?lot={id}`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use minijinja::{context, Value};

use super::error::ApiError;
use super::extract::Id;
use super::AppState;
use crate::inventory::stock;

pub fn router() -> Router<AppState> {
    Router::new().route("/locations/{code}/inventory", get(page))
}

#[derive(serde::Deserialize, Default)]
struct InventoryQuery {
    /// A lot whose ledger to show.
    lot: Option<i64>,
    /// What a form just recorded.
    done: Option<String>,
}

/// How soon a lot expires, as the page colours it (and says in words).
fn band(expires_on: &str, today: NaiveDate) -> (&'static str, &'static str) {
    match NaiveDate::parse_from_str(expires_on, "%Y-%m-%d") {
        Ok(d) if d < today => ("expired", "expired"),
        Ok(d) if (d - today).num_days() < 30 => ("under-30", "expires within 30 days"),
        Ok(d) if (d - today).num_days() <= 90 => ("under-90", "expires within 90 days"),
        Ok(_) => ("later", ""),
        Err(_) => ("expired", "expiry unreadable"),
    }
}

async fn page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(q): Query<InventoryQuery>,
) -> Response {
    let (caller, csrf_token) = match super::pages::viewer(&s, &headers, &format!("/locations/{code}/inventory")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let location = match crate::registry::locations::get(&s.db, &caller.scope, &code).await {
        Ok(l) => l,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let lines = match stock::of_location(&s.db, &caller, &location.code, None, false).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = location.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let mut units: BTreeMap<(String, i64), Vec<Value>> = BTreeMap::new();
    for l in &lines {
        let (class, words) = band(&l.expires_on, today);
        units.entry((l.unit.clone(), l.unit_id)).or_default().push(context! {
            lot_id => l.lot_id,
            product => l.product.clone(),
            ndc => l.ndc.clone(),
            lot => l.lot.clone(),
            expires_on => l.expires_on.clone(),
            funding => l.funding.to_uppercase(),
            on_hand => l.on_hand,
            class,
            words,
            on_hold => !l.holds.is_empty(),
            excursions => l.holds.iter().filter_map(|h| h.excursion_id).collect::<Vec<_>>(),
        });
    }
    let ledger = match q.lot {
        Some(lot) => match stock::ledger(&s.db, &caller, &location.code, lot).await {
            Ok(events) => Some(context! {
                lot,
                title => lines.iter().find(|l| l.lot_id == lot).map(|l| format!("{} lot {}", l.product, l.lot)),
                events => events.iter().map(|e| context! {
                    kind => e.kind.replace('_', " "),
                    doses => e.doses,
                    at => chrono::DateTime::parse_from_rfc3339(&e.occurred_at)
                        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|_| e.occurred_at.clone()),
                    reason => e.reason_code.clone(),
                    note => e.note.clone(),
                    source => e.source.clone(),
                    actor => e.actor.clone(),
                    reversed => e.reversed_by.is_some(),
                }).collect::<Vec<_>>(),
            }),
            Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    super::pages::render(
        StatusCode::OK,
        "inventory.html",
        context! {
            title => format!("Inventory of {} ({})", location.name, location.code),
            code => location.code.clone(),
            units => units.into_iter().map(|((name, id), lots)| context! { name, id, lots }).collect::<Vec<_>>(),
            ledger,
            here => "",
            notice => match q.done.as_deref() {
                Some("received") => Some("The receipt is recorded: its line is at the end of the lot's ledger."),
                Some("wasted") => Some("The wastage is recorded: its line is at the end of the lot's ledger."),
                Some("returned") => Some("The return is recorded: its line is at the end of the lot's ledger."),
                _ => None,
            },
            today => today.to_string(),
            csrf_token,
            wide => true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lot_is_marked_by_how_soon_it_expires() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(band("2026-11-30", today).0, "expired");
        assert_eq!(band("2026-12-30", today).0, "under-30");
        assert_eq!(band("2027-02-28", today).0, "under-90");
        assert_eq!(band("2027-06-01", today).0, "later");
    }
}
