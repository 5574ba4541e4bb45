//! Alerts: the email outbox and the sender that delivers it.
//!
//! An email is a row written in the same transaction as the excursion change that needs it
//! ([`outbox`]); the [`sender`] delivers rows at least once, over SMTP (lettre) or as `.eml`
//! files, with a Message-ID derived from the row so a retry after an uncertain send is
//! recognisable as the same message.

pub mod ack;
pub mod escalation;
pub mod outbox;
pub mod sender;
