//! The clinic gateway: sources → spool (on disk, fsync'd) → broker, and the service's
//! confirmation → out of the spool (docs/architecture.md: `gateway`, `epoch`, `seq`,
//! `vfc/gateways/{gateway}/committed/{serial}`).
//!
//! A reading leaves the spool only when the service's retained confirmation covers it, never on
//! the broker's PUBACK: a broker that loses its queue costs nothing, because what stays
//! unconfirmed is published again, oldest first, after a timeout that doubles while nothing
//! moves. At most `window` readings per logger are out unconfirmed at a time, in batches of
//! `batch`, so a long outage's backlog drains at the pace the service confirms, not as a storm.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::MqttUrl;
use crate::feed::{Device, Fed, Feed};
use crate::spool::{Spool, SpoolError};
use crate::wire::{self, GatewayBatch, WireReading};

/// Where the gateway sends, how it paces, and where it keeps its spool.
#[derive(Debug, Clone)]
pub struct Config {
    pub broker: MqttUrl,
    pub ca_file: Option<PathBuf>,
    pub gateway_id: String,
    pub spool_dir: PathBuf,
    pub spool_cap_bytes: u64,
    /// First wait for a confirmation before publishing again; doubles up to `resend_max`.
    pub resend_after: Duration,
    pub resend_max: Duration,
    pub status_every: Duration,
    /// How long readings the broker acknowledged may stay unconfirmed before the gateway warns
    /// (a broker account whose ACL drops them, or a gateway the service does not know).
    pub unconfirmed_warning_after: Duration,
    /// Readings per message.
    pub batch: usize,
    /// Readings per logger published and not yet confirmed.
    pub window: usize,
    /// Stop once every source has finished and the spool is empty (tests, one-off uploads).
    pub exit_when_drained: bool,
}

impl Config {
    pub fn new(broker: MqttUrl, gateway_id: String, spool_dir: PathBuf) -> Config {
        Config {
            broker,
            ca_file: None,
            gateway_id,
            spool_dir,
            spool_cap_bytes: DEFAULT_SPOOL_CAP,
            resend_after: Duration::from_secs(15),
            resend_max: Duration::from_secs(600),
            status_every: Duration::from_secs(300),
            unconfirmed_warning_after: DEFAULT_UNCONFIRMED_WARNING,
            batch: DEFAULT_BATCH,
            window: DEFAULT_WINDOW,
            exit_when_drained: false,
        }
    }
}

/// Ten minutes: far longer than a healthy service takes to confirm.
pub const DEFAULT_UNCONFIRMED_WARNING: Duration = Duration::from_secs(600);

/// Readings per message.
pub const DEFAULT_BATCH: usize = 500;
/// Readings per logger published and not yet confirmed.
pub const DEFAULT_WINDOW: usize = 2_000;

/// 256 MiB: at about 64 bytes a reading, some four million readings — four loggers reading
/// every five minutes for ten years.
pub const DEFAULT_SPOOL_CAP: u64 = 256 * 1024 * 1024;

/// A source task: it gets a [`Feed`] and returns when done (or when the gateway stops).
pub type Source = Box<dyn FnOnce(Feed) -> SourceFuture + Send>;
pub type SourceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// Wraps an async source for [`run`].
pub fn source<F, Fut>(f: F) -> Source
where
    F: FnOnce(Feed) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Box::new(move |feed| Box::pin(f(feed)))
}

/// A valid gateway id from this machine's host name: `gw-{hostname}`.
pub fn default_gateway_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .take(60)
        .collect();
    if clean.is_empty() {
        "gw-gateway".into()
    } else {
        format!("gw-{clean}")
    }
}

enum Net {
    Up,
    Down(String),
    /// The broker acknowledged a publish (which says nothing of whether it passed the ACL).
    Acked,
    Committed(String, wire::Committed),
}

/// Per logger: what was published and when the confirmation last moved.
struct Flight {
    sent_upto: u64,
    since: Instant,
    backoff: Duration,
    /// Since when readings have been out with no confirmation moving (`None`: none out).
    waiting_since: Option<Instant>,
}

/// Runs the gateway until `cancel` (or, with `exit_when_drained`, until everything is confirmed).
pub async fn run(cfg: Config, sources: Vec<Source>, cancel: CancellationToken) -> anyhow::Result<()> {
    if !wire::is_gateway_id(&cfg.gateway_id) {
        anyhow::bail!(
            "gateway id {:?} must be \"gw-\" and 1 to 60 letters, digits or hyphens (it is also the broker username)",
            cfg.gateway_id
        );
    }
    let spool = Spool::open(&cfg.spool_dir, cfg.spool_cap_bytes)
        .with_context(|| format!("opening the spool in {}", cfg.spool_dir.display()))?;
    let epoch = spool.epoch().to_string();
    tracing::info!(
        gateway = %cfg.gateway_id, broker = %cfg.broker, spool = %cfg.spool_dir.display(), %epoch,
        unconfirmed = spool.depth(), "gateway starting"
    );
    let spool = Arc::new(Mutex::new(spool));

    let mut opts = MqttOptions::new(cfg.gateway_id.clone(), cfg.broker.host.clone(), cfg.broker.port);
    if let Some(user) = &cfg.broker.username {
        opts.set_credentials(user.clone(), cfg.broker.password.clone().unwrap_or_default());
    }
    if cfg.broker.tls {
        opts.set_transport(Transport::tls_with_config(crate::broker::tls_config(
            cfg.ca_file.as_deref(),
        )?));
    }
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);

    let (net_tx, mut net_rx) = mpsc::channel::<Net>(1024);
    let poll_cancel = cancel.child_token();
    let poller = {
        let stop = poll_cancel.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = eventloop.poll() => e,
                };
                let msg = match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(500);
                        Net::Up
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => Net::Acked,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let serial = p.topic.rsplit('/').next().unwrap_or_default().to_string();
                        match serde_json::from_slice::<wire::Committed>(&p.payload) {
                            Ok(c) => Net::Committed(serial, c),
                            Err(e) => {
                                tracing::warn!(topic = %p.topic, "unreadable confirmation: {e}");
                                continue;
                            }
                        }
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = net_tx.send(Net::Down(e.to_string())).await;
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                if net_tx.send(msg).await.is_err() {
                    return;
                }
            }
        })
    };

    let (fed_tx, mut fed_rx) = mpsc::channel::<Fed>(16);
    let mut tasks = JoinSet::new();
    for s in sources {
        let feed = Feed {
            tx: fed_tx.clone(),
            cancel: cancel.child_token(),
        };
        tasks.spawn(s(feed));
    }
    drop(fed_tx);

    let mut g = Gateway {
        cfg,
        epoch,
        spool,
        client,
        connected: false,
        flights: HashMap::new(),
        devices: HashMap::new(),
        warned_near_cap: false,
        full: false,
        last_puback: None,
        unconfirmed: None,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = Instant::now();
    let mut last_unreachable: Option<Instant> = None;
    let mut sources_done = tasks.is_empty();
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            fed = fed_rx.recv(), if !sources_done => match fed {
                Some(Fed::Take(readings, note, done)) => {
                    let r = g.take(readings, note).await;
                    let _ = done.send(r);
                    g.send();
                }
                Some(Fed::Note(key, reply)) => {
                    let _ = reply.send(g.spool.lock().unwrap_or_else(|p| p.into_inner()).note(&key).map(str::to_string));
                }
                Some(Fed::Device(serial, device)) => {
                    g.devices.insert(serial, device);
                }
                None => sources_done = true,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Err(e.context("a source failed")),
                    Err(e) => break Err(anyhow::anyhow!(e).context("a source panicked")),
                }
            },
            net = net_rx.recv() => match net {
                Some(Net::Up) => {
                    tracing::info!(broker = %g.cfg.broker, "connected to the broker");
                    g.connected = true;
                    let filter = format!("vfc/gateways/{}/committed/+", g.cfg.gateway_id);
                    if let Err(e) = g.client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::warn!("could not subscribe to confirmations: {e}");
                    }
                    // Whatever was out may be lost with the old connection: from the oldest again.
                    g.flights.clear();
                    g.status();
                    last_status = Instant::now();
                    g.send();
                }
                Some(Net::Down(why)) => {
                    if g.connected {
                        tracing::warn!(broker = %g.cfg.broker, "lost the broker ({why}); readings stay in the spool");
                        last_unreachable = Some(Instant::now());
                    } else if last_unreachable.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        // A wrong address, port or login must not look like a quiet gateway.
                        tracing::warn!(
                            broker = %g.cfg.broker, unconfirmed = g.depth(),
                            "cannot reach the broker ({why}); readings wait in the spool; trying again"
                        );
                        last_unreachable = Some(Instant::now());
                    }
                    g.connected = false;
                }
                Some(Net::Acked) => g.last_puback = Some(Instant::now()),
                Some(Net::Committed(serial, c)) => {
                    g.confirmed(serial, c).await;
                    g.send();
                }
                // It stops on the same signal as this loop: only an unasked stop is an error.
                None if cancel.is_cancelled() => break Ok(()),
                None => break Err(anyhow::anyhow!("the MQTT connection task stopped")),
            },
            _ = tick.tick() => {
                g.send();
                g.watch_unconfirmed();
                if last_status.elapsed() >= g.cfg.status_every {
                    g.status();
                    last_status = Instant::now();
                }
                if g.cfg.exit_when_drained && tasks.is_empty() && g.depth() == 0 {
                    tracing::info!("every source is done and every reading confirmed");
                    break Ok(());
                }
            }
        }
    };
    cancel.cancel();
    poll_cancel.cancel();
    while tasks.join_next().await.is_some() {}
    if g.connected {
        let _ = g.client.disconnect().await;
    }
    let _ = poller.await;
    tracing::info!(
        unconfirmed = g.depth(),
        "gateway stopped; unconfirmed readings stay in the spool"
    );
    result
}

struct Gateway {
    cfg: Config,
    epoch: String,
    spool: Arc<Mutex<Spool>>,
    client: AsyncClient,
    connected: bool,
    flights: HashMap<String, Flight>,
    devices: HashMap<String, Device>,
    warned_near_cap: bool,
    full: bool,
    /// When the broker last acknowledged a publish.
    last_puback: Option<Instant>,
    /// The warning in force while acknowledged readings stay unconfirmed, and when it was
    /// last logged.
    unconfirmed: Option<(String, Instant)>,
}

impl Gateway {
    fn depth(&self) -> usize {
        self.spool.lock().unwrap_or_else(|p| p.into_inner()).depth()
    }

    async fn take(
        &mut self,
        readings: Vec<crate::feed::Reading>,
        note: Option<(String, String)>,
    ) -> Result<(), String> {
        let spool = self.spool.clone();
        let rows: Vec<_> = readings.into_iter().map(|r| (r.serial, r.ts, r.temp_c)).collect();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|p| p.into_inner());
            let r = s
                .take(&rows, note.as_ref().map(|(k, v)| (k.as_str(), v.as_str())))
                .map(|_| ());
            (r, s.near_cap())
        })
        .await
        .map_err(|e| e.to_string())?;
        match outcome {
            (Ok(()), near) => {
                if self.full {
                    tracing::info!("the spool has room again: taking readings");
                    self.full = false;
                }
                if near && !self.warned_near_cap {
                    tracing::warn!(
                        cap_bytes = self.cfg.spool_cap_bytes,
                        "the spool is over 90% of its cap: readings are not reaching the service; at the cap new readings are refused"
                    );
                    self.warned_near_cap = true;
                    self.status();
                } else if !near {
                    self.warned_near_cap = false;
                }
                Ok(())
            }
            (Err(e), _) => {
                // Loud on every try: the source holds its readings and tries again in seconds.
                tracing::error!("NOT TAKING READINGS: {e}");
                if matches!(e, SpoolError::Full(_)) && !self.full {
                    self.full = true;
                    self.status();
                }
                Err(e.to_string())
            }
        }
    }

    async fn confirmed(&mut self, serial: String, c: wire::Committed) {
        if c.epoch != self.epoch {
            // A confirmation for an earlier spool of this gateway id: nothing of ours.
            return;
        }
        let spool = self.spool.clone();
        let key = serial.clone();
        let gone =
            tokio::task::spawn_blocking(move || spool.lock().unwrap_or_else(|p| p.into_inner()).confirm(&key, c.seq))
                .await;
        match gone {
            Ok(Ok(n)) if n > 0 => {
                if let Some(f) = self.flights.get_mut(&serial) {
                    f.since = Instant::now();
                    f.backoff = self.cfg.resend_after;
                    f.waiting_since = (f.sent_upto > c.seq).then(Instant::now);
                }
                if self.unconfirmed.is_some() && self.flights.values().all(|f| f.waiting_since.is_none()) {
                    tracing::info!("the service confirms readings again");
                    self.unconfirmed = None;
                    self.status();
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(%serial, "could not record a confirmation in the spool: {e}"),
            Err(e) => tracing::error!(%serial, "confirmation task failed: {e}"),
        }
    }

    /// Publishes what is due: new readings up to the window, or everything unconfirmed again
    /// once the confirmation has not moved for the logger's backoff.
    fn send(&mut self) {
        if !self.connected {
            return;
        }
        let spool = self.spool.clone();
        let spool = spool.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let serials: Vec<String> = spool.serials().map(str::to_string).collect();
        for serial in serials {
            let Some(first) = spool.pending(&serial).next().map(|e| e.seq) else {
                self.flights.remove(&serial);
                continue;
            };
            let confirmed = first - 1;
            let f = self.flights.entry(serial.clone()).or_insert(Flight {
                sent_upto: confirmed,
                since: now,
                backoff: self.cfg.resend_after,
                waiting_since: None,
            });
            f.sent_upto = f.sent_upto.max(confirmed);
            if f.sent_upto == confirmed {
                f.waiting_since = None;
            }
            if f.sent_upto > confirmed && now.duration_since(f.since) >= f.backoff {
                tracing::warn!(
                    %serial, from_seq = first, waited_s = f.backoff.as_secs_f64(),
                    "no confirmation from the service: publishing the unconfirmed readings again"
                );
                f.sent_upto = confirmed;
                f.since = now;
                f.backoff = (f.backoff * 2).min(self.cfg.resend_max);
            }
            while ((f.sent_upto - confirmed) as usize) < self.cfg.window {
                let room = self.cfg.window - (f.sent_upto - confirmed) as usize;
                let chunk: Vec<WireReading> = spool
                    .pending(&serial)
                    .skip_while(|e| e.seq <= f.sent_upto)
                    .take(room.min(self.cfg.batch))
                    .map(|e| WireReading {
                        ts: e.ts,
                        temp_c: e.temp_c,
                        seq: Some(e.seq),
                    })
                    .collect();
                let Some(last) = chunk.last().and_then(|r| r.seq) else {
                    break;
                };
                let payload = serde_json::to_vec(&GatewayBatch {
                    readings: &chunk,
                    gateway: &self.cfg.gateway_id,
                    epoch: &self.epoch,
                    battery_pct: self.devices.get(&serial).and_then(|d| d.battery_pct),
                })
                .expect("a batch serialises");
                match self.client.try_publish(
                    wire::gateway_readings_topic(&self.cfg.gateway_id, &serial),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                ) {
                    Ok(()) => {
                        if f.sent_upto == confirmed {
                            f.since = now;
                        }
                        f.waiting_since.get_or_insert(now);
                        f.sent_upto = last;
                    }
                    // The connection's queue is full: the next tick goes on from here.
                    Err(_) => return,
                }
            }
        }
    }

    /// Warns, loudly and in the status, when the broker keeps acknowledging readings the
    /// service never confirms. Under MQTT 3.1.1 a broker acknowledges a publish its ACL refuses
    /// and drops it, so this is how a wrong broker account or an unregistered gateway looks
    /// from the clinic; the readings stay in the spool meanwhile.
    fn watch_unconfirmed(&mut self) {
        let now = Instant::now();
        let after = self.cfg.unconfirmed_warning_after;
        let Some(oldest) = self.flights.values().filter_map(|f| f.waiting_since).min() else {
            return;
        };
        let acked_meanwhile = self.last_puback.is_some_and(|t| t >= oldest);
        if !self.connected || !acked_meanwhile || now.duration_since(oldest) < after {
            return;
        }
        if self
            .unconfirmed
            .as_ref()
            .is_some_and(|(_, logged)| now.duration_since(*logged) < after)
        {
            return;
        }
        let text = format!(
            "readings the broker accepted have had no confirmation from the service for {} min: \
             check that the broker account is {} and may publish on vfc/gateways/{}/loggers/+/readings, \
             and that the gateway is registered with the service",
            now.duration_since(oldest).as_secs() / 60,
            self.cfg.gateway_id,
            self.cfg.gateway_id
        );
        tracing::error!(gateway = %self.cfg.gateway_id, unconfirmed = self.depth(), "UNCONFIRMED READINGS: {text}");
        let first = self.unconfirmed.is_none();
        self.unconfirmed = Some((text, now));
        if first {
            self.status();
        }
    }

    /// Each logger's status: battery, the spool's depth for it, and a warning near the cap or
    /// while readings stay unconfirmed.
    fn status(&mut self) {
        if !self.connected {
            return;
        }
        let spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        let warning = if let Some((text, _)) = &self.unconfirmed {
            Some(text.clone())
        } else if self.full {
            Some("spool full: the gateway is not taking new readings".to_string())
        } else if spool.near_cap() {
            Some("spool over 90% of its cap".to_string())
        } else {
            None
        };
        let mut serials: Vec<String> = spool.serials().map(str::to_string).collect();
        serials.extend(
            self.devices
                .keys()
                .filter(|k| !serials.contains(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
        for serial in serials {
            let status = wire::Status {
                battery_pct: self.devices.get(&serial).and_then(|d| d.battery_pct),
                probe_connected: self.devices.get(&serial).and_then(|d| d.probe_connected),
                firmware: Some(concat!("firmware-bridge ", env!("CARGO_PKG_VERSION")).into()),
                gateway: Some(self.cfg.gateway_id.clone()),
                spool_depth: Some(spool.pending(&serial).count() as u64),
                spool_warning: warning.clone(),
            };
            let payload = serde_json::to_vec(&status).expect("a status serialises");
            if self
                .client
                .try_publish(
                    wire::gateway_status_topic(&self.cfg.gateway_id, &serial),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .is_err()
            {
                return;
            }
        }
    }
}
