//! The daily min/max record (docs/domain.md: staff check and record min/max at the start of each
//! workday; records kept ≥ 3 years), computed from the unit's primary readings per day in the
//! location's time zone — 23 or 25 hours long on the days daylight saving time changes.
//!
//! Minutes beyond the range are time-weighted: each reading's state holds until the next
//! reading, unless the gap between them is longer than two logging intervals (unknown time).

use chrono::{NaiveDate, TimeZone};
use serde::Serialize;
use utoipa::ToSchema;

use super::episodes::Sample;

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
                tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                    .earliest()
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
        let next = date.succ_opt().expect("date in range");
        let (start, end) = (day_start(tz, date), day_start(tz, next));
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
            (Some(f), Some(l)) if f - start <= gap_ms && end - l <= gap_ms => {}
            _ => day.complete = false,
        }
        out.push(day);
        date = next;
    }
    out
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
