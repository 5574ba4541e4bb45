//! The reconciliation count sheet as a page (`/locations/{code}/reconciliations`): every lot per
//! unit, prefilled with what the ledger expects, so only the differences need a reason
//! (docs/domain.md, "Inventory"); the earlier counts below.
//!
//! A count is taken as of the moment it is sent. The sheet carries what it showed as expected;
//! if doses were recorded for a lot meanwhile (a dose given while staff counted, a receipt), the
//! sheet comes back with the new expectation and those lines marked, rather than turning the
//! dose into a difference twice.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::extract::Id;
use super::forms::{local, place_and_viewer, writer_at, zone, ListQuery, Posted, Sent};
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
                .and_then(|n| n.parse::<usize>().ok())
                .map(|n| match n {
                    0 => "The count is recorded: every lot was as expected.".to_string(),
                    n => format!("The count is recorded; {n} difference(s) became adjustments with their reasons."),
                });
            count_sheet(&s, &caller, csrf, &place, notice, Sent::default()).await
        }
        Err(r) => r,
    }
}

/// The sheet: every lot on hand per unit with the count the ledger expects now, carried in the
/// form (`expected_{unit}_{lot}`) so the count can tell whether it changed while staff counted.
async fn count_sheet(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    place: &Location,
    notice: Option<String>,
    sent: Sent,
) -> Response {
    let (lines, past) = match (
        stock::of_location(&s.db, caller, &place.code, None, true).await,
        reconcile::list(&s.db, caller, &place.code, Page::first()).await,
    ) {
        (Ok(l), Ok((p, _))) => (l, p),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let tz = zone(place);
    let rows: Vec<Value> = lines
        .iter()
        .filter(|l| l.on_hand != 0)
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
    // Earlier counts name their lots and units as the sheet does.
    let name_of = |unit_id: i64, lot_id: i64| {
        lines
            .iter()
            .find(|l| l.unit_id == unit_id && l.lot_id == lot_id)
            .map_or_else(
                || format!("lot id {lot_id}"),
                |l| format!("{} lot {} in {}", l.product, l.lot, l.unit),
            )
    };
    super::pages::render(
        sent.status(),
        "count.html",
        context! {
            title => format!("Count the stock at {} ({})", place.name, place.code),
            code => place.code.clone(),
            here => "reconciliations",
            rows,
            timezone => tz.name(),
            past => past.iter().map(|r| context! {
                as_of => local(&r.as_of, tz),
                counted_by => r.counted_by.clone(),
                lots => r.lines.len(),
                differences => r.lines.iter().filter(|l| l.adjustment != 0).map(|l| format!(
                    "{}: expected {}, counted {} ({})",
                    name_of(l.unit_id, l.lot_id), l.expected, l.counted, l.reason.clone().unwrap_or_default()
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

/// The lines whose expectation changed since the sheet was shown (doses recorded meanwhile, a
/// lot received or used up): (the line's count field, what it says), in the sheet's order.
fn changed_since_shown(sent: &Sent, lines: &[stock::StockLine]) -> Vec<(String, String)> {
    let mut changed = Vec::new();
    for l in lines {
        let key = format!("{}_{}", l.unit_id, l.lot_id);
        let shown = sent
            .text(&format!("expected_{key}"))
            .and_then(|v| v.parse::<i64>().ok());
        let what = format!("{} lot {} in {}", l.product, l.lot, l.unit);
        match shown {
            Some(n) if n == l.on_hand => {}
            None if l.on_hand == 0 => {}
            Some(n) => changed.push((
                format!("count_{key}"),
                format!("{what}: {} expected now, {n} before", l.on_hand),
            )),
            None => changed.push((
                format!("count_{key}"),
                format!("{what}: new on the sheet, {} expected", l.on_hand),
            )),
        }
    }
    changed
}

/// The sheet as the service's reconciliation: a count per row, a reason where it differs from
/// what was expected.
fn counts_of(sent: &Sent, lines: &[stock::StockLine]) -> Result<Vec<Count>, (String, String)> {
    let mut counts = Vec::with_capacity(lines.len());
    for l in lines.iter().filter(|l| l.on_hand != 0) {
        let key = format!("{}_{}", l.unit_id, l.lot_id);
        let counted = match sent.text(&format!("count_{key}")).map(|v| v.parse::<i64>()) {
            Some(Ok(n)) if (0..=crate::domain::Doses::MAX).contains(&n) => n,
            _ => {
                return Err((
                    format!("count_{key}"),
                    format!(
                        "Give the doses of lot {} counted in {}: a whole number, 0 or more.",
                        l.lot, l.unit
                    ),
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
            // A reason typed by a count that matches says nothing: it is not kept.
            reason: reason.filter(|_| counted != l.on_hand),
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
    let Posted {
        caller,
        place,
        csrf,
        sent,
    } = match writer_at(&s, &headers, &f, &code, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let lines = match stock::of_location(&s.db, &caller, &code, None, true).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Taken now; read after the stock, so the ledger as of then is what was compared.
    let as_of = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let changed = changed_since_shown(&sent, &lines);
    if let Some((field, _)) = changed.first() {
        let error = format!(
            "Doses were recorded while you counted: {}. Check the marked counts and send the sheet again.",
            changed
                .iter()
                .map(|(_, what)| what.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        // The sheet again, with the new expectations (the typed counts are kept).
        let mut sent = sent.refused(Some(&field.clone()), error);
        sent.values.retain(|k, _| !k.starts_with("expected_"));
        return count_sheet(&s, &caller, csrf, &place, None, sent).await;
    }
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
    let differences = counts
        .iter()
        .filter(|c| {
            lines
                .iter()
                .any(|l| l.unit_id == c.unit_id && l.lot_id == c.lot_id && l.on_hand != c.counted)
        })
        .count();
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

    #[test]
    fn a_line_whose_expectation_changed_while_counting_is_marked() {
        let lines = [line(1, 10, 4), line(1, 11, 3), line(1, 12, 2), line(1, 13, 0)];
        let mut sent = Sent::default();
        sent.values.insert("expected_1_10".into(), "5".into());
        sent.values.insert("expected_1_11".into(), "3".into());
        // Lot 12 arrived after the sheet was shown; lot 13 was on it and is gone now.
        sent.values.insert("expected_1_13".into(), "1".into());
        let changed = changed_since_shown(&sent, &lines);
        let fields: Vec<&str> = changed.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["count_1_10", "count_1_12", "count_1_13"]);
        assert!(changed[0].1.contains("4 expected now, 5 before"), "{changed:?}");
    }
}
