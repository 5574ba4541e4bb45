//! The API's one error type: a stable JSON shape `{"error":{"code","message"}}`; 4xx say what to
//! fix, 5xx log the cause chain and show nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(String),
    StateApprovalRequired(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    Unavailable(String),
    /// A refusal with its own code (see [`crate::error::Error::Refused`]).
    Refused(&'static str, String),
    /// A refusal with fields beside the message (see [`crate::error::Error::RefusedWith`]).
    RefusedWith(&'static str, String, serde_json::Map<String, serde_json::Value>),
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::RefusedWith(code, message, mut details) = self {
            details.insert("code".into(), code.into());
            details.insert("message".into(), message.into());
            return (refusal_status(code), Json(json!({ "error": details }))).into_response();
        }
        let (status, code, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send a valid API token (Authorization: Bearer <token>) or sign in (POST /api/v1/session); \
                 a session ends after 30 minutes idle"
                    .to_string(),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::StateApprovalRequired(m) => (StatusCode::FORBIDDEN, "state_approval_required", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", m),
            ApiError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Refused(code, m) => (refusal_status(code), code, m),
            ApiError::RefusedWith(..) => unreachable!("answered above"),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side; it has been logged".to_string(),
                )
            }
        };
        let mut resp = (status, Json(json!({"error": {"code": code, "message": message}}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The status of a refusal, by its code.
pub fn refusal_status(code: &str) -> StatusCode {
    match code {
        "invalid_credentials" => StatusCode::UNAUTHORIZED,
        "mfa_required" | "csrf" | "scope" => StatusCode::FORBIDDEN,
        "expired_link" => StatusCode::NOT_FOUND,
        "throttled" => StatusCode::TOO_MANY_REQUESTS,
        "prerequisites" | "outside_window" | "already_received" => StatusCode::CONFLICT,
        "bad_rows" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error as E;
        match e {
            E::NotFound(m) => ApiError::NotFound(m),
            E::Invalid(m) => ApiError::BadRequest(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Forbidden(m) => ApiError::Forbidden(m),
            E::StateApprovalRequired(m) => ApiError::StateApprovalRequired(m),
            E::Refused { code, message } => ApiError::Refused(code, message),
            E::RefusedWith { code, message, details } => ApiError::RefusedWith(code, message, details),
            // A stored row this version cannot read: the log names it; the caller is told
            // nothing internal.
            E::Unreadable(m) => ApiError::Internal(anyhow::anyhow!(m)),
            E::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<crate::domain::ParseError> for ApiError {
    fn from(e: crate::domain::ParseError) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}
