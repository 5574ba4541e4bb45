//! Alerts: the email outbox, the sender that delivers it, and the signed links that
//! acknowledge what an email is about.
//!
//! An email is a row written in the same transaction as the change that needs it
//! ([`outbox`]); the [`sender`] delivers rows at least once, over SMTP (lettre) or as `.eml`
//! files, with a Message-ID derived from the row so a retry after an uncertain send is
//! recognisable as the same message. What an email says, and when to escalate, is the cold
//! chain's business (`crate::coldchain::notices`, `crate::coldchain::escalation`).

pub mod links;
pub mod outbox;
pub mod sender;

pub use links::Links;
pub use outbox::{About, Email, Recipient};
