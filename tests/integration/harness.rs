//! Starts the real `vfc` binary on random ports against a real database (a fresh SQLite file
//! or a fresh PostgreSQL database per test) and a real MQTT broker (the embedded one, or a
//! Mosquitto process started with the project's shipped configuration).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Embedded,
    Mosquitto,
}

/// A port nothing listens on right now, for a test that needs a server to be down ("the SMTP
/// server is unreachable") before it comes up there. The service itself never gets its ports
/// this way: it binds port 0 and says where in `ports.json` ([`TestApp::start`]).
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The addresses a `vfc serve` bound, from `$VFC_DATA_DIR/ports.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub mqtt: Option<u16>,
    pub mllp: Option<u16>,
}

impl Ports {
    fn read(data_dir: &Path) -> Option<Ports> {
        let path = data_dir.join("ports.json");
        let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let port = |k: &str| {
            v[k].as_str()
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.port())
        };
        Some(Ports {
            http: port("http")?,
            mqtt: port("mqtt"),
            mllp: port("mllp"),
        })
    }
}

/// The PostgreSQL server the tests use; `VFC_TEST_POSTGRES_URL` overrides the machine's.
pub fn postgres_admin_url() -> String {
    std::env::var("VFC_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    format!("{prefix}{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff)
}

async fn admin_exec(sql: &str) {
    sqlx::any::install_default_drivers();
    use sqlx::Connection;
    let url = postgres_admin_url();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required for this test and is not reachable at {url}: {e}. Start it, or set VFC_TEST_POSTGRES_URL")
    });
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    let _ = conn.close().await;
}

/// A fresh PostgreSQL database on the test server, dropped when this is.
pub struct ScratchPostgres {
    pub url: String,
    name: String,
}

impl ScratchPostgres {
    pub async fn create() -> ScratchPostgres {
        let name = unique("vfc_s_");
        admin_exec(&format!("CREATE DATABASE {name}")).await;
        let base = postgres_admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("VFC_TEST_POSTGRES_URL must end in /database"),
        };
        ScratchPostgres { url, name }
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(admin_exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
        })
        .join();
    }
}

/// A Mosquitto process with `deploy/mosquitto.conf` and `deploy/mosquitto.acl` as shipped, on a
/// free port, persisting to a temp dir, with a password file made by `mosquitto_passwd`.
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    passwd: PathBuf,
    child: Option<Child>,
}

/// The service's broker account (`user vfc-service` in `deploy/mosquitto.acl`).
pub const SERVICE_USER: &str = "vfc-service";

/// The test password of a broker account.
pub fn password_of(user: &str) -> String {
    format!("pw-{user}")
}

impl Mosquitto {
    /// Starts Mosquitto on a port the system says is free, and on another if it could not bind
    /// that one after all (another process took it in between).
    pub fn start(dir: &Path) -> Mosquitto {
        for _ in 0..5 {
            let mut m = Self::configure(dir, unused_port());
            if m.try_resume() {
                return m;
            }
        }
        panic!("Mosquitto could not listen on any of 5 free ports");
    }

    fn configure(dir: &Path, port: u16) -> Mosquitto {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mosquitto.conf")).unwrap();
        // Only where it listens and keeps its files change; the ACL is copied as shipped.
        let mut conf: String = shipped
            .lines()
            .filter(|l| {
                !["listener", "persistence_location", "password_file", "acl_file"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            conf.contains("allow_anonymous false"),
            "the shipped broker refuses anonymous clients"
        );
        let store = dir.join("mosquitto");
        std::fs::create_dir_all(&store).unwrap();
        let acl = dir.join("mosquitto.acl");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mosquitto.acl"), &acl).unwrap();
        let passwd = dir.join("mosquitto.passwd");
        if !passwd.exists() {
            mosquitto_passwd(&["-c", "-b"], &passwd, SERVICE_USER);
        }
        conf.push_str(&format!(
            "listener {port} 127.0.0.1\npersistence_location {}/\npassword_file {}\nacl_file {}\n",
            store.display(),
            passwd.display(),
            acl.display()
        ));
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        Mosquitto {
            port,
            conf: conf_path,
            passwd,
            child: None,
        }
    }

    /// Adds a broker account (password [`password_of`]) and has the running broker reload its
    /// password file; returns once the broker accepts the account.
    pub fn account(&self, user: &str) {
        mosquitto_passwd(&["-b"], &self.passwd, user);
        let Some(child) = &self.child else { return };
        let _ = Command::new("kill").arg("-HUP").arg(child.id().to_string()).status();
        let start = Instant::now();
        while !accepts(self.port, user, &password_of(user)) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Mosquitto did not take account {user} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts (again) with the same configuration and port.
    pub fn resume(&mut self) {
        assert!(
            self.try_resume(),
            "Mosquitto could not listen on port {} again",
            self.port
        );
    }

    /// Starts it; false when it exits at once (its port is taken).
    fn try_resume(&mut self) -> bool {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Mosquitto is required for this test: apt-get install mosquitto");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.conf.with_file_name("mosquitto.log"))
            .unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting mosquitto");
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Ours answers only while it runs: one that exited could not bind.
                if child.try_wait().unwrap().is_none() {
                    self.child = Some(child);
                    return true;
                }
                return false;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "Mosquitto not listening on port {} after 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A crash that loses the broker's state: SIGKILL, its persistence files removed, started
    /// again. Every queued and in-flight message is gone.
    pub fn restart_without_persistence(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let conf = std::fs::read_to_string(&self.conf).unwrap();
        let store = conf
            .lines()
            .find_map(|l| l.strip_prefix("persistence_location "))
            .expect("a persistence location");
        let _ = std::fs::remove_dir_all(store.trim());
        std::fs::create_dir_all(store.trim()).unwrap();
        self.resume();
    }

    /// Stops it the way an operator does (SIGTERM: it saves its state).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

fn mosquitto_passwd(flags: &[&str], file: &Path, user: &str) {
    let out = Command::new("mosquitto_passwd")
        .args(flags)
        .arg(file)
        .arg(user)
        .arg(password_of(user))
        .output()
        .expect("mosquitto_passwd is required for this test: apt-get install mosquitto-clients or mosquitto");
    assert!(
        out.status.success(),
        "mosquitto_passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the broker accepts `user` with `password`: one MQTT 3.1.1 CONNECT by hand, and the
/// CONNACK's return code (0 = accepted).
pub fn accepts(port: u16, user: &str, password: &str) -> bool {
    use std::io::{Read, Write};
    let field = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut body = field("MQTT");
    body.extend_from_slice(&[4, 0b1100_0010, 0, 10]);
    body.extend(field(&unique("probe-")));
    body.extend(field(user));
    body.extend(field(password));
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut ack = [0u8; 4];
    stream.write_all(&packet).is_ok() && stream.read_exact(&mut ack).is_ok() && ack[0] == 0x20 && ack[3] == 0
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `firmware-bridge` binary of this workspace. `cargo test --workspace` builds it (the crate
/// has integration tests of its own); when it is missing or older than the crate's sources (a
/// narrower `cargo test --test integration`), it is built here, once.
pub fn firmware_bridge_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let vfc = PathBuf::from(env!("CARGO_BIN_EXE_vfc"));
        let bin = vfc.with_file_name("firmware-bridge");
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-bridge/src");
        let newest_source = std::fs::read_dir(&src)
            .unwrap()
            .filter_map(|e| modified(&e.unwrap().path()))
            .max();
        if modified(&bin).is_none() || modified(&bin) < newest_source {
            let mut build = Command::new(env!("CARGO"));
            build
                .args(["build", "-q", "-p", "firmware-bridge", "--bin", "firmware-bridge"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if vfc.parent().is_some_and(|d| d.ends_with("release")) {
                build.arg("--release");
            }
            let status = build.status().expect("running cargo to build firmware-bridge");
            assert!(status.success(), "building firmware-bridge failed");
        }
        assert!(bin.exists(), "no firmware-bridge binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A `firmware-bridge` process (the clinic gateway), its log kept in a file.
pub struct GatewayProcess {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl GatewayProcess {
    pub fn start(args: &[&str], log: &Path) -> GatewayProcess {
        let mut g = GatewayProcess {
            args: args.iter().map(|a| a.to_string()).collect(),
            log: log.to_path_buf(),
            child: None,
        };
        g.resume();
        g
    }

    /// Starts it again with the same arguments (and spool).
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(firmware_bridge_bin())
            .args(&self.args)
            .env("FIRMWARE_BRIDGE_LOG", "info,rumqttc=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting firmware-bridge");
        self.child = Some(child);
    }

    /// SIGKILL: a power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, as systemd stops it.
    pub fn terminate(&self) {
        let c = self.child.as_ref().expect("running");
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
    }

    /// Waits for it to exit on its own.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "firmware-bridge still running after {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running service and everything it talks to.
pub struct TestApp {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub mqtt_port: u16,
    /// The MLLP listener, when `VFC_HL7_MLLP_ADDR` was given.
    pub mllp_port: Option<u16>,
    pub database: Database,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub mosquitto: Option<Mosquitto>,
    pg_name: Option<String>,
}

impl TestApp {
    pub async fn spawn(database: Database, broker: Broker) -> TestApp {
        Self::spawn_with(database, broker, &[]).await
    }

    /// Like `spawn`, with extra `VFC_*` settings.
    pub async fn spawn_with(database: Database, broker: Broker, extra: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![
            (
                "VFC_DATA_DIR".to_string(),
                dir.path().join("data").display().to_string(),
            ),
            // Port 0: the service binds a free port and says which in ports.json.
            ("VFC_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("VFC_MQTT_CLIENT_ID".to_string(), unique("vfc-test-")),
            (
                "VFC_LOG".to_string(),
                "info,rumqttd=warn,rumqttd::router::routing=off,rumqttc=warn,sqlx=warn".to_string(),
            ),
        ];
        let pg_name = if database == Database::Postgres {
            let name = unique("vfc_t_");
            admin_exec(&format!("CREATE DATABASE {name}")).await;
            let base = postgres_admin_url();
            let url = match base.rfind('/') {
                Some(i) => format!("{}/{name}", &base[..i]),
                None => panic!("VFC_TEST_POSTGRES_URL must end in /database"),
            };
            env.push(("VFC_DATABASE_URL".to_string(), url));
            Some(name)
        } else {
            None
        };
        let (mqtt_port, mosquitto) = match broker {
            Broker::Embedded => {
                env.push(("VFC_MQTT_EMBEDDED_ADDR".to_string(), "127.0.0.1:0".to_string()));
                (0, None)
            }
            Broker::Mosquitto => {
                let m = Mosquitto::start(dir.path());
                env.push((
                    "VFC_MQTT_URL".to_string(),
                    format!(
                        "mqtt://{SERVICE_USER}:{}@127.0.0.1:{}",
                        password_of(SERVICE_USER),
                        m.port
                    ),
                ));
                (m.port, Some(m))
            }
        };
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut app = TestApp {
            base: String::new(),
            token: String::new(),
            http: reqwest::Client::new(),
            mqtt_port,
            mllp_port: None,
            database,
            dir,
            env,
            child: None,
            mosquitto,
            pg_name,
        };
        app.token = app.create_token(&["--role", "state-coordinator", "--name", "test state coordinator"]);
        app.start().await;
        app
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Runs `vfc ARGS` with the service's settings.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vfc"))
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .unwrap()
    }

    pub fn create_token(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        self.cli_last_line(&all)
    }

    /// Runs `vfc ARGS`, which must succeed, and returns the last line it printed (where
    /// `token create` puts the secret and `account create` the invitation link).
    pub fn cli_last_line(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "vfc {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn set_env(&mut self, key: &str, value: String) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.env.push((key.to_string(), value)),
        }
    }

    /// Starts the service, learns its ports from `ports.json`, and waits until it is healthy
    /// (subscribed to the broker, every task running). Started again, it keeps the ports it had,
    /// so gateways and publishers find it where they left it.
    pub async fn start(&mut self) {
        let _ = std::fs::remove_file(self.data_dir().join("ports.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("vfc.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vfc"))
            .arg("serve")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        let ports = loop {
            if let Some(p) = Ports::read(&self.data_dir()) {
                break p;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("vfc serve exited with {status}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no ports.json after 20 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.base = format!("http://127.0.0.1:{}", ports.http);
        self.set_env("VFC_HTTP_ADDR", format!("127.0.0.1:{}", ports.http));
        if let Some(mqtt) = ports.mqtt {
            self.mqtt_port = mqtt;
            self.set_env("VFC_MQTT_EMBEDDED_ADDR", format!("127.0.0.1:{mqtt}"));
        }
        if let Some(mllp) = ports.mllp {
            self.mllp_port = Some(mllp);
            self.set_env("VFC_HL7_MLLP_ADDR", format!("127.0.0.1:{mllp}"));
        }
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("vfc serve exited with {status}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "service not healthy after 20 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Another `vfc serve` on the same database and broker, with its own HTTP port and MQTT
    /// client id (a second instance of a scaled-out deployment).
    pub async fn sibling(&self) -> Sibling {
        assert!(
            self.mosquitto.is_some() && self.database == Database::Postgres,
            "a sibling shares an external broker and PostgreSQL"
        );
        let data = self.dir.path().join("sibling-data");
        let mut env = self.env.clone();
        for (k, v) in env.iter_mut() {
            match k.as_str() {
                "VFC_HTTP_ADDR" => *v = "127.0.0.1:0".into(),
                "VFC_MQTT_CLIENT_ID" => v.push_str("-sibling"),
                "VFC_DATA_DIR" => *v = data.display().to_string(),
                _ => {}
            }
        }
        let log = std::fs::File::create(self.dir.path().join("sibling.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vfc"))
            .arg("serve")
            .envs(env)
            .stderr(log)
            .spawn()
            .unwrap();
        let start = Instant::now();
        let ports = loop {
            if let Some(p) = Ports::read(&data) {
                break p;
            }
            assert!(child.try_wait().unwrap().is_none(), "the sibling exited");
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no ports.json from the sibling"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let sibling = Sibling {
            base: format!("http://127.0.0.1:{}", ports.http),
            child,
        };
        let start = Instant::now();
        while self
            .http
            .get(format!("{}/healthz", sibling.base))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(start.elapsed() < Duration::from_secs(20), "sibling not healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sibling
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("service is running");
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        c.wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vfc.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The service's OpenAPI document (no token needed).
    pub async fn openapi(&self) -> Value {
        let r = self.http.get(self.url("/api/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_as(&self.token, path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn send_as(&self, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_location(&self, pin: &str, suffix: &str) -> Value {
        let (status, body) = self
            .send_as(&self.token, "POST", "/api/v1/locations", location_body(pin, suffix))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn create_unit(&self, code: &str, name: &str, kind: &str) -> i64 {
        let (status, body) = self
            .send_as(
                &self.token,
                "POST",
                &format!("/api/v1/locations/{code}/units"),
                json!({"name": name, "kind": kind}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Location 012345A with a refrigerator whose logger LT-1 reads every 5 minutes since 2020.
    pub async fn fridge(&self) -> i64 {
        self.create_location("012345", "A").await;
        let unit = self.create_unit("012345A", "Main refrigerator", "refrigerator").await;
        self.assign(
            unit,
            json!({"serial": "LT-1", "reading_interval_s": 300, "from": "2020-01-01T00:00:00Z"}),
        )
        .await;
        unit
    }

    pub async fn assign(&self, unit: i64, body: Value) -> Value {
        let (status, out) = self
            .send_as(&self.token, "PUT", &format!("/api/v1/units/{unit}/logger"), body)
            .await;
        assert_eq!(status, 200, "{out}");
        out
    }

    /// Every reading of a unit in a window, following `next` across pages.
    pub async fn readings(&self, unit: i64, from: &str, to: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/units/{unit}/readings?from={from}&to={to}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path).await;
            out.extend(page["readings"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(n) => cursor = Some(n.to_string()),
                None => return out,
            }
        }
    }

    /// Waits until `check` returns Some, or fails with the last state seen.
    pub async fn eventually<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        self.eventually_within(Duration::from_secs(30), what, String::new, check)
            .await
    }

    /// Like `eventually`, with a time limit and more to show on failure (another process's log).
    pub async fn eventually_within<T, F, Fut>(
        &self,
        limit: Duration,
        what: &str,
        context: impl Fn() -> String,
        mut check: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            match check().await {
                Ok(v) => return v,
                Err(last) if start.elapsed() > limit => {
                    panic!(
                        "{what}: not reached after {limit:?}; last: {last}\n{}--- service log ---\n{}",
                        context(),
                        self.log()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The `.eml` files the service wrote (no `VFC_SMTP_URL`), oldest first. Bodies are
    /// quoted-printable: soft line breaks are undone so links read whole.
    pub fn emails(&self) -> Vec<String> {
        let dir = self.dir.path().join("data/outbox");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .replace("=\r\n", "")
                    .replace("=\n", "")
            })
            .collect()
    }

    /// Waits until exactly `n` emails are in the outbox folder.
    pub async fn wait_emails(&self, n: usize) -> Vec<String> {
        self.eventually(&format!("{n} emails in the outbox folder"), || async {
            let e = self.emails();
            if e.len() == n {
                Ok(e)
            } else {
                Err(format!("{} emails", e.len()))
            }
        })
        .await
    }

    /// Runs one SQL statement on the service's database directly, as an operator (or a bug)
    /// might: to break a row on purpose and see what the service does about it.
    pub async fn sql(&self, statement: &str) {
        sqlx::any::install_default_drivers();
        use sqlx::Connection;
        let url = match self.database {
            Database::Sqlite => format!("sqlite://{}", self.data_dir().join("vfc.db").display()),
            Database::Postgres => self
                .env
                .iter()
                .find(|(k, _)| k == "VFC_DATABASE_URL")
                .map(|(_, v)| v.clone())
                .expect("the PostgreSQL URL"),
        };
        let mut conn = sqlx::AnyConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = conn.close().await;
    }

    /// The value of one series in `/metrics` (0 when it was never counted).
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.http, &self.base, series).await
    }

    /// `/healthz`: its status code and body.
    pub async fn health(&self) -> (u16, Value) {
        let r = self.http.get(self.url("/healthz")).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A second refrigerator at 012345A, watched by logger `serial` since 2020; its id. Tests use
    /// it as a barrier: its alarm must reach the outbox after whatever the test waits out.
    pub async fn other_fridge(&self, serial: &str) -> i64 {
        let unit = self
            .create_unit("012345A", &format!("Fridge of {serial}"), "refrigerator")
            .await;
        self.assign(
            unit,
            json!({"serial": serial, "reading_interval_s": 300, "from": "2020-01-01T00:00:00Z"}),
        )
        .await;
        unit
    }

    /// A freezing reading of `serial` now (after one in range): it must alert at once.
    pub async fn freezing(&self, serial: &str) {
        let mut p = self.publisher(serial).await;
        let now = chrono::Utc::now();
        p.reading(serial, &(now - chrono::Duration::minutes(5)).to_rfc3339(), 4.8)
            .await;
        p.reading(serial, &now.to_rfc3339(), 0.2).await;
        p.wait_acked(2).await;
    }

    /// The emails of the outbox folder that contain `needle`.
    pub fn emails_with(&self, needle: &str) -> Vec<String> {
        self.emails().into_iter().filter(|m| m.contains(needle)).collect()
    }

    /// Waits until an email containing `needle` is in the outbox folder; all emails then.
    pub async fn wait_email_with(&self, needle: &str) -> Vec<String> {
        self.eventually(&format!("an email with {needle:?}"), || async {
            let all = self.emails();
            if all.iter().any(|m| m.contains(needle)) {
                Ok(all)
            } else {
                Err(format!("{} emails, none with it", all.len()))
            }
        })
        .await
    }

    /// The outbox rows of an excursion (sent or not yet): what its record says was emailed.
    pub async fn excursion_emails(&self, id: i64) -> Vec<Value> {
        self.get(&format!("/api/v1/excursions/{id}")).await["emails"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// A publisher. On Mosquitto `id` is its broker account, and the ACL lets it publish only
    /// as itself: a logger's serial, or a gateway's id.
    pub async fn publisher(&self, id: &str) -> Publisher {
        Publisher::connect_as(self.mqtt_port, id, self.login(id).as_ref()).await
    }

    /// A subscriber with the service's broker account (which may read everything).
    pub async fn subscriber(&self, filter: &str) -> Subscriber {
        Subscriber::connect_as(self.mqtt_port, filter, self.login(SERVICE_USER).as_ref()).await
    }

    /// The broker URL for a gateway or logger signing in as `user` (an account made for it on
    /// Mosquitto; the embedded broker has no accounts).
    pub fn mqtt_url(&self, user: &str) -> String {
        match self.login(user) {
            Some((u, p)) => format!("mqtt://{u}:{p}@127.0.0.1:{}", self.mqtt_port),
            None => format!("mqtt://127.0.0.1:{}", self.mqtt_port),
        }
    }

    /// The account `user` on Mosquitto, made if new; `None` on the embedded broker.
    pub fn login(&self, user: &str) -> Option<(String, String)> {
        let m = self.mosquitto.as_ref()?;
        if user != SERVICE_USER {
            m.account(user);
        }
        Some((user.to_string(), password_of(user)))
    }

    /// Registers gateway `id` at location `code`.
    pub async fn register_gateway(&self, code: &str, id: &str) -> Value {
        let (status, body) = self
            .send_as(
                &self.token,
                "POST",
                &format!("/api/v1/locations/{code}/gateways"),
                json!({"id": id, "name": format!("gateway {id}")}),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "registering {id} at {code}: {status} {body}"
        );
        body
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
        if let Some(name) = self.pg_name.take() {
            // A fresh runtime: Drop may run inside or outside one.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(admin_exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            })
            .join();
        }
    }
}

/// A second service process; killed when dropped.
pub struct Sibling {
    pub base: String,
    child: Child,
}

impl Drop for Sibling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series in a Prometheus text page: `name` or `name{label="value"}`, matched
/// whole (so `x_total` is not `x_total_more`); 0 when it was never counted.
pub async fn metric(http: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap_or_else(|_| panic!("{series}: {value:?}")))
        })
        .unwrap_or(0.0)
}

pub fn location_body(pin: &str, suffix: &str) -> Value {
    json!({
        "pin": pin, "suffix": suffix, "name": format!("Clinic {pin}{suffix}"), "timezone": "America/New_York",
        "address": "1 Main St, Baltimore, MD",
        "contacts": {
            "primary": {"name": "Pat Primary", "email": format!("primary.{pin}{suffix}@example.org"), "phone": "410-555-0101"},
            "backup": {"name": "Bo Backup", "email": format!("backup.{pin}{suffix}@example.org"), "phone": "410-555-0102"}
        }
    })
}

/// An MQTT client publishing with QoS 1 and counting the broker's PUBACKs.
pub struct Publisher {
    pub client: AsyncClient,
    acks: mpsc::UnboundedReceiver<()>,
    pub acked: usize,
}

impl Publisher {
    pub async fn connect(port: u16, id: &str) -> Publisher {
        Self::connect_as(port, id, None).await
    }

    pub async fn connect_as(port: u16, id: &str, login: Option<&(String, String)>) -> Publisher {
        let mut opts = MqttOptions::new(format!("{id}-{}", unique("")), "127.0.0.1", port);
        opts.set_max_packet_size(4 << 20, 4 << 20)
            .set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            opts.set_credentials(user.clone(), password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (tx, acks) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("MQTT connect timed out")
            .unwrap();
        Publisher { client, acks, acked: 0 }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    pub async fn reading(&self, serial: &str, ts: &str, temp_c: f64) {
        self.publish(
            &format!("vfc/loggers/{serial}/readings"),
            json!({"ts": ts, "temp_c": temp_c}).to_string(),
        )
        .await;
    }

    /// Waits until the broker has acknowledged `n` publishes in all.
    pub async fn wait_acked(&mut self, n: usize) {
        while self.acked < n {
            tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
                .await
                .unwrap_or_else(|_| panic!("broker acknowledged only {} of {n} publishes", self.acked))
                .unwrap();
            self.acked += 1;
        }
    }
}

/// An MQTT client that subscribes and collects what it receives.
pub struct Subscriber {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl Subscriber {
    pub async fn connect(port: u16, filter: &str) -> Subscriber {
        Self::connect_as(port, filter, None).await
    }

    pub async fn connect_as(port: u16, filter: &str, login: Option<&(String, String)>) -> Subscriber {
        let mut opts = MqttOptions::new(unique("sub-"), "127.0.0.1", port);
        opts.set_max_packet_size(4 << 20, 4 << 20);
        if let Some((user, password)) = login {
            opts.set_credentials(user.clone(), password.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("MQTT subscribe timed out")
            .unwrap();
        Subscriber { client, rx }
    }

    /// The next message, or None after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let (topic, payload) = tokio::time::timeout(wait, self.rx.recv()).await.ok()??;
        Some((topic, serde_json::from_slice(&payload).unwrap_or(Value::Null)))
    }
}

/// `on_both_databases!(name, …)` runs each `async fn name(Database)` on SQLite and PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::harness::Database::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::harness::Database::Postgres).await })*
        }
    };
}
