//! `vfc bench gateway`: how fast a gateway's backlog (an outage's worth of spooled readings)
//! drains through the real ingest with end-to-end confirmation, against the same readings
//! published straight to the broker in batches of the same size, measured in one run.
//!
//! 1. baseline: the backlog published as batches of 500 readings, QoS 1, no waiting for the
//!    service: the ingest's batched rate on this machine;
//! 2. gateway: the same backlog pre-spooled on disk, drained by `firmware_bridge::gateway`
//!    (windowed publishing, confirmation, spool deletion) until it is empty.

use std::time::Instant;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use firmware_bridge::gateway::{self, Config};
use firmware_bridge::spool::Spool;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::ingest::{self, Pipeline};
use crate::config::{MqttBroker, Settings};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
    /// Broker to measure (default: an embedded broker started for the bench).
    #[arg(long, value_name = "URL")]
    mqtt_url: Option<String>,
    /// Database to write to (default: a fresh SQLite file). Use a scratch database.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Loggers behind the gateway.
    #[arg(long, default_value_t = 4)]
    loggers: usize,
    /// Readings per logger in the backlog (10,080 = a week at one a minute).
    #[arg(long, default_value_t = 10_080)]
    readings: usize,
}

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.loggers == 0 || args.readings == 0 {
        bail!("--loggers and --readings must be at least 1");
    }
    let (settings, db, tmp) = ingest::setup(base, args.database_url.as_deref(), args.mqtt_url.as_deref()).await?;
    let run_id = settings.mqtt_client_id.trim_start_matches("vfc-bench-").to_string();
    let n = args.loggers * args.readings;
    let batch = gateway::DEFAULT_BATCH;
    let progress = |what: &str| {
        if !args.json {
            eprintln!("… {what}");
        }
    };
    let pipeline = Pipeline::start(db.clone(), settings.clone()).await?;

    progress(&format!("baseline: {n} readings published in batches of {batch}"));
    let direct = ingest::Args {
        json: true,
        mqtt_url: None,
        database_url: None,
        loggers: args.loggers,
        readings: args.readings,
        batch,
        rate: 1,
        latency_secs: 1,
    };
    let baseline = ingest::pipeline_rate(&pipeline, &settings, &run_id, "d", &direct, batch).await?;
    progress(&format!("  {baseline:.0} readings/s"));

    progress(&format!("gateway: spooling {n} readings, then draining them"));
    let spool_dir = tmp.join(format!("spool-{run_id}"));
    let spooled_in = {
        let started = Instant::now();
        let mut spool = Spool::open(&spool_dir, u64::MAX)?;
        for i in 0..args.loggers {
            let serial = format!("bench-{run_id}-g-{i}");
            let rows: Vec<(String, DateTime<Utc>, f64)> = (0..args.readings)
                .map(|j| {
                    let ts = DateTime::parse_from_rfc3339(&ingest::reading_ts(j))
                        .expect("RFC 3339")
                        .to_utc();
                    (serial.clone(), ts, 4.5)
                })
                .collect();
            for chunk in rows.chunks(2_000) {
                spool.take(chunk, None)?;
            }
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    let broker = match &settings.mqtt {
        MqttBroker::Embedded => {
            firmware_bridge::broker::MqttUrl::parse(&format!("mqtt://{}", settings.mqtt_embedded_addr))
                .map_err(anyhow::Error::msg)?
        }
        MqttBroker::External(u) => u.clone(),
    };
    let gateway_id = format!("gw-bench-{run_id}");
    super::registered_gateway(&db, "099998", &gateway_id).await?;
    let mut cfg = Config::new(broker, gateway_id, spool_dir.clone());
    cfg.exit_when_drained = true;
    cfg.ca_file = settings.mqtt_ca_file.clone();
    let started = Instant::now();
    gateway::run(cfg, vec![], CancellationToken::new()).await?;
    let drained = n as f64 / started.elapsed().as_secs_f64();
    progress(&format!("  {drained:.0} readings/s"));

    pipeline.stop().await;
    ingest::forget_session(&settings).await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        let _ = std::fs::remove_dir_all(&spool_dir);
    }
    let report = json!({
        "database": db.dialect().as_str(),
        "readings": n,
        "loggers": args.loggers,
        "baseline_batched_per_s": baseline.round(),
        "gateway_drain_per_s": drained.round(),
        "drain_vs_baseline": (drained / baseline * 100.0).round() / 100.0,
        "spool_take_per_s": spooled_in.round(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "database {}, {n} readings from {} loggers",
            db.dialect().as_str(),
            args.loggers
        );
        println!("published in batches of {batch}, no confirmation   {baseline:>10.0} readings/s   (baseline)");
        println!(
            "gateway backlog drained, confirmed end to end  {drained:>10.0} readings/s   {:.2} × baseline",
            drained / baseline
        );
        println!("spooled (fsync per 2,000 readings)            {spooled_in:>10.0} readings/s");
    }
    Ok(())
}
