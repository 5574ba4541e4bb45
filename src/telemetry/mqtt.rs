//! The subscriber: one MQTT connection that takes readings in, hands them to the ingest in
//! batches and acknowledges each message only after its batch is committed.
//!
//! At-least-once into the database (crates.md): QoS 1, a fixed client id with a persistent
//! session (clean session off), manual acks sent after the commit in arrival order, resubscribe
//! on every ConnAck, and reconnect with backoff. The batcher runs beside the poll loops and
//! talks to them only through a bounded channel: a poll loop awaits nothing but the event loop
//! and, should the batcher fall a whole channel behind, room in it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware_bridge::wire;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::ingest::{self, Incoming, KnownSerials};
use crate::config::{MqttBroker, Settings};
use crate::store::Db;

/// Largest packet the client accepts: above any broker's limit we configure, so an oversized
/// message reaches the ingest (and becomes a dead letter) instead of stalling the connection.
pub const MAX_INCOMING_PACKET: usize = 2 * 1024 * 1024;
/// Most messages committed in one transaction.
pub const MAX_BATCH: usize = 5_000;
/// Most messages waiting between the pollers and the batcher.
const CHANNEL_CAPACITY: usize = 4 * MAX_BATCH;

/// Subscriber connections to the embedded broker. rumqttd lets a connection hold at most 100
/// unacknowledged messages, and a message is acknowledged only after its commit, so one
/// connection caps a batch at 100; several connections in a shared subscription raise the cap.
/// The embedded broker lives and dies with this process, so splitting its one session costs
/// nothing. Against an external broker the service keeps one persistent session per instance
/// (Mosquitto's window is configured unlimited in deploy/mosquitto.conf).
pub const EMBEDDED_CONNECTIONS: usize = 4;

/// What `/healthz` reports about the broker and the ingest.
#[derive(Debug, Default)]
pub struct MqttHealth {
    /// Connections wanted, and how many are connected and subscribed now.
    pub connections: AtomicUsize,
    pub connected: AtomicUsize,
    pub subscribed: AtomicUsize,
    /// Readings committed (new, not duplicates) since start.
    pub stored: AtomicU64,
}

impl MqttHealth {
    pub fn is_subscribed(&self) -> bool {
        let want = self.connections.load(Ordering::Relaxed);
        want > 0 && self.subscribed.load(Ordering::Relaxed) == want
    }
    pub fn is_connected(&self) -> bool {
        let want = self.connections.load(Ordering::Relaxed);
        want > 0 && self.connected.load(Ordering::Relaxed) == want
    }
}

/// Connection options for the broker in `settings` under `client_id`.
pub fn options(settings: &Settings, client_id: &str) -> anyhow::Result<MqttOptions> {
    let mut opts = match &settings.mqtt {
        MqttBroker::Embedded => {
            let a = settings.mqtt_embedded_addr;
            MqttOptions::new(client_id, a.ip().to_string(), a.port())
        }
        MqttBroker::External(url) => {
            let mut o = MqttOptions::new(client_id, url.host.clone(), url.port);
            if let Some(user) = &url.username {
                o.set_credentials(user.clone(), url.password.clone().unwrap_or_default());
            }
            if url.tls {
                o.set_transport(Transport::tls_with_config(tls_config(settings)?));
            }
            o
        }
    };
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
        .set_inflight(100)
        .set_request_channel_capacity(10_000);
    Ok(opts)
}

/// TLS for `mqtts://`: the public web roots, plus the CAs in `VFC_MQTT_CA_FILE` if set.
pub fn tls_config(settings: &Settings) -> anyhow::Result<TlsConfiguration> {
    firmware_bridge::broker::tls_config(settings.mqtt_ca_file.as_deref()).context("VFC_MQTT_CA_FILE")
}

/// The topic filters the service subscribes to, through the share group when one is set:
/// loggers' own topics, and gateways' topics in a group of their own (rumqttd's shared
/// subscriptions deliver only one filter per group).
pub fn filters(share_group: Option<&str>) -> Vec<String> {
    match share_group {
        Some(g) => vec![
            format!("$share/{g}/{}", wire::LOGGERS_FILTER),
            format!("$share/{g}-gateways/{}", wire::GATEWAYS_FILTER),
        ],
        None => vec![wire::LOGGERS_FILTER.to_string(), wire::GATEWAYS_FILTER.to_string()],
    }
}

/// Runs the subscriber until `cancel`; the batch in progress is committed and acknowledged
/// before it returns.
pub async fn run(
    db: Db,
    settings: Settings,
    health: Arc<MqttHealth>,
    committed: Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (connections, share_group) = match (&settings.mqtt, settings.mqtt_share_group.as_deref()) {
        (MqttBroker::Embedded, None) => (EMBEDDED_CONNECTIONS, Some("vfc-ingest")),
        (_, group) => (1, group),
    };
    health.connections.store(connections, Ordering::Relaxed);
    // Bounded. The brokers keep at most their in-flight window per connection unacknowledged,
    // and a message is acknowledged only once committed, so this never fills in practice; a
    // broker that ignores its window makes the poller wait here (TCP backpressure), and
    // whatever the broker then times out it delivers again.
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let mut clients = Vec::with_capacity(connections);
    let mut pollers = Vec::with_capacity(connections);
    for k in 0..connections {
        let id = if k == 0 {
            settings.mqtt_client_id.clone()
        } else {
            format!("{}-{k}", settings.mqtt_client_id)
        };
        let mut opts = options(&settings, &id)?;
        opts.set_clean_session(false).set_manual_acks(true);
        let (client, eventloop) = AsyncClient::new(opts, 10_000);
        clients.push(client.clone());
        let connection = Connection {
            index: k,
            client,
            filters: filters(share_group),
            health: health.clone(),
        };
        pollers.push(tokio::spawn(poll(eventloop, connection, tx.clone(), cancel.clone())));
    }
    drop(tx);
    let batcher = tokio::spawn(batcher(db, clients.clone(), rx, health, committed, cancel.clone()));
    for p in pollers {
        let _ = p.await;
    }
    // The poll loops dropped their senders: the batcher drains what it has and stops.
    batcher.await.context("the ingest batcher panicked")?;
    for c in clients {
        let _ = c.try_disconnect();
    }
    Ok(())
}

/// One subscriber connection.
struct Connection {
    index: usize,
    client: AsyncClient,
    filters: Vec<String>,
    health: Arc<MqttHealth>,
}

async fn poll(
    mut eventloop: EventLoop,
    conn: Connection,
    tx: mpsc::Sender<(usize, Publish)>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let (mut connected, mut subscribed) = (false, false);
    let mut last_warned: Option<Instant> = None;
    let health = &conn.health;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(
                    session_present = ack.session_present,
                    connection = conn.index,
                    "connected to the MQTT broker"
                );
                if !connected {
                    connected = true;
                    health.connected.fetch_add(1, Ordering::Relaxed);
                }
                backoff = Duration::from_millis(100);
                // The broker may have forgotten the session (restart without persistence):
                // subscribe again every time. One SUBSCRIBE for every filter: its one SubAck
                // means the service hears loggers and gateways alike.
                let filters = conn
                    .filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = conn.client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, filters = ?conn.filters, "could not queue the subscription");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if !subscribed {
                    subscribed = true;
                    health.subscribed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let sent = tokio::select! {
                    _ = cancel.cancelled() => break,
                    s = tx.send((conn.index, p)) => s,
                };
                if sent.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if subscribed {
                    subscribed = false;
                    health.subscribed.fetch_sub(1, Ordering::Relaxed);
                }
                if connected {
                    connected = false;
                    health.connected.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, connection = conn.index, "lost the MQTT broker; reconnecting");
                } else if conn.index == 0 && last_warned.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(60))
                {
                    // A wrong address, port or password must not look like a quiet broker: said
                    // at once and every minute while it lasts.
                    tracing::warn!(
                        error = %e,
                        "cannot reach the MQTT broker: check VFC_MQTT_URL (host, port, and the user and password of \
                         the service's broker account, vfc-service in deploy/mosquitto.acl); trying again"
                    );
                    last_warned = Some(Instant::now());
                } else {
                    tracing::debug!(error = %e, retry_in = ?backoff, "MQTT broker unreachable");
                }
                metrics::counter!("vfc_mqtt_connection_errors_total").increment(1);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if subscribed {
        health.subscribed.fetch_sub(1, Ordering::Relaxed);
    }
    if connected {
        health.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes what has arrived (at least one message, at most [`MAX_BATCH`]), commits it, acks it.
async fn batcher(
    db: Db,
    clients: Vec<AsyncClient>,
    mut rx: mpsc::Receiver<(usize, Publish)>,
    health: Arc<MqttHealth>,
    committed: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut known = KnownSerials::default();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let incoming: Vec<Incoming> = batch
            .iter()
            .map(|(_, p)| Incoming {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
            })
            .collect();
        let Some(outcome) = commit_until_done(&db, &mut known, &incoming, &cancel).await else {
            // Shutting down mid-retry: nothing was acked, the broker redelivers.
            return;
        };
        health.stored.fetch_add(outcome.stored, Ordering::Relaxed);
        committed.notify_one();
        for (k, p) in &batch {
            if let Err(e) = clients[*k].ack(p).await {
                tracing::warn!(error = %e, "could not queue an ack (the broker will redeliver; harmless)");
            }
        }
        for (gateway, epoch, serial, seq) in outcome.confirmations {
            let payload = serde_json::to_vec(&wire::Committed { epoch, seq }).expect("plain struct");
            if let Err(e) = clients[0]
                .publish(
                    wire::committed_topic(&gateway, &serial),
                    QoS::AtLeastOnce,
                    true,
                    payload,
                )
                .await
            {
                tracing::warn!(error = %e, %gateway, %serial, "could not queue a confirmation; the next batch repeats it");
            }
        }
    }
}

/// Commits a batch, retrying through database hiccups; `None` if cancelled first. A batch the
/// database refuses for its data is committed message by message, and a message refused on its
/// own becomes a dead letter: one poison message never stalls the ingest.
async fn commit_until_done(
    db: &Db,
    known: &mut KnownSerials,
    batch: &[Incoming],
    cancel: &CancellationToken,
) -> Option<ingest::Outcome> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        match ingest::commit(db, known, batch).await {
            Ok(outcome) => {
                record(&outcome, batch.len(), started.elapsed());
                return Some(outcome);
            }
            Err(e) if !ingest::is_transient(db, &e) => {
                tracing::warn!(error = %e, messages = batch.len(), "a batch was refused; committing its messages one by one");
                let mut total = ingest::Outcome::default();
                for msg in batch {
                    let one = std::slice::from_ref(msg);
                    let outcome = loop {
                        match ingest::commit(db, known, one).await {
                            Ok(o) => break o,
                            Err(e) if ingest::is_transient(db, &e) => {}
                            Err(e) => match ingest::dead_letter_only(db, msg, &e.to_string()).await {
                                Ok(()) => {
                                    break ingest::Outcome {
                                        dead_letters: 1,
                                        ..Default::default()
                                    }
                                }
                                Err(e2) => tracing::error!(error = %e2, "could not record a dead letter; retrying"),
                            },
                        }
                        tokio::select! {
                            _ = cancel.cancelled() => return None,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    };
                    total.stored += outcome.stored;
                    total.duplicates += outcome.duplicates;
                    total.held += outcome.held;
                    total.dead_letters += outcome.dead_letters;
                    total.statuses += outcome.statuses;
                    total.confirmations.extend(outcome.confirmations);
                    total.newest_ts = total.newest_ts.max(outcome.newest_ts);
                }
                record(&total, batch.len(), started.elapsed());
                return Some(total);
            }
            Err(e) => {
                metrics::counter!("vfc_ingest_commit_errors_total").increment(1);
                tracing::error!(error = %e, messages = batch.len(), retry_in = ?backoff, "could not commit readings; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn record(outcome: &ingest::Outcome, messages: usize, took: Duration) {
    metrics::counter!("vfc_readings_stored_total").increment(outcome.stored);
    metrics::counter!("vfc_readings_duplicate_total").increment(outcome.duplicates);
    metrics::counter!("vfc_dead_letters_total").increment(outcome.dead_letters);
    metrics::counter!("vfc_logger_status_total").increment(outcome.statuses);
    metrics::histogram!("vfc_ingest_batch_messages").record(messages as f64);
    metrics::histogram!("vfc_ingest_commit_seconds").record(took.as_secs_f64());
    if let Some(ts) = outcome.newest_ts {
        metrics::gauge!("vfc_ingest_lag_seconds").set(ingest::lag_ms(ts) as f64 / 1000.0);
    }
    if outcome.dead_letters > 0 {
        tracing::warn!(
            dead_letters = outcome.dead_letters,
            "payloads refused; see GET /api/v1/dead-letters"
        );
    }
}
