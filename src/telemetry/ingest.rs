//! One batch of MQTT messages → one database transaction.
//!
//! Readings, dead letters, logger statuses and gateway marks of a batch commit together, and
//! only then are the messages acknowledged to the broker; a crash before the commit means the
//! broker redelivers them, and (serial, ts) being the key makes the redelivery harmless.
//! A bad message becomes a dead letter with its reason and never stops the batch.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::Utc;
use firmware_bridge::wire::{self, LoggerTopic};
use sqlx::{Any, Transaction};

use super::confirm;
use crate::domain::LoggerSerial;
use crate::store::{now_millis, Db, DbKind};

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

/// A reading ready to store.
pub struct Row {
    pub serial: String,
    pub ts: i64,
    pub temp_c: f64,
    pub gateway: Option<String>,
}

struct DeadLetter {
    topic: String,
    payload: String,
    bytes: usize,
    reason: String,
}

#[derive(Default)]
struct StatusUpdate {
    serial: String,
    status: wire::Status,
}

impl DeadLetter {
    async fn insert<'e, E: sqlx::Executor<'e, Database = Any>>(&self, exec: E, at: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dead_letters (topic, payload, payload_bytes, reason, received_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&self.topic)
        .bind(&self.payload)
        .bind(self.bytes as i64)
        .bind(&self.reason)
        .bind(at)
        .execute(exec)
        .await?;
        Ok(())
    }
}

/// Dead letters keep the start of the payload: enough to see what was wrong, bounded in size.
const DEAD_LETTER_KEEP: usize = 4096;
/// Rows per INSERT statement (7 parameters each stay under SQLite's and PostgreSQL's limits).
const ROWS_PER_STATEMENT: usize = 500;

fn dead(topic: &str, payload: &[u8], reason: String) -> DeadLetter {
    let keep = &payload[..payload.len().min(DEAD_LETTER_KEEP)];
    // PostgreSQL text cannot hold NUL: show it as the replacement character.
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    DeadLetter {
        topic: clean(topic),
        payload: clean(&String::from_utf8_lossy(keep)),
        bytes: payload.len(),
        reason: clean(&reason),
    }
}

/// Serials the ingest has already registered in `loggers`, so a batch does not re-insert them.
#[derive(Default)]
pub struct KnownSerials(HashSet<String>);

/// Parses and commits a batch. On error nothing was committed and the batch may be retried.
pub async fn commit(db: &Db, known: &mut KnownSerials, batch: &[Incoming]) -> Result<Outcome, sqlx::Error> {
    let now = Utc::now();
    let received_at = now.timestamp_millis();
    let mut rows = Vec::new();
    let mut dead_letters = Vec::new();
    let mut statuses = Vec::new();
    let mut seqs: BTreeMap<confirm::Key, BTreeSet<u64>> = BTreeMap::new();

    for msg in batch {
        let Some(parsed_topic) = wire::parse_logger_topic(&msg.topic) else {
            dead_letters.push(dead(
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
                dead_letters.push(dead(&msg.topic, &msg.payload, e.0));
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
                    dead_letters.push(dead(
                        &msg.topic,
                        &msg.payload,
                        "\"firmware\" and \"gateway\" must be at most 128 characters without control characters".into(),
                    ))
                }
                Ok(status) => statuses.push(StatusUpdate { serial, status }),
                Err(e) => dead_letters.push(dead(&msg.topic, &msg.payload, e.to_string())),
            },
            LoggerTopic::Readings(_) => match wire::parse_readings(&msg.payload, now) {
                Err(e) => dead_letters.push(dead(&msg.topic, &msg.payload, e.to_string())),
                Ok(p) => {
                    let gateway = p.origin.as_ref().map(|o| o.gateway.clone());
                    if let Some(origin) = &p.origin {
                        let key = (origin.gateway.clone(), origin.epoch.clone(), serial.clone());
                        let entry = seqs.entry(key).or_default();
                        entry.extend(p.readings.iter().filter_map(|r| r.seq));
                        entry.extend(p.rejected.iter().filter_map(|r| r.seq));
                    }
                    for r in &p.rejected {
                        dead_letters.push(dead(&msg.topic, &msg.payload, r.reason.clone()));
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
                        rows.push(Row {
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
    for serial in &new_serials {
        sqlx::query("INSERT INTO loggers (serial, first_seen_at) VALUES ($1, $2) ON CONFLICT (serial) DO NOTHING")
            .bind(serial)
            .bind(received_at)
            .execute(&mut *tx)
            .await?;
    }
    let stored = insert_readings(db, &mut tx, &rows, received_at).await?;
    for d in &dead_letters {
        d.insert(&mut *tx, received_at).await?;
    }
    for s in &statuses {
        sqlx::query(
            "UPDATE loggers SET battery_pct = COALESCE($1, battery_pct), \
             probe_connected = COALESCE($2, probe_connected), firmware = COALESCE($3, firmware), \
             gateway = COALESCE($4, gateway), spool_depth = COALESCE($5, spool_depth), status_at = $6 \
             WHERE serial = $7",
        )
        .bind(s.status.battery_pct)
        .bind(s.status.probe_connected.map(i64::from))
        .bind(s.status.firmware.clone())
        .bind(s.status.gateway.clone())
        .bind(s.status.spool_depth.map(|d| d as i64))
        .bind(received_at)
        .bind(&s.serial)
        .execute(&mut *tx)
        .await?;
    }
    // The cold-chain evaluator judges these serials' units from their earliest new reading on.
    let mut dirty: std::collections::BTreeMap<&str, i64> = Default::default();
    for r in &rows {
        let e = dirty.entry(r.serial.as_str()).or_insert(r.ts);
        *e = (*e).min(r.ts);
    }
    let dirty: Vec<(String, i64)> = dirty.into_iter().map(|(s, t)| (s.to_string(), t)).collect();
    crate::coldchain::evaluate::mark_dirty(&mut tx, &dirty, rand::random::<i64>()).await?;
    let marks = confirm::advance(db, &mut tx, seqs, received_at).await?;
    tx.commit().await?;
    known.0.extend(new_serials);

    Ok(Outcome {
        stored,
        duplicates: rows.len() as u64 - stored,
        dead_letters: dead_letters.len() as u64,
        statuses: statuses.len() as u64,
        confirmations: marks
            .into_iter()
            .filter(|(_, m)| *m > 0)
            .map(|((g, e, s), m)| (g, e, s, m))
            .collect(),
        newest_ts: rows.iter().map(|r| r.ts).max(),
    })
}

/// Inserts readings, skipping (serial, ts) pairs already stored; returns how many were new.
pub async fn insert_readings(
    db: &Db,
    tx: &mut Transaction<'static, Any>,
    rows: &[Row],
    received_at: i64,
) -> Result<u64, sqlx::Error> {
    let mut stored = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::with_capacity(100 + chunk.len() * 32);
        sql.push_str("INSERT INTO readings (serial, ts, temp_c, received_at, gateway) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            match db.kind {
                // SQLite resolves a numbered parameter by a linear scan of the statement's
                // names, which is quadratic over a multi-row insert; plain `?` is not.
                DbKind::Sqlite => sql.push_str("(?, ?, ?, ?, ?)"),
                DbKind::Postgres => {
                    let b = i * 5;
                    sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5));
                }
            }
        }
        sql.push_str(" ON CONFLICT (serial, ts) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(&r.serial)
                .bind(r.ts)
                .bind(r.temp_c)
                .bind(received_at)
                .bind(r.gateway.clone());
        }
        stored += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(stored)
}

/// Records a message that the database refused as a dead letter, so it can never stall ingest.
pub async fn dead_letter_only(db: &Db, msg: &Incoming, reason: &str) -> Result<(), sqlx::Error> {
    dead(&msg.topic, &msg.payload, format!("could not be stored: {reason}"))
        .insert(&db.pool, now_millis())
        .await
}

/// Whether a database error may pass by itself (connection, lock, resources) rather than
/// being about the data.
pub fn is_transient(db: &Db, e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            match db.kind {
                // SQLSTATE classes 08 connection, 40 rollback, 53 resources, 57 operator.
                DbKind::Postgres => ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c)),
                // BUSY (5) and LOCKED (6) with their extended codes.
                DbKind::Sqlite => code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)),
            }
        }
        _ => true,
    }
}

/// Milliseconds since a reading was taken, for the ingest-lag gauge.
pub fn lag_ms(newest_ts: i64) -> i64 {
    (now_millis() - newest_ts).max(0)
}
