//! Cold chain: judging each unit's readings against its rules, and what follows (docs/domain.md,
//! "Excursions and alarm rules", "Alerts and escalation", "After an excursion").
//!
//! - [`rules`]: alarm rules and the program's settings as values; [`settings`]: where they are
//!   kept; [`changes`]: every change to what guards a unit, recorded and told;
//! - [`episodes`]: pure functions from readings to excursions and rules met; [`primary`]: the
//!   unit's record those are computed from;
//! - [`evaluate`]: the evaluator task, one savepoint per unit, failures to [`quarantine`];
//! - [`excursions`]: the record of every excursion, alarm, acknowledgement and review;
//! - [`notices`] and [`escalation`]: what the emails say, and who is told when;
//! - [`devices`]: the loggers' own conditions; [`downtime`]: maintenance and out of service;
//! - [`daily`]: the daily min/max record and its sign-offs; [`import`]: logger export files;
//! - [`stock`]: what an excursion asks of the inventory, without knowing it.

pub mod changes;
pub mod chart;
pub mod coordinators;
pub mod daily;
pub mod devices;
pub mod downtime;
pub mod episodes;
pub mod escalation;
pub mod evaluate;
pub mod excursions;
pub mod import;
pub mod notices;
pub mod primary;
pub mod quarantine;
pub mod rules;
pub mod settings;
pub mod stock;
pub mod tiles;

/// What needs a person though the service runs: units the evaluator cannot judge, a program
/// document that cannot be read (alarms go on with the last readable one). Shown on `/healthz`.
pub async fn warnings(db: &crate::store::Db) -> crate::error::Result<Vec<String>> {
    let mut warnings = Vec::new();
    let stuck = quarantine::count(db).await?;
    if stuck > 0 {
        warnings.push(format!(
            "{stuck} storage unit(s) cannot be judged; see GET /api/v1/evaluation-failures"
        ));
    }
    if let Err(crate::error::Error::Unreadable(why)) = settings::program(db).await {
        warnings.push(format!("{why}; alarms run on the last settings that read"));
    }
    Ok(warnings)
}
