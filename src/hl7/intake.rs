//! Taking a VXU: every message once, keyed (MSH-3, MSH-4, MSH-10) — sent again, it gets its
//! original ACK and changes nothing — and every dose through `inventory::doses`.
//!
//! Messages from concurrent senders are committed together: one worker takes what is waiting,
//! records each message inside its own savepoint (one bad message never undoes another), and
//! commits once. Durability stays as the store sets it (SQLite `synchronous=FULL`); the ACK
//! goes out only after that commit.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sqlx::{Acquire, AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use super::ack::{self, AckCode};
use super::vxu::{self, Header};
use super::Issue;
use crate::accounts::Scope;
use crate::inventory::doses::{self, Outcome};
use crate::inventory::Error;
use crate::store::{now_millis, Db};

/// Who sent a message: the part of the program it may report for, and how records name it.
#[derive(Debug, Clone)]
pub struct Sender {
    pub scope: Scope,
    pub actor: String,
}

static ACK_SEQ: AtomicU64 = AtomicU64::new(0);

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

/// Records one message on `conn` (inside the caller's transaction) and returns its ACK. An
/// `Err` is a database failure: the caller rolls back and the sender should send again.
pub async fn process(conn: &mut AnyConnection, raw: &str, sender: &Sender) -> anyhow::Result<String> {
    let parsed = match vxu::parse(raw) {
        Ok(p) => p,
        Err(refused) => {
            metrics::counter!("vfc_hl7_messages_total", "ack" => "AR").increment(1);
            return Ok(reply(refused.header.as_ref(), AckCode::Rejected, &[refused.issue]));
        }
    };
    let h = &parsed.header;
    if let Some(r) =
        sqlx::query("SELECT ack FROM hl7_messages WHERE sending_app = $1 AND sending_facility = $2 AND control_id = $3")
            .bind(&h.sending_app)
            .bind(&h.sending_facility)
            .bind(&h.control_id)
            .fetch_optional(&mut *conn)
            .await?
    {
        metrics::counter!("vfc_hl7_messages_total", "ack" => "duplicate").increment(1);
        return Ok(r.try_get("ack")?);
    }
    if !parsed.errors.is_empty() {
        metrics::counter!("vfc_hl7_messages_total", "ack" => "AE").increment(1);
        return Ok(reply(Some(h), AckCode::Error, &parsed.errors));
    }

    // Where each dose was given; a facility outside the sender's scope refuses the message.
    let mut places = Vec::with_capacity(parsed.doses.len());
    for d in &parsed.doses {
        let Ok(d) = d else {
            places.push(None);
            continue;
        };
        let place = doses::facility(conn, &d.facility).await.map_err(anyhow::Error::from)?;
        if let Some(p) = &place {
            if !sender.scope.covers_code(&p.pin, &p.code) {
                metrics::counter!("vfc_hl7_messages_total", "ack" => "AR").increment(1);
                return Ok(reply(
                    Some(h),
                    AckCode::Rejected,
                    &[Issue::error(
                        Some(d.facility_at),
                        204,
                        format!(
                            "facility {} is outside what this sender may report for; nothing was recorded",
                            d.facility
                        ),
                    )],
                ));
            }
        }
        places.push(Some(place));
    }

    let now = now_millis();
    let mut issues = Vec::new();
    let mut recorded = 0;
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
                    "facility {} is not a registered VFC location: use the location code (e.g. 012345A) or register \
                     the EHR's id with PUT /api/v1/locations/{{code}}/facility-ids",
                    d.facility
                ),
            ));
            continue;
        };
        let report = match d.report(place.tz, &h.control_id, now) {
            Ok(r) => r,
            Err(issue) => {
                issues.push(issue);
                continue;
            }
        };
        issues.extend(d.notes.iter().cloned());
        let outcome = match doses::apply(conn, &place, &report, &sender.actor).await {
            Ok(o) => o,
            Err(Error::Database(e)) => return Err(e).context("recording a dose"),
            Err(e) => {
                issues.push(Issue::error(Some(("RXA", d.rxa, 0)), 207, e.to_string()));
                continue;
            }
        };
        recorded += 1;
        let at = |f| Some(("RXA", d.rxa, f));
        for w in outcome.warnings() {
            let (code, field) = match &outcome {
                Outcome::Exception {
                    reason_code: "unknown_vaccine",
                    ..
                } => (103, 5),
                Outcome::Exception {
                    reason_code: "no_lot", ..
                } => (101, 15),
                Outcome::Exception {
                    reason_code: "unknown_lot" | "lot_not_here",
                    ..
                } => (204, 15),
                _ => (0, 0),
            };
            issues.push(Issue::warning(at(field), code, w));
        }
    }
    let dose_errors = issues.iter().any(|i| i.severity == 'E');
    let code = if dose_errors { AckCode::Error } else { AckCode::Accepted };
    let ack = reply(Some(h), code, &issues);
    metrics::counter!("vfc_hl7_messages_total", "ack" => code.as_str()).increment(1);
    // Keep the message (and its ACK) when it recorded something: the same message again gets
    // this ACK. One that recorded nothing may be corrected and sent again under its id.
    if recorded > 0 {
        sqlx::query(
            "INSERT INTO hl7_messages (sending_app, sending_facility, control_id, sender, ack_code, ack, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&h.sending_app)
        .bind(&h.sending_facility)
        .bind(&h.control_id)
        .bind(&sender.actor)
        .bind(code.as_str())
        .bind(&ack)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(ack)
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

impl Intake {
    pub fn start(db: Db) -> Intake {
        let (jobs, rx) = mpsc::channel(1024);
        tokio::spawn(worker(db, rx));
        Intake { jobs }
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

async fn worker(db: Db, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        match run(&db, &batch).await {
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

async fn run(db: &Db, batch: &[Job]) -> anyhow::Result<Vec<anyhow::Result<String>>> {
    let mut tx = db.pool.begin().await?;
    let mut acks = Vec::with_capacity(batch.len());
    for job in batch {
        let mut sp = tx.begin().await?;
        match process(&mut sp, &job.raw, &job.sender).await {
            Ok(ack) => {
                sp.commit().await?;
                acks.push(Ok(ack));
            }
            Err(e) => {
                sp.rollback().await?;
                tracing::warn!(error = ?e, "HL7 message not recorded");
                acks.push(Err(e));
            }
        }
    }
    tx.commit().await.context("committing HL7 messages")?;
    Ok(acks)
}

/// The ACK for a message that could not be recorded now (the database failed): AE, resend.
pub fn temporary_failure(raw: &str) -> String {
    let header = vxu::parse(raw).ok().map(|p| p.header);
    reply(
        header.as_ref(),
        AckCode::Error,
        &[Issue::error(
            None,
            207,
            "the message could not be stored just now; nothing was recorded, send it again",
        )],
    )
}
