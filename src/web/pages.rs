//! Server-rendered pages: templates in `dashboards/` (embedded in the binary) rendered with
//! minijinja, which escapes every value of a template named `*.html`. Every page is sent with a
//! strict Content-Security-Policy (no inline script or style), `X-Frame-Options: DENY` and
//! `Referrer-Policy: same-origin`.
//!
//! The pages of this module are the ones a person needs before anything else: sign in, set a
//! password from an invitation or a reset link, ask for a reset, enrol a second factor, and the
//! home that shows who they are. Forms post to the API's own routes (`/api/v1/session`,
//! `/api/v1/invitations/{token}`, …), which answer a form with a page and JSON with JSON.

use std::sync::OnceLock;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Environment, Value};

use super::auth;
use super::AppState;
use crate::accounts::links::{self, Purpose};
use crate::accounts::{people, sessions};

const TEMPLATES: [(&str, &str); 30] = [
    ("base.html", include_str!("../../dashboards/base.html")),
    ("ack.html", include_str!("../../dashboards/ack.html")),
    ("message.html", include_str!("../../dashboards/message.html")),
    ("login.html", include_str!("../../dashboards/login.html")),
    ("set_password.html", include_str!("../../dashboards/set_password.html")),
    (
        "reset_request.html",
        include_str!("../../dashboards/reset_request.html"),
    ),
    ("totp.html", include_str!("../../dashboards/totp.html")),
    ("home.html", include_str!("../../dashboards/home.html")),
    ("unit.html", include_str!("../../dashboards/unit.html")),
    ("daily.html", include_str!("../../dashboards/daily.html")),
    ("location.html", include_str!("../../dashboards/location.html")),
    ("excursion.html", include_str!("../../dashboards/excursion.html")),
    ("state_home.html", include_str!("../../dashboards/state_home.html")),
    (
        "location_orders.html",
        include_str!("../../dashboards/location_orders.html"),
    ),
    ("order.html", include_str!("../../dashboards/order.html")),
    ("orders_queue.html", include_str!("../../dashboards/orders_queue.html")),
    ("inventory.html", include_str!("../../dashboards/inventory.html")),
    ("accounts.html", include_str!("../../dashboards/accounts.html")),
    ("account.html", include_str!("../../dashboards/account.html")),
    ("tokens.html", include_str!("../../dashboards/tokens.html")),
    ("audit.html", include_str!("../../dashboards/audit.html")),
    ("stock_tabs.html", include_str!("../../dashboards/stock_tabs.html")),
    ("receipt.html", include_str!("../../dashboards/receipt.html")),
    ("removal.html", include_str!("../../dashboards/removal.html")),
    ("transfer.html", include_str!("../../dashboards/transfer.html")),
    ("count.html", include_str!("../../dashboards/count.html")),
    ("exceptions.html", include_str!("../../dashboards/exceptions.html")),
    ("borrowing.html", include_str!("../../dashboards/borrowing.html")),
    ("devices.html", include_str!("../../dashboards/devices.html")),
    ("me.html", include_str!("../../dashboards/me.html")),
];

const CSS: &str = include_str!("../../dashboards/static/site.css");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
        env
    })
}

/// Renders a template as a page with its status and the pages' security headers.
pub fn render(status: StatusCode, template: &str, ctx: Value) -> Response {
    match env().get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => secured((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, template, "rendering a page");
            secured(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Html("<!doctype html><title>Error</title><p>Something went wrong; try again in a minute.</p>"),
                )
                    .into_response(),
            )
        }
    }
}

/// A page of a title and some sentences.
pub fn message(status: StatusCode, title: &str, notes: &[&str], link: Option<(&str, &str)>) -> Response {
    render(
        status,
        "message.html",
        context! {
            title,
            notes => Value::from(minijinja::value::Serde(notes)),
            link => link.map(|(href, text)| context! { href, text }),
        },
    )
}

/// The headers every page carries.
pub fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/reset", get(reset_request))
        .route("/reset/{token}", get(reset_page))
        .route("/invite/{token}", get(invite_page))
        .route("/me/totp", get(totp_page))
        .route("/static/site.css", get(css))
        .route("/locations", get(go_to_location))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// Where to go after sign-in: a path on this site only (`/units/7`), never another origin
/// (`//evil.example`, `https://…`, `/\evil`).
pub fn safe_next(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
}

/// The sign-in page; `email` and `error` are kept when it is shown again after a failure.
pub fn login_page(status: StatusCode, email: &str, next: &str, error: Option<&str>, notice: Option<&str>) -> Response {
    render(
        status,
        "login.html",
        context! { title => "Sign in", email, next, error, notice },
    )
}

async fn login(Query(q): Query<LoginQuery>) -> Response {
    let notice = match q.notice.as_deref() {
        Some("password-set") => Some("Your password is set. Sign in with it."),
        Some("signed-out") => Some("You are signed out."),
        _ => None,
    };
    login_page(StatusCode::OK, "", &safe_next(q.next.as_deref()), None, notice)
}

/// Sends a person to sign in, and back to `next` after.
pub fn to_login(next: &str) -> Response {
    let target = format!(
        "/login?next={}",
        percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
    );
    Redirect::to(&target).into_response()
}

#[derive(serde::Deserialize)]
struct GoTo {
    code: Option<String>,
}

/// The home's "go to a location" box: `/locations?code=012345a` → `/locations/012345A`.
async fn go_to_location(Query(q): Query<GoTo>) -> Response {
    match q.code.as_deref().map(crate::domain::LocationCode::parse) {
        Some(Ok(code)) => Redirect::to(&format!("/locations/{code}")).into_response(),
        _ => message(
            StatusCode::BAD_REQUEST,
            "That is not a location code",
            &["A location code is the PIN and its suffix, such as 012345A."],
            Some(("/", "Home")),
        ),
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf_token: Option<String>,
}

async fn logout(State(s): State<AppState>, headers: HeaderMap, axum::Form(f): axum::Form<CsrfForm>) -> Response {
    if let Ok(Some(live)) = auth::session_of(&s, &headers).await {
        if f.csrf_token.as_deref() != Some(live.csrf_token.as_str()) {
            return message(
                StatusCode::FORBIDDEN,
                "Sign-out needs the page's form",
                &["Use the Sign out button of a page of this site."],
                Some(("/", "Home")),
            );
        }
        if let Err(e) = sessions::sign_out(&s.db, &live).await {
            return super::error::ApiError::from(e).into_response();
        }
    }
    let mut r = Redirect::to("/login?notice=signed-out").into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie(&s));
    r
}

/// The session cookie, `HttpOnly` and `SameSite=Lax`, `Secure` whenever the public URL is
/// https.
pub fn session_cookie(s: &AppState, secret: &str) -> HeaderValue {
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={secret}; Path=/; HttpOnly; SameSite=Lax{secure}",
        sessions::COOKIE
    ))
    .expect("a hex secret is a valid header")
}

pub fn clear_cookie(s: &AppState) -> HeaderValue {
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        sessions::COOKIE
    ))
    .expect("a valid header")
}

/// Who is looking at a page at `path`: a signed-in person (with the session's CSRF token for the
/// page's forms) or a token (no forms); anyone else is sent to sign in and back.
pub async fn viewer(
    s: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<(crate::accounts::Caller, Option<String>), Response> {
    match auth::session_of(s, headers).await {
        Ok(Some(live)) if !live.must_enrol => Ok((live.caller, Some(live.csrf_token))),
        Ok(_) => match auth::page_caller(s, headers).await {
            Ok(Some(c)) => Ok((c, None)),
            Ok(None) => Err(to_login(path)),
            Err(e) => Err(e.into_response()),
        },
        Err(e) => Err(e.into_response()),
    }
}

/// Who sends a page's form: a signed-in person whose form carries the page's CSRF token and who
/// may change things, as they write; otherwise the page that says why (`back`: where the form
/// was).
pub async fn form_writer(
    s: &AppState,
    headers: &HeaderMap,
    csrf_token: Option<&str>,
    back: &str,
) -> Result<crate::accounts::Caller, Response> {
    let live = match auth::session_of(s, headers).await {
        Ok(Some(l)) if !l.must_enrol => l,
        Ok(_) => return Err(to_login(back)),
        Err(e) => return Err(e.into_response()),
    };
    if csrf_token != Some(live.csrf_token.as_str()) {
        return Err(message(
            StatusCode::FORBIDDEN,
            "This form has expired",
            &["Open the page again and use its form from there."],
            Some((back, "Back to the page")),
        ));
    }
    if live.caller.read_only() {
        return Err(message(
            StatusCode::FORBIDDEN,
            "You may only read",
            &["Your role reads the program's records; the clinic's coordinators and staff do this."],
            Some((back, "Back to the page")),
        ));
    }
    Ok(live.caller.writing(true))
}

/// An actor as a person reads it: `account:7:sam@example.org` is sam@example.org; a token or
/// the service keeps its own name.
pub fn person(actor: &str) -> String {
    match actor.strip_prefix("account:").and_then(|rest| rest.split_once(':')) {
        Some((id, who)) if id.chars().all(|c| c.is_ascii_digit()) => who.to_string(),
        _ => actor.to_string(),
    }
}

/// The page for anything the caller may not see (or that is not there: the two look alike).
pub fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        &["There is nothing here that you may see. Check the address, or go back home."],
        Some(("/", "Home")),
    )
}

/// The one page for a link that does not work, whatever the reason.
pub fn dead_link() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "This link does not work",
        &["It was used, has expired or was replaced. Ask for a new one: your coordinator can invite you again, or ask for a password reset."],
        Some(("/reset", "Ask for a password reset")),
    )
}

/// The page that sets a password from a link; `error` when it is shown again.
pub async fn password_page(
    s: &AppState,
    purpose: Purpose,
    token: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let Ok(id) = links::peek(&s.db, token, purpose).await else {
        return dead_link();
    };
    let Ok(account) = people::me(&s.db, id).await else {
        return dead_link();
    };
    let (title, intro, action) = match purpose {
        Purpose::Invite => (
            "Welcome to vfc-monitor",
            format!(
                "{}, choose the password you will sign in with as {}.",
                account.name, account.email
            ),
            format!("/api/v1/invitations/{token}"),
        ),
        Purpose::Reset => (
            "Choose a new password",
            format!("{}, choose a new password for {}.", account.name, account.email),
            format!("/api/v1/password-resets/{token}"),
        ),
    };
    render(
        status,
        "set_password.html",
        context! { title, intro, action, email => account.email, error },
    )
}

async fn invite_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    password_page(&s, Purpose::Invite, &token, StatusCode::OK, None).await
}

async fn reset_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    password_page(&s, Purpose::Reset, &token, StatusCode::OK, None).await
}

async fn reset_request() -> Response {
    render(
        StatusCode::OK,
        "reset_request.html",
        context! { title => "Forgot your password?", email => "" },
    )
}

/// The second-factor page at a stage: `start`, `scan` (with the QR code), `done` (with the
/// recovery codes) or `on`.
pub fn totp_stage(status: StatusCode, csrf_token: &str, stage: &str, extra: Value) -> Response {
    let base = context! {
        title => "Second factor",
        csrf_token,
        stage,
    };
    render(status, "totp.html", context! { ..base, ..extra })
}

async fn totp_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let live = match auth::session_of(&s, &headers).await {
        Ok(Some(l)) => l,
        Ok(None) => return to_login("/me/totp"),
        Err(e) => return e.into_response(),
    };
    let Some(id) = live.caller.account_id() else {
        return to_login("/me/totp");
    };
    match people::me(&s.db, id).await {
        Ok(a) if a.second_factor => totp_stage(StatusCode::OK, &live.csrf_token, "on", context! {}),
        Ok(a) => totp_stage(
            StatusCode::OK,
            &live.csrf_token,
            "start",
            context! { required => a.second_factor_required },
        ),
        Err(e) => super::error::ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_a_path_on_this_site_is_followed() {
        assert_eq!(safe_next(Some("/units/7?x=1")), "/units/7?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "evil",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn a_value_with_markup_is_shown_as_text() {
        let r = env()
            .get_template("message.html")
            .unwrap()
            .render(context! { title => "<script>alert(1)</script>", notes => ["<b>x</b>"] })
            .unwrap();
        assert!(!r.contains("<script>alert"), "{r}");
        assert!(r.contains("&lt;script&gt;"));
        assert!(r.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") || r.contains("&lt;b&gt;x&lt;/b&gt;"));
    }

    #[test]
    fn a_persons_actor_reads_as_their_email() {
        assert_eq!(person("account:12:sam@example.org"), "sam@example.org");
        assert_eq!(person("token:ehr-feed"), "token:ehr-feed");
    }

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            env().get_template(name).unwrap();
        }
    }
}
