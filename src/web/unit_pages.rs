//! A storage unit's pages: `/units/{id}` (its chart for 24 hours, 7 or 30 days, and its
//! loggers), `/units/{id}/daily?month=YYYY-MM` (the month's daily log as VFC site visits expect,
//! printable on one page) with `/units/{id}/daily.csv`, and the chart as its own URL,
//! `/units/{id}/chart.svg?from=&to=` (RFC 3339; default the last 24 hours) with its readings as
//! CSV (`/units/{id}/chart.csv`). A token or a signed-in person; a unit outside the caller's
//! scope is a 404 page; nobody is sent to sign in and back.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Datelike;

use super::error::ApiError;
use super::extract::{query_time, Id};
use super::AppState;
use crate::coldchain::chart;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/units/{id}", get(unit_page))
        .route("/units/{id}/daily", get(daily_page))
        .route("/units/{id}/daily.csv", get(daily_csv))
        .route("/units/{id}/chart.svg", get(svg))
        .route("/units/{id}/chart.csv", get(csv))
}

/// The caller of a page, or the response that sends them to sign in (and back to `path`).
async fn caller_or_login(s: &AppState, headers: &HeaderMap, path: &str) -> Result<crate::accounts::Caller, Response> {
    super::pages::viewer(s, headers, path).await.map(|(caller, _)| caller)
}

/// A failure as a page: 404 for what the caller may not see, the message for a bad request.
fn page_error(e: crate::error::Error) -> Response {
    use crate::error::Error as E;
    match e {
        E::NotFound(_) => super::pages::not_found(),
        E::Invalid(m) => super::pages::message(
            StatusCode::BAD_REQUEST,
            "That did not work",
            &[m.as_str()],
            Some(("/", "Home")),
        ),
        e => ApiError::from(e).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct UnitQuery {
    window: Option<String>,
    /// A custom range, days in the location's zone (`YYYY-MM-DD`), both included.
    from: Option<String>,
    to: Option<String>,
}

const WINDOWS: [(&str, &str, i64); 3] = [("24h", "24 hours", 1), ("7d", "7 days", 7), ("30d", "30 days", 30)];

async fn unit_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    Query(q): Query<UnitQuery>,
) -> Response {
    let (caller, csrf_token) = match super::pages::viewer(&s, &headers, &format!("/units/{id}")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let window = q
        .window
        .as_deref()
        .filter(|w| WINDOWS.iter().any(|(k, _, _)| k == w))
        .unwrap_or("24h");
    let days = WINDOWS.iter().find(|(k, _, _)| *k == window).map_or(1, |w| w.2);
    let detail = match crate::registry::units::detail(&s.db, &caller.scope, id).await {
        Ok(d) => d,
        Err(e) => return page_error(e),
    };
    let location = match crate::registry::locations::get(&s.db, &caller.scope, &detail.unit.location).await {
        Ok(l) => l,
        Err(e) => return page_error(e),
    };
    let tz = location.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
    let (downtime, serving) = match (
        crate::coldchain::downtime::list(&s.db, id).await,
        crate::registry::loggers::serving_at(&s.db, &location).await,
    ) {
        (Ok(d), Ok(l)) => (d, l),
        (Err(e), _) | (_, Err(e)) => return page_error(e),
    };
    let local = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    let now = crate::store::now_millis();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive().to_string();
    let downtime: Vec<minijinja::Value> = downtime
        .iter()
        .map(|d| {
            let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.timestamp_millis());
            let ended = d.until.as_deref().and_then(at).is_some_and(|u| u <= now);
            let begun = at(&d.from).is_none_or(|f| f <= now);
            minijinja::context! {
                kind => if d.kind == crate::coldchain::downtime::Kind::Maintenance { "Maintenance" } else { "Out of service" },
                reason => d.reason.clone(),
                from => local(&d.from),
                until => d.until.as_deref().map(local),
                in_force => begun && !ended,
                planned => !begun,
                by => super::pages::person(&d.created_by),
            }
        })
        .collect();
    let loggers: Vec<minijinja::Value> = detail
        .loggers
        .iter()
        .map(|a| {
            let s = serving.iter().find(|l| l.serial == a.serial && l.unit_id == id);
            let expires = s.and_then(|l| l.calibration_expires_on.clone());
            minijinja::context! {
                serial => a.serial.clone(),
                role => minijinja::Value::from(minijinja::value::Serde(&a.role)),
                from => local(&a.from),
                battery => s.and_then(|l| l.battery_pct).map(|b| format!("{b:.0}%")),
                calibration_lapsed => expires.as_deref().is_none_or(|e| e < today.as_str()),
                calibration_expires_on => expires,
            }
        })
        .collect();
    // A custom range: from the first day's start to the last day's end, where the unit is.
    let day = |raw: &Option<String>| {
        raw.as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let start_of = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(tz).earliest())
            .map(|t| t.timestamp_millis())
    };
    let custom = match (day(&q.from), day(&q.to)) {
        (Some(a), Some(b)) if a <= b => start_of(a).zip(start_of(b + chrono::Duration::days(1))),
        _ => None,
    };
    let (from, to, window) = match custom {
        Some((a, b)) => (a, b, "custom"),
        None => {
            let to = crate::store::now_millis();
            (to - days * 86_400_000, to, window)
        }
    };
    let chart = match chart::of_unit_as(&s.db, &caller.scope, id, from, to, chart::Detail::Width(900)).await {
        Ok(c) => c,
        Err(e) => return page_error(e),
    };
    let svg = match chart.svg(900, 360) {
        Ok(svg) => svg,
        Err(e) => return ApiError::Internal(anyhow::anyhow!(e)).into_response(),
    };
    let month = chrono::DateTime::from_timestamp_millis(to)
        .unwrap_or_default()
        .with_timezone(&chart.tz)
        .format("%Y-%m")
        .to_string();
    super::pages::render(
        StatusCode::OK,
        "unit.html",
        minijinja::context! {
            title => detail.unit.name.clone(),
            csrf_token,
            wide => true,
            range_from => q.from.clone().unwrap_or_default(),
            range_to => q.to.clone().unwrap_or_default(),
            unit => minijinja::Value::from(minijinja::value::Serde(&detail.unit)),
            loggers,
            downtime,
            windows => WINDOWS.iter().map(|(k, l, _)| minijinja::context! { key => *k, label => *l }).collect::<Vec<_>>(),
            window,
            chart => minijinja::Value::from_safe_string(svg),
            alt => chart.alt,
            csv_href => format!(
                "/units/{id}/chart.csv?from={}&to={}",
                percent_encoding::utf8_percent_encode(&crate::store::rfc3339(from), percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(&crate::store::rfc3339(to), percent_encoding::NON_ALPHANUMERIC),
            ),
            month,
        },
    )
}

#[derive(serde::Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

/// The unit, its month (default: this month where it is) and that month's days.
async fn month_of(
    s: &AppState,
    caller: &crate::accounts::Caller,
    id: i64,
    month: Option<&str>,
) -> crate::error::Result<(
    crate::registry::units::Unit,
    chrono::NaiveDate,
    String,
    Vec<crate::coldchain::daily::Day>,
)> {
    let unit = crate::registry::units::get(&s.db, &caller.scope, id).await?;
    let location = crate::registry::locations::get(&s.db, &caller.scope, &unit.location).await?;
    let tz = location.tz()?;
    let first = match month {
        Some(m) => chrono::NaiveDate::parse_from_str(&format!("{}-01", m.trim()), "%Y-%m-%d").map_err(|_| {
            crate::error::Error::Invalid(format!("month {m:?} must be written YYYY-MM, such as 2026-11"))
        })?,
        None => {
            let today = chrono::Utc::now().with_timezone(&tz).date_naive();
            today.with_day(1).expect("the first of a month")
        }
    };
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap_or(first);
    let last = next.pred_opt().unwrap_or(first);
    let days = crate::coldchain::daily::of_unit(&s.db, &caller.scope, id, first, last).await?;
    Ok((unit, first, location.timezone, days))
}

async fn daily_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    Query(q): Query<MonthQuery>,
) -> Response {
    let (caller, csrf_token) = match super::pages::viewer(&s, &headers, &format!("/units/{id}/daily")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (unit, first, timezone, days) = match month_of(&s, &caller, id, q.month.as_deref()).await {
        Ok(m) => m,
        Err(e) => return page_error(e),
    };
    let ym = |d: chrono::NaiveDate| d.format("%Y-%m").to_string();
    super::pages::render(
        StatusCode::OK,
        "daily.html",
        minijinja::context! {
            title => format!("{} · daily log", unit.name),
            csrf_token,
            unit => minijinja::Value::from(minijinja::value::Serde(&unit)),
            month => ym(first),
            previous => ym(first.checked_sub_months(chrono::Months::new(1)).unwrap_or(first)),
            next => ym(first.checked_add_months(chrono::Months::new(1)).unwrap_or(first)),
            timezone,
            days => days.iter().map(|d| minijinja::context! {
                date => d.date.clone(),
                min => d.min_c.map_or("—".to_string(), |c| format!("{c:.1}")),
                max => d.max_c.map_or("—".to_string(), |c| format!("{c:.1}")),
                above => format!("{:.0}", d.minutes_above_range),
                below => format!("{:.0}", d.minutes_below_range),
                readings => d.readings,
                complete => d.complete,
                signed => d.signed_by.clone().unwrap_or_else(|| "—".into()),
            }).collect::<Vec<_>>(),
        },
    )
}

/// The columns of the daily log's CSV, exactly.
pub const DAILY_COLUMNS: [&str; 9] = [
    "date",
    "min_c",
    "max_c",
    "minutes_above_range",
    "minutes_below_range",
    "readings",
    "complete",
    "signed_by",
    "signed_at",
];

async fn daily_csv(
    State(s): State<AppState>,
    headers: HeaderMap,
    Id(id): Id<i64>,
    Query(q): Query<MonthQuery>,
) -> Response {
    let caller = match caller_or_login(&s, &headers, &format!("/units/{id}/daily.csv")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (_, first, _, days) = match month_of(&s, &caller, id, q.month.as_deref()).await {
        Ok(m) => m,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut out = csv::Writer::from_writer(Vec::new());
    let one = |v: Option<f64>| v.map(|c| format!("{c:.1}")).unwrap_or_default();
    let mut rows = vec![DAILY_COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for d in &days {
        rows.push(vec![
            d.date.clone(),
            one(d.min_c),
            one(d.max_c),
            format!("{:.0}", d.minutes_above_range),
            format!("{:.0}", d.minutes_below_range),
            d.readings.to_string(),
            d.complete.to_string(),
            d.signed_by.clone().unwrap_or_default(),
            d.signed_at.clone().unwrap_or_default(),
        ]);
    }
    for r in rows {
        if let Err(e) = out.write_record(&r) {
            return ApiError::Internal(e.into()).into_response();
        }
    }
    let body = match out.into_inner() {
        Ok(b) => b,
        Err(e) => return ApiError::Internal(anyhow::anyhow!("{e}")).into_response(),
    };
    super::pages::secured(
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"unit-{id}-daily-{}.csv\"", first.format("%Y-%m")),
                ),
            ],
            body,
        )
            .into_response(),
    )
}

#[derive(serde::Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
}

async fn chart_of(
    s: &AppState,
    headers: &HeaderMap,
    id: i64,
    w: &Window,
    path: &str,
    detail: chart::Detail,
) -> Result<crate::charts::TempChart, Response> {
    let caller = caller_or_login(s, headers, path).await?;
    let to = query_time("to", w.to.as_deref())
        .map_err(IntoResponse::into_response)?
        .unwrap_or_else(crate::store::now_millis);
    let from = query_time("from", w.from.as_deref())
        .map_err(IntoResponse::into_response)?
        .unwrap_or(to - 86_400_000);
    chart::of_unit_as(&s.db, &caller.scope, id, from, to, detail)
        .await
        .map_err(|e| ApiError::from(e).into_response())
}

async fn svg(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(w): Query<Window>) -> Response {
    let chart = match chart_of(
        &s,
        &headers,
        id,
        &w,
        &format!("/units/{id}/chart.svg"),
        chart::Detail::Width(900),
    )
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    match chart.svg(900, 360) {
        Ok(svg) => {
            super::pages::secured(([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")], svg).into_response())
        }
        Err(e) => ApiError::Internal(anyhow::anyhow!(e)).into_response(),
    }
}

async fn csv(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(w): Query<Window>) -> Response {
    match chart_of(
        &s,
        &headers,
        id,
        &w,
        &format!("/units/{id}/chart.csv"),
        chart::Detail::Points,
    )
    .await
    {
        Ok(c) => super::pages::secured(
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"unit-{id}-readings.csv\""),
                    ),
                ],
                chart::csv(&c),
            )
                .into_response(),
        ),
        Err(r) => r,
    }
}
