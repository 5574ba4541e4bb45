//! The registry: organisations by VFC PIN, their suffix locations with coordinators, storage
//! units with their temperature ranges, data loggers, and which logger served which unit when.
//!
//! Each function takes the caller's [`Scope`](crate::accounts::Scope) and answers `NotFound`
//! for anything outside it, so a clinic cannot even learn that another PIN's unit exists.

pub mod locations;
pub mod loggers;
pub mod readings;
pub mod units;

/// What went wrong, in words the API turns into a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<crate::domain::ParseError> for Error {
    fn from(e: crate::domain::ParseError) -> Self {
        Error::Invalid(e.0)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
