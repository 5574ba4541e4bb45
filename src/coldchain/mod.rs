//! Cold chain: judging each unit's readings against its rules, and what follows (docs/domain.md,
//! "Excursions and alarm rules", "Alerts and escalation", "After an excursion").
//!
//! - [`rules`]: alarm rules and the program's settings as values; [`settings`]: where they are
//!   kept, with every change;
//! - [`episodes`]: pure functions from readings to excursions and rules met; [`primary`]: the
//!   unit's record those are computed from;
//! - [`evaluate`]: the evaluator task, one savepoint per unit, failures to [`quarantine`];
//! - [`excursions`]: the record of every excursion, alarm, acknowledgement and review;
//! - [`notices`] and [`escalation`]: what the emails say, and who is told when;
//! - [`devices`]: the loggers' own conditions; [`downtime`]: maintenance and out of service;
//! - [`daily`]: the daily min/max record and its sign-offs; [`import`]: logger export files;
//! - [`stock`]: what an excursion asks of the inventory, without knowing it.

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
