//! `vfc bench pages`: the two pages that carry the most data, through the real router on
//! loopback, one request at a time, each beside its baseline from the same run.
//!
//! - A unit with 30 days of 1-minute readings (43,200 points): its page with the 30-day chart
//!   (`/units/{id}?window=30d`) against the JSON readings API for the same window
//!   (`/api/v1/units/{id}/readings`, one page of them all). The chart draws buckets, not points,
//!   so the page should be no slower than the JSON.
//! - The state home (`/`) in a program of `--locations` locations, every one with a stored order
//!   status, and `--open` open items: open excursions (made by the evaluator from real
//!   readings), orders in review and locations whose prerequisites fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use serde_json::json;

use crate::accounts::{tokens, Caller, Role, Scope};
use crate::config::Settings;
use crate::domain::UnitKind;
use crate::orders::readiness::{self, Check, Readiness};
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
    /// Locations in the program.
    #[arg(long, default_value_t = 40_000)]
    locations: usize,
    /// Open items on the state home: half open excursions, a quarter orders in review, a
    /// quarter locations whose prerequisites fail.
    #[arg(long, default_value_t = 2000)]
    open: usize,
    /// Requests timed per figure.
    #[arg(long, default_value_t = 100)]
    samples: usize,
}

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn err(e: crate::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// A refrigerator at `code` watched by logger `serial` (1-minute readings) since `from`.
async fn watched_unit(db: &Db, caller: &Caller, code: &str, serial: &str, from: i64) -> anyhow::Result<i64> {
    let unit = units::create(
        db,
        caller,
        code,
        &NewUnit {
            name: "Refrigerator".into(),
            kind: UnitKind::Refrigerator,
            range: None,
        },
    )
    .await
    .map_err(err)?;
    let body = crate::registry::assignments::AssignLogger {
        serial: serial.to_string(),
        make: None,
        model: None,
        reading_interval_s: Some(60),
        calibrated_on: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
        calibration_expires_on: chrono::NaiveDate::from_ymd_opt(2099, 1, 1),
        role: None,
        from: Some(crate::store::from_millis(from)),
    };
    crate::registry::assignments::assign(db, caller, unit.id, &body, &crate::coldchain::changes::PrimaryLoggers)
        .await
        .map_err(err)?;
    Ok(unit.id)
}

/// The program: locations, each with a stored order status (a quarter of `open` failing),
/// half of `open` open excursions judged by the evaluator, a quarter orders in review.
async fn program(db: &Db, args: &Args, caller: &Caller) -> anyhow::Result<Vec<String>> {
    let mut codes = Vec::with_capacity(args.locations);
    for i in 0..args.locations {
        codes.push(super::clinic(db, &format!("{:06}", 400_000 + i)).await?.code);
    }
    let not_ready = args.open / 4;
    let mut tx = db.begin().await?;
    for (i, code) in codes.iter().enumerate() {
        let failing = i < not_ready;
        let r = Readiness {
            ready: !failing,
            checks: vec![Check {
                check: "reconciliation".into(),
                ok: !failing,
                detail: if failing {
                    "no count in the last 30 days".into()
                } else {
                    "counted 3 days ago".into()
                },
                since: None,
                waiver: None,
            }],
            computed_at: crate::store::rfc3339(now_millis()),
        };
        readiness::store(&mut tx, code, &r).await.map_err(err)?;
    }
    tx.commit().await?;

    // Open excursions, from readings: in range a minute ago, freezing now.
    let now = now_millis();
    let excursions = args.open / 2;
    let mut readings = Vec::with_capacity(excursions * 2);
    for (k, code) in codes.iter().skip(not_ready).take(excursions).enumerate() {
        let serial = format!("PG-{k}");
        watched_unit(db, caller, code, &serial, now - DAY).await?;
        for (ago, temp_c) in [(2, 4.8), (1, 0.2)] {
            readings.push(crate::readings::NewReading {
                serial: serial.clone(),
                ts: now - ago * MIN,
                temp_c,
                gateway: None,
            });
        }
    }
    let marks: Vec<(String, i64)> = readings.iter().map(|r| (r.serial.clone(), r.ts)).collect();
    let mut tx = db.begin().await?;
    crate::readings::insert(&mut tx, &readings, now).await?;
    crate::readings::dirty::mark(&mut tx, marks.iter().map(|(s, t)| (s.as_str(), *t))).await?;
    tx.commit().await?;
    let evaluator = crate::coldchain::evaluate::Evaluator {
        db: db.clone(),
        links: crate::alerts::Links {
            public_url: url::Url::parse("http://127.0.0.1/")?,
            key: crate::alerts::links::key(db).await?,
        },
        stock: Arc::new(crate::inventory::holds::ExcursionHolds),
        program: crate::coldchain::settings::InForce::default(),
    };
    loop {
        let pass = evaluator.pass(now_millis()).await?;
        if pass.judged == 0 && !pass.more {
            break;
        }
    }

    // Orders in review, submitted with the prerequisites off (then back as they were).
    let kept = super::prerequisites_off(db, caller).await?;
    let product = crate::inventory::catalog::list(db).await.map_err(err)?[0].ndc.clone();
    for code in codes.iter().skip(not_ready + excursions).take(args.open / 4) {
        let draft = crate::orders::life::Draft {
            set: None,
            lines: vec![crate::orders::life::LineIn {
                ndc: product.clone(),
                funding: "vfc".into(),
                doses: 20,
            }],
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
    Ok(codes)
}

async fn time_get(http: &reqwest::Client, url: &str, secret: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let r = http.get(url).bearer_auth(secret).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    let n = r.bytes().await?.len();
    Ok((started.elapsed(), n))
}

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.samples == 0 || args.open < 4 || args.open / 2 + args.open / 2 > args.locations {
        bail!("--samples must be at least 1, --open at least 4 and at most --locations");
    }
    let (settings, tmp) = super::scratch(base, "pages", args.database_url.as_deref());
    let db = crate::app::open_database(&settings.database).await?;
    let caller = super::state_caller();
    let started = Instant::now();
    let codes = program(&db, &args, &caller).await.context("writing the program")?;
    // The unit of the chart: 30 days of 1-minute readings, a warm hour in the middle.
    let now = now_millis();
    let from = now - 30 * DAY;
    let unit = watched_unit(&db, &caller, &codes[codes.len() - 1], "PG-CHART", from - DAY).await?;
    let points = 30 * 24 * 60;
    for chunk in (0..points).collect::<Vec<i64>>().chunks(5000) {
        let readings: Vec<crate::readings::NewReading> = chunk
            .iter()
            .map(|m| crate::readings::NewReading {
                serial: "PG-CHART".into(),
                ts: from + m * MIN,
                temp_c: if (21_600..21_660).contains(m) {
                    9.1
                } else {
                    4.5 + (m % 13) as f64 * 0.1
                },
                gateway: None,
            })
            .collect();
        let mut tx = db.begin().await?;
        crate::readings::insert(&mut tx, &readings, now).await?;
        tx.commit().await?;
    }
    let setup = started.elapsed();
    let secret = tokens::create(&db, "bench", Role::StateCoordinator, &Scope::Program)
        .await?
        .secret;
    let (base_url, server) = super::serve_in_process(&db, &settings).await?;
    let http = reqwest::Client::new();

    // One look at what is measured: the items are on the home, the readings all in the window.
    let (_, home_bytes) = time_get(&http, &format!("{base_url}/"), &secret).await?;
    let home = http
        .get(format!("{base_url}/?list=excursions"))
        .bearer_auth(&secret)
        .send()
        .await?
        .text()
        .await?;
    let excursions_shown = home.matches("not acknowledged").count();
    if excursions_shown == 0 {
        bail!("the state home lists no open excursion");
    }
    let window = format!(
        "from={}&to={}",
        crate::store::rfc3339(from).replace(':', "%3A"),
        crate::store::rfc3339(now).replace(':', "%3A")
    );
    let api = format!("{base_url}/api/v1/units/{unit}/readings?{window}&limit=100000");
    let listed: serde_json::Value = http.get(&api).bearer_auth(&secret).send().await?.json().await?;
    let n = listed["readings"].as_array().map_or(0, Vec::len);
    if n as i64 != points {
        bail!("the readings API gave {n} readings of the window, not {points}");
    }

    let page = format!("{base_url}/units/{unit}?window=30d");
    let mut unit_t = Vec::with_capacity(args.samples);
    let mut api_t = Vec::with_capacity(args.samples);
    let mut home_t = Vec::with_capacity(args.samples);
    let (mut page_bytes, mut api_bytes) = (0, 0);
    for _ in 0..args.samples {
        let (t, b) = time_get(&http, &page, &secret).await?;
        unit_t.push(t);
        page_bytes = b;
        let (t, b) = time_get(&http, &api, &secret).await?;
        api_t.push(t);
        api_bytes = b;
        home_t.push(time_get(&http, &format!("{base_url}/"), &secret).await?.0);
    }
    server.abort();
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let (u50, u99) = super::percentiles(unit_t);
    let (a50, a99) = super::percentiles(api_t);
    let (h50, h99) = super::percentiles(home_t);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "pages", "database": db.dialect().as_str(), "locations": args.locations,
                "open_items": args.open, "points": points, "samples": args.samples,
                "setup_s": round(setup.as_secs_f64()),
                "unit_page_p50_ms": round(u50), "unit_page_p99_ms": round(u99),
                "readings_api_p50_ms": round(a50), "readings_api_p99_ms": round(a99),
                "unit_page_vs_api_p50": (u50 / a50 * 100.0).round() / 100.0,
                "state_home_p50_ms": round(h50), "state_home_p99_ms": round(h99),
                "unit_page_bytes": page_bytes, "readings_api_bytes": api_bytes, "state_home_bytes": home_bytes,
            })
        );
    } else {
        println!(
            "pages, {} locations, {} open items, a unit with {points} readings, {} (setup {:.0} s):",
            args.locations,
            args.open,
            db.dialect().as_str(),
            setup.as_secs_f64()
        );
        println!("  the readings API, 30 days ({api_bytes} bytes)   p50 {a50:>7.1} ms, p99 {a99:>7.1} ms");
        println!("  the unit page, 30-day chart ({page_bytes} bytes) p50 {u50:>7.1} ms, p99 {u99:>7.1} ms");
        println!("  the state home ({home_bytes} bytes)            p50 {h50:>7.1} ms, p99 {h99:>7.1} ms");
    }
    Ok(())
}
