//! The acknowledgement page behind the link in alert emails (no API token: the link's signed,
//! expiring token is the credential). GET shows the excursion and a button; only the POST the
//! button sends acknowledges, so a mail scanner that opens every link changes nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::TimeZone;
use sqlx::Row;

use super::AppState;
use crate::alerts::ack::{self, Invalid, Subject};

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
        Subject::Excursion(id) => excursion_summary(s, id).await,
        Subject::Device(id) => device_summary(s, id).await,
    }
}

fn failed(e: sqlx::Error) -> Response {
    tracing::error!(error = %e, "ack page");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<p>Try again in a minute.</p>".into(),
    )
}

async fn device_summary(s: &AppState, id: i64) -> Result<(String, Option<(String, i64)>), Response> {
    let r = sqlx::query(
        "SELECT d.serial, d.kind, d.detail, d.started_at, d.ended_at, d.acknowledged_by, d.acknowledged_at, u.name AS unit, \
         l.code, l.name AS location FROM device_alerts d JOIN units u ON u.id = d.unit_id \
         JOIN locations l ON l.code = u.location_code WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(&s.db.pool)
    .await
    .map_err(failed)?
    .ok_or_else(|| refused(Invalid::Malformed))?;
    let get_s = |c: &str| escape(&r.try_get::<String, _>(c).unwrap_or_default());
    let html = format!(
        "<dl><dt>Location</dt><dd>{} {}</dd><dt>Unit</dt><dd>{}</dd><dt>Logger</dt><dd>{}</dd>\
         <dt>Condition</dt><dd>{}</dd><dt>Since</dt><dd>{}</dd></dl>",
        get_s("code"),
        get_s("location"),
        get_s("unit"),
        get_s("serial"),
        get_s("detail"),
        crate::store::rfc3339(r.try_get("started_at").unwrap_or_default()),
    );
    let acked = match (
        r.try_get::<Option<String>, _>("acknowledged_by"),
        r.try_get::<Option<i64>, _>("acknowledged_at"),
    ) {
        (Ok(Some(by)), Ok(Some(t))) => Some((escape(&by), t)),
        _ => None,
    };
    Ok((html, acked))
}

async fn excursion_summary(s: &AppState, id: i64) -> Result<(String, Option<(String, i64)>), Response> {
    let r = sqlx::query(
        "SELECT e.started_at, e.ended_at, e.min_c, e.max_c, e.acknowledged_by, e.acknowledged_at, u.name AS unit, \
         l.code, l.name AS location, l.timezone FROM excursions e JOIN units u ON u.id = e.unit_id \
         JOIN locations l ON l.code = u.location_code WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(&s.db.pool)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "ack page");
        page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "<p>Try again in a minute.</p>".into(),
        )
    })?
    .ok_or_else(|| refused(Invalid::Malformed))?;
    let tz: chrono_tz::Tz = r
        .try_get::<String, _>("timezone")
        .unwrap_or_default()
        .parse()
        .unwrap_or(chrono_tz::UTC);
    let at = |ms: i64| {
        tz.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_default()
    };
    let get_s = |c: &str| escape(&r.try_get::<String, _>(c).unwrap_or_default());
    let ended = r
        .try_get::<Option<i64>, _>("ended_at")
        .ok()
        .flatten()
        .map(at)
        .unwrap_or_else(|| "still out of range".into());
    let html = format!(
        "<dl><dt>Location</dt><dd>{} {}</dd><dt>Unit</dt><dd>{}</dd><dt>Out of range since</dt><dd>{}</dd>\
         <dt>Back in range</dt><dd>{}</dd><dt>Lowest / highest</dt><dd>{:.1} °C / {:.1} °C</dd></dl>",
        get_s("code"),
        get_s("location"),
        get_s("unit"),
        at(r.try_get("started_at").unwrap_or_default()),
        escape(&ended),
        r.try_get::<f64, _>("min_c").unwrap_or_default(),
        r.try_get::<f64, _>("max_c").unwrap_or_default(),
    );
    let acked = match (
        r.try_get::<Option<String>, _>("acknowledged_by"),
        r.try_get::<Option<i64>, _>("acknowledged_at"),
    ) {
        (Ok(Some(by)), Ok(Some(t))) => Some((by, t)),
        _ => None,
    };
    Ok((html, acked.map(|(by, t)| (format!("{} at {}", escape(&by), at(t)), t))))
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
        Subject::Excursion(id) => ack::acknowledge(&s.db, id, &claim.email).await.map(|_| ()),
        Subject::Device(id) => ack::acknowledge_device(&s.db, id, &claim.email).await,
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
