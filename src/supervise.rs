//! Background tasks that cannot stop silently (docs/architecture.md, "Alarms that cannot
//! silently stop").
//!
//! Every background task of `vfc serve` — ingest, evaluator, escalation, device checks, email
//! sender, MLLP listener, HL7 intake — runs under [`Tasks::spawn`]: a task that returns or
//! panics is logged, counted (`vfc_task_restarts_total`) and started again with backoff, and
//! while it is down `/healthz` answers 503 naming it. What a task needs in order to start at
//! all (a port, a folder, a TLS configuration) is checked before it is spawned, so a task that
//! cannot even start stops the process with an error and a non-zero exit, for systemd to see.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// It stopped or failed, and waits out its backoff before starting again.
    Restarting,
    /// Stopped because the service is stopping.
    Stopped,
}

/// First restart after 100 ms, doubling to at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A task that ran this long before failing starts again from the shortest backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// The supervised tasks and their states, shared with `/healthz`.
#[derive(Clone, Default)]
pub struct Tasks {
    states: Arc<Mutex<BTreeMap<&'static str, State>>>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self, name: &'static str, state: State) {
        self.states.lock().expect("task states").insert(name, state);
    }

    /// Every task and its state.
    pub fn states(&self) -> BTreeMap<&'static str, State> {
        self.states.lock().expect("task states").clone()
    }

    /// The tasks that are not running, by name.
    pub fn down(&self) -> Vec<&'static str> {
        self.states()
            .into_iter()
            .filter(|(_, s)| *s != State::Running)
            .map(|(n, _)| n)
            .collect()
    }

    /// Runs `start()` as task `name` until `cancel`, starting it again with backoff whenever it
    /// returns or panics before then.
    pub fn spawn<F, Fut>(&self, name: &'static str, cancel: CancellationToken, mut start: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let tasks = self.clone();
        tasks.set(name, State::Running);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                tasks.set(name, State::Running);
                let started = Instant::now();
                let ended = tokio::spawn(start()).await;
                if cancel.is_cancelled() {
                    tasks.set(name, State::Stopped);
                    return;
                }
                match ended {
                    Ok(Ok(())) => {
                        tracing::error!(task = name, retry_in = ?backoff, "background task stopped; starting it again")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(task = name, error = ?e, retry_in = ?backoff, "background task failed; starting it again")
                    }
                    Err(e) => {
                        tracing::error!(task = name, error = %e, retry_in = ?backoff, "background task panicked; starting it again")
                    }
                }
                metrics::counter!("vfc_task_restarts_total", "task" => name).increment(1);
                tasks.set(name, State::Restarting);
                if started.elapsed() > HEALTHY_AFTER {
                    backoff = Duration::from_millis(100);
                }
                tokio::select! {
                    _ = cancel.cancelled() => {
                        tasks.set(name, State::Stopped);
                        return;
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_task_that_fails_is_restarting_and_then_running_again() {
        let tasks = Tasks::new();
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let counted = runs.clone();
        let handle = tasks.spawn("flaky", cancel.clone(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                if n == 0 {
                    anyhow::bail!("first run fails");
                }
                tx.send(()).unwrap();
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        rx.recv().await.expect("the second run starts");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(tasks.states().get("flaky"), Some(&State::Running));
        assert!(tasks.down().is_empty());
        cancel.cancel();
        handle.abort();
    }

    #[tokio::test]
    async fn a_task_that_panics_is_started_again() {
        let tasks = Tasks::new();
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let counted = runs.clone();
        let handle = tasks.spawn("panicky", cancel.clone(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                assert!(n > 0, "the first run panics");
                tx.send(()).unwrap();
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        rx.recv().await.expect("started again after the panic");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        cancel.cancel();
        handle.abort();
    }
}
