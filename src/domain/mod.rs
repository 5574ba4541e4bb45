//! Newtypes for the words of the domain (docs/domain.md, "Who uses it", "Storage units").
//!
//! Raw strings and floats stop at the edge: an HTTP body, an MQTT payload or a CLI flag is
//! parsed into these, and everything past the edge can rely on them being well formed.

pub mod codes;
pub mod ordering;

use std::fmt;

pub use codes::{
    check_instant, parse_date, parse_instant, Cvx, Doses, Eligibility, Funding, FundingSource, LotNumber, Ndc,
};

use serde::{Deserialize, Serialize};

/// Why a value was refused; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A VFC PIN: the provider's enrolment number, 4 to 8 digits (e.g. `012345`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VfcPin(String);

impl VfcPin {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if (4..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(ParseError(format!(
                "VFC PIN {raw:?} must be 4 to 8 digits, such as \"012345\""
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VfcPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A location: a PIN and an optional alpha suffix (docs/domain.md: 012345A and 012345B are separate
/// offices of PIN 012345 for inventory, storage and ordering). Written `012345A`, or `012345`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationCode {
    pin: VfcPin,
    suffix: Option<String>,
}

impl LocationCode {
    pub fn new(pin: VfcPin, suffix: Option<&str>) -> Result<Self, ParseError> {
        let suffix = match suffix.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) if (1..=2).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(s.to_ascii_uppercase())
            }
            Some(s) => {
                return Err(ParseError(format!(
                    "suffix {s:?} must be one or two letters, such as \"A\""
                )))
            }
        };
        Ok(Self { pin, suffix })
    }

    /// Parses `012345A` (case-insensitive) or `012345`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (pin, suffix) = s.split_at(split);
        let pin = VfcPin::parse(pin).map_err(|_| {
            ParseError(format!(
                "location code {raw:?} must be a PIN of 4 to 8 digits followed by an optional letter suffix, such as \"012345A\""
            ))
        })?;
        Self::new(pin, Some(suffix)).map_err(|e| ParseError(format!("location code {raw:?}: {e}")))
    }

    pub fn pin(&self) -> &VfcPin {
        &self.pin
    }
    pub fn suffix(&self) -> Option<&str> {
        self.suffix.as_deref()
    }
}

impl fmt::Display for LocationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.pin, self.suffix.as_deref().unwrap_or(""))
    }
}

/// A data logger's serial number as it appears in MQTT topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoggerSerial(String);

impl LoggerSerial {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if firmware_bridge::wire::is_serial(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(ParseError(format!(
                "logger serial {raw:?} must be 1-64 characters of letters, digits, '-', '_', '.', ':' \
                 and may not start with \"gw-\" (gateway ids do)"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoggerSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A temperature in degrees Celsius, within what a logger probe can measure.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Celsius(f64);

impl Celsius {
    pub fn parse(v: f64) -> Result<Self, ParseError> {
        if v.is_finite() && (-100.0..=100.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(ParseError(format!("temperature {v} °C must be between -100 and 100")))
        }
    }
    pub fn value(self) -> f64 {
        self.0
    }
}

/// The kind of a storage unit; it sets the default temperature range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Refrigerator,
    Freezer,
    UltraCold,
    Other,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refrigerator => "refrigerator",
            Self::Freezer => "freezer",
            Self::UltraCold => "ultra_cold",
            Self::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "refrigerator" => Ok(Self::Refrigerator),
            "freezer" => Ok(Self::Freezer),
            "ultra_cold" => Ok(Self::UltraCold),
            "other" => Ok(Self::Other),
            _ => Err(ParseError(format!(
                "unit kind {raw:?} must be one of refrigerator, freezer, ultra_cold, other"
            ))),
        }
    }

    /// CDC storage ranges (docs/domain.md, "Storage units and temperature ranges"):
    /// refrigerator 2.0 to 8.0 °C, freezer −50 to −15 °C, ultra-cold −90 to −60 °C.
    /// `other` has no default; its range must be given.
    pub fn default_range(self) -> Option<(f64, f64)> {
        match self {
            Self::Refrigerator => Some((2.0, 8.0)),
            Self::Freezer => Some((-50.0, -15.0)),
            Self::UltraCold => Some((-90.0, -60.0)),
            Self::Other => None,
        }
    }
}

/// What a logger does for a unit (docs/domain.md: every site keeps a backup logger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoggerRole {
    /// Its readings drive the unit's rules.
    Primary,
    /// Kept and shown beside the primary.
    Backup,
}

impl LoggerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
        }
    }
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "primary" => Ok(Self::Primary),
            "backup" => Ok(Self::Backup),
            _ => Err(ParseError(format!("role {raw:?} must be primary or backup"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_locations_are_distinct_codes_of_one_pin() {
        let a = LocationCode::parse("012345a").unwrap();
        let b = LocationCode::parse("012345B").unwrap();
        assert_eq!(a.to_string(), "012345A");
        assert_ne!(a, b);
        assert_eq!(a.pin(), b.pin());
        assert_eq!(LocationCode::parse("012345").unwrap().suffix(), None);
    }

    #[test]
    fn malformed_codes_say_what_a_code_looks_like() {
        for bad in ["", "12", "012345A1", "ABCDEF", "012345ABC"] {
            let e = LocationCode::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("012345"), "{e}");
        }
    }

    #[test]
    fn serials_must_fit_in_a_topic() {
        assert!(LoggerSerial::parse("LT-1001").is_ok());
        assert!(LoggerSerial::parse("a/b").is_err());
        assert!(LoggerSerial::parse("+").is_err());
    }

    #[test]
    fn kinds_default_to_cdc_ranges() {
        assert_eq!(UnitKind::Refrigerator.default_range(), Some((2.0, 8.0)));
        assert_eq!(UnitKind::Freezer.default_range(), Some((-50.0, -15.0)));
        assert_eq!(UnitKind::UltraCold.default_range(), Some((-90.0, -60.0)));
        assert_eq!(UnitKind::parse("ultra_cold").unwrap(), UnitKind::UltraCold);
    }
}
