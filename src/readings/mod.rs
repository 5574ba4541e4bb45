//! Readings: every temperature a logger took, stored once per (serial, ts), for years. This
//! module owns the `readings` table and the evaluator's queue of new readings
//! (`coldchain_dirty`, in [`dirty`]); the MQTT ingest and `vfc import` write through it, the
//! registry and the cold chain read through it.
//!
//! A unit's readings are those its loggers took while they served it: each assignment is a
//! [`Window`] on one serial (the registry knows the assignments), and a page is the
//! time-ordered merge of the windows, so a swap for calibration shows as one continuous record.

pub mod dirty;

use serde::Serialize;
use sqlx::{Any, AnyConnection, Row, Transaction};
use utoipa::ToSchema;

use crate::domain::LoggerRole;
use crate::error::{Error, Result};
use crate::store::{rfc3339, Db, Dialect};

/// Rows per INSERT statement (5 parameters each stay under SQLite's and PostgreSQL's limits).
const ROWS_PER_STATEMENT: usize = 500;

/// A reading ready to store.
#[derive(Debug, Clone)]
pub struct NewReading {
    pub serial: String,
    pub ts: i64,
    pub temp_c: f64,
    /// The gateway it came through, if any.
    pub gateway: Option<String>,
}

/// A reading sent again for a time already stored, with another temperature: the first stays
/// in the record; the second must not vanish as a mere duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub serial: String,
    pub ts: i64,
    pub stored_c: f64,
    pub sent_c: f64,
}

/// What [`insert`] did.
#[derive(Debug, Default)]
pub struct Inserted {
    /// New readings stored.
    pub stored: u64,
    /// Readings for a (serial, time) already stored with another temperature.
    pub conflicts: Vec<Conflict>,
}

/// Inserts readings, skipping (serial, ts) pairs already stored; returns how many were new and
/// which of the others disagree with what is stored (the same reading sent again is no news).
/// A database error is returned as it is, so the ingest can tell a passing one from the rest.
pub async fn insert(
    tx: &mut Transaction<'static, Any>,
    rows: &[NewReading],
    received_at: i64,
) -> std::result::Result<Inserted, sqlx::Error> {
    let dialect = Dialect::of(tx);
    let mut out = Inserted::default();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::with_capacity(100 + chunk.len() * 32);
        sql.push_str("INSERT INTO readings (serial, ts, temp_c, received_at, gateway) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let p = |k: usize| dialect.param(i * 5 + k);
            sql.push_str(&format!("({}, {}, {}, {}, {})", p(1), p(2), p(3), p(4), p(5)));
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
        let stored = q.execute(&mut **tx).await?.rows_affected();
        out.stored += stored;
        if (stored as usize) < chunk.len() {
            out.conflicts.extend(conflicts(tx, dialect, chunk).await?);
        }
    }
    Ok(out)
}

/// The rows of `chunk` whose (serial, ts) is stored with another temperature. Only asked when
/// a chunk had duplicates, so new readings cost nothing more.
async fn conflicts(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    chunk: &[NewReading],
) -> std::result::Result<Vec<Conflict>, sqlx::Error> {
    let keys: Vec<String> = (0..chunk.len())
        .map(|i| format!("({}, {})", dialect.param(i * 2 + 1), dialect.param(i * 2 + 2)))
        .collect();
    let sql = format!(
        "SELECT serial, ts, temp_c FROM readings WHERE (serial, ts) IN ({})",
        keys.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for r in chunk {
        q = q.bind(&r.serial).bind(r.ts);
    }
    let mut stored = std::collections::HashMap::new();
    for row in q.fetch_all(&mut **tx).await? {
        let key: (String, i64) = (row.try_get("serial")?, row.try_get("ts")?);
        stored.insert(key, row.try_get::<f64, _>("temp_c")?);
    }
    Ok(chunk
        .iter()
        .filter_map(|r| {
            let s = *stored.get(&(r.serial.clone(), r.ts))?;
            ((s - r.temp_c).abs() > 1e-9).then(|| Conflict {
                serial: r.serial.clone(),
                ts: r.ts,
                stored_c: s,
                sent_c: r.temp_c,
            })
        })
        .collect())
}

/// One stored reading as the cold chain judges it: when taken, the temperature, and when it
/// reached the service (to tell live from backfilled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    pub ts: i64,
    pub temp_c: f64,
    pub received_at: i64,
}

/// A serial's readings in `[from, to)`, in time order.
pub async fn taken_between(conn: &mut AnyConnection, serial: &str, from: i64, to: i64) -> Result<Vec<Taken>> {
    let rows = sqlx::query(
        "SELECT ts, temp_c, received_at FROM readings WHERE serial = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
    )
    .bind(serial)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Taken {
                ts: r.try_get("ts")?,
                temp_c: r.try_get("temp_c")?,
                received_at: r.try_get("received_at")?,
            })
        })
        .collect()
}

/// One bucket of a serial's readings, summarised in the database for a chart: its index from
/// the origin, its lowest and highest reading, its first and last reading, and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Envelope {
    pub bucket: i64,
    pub min_c: f64,
    pub max_c: f64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub count: i64,
}

/// A serial's readings in `[from, to)` as buckets of `bucket_ms` counted from `origin`: a chart
/// of 30 days of one-minute readings reads some 450 rows instead of 43,200, and keeps every
/// bucket's extremes.
pub async fn envelope(
    conn: &mut AnyConnection,
    serial: &str,
    (from, to): (i64, i64),
    origin: i64,
    bucket_ms: i64,
) -> Result<Vec<Envelope>> {
    let rows = sqlx::query(
        "SELECT (ts - $5) / $4 AS b, MIN(temp_c) AS lo, MAX(temp_c) AS hi, MIN(ts) AS first_ts, MAX(ts) AS last_ts, \
         COUNT(*) AS n FROM readings WHERE serial = $1 AND ts >= $2 AND ts < $3 GROUP BY b ORDER BY b",
    )
    .bind(serial)
    .bind(from)
    .bind(to)
    .bind(bucket_ms.max(1))
    .bind(origin)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Envelope {
                bucket: r.try_get("b")?,
                min_c: r.try_get("lo")?,
                max_c: r.try_get("hi")?,
                first_ts: r.try_get("first_ts")?,
                last_ts: r.try_get("last_ts")?,
                count: r.try_get("n")?,
            })
        })
        .collect()
}

/// When a serial last took a reading, if ever.
pub async fn last_taken_at(db: &Db, serial: &str) -> Result<Option<i64>> {
    Ok(sqlx::query("SELECT MAX(ts) AS t FROM readings WHERE serial = $1")
        .bind(serial)
        .fetch_one(&db.pool)
        .await?
        .try_get::<Option<i64>, _>("t")?)
}

/// Whether a serial took any reading in `[from, to)`.
pub async fn any_between(db: &Db, serial: &str, from: i64, to: i64) -> Result<bool> {
    Ok(
        sqlx::query("SELECT ts FROM readings WHERE serial = $1 AND ts >= $2 AND ts < $3 LIMIT 1")
            .bind(serial)
            .bind(from)
            .bind(to)
            .fetch_optional(&db.pool)
            .await?
            .is_some(),
    )
}

/// The latest reading of a serial, as (ts, temp_c), read inside a transaction.
pub async fn latest_in(conn: &mut AnyConnection, serial: &str) -> Result<Option<(i64, f64)>> {
    let row = sqlx::query("SELECT ts, temp_c FROM readings WHERE serial = $1 ORDER BY ts DESC LIMIT 1")
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| Ok((r.try_get("ts")?, r.try_get("temp_c")?))).transpose()
}

/// Most readings in one page; `next` continues past it.
pub const MAX_PAGE: usize = 100_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reading {
    /// RFC 3339, UTC.
    pub ts: String,
    pub temp_c: f64,
    pub serial: String,
    /// The logger's role for the unit at the time (absent outside a unit's record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<LoggerRole>,
}

/// One serial over `[from, to)`, in a role.
#[derive(Debug, Clone)]
pub struct Window {
    pub serial: String,
    pub from: i64,
    pub to: Option<i64>,
    pub role: Option<LoggerRole>,
}

/// A page of readings and the cursor of the next page, if any.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    pub readings: Vec<Reading>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next: Option<String>,
}

/// Position after the last reading of a page: (ts, serial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub serial: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.ts, self.serial)
    }
    pub fn decode(raw: &str) -> Result<Self> {
        let bad = || Error::Invalid(format!("cursor {raw:?} is not one this API gave out in \"next\""));
        let (ts, serial) = raw.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| bad())?,
            serial: serial.to_string(),
        })
    }
}

/// The latest reading of each of `serials`, in one query (a list's page of loggers).
pub async fn latest_of(db: &Db, serials: &[String]) -> Result<std::collections::HashMap<String, (i64, f64)>> {
    if serials.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT r.serial, r.ts, r.temp_c FROM readings r JOIN (SELECT serial, MAX(ts) AS ts FROM readings \
         WHERE serial IN ({}) GROUP BY serial) m ON m.serial = r.serial AND m.ts = r.ts",
        crate::store::placeholders(serials.len())
    );
    let mut q = sqlx::query(&sql);
    for s in serials {
        q = q.bind(s);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("serial")?, (r.try_get("ts")?, r.try_get("temp_c")?))))
        .collect()
}

/// The latest reading of a serial at or after `since`.
pub async fn latest(db: &Db, serial: &str, since: i64) -> Result<Option<Reading>> {
    latest_between(db, serial, since, None).await
}

/// The latest reading of a serial in `[since, until)`.
pub async fn latest_between(db: &Db, serial: &str, since: i64, until: Option<i64>) -> Result<Option<Reading>> {
    let row = sqlx::query(
        "SELECT ts, temp_c FROM readings WHERE serial = $1 AND ts >= $2 AND ts < $3 ORDER BY ts DESC LIMIT 1",
    )
    .bind(serial)
    .bind(since)
    .bind(until.unwrap_or(i64::MAX))
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| {
        Ok(Reading {
            ts: rfc3339(r.try_get("ts")?),
            temp_c: r.try_get("temp_c")?,
            serial: serial.to_string(),
            role: None,
        })
    })
    .transpose()
}

/// Readings in the windows between `from` and `to` (both inclusive), in time order (ties by
/// serial), after `cursor`, at most `limit`.
pub async fn page(
    db: &Db,
    windows: &[Window],
    from: i64,
    to: i64,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Page> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut merged: Vec<(i64, String, f64, Option<LoggerRole>)> = Vec::new();
    for w in windows {
        let lo = from.max(w.from);
        // A window is half-open: the reading at `to` belongs to the next assignment.
        let hi = match w.to {
            Some(end) => to.min(end - 1),
            None => to,
        };
        if lo > hi {
            continue;
        }
        // Rows strictly after the cursor: same serial later in time, or any later ts when the
        // serial sorts before the cursor's.
        let (after_ts, after_inclusive) = match cursor {
            None => (i64::MIN, true),
            Some(c) if w.serial.as_str() > c.serial.as_str() => (c.ts, true),
            Some(c) => (c.ts, false),
        };
        let op = if after_inclusive { ">=" } else { ">" };
        let rows = sqlx::query(&format!(
            "SELECT ts, temp_c FROM readings WHERE serial = $1 AND ts >= $2 AND ts <= $3 AND ts {op} $4 \
             ORDER BY ts LIMIT $5"
        ))
        .bind(&w.serial)
        .bind(lo)
        .bind(hi)
        .bind(after_ts)
        .bind(limit as i64 + 1)
        .fetch_all(&db.pool)
        .await?;
        for r in rows {
            merged.push((r.try_get("ts")?, w.serial.clone(), r.try_get("temp_c")?, w.role));
        }
    }
    merged.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let more = merged.len() > limit;
    merged.truncate(limit);
    let next = more
        .then(|| {
            merged.last().map(|(ts, serial, _, _)| {
                Cursor {
                    ts: *ts,
                    serial: serial.clone(),
                }
                .encode()
            })
        })
        .flatten();
    Ok(Page {
        readings: merged
            .into_iter()
            .map(|(ts, serial, temp_c, role)| Reading {
                ts: rfc3339(ts),
                temp_c,
                serial,
                role,
            })
            .collect(),
        next,
    })
}
