//! `vfc serve`: the composition root. It checks everything the service needs in order to start
//! (ports, folders, TLS, the MLLP allow list) before touching the database, opens the database,
//! starts the embedded broker unless one is configured, hands each capability what it needs
//! (the cold chain gets the inventory's holds as `ExposedStock`, the evaluator the ingest's
//! wake-up), runs the background tasks under [`crate::supervise`], and serves HTTP, all under
//! one cancellation token. SIGINT/SIGTERM stop everything cleanly; a part that cannot start
//! makes `serve` return an error, and the process exits non-zero.
//!
//! The addresses it bound (HTTP, MLLP, the embedded broker; any of them may be configured as
//! port 0) are logged and written to `$VFC_DATA_DIR/ports.json`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alerts::sender::{self, Mailer};
use crate::alerts::Links;
use crate::coldchain::evaluate::Evaluator;
use crate::coldchain::{devices, escalation};
use crate::config::{DatabaseUrl, MqttBroker, Settings};
use crate::hl7::{intake, mllp};
use crate::store::Db;
use crate::supervise::Tasks;
use crate::telemetry::{broker, mqtt};
use crate::web::{self, AppState};

/// Installs the process-wide Prometheus recorder once; later calls reuse it.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0])
                .ok()?;
            builder.install_recorder().ok()
        })
        .clone()
}

/// Opens the database every command works on: connects, applies the migrations, and loads the
/// vaccine catalog that ships with the binary (a fresh data directory works at once).
pub async fn open_database(url: &DatabaseUrl) -> anyhow::Result<Db> {
    let db = Db::connect(url).await?;
    crate::inventory::catalog::seed(&db).await?;
    Ok(db)
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    serve_until(settings, cancel).await
}

/// The addresses the service listens on, as bound.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub http: SocketAddr,
    /// The embedded broker; absent with an external broker.
    pub mqtt: Option<SocketAddr>,
    pub mllp: Option<SocketAddr>,
}

/// Writes `ports.json` in the data directory, replacing it atomically.
fn write_ports(dir: &Path, ports: &Ports) -> anyhow::Result<()> {
    crate::files::private_dir(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    let tmp = dir.join(".ports.json.tmp");
    crate::files::write_private(&tmp, &serde_json::to_vec_pretty(ports)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("ports.json")).context("writing ports.json")?;
    Ok(())
}

/// Serves until `cancel` (or the HTTP server fails); work in hand is finished before it returns.
pub async fn serve_until(mut settings: Settings, cancel: CancellationToken) -> anyhow::Result<()> {
    // Every setting that can refuse to start is tried before the database or the email folder
    // is touched, so a serve with wrong settings leaves the data directory as it found it.
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| {
            format!(
                "VFC_HTTP_ADDR={}: cannot listen there (in use? set VFC_HTTP_ADDR to a free port)",
                settings.http_addr
            )
        })?;
    let http_addr = listener.local_addr()?;
    let allow = mllp::Allow::parse(&settings.hl7_mllp_allow)?;
    let mllp_listener = match settings.hl7_mllp_addr {
        Some(addr) => Some(mllp::bind(addr).await.context("VFC_HL7_MLLP_ADDR")?),
        None => None,
    };
    let mllp_addr = mllp_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    mqtt::options(&settings, &settings.mqtt_client_id).context("the MQTT connection settings")?;
    let public_url = settings.public_url(http_addr);
    let mailer = Arc::new(Mailer::prepare(&settings, public_url.clone()).await?);
    let broker_addr = match settings.mqtt {
        MqttBroker::Embedded => {
            let addr = broker::start(settings.mqtt_embedded_addr).await?;
            settings.mqtt_embedded_addr = addr;
            Some(addr)
        }
        MqttBroker::External(_) => None,
    };

    let db = open_database(&settings.database).await?;
    mailer.open_folder().await?;
    let links = Links {
        public_url,
        key: crate::alerts::links::key(&db)
            .await
            .context("reading the acknowledgement-link key")?,
    };
    let ports = Ports {
        http: http_addr,
        mqtt: broker_addr,
        mllp: mllp_addr,
    };
    write_ports(&settings.data_dir, &ports)?;

    let background = Background::start(
        &db,
        &settings,
        &links,
        mailer,
        mllp_listener.map(|l| (l, allow)),
        &cancel,
    );
    let state = AppState {
        db: db.clone(),
        settings: Arc::new(settings.clone()),
        mqtt: background.health.clone(),
        tasks: background.tasks.clone(),
        metrics: metrics_handle(),
        ack_key: Arc::new(links.key.clone()),
        intake: background.intake.clone(),
        stock: Arc::new(crate::inventory::holds::ExcursionHolds),
        public_url: links.public_url.clone(),
    };
    tracing::info!(
        http = %http_addr,
        mqtt = %broker_addr.map(|a| a.to_string()).unwrap_or_else(|| "external".into()),
        mllp = %mllp_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        database = db.dialect().as_str(),
        "vfc-monitor serving"
    );
    let http_cancel = cancel.clone();
    let served = axum::serve(
        listener,
        web::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(http_cancel.cancelled_owned())
    .await;
    let result = match served {
        Ok(()) if cancel.is_cancelled() => Ok(()),
        Ok(()) => Err(anyhow!("the HTTP server stopped unexpectedly")),
        Err(e) => Err(anyhow!(e).context("the HTTP server failed")),
    };
    cancel.cancel();
    background.finish().await;
    db.pool.close().await;
    tracing::info!("vfc-monitor stopped");
    result
}

/// The service's background tasks, each under the supervisor.
pub struct Background {
    pub tasks: Tasks,
    pub health: Arc<mqtt::MqttHealth>,
    pub intake: intake::Intake,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Starts ingest, evaluator, escalation, device checks, email sender, HL7 intake and (when
    /// a listener is given) MLLP, wired to one another: the ingest wakes the evaluator, the
    /// evaluator and escalation wake the sender, the cold chain holds stock through the
    /// inventory.
    pub fn start(
        db: &Db,
        settings: &Settings,
        links: &Links,
        mailer: Arc<Mailer>,
        mllp: Option<(tokio::net::TcpListener, mllp::Allow)>,
        cancel: &CancellationToken,
    ) -> Background {
        let cancel = cancel.clone();
        let db = db.clone();
        let links = links.clone();
        let tasks = Tasks::new();
        let health = Arc::new(mqtt::MqttHealth::default());
        let committed = Arc::new(Notify::new());
        let outbox = Arc::new(Notify::new());
        let (intake, intake_worker) = intake::Intake::new(db.clone());
        // One view of the program's settings for the evaluator and the escalation: both go on
        // with the last readable settings should the stored document become unreadable.
        let program = crate::coldchain::settings::InForce::default();
        let stock: Arc<dyn crate::coldchain::stock::ExposedStock> = Arc::new(crate::inventory::holds::ExcursionHolds);
        let evaluator = Evaluator {
            db: db.clone(),
            links: links.clone(),
            stock: stock.clone(),
            program: program.clone(),
        };
        let mut handles = Vec::new();
        {
            let (db, settings, health, committed, c) = (
                db.clone(),
                settings.clone(),
                health.clone(),
                committed.clone(),
                cancel.clone(),
            );
            handles.push(tasks.spawn("ingest", cancel.clone(), move || {
                mqtt::run(
                    db.clone(),
                    settings.clone(),
                    health.clone(),
                    committed.clone(),
                    c.clone(),
                )
            }));
        }
        {
            let (committed, outbox, c) = (committed.clone(), outbox.clone(), cancel.clone());
            handles.push(tasks.spawn("evaluator", cancel.clone(), move || {
                crate::coldchain::evaluate::run(evaluator.clone(), committed.clone(), outbox.clone(), c.clone())
            }));
        }
        {
            let (db, links, stock, outbox, c) =
                (db.clone(), links.clone(), stock.clone(), outbox.clone(), cancel.clone());
            handles.push(tasks.spawn("escalation", cancel.clone(), move || {
                escalation::run(
                    db.clone(),
                    links.clone(),
                    program.clone(),
                    stock.clone(),
                    outbox.clone(),
                    c.clone(),
                )
            }));
        }
        {
            let (db, links, outbox, c) = (db.clone(), links.clone(), outbox.clone(), cancel.clone());
            handles.push(tasks.spawn("device-checks", cancel.clone(), move || {
                devices::run(db.clone(), links.clone(), stock.clone(), outbox.clone(), c.clone())
            }));
        }
        {
            let (db, outbox, c) = (db.clone(), outbox.clone(), cancel.clone());
            handles.push(tasks.spawn("email-sender", cancel.clone(), move || {
                sender::run(db.clone(), mailer.clone(), outbox.clone(), c.clone())
            }));
        }
        {
            let (db, c) = (db.clone(), cancel.clone());
            handles.push(tasks.spawn("held-readings", cancel.clone(), move || {
                crate::telemetry::held::run(db.clone(), c.clone())
            }));
        }
        {
            let (db, c) = (db.clone(), cancel.clone());
            handles.push(tasks.spawn("inactive-accounts", cancel.clone(), move || {
                inactive_accounts(db.clone(), c.clone())
            }));
        }
        {
            let (db, c) = (db.clone(), cancel.clone());
            handles.push(tasks.spawn("order-upkeep", cancel.clone(), move || {
                order_upkeep(db.clone(), c.clone())
            }));
        }
        handles.push(tasks.spawn("hl7-intake", cancel.clone(), {
            let c = cancel.clone();
            move || intake_worker.clone().run(c.clone())
        }));
        if let Some((listener, allow)) = mllp {
            let listener = Arc::new(listener);
            let (intake, c) = (intake.clone(), cancel.clone());
            handles.push(tasks.spawn("mllp", cancel.clone(), move || {
                mllp::serve(listener.clone(), allow.clone(), intake.clone(), c.clone())
            }));
        }

        Background {
            tasks,
            health,
            intake,
            handles,
        }
    }

    /// Lets the tasks finish their work in hand (the ingest commits and acks its batch), for at
    /// most 10 s, once the token is cancelled.
    pub async fn finish(self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            for h in self.handles {
                let _ = h.await;
            }
        })
        .await;
    }
}

/// Disables sign-ins left unused for the program's inactive days; looks every minute (or every
/// tenth of that limit when a program sets it shorter, as tests do), a query on `accounts`.
async fn inactive_accounts(db: Db, cancel: CancellationToken) -> anyhow::Result<()> {
    loop {
        let limits = crate::coldchain::settings::program(&db).await?.accounts;
        crate::accounts::status::sweep_inactive(&db, limits.inactive_ms(), limits.inactive_days).await?;
        let every = std::time::Duration::from_millis((limits.inactive_ms() / 10).clamp(1_000, 60_000) as u64);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Keeps orders current as time passes and inputs change: brings each location's stored
/// prerequisite status up to date — every 5 s those written to since the last pass (every
/// audited write names its location) or whose excursions changed, every minute also the 200
/// computed longest ago (over an hour) — so lists read it and never recompute it; and expires
/// returned orders past their days.
async fn order_upkeep(db: Db, cancel: CancellationToken) -> anyhow::Result<()> {
    // Writes from before this start are caught by the refresh of the oldest statuses.
    let mut watermark = {
        let mut conn = db.pool.acquire().await?;
        crate::orders::readiness::Watermark {
            audit_id: crate::accounts::audit::locations_written_after(&mut conn, i64::MAX)
                .await?
                .1,
            at: crate::store::now_millis(),
        }
    };
    for pass in 0u64.. {
        let stale = if pass % 12 == 0 {
            crate::orders::progress::expire_returned(&db).await?;
            200
        } else {
            0
        };
        let n = crate::orders::readiness::sweep(&db, &mut watermark, stale).await?;
        metrics::counter!("vfc_order_readiness_computed_total").increment(n as u64);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
    Ok(())
}

pub async fn stop_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("stopping on signal");
    cancel.cancel();
}
