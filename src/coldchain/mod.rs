//! Cold chain: judging each unit's readings against its rules (docs/domain.md, "Storage units",
//! "After an excursion").
//!
//! - [`rules`]: alarm rules, the program's defaults per unit kind, unit overrides, history;
//! - [`episodes`]: pure functions from readings to excursions and rules met;
//! - [`evaluate`]: the evaluator task that turns new readings into excursion records, alarms
//!   and outbox emails, in one transaction per unit.

pub mod daily;
pub mod devices;
pub mod episodes;
pub mod evaluate;
pub mod import;
pub mod rules;
