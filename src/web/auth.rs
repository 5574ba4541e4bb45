//! Every `/api/v1` route takes a [`Caller`]: the bearer token, checked against its hash.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::accounts::{tokens, Caller};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        tokens::authenticate(&state.db, secret)
            .await?
            .ok_or(ApiError::Unauthorized)
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
