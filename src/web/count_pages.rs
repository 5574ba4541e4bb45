//! The reconciliation count sheet as a page (`/locations/{code}/reconciliations`): every lot per
//! unit, prefilled with what the ledger expects, so only the differences need a reason
//! (docs/domain.md, "Inventory"); the earlier counts below.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::extract::Id;
use super::forms::{local, place_and_viewer, writer_at, zone, ListQuery, Sent};
use super::AppState;
use crate::accounts::Caller;
use crate::inventory::reconcile::{self, Count, NewReconciliation};
use crate::inventory::stock;
use crate::registry::locations::Location;
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new().route("/locations/{code}/reconciliations", get(sheet).post(count))
}

async fn sheet(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let path = format!("/locations/{code}/reconciliations");
    match place_and_viewer(&s, &headers, &code, &path).await {
        Ok((caller, csrf, place)) => {
            let notice = q
                .done
                .as_deref()
                .map(|n| format!("The count is recorded; {n} difference(s) became adjustments with their reasons."));
            count_sheet(&s, &caller, csrf, &place, notice, Sent::default()).await
        }
        Err(r) => r,
    }
}

/// The sheet: every lot on hand per unit with the count the ledger expects as of the moment the
/// sheet was opened (kept in the form, so doses given while counting do not show as
/// differences).
async fn count_sheet(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    place: &Location,
    notice: Option<String>,
    mut sent: Sent,
) -> Response {
    let (lines, past) = match (
        stock::of_location(&s.db, caller, &place.code, None, false).await,
        reconcile::list(&s.db, caller, &place.code, Page::first()).await,
    ) {
        (Ok(l), Ok((p, _))) => (l, p),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let tz = zone(place);
    // To the millisecond, read after the stock: the ledger as of then is what the sheet shows.
    sent.values
        .entry("as_of".into())
        .or_insert_with(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let rows: Vec<Value> = lines
        .iter()
        .map(|l| {
            let key = format!("{}_{}", l.unit_id, l.lot_id);
            context! {
                key => key.clone(),
                unit => l.unit.clone(),
                product => l.product.clone(),
                lot => l.lot.clone(),
                funding => l.funding.to_uppercase(),
                expected => l.on_hand,
                counted => sent.values.get(&format!("count_{key}")).cloned().unwrap_or_else(|| l.on_hand.to_string()),
                reason => sent.values.get(&format!("reason_{key}")).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let as_of = sent.values["as_of"].clone();
    super::pages::render(
        sent.status(),
        "count.html",
        context! {
            title => format!("Count the stock at {} ({})", place.name, place.code),
            code => place.code.clone(),
            here => "reconciliations",
            rows,
            as_of_local => local(&as_of, tz),
            timezone => tz.name(),
            past => past.iter().map(|r| context! {
                as_of => local(&r.as_of, tz),
                counted_by => r.counted_by.clone(),
                lots => r.lines.len(),
                differences => r.lines.iter().filter(|l| l.adjustment != 0).map(|l| format!(
                    "lot id {}: expected {}, counted {} ({})",
                    l.lot_id, l.expected, l.counted, l.reason.clone().unwrap_or_default()
                )).collect::<Vec<_>>(),
            }).collect::<Vec<_>>(),
            notice,
            form => sent.form(),
            field => sent.field.clone(),
            error => sent.error.clone(),
            may_act => csrf.is_some() && !caller.read_only(),
            csrf_token => csrf,
        },
    )
}

/// The sheet as the service's reconciliation: a count per row, a reason where it differs from
/// what was expected.
fn counts_of(sent: &Sent, lines: &[stock::StockLine]) -> Result<Vec<Count>, (String, String)> {
    let mut counts = Vec::with_capacity(lines.len());
    for l in lines {
        let key = format!("{}_{}", l.unit_id, l.lot_id);
        let counted = match sent.text(&format!("count_{key}")).map(|v| v.parse::<i64>()) {
            Some(Ok(n)) if n >= 0 => n,
            _ => {
                return Err((
                    format!("count_{key}"),
                    format!("Give the doses of lot {} counted in {}: 0 or more.", l.lot, l.unit),
                ))
            }
        };
        let reason = sent.text(&format!("reason_{key}"));
        if counted != l.on_hand && reason.is_none() {
            return Err((
                format!("reason_{key}"),
                format!(
                    "Say why {counted} were counted of lot {} where {} were expected.",
                    l.lot, l.on_hand
                ),
            ));
        }
        counts.push(Count {
            unit_id: l.unit_id,
            lot_id: l.lot_id,
            counted,
            reason: if counted == l.on_hand { None } else { reason },
        });
    }
    Ok(counts)
}

async fn count(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(code): Id<String>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/locations/{code}/reconciliations");
    let caller = match writer_at(&s, &headers, &f, &code, &back).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let place = match crate::registry::locations::get(&s.db, &caller.scope, &code).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let csrf = f.get("csrf_token").cloned();
    let sent = Sent::of(&f);
    // What was expected when the sheet was opened: the ledger as of then.
    let Some(as_of) = sent
        .text("as_of")
        .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    else {
        return count_sheet(&s, &caller, csrf, &place, None, Sent::default()).await;
    };
    let lines = match stock::of_location(&s.db, &caller, &code, None, false).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let counts = match counts_of(&sent, &lines) {
        Ok(c) => c,
        Err((field, error)) => {
            return count_sheet(&s, &caller, csrf, &place, None, sent.refused(Some(&field), error)).await
        }
    };
    let Some(counted_by) = sent.text("counted_by") else {
        let sent = sent.refused(Some("counted_by"), "Say who counted.");
        return count_sheet(&s, &caller, csrf, &place, None, sent).await;
    };
    let differences = counts.iter().filter(|c| c.reason.is_some()).count();
    let body = NewReconciliation {
        as_of,
        counted_by,
        counts,
        note: sent.text("note"),
    };
    match reconcile::record(&s.db, &caller, &code, &body).await {
        Ok(_) => Redirect::to(&format!("/locations/{code}/reconciliations?done={differences}")).into_response(),
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            let sent = sent.refused_by_service(&e);
            count_sheet(&s, &caller, csrf, &place, None, sent).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(unit_id: i64, lot_id: i64, on_hand: i64) -> stock::StockLine {
        stock::StockLine {
            location: "012345A".into(),
            lot_id,
            ndc: "00006-4047-41".into(),
            cvx: "116".into(),
            product: "RotaTeq".into(),
            lot: format!("L{lot_id}"),
            expires_on: "2099-01-31".into(),
            funding: "vfc".into(),
            unit_id,
            unit: "Fridge".into(),
            on_hand,
            status: "usable".into(),
            holds: Vec::new(),
            exposure: Default::default(),
        }
    }

    #[test]
    fn only_a_count_that_differs_needs_a_reason() {
        let lines = [line(1, 10, 5), line(1, 11, 3)];
        let mut sent = Sent::default();
        sent.values.insert("count_1_10".into(), "5".into());
        sent.values.insert("count_1_11".into(), "2".into());
        let (field, error) = counts_of(&sent, &lines).unwrap_err();
        assert_eq!(field, "reason_1_11");
        assert!(error.contains("where 3 were expected"), "{error}");
        sent.values.insert("reason_1_11".into(), "dropped vial".into());
        let counts = counts_of(&sent, &lines).unwrap();
        assert_eq!(counts[0].reason, None);
        assert_eq!(counts[1].reason.as_deref(), Some("dropped vial"));
    }
}
