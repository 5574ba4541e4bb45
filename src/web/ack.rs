//! The acknowledgement page behind the link in alert emails (no API token: the link's signed,
//! expiring token is the credential). GET shows the excursion and a button; only the POST the
//! button sends acknowledges, so a mail scanner that opens every link changes nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::TimeZone;

use super::AppState;
use crate::alerts::links::{self as ack, Invalid, Subject};
use crate::coldchain::{devices, excursions};

const PAGE: &str = include_str!("../../dashboards/ack.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/ack/{token}", get(show).post(acknowledge))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: String) -> Response {
    (
        status,
        Html(PAGE.replace("{{title}}", &escape(title)).replace("{{body}}", &body)),
    )
        .into_response()
}

fn refused(e: Invalid) -> Response {
    match e {
        Invalid::Expired => page(
            StatusCode::GONE,
            "This link has expired",
            "<p>Acknowledgement links work for 7 days. Acknowledge the excursion in vfc-monitor, or ask the program.</p>".into(),
        ),
        Invalid::Malformed => page(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "<p>Open the link exactly as it appears in the alert email.</p>".into(),
        ),
    }
}

/// What the link is about, as HTML, and who acknowledged it (if anyone).
async fn summary(s: &AppState, subject: Subject) -> Result<(String, Option<(String, i64)>), Response> {
    match subject {
        Subject::Excursion(id) => {
            let f = excursions::find(&s.db, id)
                .await
                .map_err(failed)?
                .ok_or_else(|| refused(Invalid::Malformed))?;
            Ok(excursion_summary(&f))
        }
        Subject::Device(id) => {
            let f = devices::find(&s.db, id)
                .await
                .map_err(failed)?
                .ok_or_else(|| refused(Invalid::Malformed))?;
            Ok(device_summary(&f))
        }
    }
}

fn failed(e: crate::error::Error) -> Response {
    tracing::error!(error = %e, "ack page");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<p>Try again in a minute.</p>".into(),
    )
}

fn device_summary(f: &devices::Facts) -> (String, Option<(String, i64)>) {
    let html = format!(
        "<dl><dt>Location</dt><dd>{} {}</dd><dt>Unit</dt><dd>{}</dd><dt>Logger</dt><dd>{}</dd>\
         <dt>Condition</dt><dd>{}</dd><dt>Since</dt><dd>{}</dd></dl>",
        escape(&f.location_code),
        escape(&f.location_name),
        escape(&f.unit_name),
        escape(&f.serial),
        escape(&f.detail),
        crate::store::rfc3339(f.started_at),
    );
    (html, f.acknowledged.as_ref().map(|(by, t)| (escape(by), *t)))
}

fn excursion_summary(f: &excursions::Facts) -> (String, Option<(String, i64)>) {
    let at = |ms: i64| {
        f.timezone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_default()
    };
    let ended = f.ended_at.map(at).unwrap_or_else(|| "still out of range".into());
    let html = format!(
        "<dl><dt>Location</dt><dd>{} {}</dd><dt>Unit</dt><dd>{}</dd><dt>Out of range since</dt><dd>{}</dd>\
         <dt>Back in range</dt><dd>{}</dd><dt>Lowest / highest</dt><dd>{:.1} °C / {:.1} °C</dd></dl>",
        escape(&f.location_code),
        escape(&f.location_name),
        escape(&f.unit_name),
        at(f.started_at),
        escape(&ended),
        f.min_c,
        f.max_c,
    );
    let acked = f
        .acknowledged
        .as_ref()
        .map(|(by, t)| (format!("{} at {}", escape(by), at(*t)), *t));
    (html, acked)
}

async fn show(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let claim = match ack::verify(&s.ack_key, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let (facts, acked) = match summary(&s, claim.subject).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let action = match acked {
        Some((who, _)) => format!("<p class=\"done\">Already acknowledged by {who}.</p>"),
        None => format!(
            "<p class=\"todo\">{}</p>\
             <form method=\"post\"><button type=\"submit\">I am handling this: acknowledge as {}</button></form>",
            match claim.subject {
                Subject::Excursion(_) => "Label the vaccine \"Do Not Use\", keep it cold, do not discard it, and contact the manufacturer.",
                Subject::Device(_) => "Check the unit's thermometer and record its temperature by hand until the logger is fixed or replaced; keep the backup logger in place.",
            },
            escape(&claim.email)
        ),
    };
    let title = match claim.subject {
        Subject::Excursion(_) => "Temperature excursion",
        Subject::Device(_) => "Data logger problem",
    };
    page(StatusCode::OK, title, format!("{facts}{action}"))
}

async fn acknowledge(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let claim = match ack::verify(&s.ack_key, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let done = match claim.subject {
        Subject::Excursion(id) => excursions::acknowledge(&s.db, id, &claim.email).await.map(|_| ()),
        Subject::Device(id) => devices::acknowledge(&s.db, id, &claim.email).await,
    };
    if let Err(e) = done {
        tracing::error!(error = %e, "acknowledging");
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "<p>Try again in a minute.</p>".into(),
        );
    }
    let (facts, acked) = match summary(&s, claim.subject).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let who = acked.map(|(w, _)| w).unwrap_or_default();
    page(
        StatusCode::OK,
        "Acknowledged",
        format!("{facts}<p class=\"done\">Acknowledged by {who}. Escalation has stopped.</p>"),
    )
}
