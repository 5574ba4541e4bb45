//! firmware-bridge: what runs on, or speaks for, a clinic's data loggers.
//!
//! For now this crate owns the **wire format** between loggers/gateways and vfc-monitor
//! (`wire`): topic names and payload types with their parsing, so the device side and the
//! server side share one definition of what a valid reading is.
#![forbid(unsafe_code)]

pub mod berlinger;
pub mod logtag;
pub mod spool;
pub mod wire;
