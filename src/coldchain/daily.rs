//! The daily min/max record (docs/domain.md, "Daily records": staff check and record min/max at
//! the start of each workday; records kept ≥ 3 years), computed from the unit's primary readings
//! per day in the location's time zone — 23 or 25 hours long on the days daylight saving time
//! changes — with each day's sign-off. This module owns `daily_signoffs`.
//!
//! Minutes beyond the range are time-weighted: each reading's state holds until the next
//! reading, unless the gap between them is longer than two logging intervals (unknown time).

use chrono::{NaiveDate, TimeZone};
use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::episodes::Sample;
use crate::accounts::audit::{self, Entry, Who};
use crate::accounts::Scope;
use crate::error::{Error, Result};
use crate::registry::{locations, units};
use crate::store::{now_millis, rfc3339, Db};

/// The longest span one request covers.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Day {
    /// YYYY-MM-DD, local to the unit's location.
    pub date: String,
    pub min_c: Option<f64>,
    pub max_c: Option<f64>,
    pub minutes_above_range: f64,
    pub minutes_below_range: f64,
    pub readings: usize,
    /// False when readings are missing: a gap longer than two intervals, or none near the
    /// day's start or end.
    pub complete: bool,
    pub signed_by: Option<String>,
    pub signed_at: Option<String>,
}

/// Start of a local day as an instant. A midnight that a DST change skips falls back to the
/// first instant that exists.
pub fn day_start(tz: chrono_tz::Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).expect("valid time");
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => t.timestamp_millis(),
        chrono::LocalResult::Ambiguous(a, _) => a.timestamp_millis(),
        chrono::LocalResult::None => (1..=180)
            .find_map(|m| {
                let later = midnight.checked_add_signed(chrono::Duration::minutes(m))?;
                tz.from_local_datetime(&later).earliest()
            })
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|| midnight.and_utc().timestamp_millis()),
    }
}

/// Daily figures for `from..=to` from time-ordered samples (which should reach a gap beyond
/// both ends so the edges are weighted right).
pub fn days(
    samples: &[Sample],
    tz: chrono_tz::Tz,
    from: NaiveDate,
    to: NaiveDate,
    range: (f64, f64),
    gap_ms: i64,
) -> Vec<Day> {
    let mut out = Vec::new();
    let mut date = from;
    while date <= to {
        let next = date.succ_opt();
        let start = day_start(tz, date);
        let end = next.map_or(i64::MAX, |n| day_start(tz, n));
        let mut day = Day {
            date: date.to_string(),
            min_c: None,
            max_c: None,
            minutes_above_range: 0.0,
            minutes_below_range: 0.0,
            readings: 0,
            complete: true,
            signed_by: None,
            signed_at: None,
        };
        let mut first: Option<i64> = None;
        let mut last: Option<i64> = None;
        for (i, s) in samples.iter().enumerate() {
            if s.ts >= start && s.ts < end {
                day.readings += 1;
                day.min_c = Some(day.min_c.map_or(s.temp_c, |m| m.min(s.temp_c)));
                day.max_c = Some(day.max_c.map_or(s.temp_c, |m| m.max(s.temp_c)));
                first.get_or_insert(s.ts);
                last = Some(s.ts);
            }
            // The span from this reading to the next, clipped to the day.
            let Some(n) = samples.get(i + 1) else { continue };
            let (a, b) = (s.ts.max(start), n.ts.min(end));
            if a >= b {
                continue;
            }
            if n.ts - s.ts > gap_ms {
                day.complete = false;
                continue;
            }
            let minutes = (b - a) as f64 / 60_000.0;
            if s.temp_c > range.1 {
                day.minutes_above_range += minutes;
            } else if s.temp_c < range.0 {
                day.minutes_below_range += minutes;
            }
        }
        match (first, last) {
            (Some(f), Some(l)) if f.saturating_sub(start) <= gap_ms && end.saturating_sub(l) <= gap_ms => {}
            _ => day.complete = false,
        }
        out.push(day);
        match next {
            Some(n) => date = n,
            None => break,
        }
    }
    out
}

/// The unit's days `from..=to` in its location's time zone, with their sign-offs.
pub async fn of_unit(db: &Db, scope: &Scope, unit_id: i64, from: NaiveDate, to: NaiveDate) -> Result<Vec<Day>> {
    let unit = units::get(db, scope, unit_id).await?;
    if to < from || (to - from).num_days() > MAX_DAYS {
        return Err(Error::Invalid(format!(
            "\"to\" must be on or after \"from\" and at most {MAX_DAYS} days later"
        )));
    }
    let tz = locations::get(db, scope, &unit.location).await?.tz()?;
    let mut conn = db.pool.acquire().await?;
    record_in(&mut conn, unit_id, (unit.range.min_c, unit.range.max_c), tz, from, to).await
}

/// The unit's days `from..=to` with their sign-offs, in the caller's connection.
pub async fn record_in(
    conn: &mut sqlx::AnyConnection,
    unit_id: i64,
    range: (f64, f64),
    tz: chrono_tz::Tz,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Day>> {
    let start = day_start(tz, from);
    let end = day_start(tz, to.succ_opt().unwrap_or(to));
    // A margin on both sides so the first and last readings of each day are weighted right.
    let margin = 6 * 3_600_000;
    let record = super::primary::record(&mut *conn, unit_id, start - margin, end + margin).await?;
    let mut days = days(&record.samples, tz, from, to, range, record.gap_ms);
    let signed = sqlx::query(
        "SELECT day, signed_by, signed_at FROM daily_signoffs WHERE unit_id = $1 AND day >= $2 AND day <= $3",
    )
    .bind(unit_id)
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(&mut *conn)
    .await?;
    for r in signed {
        let day: String = r.try_get("day")?;
        if let Some(d) = days.iter_mut().find(|d| d.date == day) {
            d.signed_by = r.try_get("signed_by")?;
            d.signed_at = Some(rfc3339(r.try_get("signed_at")?));
        }
    }
    Ok(days)
}

/// A day's sign-off, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignOff {
    pub date: String,
    pub signed_by: String,
    pub signed_at: String,
}

/// Signs off a day of a unit the scope covers, once; a day that has not begun where the unit
/// is cannot be signed.
pub async fn sign(
    db: &Db,
    scope: &Scope,
    unit_id: i64,
    day: NaiveDate,
    note: Option<&str>,
    who: &Who,
) -> Result<SignOff> {
    let by = who.actor.as_str();
    let unit = units::get(db, scope, unit_id).await?;
    let location = locations::get(db, scope, &unit.location).await?;
    let tz = location.tz()?;
    if day > chrono::Utc::now().with_timezone(&tz).date_naive() {
        return Err(Error::Invalid(format!(
            "{day} has not begun yet in {}",
            location.timezone
        )));
    }
    let now = now_millis();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO daily_signoffs (unit_id, day, signed_by, signed_at, note, source) VALUES ($1, $2, $3, $4, $5, 'api')          ON CONFLICT (unit_id, day) DO NOTHING",
    )
    .bind(unit_id)
    .bind(day.to_string())
    .bind(by)
    .bind(now)
    .bind(note)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(Error::Conflict(format!(
            "{day} of unit {unit_id} is already signed off"
        )));
    }
    let entry = Entry::new("daily.sign", "unit", [unit_id])
        .at(None, Some(&unit.location))
        .changed("day", serde_json::Value::Null, day.to_string());
    audit::record(&mut tx, who, entry).await?;
    tx.commit().await?;
    Ok(SignOff {
        date: day.to_string(),
        signed_by: by.to_string(),
        signed_at: rfc3339(now),
    })
}

/// A logger's own "Checked" stamp, kept as the day's sign-off unless one is there already;
/// returns whether it was new.
pub async fn signed_on_device(
    tx: &mut Transaction<'static, Any>,
    unit_id: i64,
    day: NaiveDate,
    by: &str,
    at: i64,
    note: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO daily_signoffs (unit_id, day, signed_by, signed_at, note, source) VALUES ($1, $2, $3, $4, $5, 'import')          ON CONFLICT (unit_id, day) DO NOTHING",
    )
    .bind(unit_id)
    .bind(day.to_string())
    .bind(by)
    .bind(at)
    .bind(note)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_clocks_fall_back_has_25_hours_and_spring_forward_23() {
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let hours = |date: &str| (day_start(ny, d(date).succ_opt().unwrap()) - day_start(ny, d(date))) / 3_600_000;
        assert_eq!(hours("2026-11-01"), 25);
        assert_eq!(hours("2026-03-08"), 23);
        assert_eq!(hours("2026-06-01"), 24);
    }

    #[test]
    fn the_last_day_there_is_ends_the_record_without_a_panic() {
        let utc = chrono_tz::UTC;
        let d = days(&[], utc, NaiveDate::MAX, NaiveDate::MAX, (2.0, 8.0), 600_000);
        assert_eq!(d.len(), 1);
        assert!(!d[0].complete);
    }

    #[test]
    fn minutes_beyond_range_are_weighted_by_time_and_gaps_make_a_day_incomplete() {
        let utc = chrono_tz::UTC;
        let date = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let start = day_start(utc, date);
        // Every 5 minutes all day; 10:00-11:00 warm.
        let samples: Vec<Sample> = (-1..=288)
            .map(|i| {
                let ts = start + i * 300_000;
                let warm = (120..132).contains(&i);
                Sample {
                    ts,
                    temp_c: if warm { 9.5 } else { 5.0 },
                    received_at: ts,
                }
            })
            .collect();
        let day = &days(&samples, utc, date, date, (2.0, 8.0), 600_000)[0];
        assert_eq!(day.readings, 288);
        assert_eq!(day.minutes_above_range, 60.0);
        assert_eq!((day.min_c, day.max_c), (Some(5.0), Some(9.5)));
        assert!(day.complete);
        let gappy: Vec<Sample> = samples
            .iter()
            .filter(|s| !(s.ts > start + 3_600_000 && s.ts < start + 7_200_000))
            .copied()
            .collect();
        assert!(!days(&gappy, utc, date, date, (2.0, 8.0), 600_000)[0].complete);
    }
}
