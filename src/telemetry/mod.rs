//! Telemetry ingest: logger readings in over MQTT, committed to the database, acknowledged to
//! the broker only after the commit, and confirmed end to end to gateways.
//!
//! - [`broker`]: the embedded MQTT broker (rumqttd) for installs with nothing else running;
//! - [`mqtt`]: the subscriber connection — persistent session, manual acks, reconnects;
//! - [`ingest`]: one batch of messages → one transaction (readings, dead letters, statuses);
//! - [`identity`]: whether the sender of a reading may speak for its logger;
//! - [`record`]: accepted readings into the record (stored once, conflicts kept, queued);
//! - [`held`]: readings kept in full outside the record, and re-filed when they may enter it;
//! - [`confirm`]: gateways' `seq` marks, computed from the database;
//! - [`dead_letters`]: payloads refused, with the reason.
//!
//! Readings themselves are stored through `crate::readings`, which also queues them for the
//! cold chain's evaluator; the ingest wakes the evaluator after each commit through the
//! `Notify` the composition root hands it.

pub mod broker;
pub mod confirm;
pub mod dead_letters;
pub mod held;
pub mod identity;
pub mod ingest;
pub mod mqtt;
pub mod record;
