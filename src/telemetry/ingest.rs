//! One batch of MQTT messages → one database transaction.
//!
//! Readings, held readings, dead letters, logger statuses and gateway marks of a batch commit
//! together, and only then are the messages acknowledged to the broker; a crash before the
//! commit means the broker redelivers them, and (serial, ts) being the key makes the
//! redelivery harmless. A bad message becomes a dead letter with its reason and never stops
//! the batch; a reading whose sender may not speak for its logger is held ([`super::held`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::Utc;
use firmware_bridge::wire::{self, TopicKind};

use super::dead_letters::{self, dead};
use super::identity::{distinct, Context, Sender};
use super::{confirm, held, record};
use crate::domain::LoggerSerial;
use crate::readings::NewReading;
use crate::registry::{gateways, loggers};
use crate::store::{now_millis, Db};

/// A message as it came off the broker.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What a committed batch did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub stored: u64,
    pub duplicates: u64,
    /// Readings kept in full but held out of the record (new ones).
    pub held: u64,
    pub dead_letters: u64,
    pub statuses: u64,
    /// Gateways' marks to publish: (gateway, epoch, serial, seq).
    pub confirmations: Vec<(String, String, String, u64)>,
    /// Newest reading time in the batch, epoch ms.
    pub newest_ts: Option<i64>,
}

struct StatusUpdate {
    serial: String,
    /// The topic's gateway, if any.
    gateway: Option<String>,
    claimed: Option<String>,
    status: wire::Status,
    topic: String,
    payload: Vec<u8>,
}

/// A parsed reading, before the registry says whether its sender may speak for the logger.
struct Candidate {
    serial: String,
    ts: i64,
    temp_c: f64,
    gateway: Option<String>,
    claimed: Option<String>,
}

/// (serial, gateway) pairs the ingest has already registered in `loggers`, so a batch does not
/// re-insert them.
#[derive(Default)]
pub struct KnownSerials(HashSet<(String, Option<String>)>);

/// Parses and commits a batch. On error nothing was committed and the batch may be retried.
pub async fn commit(db: &Db, known: &mut KnownSerials, batch: &[Incoming]) -> Result<Outcome, sqlx::Error> {
    let now = Utc::now();
    let received_at = now.timestamp_millis();
    let mut candidates = Vec::new();
    let mut refused = Vec::new();
    let mut statuses = Vec::new();
    let mut seqs: BTreeMap<confirm::Key, BTreeSet<u64>> = BTreeMap::new();

    for msg in batch {
        let Some(topic) = wire::parse_logger_topic(&msg.topic) else {
            refused.push(dead(
                &msg.topic,
                &msg.payload,
                "topic is not vfc/gateways/{gateway}/loggers/{serial}/readings|status or vfc/loggers/{serial}/readings|status".into(),
            ));
            continue;
        };
        let serial = match LoggerSerial::parse(topic.serial) {
            Ok(s) => s.to_string(),
            Err(e) => {
                refused.push(dead(&msg.topic, &msg.payload, e.0));
                continue;
            }
        };
        let gateway = match topic.gateway {
            Some(g) if !wire::is_gateway_id(g) => {
                refused.push(dead(
                    &msg.topic,
                    &msg.payload,
                    format!("gateway id {g:?} in the topic must be \"gw-\" and 1 to 60 letters, digits or hyphens"),
                ));
                continue;
            }
            g => g.map(str::to_string),
        };
        match topic.kind {
            TopicKind::Status => match wire::parse_status(&msg.payload) {
                Ok(status)
                    if status
                        .firmware
                        .iter()
                        .chain(status.gateway.iter())
                        .chain(status.spool_warning.iter())
                        .any(|s| s.chars().any(char::is_control) || s.len() > 512) =>
                {
                    refused.push(dead(
                        &msg.topic,
                        &msg.payload,
                        "\"firmware\", \"gateway\" and \"spool_warning\" must be at most 512 characters without control characters".into(),
                    ))
                }
                Ok(status) => statuses.push(StatusUpdate {
                    serial,
                    claimed: status.gateway.clone(),
                    gateway,
                    status,
                    topic: msg.topic.clone(),
                    payload: msg.payload.clone(),
                }),
                Err(e) => refused.push(dead(&msg.topic, &msg.payload, e.to_string())),
            },
            TopicKind::Readings => match wire::parse_readings(&msg.payload, now) {
                Err(e) => refused.push(dead(&msg.topic, &msg.payload, e.to_string())),
                Ok(p) => {
                    let claimed = p.origin.as_ref().map(|o| o.gateway.clone());
                    // A confirmation goes only to the gateway the topic names (the broker let
                    // only that gateway publish there), whatever the payload claims.
                    if let (Some(g), Some(origin)) = (&gateway, &p.origin) {
                        let key = (g.clone(), origin.epoch.clone(), serial.clone());
                        let entry = seqs.entry(key).or_default();
                        entry.extend(p.readings.iter().filter_map(|r| r.seq));
                        entry.extend(p.rejected.iter().filter_map(|r| r.seq));
                    }
                    for r in &p.rejected {
                        refused.push(dead(&msg.topic, &msg.payload, r.reason.clone()));
                    }
                    if p.battery_pct.is_some() {
                        statuses.push(StatusUpdate {
                            serial: serial.clone(),
                            gateway: gateway.clone(),
                            claimed: claimed.clone(),
                            status: wire::Status {
                                battery_pct: p.battery_pct,
                                ..Default::default()
                            },
                            topic: msg.topic.clone(),
                            payload: Vec::new(),
                        });
                    }
                    for r in p.readings {
                        candidates.push(Candidate {
                            serial: serial.clone(),
                            ts: r.ts.timestamp_millis(),
                            temp_c: r.temp_c,
                            gateway: gateway.clone(),
                            claimed: claimed.clone(),
                        });
                    }
                }
            },
        }
    }

    let mut tx = db.begin().await?;

    // Who may speak for whom, read once for the batch.
    let gateway_ids: Vec<&str> = distinct(
        candidates
            .iter()
            .filter_map(|c| c.gateway.as_deref())
            .chain(statuses.iter().filter_map(|s| s.gateway.as_deref())),
    );
    let serials: Vec<&str> = distinct(
        candidates
            .iter()
            .filter(|c| c.gateway.is_some())
            .map(|c| c.serial.as_str())
            .chain(
                statuses
                    .iter()
                    .filter(|s| s.gateway.is_some())
                    .map(|s| s.serial.as_str()),
            ),
    );
    gateways::heard(&mut tx, &gateway_ids, received_at).await?;
    let mut ctx = Context::load(&mut tx, &gateway_ids, &serials).await?;
    let verdicts = ctx.judge_all(candidates.iter().map(|c| {
        (
            Sender {
                gateway: c.gateway.as_deref(),
                claimed: c.claimed.as_deref(),
            },
            c.serial.as_str(),
            c.ts,
        )
    }));
    let mut rows = Vec::with_capacity(candidates.len());
    let mut holds = Vec::new();
    for (c, verdict) in candidates.into_iter().zip(verdicts) {
        match verdict {
            Ok(()) => rows.push(NewReading {
                serial: c.serial,
                ts: c.ts,
                temp_c: c.temp_c,
                gateway: c.gateway,
            }),
            Err(reason) => holds.push(held::Hold {
                claimed: c.claimed.filter(|cl| Some(cl) != c.gateway.as_ref()),
                gateway: c.gateway.unwrap_or_default(),
                serial: c.serial,
                ts: c.ts,
                temp_c: c.temp_c,
                reason,
            }),
        }
    }
    // One global order for inserts, so concurrent instances on PostgreSQL cannot deadlock on
    // the primary key.
    rows.sort_by(|a, b| (&a.serial, a.ts).cmp(&(&b.serial, b.ts)));

    let mut accepted_statuses = Vec::new();
    for s in statuses {
        // A gateway's word about its own spool is its own, whoever's logger the status is for.
        if let (Some(g), Some(w)) = (&s.gateway, &s.status.spool_warning) {
            gateways::spool_warning(&mut tx, g, Some(w), received_at).await?;
        } else if let (Some(g), Some(_)) = (&s.gateway, s.status.spool_depth) {
            gateways::spool_warning(&mut tx, g, None, received_at).await?;
        }
        let who = Sender {
            gateway: s.gateway.as_deref(),
            claimed: s.claimed.as_deref(),
        };
        match ctx.judge(who, &s.serial, received_at) {
            Ok(()) => accepted_statuses.push(s),
            // A batch's battery goes with its readings, which are held themselves.
            Err(_) if s.payload.is_empty() => {}
            Err(reason) => refused.push(dead(
                &s.topic,
                &s.payload,
                format!(
                    "{}: this sender may not report the status of logger {}",
                    reason.as_str(),
                    s.serial
                ),
            )),
        }
    }

    let new_serials: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|r| (r.serial.clone(), r.gateway.clone()))
        .chain(accepted_statuses.iter().map(|s| (s.serial.clone(), s.gateway.clone())))
        .filter(|k| !known.0.contains(k))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    loggers::seen(&mut tx, &new_serials, received_at).await?;
    let filed = record::file(&mut tx, &rows, received_at).await?;
    refused.extend(filed.conflicts);
    let new_held = held::insert(&mut tx, &holds, received_at).await?;
    record::refuse(&mut tx, &refused, received_at).await?;
    for s in &accepted_statuses {
        let status = loggers::Status {
            battery_pct: s.status.battery_pct,
            probe_connected: s.status.probe_connected,
            firmware: s.status.firmware.clone(),
            gateway: s.gateway.clone(),
            spool_depth: s.status.spool_depth.map(|d| d as i64),
        };
        loggers::record_status(&mut tx, &s.serial, &status, received_at).await?;
    }
    let marks = confirm::advance(db, &mut tx, seqs, received_at).await?;
    tx.commit().await?;
    known.0.extend(new_serials);
    metrics::counter!("vfc_readings_held_total").increment(new_held);

    Ok(Outcome {
        stored: filed.stored,
        duplicates: rows.len() as u64 - filed.stored,
        held: new_held,
        dead_letters: refused.len() as u64,
        statuses: accepted_statuses.len() as u64,
        confirmations: marks
            .into_iter()
            .filter(|(_, m)| *m > 0)
            .map(|((g, e, s), m)| (g, e, s, m))
            .collect(),
        newest_ts: rows.iter().map(|r| r.ts).max(),
    })
}

/// Records a message that the database refused as a dead letter, so it can never stall ingest.
pub async fn dead_letter_only(db: &Db, msg: &Incoming, reason: &str) -> Result<(), sqlx::Error> {
    let d = dead(&msg.topic, &msg.payload, format!("could not be stored: {reason}"));
    dead_letters::insert(&db.pool, &d, now_millis()).await?;
    dead_letters::prune(&db.pool, dead_letters::KEEP_ROWS).await.map(|_| ())
}

/// Whether a database error may pass by itself (connection, lock, resources) rather than
/// being about the data.
pub fn is_transient(db: &Db, e: &sqlx::Error) -> bool {
    db.dialect().is_transient(e)
}

/// Milliseconds since a reading was taken, for the ingest-lag gauge.
pub fn lag_ms(newest_ts: i64) -> i64 {
    (now_millis() - newest_ts).max(0)
}
