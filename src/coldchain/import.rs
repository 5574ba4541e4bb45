//! `vfc import FILE --unit ID`: a logger's export file into a unit's record.
//!
//! Times in the file are local to the unit's location (chrono-tz). A local time that a DST
//! change repeats is resolved by the file's order (the first instant after the previous
//! reading); one it skips cannot exist and is reported. `--.-` is a gap, never a value.
//! Importing the same file again adds nothing. The file's own summary is kept with the import;
//! excursions and daily figures come from the readings, like any other.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::TimeZone;
use firmware_bridge::berlinger;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

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

pub async fn import(db: &Db, unit_id: i64, path: &Path, actor: &str) -> anyhow::Result<Report> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let export = berlinger::parse(&text)
        .with_context(|| format!("{} is not a Berlinger Fridge-tag or Q-tag export", path.display()))?;
    let unit = sqlx::query(
        "SELECT u.id, l.timezone FROM units u JOIN locations l ON l.code = u.location_code WHERE u.id = $1",
    )
    .bind(unit_id)
    .fetch_optional(&db.pool)
    .await?
    .with_context(|| format!("no unit {unit_id} (see GET /api/v1/locations/{{code}}/units)"))?;
    let tz: chrono_tz::Tz = unit.try_get::<String, _>("timezone")?.parse().unwrap_or(chrono_tz::UTC);
    let interval_ms = export.interval_min.unwrap_or(5).max(1) * 60_000;

    // Local times to instants, in the file's order.
    let mut readings: Vec<(i64, f64)> = Vec::with_capacity(export.rows.len());
    let mut nonexistent = Vec::new();
    let mut missing = 0;
    let mut prev = i64::MIN;
    for r in &export.rows {
        let ts = match tz.from_local_datetime(&r.local) {
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
                nonexistent.push(r.local.to_string());
                continue;
            }
        };
        prev = ts;
        match r.temp_c {
            Some(t) => readings.push((ts, t)),
            None => missing += 1,
        }
    }
    readings.sort_by_key(|r| r.0);
    let time_gaps = readings
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > 2 * interval_ms)
        .count();
    let (first, last) = (readings.first().map(|r| r.0), readings.last().map(|r| r.0));

    let now = now_millis();
    let serial = crate::domain::LoggerSerial::parse(&export.serial)?.to_string();
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO loggers (serial, make, model, reading_interval_s, first_seen_at) VALUES ($1, 'Berlinger', $2, $3, $4) \
         ON CONFLICT (serial) DO NOTHING",
    )
    .bind(&serial)
    .bind(&export.device)
    .bind(interval_ms / 1000)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let (mut stored, mut dup) = (0u64, 0u64);
    if let (Some(first), Some(last)) = (first, last) {
        let end = last + interval_ms;
        // The file's logger serves the unit over the file's span: as its primary logger unless
        // another primary covers that time, else as its backup.
        let mine = sqlx::query(
            "SELECT id FROM logger_assignments WHERE unit_id = $1 AND serial = $2 AND from_ts <= $3 AND (to_ts IS NULL OR to_ts >= $4)",
        )
        .bind(unit_id)
        .bind(&serial)
        .bind(first)
        .bind(end)
        .fetch_optional(&mut *tx)
        .await?;
        if mine.is_none() {
            let elsewhere = sqlx::query(
                "SELECT unit_id FROM logger_assignments WHERE serial = $1 AND from_ts < $2 AND (to_ts IS NULL OR to_ts > $3)",
            )
            .bind(&serial)
            .bind(end)
            .bind(first)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = elsewhere {
                bail!(
                    "logger {serial} served unit {} during this file's span; import it there",
                    r.try_get::<i64, _>("unit_id")?
                );
            }
            let mut role = None;
            for candidate in ["primary", "backup"] {
                let taken = sqlx::query(
                    "SELECT id FROM logger_assignments WHERE unit_id = $1 AND role = $2 AND from_ts < $3 AND (to_ts IS NULL OR to_ts > $4)",
                )
                .bind(unit_id)
                .bind(candidate)
                .bind(end)
                .bind(first)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_none() {
                    role = Some(candidate);
                    break;
                }
            }
            let role = role.with_context(|| {
                format!("unit {unit_id} already has a primary and a backup logger during this file's span")
            })?;
            sqlx::query(
                "INSERT INTO logger_assignments (unit_id, serial, role, from_ts, to_ts, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(unit_id)
            .bind(&serial)
            .bind(role)
            .bind(first)
            .bind(end)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let rows: Vec<crate::telemetry::ingest::Row> = readings
            .iter()
            .map(|(ts, t)| crate::telemetry::ingest::Row {
                serial: serial.clone(),
                ts: *ts,
                temp_c: *t,
                gateway: None,
            })
            .collect();
        stored = crate::telemetry::ingest::insert_readings(db, &mut tx, &rows, now).await?;
        dup = rows.len() as u64 - stored;
        crate::coldchain::evaluate::mark_dirty(&mut tx, &[(serial.clone(), first)], rand::random::<i64>()).await?;
    }
    // The device's "Checked" stamps are the staff's daily sign-offs.
    let mut signoffs = 0;
    for day in &export.history {
        if let Some((when, at)) = day.checked.first() {
            signoffs += sqlx::query(
                "INSERT INTO daily_signoffs (unit_id, day, signed_by, signed_at, note, source) VALUES ($1, $2, $3, $4, $5, 'import') \
                 ON CONFLICT (unit_id, day) DO NOTHING",
            )
            .bind(unit_id)
            .bind(day.date.to_string())
            .bind(format!("{} \"Checked\" button ({when} {at})", export.device))
            .bind(tz.from_local_datetime(&day.date.and_time(*at)).earliest().map(|t| t.timestamp_millis()).unwrap_or(now))
            .bind(format!("from {}", path.display()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
    }
    let summary = serde_json::json!({
        "device": export.device, "serial": export.serial, "interval_min": export.interval_min,
        "alarms": export.alarms, "history": export.history, "episodes": export.episodes,
    });
    let imported = sqlx::query(
        "INSERT INTO logger_imports (unit_id, serial, device, file_name, sha256, summary, readings, first_ts, last_ts, imported_by, imported_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (unit_id, sha256) DO NOTHING",
    )
    .bind(unit_id)
    .bind(&serial)
    .bind(&export.device)
    .bind(path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
    .bind(hex::encode(Sha256::digest(&bytes)))
    .bind(summary.to_string())
    .bind(readings.len() as i64)
    .bind(first)
    .bind(last)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Report {
        device: export.device,
        serial,
        rows_in_file: export.rows.len(),
        readings_stored: stored,
        already_stored: dup,
        missing_values: missing,
        time_gaps,
        nonexistent_times: nonexistent,
        first: first.map(rfc3339),
        last: last.map(rfc3339),
        history_days: export.history.len(),
        alarm_episodes: export.episodes.len(),
        signoffs,
        already_imported: imported == 0,
    })
}
