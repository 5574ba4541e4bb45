//! `vfc serve`: the database, the broker (embedded unless one is configured), the MQTT ingest
//! and the HTTP server, under one cancellation token. SIGINT/SIGTERM stop everything cleanly;
//! a critical task that dies makes the process exit non-zero.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::config::{MqttBroker, Settings};
use crate::store::Db;
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

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    serve_until(settings, cancel).await
}

/// Serves until `cancel` (or a part fails); work in hand is finished before it returns.
pub async fn serve_until(settings: Settings, cancel: CancellationToken) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database).await?;
    if settings.mqtt == MqttBroker::Embedded {
        broker::start(settings.mqtt_embedded_addr)?;
    }
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| {
            format!(
                "VFC_HTTP_ADDR={}: cannot listen there (in use? set VFC_HTTP_ADDR to a free port)",
                settings.http_addr
            )
        })?;
    let http_addr = listener.local_addr()?;
    let mllp = match settings.hl7_mllp_addr {
        Some(addr) => Some(crate::hl7::mllp::bind(addr).await.context("VFC_HL7_MLLP_ADDR")?),
        None => None,
    };
    let health = Arc::new(mqtt::MqttHealth::default());
    let links = crate::alerts::outbox::Links {
        public_url: settings.public_url.clone(),
        key: crate::alerts::ack::key(&db)
            .await
            .context("reading the acknowledgement-link key")?,
    };
    let state = AppState {
        db: db.clone(),
        settings: Arc::new(settings.clone()),
        mqtt: health.clone(),
        metrics: metrics_handle(),
        ack_key: Arc::new(links.key.clone()),
        intake: crate::hl7::intake::Intake::start(db.clone()),
    };
    if let Some(listener) = mllp {
        tracing::info!(addr = %listener.local_addr()?, "HL7 MLLP listening");
        tokio::spawn(crate::hl7::mllp::serve(
            listener,
            settings.hl7_mllp_allow.clone(),
            state.intake.clone(),
            cancel.clone(),
        ));
    }

    let mut ingest = tokio::spawn(mqtt::run(db.clone(), settings.clone(), health.clone(), cancel.clone()));
    let outbox_nudge = Arc::new(tokio::sync::Notify::new());
    let escalation = tokio::spawn(crate::alerts::escalation::run(
        db.clone(),
        links.clone(),
        outbox_nudge.clone(),
        cancel.clone(),
    ));
    let devices = tokio::spawn(crate::coldchain::devices::run(
        db.clone(),
        links.clone(),
        outbox_nudge.clone(),
        cancel.clone(),
    ));
    let evaluator = tokio::spawn(crate::coldchain::evaluate::run(
        db.clone(),
        links.clone(),
        health,
        outbox_nudge.clone(),
        cancel.clone(),
    ));
    let mut sender = tokio::spawn(crate::alerts::sender::run(
        db.clone(),
        settings.clone(),
        outbox_nudge,
        cancel.clone(),
    ));
    let http_cancel = cancel.clone();
    let mut http = tokio::spawn(async move {
        axum::serve(listener, web::router(state))
            .with_graceful_shutdown(http_cancel.cancelled_owned())
            .await
    });
    tracing::info!(%http_addr, database = db.kind.as_str(), "vfc-monitor serving");

    let result = tokio::select! {
        r = &mut ingest => match r {
            Ok(Ok(())) if cancel.is_cancelled() => Ok(()),
            Ok(Ok(())) => Err(anyhow!("the MQTT ingest stopped unexpectedly")),
            Ok(Err(e)) => Err(e.context("the MQTT ingest failed")),
            Err(e) => Err(anyhow!(e).context("the MQTT ingest panicked")),
        },
        r = &mut sender => match r {
            Ok(Ok(())) if cancel.is_cancelled() => Ok(()),
            Ok(Ok(())) => Err(anyhow!("the email sender stopped unexpectedly")),
            Ok(Err(e)) => Err(e.context("the email sender failed")),
            Err(e) => Err(anyhow!(e).context("the email sender panicked")),
        },
        r = &mut http => match r {
            Ok(Ok(())) if cancel.is_cancelled() => Ok(()),
            Ok(Ok(())) => Err(anyhow!("the HTTP server stopped unexpectedly")),
            Ok(Err(e)) => Err(anyhow!(e).context("the HTTP server failed")),
            Err(e) => Err(anyhow!(e).context("the HTTP server panicked")),
        },
    };
    cancel.cancel();
    // Let the other task finish its work in hand (the ingest commits and acks its batch).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        if !ingest.is_finished() {
            let _ = ingest.await;
        }
        if !http.is_finished() {
            let _ = http.await;
        }
        let _ = evaluator.await;
        let _ = escalation.await;
        let _ = devices.await;
    })
    .await;
    db.pool.close().await;
    tracing::info!("vfc-monitor stopped");
    result
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
