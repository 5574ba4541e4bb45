//! The person's own account (`/me`): who they are, where they may act, their second factor
//! (set up at `/me/totp`, with its QR code) and a form to change their password, which asks
//! for the current one and then ends every session: they sign in again with the new one.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};

use super::auth::{self, ClientAddr};
use super::error::ApiError;
use super::AppState;
use crate::accounts::{credentials, people, Principal};
use crate::error::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(page))
        .route("/me/password", post(change_password))
}

async fn page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    show(&s, &headers, None).await
}

/// The page, with the password form's error by its field when it comes back.
async fn show(s: &AppState, headers: &HeaderMap, refused: Option<(&str, String)>) -> Response {
    let live = match auth::session_of(s, headers).await {
        Ok(Some(l)) if !l.must_enrol => l,
        Ok(Some(_)) => return Redirect::to("/me/totp").into_response(),
        Ok(None) => return super::pages::to_login("/me"),
        Err(e) => return e.into_response(),
    };
    let Some(id) = live.caller.account_id() else {
        return super::pages::to_login("/me");
    };
    let account = match people::me(&s.db, id).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (field, error) = match refused {
        Some((f, e)) => (Some(f), Some(e)),
        None => (None, None),
    };
    super::pages::render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "me.html",
        context! {
            title => "Your account",
            account => Value::from(minijinja::value::Serde(&account)),
            csrf_token => live.csrf_token,
            field,
            error,
        },
    )
}

async fn change_password(
    State(s): State<AppState>,
    headers: HeaderMap,
    ClientAddr(from): ClientAddr,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    // Anyone signed in may change their own password, a read-only role too: a session and the
    // page's token, not a right to write.
    let caller = match auth::session_of(&s, &headers).await {
        Ok(Some(l)) if !l.must_enrol && f.get("csrf_token") == Some(&l.csrf_token) => l.caller,
        Ok(Some(l)) if !l.must_enrol => {
            return super::pages::message(
                StatusCode::FORBIDDEN,
                "This form has expired",
                &["Open the page again and use its form from there."],
                Some(("/me", "Back to your account")),
            )
        }
        Ok(_) => return super::pages::to_login("/me"),
        Err(e) => return e.into_response(),
    };
    let (Some(id), Principal::Account { email, .. }) = (caller.account_id(), &caller.principal) else {
        return super::pages::to_login("/me");
    };
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if field("new_password") != field("repeat_password") {
        return show(
            &s,
            &headers,
            Some((
                "repeat_password",
                "The two new passwords differ: type the same one twice.".into(),
            )),
        )
        .await;
    }
    // Wrong current passwords are throttled as sign-ins are.
    let changed = async {
        let program = crate::coldchain::settings::program(&s.db).await?;
        if crate::accounts::sessions::must_wait(&s.db, &program.accounts, email, &from).await? {
            return Err(Error::refused(
                "wrong_password",
                "too many wrong passwords: wait a minute and try again",
            ));
        }
        let done = credentials::change(
            &s.db,
            id,
            field("current_password"),
            field("new_password"),
            from.clone(),
        )
        .await;
        if let Err(Error::Refused {
            code: "wrong_password", ..
        }) = &done
        {
            crate::accounts::sessions::code_failed(&s.db, email, &from).await?;
        }
        done
    }
    .await;
    match changed {
        Ok(()) => {
            let mut r = Redirect::to("/login?notice=password-set&next=%2Fme").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, super::pages::clear_cookie(&s));
            r
        }
        Err(Error::Refused {
            code: "wrong_password",
            message,
        }) => show(&s, &headers, Some(("current_password", message))).await,
        Err(Error::Refused { message, .. }) => show(&s, &headers, Some(("new_password", message))).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}
