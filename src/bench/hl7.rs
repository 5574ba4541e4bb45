//! `vfc bench hl7`: VXU messages per second through `POST /api/v1/hl7` — parse, match,
//! decrement, durable commit, ACK — from concurrent clients, against the real router served on
//! loopback; and, in the same run and the same server, the rate of a bare authenticated request
//! (`GET /api/v1/locations/{code}`) as the baseline.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use serde_json::json;

use crate::accounts::{tokens, Role, Scope};
use crate::config::{DatabaseUrl, Settings};
use crate::domain::Funding;
use crate::domain::UnitKind;
use crate::inventory::movements::{self, Receipt, ReceiptLine};
use crate::registry::units;
use crate::store::Db;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
    /// Database (default: a fresh SQLite file in a temporary folder; use a scratch database).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

fn vxu(code: &str, n: u64, client: usize) -> String {
    format!(
        "MSH|^~\\&|BENCHEHR|{code}|VFCMON|MDIIS|20260101093000-0500||VXU^V04^VXU_V04|B{client}-{n}|P|2.5.1|||ER|AL|||||Z22^CDCPHINVS\r\
PID|1||MRN{client}-{n}^^^BENCHEHR^MR||Doe^Avery||20241105|F\r\
ORC|RE||ORD-{client}-{n}^BENCHEHR\r\
RXA|0|1|20260101||116^Rotavirus, pentavalent^CVX|2|mL^mL^UCUM||00^New Record^NIP001||^^^{code}||||BENCHLOT1|20991231|MSD^Merck^MVX|||CP|A\r\
OBX|1|CE|30963-3^Vaccine Funding Source^LN|1|VXC50^Public^CDCPHINVS||||||F\r\
OBX|2|CE|64994-7^Vaccine Funding Program Eligibility^LN|2|V02^Medicaid^HL70064||||||F\r"
    )
}

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.clients == 0 || args.seconds == 0 {
        bail!("--clients and --seconds must be at least 1");
    }
    let (settings, tmp) = super::scratch(base, "hl7", args.database_url.as_deref());
    let db = crate::app::open_database(&settings.database).await?;
    let (code, token) = setup(&db).await?;

    let (base_url, server) = super::serve_in_process(&db, &settings).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let window = Duration::from_secs(args.seconds);

    // Baseline: a bare authenticated request to the same server.
    let location_url = format!("{base_url}/api/v1/locations/{code}");
    let (h, t) = (http.clone(), token.clone());
    let (baseline, _) = drive(args.clients, window, move |_, _| {
        let (http, url, token) = (h.clone(), location_url.clone(), t.clone());
        async move {
            let r = http.get(&url).bearer_auth(&token).send().await?;
            if !r.status().is_success() {
                bail!("baseline request failed: {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;

    let hl7_url = format!("{base_url}/api/v1/hl7");
    let (h, t, c) = (http.clone(), token.clone(), code.clone());
    let (hl7_rate, mut latencies) = drive(args.clients, window, move |client, n| {
        let (http, url, token, body) = (h.clone(), hl7_url.clone(), t.clone(), vxu(&c, n, client));
        async move {
            let ack = http
                .post(&url)
                .bearer_auth(&token)
                .body(body)
                .send()
                .await?
                .text()
                .await?;
            if !ack.contains("MSA|AA|") {
                bail!("a message was not accepted:\n{}", ack.replace('\r', "\n"));
            }
            Ok(())
        }
    })
    .await?;
    server.abort();
    use std::sync::atomic::Ordering::Relaxed;
    let per_commit = crate::hl7::intake::COMMITTED_MESSAGES.load(Relaxed) as f64
        / crate::hl7::intake::COMMITS.load(Relaxed).max(1) as f64;
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    let (p50, p99) = (pct(0.5), pct(0.99));
    let decremented = crate::inventory::doses::decremented_at(&db, &code).await?;
    if decremented as usize != latencies.len() {
        bail!(
            "{} messages were accepted but {decremented} doses decremented",
            latencies.len()
        );
    }
    if let DatabaseUrl::Sqlite(_) = settings.database {
        if args.database_url.is_none() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let ratio = hl7_rate / baseline;
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "hl7", "database": db.dialect().as_str(), "clients": args.clients, "seconds": args.seconds,
                "baseline_req_per_s": baseline.round(), "hl7_msgs_per_s": hl7_rate.round(),
                "ratio": (ratio * 1000.0).round() / 1000.0, "p50_ms": p50, "p99_ms": p99,
                "messages": latencies.len(), "messages_per_commit": (per_commit * 10.0).round() / 10.0,
            })
        );
    } else {
        println!(
            "HL7 VXU through POST /api/v1/hl7, {} clients, {} s each, {}:",
            args.clients,
            args.seconds,
            db.dialect().as_str()
        );
        println!("  baseline GET /api/v1/locations/{{code}}   {baseline:>10.0} req/s");
        println!("  VXU parse, match, decrement, commit, ACK {hl7_rate:>10.0} msgs/s  ({ratio:.2}× baseline)");
        println!("  latency per message                      p50 {p50:.1} ms, p99 {p99:.1} ms");
        println!("  messages per commit                      {per_commit:.1}");
        println!("  {} messages, {decremented} doses decremented", latencies.len());
    }
    Ok(())
}

/// Runs `clients` loops of `op` for `window`; the rate per second and each call's latency.
async fn drive<F, Fut>(clients: usize, window: Duration, op: F) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < window {
                let t = Instant::now();
                op(c, n).await?;
                lat.push(t.elapsed());
                n += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("a bench client panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((all.len() as f64 / secs, all))
}

async fn setup(db: &Db) -> anyhow::Result<(String, String)> {
    let caller = super::state_caller();
    let pin = format!("8{:05}", rand::random::<u32>() % 100_000);
    let location = super::clinic(db, &pin).await?;
    let unit = units::create(
        db,
        &caller,
        &location.code,
        &units::NewUnit {
            name: "Bench refrigerator".into(),
            kind: UnitKind::Refrigerator,
            range: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    movements::receive(
        db,
        &caller,
        &location.code,
        &Receipt {
            unit_id: unit.id,
            received_at: None,
            reference: None,
            lines: vec![ReceiptLine {
                ndc: "00006-4047-41".into(),
                lot: "BENCHLOT1".into(),
                expires_on: "2099-12-31".into(),
                funding: Funding::Vfc,
                doses: crate::domain::Doses::MAX,
            }],
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = tokens::create(db, "bench EHR", Role::Clinic, &Scope::Pin(pin)).await?;
    Ok((location.code, token.secret))
}
