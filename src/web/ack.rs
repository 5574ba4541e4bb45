//! The acknowledgement page behind the link in alert emails (no API token: the link's signed,
//! expiring token is the credential). GET shows the excursion and a button; only the POST the
//! button sends acknowledges, so a mail scanner that opens every link changes nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::TimeZone;

use minijinja::context;

use super::auth::ClientAddr;
use super::{pages, AppState};
use crate::accounts::audit::Who;
use crate::alerts::links::{self as ack, Invalid, Subject};
use crate::coldchain::{devices, excursions};

pub fn router() -> Router<AppState> {
    Router::new().route("/ack/{token}", get(show).post(acknowledge))
}

/// What the link is about, as label/value pairs, and who acknowledged it and when (if anyone).
type Summary = (Vec<(String, String)>, Option<String>);

fn page(
    status: StatusCode,
    title: &str,
    facts: Vec<(String, String)>,
    notes: &[&str],
    done: Option<String>,
) -> Response {
    pages::render(
        status,
        "ack.html",
        context! { title, facts, notes => minijinja::Value::from(minijinja::value::Serde(notes)), done },
    )
}

fn refused(e: Invalid) -> Response {
    match e {
        Invalid::Expired => page(
            StatusCode::GONE,
            "This link has expired",
            Vec::new(),
            &["Acknowledgement links work for 7 days. Acknowledge the excursion in vfc-monitor, or ask the program."],
            None,
        ),
        Invalid::Malformed => page(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            Vec::new(),
            &["Open the link exactly as it appears in the alert email."],
            None,
        ),
    }
}

/// What the link is about, and who acknowledged it (if anyone).
async fn summary(s: &AppState, subject: Subject) -> Result<Summary, Response> {
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
        Vec::new(),
        &["Try again in a minute."],
        None,
    )
}

fn pair(label: &str, value: impl Into<String>) -> (String, String) {
    (label.to_string(), value.into())
}

fn device_summary(f: &devices::Facts) -> Summary {
    let facts = vec![
        pair("Location", format!("{} {}", f.location_code, f.location_name)),
        pair("Unit", f.unit_name.clone()),
        pair("Logger", f.serial.clone()),
        pair("Condition", f.detail.clone()),
        pair("Since", crate::store::rfc3339(f.started_at)),
    ];
    (facts, f.acknowledged.as_ref().map(|(by, _)| by.clone()))
}

fn excursion_summary(f: &excursions::Facts) -> Summary {
    let at = |ms: i64| {
        f.timezone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_default()
    };
    let ended = f.ended_at.map(at).unwrap_or_else(|| "still out of range".into());
    let facts = vec![
        pair("Location", format!("{} {}", f.location_code, f.location_name)),
        pair("Unit", f.unit_name.clone()),
        pair("Out of range since", at(f.started_at)),
        pair("Back in range", ended),
        pair("Lowest / highest", format!("{:.1} °C / {:.1} °C", f.min_c, f.max_c)),
    ];
    let acked = f.acknowledged.as_ref().map(|(by, t)| format!("{by} at {}", at(*t)));
    (facts, acked)
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
    let title = match claim.subject {
        Subject::Excursion(_) => "Temperature excursion",
        Subject::Device(_) => "Data logger problem",
    };
    let todo = match claim.subject {
        Subject::Excursion(_) => "Label the vaccine \"Do Not Use\", keep it cold, do not discard it, and contact the manufacturer.",
        Subject::Device(_) => "Check the unit's thermometer and record its temperature by hand until the logger is fixed or replaced; keep the backup logger in place.",
    };
    // The whole record (chart, lots on hold) is the excursion's page, after sign-in.
    let more = match claim.subject {
        Subject::Excursion(id) => Some(format!("/excursions/{id}")),
        Subject::Device(_) => None,
    };
    let ctx = match acked {
        Some(who) => context! { title, facts, more, done => format!("Already acknowledged by {who}.") },
        None => context! { title, facts, more, todo, who => claim.email },
    };
    pages::render(StatusCode::OK, "ack.html", ctx)
}

async fn acknowledge(State(s): State<AppState>, ClientAddr(from): ClientAddr, Path(token): Path<String>) -> Response {
    let claim = match ack::verify(&s.ack_key, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let who = Who::email_link(&claim.email, Some(from));
    let done = match claim.subject {
        Subject::Excursion(id) => excursions::acknowledge(&s.db, id, &claim.email, &who).await.map(|_| ()),
        Subject::Device(id) => devices::acknowledge(&s.db, id, &claim.email, &who).await,
    };
    if let Err(e) = done {
        return failed(e);
    }
    let (facts, acked) = match summary(&s, claim.subject).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let who = acked.unwrap_or_default();
    page(
        StatusCode::OK,
        "Acknowledged",
        facts,
        &[],
        Some(format!("Acknowledged by {who}. Escalation has stopped.")),
    )
}
