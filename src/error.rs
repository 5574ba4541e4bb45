//! The error every capability's functions return: what went wrong in words a person can act
//! on. The API turns it into a 4xx ([`crate::web`]); a database failure is a 500 whose cause is
//! logged, never shown.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Absent, or outside the caller's scope: the two are told apart by no one.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or breaks a rule; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the state of things (already done, not yet possible).
    #[error("{0}")]
    Conflict(String),
    /// The caller may see the thing but not do this to it.
    #[error("{0}")]
    Forbidden(String),
    /// A clinic asked for something that weakens the program's safeguards (looser alarm rules,
    /// a wider range, a stocked unit out of service): the state VFC coordinator may do it.
    #[error("{0}")]
    StateApprovalRequired(String),
    /// A stored row this version cannot read; the message names the row. Never replaced by a
    /// default: a setting read wrong would change who gets paged without anyone noticing.
    #[error("{0}")]
    Unreadable(String),
    /// A refusal with a code a page can show (`weak_password`, `invalid_credentials`,
    /// `mfa_required`, `csrf`, `scope`, `expired_link`…); the API picks the status from the code.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// A refusal that carries what a client needs to act on it, beside the message (an order's
    /// failed prerequisites, the window it missed): fields added to the error object.
    #[error("{message}")]
    RefusedWith {
        code: &'static str,
        message: String,
        details: serde_json::Map<String, serde_json::Value>,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// A row of `table` that cannot be read, and why.
    pub fn unreadable(table: &str, row: impl std::fmt::Display, why: impl std::fmt::Display) -> Self {
        Error::Unreadable(format!("{table} row {row} cannot be read: {why}"))
    }
}

impl Error {
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Error::Refused {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::domain::ParseError> for Error {
    fn from(e: crate::domain::ParseError) -> Self {
        Error::Invalid(e.0)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
