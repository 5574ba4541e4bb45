//! The words of vaccines and doses as types (docs/domain.md, "Code sets", "Inventory" and "Doses
//! administered over HL7"): NDC, CVX, lot number, funding, a dose count, a patient's eligibility
//! and a dose's funding source. Raw strings stop here.

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

/// A patient's VFC eligibility, HL7 table 0064 (OBX 64994-7). V06 is retired and not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Eligibility {
    /// Not VFC eligible: private stock.
    V01,
    /// Medicaid or Medicaid managed care.
    V02,
    /// Uninsured.
    V03,
    /// American Indian or Alaska Native.
    V04,
    /// Underinsured, at a federally qualified or rural health centre.
    V05,
    /// State-specific eligibility (e.g. S-CHIP), publicly funded.
    V07,
}

impl Eligibility {
    /// Every code the product takes, in table order.
    pub const ALL: [Eligibility; 6] = [Self::V01, Self::V02, Self::V03, Self::V04, Self::V05, Self::V07];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V01 => "V01",
            Self::V02 => "V02",
            Self::V03 => "V03",
            Self::V04 => "V04",
            Self::V05 => "V05",
            Self::V07 => "V07",
        }
    }

    /// Reads a code as an EHR writes it (any case, trimmed).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let code = raw.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|e| e.as_str() == code).ok_or_else(|| {
            ParseError(format!(
                "eligibility {raw:?} must be one of {} (HL7 table 0064)",
                Self::ALL.map(Self::as_str).join(", ")
            ))
        })
    }

    /// The stock a dose for this patient should come from (docs/domain.md, "Inventory"): a V01
    /// patient is given private stock; every other code, public (VFC or state) stock.
    pub fn is_public(self) -> bool {
        self != Self::V01
    }

    /// Whether giving this patient stock of `funding` is borrowing (docs/domain.md: a V01 patient
    /// given public stock, or a V02–V05 patient given private stock; V07 is state-defined and
    /// not counted).
    pub fn borrows(self, funding: Funding) -> bool {
        match self {
            Self::V01 => funding.is_public(),
            Self::V02 | Self::V03 | Self::V04 | Self::V05 => !funding.is_public(),
            Self::V07 => false,
        }
    }
}

impl fmt::Display for Eligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who paid for the dose, as the EHR says (OBX 30963-3, CDC's PHVS_VaccineFundingSource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FundingSource {
    /// VXC50: public (VFC).
    Public,
    /// VXC2: state funds.
    State,
    /// PHC70: private.
    Private,
}

impl FundingSource {
    pub const ALL: [FundingSource; 3] = [Self::Public, Self::State, Self::Private];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "VXC50",
            Self::State => "VXC2",
            Self::Private => "PHC70",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let code = raw.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|f| f.as_str() == code).ok_or_else(|| {
            ParseError(format!(
                "funding source {raw:?} must be VXC50 (public), VXC2 (state) or PHC70 (private)"
            ))
        })
    }

    /// The lot funding this source names.
    pub fn funding(self) -> Funding {
        match self {
            Self::Public => Funding::Vfc,
            Self::State => Funding::State,
            Self::Private => Funding::Private,
        }
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

/// The years a date or time of this product's records can fall in: VFC children's doses,
/// expiration dates, readings and daily logs are all well inside them. Anything else is a typo
/// (or an attempt to overflow the arithmetic on instants further in), refused with 400.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

/// A calendar date `YYYY-MM-DD` (expiration dates and daily records are days, not instants),
/// in years 2000 to 2100.
pub fn parse_date(name: &str, raw: &str) -> Result<chrono::NaiveDate, ParseError> {
    let bad = || {
        ParseError(format!(
            "\"{name}\" {raw:?} must be a date from 2000-01-01 to 2100-12-31, such as 2027-01-31"
        ))
    };
    let day = chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    if YEARS.contains(&chrono::Datelike::year(&day)) {
        Ok(day)
    } else {
        Err(bad())
    }
}

/// An instant (epoch ms) from a request, in years 2000 to 2100.
pub fn check_instant(name: &str, ms: i64) -> Result<i64, ParseError> {
    let year = chrono::DateTime::from_timestamp_millis(ms).map(|t| chrono::Datelike::year(&t));
    match year {
        Some(y) if YEARS.contains(&y) => Ok(ms),
        _ => Err(ParseError(format!(
            "\"{name}\" must be a time from 2000-01-01 to 2100-12-31, such as 2026-11-25T13:00:00Z"
        ))),
    }
}

/// A time given in a query or a body: RFC 3339 with an offset, from 2000 to 2100; epoch ms.
pub fn parse_instant(name: &str, raw: &str) -> Result<i64, ParseError> {
    let ms = chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ParseError(format!(
                "\"{name}\" {raw:?} is not an RFC 3339 time such as 2026-11-25T13:00:00Z \
                 (write a + offset as %2B in a URL)"
            ))
        })?;
    check_instant(name, ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_outside_2000_to_2100_are_refused() {
        assert!(parse_date("d", "2000-01-01").is_ok() && parse_date("d", "2100-12-31").is_ok());
        assert!(parse_date("d", "1999-12-31").is_err() && parse_date("d", "2101-01-01").is_err());
        assert!(check_instant("t", 946_684_800_000).is_ok(), "2000-01-01T00:00:00Z");
        assert!(check_instant("t", 946_684_799_999).is_err());
        assert!(check_instant("t", i64::MAX).is_err());
    }

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
    fn dates_outside_four_digit_years_are_refused() {
        assert!(parse_date("to", "2026-11-30").is_ok());
        for bad in ["+262142-12-31", "0001-01-01", "2026-02-30", "20261130"] {
            assert!(parse_date("to", bad).unwrap_err().0.contains("\"to\""), "{bad}");
        }
    }

    #[test]
    fn eligibility_reads_table_0064_and_says_who_borrows() {
        assert_eq!(Eligibility::parse(" v02 ").unwrap(), Eligibility::V02);
        assert!(Eligibility::parse("V06")
            .unwrap_err()
            .0
            .contains("V01, V02, V03, V04, V05, V07"));
        assert!(Eligibility::V01.borrows(Funding::Vfc));
        assert!(Eligibility::V01.borrows(Funding::State));
        assert!(!Eligibility::V01.borrows(Funding::Private));
        assert!(Eligibility::V03.borrows(Funding::Private));
        assert!(!Eligibility::V03.borrows(Funding::Vfc));
        assert!(!Eligibility::V07.borrows(Funding::Private));
    }

    #[test]
    fn funding_sources_name_the_stock_they_pay_for() {
        assert_eq!(FundingSource::parse("vxc50").unwrap().funding(), Funding::Vfc);
        assert_eq!(FundingSource::parse("VXC2").unwrap().funding(), Funding::State);
        assert_eq!(FundingSource::parse("PHC70").unwrap().funding(), Funding::Private);
        assert!(FundingSource::parse("VXC1").is_err());
    }

    #[test]
    fn lot_numbers_match_trimmed_and_without_case() {
        let a = LotNumber::parse(" x123456 ").unwrap();
        assert_eq!(a.as_str(), "x123456");
        assert_eq!(a.key(), "X123456");
        assert!(LotNumber::parse("   ").is_err());
    }
}
