//! Taking a VXU: every message once, keyed (MSH-3, MSH-4, MSH-10) — sent again, it gets its
//! original ACK and changes nothing — and every dose through `inventory::doses`.
//!
//! Messages from concurrent senders are committed together: one worker takes what is waiting,
//! records the batch in one transaction and commits once. Should any message fail on the
//! database, the batch is rolled back and replayed message by message, each in its own
//! transaction, so one bad message never undoes another. Durability stays as the store sets it (SQLite `synchronous=FULL`); the ACK
//! goes out only after that commit.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use std::collections::HashMap;

use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use super::ack::{self, AckCode};
use super::messages::{self, kept, Kept, Key};
use super::vxu::{self, Header};
use super::Issue;
use crate::accounts::audit::{self, Who};
use crate::accounts::Scope;
use crate::inventory::doses::{self, Outcome, Unmatched};
use crate::inventory::{catalog, Place};
use crate::store::{now_millis, Db};

/// Who sent a message: the part of the program it may report for, and how records name it.
#[derive(Debug, Clone)]
pub struct Sender {
    pub scope: Scope,
    pub actor: String,
}

static ACK_SEQ: AtomicU64 = AtomicU64::new(0);

/// Commits and the messages they carried, since start (for `vfc bench hl7`).
pub static COMMITS: AtomicU64 = AtomicU64::new(0);
pub static COMMITTED_MESSAGES: AtomicU64 = AtomicU64::new(0);

fn ack_id() -> String {
    format!(
        "VFC{}{:04}",
        now_millis(),
        ACK_SEQ.fetch_add(1, Ordering::Relaxed) % 10_000
    )
}

fn reply(header: Option<&Header>, code: AckCode, issues: &[Issue]) -> String {
    ack::build(header, code, issues, &ack_id(), chrono::Utc::now())
}

/// Facilities and vaccines already looked up: messages mostly come from the same clinics and
/// name the same vaccines. Only what was found is kept, for a few seconds, and dropped at once
/// when this process changes a facility id or the catalog
/// ([`crate::registry::directory_generation`]).
#[derive(Default)]
pub struct Lookups {
    facilities: HashMap<String, Place>,
    products: HashMap<String, (Vec<String>, Option<String>)>,
    since: Option<(std::time::Instant, u64)>,
    /// Stock rows read in this batch's transaction (dropped with it).
    stock: doses::matching::StockCache,
}

impl Lookups {
    const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(10);

    fn refresh(&mut self) {
        let generation = crate::registry::directory_generation();
        let stale = self
            .since
            .is_none_or(|(t, g)| t.elapsed() > Self::FRESH_FOR || g != generation);
        if stale {
            *self = Lookups {
                since: Some((std::time::Instant::now(), generation)),
                ..Default::default()
            };
        }
    }
}

fn key(sender: &Sender, h: &Header) -> Key {
    (
        sender.scope.key(),
        h.sending_app.clone(),
        h.sending_facility.clone(),
        h.control_id.clone(),
    )
}

/// Records one message on `conn` (inside the caller's transaction) and returns its ACK. An
/// `Err` is a database failure: the caller rolls back and the sender should send again.
pub async fn process(
    conn: &mut AnyConnection,
    raw: &str,
    sender: &Sender,
    seen: &mut Lookups,
) -> anyhow::Result<String> {
    let parsed = match vxu::parse(raw) {
        Ok(p) => p,
        Err(refused) => return Ok(refuse(&refused)),
    };
    if let Some(ack) = kept(conn, &[key(sender, &parsed.header)]).await?.into_values().next() {
        metrics::counter!("vfc_hl7_messages_total", "ack" => "duplicate").increment(1);
        return Ok(ack);
    }
    let (ack, keep, audited) = record(conn, &parsed, sender, seen).await?;
    if let Some(k) = keep {
        messages::store(conn, &[k]).await?;
    }
    audit::record_many(conn, audited.as_slice()).await?;
    Ok(ack)
}

fn refuse(refused: &vxu::Refused) -> String {
    metrics::counter!("vfc_hl7_messages_total", "ack" => "AR").increment(1);
    reply(
        refused.header.as_ref(),
        AckCode::Rejected,
        std::slice::from_ref(&refused.issue),
    )
}

/// Records a message known not to be a duplicate: its ACK, and what to keep of it.
async fn record(
    conn: &mut AnyConnection,
    parsed: &vxu::Parsed,
    sender: &Sender,
    seen: &mut Lookups,
) -> anyhow::Result<(String, Option<Kept>, Option<(Who, audit::Entry)>)> {
    let h = &parsed.header;
    if !parsed.errors.is_empty() {
        metrics::counter!("vfc_hl7_messages_total", "ack" => "AE").increment(1);
        return Ok((reply(Some(h), AckCode::Error, &parsed.errors), None, None));
    }

    // Where each dose was given, as far as this sender may report.
    let mut places = Vec::with_capacity(parsed.doses.len());
    for d in &parsed.doses {
        let Ok(d) = d else {
            places.push(None);
            continue;
        };
        let place = match seen.facilities.get(&d.facility) {
            Some(p) => Some(p.clone()),
            None => {
                let p = doses::facility(conn, &d.facility).await.map_err(anyhow::Error::from)?;
                if let Some(p) = &p {
                    seen.facilities.insert(d.facility.clone(), p.clone());
                }
                p
            }
        };
        // A facility outside the sender's scope is, to the sender, no facility at all: the same
        // answer as an unknown one, so no sender learns another PIN's facilities.
        let place = place.filter(|p| sender.scope.covers_code(&p.pin, &p.code));
        places.push(Some(place));
    }

    let now = now_millis();
    let mut issues = Vec::new();
    let mut recorded = 0;
    let mut changed: Vec<i64> = Vec::new();
    let mut at_place: Option<(String, String)> = None;
    for (d, place) in parsed.doses.iter().zip(places) {
        let d = match d {
            Ok(d) => d,
            Err(issue) => {
                issues.push(issue.clone());
                continue;
            }
        };
        let Some(place) = place.flatten() else {
            issues.push(Issue::error(
                Some(d.facility_at),
                204,
                format!(
                    "facility {} is not a registered VFC location for this sender: use the location code (e.g. 012345A) \
                     or register the EHR's id with PUT /api/v1/locations/{{code}}/facility-ids",
                    d.facility
                ),
            ));
            continue;
        };
        let report = match d.report(place.tz, h, now) {
            Ok(r) => r,
            Err(issue) => {
                issues.push(issue);
                continue;
            }
        };
        issues.extend(d.notes.iter().cloned());
        let key = report.vaccine.describe();
        let products = match seen.products.get(&key) {
            Some(p) => p.clone(),
            None => {
                let found = catalog::products_for(conn, &report.vaccine)
                    .await
                    .map_err(anyhow::Error::from)?;
                // Only what was found is kept: a vaccine added to the catalog is seen at once.
                if !found.0.is_empty() {
                    seen.products.insert(key, found.clone());
                }
                found
            }
        };
        // Any failure here undoes the whole message (the caller rolls back): a dose is never
        // left half recorded.
        let outcome = doses::apply_known(conn, &place, &report, &sender.actor, &products, Some(&mut seen.stock))
            .await
            .context("recording a dose")?;
        recorded += 1;
        changed.extend(outcome.administration_id());
        at_place.get_or_insert_with(|| (place.pin.clone(), place.code.clone()));
        let at = |f| Some(("RXA", d.rxa, f));
        for w in outcome.warnings() {
            // HL7 table 0357, at the field the problem is in.
            let (code, field) = match &outcome {
                Outcome::Exception { reason, .. } => match reason {
                    Unmatched::UnknownVaccine => (103, 5),
                    Unmatched::NoLot => (101, 15),
                    Unmatched::UnknownLot | Unmatched::LotNotHere => (204, 15),
                    Unmatched::NoStock | Unmatched::AmbiguousFunding => (0, 0),
                },
                _ => (0, 0),
            };
            issues.push(Issue::warning(at(field), code, w));
        }
    }
    let dose_errors = issues.iter().any(|i| i.severity == 'E');
    let code = if dose_errors { AckCode::Error } else { AckCode::Accepted };
    let ack = reply(Some(h), code, &issues);
    metrics::counter!("vfc_hl7_messages_total", "ack" => code.as_str()).increment(1);
    // One audit row per message that recorded something, written with the batch's.
    let audited = (recorded > 0).then(|| {
        let (pin, code) = at_place.unwrap_or_default();
        let entry = audit::Entry::new("doses.hl7", "administration", changed)
            .at(Some(&pin), Some(&code))
            .changed("message", serde_json::Value::Null, h.control_id.as_str())
            .changed("via", serde_json::Value::Null, sender.actor.as_str());
        (Who::hl7(&h.sending_facility), entry)
    });
    // Keep the message (and its ACK) when it recorded something: the same message again gets
    // this ACK. One that recorded nothing may be corrected and sent again under its id.
    let keep = (recorded > 0).then(|| Kept {
        key: key(sender, h),
        sender: sender.actor.clone(),
        code: code.as_str(),
        ack: ack.clone(),
    });
    Ok((ack, keep, audited))
}

struct Job {
    raw: String,
    sender: Sender,
    reply: oneshot::Sender<anyhow::Result<String>>,
}

/// The way in for HTTP and MLLP: `submit` waits for the message's commit and its ACK.
#[derive(Clone)]
pub struct Intake {
    jobs: mpsc::Sender<Job>,
}

/// How many waiting messages one commit takes at most.
const BATCH: usize = 64;

/// The worker that records what [`Intake::submit`] queues; run it under the supervisor (a run
/// that ends or panics is started again on the same queue).
#[derive(Clone)]
pub struct Worker {
    db: Db,
    jobs: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
}

impl Intake {
    /// The way in, and the worker that must run for anything to come out.
    pub fn new(db: Db) -> (Intake, Worker) {
        let (jobs, rx) = mpsc::channel(1024);
        (
            Intake { jobs },
            Worker {
                db,
                jobs: std::sync::Arc::new(tokio::sync::Mutex::new(rx)),
            },
        )
    }

    pub async fn submit(&self, raw: String, sender: Sender) -> anyhow::Result<String> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job { raw, sender, reply: tx })
            .await
            .map_err(|_| anyhow::anyhow!("the HL7 intake has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the HL7 intake dropped the message"))?
    }
}

impl Worker {
    /// Takes what is waiting (at most [`BATCH`] messages), records it in one commit, answers
    /// each sender; until `cancel` fires, and then what was already queued is still recorded
    /// (new submissions are refused) so no sender that was accepted goes unanswered.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut rx = self.jobs.lock().await;
        work(&self.db, &mut rx, &cancel).await;
        Ok(())
    }
}

async fn work(db: &Db, rx: &mut mpsc::Receiver<Job>, cancel: &CancellationToken) {
    let mut seen = Lookups::default();
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            _ = cancel.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }

        match run(db, &batch, &mut seen).await {
            Ok(acks) => {
                for (job, ack) in batch.into_iter().zip(acks) {
                    let _ = job.reply.send(ack);
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, messages = batch.len(), "HL7 batch not committed; senders will be told to resend");
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(anyhow::anyhow!("the database did not commit: {e:#}")));
                }
            }
        }
    }
}

/// Records the batch in one transaction. Should a message fail on the database (rare: ACKs are
/// answers, not errors), the batch is rolled back and each message retried in its own
/// transaction, so one bad message never costs another its commit.
async fn run(db: &Db, batch: &[Job], seen: &mut Lookups) -> anyhow::Result<Vec<anyhow::Result<String>>> {
    seen.refresh();
    seen.stock.clear();
    let parsed: Vec<_> = batch.iter().map(|j| vxu::parse(&j.raw)).collect();
    let mut tx = db.begin().await?;
    let keys: Vec<_> = batch
        .iter()
        .zip(&parsed)
        .filter_map(|(j, p)| p.as_ref().ok().map(|p| key(&j.sender, &p.header)))
        .collect();
    let mut known = kept(&mut tx, &keys).await?;
    let mut keep = Vec::new();
    let mut audited = Vec::new();
    let mut acks = Vec::with_capacity(batch.len());
    for (job, parsed) in batch.iter().zip(&parsed) {
        let parsed = match parsed {
            Ok(p) => p,
            Err(refused) => {
                acks.push(refuse(refused));
                continue;
            }
        };
        // Sent before, or earlier in this very batch.
        if let Some(ack) = known.get(&key(&job.sender, &parsed.header)) {
            metrics::counter!("vfc_hl7_messages_total", "ack" => "duplicate").increment(1);
            acks.push(ack.clone());
            continue;
        }
        match record(&mut tx, parsed, &job.sender, seen).await {
            Ok((ack, k, a)) => {
                audited.extend(a);
                if let Some(k) = k {
                    known.insert(k.key.clone(), ack.clone());
                    keep.push(k);
                }
                acks.push(ack);
            }
            Err(e) => {
                tracing::warn!(error = ?e, "HL7 batch failed; retrying its messages one by one");
                tx.rollback().await?;
                return one_by_one(db, batch).await;
            }
        }
    }
    let stored = async {
        messages::store(&mut tx, &keep).await?;
        audit::record_many(&mut tx, &audited).await.map_err(anyhow::Error::from)
    };
    if let Err(e) = stored.await {
        tracing::warn!(error = ?e, "keeping the batch's ACKs failed; retrying its messages one by one");
        tx.rollback().await?;
        return one_by_one(db, batch).await;
    }
    tx.commit().await.context("committing HL7 messages")?;
    COMMITS.fetch_add(1, Ordering::Relaxed);
    COMMITTED_MESSAGES.fetch_add(batch.len() as u64, Ordering::Relaxed);
    metrics::histogram!("vfc_hl7_batch_messages").record(batch.len() as f64);
    Ok(acks.into_iter().map(Ok).collect())
}

async fn one_by_one(db: &Db, batch: &[Job]) -> anyhow::Result<Vec<anyhow::Result<String>>> {
    let mut out = Vec::with_capacity(batch.len());
    for job in batch {
        let mut tx = db.begin().await?;
        match process(&mut tx, &job.raw, &job.sender, &mut Lookups::default()).await {
            Ok(ack) => {
                tx.commit().await?;
                out.push(Ok(ack));
            }
            Err(e) => {
                tx.rollback().await?;
                // A stored row this version cannot read is no passing failure: resending will
                // not help until someone fixes it, so the sender is told what, not "again".
                let unreadable = e.chain().find_map(|c| match c.downcast_ref::<crate::error::Error>() {
                    Some(crate::error::Error::Unreadable(why)) => Some(why.clone()),
                    _ => None,
                });
                match unreadable {
                    Some(why) => {
                        tracing::error!(error = %why, "HL7 message refused: a stored row it needs cannot be read");
                        metrics::counter!("vfc_hl7_messages_total", "ack" => "AE").increment(1);
                        out.push(Ok(cannot_read(&job.raw, &why)));
                    }
                    None => {
                        tracing::warn!(error = ?e, "HL7 message not recorded");
                        out.push(Err(e));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The ACK for a message that needs a stored row this version cannot read: AE naming the row.
fn cannot_read(raw: &str, why: &str) -> String {
    nothing_recorded(
        raw,
        format!(
            "nothing in this message was recorded: {why}. The VFC program must correct that record; \
             send the message again after they have"
        ),
    )
}

/// The ACK for a message that could not be recorded now (the database failed): AE, resend.
pub fn temporary_failure(raw: &str) -> String {
    nothing_recorded(
        raw,
        "the message could not be stored just now; nothing was recorded, send it again".into(),
    )
}

/// AE with one ERR (207, application internal error) for a message nothing of which was kept.
fn nothing_recorded(raw: &str, text: String) -> String {
    let header = vxu::parse(raw).ok().map(|p| p.header);
    reply(header.as_ref(), AckCode::Error, &[Issue::error(None, 207, text)])
}
