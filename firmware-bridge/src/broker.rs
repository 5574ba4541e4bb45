//! Broker addresses and TLS, shared by the gateway and the service (docs/architecture.md:
//! `mqtt://[user:pass@]host:port`, `mqtts://…`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rumqttc::TlsConfiguration;
use url::Url;

/// A broker given as `mqtt://[user:pass@]host[:port]` or `mqtts://…`.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl MqttUrl {
    /// Parses `mqtt://[user:pass@]host[:port]` or `mqtts://…` (default ports 1883 and 8883).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw).map_err(|e| format!("{e}"))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(format!("scheme {other:?} is not mqtt:// or mqtts://")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        Ok(MqttUrl {
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            username: (!url.username().is_empty()).then(|| decode(url.username())),
            password: url.password().map(decode),
        })
    }
}

/// Never prints the password (logs, `--help` defaults, panics).
impl std::fmt::Debug for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

/// TLS for `mqtts://`: the public web roots, plus the CAs in `ca_file` (PEM) if given.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<TlsConfiguration> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in
            CertificateDer::pem_file_iter(path).with_context(|| format!("reading CA file {}", path.display()))?
        {
            roots.add(cert.context("the CA file holds a malformed certificate")?)?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_credentials_and_default_ports_and_hide_the_password() {
        let u = MqttUrl::parse("mqtts://gw%2D1:s3cr%40t@broker.example.org").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("broker.example.org", 8883, true));
        assert_eq!(u.username.as_deref(), Some("gw-1"));
        assert_eq!(u.password.as_deref(), Some("s3cr@t"));
        assert_eq!(format!("{u:?}"), "mqtts://gw-1:***@broker.example.org:8883");
        let plain = MqttUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((plain.port, plain.tls, plain.username), (1884, false, None));
        assert!(MqttUrl::parse("http://x").unwrap_err().contains("mqtt://"));
    }
}
