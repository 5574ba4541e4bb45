//! `vfc demo`: the whole product in one command (docs/architecture.md, "Defaults that need nothing
//! installed"). The service on the embedded defaults in a fresh data directory, a sample clinic
//! made through the API, and simulated loggers sent through a real gateway (spool, MQTT,
//! confirmation) to the service's own broker. The simulation replays the last hours fast, with a
//! compressor failure in them, so an excursion opens and its alert email is written within
//! about a minute.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use firmware_bridge::broker::MqttUrl;
use firmware_bridge::gateway::{self, Config};
use firmware_bridge::simulate::{self, LoggerSpec, Plan, Scenario, ScenarioKind, UnitKind};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::accounts::{tokens, Role, Scope};
use crate::config::{MqttBroker, Settings, SettingsArgs};

mod people;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Seconds the replayed past hours take; the compressor failure alarms at about 90% of it.
    #[arg(long, default_value_t = 45.0, value_name = "SECONDS")]
    pub timeline: f64,
}

/// Marks a data directory as the demo's own, so a later demo may start it afresh.
const MARKER: &str = ".vfc-demo";
const PIN: &str = "012345";
/// Hours replayed; the failure starts two hours before now.
const REPLAY_H: i64 = 6;
const FAILING: &str = "DEMO-012345A-FRIDGE";
const GATEWAY: &str = "gw-012345-demo";

pub async fn run(mut args: SettingsArgs, demo: DemoArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("./vfc-demo"));
    fresh(&dir)?;
    args.data_dir = Some(dir.clone());
    // The usual ports may be taken (another service, a broker on 1883): the demo then lets the
    // service pick free ones (port 0), unless they were set on purpose.
    if args.http_addr.is_none() && !free("127.0.0.1:8080") {
        args.http_addr = Some("127.0.0.1:0".into());
    }
    let embedded = args.mqtt_url.as_deref().is_none_or(|u| u == "embedded");
    if embedded && args.mqtt_embedded_addr.is_none() && !free("127.0.0.1:1883") {
        args.mqtt_embedded_addr = Some("127.0.0.1:0".into());
    }
    let settings = Settings::load(&args)?;
    let db = crate::app::open_database(&settings.database).await?;
    let token = tokens::create(&db, "demo state coordinator", Role::StateCoordinator, &Scope::Program).await?;

    let cancel = CancellationToken::new();
    tokio::spawn(crate::app::stop_on_signal(cancel.clone()));
    let mut service = tokio::spawn(crate::app::serve_until(settings.clone(), cancel.clone()));
    let ports = bound_ports(&dir, &mut service).await?;
    let base = format!("http://{}", ports.http);
    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: token.secret.clone(),
    };
    wait_healthy(&api.http, &base, &mut service).await?;
    let units = api.clinic().await?;
    let orders = api.orders().await?;
    let mut sign_ins = Vec::new();
    for who in &people::PEOPLE {
        sign_ins.push(people::sign_up(&api.http, &api.base, &db, who).await?);
    }

    // The gateway talks to the service's own broker.
    let broker = match (&settings.mqtt, ports.mqtt) {
        (MqttBroker::Embedded, Some(addr)) => MqttUrl::parse(&format!("mqtt://{addr}")).map_err(anyhow::Error::msg)?,
        (MqttBroker::Embedded, None) => bail!("the service did not say where its embedded broker listens"),
        (MqttBroker::External(url), _) => url.clone(),
    };
    let broker_shown = format!("mqtt://{}:{}", broker.host, broker.port);
    let mut cfg = Config::new(broker, GATEWAY.into(), dir.join("gateway-spool"));
    cfg.ca_file = settings.mqtt_ca_file.clone();
    cfg.resend_after = Duration::from_secs(5);
    cfg.status_every = Duration::from_secs(60);
    let replay = chrono::Duration::hours(REPLAY_H);
    let plan = Plan {
        loggers: units
            .iter()
            .map(|(_, serial)| LoggerSpec {
                serial: serial.clone(),
                kind: if serial.ends_with("FRIDGE") {
                    UnitKind::Refrigerator
                } else {
                    UnitKind::Freezer
                },
            })
            .collect(),
        interval: chrono::Duration::minutes(5),
        replay,
        speed: (replay.num_seconds() as f64 / demo.timeline.max(1.0)).max(1.0),
        scenarios: vec![Scenario {
            kind: ScenarioKind::CompressorFailure,
            after: replay - chrono::Duration::hours(2),
            lasting: None,
            serial: Some(FAILING.into()),
        }],
        live: true,
        seed: 2026,
    };
    let source = simulate::source(plan);
    let mut gateway = tokio::spawn(gateway::run(cfg, vec![source], cancel.clone()));

    let outbox = settings.data_dir.join("outbox");
    println!(
        "\nvfc demo is running. Ctrl-C stops it.\n\n\
         \x20 API                {base}   (OpenAPI: {base}/api/openapi.json)\n\
         \x20 MQTT broker        {broker_shown}   (the gateway's readings: vfc/gateways/+/loggers/+/readings)\n\
         \x20 state-coordinator token (Authorization: Bearer …):\n\
         \x20   {}\n\
         \x20 alert emails       {}\n\
         \x20 data directory     {}\n\n\
         Sign in at {base}/login as\n\
         {}\n\
         Each asks for a code from an authenticator app holding its key (or: oathtool --totp -b KEY).\n\n\
         Sample clinic: PIN {PIN}, locations {PIN}A and {PIN}B, a refrigerator and a freezer each.\n\
         Four simulated loggers send through a gateway (spool, MQTT, confirmation) to the service's\n\
         broker: the last {REPLAY_H} hours replay in about {:.0} s, then they go on live. {PIN}A's\n\
         refrigerator compressor failed two hours ago. Once their history is in, the loggers are\n\
         assigned to their units and that history is judged: the excursion opens, late, and alarms.\n\
         Orders: {orders}.\n\
         Try: curl -H \"Authorization: Bearer {}\" {base}/api/v1/excursions\n\
         \x20    curl -H \"Authorization: Bearer {}\" \"{base}/api/v1/orders?status=in_review\"\n",
        token.secret,
        outbox.display(),
        dir.display(),
        sign_ins.join("\n"),
        demo.timeline,
        token.secret,
        token.secret
    );

    // The history first (as a logger plugged in before it was registered), then the assignment
    // with a "from" before it: the unit's record, judged like any reading.
    let serials: Vec<&str> = units.iter().map(|(_, s)| s.as_str()).collect();
    let limit = Duration::from_secs_f64(demo.timeline.max(1.0) + 60.0);
    let assigned = async {
        api.caught_up(&serials, limit).await?;
        let from = (chrono::Utc::now() - replay - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for (unit, serial) in &units {
            api.call(
                reqwest::Method::PUT,
                &format!("/api/v1/units/{unit}/logger"),
                Some(json!({"serial": serial, "reading_interval_s": 300, "from": from})),
            )
            .await?;
        }
        println!("The loggers' history is in; each is now assigned to its unit from {from}.");
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = assigned => r?,
        _ = cancel.cancelled() => {}
    }

    let mut told = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            r = &mut service => break r.map_err(anyhow::Error::from).and_then(|r| r).and_then(|_| {
                if cancel.is_cancelled() { Ok(()) } else { Err(anyhow::anyhow!("the service stopped")) }
            }),
            r = &mut gateway => break r.map_err(anyhow::Error::from).and_then(|r| r).and_then(|_| {
                if cancel.is_cancelled() { Ok(()) } else { Err(anyhow::anyhow!("the demo gateway stopped")) }
            }),
            _ = tick.tick(), if !told => {
                if let Some(first) = first_alert(&outbox) {
                    println!("An excursion opened on {PIN}A's refrigerator; its alert email is {}", first.display());
                    told = true;
                }
            }
        }
    };
    cancel.cancel();
    if !gateway.is_finished() {
        let _ = gateway.await;
    }
    if !service.is_finished() {
        let _ = service.await;
    }
    println!("vfc demo stopped; its data stays in {}", dir.display());
    result
}

/// Makes `dir` a fresh demo directory: an earlier demo's is started afresh; anything else that
/// is not empty is left alone.
fn fresh(dir: &Path) -> anyhow::Result<()> {
    if dir.join(MARKER).exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing the earlier demo in {}", dir.display()))?;
    } else if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} holds files that are not an earlier demo's; the demo needs a fresh data directory: set VFC_DATA_DIR to a new folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `vfc demo`; the next demo starts this folder afresh\n",
    )?;
    Ok(())
}

fn free(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| TcpListener::bind(a).is_ok())
}

/// The addresses the service bound, from the `ports.json` it writes once it listens.
async fn bound_ports(
    dir: &Path,
    service: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<crate::app::Ports> {
    let path = dir.join("ports.json");
    let start = std::time::Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(p) = serde_json::from_slice::<crate::app::Ports>(&bytes) {
                return Ok(p);
            }
        }
        if service.is_finished() {
            return match service.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(anyhow::anyhow!("the service stopped before it listened")),
                Err(e) => Err(e.into()),
            };
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the service did not start listening within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_healthy(
    http: &reqwest::Client,
    base: &str,
    service: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if service.is_finished() {
            return match service.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("the service stopped while starting")),
            };
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the service is not healthy after 30 s at {base}/healthz");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Calls the API as the demo's state coordinator.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let out: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {out}");
        }
        Ok(out)
    }

    /// PIN 012345: locations A and B, a refrigerator and a freezer each, coordinators with
    /// example addresses — through the API, as a state coordinator would. Returns each unit
    /// with the serial of the logger meant for it.
    async fn clinic(&self) -> anyhow::Result<Vec<(i64, String)>> {
        let mut units = Vec::new();
        for (suffix, street) in [("A", "100 Harbor St"), ("B", "200 Hill Rd")] {
            let code = format!("{PIN}{suffix}");
            let who = suffix.to_lowercase();
            let location = json!({
                "pin": PIN, "suffix": suffix, "name": format!("Demo Pediatrics {suffix}"),
                "timezone": "America/New_York", "address": format!("{street}, Baltimore, MD"),
                "contacts": {
                    "primary": {"name": "Pat Primary", "email": format!("primary.{who}@example.org"), "phone": "410-555-0101"},
                    "backup": {"name": "Bo Backup", "email": format!("backup.{who}@example.org"), "phone": "410-555-0102"}
                }
            });
            self.call(reqwest::Method::POST, "/api/v1/locations", Some(location))
                .await?;
            if suffix == "A" {
                // The clinic's one gateway, at A, serves the loggers of both locations of the PIN.
                self.call(
                    reqwest::Method::POST,
                    &format!("/api/v1/locations/{code}/gateways"),
                    Some(json!({"id": GATEWAY, "name": "Demo gateway"})),
                )
                .await?;
            }
            for (kind, name, tag) in [
                ("refrigerator", "Vaccine refrigerator", "FRIDGE"),
                ("freezer", "Vaccine freezer", "FREEZER"),
            ] {
                let unit = self
                    .call(
                        reqwest::Method::POST,
                        &format!("/api/v1/locations/{code}/units"),
                        Some(json!({"name": name, "kind": kind})),
                    )
                    .await?;
                let id = unit["id"].as_i64().context("the new unit has no id")?;
                units.push((id, format!("DEMO-{code}-{tag}")));
            }
        }
        Ok(units)
    }

    /// Two orders, through the API as the clinic and the state would: one of 012345A's waiting
    /// for the state's review, and one of 012345B's approved, sent and shipped with tracking
    /// numbers. A clinic enrolled today has no history for the prerequisites: the state waives
    /// what fails, with the reason. Returns a sentence saying so.
    async fn orders(&self) -> anyhow::Result<String> {
        let get = reqwest::Method::GET;
        let post = reqwest::Method::POST;
        let mut ids = Vec::new();
        for (code, lines) in [
            (
                format!("{PIN}A"),
                json!([{"ndc": "00006-4047-41", "funding": "vfc", "doses": 20}, {"ndc": "00006-4681-00", "funding": "vfc", "doses": 10}]),
            ),
            (
                format!("{PIN}B"),
                json!([{"ndc": "00006-4826-00", "funding": "vfc", "doses": 10}, {"ndc": "49281-0560-05", "funding": "vfc", "doses": 10}]),
            ),
        ] {
            let ready = self
                .call(
                    get.clone(),
                    &format!("/api/v1/locations/{code}/orders/prerequisites"),
                    None,
                )
                .await?;
            for c in ready["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["ok"] == false)
            {
                self.call(
                    post.clone(),
                    &format!("/api/v1/locations/{code}/orders/waivers"),
                    Some(json!({"check": c["check"], "reason": "demo: a clinic enrolled today has no history yet"})),
                )
                .await?;
            }
            let order = self
                .call(
                    post.clone(),
                    &format!("/api/v1/locations/{code}/orders"),
                    Some(json!({"lines": lines})),
                )
                .await?;
            let id = order["id"].as_i64().context("the new order has no id")?;
            self.call(
                post.clone(),
                &format!("/api/v1/orders/{id}/submit"),
                Some(json!({"urgent": false})),
            )
            .await?;
            ids.push(id);
        }
        let shipped = ids[1];
        self.call(
            post.clone(),
            &format!("/api/v1/orders/{shipped}/approve"),
            Some(json!({})),
        )
        .await?;
        let resp = self
            .http
            .post(format!("{}/api/v1/orders/export", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("the export: {}", resp.status());
        }
        let today = chrono::Utc::now().date_naive();
        let file = format!(
            "order_id,ndc,lot,expires_on,doses,backordered_doses,carrier,tracking_number,ship_date,direct_ship\n\
             {shipped},00006-4826-00,VX-DEMO1,2027-12-31,10,0,FedEx,771234567890,{today},true\n\
             {shipped},49281-0560-05,PC-DEMO1,2027-10-31,10,0,UPS,1Z999AA10123456784,{today},false\n"
        );
        let resp = self
            .http
            .post(format!("{}/api/v1/shipments", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(file)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "the shipment file: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(format!(
            "order {} of {PIN}A is in review; order {shipped} of {PIN}B shipped (UPS 1Z999AA10123456784, and FedEx \
             771234567890 direct from Merck)",
            ids[0]
        ))
    }

    /// Waits until every logger's latest reading is within ten minutes of now (the replay is in).
    async fn caught_up(&self, serials: &[&str], limit: Duration) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        loop {
            let mut behind = Vec::new();
            for serial in serials {
                let latest = self
                    .call(reqwest::Method::GET, &format!("/api/v1/loggers/{serial}"), None)
                    .await
                    .ok()
                    .and_then(|l| l["last_reading"]["ts"].as_str().map(str::to_string))
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
                if latest.is_none_or(|t| chrono::Utc::now() - t.to_utc() > chrono::Duration::minutes(10)) {
                    behind.push(*serial);
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("the simulated loggers {behind:?} have not caught up after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn first_alert(outbox: &Path) -> Option<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(outbox)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    all.sort();
    // The orders' emails (approved, shipped) come first; the alert is the temperature one.
    all.into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|text| text.contains("Subject: VFC temperature alert")))
}
