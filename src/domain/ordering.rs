//! The rules of VFC ordering as plain data and arithmetic (docs/domain.md, "Ordering (VFC)";
//! README, "Ordering"): the program's ordering settings, a location's frequency and window, the
//! tier its doses of the last year put it in, and the suggested quantity of one line. Every
//! number a state may change is a setting here, never a constant elsewhere.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// How often a location orders (the economic order quantity tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Monthly,
    Every2Months,
    Quarterly,
    AsNeeded,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Every2Months => "every_2_months",
            Self::Quarterly => "quarterly",
            Self::AsNeeded => "as_needed",
        }
    }
}

/// The first or the second half of a month: days 1–15, or 16 to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Half {
    First,
    Second,
}

/// When a location may order: the months (1–12) and the half of each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub months: Vec<u32>,
    pub half: Half,
}

impl Window {
    pub fn check(&self) -> Result<(), String> {
        if self.months.is_empty() || self.months.iter().any(|m| !(1..=12).contains(m)) {
            return Err("a window's \"months\" are 1 to 12, at least one".into());
        }
        Ok(())
    }

    /// Whether `day` (local to the location) falls in the window.
    pub fn contains(&self, day: NaiveDate) -> bool {
        let in_half = match self.half {
            Half::First => day.day() <= 15,
            Half::Second => day.day() >= 16,
        };
        in_half && self.months.contains(&day.month())
    }

    /// The window's next day on or after `day`, to tell a clinic when it may order.
    pub fn next_open(&self, day: NaiveDate) -> Option<NaiveDate> {
        (0..400)
            .map(|n| day + chrono::Duration::days(n))
            .find(|d| self.contains(*d))
    }
}

/// Yearly doses at which a location moves to each frequency (docs/domain.md: ≥ 6,000 monthly,
/// 800–5,999 every 2 months, 200–799 quarterly, below as needed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Tiers {
    pub monthly: i64,
    pub every_2_months: i64,
    pub quarterly: i64,
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            monthly: 6000,
            every_2_months: 800,
            quarterly: 200,
        }
    }
}

impl Tiers {
    /// The frequency `yearly_doses` administered call for.
    pub fn frequency(&self, yearly_doses: i64) -> Frequency {
        if yearly_doses >= self.monthly {
            Frequency::Monthly
        } else if yearly_doses >= self.every_2_months {
            Frequency::Every2Months
        } else if yearly_doses >= self.quarterly {
            Frequency::Quarterly
        } else {
            Frequency::AsNeeded
        }
    }
}

/// What must be true before an order is accepted; `None` switches a check off (a stored
/// `false` reads as off too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Prerequisites {
    /// Every unit holding stock counted within this many days.
    #[serde(deserialize_with = "days_or_off")]
    pub reconciliation_days: Option<i64>,
    /// A dose recorded (HL7 or JSON), or a no-doses report, within this many days.
    #[serde(deserialize_with = "days_or_off")]
    pub doses_reported_days: Option<i64>,
    /// Every day since the last order (or the last 30) has a complete temperature record.
    #[serde(deserialize_with = "on_or_null")]
    pub temperature_records: bool,
    /// … and, on workdays, the day's check signed.
    #[serde(deserialize_with = "on_or_null")]
    pub daily_signoff: bool,
    /// No excursion that met a rule left unreviewed longer than this many hours.
    #[serde(deserialize_with = "days_or_off")]
    pub unreviewed_excursion_hours: Option<i64>,
    /// Every active logger's calibration current.
    #[serde(deserialize_with = "on_or_null")]
    pub calibration_current: bool,
    /// No decrement exception older than this many days.
    #[serde(deserialize_with = "days_or_off")]
    pub decrement_exception_days: Option<i64>,
}

fn days_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        B(bool),
    }
    match Option::<Raw>::deserialize(d)? {
        None | Some(Raw::B(false)) => Ok(None),
        Some(Raw::N(n)) => Ok(Some(n)),
        Some(Raw::B(true)) => Err(serde::de::Error::custom(
            "give a number of days (or hours), or null / false to switch the check off",
        )),
    }
}

/// A check that is on (`true`) or off (`false` or `null`).
fn on_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

impl Default for Prerequisites {
    fn default() -> Self {
        Prerequisites {
            reconciliation_days: Some(30),
            doses_reported_days: Some(14),
            temperature_records: true,
            daily_signoff: false,
            unreviewed_excursion_hours: Some(24),
            calibration_current: true,
            decrement_exception_days: Some(14),
        }
    }
}

/// The program's ordering settings (`"ordering"` in `GET/PUT /api/v1/program`). Added after
/// the program document existed: a stored document without them reads with these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OrderingSettings {
    pub prerequisites: Prerequisites,
    pub tiers: Tiers,
    /// Months of use an order may bring stock up to, unless a location's profile says otherwise.
    pub max_months: f64,
    /// The funding orders are placed for: `vfc`, and `state` where the program supplies
    /// state-funded (317) vaccine. Private stock is never ordered here.
    pub fundings: Vec<super::Funding>,
    /// A provider of record approves an order before the state sees it.
    pub local_approval: bool,
    /// A returned order not resubmitted within this many days expires.
    pub returned_expire_days: f64,
    /// A waiver is good for the next submission or this many days.
    pub waiver_days: f64,
    /// Lots expiring within this many days are not usable stock in a suggestion.
    pub usable_margin_days: i64,
    /// Lots expiring within this many days are flagged `short_dated` when they hold more than a
    /// month of use.
    pub short_dated_days: i64,
    /// Wastage over this share of doses received in 12 months is flagged `high_wastage`.
    pub high_wastage_pct: f64,
    /// Days back the temperature check reads when the location has no previous order.
    pub temperature_lookback_days: i64,
}

impl Default for OrderingSettings {
    fn default() -> Self {
        OrderingSettings {
            prerequisites: Prerequisites::default(),
            tiers: Tiers::default(),
            max_months: 3.0,
            fundings: vec![super::Funding::Vfc, super::Funding::State],
            local_approval: false,
            returned_expire_days: 14.0,
            waiver_days: 7.0,
            usable_margin_days: 30,
            short_dated_days: 90,
            high_wastage_pct: 5.0,
            temperature_lookback_days: 30,
        }
    }
}

impl OrderingSettings {
    pub fn check(&self) -> Result<(), String> {
        let p = &self.prerequisites;
        for (name, v) in [
            ("reconciliation_days", p.reconciliation_days),
            ("doses_reported_days", p.doses_reported_days),
            ("unreviewed_excursion_hours", p.unreviewed_excursion_hours),
            ("decrement_exception_days", p.decrement_exception_days),
        ] {
            if v.is_some_and(|n| !(0..=3650).contains(&n)) {
                return Err(format!(
                    "ordering.prerequisites.{name} must be 0 to 3650 (0: none at all), or null to switch it off"
                ));
            }
        }
        let t = &self.tiers;
        if !(t.monthly > t.every_2_months && t.every_2_months > t.quarterly && t.quarterly > 0) {
            return Err("ordering.tiers must rise: quarterly < every_2_months < monthly, all above 0".into());
        }
        if !(0.5..=12.0).contains(&self.max_months) {
            return Err("ordering.max_months must be 0.5 to 12".into());
        }
        if self.fundings.is_empty() || self.fundings.iter().any(|f| !f.is_public()) {
            return Err("ordering.fundings lists vfc and/or state: private stock is never ordered here".into());
        }
        for (name, v) in [
            ("returned_expire_days", self.returned_expire_days),
            ("waiver_days", self.waiver_days),
        ] {
            if !(v > 0.0 && v <= 365.0) {
                return Err(format!("ordering.{name} must be above 0 and at most 365"));
            }
        }
        for (name, v) in [
            ("usable_margin_days", self.usable_margin_days),
            ("short_dated_days", self.short_dated_days),
            ("temperature_lookback_days", self.temperature_lookback_days),
        ] {
            if !(0..=366).contains(&v) {
                return Err(format!("ordering.{name} must be 0 to 366"));
            }
        }
        if !(0.0..=100.0).contains(&self.high_wastage_pct) {
            return Err("ordering.high_wastage_pct must be 0 to 100".into());
        }
        Ok(())
    }
}

/// Days in an average month, for months of use (365.25 / 12).
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// What one suggestion line is computed from, as it is shown so anyone can redo it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineInputs {
    /// Days since this location's first administration of the brand from stock of this
    /// funding; 0 when none.
    pub days_of_history: i64,
    /// Doses administered in the last 365 days, net of doses given back.
    pub administered_365: i64,
    pub max_months: f64,
    pub usable_on_hand: i64,
    pub on_order: i64,
    /// Doses per package of the NDC ordered (1 when unknown).
    pub package: i64,
}

/// One line's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineFigures {
    pub months: i64,
    pub monthly_use: f64,
    pub max_stock: i64,
    pub suggested: i64,
}

/// The suggestion (README, "Ordering"): `months` = min(12, max(1, ceil(D / 30.4375)));
/// `monthly_use` = doses in the last 365 days ÷ `months`; `max_stock` = ceil(`monthly_use` ×
/// `max_months`); `suggested` = max(0, `max_stock` − usable − on order), rounded up to whole
/// packages.
pub fn suggest(i: LineInputs) -> LineFigures {
    let months = ((i.days_of_history as f64 / DAYS_PER_MONTH).ceil() as i64).clamp(1, 12);
    let monthly_use = i.administered_365.max(0) as f64 / months as f64;
    // A hair below the next whole dose stays below: 20 × 3 is 60, not 60.000001 → 61.
    let max_stock = (monthly_use * i.max_months - 1e-9).ceil().max(0.0) as i64;
    let short = (max_stock - i.usable_on_hand - i.on_order).max(0);
    let package = i.package.max(1);
    let suggested = (short + package - 1) / package * package;
    LineFigures {
        months,
        monthly_use,
        max_stock,
        suggested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(days: i64, given: i64, usable: i64, on_order: i64, package: i64) -> LineInputs {
        LineInputs {
            days_of_history: days,
            administered_365: given,
            max_months: 3.0,
            usable_on_hand: usable,
            on_order,
            package,
        }
    }

    #[test]
    fn a_brand_first_given_85_days_ago_orders_up_to_three_months_of_its_use() {
        let f = suggest(inputs(85, 60, 40, 0, 10));
        assert_eq!((f.months, f.monthly_use, f.max_stock, f.suggested), (3, 20.0, 60, 20));
    }

    #[test]
    fn a_year_and_more_of_history_averages_over_twelve_months() {
        let f = suggest(inputs(400, 120, 0, 0, 1));
        assert_eq!((f.months, f.monthly_use, f.max_stock), (12, 10.0, 30));
    }

    #[test]
    fn a_shortfall_rounds_up_to_whole_packages_and_never_below_zero() {
        assert_eq!(suggest(inputs(85, 60, 39, 0, 10)).suggested, 30);
        assert_eq!(suggest(inputs(85, 60, 55, 10, 10)).suggested, 0);
        assert_eq!(suggest(inputs(0, 0, 0, 0, 10)).suggested, 0);
    }

    #[test]
    fn tiers_follow_yearly_doses() {
        let t = Tiers::default();
        assert_eq!(t.frequency(6000), Frequency::Monthly);
        assert_eq!(t.frequency(5999), Frequency::Every2Months);
        assert_eq!(t.frequency(800), Frequency::Every2Months);
        assert_eq!(t.frequency(799), Frequency::Quarterly);
        assert_eq!(t.frequency(200), Frequency::Quarterly);
        assert_eq!(t.frequency(199), Frequency::AsNeeded);
    }

    #[test]
    fn a_window_is_its_months_and_half() {
        let w = Window {
            months: vec![1, 3],
            half: Half::Second,
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(w.contains(d("2027-03-16")));
        assert!(!w.contains(d("2027-03-15")));
        assert!(!w.contains(d("2027-02-20")));
        assert_eq!(w.next_open(d("2027-02-01")), Some(d("2027-03-16")));
    }

    #[test]
    fn a_switched_off_check_reads_from_null_or_false() {
        let p: Prerequisites =
            serde_json::from_str(r#"{"reconciliation_days":null,"doses_reported_days":false}"#).unwrap();
        assert_eq!((p.reconciliation_days, p.doses_reported_days), (None, None));
        assert_eq!(p.unreviewed_excursion_hours, Some(24));
        assert!(serde_json::from_str::<Prerequisites>(r#"{"reconciliation_days":true}"#).is_err());
        let p: Prerequisites =
            serde_json::from_str(r#"{"temperature_records":null,"calibration_current":false}"#).unwrap();
        assert!(!p.temperature_records && !p.calibration_current && !p.daily_signoff);
    }
}
