//! An excursion's page (`/excursions/{id}`): the chart from 6 hours before to 6 hours after,
//! what happened, the lots on hold with their outcome, "acknowledge" once, and the excursion
//! worksheet as a form once the unit is back in range (docs/domain.md, "After an excursion"),
//! with the manufacturer's determination per lot. The email's acknowledgement link leads here
//! after sign-in.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;

use super::error::ApiError;
use super::extract::Id;
use super::AppState;
use crate::accounts::audit::Who;
use crate::coldchain::excursions::{
    self,
    review::{self, Review},
};
use crate::coldchain::stock::{Determination, Viability, WriteOff};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/excursions/{id}", get(page))
        .route("/excursions/{id}/acknowledge", post(acknowledge))
        .route("/excursions/{id}/review", post(review))
}

#[derive(serde::Deserialize)]
struct Notice {
    acknowledged: Option<String>,
    reviewed: Option<String>,
}

/// A worksheet sent back with a mistake: what the person typed, and the error by its field.
struct Returned {
    values: HashMap<String, String>,
    field: Option<String>,
    error: String,
}

const SIX_HOURS: i64 = 6 * 3_600_000;

async fn page(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(n): Query<Notice>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, &format!("/excursions/{id}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notice = match (n.acknowledged, n.reviewed) {
        (_, Some(_)) => Some("The review is recorded, with each lot's determination."),
        (Some(_), None) => Some("Acknowledged: the escalation stops."),
        _ => None,
    };
    show(&s, &caller, csrf, id, notice, None).await
}

async fn show(
    s: &AppState,
    caller: &crate::accounts::Caller,
    csrf: Option<String>,
    id: i64,
    notice: Option<&str>,
    returned: Option<Returned>,
) -> Response {
    let x = match excursions::visible(&s.db, &caller.scope, id).await {
        Ok(x) => x,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
    };
    let start = ms(&x.started_at);
    let end = x.ended_at.as_deref().map_or_else(|| ms(&x.last_reading_at), ms);
    let to = (end + SIX_HOURS).min(crate::store::now_millis().max(end + 60_000));
    let chart = match crate::coldchain::chart::of_unit_as(
        &s.db,
        &caller.scope,
        x.unit_id,
        start - SIX_HOURS,
        to,
        crate::coldchain::chart::Detail::Width(900),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let svg = match chart.svg(900, 360) {
        Ok(svg) => svg,
        Err(e) => return ApiError::Internal(anyhow::anyhow!(e)).into_response(),
    };
    let holds = match crate::inventory::holds::of_visible_excursion(&s.db, &caller.scope, id).await {
        Ok(h) => h,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = match crate::registry::locations::get(&s.db, &caller.scope, &x.location).await {
        Ok(l) => l.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let local = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    let status = if returned.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let (values, field, error) = match returned {
        Some(r) => (r.values, r.field, Some(r.error)),
        None => (HashMap::new(), None, None),
    };
    let value = |k: &str| values.get(k).cloned().unwrap_or_default();
    let lots: Vec<minijinja::Value> = holds
        .iter()
        .filter(|h| h.ended_at.is_none())
        .map(|h| {
            context! {
                id => h.id,
                lot => h.lot.clone(),
                ndc => h.ndc.clone(),
                funding => h.funding.to_uppercase(),
                on_hand => h.on_hand,
                determination => value(&format!("lot_{}_determination", h.id)),
                action => value(&format!("lot_{}_action", h.id)),
                case_number => value(&format!("lot_{}_case", h.id)),
                notes => value(&format!("lot_{}_notes", h.id)),
            }
        })
        .collect();
    let reviewable = x.status == excursions::Status::Closed && csrf.is_some() && !caller.read_only();
    super::pages::render(
        status,
        "excursion.html",
        context! {
            title => format!("Excursion {id}"),
            x => minijinja::Value::from(minijinja::value::Serde(&x)),
            started => local(&x.started_at),
            ended => x.ended_at.as_deref().map(local),
            acknowledged => x.acknowledged_at.as_deref().map(local),
            acknowledged_by => x.acknowledged_by.as_deref().map(super::pages::person),
            minutes_out => format!("{:.0}", x.minutes_out_of_range),
            minutes_unknown => format!("{:.0}", x.minutes_unknown),
            chart => minijinja::Value::from_safe_string(svg),
            alt => chart.alt,
            holds => minijinja::Value::from(minijinja::value::Serde(&holds)),
            lots,
            may_act => csrf.is_some() && !caller.read_only(),
            reviewable,
            form => minijinja::Value::from(minijinja::value::Serde(&values)),
            field,
            error,
            timezone => tz.name(),
            csrf_token => csrf,
            notice,
            wide => true,
        },
    )
}

#[derive(serde::Deserialize)]
struct Form {
    csrf_token: Option<String>,
}

async fn acknowledge(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    axum::Form(f): axum::Form<Form>,
) -> Response {
    let back = format!("/excursions/{id}");
    let caller = match super::pages::form_writer(&s, &headers, f.csrf_token.as_deref(), &back).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if excursions::visible(&s.db, &caller.scope, id).await.is_err() {
        return super::pages::not_found();
    }
    match excursions::acknowledge(&s.db, id, &caller.actor(), &Who::of(&caller)).await {
        Ok(_) => Redirect::to(&format!("/excursions/{id}?acknowledged=1")).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Turns the worksheet form into the API's review: the fields by name, one determination per
/// lot still on hold (`lot_{hold}_determination`, `_action`, `_case`, `_notes`), times in the
/// location's zone. A mistake is named with its field.
fn worksheet(
    f: &HashMap<String, String>,
    holds: &[crate::inventory::holds::Hold],
    tz: chrono_tz::Tz,
) -> Result<Review, (Option<String>, String)> {
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let need = |k: &str, what: &str| text(k).ok_or_else(|| (Some(k.to_string()), format!("Fill in {what}.")));
    let number = |k: &str, what: &str| -> Result<Option<f64>, (Option<String>, String)> {
        match text(k) {
            None => Ok(None),
            Some(v) => v.replace(',', ".").parse::<f64>().map(Some).map_err(|_| {
                (
                    Some(k.to_string()),
                    format!("{what} is a number of degrees Celsius, such as 9.5."),
                )
            }),
        }
    };
    let found_at = match text("found_at") {
        None => None,
        Some(v) => {
            let naive = chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%dT%H:%M").map_err(|_| {
                (
                    Some("found_at".to_string()),
                    "Give the date and time it was found.".to_string(),
                )
            })?;
            let t = naive.and_local_timezone(tz).earliest().ok_or_else(|| {
                (
                    Some("found_at".to_string()),
                    "That time does not exist in the location's zone (the clocks changed); pick another minute."
                        .to_string(),
                )
            })?;
            Some(t.fixed_offset())
        }
    };
    let mut lot_determinations = Vec::new();
    for h in holds.iter().filter(|h| h.ended_at.is_none()) {
        let key = |k: &str| format!("lot_{}_{k}", h.id);
        let determination = match text(&key("determination")).as_deref() {
            Some("viable") => Viability::Viable,
            Some("not_viable") => Viability::NotViable,
            _ => {
                return Err((
                    Some(key("determination")),
                    format!("Choose the manufacturer's determination for lot {}.", h.lot),
                ))
            }
        };
        let action = match (determination, text(&key("action")).as_deref()) {
            (Viability::NotViable, Some("waste")) => Some(WriteOff::Waste),
            (Viability::NotViable, _) => Some(WriteOff::Return),
            _ => None,
        };
        lot_determinations.push(Determination {
            lot_id: Some(h.lot_id),
            lot: None,
            funding: None,
            determination,
            action,
            case_number: text(&key("case")),
            notes: text(&key("notes")),
        });
    }
    Ok(Review {
        reviewed_by: need("reviewed_by", "who reviewed (name and title)")?,
        cause: need("cause", "what happened")?,
        found_at,
        temp_when_found_c: number("temp_when_found_c", "The temperature when found")?,
        room_temp_c: number("room_temp_c", "The room temperature")?,
        corrective_action: need("corrective_action", "what was done")?,
        contacted: f
            .get("contacted")
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        manufacturer_case_number: text("manufacturer_case_number"),
        lot_determinations,
        preventive_action: text("preventive_action"),
        notes: text("notes"),
    })
}

/// Records the worksheet from the page; a mistake comes back with the input kept and the error
/// by its field.
async fn review(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/excursions/{id}");
    let caller = match super::pages::form_writer(&s, &headers, f.get("csrf_token").map(String::as_str), &back).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let x = match excursions::visible(&s.db, &caller.scope, id).await {
        Ok(x) => x,
        Err(_) => return super::pages::not_found(),
    };
    let holds = match crate::inventory::holds::of_visible_excursion(&s.db, &caller.scope, id).await {
        Ok(h) => h,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = match crate::registry::locations::get(&s.db, &caller.scope, &x.location).await {
        Ok(l) => l.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let csrf = f.get("csrf_token").cloned();
    let back_with = |field: Option<String>, error: String| Returned {
        values: f
            .iter()
            .filter(|(k, _)| *k != "csrf_token")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        field,
        error,
    };
    let r = match worksheet(&f, &holds, tz) {
        Ok(r) => r,
        Err((field, error)) => return show(&s, &caller, csrf, id, None, Some(back_with(field, error))).await,
    };
    match review::record(&s.db, &caller.scope, id, &r, &Who::of(&caller), s.stock.as_ref()).await {
        Ok(_) => Redirect::to(&format!("/excursions/{id}?reviewed=1")).into_response(),
        Err(e @ (crate::error::Error::Invalid(_) | crate::error::Error::Conflict(_))) => {
            let msg = e.to_string();
            // The API names a field in quotes ("room_temp_c" must be …): put it by that field.
            let field = msg.split('"').nth(1).filter(|k| f.contains_key(*k)).map(String::from);
            show(&s, &caller, csrf, id, None, Some(back_with(field, msg))).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
