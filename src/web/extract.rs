//! Extractors whose rejections use the API's error shape and say what to fix.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `Json<T>` with a 400 that names the problem.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::bad_request(
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge(
                "the request body is over the 8 MiB limit".into(),
            )),
            Err(e) => Err(ApiError::bad_request(format!("request body: {}", e.body_text()))),
        }
    }
}

/// `Query<T>` with a 400 that names the problem.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(format!("query string: {}", e.body_text())))
    }
}

/// `Path<T>` with a 404 for a malformed id (it names nothing that exists).
pub struct Id<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Id(p.0))
            .map_err(|_: PathRejection| ApiError::NotFound("no such resource (unit ids are whole numbers)".into()))
    }
}

/// An optional RFC 3339 query parameter as epoch ms; the error names the parameter, the
/// format, and the `+` that a URL turns into a space.
pub fn query_time(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    Ok(raw.map(|raw| crate::domain::parse_instant(name, raw)).transpose()?)
}

/// `limit` and `cursor` of a list: at most `limit` items (1 to 1000, default 100) past
/// `cursor`, the `next` the previous page gave.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn page(&self) -> Result<crate::store::Page, ApiError> {
        page_of(self.limit, self.cursor.as_deref())
    }
}

/// A page from a list's `limit` and `cursor` query parameters.
pub fn page_of(limit: Option<i64>, cursor: Option<&str>) -> Result<crate::store::Page, ApiError> {
    use crate::store::Page;
    let limit = limit.unwrap_or(Page::DEFAULT);
    if !(1..=Page::MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!("\"limit\" must be 1 to {}", Page::MAX)));
    }
    let after = cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("\"cursor\" is not one this service gave: send \"next\" as it came"))
        })
        .transpose()?;
    Ok(Page { after, limit })
}

/// A body sent as JSON (scripts) or as a form (the pages); `.1` says which, so a handler answers
/// a form with a page and JSON with JSON.
pub struct JsonOrForm<T>(pub T, pub bool);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if super::auth::is_form(req.headers()) {
            axum::Form::<T>::from_request(req, state)
                .await
                .map(|f| JsonOrForm(f.0, true))
                .map_err(|e| ApiError::bad_request(format!("form: {}", e.body_text())))
        } else {
            Body::<T>::from_request(req, state)
                .await
                .map(|b| JsonOrForm(b.0, false))
        }
    }
}
