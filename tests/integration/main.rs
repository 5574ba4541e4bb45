//! Integration tests: the real `vfc` binary, real brokers, real databases, real HTTP.

mod harness;

mod access;
mod accounts;
mod alerting;
mod bridge;
mod broker;
mod browser;
mod cli;
mod coldchain;
mod demo;
mod gateway;
mod hl7;
mod import;
mod ingest;
mod inventory;
mod matrix;
mod orders;
mod page_matrix;
mod pages;
mod registry;
mod safety;
mod schema;
mod trust;
