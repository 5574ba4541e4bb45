//! Integration tests: the real `vfc` binary, real brokers, real databases, real HTTP.

mod harness;

mod access;
mod cli;
mod gateway;
mod ingest;
mod registry;
