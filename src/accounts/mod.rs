//! Who is calling and what they may see.
//!
//! A state VFC coordinator sees every PIN; a clinic sees one PIN (all its suffix locations) or
//! one location (docs/domain.md: "a clinic user never sees another PIN's data"). The scope check
//! lives here so every route asks the same question the same way.

pub mod tokens;

use crate::domain::LocationCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    StateCoordinator,
    Clinic,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateCoordinator => "state-coordinator",
            Self::Clinic => "clinic",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "state-coordinator" => Some(Self::StateCoordinator),
            "clinic" => Some(Self::Clinic),
            _ => None,
        }
    }
}

/// The part of the program a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every PIN (state coordinators).
    Program,
    /// Every location of one PIN.
    Pin(String),
    /// One location.
    Location(String),
}

impl Scope {
    pub fn covers(&self, code: &LocationCode) -> bool {
        match self {
            Scope::Program => true,
            Scope::Pin(pin) => code.pin().as_str() == pin,
            Scope::Location(loc) => code.to_string() == *loc,
        }
    }

    /// Same as [`Scope::covers`] for a code already read from the database.
    pub fn covers_code(&self, pin: &str, code: &str) -> bool {
        match self {
            Scope::Program => true,
            Scope::Pin(p) => p == pin,
            Scope::Location(loc) => loc == code,
        }
    }

    /// The scope as one word, for keys: `*`, `pin:012345`, `location:012345A`.
    pub fn key(&self) -> String {
        match self {
            Scope::Program => "*".into(),
            Scope::Pin(p) => format!("pin:{p}"),
            Scope::Location(c) => format!("location:{c}"),
        }
    }

    /// A SQL condition limiting `{pin_col}`/`{code_col}` to this scope, with its bound value.
    pub fn sql_filter(&self, pin_col: &str, code_col: &str, param: usize) -> (String, Option<String>) {
        match self {
            // Still references the parameter, so its position is bound on every database.
            Scope::Program => (format!("${param} = ''"), Some(String::new())),
            Scope::Pin(p) => (format!("{pin_col} = ${param}"), Some(p.clone())),
            Scope::Location(c) => (format!("{code_col} = ${param}"), Some(c.clone())),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    pub fn is_state(&self) -> bool {
        self.role == Role::StateCoordinator
    }

    /// How the caller is named in records of who did what.
    pub fn actor(&self) -> String {
        format!("token:{}:{}", self.token_id, self.name)
    }
}
