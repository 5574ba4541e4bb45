//! Local times of export files, turned into instants (`--timezone`, default the machine's).

use chrono::{DateTime, Local, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The zone an export file's local times are in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// The machine's zone (`TZ`, `/etc/localtime`).
    Machine,
    Named(Tz),
}

impl Zone {
    /// An IANA name (`America/New_York`), or `local` for the machine's zone.
    pub fn parse(name: &str) -> Result<Zone, String> {
        if name.eq_ignore_ascii_case("local") {
            return Ok(Zone::Machine);
        }
        name.parse::<Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("{name:?} is not an IANA time zone name such as America/New_York"))
    }

    fn candidates(&self, t: &NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        match self {
            Zone::Machine => Local.from_local_datetime(t).map(|d| d.with_timezone(&Utc)),
            Zone::Named(tz) => tz.from_local_datetime(t).map(|d| d.with_timezone(&Utc)),
        }
    }

    /// Converts a logger's consecutive local times. In the autumn's repeated hour a time is
    /// taken as its first occurrence unless that would go back before the previous reading (the
    /// logger kept counting), and a time in the spring's skipped hour is `None`: no instant
    /// has it, so it is reported rather than guessed.
    pub fn to_utc_in_order(&self, times: impl IntoIterator<Item = NaiveDateTime>) -> Vec<Option<DateTime<Utc>>> {
        let mut last: Option<DateTime<Utc>> = None;
        times
            .into_iter()
            .map(|t| {
                let at = match self.candidates(&t) {
                    LocalResult::Single(d) => Some(d),
                    LocalResult::Ambiguous(first, second) => Some(if last.is_some_and(|l| first <= l) {
                        second
                    } else {
                        first
                    }),
                    LocalResult::None => None,
                };
                if at.is_some() {
                    last = at;
                }
                at
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(d: u32, h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, d)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn the_repeated_autumn_hour_keeps_going_forward() {
        let z = Zone::parse("America/New_York").unwrap();
        // 2026-11-01: 01:00-02:00 EDT is followed by 01:00-02:00 EST.
        let out = z.to_utc_in_order([at(1, 0, 30), at(1, 1, 30), at(1, 1, 0), at(1, 1, 30), at(1, 2, 0)]);
        let hours: Vec<String> = out.iter().map(|d| d.unwrap().format("%H:%M").to_string()).collect();
        assert_eq!(hours, ["04:30", "05:30", "06:00", "06:30", "07:00"]);
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    #[test]
    fn the_skipped_spring_hour_has_no_instant() {
        let z = Zone::parse("America/New_York").unwrap();
        let t = NaiveDate::from_ymd_opt(2026, 3, 8)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(z.to_utc_in_order([t]), vec![None]);
    }
}
