//! The embedded MQTT broker (rumqttd), so a clinic or a newcomer needs nothing else installed.
//!
//! It listens on loopback only (it has no authentication) and keeps its state in memory: a
//! kill loses what it held, which the gateways' end-to-end confirmation covers (README).

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{anyhow, Context};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest message the embedded broker takes; above the ingest's 256 KiB limit so that an
/// oversized reading becomes a dead letter with its reason instead of a dropped connection.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Starts the broker on its own OS thread (rumqttd's `start` blocks forever and has no
/// shutdown). Fails clearly when the port is taken, rather than letting rumqttd log it and
/// the service talk to whatever else listens there.
pub fn start(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        return Err(anyhow!("the embedded broker listens on loopback only, not {addr}"));
    }
    std::net::TcpListener::bind(addr).map_err(|e| {
        anyhow!(
            "VFC_MQTT_EMBEDDED_ADDR={addr} cannot be used for the embedded MQTT broker: {e}. \
             Another broker may be running there: set VFC_MQTT_EMBEDDED_ADDR to a free port, \
             or VFC_MQTT_URL=mqtt://{addr} to use that broker"
        )
    })?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_MESSAGE_BYTES,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "vfc-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("vfc".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .context("starting the embedded MQTT broker thread")?;
    tracing::info!(%addr, "embedded MQTT broker listening");
    Ok(())
}
