//! Settings: built-in defaults, then an optional `vfc.toml`, then `VFC_*` environment variables
//! (docs/architecture.md, "Public contracts → Configuration"), then command-line flags.
//!
//! Every value is checked here, at start, so a typo fails with the setting's name and what
//! it allows instead of surfacing later as a connection error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use url::Url;

/// The settings every command takes. Each is also read from `vfc.toml` (same name, lower case,
/// without `VFC_`) and from the environment. `--help` lists them after a command's own options.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Settings (flags, VFC_* environment variables, or vfc.toml)")]
pub struct SettingsArgs {
    /// Configuration file (TOML, keys as below without the VFC_ prefix, lower case).
    /// Default: ./vfc.toml when it exists.
    #[arg(long, env = "VFC_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Where the service keeps its files (SQLite database, email outbox). Default ./vfc-data
    #[arg(long, env = "VFC_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://user@host/db. Default: SQLite file vfc.db in the data directory
    #[arg(long, env = "VFC_DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// HTTP listen address for the API, dashboards, /healthz and /metrics (port 0 picks a free one). Default 127.0.0.1:8080
    #[arg(long, env = "VFC_HTTP_ADDR", global = true, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// MQTT broker: "embedded" (a broker inside the service) or mqtt://[user:pass@]host:port, mqtts://…
    #[arg(long, env = "VFC_MQTT_URL", global = true, value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// Listen address of the embedded broker (loopback only; port 0 picks a free one). Default 127.0.0.1:1883
    #[arg(long, env = "VFC_MQTT_EMBEDDED_ADDR", global = true, value_name = "ADDR")]
    pub mqtt_embedded_addr: Option<String>,
    /// MQTT client id; fixed per instance so the broker keeps its session. Default vfc-1
    #[arg(long, env = "VFC_MQTT_CLIENT_ID", global = true, value_name = "ID")]
    pub mqtt_client_id: Option<String>,
    /// Shared-subscription group: instances in one group split the readings ($share/GROUP/…). Default: unset, plain subscription
    #[arg(long, env = "VFC_MQTT_SHARE_GROUP", global = true, value_name = "GROUP")]
    pub mqtt_share_group: Option<String>,
    /// PEM file of extra CA certificates for mqtts:// (default: the public web roots)
    #[arg(long, env = "VFC_MQTT_CA_FILE", global = true, value_name = "PATH")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// Outgoing mail: smtp://host:port (plain, trusted network), smtp://…?tls=required (STARTTLS), smtps://… Default: .eml files in $VFC_DATA_DIR/outbox/
    #[arg(long, env = "VFC_SMTP_URL", global = true, value_name = "URL")]
    pub smtp_url: Option<String>,
    /// Sender address of alert emails. Default vfc-monitor@localhost
    #[arg(long, env = "VFC_MAIL_FROM", global = true, value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// Base URL people reach the service at, for links in emails. Default http://<the HTTP address bound>
    #[arg(long, env = "VFC_PUBLIC_URL", global = true, value_name = "URL")]
    pub public_url: Option<String>,
    /// HL7 MLLP listen address for EHRs (a bare port means 127.0.0.1:PORT; port 0 picks a free one). Default: unset, MLLP off
    #[arg(long, env = "VFC_HL7_MLLP_ADDR", global = true, value_name = "ADDR")]
    pub hl7_mllp_addr: Option<String>,
    /// Who may send over MLLP (it has no token): IP=SCOPE,… where SCOPE is a location code (012345A), a PIN (012345) or * for every PIN. Default: nobody
    #[arg(long, env = "VFC_HL7_MLLP_ALLOW", global = true, value_name = "LIST")]
    pub hl7_mllp_allow: Option<String>,
    /// Proxies whose X-Forwarded-For is believed (a TLS proxy in front of the service): IP addresses or CIDR blocks, comma-separated. Default: none, the peer's address is the client's
    #[arg(long, env = "VFC_TRUSTED_PROXIES", global = true, value_name = "LIST")]
    pub trusted_proxies: Option<String>,
}

/// The same settings as they may appear in `vfc.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    http_addr: Option<String>,
    mqtt_url: Option<String>,
    mqtt_embedded_addr: Option<String>,
    mqtt_client_id: Option<String>,
    mqtt_share_group: Option<String>,
    mqtt_ca_file: Option<PathBuf>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    public_url: Option<String>,
    hl7_mllp_addr: Option<String>,
    hl7_mllp_allow: Option<String>,
    trusted_proxies: Option<String>,
}

/// Which database, parsed from `VFC_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Which broker, parsed from `VFC_MQTT_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttBroker {
    Embedded,
    External(MqttUrl),
}

/// `mqtt://[user:pass@]host[:port]` or `mqtts://…`; one parser for the service and the gateway.
pub use firmware_bridge::broker::MqttUrl;

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub http_addr: SocketAddr,
    pub mqtt: MqttBroker,
    pub mqtt_embedded_addr: SocketAddr,
    pub mqtt_client_id: String,
    pub mqtt_share_group: Option<String>,
    pub mqtt_ca_file: Option<PathBuf>,
    pub smtp_url: Option<Url>,
    pub mail_from: String,
    /// `None`: links point at the HTTP address the service binds (see [`Settings::public_url`]).
    pub public_url: Option<Url>,
    pub hl7_mllp_addr: Option<SocketAddr>,
    /// `VFC_HL7_MLLP_ALLOW` as given: its words are HL7's (`crate::hl7::mllp::Allow` reads it
    /// when the listener starts, and a value it cannot read stops the service there).
    pub hl7_mllp_allow: String,
    /// `VFC_TRUSTED_PROXIES`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
}

/// An IP block (`10.0.0.0/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(raw: &str) -> Option<Cidr> {
        let (a, p) = raw.split_once('/').unwrap_or((raw, ""));
        let addr: std::net::IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.trim().parse().ok()? };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map(V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (V4(net), V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (V6(net), V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn bad(setting: &str, value: &str, allowed: &str) -> anyhow::Error {
    anyhow::anyhow!("{setting}={value:?} is not valid: {allowed}")
}

impl Settings {
    /// The base of links in emails: `VFC_PUBLIC_URL`, else the HTTP address the service bound.
    pub fn public_url(&self, bound: SocketAddr) -> Url {
        self.public_url
            .clone()
            .unwrap_or_else(|| Url::parse(&format!("http://{bound}")).expect("an address makes a URL"))
    }

    /// Layers defaults, the config file, the environment and flags (clap has already merged the
    /// last two), then checks every value.
    pub fn load(args: &SettingsArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new("vfc.toml").exists() => read_file(Path::new("vfc.toml"))?,
            None => FileSettings::default(),
        };
        let pick = |a: &Option<String>, f: Option<String>| a.clone().or(f);

        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| "./vfc-data".into());
        let database = match pick(&args.database_url, file.database_url) {
            None => DatabaseUrl::Sqlite(data_dir.join("vfc.db")),
            Some(raw) => parse_database_url(&raw)?,
        };
        let http_raw = pick(&args.http_addr, file.http_addr).unwrap_or_else(|| "127.0.0.1:8080".into());
        let http_addr: SocketAddr = http_raw.parse().map_err(|_| {
            bad(
                "VFC_HTTP_ADDR",
                &http_raw,
                "an IP address and port such as 127.0.0.1:8080",
            )
        })?;
        let mqtt_raw = pick(&args.mqtt_url, file.mqtt_url).unwrap_or_else(|| "embedded".into());
        let mqtt = if mqtt_raw == "embedded" {
            MqttBroker::Embedded
        } else {
            MqttBroker::External(MqttUrl::parse(&mqtt_raw).map_err(|e| {
                bad(
                    "VFC_MQTT_URL",
                    &redact_url(&mqtt_raw),
                    &format!("\"embedded\", mqtt://[user:pass@]host:port or mqtts://… ({e})"),
                )
            })?)
        };
        let emb_raw =
            pick(&args.mqtt_embedded_addr, file.mqtt_embedded_addr).unwrap_or_else(|| "127.0.0.1:1883".into());
        let mqtt_embedded_addr: SocketAddr = emb_raw
            .parse()
            .ok()
            .filter(|a: &SocketAddr| a.ip().is_loopback())
            .ok_or_else(|| {
                bad(
                    "VFC_MQTT_EMBEDDED_ADDR",
                    &emb_raw,
                    "a loopback address and port such as 127.0.0.1:1883 (the embedded broker has no authentication, so it never listens beyond this machine)",
                )
            })?;
        let mqtt_client_id = pick(&args.mqtt_client_id, file.mqtt_client_id).unwrap_or_else(|| "vfc-1".into());
        if mqtt_client_id.is_empty()
            || mqtt_client_id.len() > 64
            || !mqtt_client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "VFC_MQTT_CLIENT_ID",
                &mqtt_client_id,
                "1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
            ));
        }
        let mqtt_share_group = pick(&args.mqtt_share_group, file.mqtt_share_group).filter(|g| !g.is_empty());
        if let Some(g) = &mqtt_share_group {
            if !g.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
                return Err(bad("VFC_MQTT_SHARE_GROUP", g, "letters, digits, '-' and '_' only"));
            }
        }
        let smtp_url = match pick(&args.smtp_url, file.smtp_url).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => {
                let allowed = "smtp://host:port, smtp://host:port?tls=required or smtps://host:port";
                let url = Url::parse(&raw)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some())
                    .ok_or_else(|| bad("VFC_SMTP_URL", &redact_url(&raw), allowed))?;
                // Only one option is understood; anything else (`tls=yes`) would silently send
                // in plain text, so it stops the service instead.
                for (k, v) in url.query_pairs() {
                    if !(k == "tls" && v == "required" && url.scheme() == "smtp") {
                        return Err(bad(
                            "VFC_SMTP_URL",
                            &redact_url(&raw),
                            &format!("{allowed}; \"{k}={v}\" is not understood"),
                        ));
                    }
                }
                Some(url)
            }
        };
        let mail_from = pick(&args.mail_from, file.mail_from).unwrap_or_else(|| "vfc-monitor@localhost".into());
        if !mail_from.contains('@') {
            return Err(bad(
                "VFC_MAIL_FROM",
                &mail_from,
                "an email address such as alerts@example.org",
            ));
        }
        let public_url = match pick(&args.public_url, file.public_url).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(
                Url::parse(&raw)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .ok_or_else(|| {
                        bad(
                            "VFC_PUBLIC_URL",
                            &raw,
                            "an http:// or https:// URL such as https://vfc.example.org",
                        )
                    })?,
            ),
        };
        let hl7_mllp_addr = match pick(&args.hl7_mllp_addr, file.hl7_mllp_addr).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(
                raw.parse::<u16>()
                    .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                    .or_else(|_| raw.parse())
                    .map_err(|_| {
                        bad(
                            "VFC_HL7_MLLP_ADDR",
                            &raw,
                            "an IP address and port such as 127.0.0.1:2575, or a port for loopback",
                        )
                    })?,
            ),
        };
        let hl7_mllp_allow = pick(&args.hl7_mllp_allow, file.hl7_mllp_allow).unwrap_or_default();
        let trusted_proxies = pick(&args.trusted_proxies, file.trusted_proxies)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| {
                Cidr::parse(w).ok_or_else(|| {
                    bad(
                        "VFC_TRUSTED_PROXIES",
                        w,
                        "IP addresses or CIDR blocks such as 10.0.0.5,192.168.0.0/16",
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Settings {
            data_dir,
            database,
            http_addr,
            mqtt,
            mqtt_embedded_addr,
            mqtt_client_id,
            mqtt_share_group,
            mqtt_ca_file: args.mqtt_ca_file.clone().or(file.mqtt_ca_file),
            smtp_url,
            mail_from,
            public_url,
            hl7_mllp_addr,
            hl7_mllp_allow,
            trusted_proxies,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid vfc.toml", path.display()))
}

fn parse_database_url(raw: &str) -> anyhow::Result<DatabaseUrl> {
    let allowed = "sqlite://PATH (e.g. sqlite://./vfc-data/vfc.db) or postgres://user[:password]@host[:port]/database";
    if let Some(path) = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")) {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            bail!(bad(
                "VFC_DATABASE_URL",
                raw,
                &format!("{allowed}; an in-memory database would lose every reading")
            ));
        }
        return Ok(DatabaseUrl::Sqlite(path.into()));
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Url::parse(raw).map_err(|e| bad("VFC_DATABASE_URL", &redact_url(raw), &format!("{allowed} ({e})")))?;
        return Ok(DatabaseUrl::Postgres(raw.to_string()));
    }
    Err(bad("VFC_DATABASE_URL", &redact_url(raw), allowed))
}

/// A URL with its password replaced, for logs and error messages.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => raw.to_string(),
        Err(_) if raw.contains('@') => "<url with credentials>".into(),
        Err(_) => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(f: impl FnOnce(&mut SettingsArgs)) -> anyhow::Result<Settings> {
        let mut a = SettingsArgs {
            config: Some("/nonexistent-on-purpose".into()),
            ..Default::default()
        };
        a.config = None;
        f(&mut a);
        Settings::load(&a)
    }

    #[test]
    fn defaults_need_nothing_installed() {
        let s = load(|_| {}).unwrap();
        assert_eq!(s.database, DatabaseUrl::Sqlite("./vfc-data/vfc.db".into()));
        assert_eq!(s.mqtt, MqttBroker::Embedded);
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url(s.http_addr).as_str(), "http://127.0.0.1:8080/");
    }

    #[test]
    fn a_bad_value_names_the_setting_and_what_is_allowed() {
        let e = load(|a| a.mqtt_url = Some("amqp://x".into())).unwrap_err().to_string();
        assert!(e.contains("VFC_MQTT_URL") && e.contains("mqtts://"), "{e}");
        let e = load(|a| a.mqtt_embedded_addr = Some("0.0.0.0:1883".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("VFC_MQTT_EMBEDDED_ADDR") && e.contains("loopback"), "{e}");
        let e = load(|a| a.database_url = Some("mysql://x".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("VFC_DATABASE_URL"), "{e}");
    }

    #[test]
    fn an_smtp_option_that_is_not_understood_stops_the_service() {
        let e = load(|a| a.smtp_url = Some("smtp://mail.example.org:587?tls=yes".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("VFC_SMTP_URL") && e.contains("tls=yes"), "{e}");
        assert!(load(|a| a.smtp_url = Some("smtp://mail.example.org:587?tls=required".into())).is_ok());
        assert!(load(|a| a.smtp_url = Some("smtps://mail.example.org?tls=required".into())).is_err());
    }

    #[test]
    fn mqtt_urls_carry_credentials_and_default_ports() {
        let u = MqttUrl::parse("mqtts://gw%40clinic:s3cret@broker.example.org").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 8883);
        assert_eq!(u.username.as_deref(), Some("gw@clinic"));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
