//! `vfc bench ingest`: how fast readings go from MQTT to a durable commit, against the raw
//! speed of the same broker with the same publisher, measured in one run.
//!
//! 1. raw: a QoS 1 subscriber with automatic acks that only counts messages;
//! 2. pipeline, one reading per message: the real ingest (manual acks after commit) until the
//!    database holds every reading;
//! 3. pipeline, 50 readings per message;
//! 4. latency at a steady rate: gateway-style readings with `seq`, from publish until the
//!    service's confirmation (which it sends only after the commit) comes back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use firmware_bridge::wire;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseUrl, MqttBroker, MqttUrl, Settings};
use crate::store::Db;
use crate::telemetry::{broker, mqtt};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Broker to measure (default: an embedded broker started for the bench).
    #[arg(long, value_name = "URL")]
    pub(crate) mqtt_url: Option<String>,
    /// Database to write to (default: a fresh SQLite file in a temporary folder). Use a scratch
    /// database: the bench leaves its readings there.
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// Simulated loggers.
    #[arg(long, default_value_t = 1000)]
    pub(crate) loggers: usize,
    /// Readings per logger in the throughput phases.
    #[arg(long, default_value_t = 200)]
    pub(crate) readings: usize,
    /// Readings per message in the batched phase.
    #[arg(long, default_value_t = 50)]
    pub(crate) batch: usize,
    /// Readings per second in the latency phase.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    pub(crate) latency_secs: u64,
}

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.loggers == 0 || args.readings == 0 || args.batch == 0 || args.rate == 0 {
        bail!("--loggers, --readings, --batch and --rate must be at least 1");
    }
    let (settings, db, tmp) = setup(base, args.database_url.as_deref(), args.mqtt_url.as_deref()).await?;
    let run_id = settings.mqtt_client_id.trim_start_matches("vfc-bench-").to_string();
    let broker_name = match &settings.mqtt {
        MqttBroker::Embedded => "embedded".to_string(),
        MqttBroker::External(u) => format!("{}:{}", u.host, u.port),
    };
    let n = args.loggers * args.readings;
    let progress = |what: &str| {
        if !args.json {
            eprintln!("… {what}");
        }
    };

    progress(&format!("raw broker rate: {n} messages, QoS 1, counting subscriber"));
    let raw = raw_rate(&settings, &run_id, &args).await?;
    progress(&format!("  {raw:.0} msgs/s"));

    let pipeline = Pipeline::start(db.clone(), settings.clone()).await?;
    progress(&format!("pipeline, 1 reading per message: {n} readings"));
    let single = pipeline_rate(&pipeline, &settings, &run_id, "s", &args, 1).await?;
    progress(&format!("  {single:.0} readings/s"));
    progress(&format!("pipeline, {} readings per message: {n} readings", args.batch));
    let batched = pipeline_rate(&pipeline, &settings, &run_id, "b", &args, args.batch).await?;
    progress(&format!("  {batched:.0} readings/s"));
    progress(&format!(
        "latency at {} readings/s for {} s",
        args.rate, args.latency_secs
    ));
    let (p50, p99, samples) = latency(&db, &settings, &run_id, &args).await?;
    pipeline.stop().await;
    forget_session(&settings).await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }

    let report = json!({
        "database": db.dialect().as_str(),
        "broker": broker_name,
        "messages": n,
        "raw_msgs_per_s": raw.round(),
        "pipeline_single_per_s": single.round(),
        "pipeline_batched_per_s": batched.round(),
        "single_vs_raw": (single / raw * 100.0).round() / 100.0,
        "latency_rate_per_s": args.rate,
        "latency_samples": samples,
        "latency_p50_ms": (p50 * 10.0).round() / 10.0,
        "latency_p99_ms": (p99 * 10.0).round() / 10.0,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "database {}, broker {broker_name}, {n} readings per phase",
            db.dialect().as_str()
        );
        println!("raw broker (QoS 1, count only)      {raw:>10.0} msgs/s   (baseline)");
        println!(
            "pipeline, 1 reading per message     {single:>10.0} readings/s   {:.2} × raw",
            single / raw
        );
        println!(
            "pipeline, {:>2} readings per message   {batched:>10.0} readings/s",
            args.batch
        );
        println!(
            "publish → committed at {}/s         p50 {p50:.1} ms, p99 {p99:.1} ms ({samples} readings)",
            args.rate
        );
    }
    Ok(())
}

/// The bench's settings: a fresh SQLite file in a temporary folder (or `database_url`), an
/// embedded broker started on a free port (or `mqtt_url`), a client id of its own. Returns the
/// temporary folder to remove afterwards.
pub(crate) async fn setup(
    base: Settings,
    database_url: Option<&str>,
    mqtt_url: Option<&str>,
) -> anyhow::Result<(Settings, Db, std::path::PathBuf)> {
    let tmp = std::env::temp_dir().join(format!("vfc-bench-{}", std::process::id()));
    let database = match database_url {
        Some(u) if u.starts_with("postgres") => DatabaseUrl::Postgres(u.to_string()),
        Some(u) => DatabaseUrl::Sqlite(u.trim_start_matches("sqlite://").into()),
        None => DatabaseUrl::Sqlite(tmp.join("bench.db")),
    };
    let mqtt = match mqtt_url {
        Some(u) => MqttBroker::External(MqttUrl::parse(u).map_err(|e| anyhow::anyhow!("--mqtt-url: {e}"))?),
        None => MqttBroker::Embedded,
    };
    let embedded_addr = match mqtt {
        MqttBroker::Embedded => broker::start("127.0.0.1:0".parse()?).await?,
        MqttBroker::External(_) => "127.0.0.1:0".parse()?,
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    let settings = Settings {
        database,
        mqtt,
        mqtt_embedded_addr: embedded_addr,
        mqtt_client_id: format!("vfc-bench-{run_id}"),
        mqtt_share_group: None,
        ..base
    };
    let db = crate::app::open_database(&settings.database).await?;
    Ok((settings, db, tmp))
}

fn client(settings: &Settings, id: &str, clean: bool) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    let mut opts: MqttOptions = mqtt::options(settings, id)?;
    opts.set_clean_session(clean);
    Ok(AsyncClient::new(opts, 10_000))
}

/// Drives an event loop, forwarding incoming publishes (topic, payload) and counting PUBACKs.
fn drive(
    mut eventloop: rumqttc::EventLoop,
    cancel: CancellationToken,
) -> (
    mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) | Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "bench MQTT connection error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    (rx, ready)
}

pub(crate) fn reading_ts(j: usize) -> String {
    // A fixed past window, one reading per minute: never in the future, never colliding.
    let base = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("constant");
    (base + chrono::Duration::minutes(j as i64)).to_rfc3339()
}

/// Publishes every logger's readings, `per_message` to a message, round-robin over loggers.
async fn publish_all(publisher: &AsyncClient, prefix: &str, args: &Args, per_message: usize) -> anyhow::Result<()> {
    for chunk_start in (0..args.readings).step_by(per_message) {
        let chunk_end = (chunk_start + per_message).min(args.readings);
        for i in 0..args.loggers {
            let topic = wire::readings_topic(&format!("{prefix}-{i}"));
            let payload = if per_message == 1 {
                json!({"ts": reading_ts(chunk_start), "temp_c": 4.5})
            } else {
                let rs: Vec<_> = (chunk_start..chunk_end)
                    .map(|j| json!({"ts": reading_ts(j), "temp_c": 4.5}))
                    .collect();
                json!({ "readings": rs })
            };
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
                .await?;
        }
    }
    Ok(())
}

async fn raw_rate(settings: &Settings, run_id: &str, args: &Args) -> anyhow::Result<f64> {
    let n = args.loggers * args.readings;
    let cancel = CancellationToken::new();
    let (sub, sub_loop) = client(settings, &format!("bench-raw-sub-{run_id}"), true)?;
    // Two-level serials (PREFIX/i) keep these messages away from any ingest subscribed to
    // vfc/loggers/+/readings on the same broker; the payloads are the pipeline's.
    sub.subscribe(format!("vfc/loggers/bench-{run_id}-r/+/readings"), QoS::AtLeastOnce)
        .await?;
    let (mut rx, ready) = drive(sub_loop, cancel.clone());
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("raw subscriber: no SubAck")??;
    let (publisher, pub_loop) = client(settings, &format!("bench-raw-pub-{run_id}"), true)?;
    let (_, pub_ready) = drive(pub_loop, cancel.clone());
    tokio::time::timeout(Duration::from_secs(10), pub_ready)
        .await
        .context("publisher: no ConnAck")??;
    let started = Instant::now();
    let prefix = format!("bench-{run_id}-r");
    let publishing = {
        let publisher = publisher.clone();
        let prefix = prefix.clone();
        let loggers = args.loggers;
        let readings = args.readings;
        tokio::spawn(async move {
            for j in 0..readings {
                for i in 0..loggers {
                    let topic = format!("vfc/loggers/{prefix}/{i}/readings");
                    let payload = json!({"ts": reading_ts(j), "temp_c": 4.5}).to_string();
                    if publisher
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })
    };
    let mut got = 0;
    while got < n {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .with_context(|| format!("raw subscriber got {got} of {n} messages"))?;
        got += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    publishing.await?;
    cancel.cancel();
    Ok(rate)
}

/// The service's ingest, running in this process.
pub(crate) struct Pipeline {
    pub(crate) health: Arc<mqtt::MqttHealth>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Pipeline {
    pub(crate) async fn start(db: Db, settings: Settings) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let health = Arc::new(mqtt::MqttHealth::default());
        let committed = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(mqtt::run(db, settings, health.clone(), committed, cancel.clone()));
        let started = Instant::now();
        while !health.is_subscribed() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the ingest did not subscribe within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Pipeline { health, cancel, task })
    }

    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

pub(crate) async fn pipeline_rate(
    pipeline: &Pipeline,
    settings: &Settings,
    run_id: &str,
    phase: &str,
    args: &Args,
    per_message: usize,
) -> anyhow::Result<f64> {
    let n = args.loggers * args.readings;
    let prefix = format!("bench-{run_id}-{phase}");
    let cancel = CancellationToken::new();
    let (publisher, pub_loop) = client(settings, &format!("bench-pub-{run_id}-{phase}"), true)?;
    let (_, ready) = drive(pub_loop, cancel.clone());
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("publisher: no ConnAck")??;
    // The ingest counts what it committed; the bench reads that count, not the database, so
    // measuring adds no load to the thing measured.
    let stored = || pipeline.health.stored.load(std::sync::atomic::Ordering::Relaxed) as usize;
    let before = stored();
    let started = Instant::now();
    let publishing = {
        let publisher = publisher.clone();
        let prefix = prefix.clone();
        let a = Args {
            json: true,
            mqtt_url: None,
            database_url: None,
            ..*args
        };
        tokio::spawn(async move { publish_all(&publisher, &prefix, &a, per_message).await })
    };
    let mut last_progress = (0, Instant::now());
    loop {
        let stored = stored() - before;
        if stored >= n {
            break;
        }
        if stored > last_progress.0 {
            last_progress = (stored, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(60) {
            bail!("pipeline stalled at {stored} of {n} readings");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    publishing.await??;
    cancel.cancel();
    Ok(rate)
}

async fn latency(db: &Db, settings: &Settings, run_id: &str, args: &Args) -> anyhow::Result<(f64, f64, usize)> {
    let cancel = CancellationToken::new();
    let gateway = format!("gw-bench-{run_id}");
    super::registered_gateway(db, "099997", &gateway).await?;
    let (sub, sub_loop) = client(settings, &format!("bench-lat-sub-{run_id}"), true)?;
    sub.subscribe(format!("vfc/gateways/{gateway}/committed/+"), QoS::AtLeastOnce)
        .await?;
    let (mut confirmations, ready) = drive(sub_loop, cancel.clone());
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("confirmation subscriber: no SubAck")??;
    let (publisher, pub_loop) = client(settings, &format!("bench-lat-pub-{run_id}"), true)?;
    let (_, ready) = drive(pub_loop, cancel.clone());
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("publisher: no ConnAck")??;

    let loggers = args.loggers.clamp(1, 100);
    let total = (args.rate * args.latency_secs) as usize;
    let sent: Arc<std::sync::Mutex<HashMap<String, Vec<Instant>>>> = Default::default();
    let publishing = {
        let sent = sent.clone();
        let publisher = publisher.clone();
        let gateway = gateway.clone();
        let run_id = run_id.to_string();
        let period = Duration::from_secs_f64(1.0 / args.rate as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let start = chrono::Utc::now() - chrono::Duration::hours(1);
            for k in 0..total {
                tick.tick().await;
                let i = k % loggers;
                let seq = k / loggers + 1;
                let serial = format!("bench-{run_id}-l-{i}");
                let ts = (start + chrono::Duration::milliseconds(k as i64)).to_rfc3339();
                let payload =
                    json!({"gateway": gateway, "epoch": "bench", "readings": [{"ts": ts, "temp_c": 4.5, "seq": seq}]});
                sent.lock()
                    .expect("not poisoned")
                    .entry(serial.clone())
                    .or_default()
                    .push(Instant::now());
                if publisher
                    .publish(
                        wire::gateway_readings_topic(&gateway, &serial),
                        QoS::AtLeastOnce,
                        false,
                        payload.to_string(),
                    )
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let mut confirmed: HashMap<String, usize> = HashMap::new();
    let mut samples = Vec::with_capacity(total);
    while samples.len() < total {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(30), confirmations.recv())
            .await
            .with_context(|| format!("confirmations stopped at {} of {total}", samples.len()))?
            .context("confirmation stream ended")?;
        let now = Instant::now();
        let Some(serial) = topic.rsplit('/').next() else {
            continue;
        };
        let Ok(c) = serde_json::from_slice::<wire::Committed>(&payload) else {
            continue;
        };
        let sent = sent.lock().expect("not poisoned");
        let Some(times) = sent.get(serial) else { continue };
        let done = confirmed.entry(serial.to_string()).or_default();
        while *done < (c.seq as usize).min(times.len()) {
            samples.push(now.duration_since(times[*done]).as_secs_f64() * 1000.0);
            *done += 1;
        }
    }
    publishing.await?;
    cancel.cancel();
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    Ok((pct(0.50), pct(0.99), samples.len()))
}

/// Ends the bench's persistent session so an external broker does not keep queueing for it.
pub(crate) async fn forget_session(settings: &Settings) {
    let Ok((c, eventloop)) = client(settings, &settings.mqtt_client_id, true) else {
        return;
    };
    let cancel = CancellationToken::new();
    let (_, ready) = drive(eventloop, cancel.clone());
    let _ = tokio::time::timeout(Duration::from_secs(5), ready).await;
    let _ = c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
}
