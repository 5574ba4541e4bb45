//! The inventory's words as types (docs/domain.md, "Code sets" and "Inventory"): NDC, CVX, lot
//! number, funding and a dose count. Raw strings stop here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::ParseError;

/// A National Drug Code in its 11-digit form, written 5-4-2 with dashes (`00006-4047-41`).
///
/// NDC10 comes in three shapes that each gain one leading zero in a different segment
/// (docs/domain.md): 4-4-2 → 0xxxx-xxxx-xx, 5-3-2 → xxxxx-0xxx-xx, 5-4-1 → xxxxx-xxxx-0x. Ten
/// digits without dashes cannot be told apart and are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Ndc(String);

impl Ndc {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        let bad = || {
            ParseError(format!(
                "NDC {raw:?} must be an NDC11 such as \"00006-4047-41\" (or 00006404741), \
                 or an NDC10 with dashes (4-4-2, 5-3-2 or 5-4-1)"
            ))
        };
        let parts: Vec<&str> = s.split('-').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad());
        }
        let (a, b, c) = match parts.as_slice() {
            [all] if all.len() == 11 => (all[..5].to_string(), all[5..9].to_string(), all[9..].to_string()),
            [a, b, c] => match (a.len(), b.len(), c.len()) {
                (5, 4, 2) => (a.to_string(), b.to_string(), c.to_string()),
                (4, 4, 2) => (format!("0{a}"), b.to_string(), c.to_string()),
                (5, 3, 2) => (a.to_string(), format!("0{b}"), c.to_string()),
                (5, 4, 1) => (a.to_string(), b.to_string(), format!("0{c}")),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        Ok(Self(format!("{a}-{b}-{c}")))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ndc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CVX vaccine code, kept as CDC writes it: at least two digits (`03`, `08`, `116`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Cvx(String);

impl Cvx {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            let n: u16 = s.parse().map_err(|_| ParseError(format!("CVX {raw:?}")))?;
            Ok(Self(format!("{n:02}")))
        } else {
            Err(ParseError(format!(
                "CVX {raw:?} must be a CDC vaccine code of 1 to 3 digits, such as \"116\""
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cvx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manufacturer's lot number as written on the vial, and the key doses find it by:
/// trimmed and compared without regard to case (docs/domain.md: lot number matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotNumber {
    written: String,
    key: String,
}

impl LotNumber {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if (1..=30).contains(&s.chars().count()) && s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            Ok(Self {
                written: s.to_string(),
                key: s.to_ascii_uppercase(),
            })
        } else {
            Err(ParseError(format!(
                "lot number {raw:?} must be 1 to 30 printable characters, such as \"X123456\""
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.written
    }
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Who paid for a lot (docs/domain.md: public and private stock are kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Funding {
    /// VFC (federal, public).
    Vfc,
    Private,
    /// State or Section 317 funds (public).
    State,
}

impl Funding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vfc => "vfc",
            Self::Private => "private",
            Self::State => "state",
        }
    }
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "vfc" => Ok(Self::Vfc),
            "private" => Ok(Self::Private),
            "state" => Ok(Self::State),
            _ => Err(ParseError(format!("funding {raw:?} must be vfc, private or state"))),
        }
    }
    pub fn is_public(self) -> bool {
        !matches!(self, Self::Private)
    }
}

/// A positive number of doses, as moved in one line of a receipt, wastage or transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Doses(i64);

impl Doses {
    pub const MAX: i64 = 1_000_000;
    pub fn parse(n: i64) -> Result<Self, ParseError> {
        if (1..=Self::MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(ParseError(format!(
                "doses {n} must be a whole number from 1 to {}",
                Self::MAX
            )))
        }
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A calendar date `YYYY-MM-DD` (expiration dates are days, not instants).
pub fn parse_date(name: &str, raw: &str) -> Result<chrono::NaiveDate, ParseError> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| ParseError(format!("\"{name}\" {raw:?} must be a date such as 2027-01-31")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndc10_shapes_normalise_to_ndc11() {
        assert_eq!(Ndc::parse("0006-4047-41").unwrap().as_str(), "00006-4047-41");
        assert_eq!(Ndc::parse("49281-560-05").unwrap().as_str(), "49281-0560-05");
        assert_eq!(Ndc::parse("58160-0811-2").unwrap().as_str(), "58160-0811-02");
        assert_eq!(Ndc::parse("00006404741").unwrap().as_str(), "00006-4047-41");
        assert_eq!(Ndc::parse("00006-4047-41").unwrap().as_str(), "00006-4047-41");
        for bad in ["0006404741", "6-4047-41", "00006-4047-4x", "", "00006--41"] {
            assert!(Ndc::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cvx_keeps_cdc_two_digit_form() {
        assert_eq!(Cvx::parse("3").unwrap().as_str(), "03");
        assert_eq!(Cvx::parse("03").unwrap().as_str(), "03");
        assert_eq!(Cvx::parse(" 116 ").unwrap().as_str(), "116");
        assert!(Cvx::parse("11a").is_err());
        assert!(Cvx::parse("1160").is_err());
    }

    #[test]
    fn lot_numbers_match_trimmed_and_without_case() {
        let a = LotNumber::parse(" x123456 ").unwrap();
        assert_eq!(a.as_str(), "x123456");
        assert_eq!(a.key(), "X123456");
        assert!(LotNumber::parse("   ").is_err());
    }
}
