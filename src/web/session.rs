//! Routes of signing in: the session, the current person (`/me`) and their second factor, and
//! the links sent by email (invitation, password reset). Each takes JSON (scripts answered
//! with JSON) or a form from the pages (answered with a page, or a redirect when done), so one
//! route serves both.

use axum::extract::{FromRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Json, Router};
use minijinja::context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{client_addr, peer, ClientAddr};
use super::error::ApiError;
use super::extract::JsonOrForm;
use super::pages::{self, login_page, password_page, safe_next, session_cookie, totp_stage};
use super::AppState;
use crate::accounts::links::Purpose;
use crate::accounts::people::{self, Account};
use crate::accounts::sessions::{self, Credentials, Live};
use crate::accounts::{credentials, second_factor, Caller, Principal};
use crate::error::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", post(sign_in).delete(sign_out))
        .route("/me", axum::routing::get(me))
        .route("/me/totp", post(start_totp))
        .route("/me/totp/confirm", post(confirm_totp))
        .route("/invitations/{token}", post(accept_invitation))
        .route("/password-resets", post(request_reset))
        .route("/password-resets/{token}", post(reset_password))
}

/// Where a request came from, as the audit and the throttle name it.
fn client(s: &AppState, headers: &HeaderMap, ext: &axum::http::Extensions) -> String {
    client_addr(s, headers, peer(ext))
}

/// The sign-in form's fields (the API's, plus where to go next).
#[derive(Deserialize, ToSchema)]
pub struct SignIn {
    pub email: String,
    pub password: String,
    pub totp: Option<String>,
    pub recovery_code: Option<String>,
    /// Pages only: the path to return to.
    #[schema(ignore)]
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    pub account: Account,
    /// Send it back as `X-CSRF-Token` on every unsafe request made with the cookie.
    pub csrf_token: String,
    /// The person must set up a second factor before anything else (`POST /api/v1/me/totp`).
    pub second_factor_setup_required: bool,
}

/// Signs in with email, password and (once on) a second factor; sets the session cookie.
/// Every failure is the same 401 `invalid_credentials`, whether or not the email has an
/// account, and repeated failures wait longer and longer.
#[utoipa::path(post, path = "/api/v1/session", tag = "accounts", request_body = SignIn,
    responses((status = 200, body = SignedIn), (status = 401, description = "invalid_credentials")))]
async fn sign_in(State(s): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let from = client(&s, &parts.headers, &parts.extensions);
    let req = axum::extract::Request::from_parts(parts, body);
    let JsonOrForm(f, form) = match <JsonOrForm<SignIn> as FromRequest<AppState>>::from_request(req, &s).await {
        Ok(b) => b,
        Err(e) => return ApiError::into_response(e),
    };
    let next = safe_next(f.next.as_deref());
    let creds = Credentials {
        email: f.email.clone(),
        password: f.password,
        totp: f.totp.filter(|t| !t.trim().is_empty()),
        recovery_code: f.recovery_code.filter(|t| !t.trim().is_empty()),
    };
    // On a page, a code that is no 6 digits is a recovery code.
    let creds = match (form, &creds.totp) {
        (true, Some(t)) if t.trim().len() > 8 => Credentials {
            recovery_code: creds.totp.clone(),
            totp: None,
            ..creds
        },
        _ => creds,
    };
    let result = async {
        let program = crate::coldchain::settings::program(&s.db).await?;
        let started = sessions::sign_in(&s.db, &program.accounts, &creds, &from).await?;
        let account = people::me(&s.db, started.account_id).await?;
        Ok::<_, Error>((started, account))
    }
    .await;
    match (result, form) {
        (Ok((started, account)), false) => {
            let must = account.second_factor_required && !account.second_factor;
            let mut r = Json(SignedIn {
                account,
                csrf_token: started.csrf_token,
                second_factor_setup_required: must,
            })
            .into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&s, &started.secret));
            r
        }
        (Ok((started, account)), true) => {
            let to = if account.second_factor_required && !account.second_factor {
                "/me/totp".to_string()
            } else {
                next
            };
            let mut r = Redirect::to(&to).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&s, &started.secret));
            r
        }
        (
            Err(Error::Refused {
                code: "invalid_credentials",
                message,
            }),
            true,
        ) => login_page(StatusCode::UNAUTHORIZED, &f.email, &next, Some(&message), None),
        (Err(e), _) => ApiError::from(e).into_response(),
    }
}

/// Signs out: the session ends.
#[utoipa::path(delete, path = "/api/v1/session", tag = "accounts", responses((status = 204), (status = 401)))]
async fn sign_out(State(s): State<AppState>, live: Live) -> Result<Response, ApiError> {
    sessions::sign_out(&s.db, &live).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, pages::clear_cookie(&s));
    Ok(r)
}

/// The person signed in (or, for a token, its name and grant).
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", responses((status = 200, body = Account), (status = 401)))]
async fn me(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    match caller.account_id() {
        Some(id) => Ok(Json(people::me(&s.db, id).await?).into_response()),
        None => Ok(Json(serde_json::json!({
            "token": caller.actor(),
            "grants": caller.grants.iter().map(|g| serde_json::json!({"role": g.role.as_str(), "scope": g.scope.key()})).collect::<Vec<_>>(),
        }))
        .into_response()),
    }
}

/// Starts setting up TOTP: a new secret, its `otpauth://` URI and a QR code (SVG). It is on
/// only once a code from the app is confirmed.
#[utoipa::path(post, path = "/api/v1/me/totp", tag = "accounts",
    responses((status = 200, body = second_factor::Enrolment), (status = 409)))]
async fn start_totp(State(s): State<AppState>, live: Live, headers: HeaderMap) -> Response {
    let form = super::auth::is_form(&headers);
    match (second_factor::start(&s.db, &live.caller).await, form) {
        (Ok(e), false) => Json(e).into_response(),
        (Ok(e), true) => totp_stage(
            StatusCode::OK,
            &live.csrf_token,
            "scan",
            context! { qr_svg => minijinja::Value::from_safe_string(e.qr_svg), secret => e.secret },
        ),
        (Err(e), _) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct TotpConfirm {
    /// The 6-digit code the app shows now.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown only now.
    pub recovery_codes: Vec<String>,
}

/// Turns the second factor on with a code from the app; returns ten recovery codes.
#[utoipa::path(post, path = "/api/v1/me/totp/confirm", tag = "accounts", request_body = TotpConfirm,
    responses((status = 200, body = RecoveryCodes), (status = 400, description = "invalid_code"), (status = 409)))]
async fn confirm_totp(
    State(s): State<AppState>,
    live: Live,
    ClientAddr(from): ClientAddr,
    JsonOrForm(body, form): JsonOrForm<TotpConfirm>,
) -> Response {
    let email = match &live.caller.principal {
        Principal::Account { email, .. } => email.clone(),
        Principal::Token { .. } => return ApiError::Unauthorized.into_response(),
    };
    // Codes are tried as sign-ins are: after repeated failures, each try waits.
    let confirmed = async {
        let program = crate::coldchain::settings::program(&s.db).await?;
        if sessions::must_wait(&s.db, &program.accounts, &email, &from).await? {
            return Err(Error::refused(
                "invalid_code",
                "too many wrong codes: wait a minute, then type the code the app shows",
            ));
        }
        let done = second_factor::confirm(&s.db, &live.caller, Some(&live.key), &body.code).await;
        if let Err(Error::Refused {
            code: "invalid_code", ..
        }) = &done
        {
            sessions::code_failed(&s.db, &email, &from).await?;
        }
        done
    }
    .await;
    match (confirmed, form) {
        (Ok(codes), false) => Json(RecoveryCodes { recovery_codes: codes }).into_response(),
        (Ok(codes), true) => totp_stage(StatusCode::OK, &live.csrf_token, "done", context! { codes }),
        (Err(Error::Refused { message, .. }), true) => {
            // Shown again with the same key, and the code kept.
            match second_factor::pending(&s.db, &live.caller).await {
                Ok(e) => totp_stage(
                    StatusCode::BAD_REQUEST,
                    &live.csrf_token,
                    "scan",
                    context! { qr_svg => minijinja::Value::from_safe_string(e.qr_svg), secret => e.secret, code => body.code, error => message },
                ),
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        (Err(e), _) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewPassword {
    pub password: String,
}

async fn password_route(s: AppState, purpose: Purpose, token: String, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let from = client(&s, &parts.headers, &parts.extensions);
    let req = axum::extract::Request::from_parts(parts, body);
    let JsonOrForm(b, form): JsonOrForm<NewPassword> =
        match <JsonOrForm<NewPassword> as FromRequest<AppState>>::from_request(req, &s).await {
            Ok(b) => b,
            Err(e) => return ApiError::into_response(e),
        };
    match (
        credentials::set_from_link(&s.db, purpose, &token, &b.password, from).await,
        form,
    ) {
        (Ok(()), false) => StatusCode::NO_CONTENT.into_response(),
        (Ok(()), true) => Redirect::to("/login?notice=password-set").into_response(),
        (
            Err(Error::Refused {
                code: "expired_link", ..
            }),
            true,
        ) => pages::dead_link(),
        (Err(Error::Refused { message, .. }), true) => {
            password_page(&s, purpose, &token, StatusCode::BAD_REQUEST, Some(&message)).await
        }
        (Err(e), _) => ApiError::from(e).into_response(),
    }
}

/// Sets the password of an invited account from its invitation link (single use, 72 hours).
/// Every link that does not work answers 404 `expired_link`, whatever the reason.
#[utoipa::path(post, path = "/api/v1/invitations/{token}", tag = "accounts", params(("token" = String, Path)),
    request_body = NewPassword, responses((status = 204), (status = 400, description = "weak_password"), (status = 404, description = "expired_link")))]
async fn accept_invitation(
    State(s): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> Response {
    password_route(s, Purpose::Invite, token, req).await
}

/// Sets a new password from a reset link (single use, 1 hour); every session of the account
/// ends.
#[utoipa::path(post, path = "/api/v1/password-resets/{token}", tag = "accounts", params(("token" = String, Path)),
    request_body = NewPassword, responses((status = 204), (status = 400, description = "weak_password"), (status = 404, description = "expired_link")))]
async fn reset_password(
    State(s): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> Response {
    password_route(s, Purpose::Reset, token, req).await
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    pub email: String,
}

/// Asks for a password reset. Always 202, the same whether or not the email has an account;
/// the link (1 hour) is emailed only when it does.
#[utoipa::path(post, path = "/api/v1/password-resets", tag = "accounts", request_body = ResetRequest,
    responses((status = 202)))]
async fn request_reset(State(s): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let from = client(&s, &parts.headers, &parts.extensions);
    let req = axum::extract::Request::from_parts(parts, body);
    let JsonOrForm(b, form): JsonOrForm<ResetRequest> =
        match <JsonOrForm<ResetRequest> as FromRequest<AppState>>::from_request(req, &s).await {
            Ok(b) => b,
            Err(e) => return ApiError::into_response(e),
        };
    // Done after the answer, so neither its answer nor its timing tells whether the email
    // has an account; a failure is logged, never told.
    let (db, public_url, email) = (s.db.clone(), s.public_url.clone(), b.email.clone());
    tokio::spawn(async move {
        if let Err(e) = credentials::request_reset(&db, &public_url, &email, from).await {
            tracing::error!(error = %e, "a password reset could not be queued");
        }
    });
    if form {
        pages::message(
            StatusCode::ACCEPTED,
            "Check your email",
            &["If that email has an account, a link to choose a new password is on its way. It works for one hour."],
            Some(("/login", "Back to sign in")),
        )
    } else {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"status": "if the email has an account, a reset link was sent"})),
        )
            .into_response()
    }
}
