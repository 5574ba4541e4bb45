//! Telemetry ingest: logger readings in over MQTT, committed to the database, acknowledged to
//! the broker only after the commit, and confirmed end to end to gateways.
//!
//! - [`broker`]: the embedded MQTT broker (rumqttd) for installs with nothing else running;
//! - [`mqtt`]: the subscriber connection — persistent session, manual acks, reconnects;
//! - [`ingest`]: one batch of messages → one transaction (readings, dead letters, statuses);
//! - [`confirm`]: gateways' `seq` marks, computed from the database.

pub mod broker;
pub mod confirm;
pub mod ingest;
pub mod mqtt;
