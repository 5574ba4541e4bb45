//! The part of the program a caller sees: every PIN, one PIN (all its suffix locations), one
//! location, or several of those (a person with grants at more than one place). Every scope
//! check asks it the same way, in Rust (`covers`) or in SQL (`sql_filter`).

use crate::domain::LocationCode;

/// The part of the program a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every PIN (state roles).
    Program,
    /// Every location of one PIN.
    Pin(String),
    /// One location.
    Location(String),
    /// Several PINs or locations (a person with grants at more than one place); never holds
    /// `Program` or another `Many`.
    Many(Vec<Scope>),
}

impl Scope {
    /// No place at all (a caller without a grant that allows this): a location code no one can
    /// register.
    pub fn nothing() -> Scope {
        Scope::Location(String::new())
    }

    /// The union of some scopes, in its simplest form.
    pub fn union(scopes: impl IntoIterator<Item = Scope>) -> Scope {
        let mut parts: Vec<Scope> = Vec::new();
        for s in scopes {
            match s {
                Scope::Program => return Scope::Program,
                Scope::Many(inner) => parts.extend(inner),
                one => parts.push(one),
            }
        }
        // A location inside a PIN also held adds nothing.
        let pins: Vec<String> = parts
            .iter()
            .filter_map(|s| match s {
                Scope::Pin(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        parts.retain(|s| match s {
            Scope::Location(c) => !pins.iter().any(|p| c.starts_with(p.as_str())),
            _ => true,
        });
        parts.sort_by_key(|s| s.key());
        parts.dedup();
        match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => Scope::Many(parts),
        }
    }

    pub fn covers(&self, code: &LocationCode) -> bool {
        self.covers_code(code.pin().as_str(), &code.to_string())
    }

    /// Same as [`Scope::covers`] for a code already read from the database.
    pub fn covers_code(&self, pin: &str, code: &str) -> bool {
        match self {
            Scope::Program => true,
            Scope::Pin(p) => p == pin,
            Scope::Location(loc) => loc == code,
            Scope::Many(parts) => parts.iter().any(|s| s.covers_code(pin, code)),
        }
    }

    /// Whether this scope holds the whole of PIN `pin` (it may add locations to it).
    pub fn covers_pin(&self, pin: &str) -> bool {
        match self {
            Scope::Program => true,
            Scope::Pin(p) => p == pin,
            Scope::Location(_) => false,
            Scope::Many(parts) => parts.iter().any(|s| s.covers_pin(pin)),
        }
    }

    /// Whether everything `inner` names is inside this scope.
    pub fn contains(&self, inner: &Scope) -> bool {
        match inner {
            Scope::Program => *self == Scope::Program,
            Scope::Pin(p) => self.covers_pin(p),
            Scope::Location(c) => LocationCode::parse(c).is_ok_and(|code| self.covers(&code)),
            Scope::Many(parts) => parts.iter().all(|s| self.contains(s)),
        }
    }

    /// The scope as one word, for keys: `*`, `pin:012345`, `location:012345A`, or such words
    /// joined by commas.
    pub fn key(&self) -> String {
        match self {
            Scope::Program => "*".into(),
            Scope::Pin(p) => format!("pin:{p}"),
            Scope::Location(c) => format!("location:{c}"),
            Scope::Many(parts) => parts.iter().map(Scope::key).collect::<Vec<_>>().join(","),
        }
    }

    /// A SQL condition limiting `{pin_col}`/`{code_col}` to this scope, with its bound value.
    pub fn sql_filter(&self, pin_col: &str, code_col: &str, param: usize) -> (String, Option<String>) {
        match self {
            // Still references the parameter, so its position is bound on every database.
            Scope::Program => (format!("${param} = ''"), Some(String::new())),
            Scope::Pin(p) => (format!("{pin_col} = ${param}"), Some(p.clone())),
            Scope::Location(c) => (format!("{code_col} = ${param}"), Some(c.clone())),
            // One parameter for any number of places: ",pin:012345,location:054321A," and a
            // LIKE per column (codes and PINs hold neither % nor _).
            Scope::Many(_) => (
                format!(
                    "(${param} LIKE ('%,pin:' || {pin_col} || ',%') OR ${param} LIKE ('%,location:' || {code_col} || ',%'))"
                ),
                Some(format!(",{},", self.key())),
            ),
        }
    }

    /// The scope in words, for messages.
    pub fn describe(&self) -> String {
        match self {
            Scope::Program => "every PIN".into(),
            Scope::Pin(p) => format!("every location of PIN {p}"),
            Scope::Location(c) => format!("location {c}"),
            Scope::Many(parts) => parts.iter().map(Scope::describe).collect::<Vec<_>>().join("; "),
        }
    }
}
