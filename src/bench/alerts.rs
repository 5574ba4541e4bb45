//! `vfc bench alerts`: from publishing the reading that meets a rule to a real SMTP server
//! (running inside the bench) accepting the alert email — the whole path: MQTT, ingest commit,
//! evaluation, outbox, sender. Each round puts every unit through one freezing reading (the
//! immediate "at or below 0.5 °C" rule) and back; latency is taken per alert.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use clap::Args as ClapArgs;
use firmware_bridge::wire;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::alerts::sender::Mailer;
use crate::alerts::{links, Links};
use crate::app::Background;
use crate::config::{DatabaseUrl, MqttBroker, Settings};
use crate::domain::UnitKind;
use crate::registry::{assignments, units};
use crate::store::Db;
use crate::telemetry::broker;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
    /// Database (default: a fresh SQLite file in a temporary folder; use a scratch database).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Storage units, each with its own logger.
    #[arg(long, default_value_t = 100)]
    units: usize,
    /// Rounds: every unit has one excursion per round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.units == 0 || args.rounds == 0 {
        bail!("--units and --rounds must be at least 1");
    }
    let tmp = std::env::temp_dir().join(format!("vfc-bench-alerts-{}", std::process::id()));
    let (smtp_port, mut inbox) = super::smtp_sink::start(0).await?;
    let mqtt_addr = broker::start("127.0.0.1:0".parse()?).await?;
    let settings = Settings {
        data_dir: tmp.clone(),
        database: match &args.database_url {
            Some(u) if u.starts_with("postgres") => DatabaseUrl::Postgres(u.clone()),
            Some(u) => DatabaseUrl::Sqlite(u.trim_start_matches("sqlite://").into()),
            None => DatabaseUrl::Sqlite(tmp.join("bench.db")),
        },
        mqtt: MqttBroker::Embedded,
        mqtt_embedded_addr: mqtt_addr,
        mqtt_client_id: format!("vfc-bench-alerts-{}", std::process::id()),
        mqtt_share_group: None,
        smtp_url: Some(url::Url::parse(&format!("smtp://127.0.0.1:{smtp_port}"))?),
        ..base
    };
    let db = crate::app::open_database(&settings.database).await?;
    let run = format!("{:06}", rand::random::<u32>() % 1_000_000);
    let serials = setup(&db, &run, args.units).await?;

    // The service's own tasks, in this process, wired as `vfc serve` wires them.
    let cancel = CancellationToken::new();
    let public_url = url::Url::parse("http://127.0.0.1/")?;
    let links = Links {
        public_url: public_url.clone(),
        key: links::key(&db).await?,
    };
    let mailer = Arc::new(Mailer::prepare(&settings, public_url).await?);
    mailer.open_folder().await?;
    let background = Background::start(&db, &settings, &links, mailer, None, &cancel);
    let health = background.health.clone();
    let started = Instant::now();
    while !health.is_subscribed() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the ingest did not subscribe within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut opts = MqttOptions::new(
        format!("bench-alerts-pub-{run}"),
        mqtt_addr.ip().to_string(),
        mqtt_addr.port(),
    );
    opts.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut eventloop) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    let mut latencies = Vec::with_capacity(args.units * args.rounds);
    let mut emails = 0usize;
    for round in 0..args.rounds {
        let mut sent: HashMap<usize, Instant> = HashMap::new();
        // The freezing readings, spread over about a second.
        for (i, serial) in serials.iter().enumerate() {
            let now = Utc::now();
            publish(&publisher, serial, now - chrono::Duration::milliseconds(2), 5.0).await?;
            sent.insert(i, Instant::now());
            publish(&publisher, serial, now, 0.2).await?;
            tokio::time::sleep(Duration::from_micros(1_000_000 / args.units as u64)).await;
        }
        while !sent.is_empty() {
            let (at, msg) = tokio::time::timeout(Duration::from_secs(60), inbox.recv())
                .await
                .with_context(|| format!("round {round}: {} alerts never arrived", sent.len()))?
                .context("the SMTP sink stopped")?;
            emails += 1;
            if !msg.contains("VFC temperature alert:") {
                continue;
            }
            // The subject names the unit: "… Bench unit 17 fridge out of range since …".
            let unit = msg
                .split("Bench unit ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok());
            let Some(unit) = unit else { continue };
            if let Some(t) = sent.remove(&unit) {
                latencies.push(at.duration_since(t).as_secs_f64() * 1000.0);
            }
        }
        // Back in range before the next round.
        for serial in &serials {
            publish(&publisher, serial, Utc::now(), 5.0).await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cancel.cancel();
    background.finish().await;
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }

    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let (p50, p99) = (pct(0.5), pct(0.99));
    let report = json!({
        "database": db.dialect().as_str(),
        "units": args.units,
        "excursions": latencies.len(),
        "emails": emails,
        "alert_p50_ms": (p50 * 10.0).round() / 10.0,
        "alert_p99_ms": (p99 * 10.0).round() / 10.0,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} excursions on {} units ({}), {} emails accepted by SMTP",
            latencies.len(),
            args.units,
            db.dialect().as_str(),
            emails
        );
        println!("reading published → alert accepted by SMTP: p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    Ok(())
}

async fn publish(client: &AsyncClient, serial: &str, ts: chrono::DateTime<Utc>, temp_c: f64) -> anyhow::Result<()> {
    let payload = json!({"ts": ts.to_rfc3339(), "temp_c": temp_c}).to_string();
    client
        .publish(wire::readings_topic(serial), QoS::AtLeastOnce, false, payload)
        .await?;
    Ok(())
}

/// A location (PIN 099 + run) with `n` refrigerators, each with its own logger.
async fn setup(db: &Db, run: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let caller = super::state_caller();
    let location = super::clinic(db, &format!("9{run}")).await?;
    let mut serials = Vec::with_capacity(n);
    for i in 0..n {
        let unit = units::create(
            db,
            &caller,
            &location.code,
            &units::NewUnit {
                name: format!("Bench unit {i} fridge"),
                kind: UnitKind::Refrigerator,
                range: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let serial = format!("bench-{run}-{i}");
        let body = serde_json::from_value(
            json!({"serial": serial, "from": "2020-01-01T00:00:00Z", "reading_interval_s": 300}),
        )?;
        assignments::assign(db, &caller, unit.id, &body, &crate::coldchain::changes::PrimaryLoggers)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        serials.push(serial);
    }
    Ok(serials)
}
