//! firmware-bridge: what runs on, or speaks for, a clinic's data loggers.
//!
//! - `wire`: topic names and payload types shared with the service, so the device side and the
//!   server side have one definition of a valid reading;
//! - `gateway`: the clinic gateway (`firmware-bridge run`), sources → `spool` → broker, with
//!   end-to-end confirmation;
//! - `sources`: a line source (serial device, FIFO, file followed as it grows) and a drop folder
//!   of export files (`berlinger`, `logtag`), with local times read in a `zone`;
//! - `simulate`: simulated loggers and scenarios (`firmware-bridge simulate`, `vfc demo`).
#![forbid(unsafe_code)]

pub mod berlinger;
pub mod broker;
pub mod feed;
pub mod gateway;
pub mod logtag;
pub mod simulate;
pub mod sources;
pub mod spool;
pub mod wire;
pub mod zone;
