//! `vfc bench …`: figures measured on this machine, each with its baseline from the same run.

pub mod alerts;
pub mod hl7;
pub mod ingest;
pub mod smtp_sink;

use clap::Subcommand;

use crate::config::Settings;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// MQTT ingest: raw broker rate vs. the durable pipeline, single and batched, and latency.
    Ingest(ingest::Args),
    /// Alert latency: the reading that meets a rule → the email accepted by a real SMTP server.
    Alerts(alerts::Args),
    /// HL7 VXU messages per second through POST /api/v1/hl7 vs. a bare authenticated request.
    Hl7(hl7::Args),
}

pub async fn run(settings: Settings, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::run(settings, args).await,
        BenchCommand::Alerts(args) => alerts::run(settings, args).await,
        BenchCommand::Hl7(args) => hl7::run(settings, args).await,
    }
}
