//! One batch of MQTT messages → one database transaction.
//!
//! Readings, dead letters, logger statuses and gateway marks of a batch commit together, and
//! only then are the messages acknowledged to the broker; a crash before the commit means the
//! broker redelivers them, and (serial, ts) being the key makes the redelivery harmless.
//! A bad message becomes a dead letter with its reason and never stops the batch.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::Utc;
use firmware_bridge::wire::{self, LoggerTopic};

use super::confirm;
use super::dead_letters::{self, dead};
use crate::domain::LoggerSerial;
use crate::readings::{self, NewReading};
use crate::registry::loggers;
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
    pub dead_letters: u64,
    pub statuses: u64,
    /// Gateways' marks to publish: (gateway, epoch, serial, seq).
    pub confirmations: Vec<(String, String, String, u64)>,
    /// Newest reading time in the batch, epoch ms.
    pub newest_ts: Option<i64>,
}

#[derive(Default)]
struct StatusUpdate {
    serial: String,
    status: wire::Status,
}

/// Serials the ingest has already registered in `loggers`, so a batch does not re-insert them.
#[derive(Default)]
pub struct KnownSerials(HashSet<String>);

/// Parses and commits a batch. On error nothing was committed and the batch may be retried.
pub async fn commit(db: &Db, known: &mut KnownSerials, batch: &[Incoming]) -> Result<Outcome, sqlx::Error> {
    let now = Utc::now();
    let received_at = now.timestamp_millis();
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut statuses = Vec::new();
    let mut seqs: BTreeMap<confirm::Key, BTreeSet<u64>> = BTreeMap::new();

    for msg in batch {
        let Some(parsed_topic) = wire::parse_logger_topic(&msg.topic) else {
            refused.push(dead(
                &msg.topic,
                &msg.payload,
                "topic is not vfc/loggers/{serial}/readings or /status".into(),
            ));
            continue;
        };
        let (LoggerTopic::Readings(raw_serial) | LoggerTopic::Status(raw_serial)) = parsed_topic;
        let serial = match LoggerSerial::parse(raw_serial) {
            Ok(s) => s.to_string(),
            Err(e) => {
                refused.push(dead(&msg.topic, &msg.payload, e.0));
                continue;
            }
        };
        match parsed_topic {
            LoggerTopic::Status(_) => match wire::parse_status(&msg.payload) {
                Ok(status)
                    if status
                        .firmware
                        .iter()
                        .chain(status.gateway.iter())
                        .any(|s| s.chars().any(char::is_control) || s.len() > 128) =>
                {
                    refused.push(dead(
                        &msg.topic,
                        &msg.payload,
                        "\"firmware\" and \"gateway\" must be at most 128 characters without control characters".into(),
                    ))
                }
                Ok(status) => statuses.push(StatusUpdate { serial, status }),
                Err(e) => refused.push(dead(&msg.topic, &msg.payload, e.to_string())),
            },
            LoggerTopic::Readings(_) => match wire::parse_readings(&msg.payload, now) {
                Err(e) => refused.push(dead(&msg.topic, &msg.payload, e.to_string())),
                Ok(p) => {
                    let gateway = p.origin.as_ref().map(|o| o.gateway.clone());
                    if let Some(origin) = &p.origin {
                        let key = (origin.gateway.clone(), origin.epoch.clone(), serial.clone());
                        let entry = seqs.entry(key).or_default();
                        entry.extend(p.readings.iter().filter_map(|r| r.seq));
                        entry.extend(p.rejected.iter().filter_map(|r| r.seq));
                    }
                    for r in &p.rejected {
                        refused.push(dead(&msg.topic, &msg.payload, r.reason.clone()));
                    }
                    if p.battery_pct.is_some() || gateway.is_some() {
                        statuses.push(StatusUpdate {
                            serial: serial.clone(),
                            status: wire::Status {
                                battery_pct: p.battery_pct,
                                gateway: gateway.clone(),
                                ..Default::default()
                            },
                        });
                    }
                    for r in p.readings {
                        rows.push(NewReading {
                            serial: serial.clone(),
                            ts: r.ts.timestamp_millis(),
                            temp_c: r.temp_c,
                            gateway: gateway.clone(),
                        });
                    }
                }
            },
        }
    }
    // One global order for inserts, so concurrent instances on PostgreSQL cannot deadlock on
    // the primary key.
    rows.sort_by(|a, b| (&a.serial, a.ts).cmp(&(&b.serial, b.ts)));

    let mut tx = db.pool.begin().await?;
    let new_serials: Vec<String> = rows
        .iter()
        .map(|r| &r.serial)
        .chain(statuses.iter().map(|s| &s.serial))
        .filter(|s| !known.0.contains(*s))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    loggers::seen(&mut tx, &new_serials, received_at).await?;
    let inserted = readings::insert(&mut tx, &rows, received_at).await?;
    let stored = inserted.stored;
    // The same (serial, time) again with another temperature: the first stays in the record,
    // the second is kept as a dead letter with both values, never dropped as a duplicate.
    for c in &inserted.conflicts {
        let at = crate::store::rfc3339(c.ts);
        let payload =
            serde_json::json!({"serial": c.serial, "ts": at, "stored_temp_c": c.stored_c, "sent_temp_c": c.sent_c});
        refused.push(dead(
            &format!("vfc/loggers/{}/readings", c.serial),
            payload.to_string().as_bytes(),
            format!(
                "conflicting_duplicate: {} at {at} is stored as {} °C and was sent again as {} °C; the first is kept",
                c.serial, c.stored_c, c.sent_c
            ),
        ));
    }
    metrics::counter!("vfc_readings_conflicting_total").increment(inserted.conflicts.len() as u64);
    for d in &refused {
        dead_letters::insert(&mut *tx, d, received_at).await?;
    }
    if !refused.is_empty() {
        dead_letters::prune(&mut *tx, dead_letters::KEEP_ROWS).await?;
    }
    for s in &statuses {
        let status = loggers::Status {
            battery_pct: s.status.battery_pct,
            probe_connected: s.status.probe_connected,
            firmware: s.status.firmware.clone(),
            gateway: s.status.gateway.clone(),
            spool_depth: s.status.spool_depth.map(|d| d as i64),
        };
        loggers::record_status(&mut tx, &s.serial, &status, received_at).await?;
    }
    // The cold-chain evaluator judges these serials' units from their earliest new reading on.
    let mut dirty: std::collections::BTreeMap<&str, i64> = Default::default();
    for r in &rows {
        let e = dirty.entry(r.serial.as_str()).or_insert(r.ts);
        *e = (*e).min(r.ts);
    }
    let dirty: Vec<(String, i64)> = dirty.into_iter().map(|(s, t)| (s.to_string(), t)).collect();
    readings::dirty::mark(&mut tx, &dirty).await?;
    let marks = confirm::advance(db, &mut tx, seqs, received_at).await?;
    tx.commit().await?;
    known.0.extend(new_serials);

    Ok(Outcome {
        stored,
        duplicates: rows.len() as u64 - stored,
        dead_letters: refused.len() as u64,
        statuses: statuses.len() as u64,
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
