//! `vfc bench orders`: a program of `--locations` suffix locations × 30 products with two years
//! of ledger (quarterly receipts, monthly doses), and the state's review queue of `--queue`
//! submitted orders. Measured through the real router on loopback, one request at a time:
//! a location's prerequisites plus its suggestion (what a clinic's order page asks), the queue
//! (500 orders with lines and stored prerequisite statuses), and a bare token-authenticated
//! `GET /api/v1/me` as the baseline from the same run. Readings, counts and dose reports are
//! written only for the locations whose prerequisites are measured: the checks read nothing of
//! the others.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Datelike;
use clap::Args as ClapArgs;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::accounts::{tokens, Caller, Role, Scope};
use crate::config::Settings;
use crate::domain::{Funding, UnitKind};
use crate::inventory::catalog::{self, NewProduct};
use crate::inventory::history::{self, LotHistory, Past};
use crate::registry::units::{self, NewUnit};
use crate::store::{now_millis, Db};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
    /// Database (default: a fresh SQLite file in a temporary folder; use a scratch database).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Suffix locations in the program.
    #[arg(long, default_value_t = 2000)]
    locations: usize,
    /// Submitted orders in the state's queue.
    #[arg(long, default_value_t = 500)]
    queue: usize,
    /// Requests timed per figure.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

const DAY: i64 = 86_400_000;
/// Locations whose prerequisites are measured (their readings, counts and reports are written).
const MEASURED: usize = 20;
/// Vaccines (CVX) the bench's extra products are made of: 30 products in all with the shipped 9.
const EXTRA_CVX: [&str; 21] = [
    "20", "106", "10", "94", "08", "83", "48", "49", "215", "216", "119", "165", "114", "136", "203", "150", "140",
    "306", "307", "146", "21",
];
const MVX: [&str; 4] = ["PMC", "SKB", "PFR", "SEQ"];

fn err(e: crate::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Two years of one lot: a receipt each quarter of three months' use, and each month's doses.
fn two_years(ndc: &str, lot: &str, funding: Funding, monthly: i64, now: i64) -> LotHistory {
    let start = now - 730 * DAY;
    let mut events = Vec::new();
    for q in 0..8 {
        events.push(Past {
            kind: "receipt",
            doses: monthly * 3 + 10,
            occurred_at: start + q * 91 * DAY,
        });
    }
    for m in 0..24 {
        events.push(Past {
            kind: "administration",
            doses: -monthly,
            occurred_at: start + m * 30 * DAY + 5 * DAY,
        });
    }
    LotHistory {
        ndc: ndc.to_string(),
        lot: lot.to_string(),
        funding,
        expires_on: chrono::NaiveDate::from_ymd_opt(2099, 12, 31).expect("a date"),
        events,
    }
}

async fn seed(db: &Db, args: &Args, caller: &Caller) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    for (i, cvx) in EXTRA_CVX.iter().enumerate() {
        let p = NewProduct {
            ndc: format!("90{:03}-{:04}-10", i + 1, i + 1),
            name: format!("Bench vaccine {}", i + 1),
            cvx: cvx.to_string(),
            mvx: Some(MVX[i % MVX.len()].to_string()),
            doses_per_package: Some(10),
            use_ndcs: Vec::new(),
        };
        catalog::add(db, caller, &p).await.map_err(err)?;
    }
    let products: Vec<String> = catalog::list(db)
        .await
        .map_err(err)?
        .into_iter()
        .map(|p| p.ndc)
        .collect();
    if products.len() < 30 {
        bail!("the catalog has {} products; the bench needs 30", products.len());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let now = now_millis();
    let mut codes = Vec::with_capacity(args.locations);
    for i in 0..args.locations {
        let pin = format!("{:06}", 300_000 + i);
        let place = super::clinic(db, &pin).await?;
        let unit = units::create(
            db,
            caller,
            &place.code,
            &NewUnit {
                name: "Refrigerator".into(),
                kind: UnitKind::Refrigerator,
                range: None,
            },
        )
        .await
        .map_err(err)?;
        let mut lots: Vec<LotHistory> = products
            .iter()
            .take(30)
            .enumerate()
            .map(|(j, ndc)| two_years(ndc, &format!("H{j}"), Funding::Vfc, rng.random_range(2..40), now))
            .collect();
        for (j, ndc) in products.iter().take(3).enumerate() {
            lots.push(two_years(
                ndc,
                &format!("S{j}"),
                Funding::State,
                rng.random_range(1..10),
                now,
            ));
        }
        let mut tx = db.begin().await?;
        history::write(&mut tx, &place.code, unit.id, &lots, "bench")
            .await
            .map_err(err)?;
        tx.commit().await?;
        codes.push(place.code);
    }
    // The measured locations: a calibrated logger with 32 days of hourly readings, every lot
    // counted, and "no doses since" reported.
    let step = (args.locations / MEASURED).max(1);
    let measured: Vec<String> = codes.iter().step_by(step).take(MEASURED).cloned().collect();
    for (k, code) in measured.iter().enumerate() {
        let unit = units::list(db, &Scope::Program, code).await.map_err(err)?[0].id;
        let serial = format!("BENCH-{k}");
        let body = crate::registry::assignments::AssignLogger {
            serial: serial.clone(),
            make: None,
            model: None,
            reading_interval_s: Some(3600),
            calibrated_on: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
            calibration_expires_on: chrono::NaiveDate::from_ymd_opt(2099, 1, 1),
            role: None,
            from: Some(crate::store::from_millis(now - 40 * DAY)),
        };
        crate::registry::assignments::assign(db, caller, unit, &body, &crate::coldchain::changes::PrimaryLoggers)
            .await
            .map_err(err)?;
        let readings: Vec<crate::readings::NewReading> = (0..32 * 24)
            .map(|h| crate::readings::NewReading {
                serial: serial.clone(),
                ts: now - 32 * DAY + h * 3_600_000,
                temp_c: 4.5 + (h % 7) as f64 * 0.2,
                gateway: None,
            })
            .collect();
        let mut tx = db.begin().await?;
        crate::readings::insert(&mut tx, &readings, now).await?;
        tx.commit().await?;
        let stock = crate::inventory::stock::of_location(db, caller, code, None, false)
            .await
            .map_err(err)?;
        let counts = stock
            .iter()
            .map(|l| crate::inventory::reconcile::Count {
                unit_id: l.unit_id,
                lot_id: l.lot_id,
                counted: l.on_hand,
                reason: None,
            })
            .collect();
        let count = crate::inventory::reconcile::NewReconciliation {
            as_of: crate::store::rfc3339(now),
            counted_by: "Bench".into(),
            counts,
            note: None,
        };
        crate::inventory::reconcile::record(db, caller, code, &count)
            .await
            .map_err(err)?;
        let since = crate::store::from_millis(now - 20 * DAY).date_naive().to_string();
        crate::orders::waivers::report_no_doses(db, caller, code, &crate::orders::waivers::NoDoses { since })
            .await
            .map_err(err)?;
    }
    Ok((codes, measured))
}

/// `--queue` submitted orders of 5 lines each, at as many locations, with the prerequisites
/// switched off while they are submitted (then back as they were).
async fn queue(db: &Db, caller: &Caller, codes: &[String], n: usize) -> anyhow::Result<()> {
    let kept = super::prerequisites_off(db, caller).await?;
    let products = catalog::list(db).await.map_err(err)?;
    let step = (codes.len() / n.max(1)).max(1);
    for (k, code) in codes.iter().step_by(step).take(n).enumerate() {
        let lines = (0..5)
            .map(|j| crate::orders::life::LineIn {
                ndc: products[(k + j * 5) % 30].ndc.clone(),
                funding: "vfc".into(),
                doses: 10 * (j as i64 + 1),
            })
            .collect();
        let draft = crate::orders::life::Draft {
            set: None,
            lines,
            note: None,
        };
        let order = crate::orders::life::create(db, caller, code, &draft)
            .await
            .map_err(err)?;
        crate::orders::life::submit(db, caller, order.id, &Default::default())
            .await
            .map_err(err)?;
    }
    super::restore_prerequisites(db, caller, kept).await?;
    Ok(())
}

async fn time_get(http: &reqwest::Client, url: &str, secret: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let r = http.get(url).bearer_auth(secret).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    r.bytes().await?;
    Ok(started.elapsed())
}

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.samples == 0 || args.locations < MEASURED || args.queue > args.locations {
        bail!("--samples must be at least 1, --locations at least {MEASURED}, and --queue at most --locations");
    }
    let (settings, tmp) = super::scratch(base, "orders", args.database_url.as_deref());
    let db = crate::app::open_database(&settings.database).await?;
    let caller = super::state_caller();
    let started = Instant::now();
    let (codes, measured) = seed(&db, &args, &caller)
        .await
        .context("writing the program's two years")?;
    queue(&db, &caller, &codes, args.queue)
        .await
        .context("submitting the queue")?;
    let setup = started.elapsed();
    let secret = tokens::create(&db, "bench", Role::StateCoordinator, &Scope::Program)
        .await?
        .secret;
    let (base_url, server) = super::serve_in_process(&db, &settings).await?;
    let http = reqwest::Client::new();

    // One look at what is measured: every measured location is ready, the queue is full.
    for code in &measured {
        let r: serde_json::Value = http
            .get(format!("{base_url}/api/v1/locations/{code}/orders/prerequisites"))
            .bearer_auth(&secret)
            .send()
            .await?
            .json()
            .await?;
        if r["ready"] != true {
            bail!("{code} should be ready to order: {r}");
        }
    }
    let q: serde_json::Value = http
        .get(format!("{base_url}/api/v1/orders?status=in_review&limit=1000"))
        .bearer_auth(&secret)
        .send()
        .await?
        .json()
        .await?;
    let in_queue = q["orders"].as_array().map_or(0, Vec::len);
    if in_queue != args.queue {
        bail!("the queue holds {in_queue} orders, not {}", args.queue);
    }

    let mut baseline = Vec::with_capacity(args.samples);
    let mut suggest = Vec::with_capacity(args.samples);
    let mut queue_t = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        baseline.push(time_get(&http, &format!("{base_url}/api/v1/me"), &secret).await?);
        let code = &measured[i % measured.len()];
        let a = time_get(
            &http,
            &format!("{base_url}/api/v1/locations/{code}/orders/prerequisites"),
            &secret,
        )
        .await?;
        let b = time_get(
            &http,
            &format!("{base_url}/api/v1/locations/{code}/orders/suggestion?set=routine"),
            &secret,
        )
        .await?;
        suggest.push(a + b);
        if i % 4 == 0 {
            queue_t.push(
                time_get(
                    &http,
                    &format!("{base_url}/api/v1/orders?status=in_review&limit=1000"),
                    &secret,
                )
                .await?,
            );
        }
    }
    server.abort();
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let (b50, b99) = super::percentiles(baseline);
    let (s50, s99) = super::percentiles(suggest);
    let (q50, q99) = super::percentiles(queue_t);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let today = chrono::Utc::now().date_naive();
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "orders", "database": db.dialect().as_str(), "locations": args.locations, "products": 30,
                "orders_in_queue": in_queue, "samples": args.samples, "setup_s": round(setup.as_secs_f64()),
                "suggest_p50_ms": round(s50), "suggest_p99_ms": round(s99),
                "queue_p50_ms": round(q50), "queue_p99_ms": round(q99),
                "baseline_p50_ms": round(b50), "baseline_p99_ms": round(b99),
                "suggest_vs_baseline_p50": (s50 / b50 * 10.0).round() / 10.0,
                "on": format!("{}-{:02}-{:02}", today.year(), today.month(), today.day()),
            })
        );
    } else {
        println!(
            "orders, {} locations × 30 products, two years of ledger, {in_queue} orders in review, {} (setup {:.0} s):",
            args.locations,
            db.dialect().as_str(),
            setup.as_secs_f64()
        );
        println!("  GET /api/v1/me with a token (baseline)      p50 {b50:>7.1} ms, p99 {b99:>7.1} ms");
        println!("  prerequisites + suggestion of one location  p50 {s50:>7.1} ms, p99 {s99:>7.1} ms");
        println!("  the state's queue of {in_queue} orders            p50 {q50:>7.1} ms, p99 {q99:>7.1} ms");
    }
    Ok(())
}
