//! A location's machines (`/locations/{code}/gateways`): its gateways with their health (when
//! last heard, readings waiting in their spool, their warnings, readings held for no unit) and
//! the loggers serving its units with battery and calibration, each flagged in words when it
//! needs someone.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use minijinja::context;

use super::error::ApiError;
use super::extract::Id;
use super::forms::place_and_viewer;
use super::AppState;
use crate::registry::{gateways, loggers};

pub fn router() -> Router<AppState> {
    Router::new().route("/locations/{code}/gateways", get(page))
}

/// How long ago, in words.
fn ago(ms: i64) -> String {
    match ms / 60_000 {
        m if m < 1 => "just now".into(),
        m if m < 120 => format!("{m} min ago"),
        m if m < 48 * 60 => format!("{} h ago", m / 60),
        m => format!("{} days ago", m / 1440),
    }
}

/// A logger's calibration as the page flags it: expired or none on record, within 30 days (the
/// state home's card), or fine.
fn calibration(expires_on: Option<&str>, today: NaiveDate) -> (&'static str, String) {
    match expires_on.and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) {
        None => ("bad", "no calibration on record".into()),
        Some(d) if d < today => ("bad", format!("calibration expired on {d}")),
        Some(d) if (d - today).num_days() <= 30 => ("soon", format!("calibration expires on {d}")),
        Some(d) => ("ok", format!("calibrated until {d}")),
    }
}

/// A logger is silent when no reading came for more than two of its logging intervals (the
/// chart breaks its line there too), or an hour when its interval is not known.
fn silent(last_reading: Option<i64>, interval_s: Option<i64>, now: i64) -> bool {
    let allowed = interval_s.filter(|s| *s > 0).map_or(3_600_000, |s| 2 * s * 1000);
    last_reading.is_none_or(|t| now - t > allowed)
}

async fn page(State(s): State<AppState>, headers: HeaderMap, Id(code): Id<String>) -> Response {
    let path = format!("/locations/{code}/gateways");
    let (caller, csrf, place) = match place_and_viewer(&s, &headers, &code, &path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (gws, serving) = match (
        gateways::list(&s.db, &caller.scope, &place.code).await,
        loggers::serving_at(&s.db, &place).await,
    ) {
        (Ok(g), Ok(l)) => (g, l),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let serials: Vec<String> = serving.iter().map(|l| l.serial.clone()).collect();
    let latest = match crate::readings::latest_of(&s.db, &serials).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let now = crate::store::now_millis();
    let tz = place.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .ok()
    };
    let gateways: Vec<minijinja::Value> = gws
        .iter()
        .map(|g| {
            let seen = g.last_seen_at.as_deref().and_then(ms);
            let silent = seen.is_none_or(|t| now - t > gateways::SILENT_AFTER_MS);
            context! {
                id => g.id.clone(),
                name => g.name.clone(),
                silent,
                seen => seen.map_or("never".to_string(), |t| ago(now - t)),
                loggers_seen => g.loggers_seen,
                spool_depth => g.spool_depth,
                warnings => g.warnings.clone(),
                held_readings => g.held_readings,
                ok => !silent && g.warnings.is_empty() && g.held_readings == 0,
            }
        })
        .collect();
    let loggers: Vec<minijinja::Value> = serving
        .iter()
        .map(|l| {
            let (class, words) = calibration(l.calibration_expires_on.as_deref(), today);
            let low = l
                .battery_pct
                .is_some_and(|b| b < crate::coldchain::devices::BATTERY_LOW_PCT);
            let last = latest.get(&l.serial).map(|(ts, _)| *ts);
            context! {
                serial => l.serial.clone(),
                unit_id => l.unit_id,
                unit => l.unit_name.clone(),
                role => l.role.clone(),
                battery => l.battery_pct.map(|b| format!("{b:.0}%")),
                low,
                calibration_class => class,
                calibration => words,
                status => l.status_at.map(|t| ago(now - t)),
                reading => last.map(|t| ago(now - t)),
                silent => silent(last, l.reading_interval_s, now),
                interval => l.reading_interval_s.map(|s| format!("every {} min", (s / 60).max(1))),
            }
        })
        .collect();
    super::pages::render(
        StatusCode::OK,
        "devices.html",
        context! {
            title => format!("Gateways and loggers of {} ({})", place.name, place.code),
            code => place.code.clone(),
            gateways,
            loggers,
            silent_minutes => gateways::SILENT_AFTER_MS / 60_000,
            csrf_token => csrf,
            wide => true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibration_is_flagged_when_it_lapses_or_is_within_30_days() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(calibration(None, today).0, "bad");
        assert_eq!(calibration(Some("2026-11-30"), today).0, "bad");
        assert_eq!(calibration(Some("2026-12-31"), today).0, "soon");
        assert_eq!(calibration(Some("2027-06-01"), today).0, "ok");
    }

    #[test]
    fn a_logger_is_silent_after_two_logging_intervals_without_a_reading() {
        let now = 10_000_000;
        assert!(!silent(Some(now - 590_000), Some(300), now));
        assert!(silent(Some(now - 610_000), Some(300), now));
        assert!(!silent(Some(now - 3_000_000), None, now));
        assert!(silent(None, Some(300), now));
    }

    #[test]
    fn an_age_reads_in_the_largest_sensible_unit() {
        assert_eq!(ago(30_000), "just now");
        assert_eq!(ago(5 * 60_000), "5 min ago");
        assert_eq!(ago(3 * 3_600_000), "3 h ago");
        assert_eq!(ago(3 * 86_400_000), "3 days ago");
    }
}
