//! The embedded MQTT broker (rumqttd), so a clinic or a newcomer needs nothing else installed.
//!
//! It listens on loopback only (it has no authentication) and keeps its state in memory: a
//! kill loses what it held, which the gateways' end-to-end confirmation covers (README).

use std::collections::HashMap;
use std::net::SocketAddr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest message the embedded broker takes; above the ingest's 256 KiB limit so that an
/// oversized reading becomes a dead letter with its reason instead of a dropped connection.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How long the broker may take to answer its first connection.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Starts the broker on its own OS thread (rumqttd's `start` blocks forever and has no
/// shutdown) and returns the address it listens on once it has answered a real MQTT connection.
///
/// A configured port that is taken fails clearly, rather than letting rumqttd log it and the
/// service talk to whatever else listens there. Port 0 picks a free port: rumqttd binds its own
/// socket and cannot report one, so the service chooses one the system says is free, starts the
/// broker there, and chooses again if the broker could not bind it after all (another process
/// took it in between).
pub async fn start(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        return Err(anyhow!("the embedded broker listens on loopback only, not {addr}"));
    }
    if addr.port() != 0 {
        std::net::TcpListener::bind(addr).map_err(|e| {
            anyhow!(
                "VFC_MQTT_EMBEDDED_ADDR={addr} cannot be used for the embedded MQTT broker: {e}. \
                 Another broker may be running there: set VFC_MQTT_EMBEDDED_ADDR to a free port (or port 0), \
                 or VFC_MQTT_URL=mqtt://{addr} to use that broker"
            )
        })?;
        return match launch(addr).await? {
            Launched::Ready => Ok(addr),
            Launched::Stopped => Err(anyhow!("the embedded MQTT broker could not listen on {addr}")),
        };
    }
    for _ in 0..5 {
        let free = std::net::TcpListener::bind((addr.ip(), 0))
            .and_then(|l| l.local_addr())
            .context("finding a free port for the embedded MQTT broker")?;
        match launch(free).await? {
            Launched::Ready => return Ok(free),
            Launched::Stopped => tracing::info!(port = free.port(), "that port was taken meanwhile; choosing another"),
        }
    }
    Err(anyhow!(
        "the embedded MQTT broker found no free port on {} after 5 tries",
        addr.ip()
    ))
}

enum Launched {
    /// It answered an MQTT connection, and its server is still up.
    Ready,
    /// Its server stopped (it could not bind the port).
    Stopped,
}

fn config(addr: SocketAddr) -> Config {
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
    Config {
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
    }
}

async fn launch(addr: SocketAddr) -> anyhow::Result<Launched> {
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let config = config(addr);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            // `start` returns only when its server thread ended: it could not bind, or died.
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
            flag.store(true, Ordering::SeqCst);
        })
        .context("starting the embedded MQTT broker thread")?;
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if stopped.load(Ordering::SeqCst) {
            return Ok(Launched::Stopped);
        }
        if answers(addr).await {
            // A bind failure ends the server thread at once; a broker of another process
            // answering on the port would leave it ended by now.
            tokio::task::yield_now().await;
            if stopped.load(Ordering::SeqCst) {
                return Ok(Launched::Stopped);
            }
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(Launched::Ready);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!(
                "the embedded MQTT broker did not answer on {addr} within {READY_WITHIN:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an MQTT broker at `addr` accepts a connection (a CONNACK, not a TCP probe: rumqttd
/// accepts TCP before its router is up).
async fn answers(addr: SocketAddr) -> bool {
    let id = format!("vfc-ready-{:08x}", rand::random::<u32>());
    let mut opts = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    let ready = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.try_disconnect();
    ready
}
