//! Routes of people and machines: accounts and their grants, API tokens of a place, and the
//! audit trail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{query_time, Body, Id, PageParams, Params};
use super::AppState;
use crate::accounts::audit::{self, AuditRow, Filter};
use crate::accounts::people::{self, Account, AccountPatch, NewAccount};
use crate::accounts::tokens::{self, TokenInfo, TokenRequest};
use crate::accounts::{second_factor, status, Caller, Scope};
use crate::domain::LocationCode;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/accounts", get(list_accounts).post(create_account))
        .route("/accounts/{id}", get(get_account).patch(update_account))
        .route("/accounts/{id}/disable", post(disable_account))
        .route("/accounts/{id}/enable", post(enable_account))
        .route("/accounts/{id}/totp/reset", post(reset_second_factor))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/locations/{code}/tokens", get(location_tokens))
        .route("/audit", get(audit_trail))
}

/// Refuses a grant at a place the program does not have (a mistyped code would give someone a
/// role nowhere, or at a place created later by someone else).
pub(super) async fn known_places(s: &AppState, places: &[(Option<&str>, Option<&str>)]) -> crate::error::Result<()> {
    for (pin, location) in places {
        let scope = match (pin, location) {
            (_, Some(code)) => match LocationCode::parse(code) {
                Ok(c) => Scope::Location(c.to_string()),
                Err(_) => continue, // the grant's own check says what is wrong with it
            },
            (Some(pin), None) => Scope::Pin(pin.trim().to_string()),
            (None, None) => continue,
        };
        if !crate::registry::locations::scope_exists(&s.db, &scope).await? {
            return Err(crate::error::Error::Invalid(format!(
                "the program has no {}: check the code, or create the location first",
                scope.describe()
            )));
        }
    }
    Ok(())
}

/// Invites a person: an account with grants no wider than the caller's own, and an emailed
/// link to set a password. A state admin may invite anyone; a `vfc-coordinator` or
/// `provider-of-record` its own staff (403 `scope` otherwise).
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", security(("bearer" = [])), request_body = NewAccount,
    responses((status = 201, body = Account), (status = 400), (status = 403, description = "scope"), (status = 409)))]
async fn create_account(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<NewAccount>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    known_places(
        &s,
        &body
            .grants
            .iter()
            .map(|g| (g.pin.as_deref(), g.location.as_deref()))
            .collect::<Vec<_>>(),
    )
    .await?;
    // The link goes only to the person's email: whoever invites never holds it, so the email is
    // proven and the account is the person's alone.
    let (account, _link) = people::create(&s.db, Some(&caller), &s.public_url, &body).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

#[derive(Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
    pub next: Option<String>,
}

/// The accounts the caller may see: every one for state roles; those with a grant inside the
/// caller's scope for a clinic's coordinators.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = AccountList), (status = 403)))]
async fn list_accounts(
    State(s): State<AppState>,
    caller: Caller,
    Params(p): Params<PageParams>,
) -> Result<Json<AccountList>, ApiError> {
    let (accounts, next) = people::list(&s.db, &caller, p.page()?).await?;
    Ok(Json(AccountList {
        accounts,
        next: next.map(|n| n.to_string()),
    }))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Account), (status = 404)))]
async fn get_account(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Account>, ApiError> {
    Ok(Json(people::get(&s.db, &caller, id).await?))
}

/// Changes a person's name or replaces their grants (each no wider than the caller's).
#[utoipa::path(patch, path = "/api/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = AccountPatch, responses((status = 200, body = Account), (status = 403), (status = 404)))]
async fn update_account(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    Body(body): Body<AccountPatch>,
) -> Result<Json<Account>, ApiError> {
    if let Some(grants) = &body.grants {
        known_places(
            &s,
            &grants
                .iter()
                .map(|g| (g.pin.as_deref(), g.location.as_deref()))
                .collect::<Vec<_>>(),
        )
        .await?;
    }
    Ok(Json(people::update(&s.db, &caller, id, &body).await?))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct DisableBody {
    /// Why (e.g. "left the clinic").
    pub reason: Option<String>,
}

/// Disables a person's sign-in: their sessions end at once. Their location's tokens keep
/// working (the coordinators are told), and alerts keep reaching them as a contact until the
/// contact is replaced.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/disable", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = DisableBody, responses((status = 200, body = Account), (status = 403), (status = 404)))]
async fn disable_account(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
    body: axum::body::Bytes,
) -> Result<Json<Account>, ApiError> {
    // The body is optional: none, or {"reason": "…"}.
    let body: DisableBody = if body.iter().all(u8::is_ascii_whitespace) {
        DisableBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))?
    };
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("disabled by {}", caller.actor()));
    Ok(Json(status::disable(&s.db, Some(&caller), id, reason.trim()).await?))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/enable", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Account), (status = 403), (status = 404)))]
async fn enable_account(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<Account>, ApiError> {
    Ok(Json(status::enable(&s.db, &caller, id).await?))
}

/// Resets a person's lost second factor (a state admin; for clinic staff, their coordinator):
/// they set one up again at their next sign-in.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/totp/reset", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 403), (status = 404)))]
async fn reset_second_factor(
    State(s): State<AppState>,
    caller: Caller,
    Id(id): Id<i64>,
) -> Result<StatusCode, ApiError> {
    second_factor::reset(&s.db, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct NewTokenShown {
    pub token: TokenInfo,
    /// The secret, shown only now: `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Creates an API token of a place (an EHR feed), never wider than the caller's grants. It
/// belongs to the place, not to its maker: disabling the maker does not revoke it.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", security(("bearer" = [])), request_body = TokenRequest,
    responses((status = 201, body = NewTokenShown), (status = 400), (status = 403, description = "scope")))]
async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    Body(body): Body<TokenRequest>,
) -> Result<(StatusCode, Json<NewTokenShown>), ApiError> {
    known_places(&s, &[(body.pin.as_deref(), body.location.as_deref())]).await?;
    let (token, secret) = tokens::create_by(&s.db, &caller, &body).await?;
    Ok((StatusCode::CREATED, Json(NewTokenShown { token, secret })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Include revoked tokens.
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// The tokens of the places the caller sees (newest first), with their maker and last use.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts", security(("bearer" = [])), params(TokenQuery),
    responses((status = 200, body = TokenList)))]
async fn list_tokens(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<TokenQuery>,
) -> Result<Json<TokenList>, ApiError> {
    may_see_tokens(&caller)?;
    Ok(Json(TokenList {
        tokens: tokens::list_in(&s.db, &caller.scope, q.revoked).await?,
    }))
}

/// Tokens are listed to those who may make them (and to the state).
fn may_see_tokens(caller: &Caller) -> Result<(), ApiError> {
    if caller.may_make_tokens() || caller.scope == Scope::Program {
        Ok(())
    } else {
        Err(ApiError::Refused(
            "scope",
            "the list of tokens is for those who may make them: a coordinator signed in".into(),
        ))
    }
}

/// The tokens of one location and its PIN's PIN-wide tokens.
#[utoipa::path(get, path = "/api/v1/locations/{code}/tokens", tag = "accounts", security(("bearer" = [])),
    params(("code" = String, Path), TokenQuery), responses((status = 200, body = TokenList), (status = 404)))]
async fn location_tokens(
    State(s): State<AppState>,
    caller: Caller,
    Id(code): Id<String>,
    Params(q): Params<TokenQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let code = LocationCode::parse(&code).map_err(|_| ApiError::NotFound(format!("no location {code}")))?;
    if !caller.scope.covers(&code) {
        return Err(ApiError::NotFound(format!("no location {code}")));
    }
    may_see_tokens(&caller)?;
    crate::registry::locations::get(&s.db, &caller.scope, &code.to_string()).await?;
    let here = Scope::Location(code.to_string());
    let mut list = tokens::list_in(&s.db, &here, q.revoked).await?;
    list.extend(
        tokens::list_in(&s.db, &Scope::Pin(code.pin().to_string()), q.revoked)
            .await?
            .into_iter()
            .filter(|t| t.location.is_none()),
    );
    Ok(Json(TokenList { tokens: list }))
}

/// Revokes a token of a place the caller may make tokens for.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = TokenInfo), (status = 403), (status = 404)))]
async fn revoke_token(State(s): State<AppState>, caller: Caller, Id(id): Id<i64>) -> Result<Json<TokenInfo>, ApiError> {
    Ok(Json(tokens::revoke_by(&s.db, &caller, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `account:12`, `token:3`, `hl7:…`, `cli`, `system`, `anonymous` (a prefix matches).
    pub actor: Option<String>,
    /// An object type (`account`) or one object (`account:12`).
    pub object: Option<String>,
    /// An action or its prefix (`account.`, `session.sign_in_failed`).
    pub action: Option<String>,
    /// RFC 3339.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub audit: Vec<AuditRow>,
    pub next: Option<String>,
}

/// The audit trail, newest first: every change, who made it, from where, and what changed.
/// The state sees all of it; a clinic's roles the rows of their own places.
#[utoipa::path(get, path = "/api/v1/audit", tag = "accounts", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditList)))]
async fn audit_trail(
    State(s): State<AppState>,
    caller: Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let page = super::extract::page_of(q.limit, q.cursor.as_deref())?;
    let filter = Filter {
        actor: q.actor,
        object: q.object,
        action: q.action,
        from: query_time("from", q.from.as_deref())?,
        to: query_time("to", q.to.as_deref())?,
    };
    let (rows, next) = audit::list(&s.db, &caller.scope, &filter, page).await?;
    Ok(Json(AuditList {
        audit: rows,
        next: next.map(|n| n.to_string()),
    }))
}
