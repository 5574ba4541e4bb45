//! vfc-monitor: vaccine cold-chain, inventory and ordering monitor for the VFC program.
//!
//! Follow a reading: `telemetry` (MQTT in, batches committed, confirmations out) →
//! `store` (the database) → `registry` (which PIN, location and unit a logger serves) →
//! `web` (the JSON API, scoped by `accounts`).
#![forbid(unsafe_code)]

pub mod accounts;
pub mod alerts;
pub mod app;
pub mod bench;
pub mod charts;
pub mod cli;
pub mod coldchain;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod files;
pub mod fuzz_targets;
pub mod hl7;
pub mod inventory;
pub mod orders;
pub mod readings;
pub mod registry;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod web;
