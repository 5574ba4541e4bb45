//! The audit log in the browser (`/audit`): newest first, filtered by who, action, object and
//! days, a hundred rows a page; the state sees all of it, a clinic the rows of its own places.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::AppState;
use crate::accounts::audit::{self, Filter};
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(audit_page))
}

#[derive(serde::Deserialize, Default)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    object: Option<String>,
    /// A day (`YYYY-MM-DD`), in UTC, from its start …
    from: Option<String>,
    /// … to its end.
    to: Option<String>,
    cursor: Option<i64>,
}

async fn audit_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<AuditQuery>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, "/audit").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let day = |raw: &Option<String>, end: bool| -> Result<Option<i64>, String> {
        match raw.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => Ok(None),
            Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(|d| {
                    let t = if end {
                        d.and_hms_opt(23, 59, 59)
                    } else {
                        d.and_hms_opt(0, 0, 0)
                    };
                    t.map(|t| t.and_utc().timestamp_millis() + if end { 999 } else { 0 })
                })
                .map_err(|_| format!("{d:?} is not a day (YYYY-MM-DD)")),
        }
    };
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    let (from, to) = match (day(&q.from, false), day(&q.to, true)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            return super::pages::message(
                StatusCode::BAD_REQUEST,
                "Not a day",
                &[e.as_str()],
                Some(("/audit", "The audit log")),
            )
        }
    };
    let filter = Filter {
        actor: text(&q.actor),
        object: text(&q.object),
        action: text(&q.action),
        from,
        to,
    };
    let (rows, next) = match audit::list(
        &s.db,
        &caller.scope,
        &filter,
        Page {
            limit: 100,
            after: q.cursor,
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let query = |cursor: i64| {
        let mut parts = vec![format!("cursor={cursor}")];
        for (k, v) in [
            ("actor", &q.actor),
            ("action", &q.action),
            ("object", &q.object),
            ("from", &q.from),
            ("to", &q.to),
        ] {
            if let Some(v) = text(v) {
                parts.push(format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                ));
            }
        }
        format!("/audit?{}", parts.join("&"))
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                at => r.at.get(..19).unwrap_or(&r.at).replace('T', " "),
                actor => super::pages::person(&r.actor),
                address => r.client_addr.clone(),
                action => r.action.clone(),
                object => format!("{} {}", r.object_type, r.object_ids.join(", ")),
                place => r.location_code.clone().or_else(|| r.pin.clone()),
                changes => r.changes.as_ref().map(|c| c.to_string()),
            }
        })
        .collect();
    super::pages::render(
        StatusCode::OK,
        "audit.html",
        context! {
            title => "Audit log",
            rows,
            q => context! {
                actor => q.actor.clone().unwrap_or_default(),
                action => q.action.clone().unwrap_or_default(),
                object => q.object.clone().unwrap_or_default(),
                from => q.from.clone().unwrap_or_default(),
                to => q.to.clone().unwrap_or_default(),
            },
            next => next.map(query),
            csrf_token => csrf,
            wide => true,
        },
    )
}
