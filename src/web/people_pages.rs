//! People and machines in the browser: accounts (invite, change role, disable, reset a second
//! factor), API tokens (make one, shown once; revoke), and the audit log with filters. Each calls
//! the same capability functions as the API, with the signed-in person's scope and rights; a
//! refusal comes back on the page with what was typed. The audit log's page is in `audit_pages`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};

use super::error::ApiError;
use super::extract::Id;
use super::AppState;
use crate::accounts::people::{self, AccountPatch, GrantBody, NewAccount};
use crate::accounts::tokens::{self, TokenRequest};
use crate::accounts::{second_factor, status, Caller, Role};
use crate::store::Page;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/accounts", get(accounts).post(invite))
        .route("/accounts/{id}", get(account).post(change_role))
        .route("/accounts/{id}/disable", post(disable))
        .route("/accounts/{id}/enable", post(enable))
        .route("/accounts/{id}/totp/reset", post(reset_totp))
        .route("/tokens", get(tokens_page).post(make_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
}

/// The roles a person or a new token may be given (`clinic` is the role of tokens made before
/// accounts, not offered).
fn roles() -> Vec<Value> {
    Role::ALL
        .iter()
        .filter(|r| **r != Role::Clinic)
        .map(|r| context! { value => r.as_str(), text => r.as_str().replace('-', " ") })
        .collect()
}

/// A grant from the form: a role and where (a PIN of 6 digits, a location code, or nothing for
/// the program's roles).
fn grant_of(f: &HashMap<String, String>) -> GrantBody {
    let place = f.get("place").map(|p| p.trim().to_uppercase()).unwrap_or_default();
    let (pin, location) = match place.len() {
        0 => (None, None),
        6 if place.chars().all(|c| c.is_ascii_digit()) => (Some(place), None),
        _ => (None, Some(place)),
    };
    GrantBody {
        role: f.get("role").cloned().unwrap_or_default(),
        pin,
        location,
    }
}

fn kept(f: &HashMap<String, String>) -> HashMap<String, String> {
    f.iter()
        .filter(|(k, _)| *k != "csrf_token")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn refused(e: &crate::error::Error) -> bool {
    use crate::error::Error as E;
    matches!(
        e,
        E::Invalid(_)
            | E::Conflict(_)
            | E::Forbidden(_)
            | E::Refused { .. }
            | E::RefusedWith { .. }
            | E::StateApprovalRequired(_)
    )
}

/// The page for what the caller may see but not do (a token listing people, staff inviting).
fn not_yours(e: &crate::error::Error) -> Response {
    super::pages::message(
        StatusCode::FORBIDDEN,
        "Not for your role",
        &[e.to_string().as_str()],
        Some(("/", "Home")),
    )
}

#[derive(serde::Deserialize, Default)]
struct Notice {
    notice: Option<String>,
}

async fn accounts(State(s): State<AppState>, headers: HeaderMap, Query(n): Query<Notice>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, "/accounts").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notice = n.notice.map(|who| format!("Invitation sent to {who}."));
    accounts_page(&s, &caller, csrf, notice, None).await
}

async fn accounts_page(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    notice: Option<String>,
    returned: Option<(HashMap<String, String>, String)>,
) -> Response {
    let (list, _) = match people::list(
        &s.db,
        caller,
        Page {
            limit: 200,
            after: None,
        },
    )
    .await
    {
        Ok(l) => l,
        Err(e) if refused(&e) => return not_yours(&e),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (form, error) = match returned {
        Some((f, e)) => (f, Some(e)),
        None => (HashMap::new(), None),
    };
    super::pages::render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "accounts.html",
        context! {
            title => "Accounts",
            accounts => Value::from(minijinja::value::Serde(&list)),
            roles => roles(),
            may_invite => csrf.is_some() && caller.may_manage_accounts(),
            form => Value::from(minijinja::value::Serde(&form)),
            error,
            notice,
            csrf_token => csrf,
            wide => true,
        },
    )
}

async fn invite(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let caller =
        match super::pages::form_writer(&s, &headers, f.get("csrf_token").map(String::as_str), "/accounts").await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let new = NewAccount {
        email: f.get("email").cloned().unwrap_or_default(),
        name: f.get("name").cloned().unwrap_or_default(),
        grants: vec![grant_of(&f)],
    };
    let g = &new.grants[0];
    let known = super::accounts::known_places(&s, &[(g.pin.as_deref(), g.location.as_deref())]).await;
    let created = match known {
        Ok(()) => people::create(&s.db, Some(&caller), &s.public_url, &new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok((a, _link)) => Redirect::to(&format!(
            "/accounts?notice={}",
            percent_encoding::utf8_percent_encode(&a.email, percent_encoding::NON_ALPHANUMERIC)
        ))
        .into_response(),
        Err(e) if refused(&e) => {
            accounts_page(
                &s,
                &caller,
                f.get("csrf_token").cloned(),
                None,
                Some((kept(&f), e.to_string())),
            )
            .await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn account(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, Query(n): Query<Notice>) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, &format!("/accounts/{id}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notice = n.notice.as_deref().map(|k| match k {
        "role" => "The role is changed.",
        "disabled" => "Disabled: the person's sessions are ended.",
        "enabled" => "Enabled again.",
        "totp" => "The second factor is reset: the person sets up a new one at their next sign-in.",
        _ => "Done.",
    });
    account_page(&s, &caller, csrf, id, notice, None).await
}

async fn account_page(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    id: i64,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let a = match people::get(&s.db, caller, id).await {
        Ok(a) => a,
        Err(crate::error::Error::NotFound(_)) => return super::pages::not_found(),
        Err(e) if refused(&e) => return not_yours(&e),
        Err(e) => return ApiError::from(e).into_response(),
    };
    super::pages::render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "account.html",
        context! {
            title => a.name.clone(),
            a => Value::from(minijinja::value::Serde(&a)),
            roles => roles(),
            may_manage => csrf.is_some() && caller.may_manage_accounts(),
            error,
            notice,
            csrf_token => csrf,
        },
    )
}

type Form = axum::Form<HashMap<String, String>>;

/// Who sends an account's form, and where it comes back.
async fn writer(
    s: &AppState,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
    back: &str,
) -> Result<Caller, Response> {
    super::pages::form_writer(s, headers, f.get("csrf_token").map(String::as_str), back).await
}

async fn after<T>(
    s: &AppState,
    caller: &Caller,
    f: &HashMap<String, String>,
    id: i64,
    r: crate::error::Result<T>,
    notice: &str,
) -> Response {
    match r {
        Ok(_) => Redirect::to(&format!("/accounts/{id}?notice={notice}")).into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e) if refused(&e) => {
            account_page(s, caller, f.get("csrf_token").cloned(), id, None, Some(e.to_string())).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn change_role(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, &format!("/accounts/{id}")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let g = grant_of(&f);
    let r = match super::accounts::known_places(&s, &[(g.pin.as_deref(), g.location.as_deref())]).await {
        Ok(()) => {
            let patch = AccountPatch {
                name: None,
                grants: Some(vec![g]),
            };
            people::update(&s.db, &caller, id, &patch).await
        }
        Err(e) => Err(e),
    };
    after(&s, &caller, &f, id, r, "role").await
}

async fn disable(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, &format!("/accounts/{id}")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let reason = f
        .get("reason")
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| format!("disabled by {}", caller.actor()));
    let r = status::disable(&s.db, Some(&caller), id, &reason).await;
    after(&s, &caller, &f, id, r, "disabled").await
}

async fn enable(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, &format!("/accounts/{id}")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = status::enable(&s.db, &caller, id).await;
    after(&s, &caller, &f, id, r, "enabled").await
}

async fn reset_totp(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, &format!("/accounts/{id}")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let r = second_factor::reset(&s.db, &caller, id).await;
    after(&s, &caller, &f, id, r, "totp").await
}

async fn tokens_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (caller, csrf) = match super::pages::viewer(&s, &headers, "/tokens").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    show_tokens(&s, &caller, csrf, None, None).await
}

/// The tokens the caller may see; `made`: a new token's name and secret, shown this once.
async fn show_tokens(
    s: &AppState,
    caller: &Caller,
    csrf: Option<String>,
    made: Option<(String, String)>,
    returned: Option<(HashMap<String, String>, String)>,
) -> Response {
    if !(caller.may_make_tokens() || caller.scope == crate::accounts::Scope::Program) {
        return super::pages::message(
            StatusCode::FORBIDDEN,
            "Tokens are for coordinators",
            &["The list of tokens is for those who may make them: a clinic's coordinator or the state, signed in with a second factor."],
            Some(("/", "Home")),
        );
    }
    let list = match tokens::list_in(&s.db, &caller.scope, false).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (form, error) = match returned {
        Some((f, e)) => (f, Some(e)),
        None => (HashMap::new(), None),
    };
    let tokens: Vec<Value> = list
        .iter()
        .map(|t| {
            context! {
                id => t.id,
                name => t.name.clone(),
                role => t.role.clone(),
                place => t.location.clone().or_else(|| t.pin.clone()).unwrap_or_else(|| "the program".into()),
                created_by => super::pages::person(&t.created_by),
                created_at => t.created_at.get(..10).unwrap_or(&t.created_at).to_string(),
                last_used_at => t.last_used_at.as_deref().map(|u| u.get(..16).unwrap_or(u).replace('T', " ")),
            }
        })
        .collect();
    super::pages::render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "tokens.html",
        context! {
            title => "API tokens",
            tokens,
            roles => roles(),
            made => made.map(|(name, secret)| context! { name, secret }),
            may_make => csrf.is_some() && caller.may_make_tokens(),
            form => Value::from(minijinja::value::Serde(&form)),
            error,
            csrf_token => csrf,
            wide => true,
        },
    )
}

async fn make_token(State(s): State<AppState>, headers: HeaderMap, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, "/tokens").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let g = grant_of(&f);
    let req = TokenRequest {
        name: f.get("name").cloned().unwrap_or_default(),
        role: g.role,
        pin: g.pin,
        location: g.location,
    };
    let csrf = f.get("csrf_token").cloned();
    let made = match super::accounts::known_places(&s, &[(req.pin.as_deref(), req.location.as_deref())]).await {
        Ok(()) => tokens::create_by(&s.db, &caller, &req).await,
        Err(e) => Err(e),
    };
    match made {
        Ok((t, secret)) => show_tokens(&s, &caller, csrf, Some((t.name, secret)), None).await,
        Err(e) if refused(&e) => show_tokens(&s, &caller, csrf, None, Some((kept(&f), e.to_string()))).await,
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn revoke_token(State(s): State<AppState>, headers: HeaderMap, Id(id): Id<i64>, axum::Form(f): Form) -> Response {
    let caller = match writer(&s, &headers, &f, "/tokens").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match tokens::revoke_by(&s.db, &caller, id).await {
        Ok(_) => Redirect::to("/tokens").into_response(),
        Err(crate::error::Error::NotFound(_)) => super::pages::not_found(),
        Err(e) if refused(&e) => {
            show_tokens(
                &s,
                &caller,
                f.get("csrf_token").cloned(),
                None,
                Some((HashMap::new(), e.to_string())),
            )
            .await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
