//! Reading a unit's (or a logger's) temperature record.
//!
//! A unit's readings are those its loggers took while they served it: each assignment is a
//! [`Window`] on one serial, and a page is the time-ordered merge of the windows, so a swap
//! for calibration shows as one continuous record.

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Error, Result};
use crate::domain::LoggerRole;
use crate::store::{rfc3339, Db};

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

/// A unit's windows: every assignment it has had.
pub async fn unit_windows(db: &Db, unit_id: i64) -> Result<Vec<Window>> {
    Ok(super::loggers::unit_history(db, unit_id)
        .await?
        .into_iter()
        .map(|a| Window {
            serial: a.serial,
            from: a.from_ms,
            to: a.to_ms,
            role: Some(a.role),
        })
        .collect())
}
