//! `vfc bench …`: figures measured on this machine, each with its baseline from the same run.

pub mod alerts;
pub mod gateway;
pub mod hl7;
pub mod ingest;
pub mod smtp_sink;

use clap::Subcommand;

use crate::accounts::{Caller, Role, Scope};
use crate::config::Settings;
use crate::registry::locations::{self, Contact, Contacts, Location, NewLocation};
use crate::store::Db;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// MQTT ingest: raw broker rate vs. the durable pipeline, single and batched, and latency.
    Ingest(ingest::Args),
    /// Alert latency: the reading that meets a rule → the email accepted by a real SMTP server.
    Alerts(alerts::Args),
    /// A gateway's backlog drained with end-to-end confirmation vs. the same readings published straight.
    Gateway(gateway::Args),
    /// HL7 VXU messages per second through POST /api/v1/hl7 vs. a bare authenticated request.
    Hl7(hl7::Args),
}

pub async fn run(settings: Settings, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::run(settings, args).await,
        BenchCommand::Alerts(args) => alerts::run(settings, args).await,
        BenchCommand::Hl7(args) => hl7::run(settings, args).await,
        BenchCommand::Gateway(args) => gateway::run(settings, args).await,
    }
}

/// The bench acting as a state coordinator.
pub(crate) fn state_caller() -> Caller {
    Caller::single(
        crate::accounts::Principal::Token {
            id: 0,
            name: "bench".into(),
        },
        Role::StateCoordinator,
        Scope::Program,
    )
}

/// Location `{pin}A`, "Bench clinic", with example coordinators.
pub(crate) async fn clinic(db: &Db, pin: &str) -> anyhow::Result<Location> {
    let contact = |who: &str| Contact {
        name: who.into(),
        email: format!("{who}@bench.example"),
        phone: None,
    };
    let new = NewLocation {
        pin: pin.to_string(),
        suffix: Some("A".into()),
        name: "Bench clinic".into(),
        timezone: "America/New_York".into(),
        address: None,
        contacts: Contacts {
            primary: contact("primary"),
            backup: contact("backup"),
        },
    };
    locations::create(db, &state_caller(), &new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Registers gateway `id` at location `{pin}A` (made if new), so its readings enter the record.
pub(crate) async fn registered_gateway(db: &Db, pin: &str, id: &str) -> anyhow::Result<()> {
    let code = format!("{pin}A");
    if locations::get(db, &Scope::Program, &code).await.is_err() {
        clinic(db, pin).await?;
    }
    let new = crate::registry::gateways::NewGateway {
        id: id.to_string(),
        name: "Bench gateway".into(),
    };
    crate::registry::gateways::register(db, &state_caller(), &code, &new, crate::store::now_millis())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
