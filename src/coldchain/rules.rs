//! Alarm rules and the program's settings, as values: what they are, the defaults this product
//! ships, and what makes them valid. Where they are kept is [`super::settings`].
//! Longer than 500 lines because of its tests: the code itself is under 400.
//!
//! A rule is a condition on temperature, a kind (consecutive minutes, or cumulative minutes in a
//! sliding window), a duration (0 = at once) and a severity (docs/domain.md, "Excursions and
//! alarm rules"). The program (the state immunization program, one per deployment) holds the
//! defaults per unit kind — those listed under "Defaults this product ships" — its state
//! coordinators and the escalation delays.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::UnitKind;

/// What a reading must do to count toward a rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// Warmer than `temp_c`.
    Above { temp_c: f64 },
    /// Colder than `temp_c`.
    Below { temp_c: f64 },
    /// At or colder than `temp_c` (e.g. a refrigerator at or below 0.5 °C: freezing).
    AtOrBelow { temp_c: f64 },
    /// Outside the unit's range, either side.
    OutsideRange,
}

impl Condition {
    pub fn holds(&self, temp_c: f64, range: (f64, f64)) -> bool {
        match *self {
            Condition::Above { temp_c: t } => temp_c > t,
            Condition::Below { temp_c: t } => temp_c < t,
            Condition::AtOrBelow { temp_c: t } => temp_c <= t,
            Condition::OutsideRange => temp_c < range.0 || temp_c > range.1,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Condition::Above { temp_c } => format!("above {temp_c:.1} °C"),
            Condition::Below { temp_c } => format!("below {temp_c:.1} °C"),
            Condition::AtOrBelow { temp_c } => format!("at or below {temp_c:.1} °C"),
            Condition::OutsideRange => "out of range".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The condition holds without interruption for `minutes`.
    Consecutive,
    /// The condition holds for `minutes` in total within any `window_minutes`.
    Cumulative,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable name of the rule, e.g. "warm-60".
    pub id: String,
    pub condition: Condition,
    pub kind: RuleKind,
    /// How long the condition must hold; 0 = at once.
    pub minutes: i64,
    /// For cumulative rules: the sliding window.
    #[serde(default)]
    pub window_minutes: Option<i64>,
    pub severity: Severity,
}

impl Rule {
    pub fn describe(&self) -> String {
        match (self.kind, self.minutes) {
            (_, 0) => format!("{} (at once)", self.condition.describe()),
            (RuleKind::Consecutive, m) => format!("{} for {m} consecutive minutes", self.condition.describe()),
            (RuleKind::Cumulative, m) => format!(
                "{} for {m} minutes in total within {} hours",
                self.condition.describe(),
                self.window_minutes.unwrap_or(1440) / 60
            ),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() || self.id.len() > 64 {
            return Err("rule id must be 1-64 characters".into());
        }
        if !(0..=60 * 24 * 30).contains(&self.minutes) {
            return Err(format!("rule {}: minutes must be 0 to 43200", self.id));
        }
        match (self.kind, self.window_minutes) {
            (RuleKind::Cumulative, Some(w)) if w >= self.minutes.max(1) && w <= 60 * 24 * 7 => Ok(()),
            (RuleKind::Cumulative, _) => Err(format!(
                "rule {}: a cumulative rule needs window_minutes, at least its minutes and at most 10080",
                self.id
            )),
            (RuleKind::Consecutive, None) => Ok(()),
            (RuleKind::Consecutive, Some(_)) => {
                Err(format!("rule {}: window_minutes is for cumulative rules only", self.id))
            }
        }
    }
}

fn rule(id: &str, condition: Condition, kind: RuleKind, minutes: i64, window: Option<i64>, severity: Severity) -> Rule {
    Rule {
        id: id.into(),
        condition,
        kind,
        minutes,
        window_minutes: window,
        severity,
    }
}

/// The defaults this product ships (docs/domain.md, "Defaults this product ships"): drawn from the
/// Maryland, Kansas and Alabama presets; each program changes them.
pub fn default_rules(kind: UnitKind) -> Vec<Rule> {
    use Condition::*;
    use RuleKind::*;
    use Severity::*;
    match kind {
        UnitKind::Refrigerator => vec![
            rule("warm-60", Above { temp_c: 8.0 }, Consecutive, 60, None, Critical),
            rule("cold-15", Below { temp_c: 2.0 }, Consecutive, 15, None, Critical),
            // Freezing destroys many refrigerated vaccines: reportable at once (Maryland).
            rule("freezing", AtOrBelow { temp_c: 0.5 }, Consecutive, 0, None, Critical),
            rule(
                "cumulative-60-in-24h",
                OutsideRange,
                Cumulative,
                60,
                Some(24 * 60),
                Critical,
            ),
        ],
        UnitKind::Freezer => vec![
            rule("warm-60", Above { temp_c: -15.0 }, Consecutive, 60, None, Critical),
            rule("cold-60", Below { temp_c: -50.0 }, Consecutive, 60, None, Critical),
        ],
        UnitKind::UltraCold => vec![
            rule("warm-15", Above { temp_c: -60.0 }, Consecutive, 15, None, Critical),
            rule("cold-60", Below { temp_c: -90.0 }, Consecutive, 60, None, Critical),
        ],
        UnitKind::Other => vec![rule("out-of-range-60", OutsideRange, Consecutive, 60, None, Critical)],
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// Escalation delays (issue: backup after 30 min, state after 2 h, reminder every hour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub backup_after_minutes: f64,
    pub state_after_minutes: f64,
    pub reminder_every_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesByKind {
    pub refrigerator: Vec<Rule>,
    pub freezer: Vec<Rule>,
    pub ultra_cold: Vec<Rule>,
    pub other: Vec<Rule>,
}

impl RulesByKind {
    pub fn for_kind(&self, kind: UnitKind) -> &[Rule] {
        match kind {
            UnitKind::Refrigerator => &self.refrigerator,
            UnitKind::Freezer => &self.freezer,
            UnitKind::UltraCold => &self.ultra_cold,
            UnitKind::Other => &self.other,
        }
    }
}

/// `GET/PUT /api/v1/program`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramSettings {
    pub name: String,
    pub state_coordinators: Vec<Person>,
    pub escalation: Escalation,
    pub rules: RulesByKind,
    /// Readings this much older than now, when they arrive, are recorded but do not page the
    /// clinic as if happening now; they go to the coordinators' review list.
    pub late_page_limit_hours: f64,
    /// The longest maintenance window a clinic may set on its own (no paging meanwhile);
    /// longer needs the state. Added later: absent from a request, it keeps 24 hours.
    #[serde(default = "default_clinic_maintenance_max_hours")]
    pub clinic_maintenance_max_hours: f64,
    /// Sessions, sign-in throttling and inactive accounts. Added later: absent, the defaults.
    #[serde(default)]
    pub accounts: crate::accounts::sessions::AccountSettings,
    /// Order windows, prerequisites and suggestions. Added later: absent, the defaults.
    #[serde(default)]
    pub ordering: crate::domain::ordering::OrderingSettings,
    /// The program's phone number, which alert emails give the clinic. Added later: absent,
    /// none.
    #[serde(default)]
    pub phone: Option<String>,
}

fn default_clinic_maintenance_max_hours() -> f64 {
    24.0
}

impl Default for ProgramSettings {
    fn default() -> Self {
        ProgramSettings {
            name: "State immunization program".into(),
            state_coordinators: Vec::new(),
            escalation: Escalation {
                backup_after_minutes: 30.0,
                state_after_minutes: 120.0,
                reminder_every_minutes: 60.0,
            },
            rules: RulesByKind {
                refrigerator: default_rules(UnitKind::Refrigerator),
                freezer: default_rules(UnitKind::Freezer),
                ultra_cold: default_rules(UnitKind::UltraCold),
                other: default_rules(UnitKind::Other),
            },
            late_page_limit_hours: 24.0,
            clinic_maintenance_max_hours: default_clinic_maintenance_max_hours(),
            accounts: Default::default(),
            ordering: Default::default(),
            phone: None,
        }
    }
}

impl ProgramSettings {
    pub fn check(&self) -> Result<(), String> {
        self.accounts.check()?;
        self.ordering.check()?;
        for rules in [
            &self.rules.refrigerator,
            &self.rules.freezer,
            &self.rules.ultra_cold,
            &self.rules.other,
        ] {
            check_rules(rules)?;
        }
        for p in &self.state_coordinators {
            if p.name.trim().is_empty() || !p.email.contains('@') {
                return Err(format!(
                    "state coordinator {:?} needs a name and an email address",
                    p.name
                ));
            }
        }
        let e = &self.escalation;
        for (name, v) in [
            ("backup_after_minutes", e.backup_after_minutes),
            ("state_after_minutes", e.state_after_minutes),
            ("reminder_every_minutes", e.reminder_every_minutes),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("escalation.{name} must be a positive number of minutes"));
            }
        }
        if e.backup_after_minutes >= e.state_after_minutes {
            return Err(
                "escalation.backup_after_minutes must be less than state_after_minutes (backup first, then the state)"
                    .into(),
            );
        }
        if e.state_after_minutes > 10_080.0 || e.reminder_every_minutes > 10_080.0 {
            return Err("escalation delays must be at most 10080 minutes (a week)".into());
        }
        if !(self.late_page_limit_hours.is_finite() && self.late_page_limit_hours > 0.0) {
            return Err("late_page_limit_hours must be positive".into());
        }
        if !(self.clinic_maintenance_max_hours > 0.0 && self.clinic_maintenance_max_hours <= 336.0) {
            return Err("clinic_maintenance_max_hours must be more than 0 and at most 336 (14 days)".into());
        }
        Ok(())
    }
}

pub fn check_rules(rules: &[Rule]) -> Result<(), String> {
    let mut ids = std::collections::HashSet::new();
    for r in rules {
        r.check()?;
        if !ids.insert(&r.id) {
            return Err(format!("rule id {:?} is used twice", r.id));
        }
    }
    Ok(())
}

/// Whether a set of rules is at least as strict as the rules a unit has now: every rule of
/// `now` is still there under its id, with the same condition type and kind, a threshold no
/// further out from the range, a duration no longer, a window no shorter (a cumulative rule
/// adds up more in a longer window) and a severity no lower. Rules may be added. The error
/// names the first rule loosened, in words a clinic can act on.
///
/// Only the state may weaken a unit's alarms (docs/domain.md, "Excursions and alarm rules":
/// the program sets them; a clinic may only be stricter).
pub fn no_looser(now: &[Rule], new: &[Rule]) -> Result<(), String> {
    for was in now {
        let Some(is) = new.iter().find(|r| r.id == was.id) else {
            return Err(format!("rule {} would be removed", was.id));
        };
        let id = &was.id;
        if std::mem::discriminant(&is.condition) != std::mem::discriminant(&was.condition) || is.kind != was.kind {
            return Err(format!(
                "rule {id} would change what it watches ({} → {})",
                was.describe(),
                is.describe()
            ));
        }
        let further_out = match (was.condition, is.condition) {
            (Condition::Above { temp_c: a }, Condition::Above { temp_c: b }) => b > a,
            (Condition::Below { temp_c: a }, Condition::Below { temp_c: b })
            | (Condition::AtOrBelow { temp_c: a }, Condition::AtOrBelow { temp_c: b }) => b < a,
            _ => false,
        };
        if further_out {
            return Err(format!(
                "rule {id} would fire later: {} instead of {}",
                is.condition.describe(),
                was.condition.describe()
            ));
        }
        if is.minutes > was.minutes {
            return Err(format!(
                "rule {id} would wait longer: {} minutes instead of {}",
                is.minutes, was.minutes
            ));
        }
        if is.window_minutes.unwrap_or(0) < was.window_minutes.unwrap_or(0) {
            return Err(format!(
                "rule {id} would add up over a shorter window: {} minutes instead of {}",
                is.window_minutes.unwrap_or(0),
                was.window_minutes.unwrap_or(0)
            ));
        }
        if is.severity < was.severity {
            return Err(format!(
                "rule {id} would be {} instead of {}",
                is.severity.as_str(),
                was.severity.as_str()
            ));
        }
    }
    Ok(())
}

/// Whether a range a clinic sets is no wider than it may be: inside the kind's storage range
/// (docs/domain.md, "Storage units and temperature ranges") and inside the unit's range now
/// (`now`; none for a new unit). A kind without a storage range (`other`) has nothing to bound
/// a new unit by: that is the state's to set.
pub fn range_no_looser(kind: UnitKind, now: Option<(f64, f64)>, new: (f64, f64)) -> Result<(), String> {
    let bounds = [kind.default_range(), now];
    if bounds.iter().all(Option::is_none) {
        return Err("a unit of kind \"other\" has no storage range to keep its range inside".into());
    }
    for (lo, hi) in bounds.into_iter().flatten() {
        if new.0 < lo || new.1 > hi {
            return Err(format!(
                "the range {:.1} to {:.1} °C would be wider than {lo:.1} to {hi:.1} °C",
                new.0, new.1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fridge() -> Vec<Rule> {
        default_rules(UnitKind::Refrigerator)
    }

    #[test]
    fn the_same_rules_a_stricter_threshold_a_shorter_wait_and_an_added_rule_are_no_looser() {
        assert_eq!(no_looser(&fridge(), &fridge()), Ok(()));
        let mut tighter = fridge();
        tighter[0].condition = Condition::Above { temp_c: 7.5 };
        tighter[0].minutes = 30;
        tighter[1].condition = Condition::Below { temp_c: 2.5 };
        tighter[3].window_minutes = Some(48 * 60);
        tighter.push(rule(
            "warm-now",
            Condition::Above { temp_c: 12.0 },
            RuleKind::Consecutive,
            0,
            None,
            Severity::Warning,
        ));
        assert_eq!(no_looser(&fridge(), &tighter), Ok(()));
    }

    /// One way to change the shipped refrigerator rules.
    type Loosen = fn(&mut Vec<Rule>);

    #[test]
    fn each_way_of_loosening_a_rule_is_named() {
        let cases: [(Loosen, &str); 9] = [
            (|r| r.clear(), "warm-60 would be removed"),
            (
                |r| r[0].condition = Condition::Above { temp_c: 9.0 },
                "warm-60 would fire later",
            ),
            (
                |r| r[1].condition = Condition::Below { temp_c: 1.0 },
                "cold-15 would fire later",
            ),
            (
                |r| r[2].condition = Condition::AtOrBelow { temp_c: 0.0 },
                "freezing would fire later",
            ),
            (|r| r[0].minutes = 90, "warm-60 would wait longer"),
            (|r| r[3].window_minutes = Some(60), "shorter window"),
            (|r| r[0].severity = Severity::Warning, "warm-60 would be warning"),
            (
                |r| r[0].condition = Condition::OutsideRange,
                "would change what it watches",
            ),
            (|r| r[0].kind = RuleKind::Cumulative, "would change what it watches"),
        ];
        for (change, named) in cases {
            let mut looser = fridge();
            change(&mut looser);
            let e = no_looser(&fridge(), &looser).unwrap_err();
            assert!(e.contains(named), "{e} should name {named:?}");
        }
    }

    #[test]
    fn a_clinic_range_stays_inside_the_kinds_storage_range() {
        let fridge = UnitKind::Refrigerator;
        assert_eq!(range_no_looser(fridge, Some((2.0, 8.0)), (3.0, 7.0)), Ok(()));
        assert_eq!(range_no_looser(fridge, None, (3.0, 7.0)), Ok(()), "a new unit");
        assert!(
            range_no_looser(fridge, Some((3.0, 7.0)), (2.0, 8.0))
                .unwrap_err()
                .contains("wider than 3.0 to 7.0"),
            "back out to the kind's range is wider than the state set"
        );
        assert!(range_no_looser(fridge, Some((2.0, 8.0)), (-90.0, 90.0))
            .unwrap_err()
            .contains("wider than 2.0 to 8.0"));
        assert!(range_no_looser(UnitKind::Other, Some((10.0, 20.0)), (5.0, 20.0)).is_err());
        assert_eq!(
            range_no_looser(UnitKind::Other, Some((10.0, 20.0)), (12.0, 18.0)),
            Ok(())
        );
        assert!(
            range_no_looser(UnitKind::Other, None, (5.0, 20.0)).is_err(),
            "a new other unit is the state's"
        );
    }

    #[test]
    fn shipped_defaults_are_valid_and_match_domain_md() {
        let p = ProgramSettings::default();
        p.check().unwrap();
        let fridge = &p.rules.refrigerator;
        assert_eq!(fridge.len(), 4);
        assert!(fridge
            .iter()
            .any(|r| r.condition == Condition::AtOrBelow { temp_c: 0.5 } && r.minutes == 0));
        assert!(fridge
            .iter()
            .any(|r| r.kind == RuleKind::Cumulative && r.window_minutes == Some(1440)));
        assert_eq!(p.escalation.backup_after_minutes, 30.0);
    }

    #[test]
    fn a_cumulative_rule_needs_a_window() {
        let mut r = default_rules(UnitKind::Refrigerator).pop().unwrap();
        r.window_minutes = None;
        assert!(r.check().unwrap_err().contains("window_minutes"));
    }
}
