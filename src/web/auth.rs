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
