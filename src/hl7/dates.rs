//! When a dose was given (docs/domain.md, "Doses administered over HL7"): HL7's TS/DTM read in
//! the location's time zone, and the rule that dates a report — a dose is reported after it was
//! given, and a day without a time is taken as noon there, or now when that is earlier. The
//! JSON route ([`crate::web`]) applies the same rule to its own fields.
//!
//! Every function takes `now`: the tests pin it, so none depends on the hour it runs at.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// When a dose was given, as an EHR reports it: the day, and the instant when a time was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Given {
    pub day: NaiveDate,
    pub at: Option<i64>,
}

/// HL7 TS/DTM `YYYYMMDD[HHMM[SS[.S…]]][±ZZZZ]`: the day as written, and the instant when there is
/// a time (a time without an offset is the location's).
pub fn read_time(raw: &str, tz: Tz) -> Result<Given, String> {
    let bad = || format!("RXA-3 {raw:?} is not an HL7 date such as 20250310 or 20250310093000-0500");
    let raw = raw.trim();
    let (body, offset) = match raw.find(['+', '-']) {
        Some(i) => (&raw[..i], Some(&raw[i..])),
        None => (raw, None),
    };
    let body = body.split('.').next().unwrap_or("");
    if body.len() < 8 || !body.bytes().all(|b| b.is_ascii_digit()) || ![8, 10, 12, 14].contains(&body.len()) {
        return Err(bad());
    }
    let day = NaiveDate::parse_from_str(&body[..8], "%Y%m%d").map_err(|_| bad())?;
    if !crate::domain::codes::YEARS.contains(&chrono::Datelike::year(&day)) {
        return Err(bad());
    }
    if body.len() == 8 {
        return Ok(Given { day, at: None });
    }
    let padded = format!("{body:0<14}");
    let local = NaiveDateTime::parse_from_str(&padded, "%Y%m%d%H%M%S").map_err(|_| bad())?;
    let ms = match offset {
        Some(o) if o.len() == 5 && o[1..].bytes().all(|b| b.is_ascii_digit()) => {
            let secs = (o[1..3].parse::<i32>().unwrap_or(0) * 60 + o[3..].parse::<i32>().unwrap_or(0)) * 60;
            let fixed = if o.starts_with('-') {
                chrono::FixedOffset::west_opt(secs)
            } else {
                chrono::FixedOffset::east_opt(secs)
            }
            .ok_or_else(bad)?;
            fixed
                .from_local_datetime(&local)
                .single()
                .ok_or_else(bad)?
                .timestamp_millis()
        }
        Some(_) => return Err(bad()),
        None => tz
            .from_local_datetime(&local)
            .earliest()
            .ok_or_else(bad)?
            .timestamp_millis(),
    };
    Ok(Given { day, at: Some(ms) })
}

/// When the dose counts as given, and its day as `YYYYMMDD`, as of `now_ms` at a location in
/// `tz`. A dose is reported after it was given: a day after today there, or a time more than
/// ten minutes ahead, is refused, naming `field`. A day without a time is taken as noon there —
/// or now, when the dose is reported that same morning (docs/domain.md, "Doses administered
/// over HL7").
pub fn dated(given: Given, tz: Tz, now_ms: i64, field: &str) -> Result<(i64, NaiveDate), String> {
    let today = crate::store::from_millis(now_ms).with_timezone(&tz).date_naive();
    let future = || {
        format!(
            "{field} {} is in the future: a dose is reported after it was given",
            given.day
        )
    };
    // With a time, the instant decides: a day written in another offset than the location's
    // (UTC, say, already tomorrow) is not a future day there. Without one, the day does.
    let at = match given.at {
        Some(ms) if ms > now_ms + 10 * 60_000 => return Err(future()),
        Some(ms) => ms,
        None if given.day > today => return Err(future()),
        None => {
            let noon = given.day.and_hms_opt(12, 0, 0).expect("noon");
            let noon = tz.from_local_datetime(&noon).earliest().map(|t| t.timestamp_millis());
            noon.unwrap_or(now_ms).min(now_ms)
        }
    };
    Ok((at, given.day))
}

/// RXA-3 read and dated (see [`read_time`] and [`dated`]).
pub fn given_at(raw: &str, tz: Tz, now_ms: i64) -> Result<(i64, NaiveDate), String> {
    dated(read_time(raw, tz)?, tz, now_ms, "RXA-3")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// 06:50 in New York on 2026-11-30 (11:50Z), whatever the machine's clock says.
    pub const EARLY_MORNING: i64 = 1_796_039_400_000;

    #[test]
    fn a_dose_dated_today_without_a_time_is_taken_before_local_noon() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(crate::store::rfc3339(EARLY_MORNING), "2026-11-30T11:50:00Z");
        let (at, day) = given_at("20261130", ny, EARLY_MORNING).expect("today's dose at 06:50 is not in the future");
        assert_eq!(
            (at, day.to_string().as_str()),
            (EARLY_MORNING, "2026-11-30"),
            "clamped to now"
        );
        let (at, _) = given_at("20261129", ny, EARLY_MORNING).unwrap();
        assert_eq!(
            crate::store::rfc3339(at),
            "2026-11-29T17:00:00Z",
            "yesterday is taken at noon"
        );
        assert!(given_at("20261201", ny, EARLY_MORNING).unwrap_err().contains("future"));
        assert!(given_at("202611300730-0500", ny, EARLY_MORNING)
            .unwrap_err()
            .contains("future"));
    }

    #[test]
    fn a_time_written_in_utc_after_midnight_there_is_not_a_future_day_in_new_york() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-12-01 00:05 UTC is 2026-11-30 19:05 in New York; reported a minute later.
        let given = read_time("20261201000500+0000", ny).unwrap();
        let now = given.at.unwrap() + 60_000;
        let (at, _) = dated(given, ny, now, "RXA-3").expect("given a minute ago");
        assert_eq!(at, given.at.unwrap());
        // A day alone still cannot be tomorrow where the clinic is.
        let tomorrow = Given {
            day: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            at: None,
        };
        assert!(dated(tomorrow, ny, now, "RXA-3").unwrap_err().contains("future"));
    }

    #[test]
    fn a_json_dose_names_its_own_field_when_it_is_in_the_future() {
        let ny = chrono_tz::America::New_York;
        let tomorrow = Given {
            day: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            at: None,
        };
        let e = dated(tomorrow, ny, EARLY_MORNING, "\"administered_on\"").unwrap_err();
        assert!(e.starts_with("\"administered_on\"") && !e.contains("RXA"), "{e}");
    }

    #[test]
    fn hl7_times_read_with_their_offset_or_the_location_zone() {
        let tz = chrono_tz::America::New_York;
        let now = EARLY_MORNING;
        let (ms, day) = given_at("20250310093000-0500", tz, now).unwrap();
        assert_eq!(
            ms,
            chrono::DateTime::parse_from_rfc3339("2025-03-10T14:30:00Z")
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(day.to_string(), "2025-03-10");
        let (local, _) = given_at("202501100930", tz, now).unwrap();
        assert_eq!(local, given_at("20250110093000-0500", tz, now).unwrap().0);
        assert!(given_at("20251399", tz, now).is_err());
        assert!(given_at("20991231", tz, now).unwrap_err().contains("future"));
        assert!(given_at("2025031", tz, now).is_err());
        assert!(given_at("18991231", tz, now).is_err());
    }
}
