//! `vfc import FILE --unit ID`: a logger's export file into a unit's record (docs/domain.md,
//! "Logger export files"). This module owns `logger_imports`.
//!
//! Berlinger Fridge-tag and Q-tag exports and LogTag CSV are read. Times in the file are local
//! to the unit's location (chrono-tz). A local time that a DST change repeats is resolved by the
//! file's order (the first instant after the previous reading); one it skips cannot exist and
//! is reported. `--.-` is a gap, never a value. Importing the same file again adds nothing. The
//! file's own summary is kept with the import; excursions and daily figures come from the
//! readings, like any other.
//!
//! Readings are filed under the logger that served the unit at the file's times: the file's
//! serial must be the unit's logger then, or `--as-serial` says explicitly which logger's
//! record this is (and assigns it to the unit for the file's span when no one served then).
//! Filing a 2023 file under today's logger would otherwise join the two into one excursion
//! years long.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::{NaiveDateTime, TimeZone};
use firmware_bridge::{berlinger, logtag};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::accounts::audit::{Entry, Who};
use crate::accounts::Scope;
use crate::domain::{LoggerRole, LoggerSerial};
use crate::readings::{self, NewReading};
use crate::registry::{assignments, locations, loggers, units};
use crate::store::{now_millis, rfc3339, Db};

#[derive(Debug, Serialize)]
pub struct Report {
    pub device: String,
    pub serial: String,
    pub rows_in_file: usize,
    pub readings_stored: u64,
    pub already_stored: u64,
    /// `--.-` rows: the device had no value.
    pub missing_values: usize,
    /// Spans between readings longer than two logging intervals.
    pub time_gaps: usize,
    /// Local times that do not exist in the location's time zone (skipped by DST).
    pub nonexistent_times: Vec<String>,
    /// Lines that could not be read: (line number from 1, why).
    pub skipped_lines: Vec<(usize, String)>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub history_days: usize,
    pub alarm_episodes: usize,
    pub signoffs: u64,
    pub already_imported: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {}: {} rows in the file",
            self.device, self.serial, self.rows_in_file
        )?;
        if self.rows_in_file == 0 {
            writeln!(
                f,
                "this file holds no readings (daily history only): imported its history"
            )?;
        }
        writeln!(
            f,
            "readings stored: {} new, {} already stored",
            self.readings_stored, self.already_stored
        )?;
        writeln!(
            f,
            "gaps: {} missing values (--.-), {} gaps in time",
            self.missing_values, self.time_gaps
        )?;
        if let (Some(a), Some(b)) = (&self.first, &self.last) {
            writeln!(f, "first reading {a}, last reading {b}")?;
        }
        for (line, why) in &self.skipped_lines {
            writeln!(f, "skipped line {line}: {why}")?;
        }
        for t in &self.nonexistent_times {
            writeln!(
                f,
                "skipped {t}: that local time does not exist (daylight saving time change)"
            )?;
        }
        writeln!(
            f,
            "device summary kept: {} history days, {} alarm episodes, {} daily checks",
            self.history_days, self.alarm_episodes, self.signoffs
        )?;
        if self.already_imported {
            writeln!(f, "this file was imported into this unit before: nothing new")?;
        }
        Ok(())
    }
}

/// What `vfc import` was asked to do.
pub struct Request<'a> {
    pub unit_id: i64,
    pub path: &'a Path,
    /// File the readings under this logger (the file's own serial, confirmed, or another).
    pub as_serial: Option<LoggerSerial>,
    pub actor: &'a str,
}

/// A file read: the device's readings in local time, and what else it says about itself.
struct Read {
    device: String,
    make: &'static str,
    serial: String,
    interval_min: Option<i64>,
    /// Local time and temperature (`None`: the device had no value).
    rows: Vec<(NaiveDateTime, Option<f64>)>,
    /// A Berlinger device's own summary, when the file has one.
    berlinger: Option<berlinger::Export>,
    /// Lines that could not be read: (line number from 1, why). Skipped, never guessed.
    skipped: Vec<(usize, String)>,
}

fn read(path: &Path, bytes: &[u8]) -> anyhow::Result<Read> {
    let text = String::from_utf8_lossy(bytes);
    let berlinger_error = match berlinger::parse(&text) {
        Ok(e) => {
            return Ok(Read {
                device: e.device.clone(),
                make: "Berlinger",
                serial: e.serial.clone(),
                interval_min: e.interval_min,
                rows: e.rows.iter().map(|r| (r.local, r.temp_c)).collect(),
                berlinger: Some(e),
                skipped: Vec::new(),
            })
        }
        Err(e) => e,
    };
    match logtag::parse(&text) {
        Ok(e) => Ok(Read {
            device: e.description.clone().unwrap_or_else(|| "LogTag".into()),
            make: "LogTag",
            serial: e.serial.clone(),
            interval_min: e.interval_s.map(|s| (s / 60).max(1)),
            rows: e.rows.iter().map(|r| (r.local, Some(r.temp_c))).collect(),
            berlinger: None,
            skipped: e.skipped.clone(),
        }),
        Err(_) => bail!(
            "{} is not a Berlinger Fridge-tag or Q-tag export ({berlinger_error}) nor a LogTag CSV export",
            path.display()
        ),
    }
}

pub async fn import(db: &Db, req: &Request<'_>) -> anyhow::Result<Report> {
    let (unit_id, path) = (req.unit_id, req.path);
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = read(path, &bytes)?;
    let unit = units::get(db, &Scope::Program, unit_id)
        .await
        .with_context(|| format!("no unit {unit_id} (see GET /api/v1/locations/{{code}}/units)"))?;
    let tz = locations::get(db, &Scope::Program, &unit.location).await?.tz()?;
    let interval_ms = file.interval_min.unwrap_or(5).max(1) * 60_000;

    // Local times to instants, in the file's order.
    let mut taken: Vec<(i64, f64)> = Vec::with_capacity(file.rows.len());
    let mut nonexistent = Vec::new();
    let mut missing = 0;
    let mut prev = i64::MIN;
    for (local, temp_c) in &file.rows {
        let ts = match tz.from_local_datetime(local) {
            chrono::LocalResult::Single(t) => t.timestamp_millis(),
            chrono::LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
                if a > prev {
                    a
                } else {
                    b
                }
            }
            chrono::LocalResult::None => {
                nonexistent.push(local.to_string());
                continue;
            }
        };
        prev = ts;
        match temp_c {
            Some(t) => taken.push((ts, *t)),
            None => missing += 1,
        }
    }
    taken.sort_by_key(|r| r.0);
    let time_gaps = taken.windows(2).filter(|w| w[1].0 - w[0].0 > 2 * interval_ms).count();
    let (first, last) = (taken.first().map(|r| r.0), taken.last().map(|r| r.0));

    let now = now_millis();
    let file_serial = LoggerSerial::parse(&file.serial)?;
    let serial = req.as_serial.clone().unwrap_or_else(|| file_serial.clone());
    let mut tx = db.begin().await?;
    let logger = loggers::Registration {
        serial: &serial,
        make: Some(file.make),
        model: Some(&file.device),
        reading_interval_s: Some(interval_ms / 1000),
    };
    loggers::register(&mut tx, &logger, now).await?;
    let (mut stored, mut dup) = (0u64, 0u64);
    if let (Some(first), Some(last)) = (first, last) {
        let end = last + interval_ms;
        let span = assignments::Span { from: first, to: end };
        if !assignments::serves_over(&mut tx, unit_id, serial.as_str(), span).await? {
            if let Some(other) = assignments::unit_served_over(&mut tx, serial.as_str(), span).await? {
                bail!("logger {serial} served unit {other} during this file's span; import it there");
            }
            if req.as_serial.is_none() {
                bail!(
                    "logger {serial} (named in the file) did not serve unit {unit_id} from {} to {}. \
                     If it did, say so: run again with --as-serial {serial} (it is then recorded as the unit's \
                     logger for that span); if the unit knows this logger by another serial, give that one \
                     with --as-serial. Or assign the logger to the unit for that period first \
                     (PUT /api/v1/units/{unit_id}/logger).",
                    rfc3339(first),
                    rfc3339(last)
                );
            }
            // Explicitly this unit's: its primary over the span unless another primary covers
            // that time, else its backup.
            let mut role = None;
            for candidate in [LoggerRole::Primary, LoggerRole::Backup] {
                if !assignments::role_taken_over(&mut tx, unit_id, candidate, span).await? {
                    role = Some(candidate);
                    break;
                }
            }
            let role = role.with_context(|| {
                format!("unit {unit_id} already has a primary and a backup logger during this file's span")
            })?;
            assignments::record_past(&mut tx, unit_id, serial.as_str(), role, span, req.actor, now).await?;
        }
        let rows: Vec<NewReading> = taken
            .iter()
            .map(|(ts, t)| NewReading {
                serial: serial.to_string(),
                ts: *ts,
                temp_c: *t,
                gateway: None,
            })
            .collect();
        // A reading already stored with another temperature keeps the stored one; the import
        // counts it with the duplicates and says so in the log, each with both values.
        let inserted = readings::insert(&mut tx, &rows, now).await?;
        for c in &inserted.conflicts {
            tracing::warn!(
                serial = %c.serial, ts = %crate::store::rfc3339(c.ts), stored_c = c.stored_c, file_c = c.sent_c,
                "the file disagrees with a stored reading; the stored one is kept"
            );
        }
        stored = inserted.stored;
        dup = rows.len() as u64 - stored;
        readings::dirty::mark(&mut tx, [(serial.as_str(), first)]).await?;
    }
    // The device's "Checked" stamps are the staff's daily sign-offs.
    let mut signoffs = 0;
    let history = file
        .berlinger
        .as_ref()
        .map(|b| b.history.as_slice())
        .unwrap_or_default();
    for day in history {
        if let Some((when, at)) = day.checked.first() {
            let by = format!("{} \"Checked\" button ({when} {at})", file.device);
            let at = tz
                .from_local_datetime(&day.date.and_time(*at))
                .earliest()
                .map(|t| t.timestamp_millis())
                .unwrap_or(now);
            let note = format!("from {}", path.display());
            if super::daily::signed_on_device(&mut tx, unit_id, day.date, &by, at, &note).await? {
                signoffs += 1;
            }
        }
    }
    let summary = match &file.berlinger {
        Some(b) => serde_json::json!({
            "device": b.device, "serial": b.serial, "interval_min": b.interval_min,
            "alarms": b.alarms, "history": b.history, "episodes": b.episodes,
        }),
        None => serde_json::json!({"device": file.device, "serial": file.serial, "interval_min": file.interval_min}),
    };
    let imported = sqlx::query(
        "INSERT INTO logger_imports (unit_id, serial, device, file_name, sha256, summary, readings, first_ts, last_ts, imported_by, imported_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (unit_id, sha256) DO NOTHING",
    )
    .bind(unit_id)
    .bind(serial.as_str())
    .bind(&file.device)
    .bind(path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
    .bind(hex::encode(Sha256::digest(&bytes)))
    .bind(summary.to_string())
    .bind(taken.len() as i64)
    .bind(first)
    .bind(last)
    .bind(req.actor)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if imported > 0 {
        let entry = Entry::new("logger_file.import", "unit", [unit_id.to_string(), serial.to_string()])
            .changed("readings", serde_json::Value::Null, taken.len())
            .changed(
                "file",
                serde_json::Value::Null,
                path.file_name().map(|f| f.to_string_lossy().into_owned()),
            );
        crate::registry::units::audited(&mut tx, &Who::cli(), entry, unit_id).await?;
    }
    tx.commit().await?;
    Ok(Report {
        device: file.device,
        serial: serial.to_string(),
        rows_in_file: file.rows.len(),
        readings_stored: stored,
        already_stored: dup,
        missing_values: missing,
        time_gaps,
        nonexistent_times: nonexistent,
        skipped_lines: file.skipped.clone(),
        first: first.map(rfc3339),
        last: last.map(rfc3339),
        history_days: history.len(),
        alarm_episodes: file.berlinger.as_ref().map(|b| b.episodes.len()).unwrap_or(0),
        signoffs,
        already_imported: imported == 0,
    })
}
