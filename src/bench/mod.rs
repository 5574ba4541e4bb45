//! `vfc bench …`: figures measured on this machine, each with its baseline from the same run.

pub mod ingest;

use clap::Subcommand;

use crate::config::Settings;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// MQTT ingest: raw broker rate vs. the durable pipeline, single and batched, and latency.
    Ingest(ingest::Args),
}

pub async fn run(settings: Settings, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::run(settings, args).await,
    }
}
