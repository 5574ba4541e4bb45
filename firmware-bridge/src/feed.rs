//! How sources hand readings to the gateway: a batch is "taken" only once it is in the spool
//! on disk; until then the source keeps it (and its place in a file).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// One reading, as a source produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub serial: String,
    pub ts: DateTime<Utc>,
    pub temp_c: f64,
}

/// What a source sends the gateway.
pub enum Fed {
    /// Readings to spool, with a note of the source's own (where it is in a file) written in the
    /// same fsync; the answer says whether they are on disk.
    Take(
        Vec<Reading>,
        Option<(String, String)>,
        oneshot::Sender<Result<(), String>>,
    ),
    /// What the source noted last under a key.
    Note(String, oneshot::Sender<Option<String>>),
    /// What a logger reports of itself: battery, whether its probe is connected.
    Device(String, Device),
}

/// A logger's own condition, for its status.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Device {
    pub battery_pct: Option<f64>,
    pub probe_connected: Option<bool>,
}

/// A source's handle on the gateway.
#[derive(Clone)]
pub struct Feed {
    pub(crate) tx: mpsc::Sender<Fed>,
    pub(crate) cancel: CancellationToken,
}

/// The gateway is stopping; the source stops too, with nothing lost.
#[derive(Debug)]
pub struct Stopped;

impl Feed {
    /// Waits until the readings are in the spool. A full spool (or a disk error) is retried
    /// every few seconds: the source holds on to its readings rather than drop them.
    pub async fn take(&self, readings: Vec<Reading>, note: Option<(String, String)>) -> Result<(), Stopped> {
        if readings.is_empty() && note.is_none() {
            return Ok(());
        }
        loop {
            let (done, answer) = oneshot::channel();
            if self
                .tx
                .send(Fed::Take(readings.clone(), note.clone(), done))
                .await
                .is_err()
            {
                return Err(Stopped);
            }
            match answer.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(_)) => {
                    // The gateway has logged why; try again when it may have room.
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Err(Stopped),
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(_) => return Err(Stopped),
            }
        }
    }

    /// What this source noted last under `key` (kept in the spool).
    pub async fn note(&self, key: &str) -> Result<Option<String>, Stopped> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Fed::Note(key.to_string(), done))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    pub async fn device(&self, serial: &str, device: Device) {
        let _ = self.tx.send(Fed::Device(serial.to_string(), device)).await;
    }

    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }
}
