//! `vfc bench sign-in`: how long a person waits to sign in — `POST /api/v1/session` through the
//! real router on loopback: throttle check, Argon2id verify, session row, audit row, commit —
//! one request at a time, p50 and p99; with, from the same run, the bare Argon2id check of the
//! same password and a token-authenticated `GET /api/v1/me` as baselines.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use serde_json::json;

use crate::accounts::links::Purpose;
use crate::accounts::people::{self, GrantBody, NewAccount};
use crate::accounts::{credentials, password, tokens, Role, Scope};
use crate::config::Settings;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
    /// Database (default: a fresh SQLite file in a temporary folder; use a scratch database).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Sign-ins to time.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

const PASSWORD: &str = "copper lantern drifts north";

pub async fn run(base: Settings, args: Args) -> anyhow::Result<()> {
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let (settings, tmp) = super::scratch(base, "signin", args.database_url.as_deref());
    let db = crate::app::open_database(&settings.database).await?;
    // A person without a second factor (clinic staff): the sign-in is email and password.
    let email = format!("bench.{}@example.org", rand::random::<u32>());
    let new = NewAccount {
        email: email.clone(),
        name: "Bench Person".into(),
        grants: vec![GrantBody {
            role: "clinic-staff".into(),
            pin: None,
            location: Some("099997A".into()),
        }],
    };
    let public = url::Url::parse("http://127.0.0.1/")?;
    let (_, link) = people::create(&db, None, &public, &new).await?;
    let token = link.rsplit('/').next().context("an invitation link")?;
    credentials::set_from_link(&db, Purpose::Invite, token, PASSWORD, "bench".into()).await?;
    let secret = tokens::create(&db, "bench", Role::StateCoordinator, &Scope::Program)
        .await?
        .secret;
    let (base_url, server) = super::serve_in_process(&db, &settings).await?;
    let http = reqwest::Client::new();

    let hash = password::hash(&password::normalise(PASSWORD));
    let mut argon = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let (h, started) = (hash.clone(), Instant::now());
        if !password::blocking(move || password::verify(PASSWORD, &h)).await {
            bail!("the bare check did not match");
        }
        argon.push(started.elapsed());
    }
    let mut me = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let started = Instant::now();
        let r = http
            .get(format!("{base_url}/api/v1/me"))
            .bearer_auth(&secret)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET /api/v1/me: {}", r.status());
        }
        r.bytes().await?;
        me.push(started.elapsed());
    }
    let mut sign_in = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let started = Instant::now();
        let r = http
            .post(format!("{base_url}/api/v1/session"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("sign-in: {}: {}", r.status(), r.text().await.unwrap_or_default());
        }
        r.bytes().await?;
        sign_in.push(started.elapsed());
    }
    server.abort();
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let (a50, a99) = super::percentiles(argon);
    let (m50, m99) = super::percentiles(me);
    let (s50, s99) = super::percentiles(sign_in);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "sign-in", "database": db.dialect().as_str(), "samples": args.samples,
                "sign_in_p50_ms": round(s50), "sign_in_p99_ms": round(s99),
                "argon2_p50_ms": round(a50), "argon2_p99_ms": round(a99),
                "token_request_p50_ms": round(m50), "token_request_p99_ms": round(m99),
                "sign_in_vs_argon2_p50": (s50 / a50 * 100.0).round() / 100.0,
            })
        );
    } else {
        println!(
            "sign-in, {} samples one at a time, {}:",
            args.samples,
            db.dialect().as_str()
        );
        println!("  Argon2id check alone (baseline)        p50 {a50:>7.1} ms, p99 {a99:>7.1} ms");
        println!("  GET /api/v1/me with a token (baseline) p50 {m50:>7.1} ms, p99 {m99:>7.1} ms");
        println!(
            "  POST /api/v1/session                   p50 {s50:>7.1} ms, p99 {s99:>7.1} ms  ({:.2}× the Argon2id check)",
            s50 / a50
        );
    }
    Ok(())
}
