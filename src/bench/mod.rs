//! `vfc bench …`: figures measured on this machine, each with its baseline from the same run.

pub mod alerts;
pub mod gateway;
pub mod hl7;
pub mod ingest;
pub mod orders;
pub mod pages;
pub mod signin;
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
    /// Sign-in latency (Argon2id included) vs. the bare password check and a token request.
    SignIn(signin::Args),
    /// A location's prerequisites and suggestion, and the state's order queue, in a program of
    /// 2,000 locations with two years of ledger, vs. a bare authenticated request.
    Orders(orders::Args),
    /// A unit's 30-day chart page vs. the JSON readings API for the same window (43,200
    /// points), and the state home with 40,000 locations and 2,000 open items.
    Pages(pages::Args),
}

pub async fn run(settings: Settings, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::run(settings, args).await,
        BenchCommand::Alerts(args) => alerts::run(settings, args).await,
        BenchCommand::Hl7(args) => hl7::run(settings, args).await,
        BenchCommand::Gateway(args) => gateway::run(settings, args).await,
        BenchCommand::SignIn(args) => signin::run(settings, args).await,
        BenchCommand::Orders(args) => orders::run(settings, args).await,
        BenchCommand::Pages(args) => pages::run(settings, args).await,
    }
}

/// p50 and p99 of some timings, in milliseconds.
pub(crate) fn percentiles(mut d: Vec<std::time::Duration>) -> (f64, f64) {
    d.sort_unstable();
    let pct = |p: f64| d[((d.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    (pct(0.5), pct(0.99))
}

/// Switches every order prerequisite off (for submitting a bench's orders at once); returns
/// the prerequisites as they were, for [`restore_prerequisites`].
pub(crate) async fn prerequisites_off(
    db: &Db,
    caller: &Caller,
) -> anyhow::Result<crate::domain::ordering::Prerequisites> {
    let err = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let mut program = crate::coldchain::settings::program(db).await.map_err(err)?;
    let kept = program.ordering.prerequisites.clone();
    let p = &mut program.ordering.prerequisites;
    (
        p.reconciliation_days,
        p.doses_reported_days,
        p.unreviewed_excursion_hours,
        p.decrement_exception_days,
    ) = (None, None, None, None);
    (p.temperature_records, p.daily_signoff, p.calibration_current) = (false, false, false);
    crate::coldchain::settings::save_program(db, &program, caller)
        .await
        .map_err(err)?;
    Ok(kept)
}

/// Puts back the prerequisites [`prerequisites_off`] switched off.
pub(crate) async fn restore_prerequisites(
    db: &Db,
    caller: &Caller,
    kept: crate::domain::ordering::Prerequisites,
) -> anyhow::Result<()> {
    let err = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let mut program = crate::coldchain::settings::program(db).await.map_err(err)?;
    program.ordering.prerequisites = kept;
    crate::coldchain::settings::save_program(db, &program, caller)
        .await
        .map_err(err)
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
        account_id: None,
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

/// The settings of a bench run: `base` with a data directory of its own under the system's
/// temporary folder, and the database given (default: a fresh SQLite file there).
pub(crate) fn scratch(base: Settings, name: &str, database_url: Option<&str>) -> (Settings, std::path::PathBuf) {
    use crate::config::DatabaseUrl;
    let tmp = std::env::temp_dir().join(format!("vfc-bench-{name}-{}", std::process::id()));
    let settings = Settings {
        data_dir: tmp.clone(),
        database: match database_url {
            Some(u) if u.starts_with("postgres") => DatabaseUrl::Postgres(u.to_string()),
            Some(u) => DatabaseUrl::Sqlite(u.trim_start_matches("sqlite://").into()),
            None => DatabaseUrl::Sqlite(tmp.join("bench.db")),
        },
        ..base
    };
    (settings, tmp)
}

/// The service's HTTP router (with its HL7 intake) served on a free loopback port in this
/// process; its base URL, and the server's task (abort it when done).
pub(crate) async fn serve_in_process(
    db: &Db,
    settings: &Settings,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let (intake, worker) = crate::hl7::intake::Intake::new(db.clone());
    let tasks = crate::supervise::Tasks::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _intake = tasks.spawn("hl7-intake", cancel.clone(), {
        let c = cancel.clone();
        move || worker.clone().run(c.clone())
    });
    let state = crate::web::AppState {
        db: db.clone(),
        settings: std::sync::Arc::new(settings.clone()),
        mqtt: std::sync::Arc::new(crate::telemetry::mqtt::MqttHealth::default()),
        tasks,
        metrics: None,
        ack_key: std::sync::Arc::new(vec![0; 32]),
        intake,
        stock: std::sync::Arc::new(crate::inventory::holds::ExcursionHolds),
        public_url: url::Url::parse("http://127.0.0.1/")?,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            crate::web::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Ok((base_url, server))
}
