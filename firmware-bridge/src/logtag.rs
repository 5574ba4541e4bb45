//! Reader for LogTag CSV exports (LogTag Analyzer's "Export to CSV").
//!
//! Two-field `key,value` lines first — `Serial #`, `Description`, `Last reading`,
//! `Reading interval` (`5 minutes`, `30 seconds`, `1 hours`), `Non alert range`
//! (`2.0  to  8.0 °C`) — then a header row and data rows whose 2nd, 3rd and 4th fields are the
//! date, the time (`%Y-%m-%d`, `%H:%M:%S`) and the temperature. Times are the device's local
//! times: the caller says which zone. No real export was at hand; the fixture is constructed
//! from this description (see `tests/fixtures/README.md`).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One reading of the data table, in the device's local time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub line: usize,
    pub local: NaiveDateTime,
    pub temp_c: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Export {
    pub serial: String,
    pub description: Option<String>,
    pub last_reading: Option<NaiveDateTime>,
    pub interval_s: Option<i64>,
    /// The "non alert" range, °C.
    pub range_c: Option<(f64, f64)>,
    pub rows: Vec<Row>,
    /// Data lines that could not be read: (line number, why). They are skipped, not guessed.
    pub skipped: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Splits one CSV line, honouring double quotes.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// `5 minutes`, `30 seconds`, `1 hours`, `1 hour` → seconds.
pub fn interval_seconds(raw: &str) -> Option<i64> {
    let mut parts = raw.split_whitespace();
    let n: i64 = parts.next()?.parse().ok()?;
    let unit = parts.next()?.to_ascii_lowercase();
    let per = match unit.trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" | "hr" => 3600,
        _ => return None,
    };
    (n > 0).then_some(n * per)
}

/// `2.0  to  8.0 °C` (or °F) → (low, high) in °C.
pub fn range(raw: &str) -> Option<(f64, f64)> {
    let fahrenheit = raw.contains('F');
    let nums: Vec<f64> = raw
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter(|s| !s.is_empty() && *s != "-")
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums.as_slice() {
        [lo, hi] => Some(if fahrenheit {
            (f_to_c(*lo), f_to_c(*hi))
        } else {
            (*lo, *hi)
        }),
        _ => None,
    }
}

fn f_to_c(f: f64) -> f64 {
    ((f - 32.0) * 5.0 / 9.0 * 100.0).round() / 100.0
}

pub fn parse(text: &str) -> Result<Export, ParseError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut export = Export {
        serial: String::new(),
        description: None,
        last_reading: None,
        interval_s: None,
        range_c: None,
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    let mut fahrenheit = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(line);
        let Some(is_f) = fahrenheit else {
            // Before the header: key,value lines; the header names the date column.
            if f.len() >= 4 && f[1].eq_ignore_ascii_case("date") {
                fahrenheit = Some(f[3].contains("°F") || f[3].ends_with("F)"));
                continue;
            }
            let value = f.get(1).cloned().unwrap_or_default();
            match f[0].trim_end_matches(':').to_ascii_lowercase().as_str() {
                "serial #" | "serial" | "serial number" => export.serial = value,
                "description" => export.description = Some(value).filter(|v| !v.is_empty()),
                "last reading" => export.last_reading = NaiveDateTime::parse_from_str(&value, "%Y-%m-%d %H:%M:%S").ok(),
                "reading interval" => export.interval_s = interval_seconds(&value),
                "non alert range" => export.range_c = range(&value),
                _ => {}
            }
            continue;
        };
        let row = (|| {
            let date = NaiveDate::parse_from_str(f.get(1)?.trim(), "%Y-%m-%d").ok()?;
            let time = NaiveTime::parse_from_str(f.get(2)?.trim(), "%H:%M:%S").ok()?;
            let t: f64 = f
                .get(3)?
                .trim()
                .trim_end_matches("°C")
                .trim_end_matches("°F")
                .parse()
                .ok()?;
            let t = if is_f { f_to_c(t) } else { t };
            (t.is_finite() && (-100.0..=100.0).contains(&t)).then(|| Row {
                line: n,
                local: date.and_time(time),
                temp_c: t,
            })
        })();
        match row {
            Some(r) => export.rows.push(r),
            None => export.skipped.push((n, format!("not date,time,temperature: {line:?}"))),
        }
    }
    if export.serial.trim().is_empty() {
        return Err(ParseError("not a LogTag export: no \"Serial #\" line".into()));
    }
    if fahrenheit.is_none() {
        return Err(ParseError(format!(
            "LogTag export of {}: no header row with a Date column, so no readings",
            export.serial
        )));
    }
    Ok(export)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/logtag-constructed.csv");

    #[test]
    fn the_constructed_fixture_reads() {
        let e = parse(FIXTURE).unwrap();
        assert_eq!(e.serial, "1012345678");
        assert_eq!(e.description.as_deref(), Some("Bayview main refrigerator"));
        assert_eq!(e.interval_s, Some(300));
        assert_eq!(e.range_c, Some((2.0, 8.0)));
        assert_eq!(e.last_reading.unwrap().to_string(), "2026-11-20 10:30:00");
        let temps: Vec<f64> = e.rows.iter().map(|r| r.temp_c).collect();
        assert_eq!(temps, vec![4.8, 5.1, 9.4, 5.0]);
        assert_eq!(e.rows[0].local.to_string(), "2026-11-20 09:00:00");
        assert_eq!(e.skipped.len(), 1);
        assert_eq!(e.skipped[0].0, 13, "{:?}", e.skipped);
        assert!(e.skipped[0].1.contains("not-a-number"), "{:?}", e.skipped);
    }

    #[test]
    fn intervals_and_ranges_read_in_their_units() {
        assert_eq!(interval_seconds("30 seconds"), Some(30));
        assert_eq!(interval_seconds("1 hours"), Some(3600));
        assert_eq!(interval_seconds("5 minutes"), Some(300));
        assert_eq!(interval_seconds("soon"), None);
        assert_eq!(range("-50.0  to  -15.0 °C"), Some((-50.0, -15.0)));
        assert_eq!(range("35.6 to 46.4 °F"), Some((2.0, 8.0)));
    }

    #[test]
    fn fahrenheit_readings_become_celsius_and_other_files_are_refused() {
        let f = "Serial #,X1\nReading,Date,Time,Temperature (°F)\n1,2026-01-01,00:00:00,41.0\n";
        assert_eq!(parse(f).unwrap().rows[0].temp_c, 5.0);
        assert!(parse("hello,world\n").is_err());
        assert!(parse("Serial #,X1\n").unwrap_err().0.contains("header"));
    }
}
