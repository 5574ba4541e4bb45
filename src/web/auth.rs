//! Who is calling. Every `/api/v1` request passes [`authenticate`] first: a Bearer token
//! (scripts, EHRs; no CSRF needed) or the session cookie of a person signed in. With the cookie,
//! every unsafe method needs the session's CSRF token, as the `X-CSRF-Token` header or a
//! `csrf_token` form field (else 403 `csrf`); a person who must enrol a second factor can do
//! nothing else (403 `mfa_required`); a state viewer only reads. Handlers then take a
//! [`Caller`] (401 when there is none).

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::accounts::sessions::{self, Live};
use crate::accounts::{tokens, Caller};

/// The form body a cookie-authenticated form post may carry, at most (it is read to find its
/// `csrf_token`).
const FORM_LIMIT: usize = 1 << 20;

/// Routes a person who must enrol a second factor may still use (the path under `/api/v1`).
const ENROLMENT: [(Method, &str); 4] = [
    (Method::GET, "/me"),
    (Method::DELETE, "/session"),
    (Method::POST, "/me/totp"),
    (Method::POST, "/me/totp/confirm"),
];

/// What clinic staff may change (README, the roles table): stock, doses, daily checks and
/// reviews, and their own sign-in. `*` stands for one path segment.
const STAFF_WRITES: [(&str, &str); 24] = [
    ("POST", "/locations/*/receipts"),
    ("POST", "/locations/*/wastage"),
    ("POST", "/locations/*/returns"),
    ("POST", "/locations/*/adjustments"),
    ("POST", "/locations/*/stock-events/*/reverse"),
    ("POST", "/locations/*/transfers"),
    ("POST", "/locations/*/reconciliations"),
    ("POST", "/locations/*/holds"),
    ("POST", "/locations/*/administrations"),
    ("POST", "/holds/*/release"),
    ("POST", "/decrement-exceptions/*/resolve"),
    ("PUT", "/borrowing/*"),
    ("POST", "/hl7"),
    ("POST", "/units/*/daily/*/sign"),
    ("POST", "/excursions/*/acknowledge"),
    ("POST", "/excursions/*/review"),
    ("POST", "/device-alerts/*/acknowledge"),
    // Orders: staff draft them and receive shipments; a coordinator submits.
    ("POST", "/locations/*/orders"),
    ("PATCH", "/orders/*"),
    ("POST", "/orders/*/receive"),
    ("POST", "/locations/*/no-doses-report"),
    // Their own name (the account routes refuse anything else).
    ("PATCH", "/accounts/*"),
    ("POST", "/me/totp"),
    ("POST", "/me/totp/confirm"),
];

fn matches_route(pattern: &str, path: &str) -> bool {
    let (p, a): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == a.len() && p.iter().zip(&a).all(|(p, a)| *p == "*" || p == a)
}

fn staff_may(method: &Method, path: &str) -> bool {
    (*method == Method::DELETE && path == "/session")
        || STAFF_WRITES
            .iter()
            .any(|(m, p)| method.as_str() == *m && matches_route(p, path))
}

fn staff_refused() -> ApiError {
    ApiError::Refused(
        "scope",
        "clinic staff record stock, doses, daily checks and reviews; this change is for the location's VFC coordinator"
            .into(),
    )
}

/// Routes that take no caller (their credential is in the body or the link): a stale cookie on
/// them is ignored, and needs no CSRF token.
fn public(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && (path == "/session"
            || path == "/password-resets"
            || path.starts_with("/password-resets/")
            || path.starts_with("/invitations/"))
}

/// The client's address: the peer, or behind a trusted proxy the nearest untrusted address its
/// `X-Forwarded-For` names.
pub fn client_addr(s: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    let Some(peer) = peer.map(|p| p.ip()) else {
        return "unknown".into();
    };
    let trusted = |ip: IpAddr| s.settings.trusted_proxies.iter().any(|c| c.contains(ip));
    if !trusted(peer) {
        return peer.to_string();
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !trusted(**ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
        .to_string()
}

/// The peer address of a request, when the server gave one.
pub fn peer(parts_ext: &axum::http::Extensions) -> Option<SocketAddr> {
    parts_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The session cookie's secret, if sent.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == sessions::COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The live session behind a request's cookie, if any.
pub async fn session_of(s: &AppState, headers: &HeaderMap) -> Result<Option<Live>, ApiError> {
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    let program = crate::coldchain::settings::program(&s.db).await?;
    Ok(sessions::find(&s.db, &program.accounts, &cookie).await?)
}

/// Who is asking for a page or a chart outside `/api/v1` (which only reads): a token, or a
/// signed-in person with their second factor set up; `None` for nobody.
pub async fn page_caller(s: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    if let Some(secret) = bearer(headers) {
        return Ok(tokens::authenticate(&s.db, secret).await?);
    }
    Ok(session_of(s, headers)
        .await?
        .filter(|l| !l.must_enrol)
        .map(|l| l.caller))
}

fn csrf() -> ApiError {
    ApiError::Refused(
        "csrf",
        "send the session's CSRF token (from POST /api/v1/session) as the X-CSRF-Token header or a csrf_token form field".into(),
    )
}

/// Finds the caller of an `/api/v1` request and applies the session's rules.
pub async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match authenticated(&s, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn authenticated(s: &AppState, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let client = client_addr(s, &parts.headers, peer(&parts.extensions));
    let path = parts.uri.path().trim_start_matches("/api/v1").to_string();
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(secret) = bearer(&parts.headers) {
        if let Some(mut caller) = tokens::authenticate(&s.db, secret).await? {
            caller.client_addr = Some(client);
            if unsafe_method {
                if caller.read_only() {
                    return Err(read_only());
                }
                if caller.only_staff() && !staff_may(&parts.method, &path) {
                    return Err(staff_refused());
                }
                caller = caller.writing(staff_may(&parts.method, &path));
            }
            parts.extensions.insert(caller);
        }
        return Ok(Request::from_parts(parts, body));
    }
    if public(&parts.method, &path) {
        // A form from another site may not sign someone in to an account of its choosing.
        if is_form(&parts.headers) && !same_origin(&parts.headers) {
            return Err(csrf());
        }
        return Ok(Request::from_parts(parts, body));
    }
    let Some(mut live) = session_of(s, &parts.headers).await? else {
        return Ok(Request::from_parts(parts, body));
    };
    let mut body = body;
    if unsafe_method {
        let header = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sent = match header {
            Some(h) => Some(h),
            None if is_form(&parts.headers) => {
                let bytes = axum::body::to_bytes(body, FORM_LIMIT)
                    .await
                    .map_err(|_| ApiError::PayloadTooLarge("a form is at most 1 MiB".into()))?;
                let field = url::form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == "csrf_token")
                    .map(|(_, v)| v.into_owned());
                body = Body::from(bytes);
                field
            }
            None => None,
        };
        if !sent.is_some_and(|t| constant_eq(t.as_bytes(), live.csrf_token.as_bytes())) {
            return Err(csrf());
        }
    }
    if live.must_enrol && !ENROLMENT.iter().any(|(m, p)| *m == parts.method && *p == path) {
        return Err(ApiError::Refused(
            "mfa_required",
            "your role needs a second factor: set one up first (POST /api/v1/me/totp, or the page /me/totp)".into(),
        ));
    }
    let own = ENROLMENT.iter().any(|(m, p)| *m == parts.method && *p == path);
    if unsafe_method && !own {
        if live.caller.read_only() {
            return Err(read_only());
        }
        if live.caller.only_staff() && !staff_may(&parts.method, &path) {
            return Err(staff_refused());
        }
        live.caller = live.caller.clone().writing(staff_may(&parts.method, &path));
    }
    live.caller.client_addr = Some(client);
    parts.extensions.insert(live.caller.clone());
    parts.extensions.insert(live);
    Ok(Request::from_parts(parts, body))
}

fn read_only() -> ApiError {
    ApiError::Refused(
        "scope",
        "a state viewer reads only; ask a state coordinator to make the change".into(),
    )
}

/// Whether a browser's request came from a page of this site: its `Origin` (or, lacking one,
/// `Referer`) names the host it was sent to. A request with neither (a script) passes.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    match (from, host) {
        (None, _) => true,
        (Some(from), Some(host)) => url::Url::parse(from).is_ok_and(|u| {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            u.host_str().is_some_and(|h| format!("{h}{port}") == host)
        }),
        (Some(_), None) => false,
    }
}

pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a request came from (see [`client_addr`]), for handlers that take no caller.
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(s, &parts.headers, peer(&parts.extensions))))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or(ApiError::Unauthorized)
    }
}

impl FromRequestParts<AppState> for Live {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Live>().cloned().ok_or(ApiError::Unauthorized)
    }
}

/// A caller who is a state coordinator; anyone else is refused (403) before the request's body
/// is read, so a clinic learns nothing from how its body would have been judged.
pub struct StateCoordinator(pub Caller);

impl FromRequestParts<AppState> for StateCoordinator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_state() {
            Ok(StateCoordinator(caller))
        } else {
            Err(ApiError::Forbidden(format!(
                "{} {} is for state VFC coordinators only",
                parts.method,
                parts.uri.path()
            )))
        }
    }
}

/// Refuses callers who are not state coordinators.
pub fn require_state(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.is_state() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{what} is for state VFC coordinators only"
        )))
    }
}
