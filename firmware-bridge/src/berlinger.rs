//! Reader for Berlinger Fridge-tag and Q-tag text exports (what staff download over USB).
//!
//! The file is indented `key: value` lines in sections — `Conf:` (serial, logging interval,
//! alarm limits), `Hist:` (Fridge-tag: the device's own daily figures and "Checked" stamps),
//! `Res:` (Q-tag: the device's own alarm episodes), `Data:` (tab-separated local time and
//! temperature; `--.-` is a missing reading, a gap, never a value) — then certificate lines.
//! Times are the device's local times, without a zone: the caller says which zone.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One line of the data table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub local: NaiveDateTime,
    /// `None` for `--.-`: the device has no value for that time.
    pub temp_c: Option<f64>,
    /// The device marked it out of limits (`x`).
    pub out_of_limits: bool,
}

/// An alarm as the device was configured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alarm {
    pub index: u32,
    /// Q-tag type: 1 single-event low, 2 single-event high, 3 cumulative low, 4 cumulative
    /// high. Fridge-tags have none: alarm 0 is low, 1 is high, both single-event.
    pub kind: Option<u32>,
    pub limit_c: f64,
    pub delay_min: i64,
}

impl Alarm {
    pub fn is_high(&self) -> bool {
        match self.kind {
            Some(k) => k == 2 || k == 4,
            None => self.index == 1,
        }
    }
    pub fn is_single_event(&self) -> bool {
        self.kind.is_none_or(|k| k == 1 || k == 2)
    }
}

/// A day of the Fridge-tag's own history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistDay {
    pub date: NaiveDate,
    pub min_c: Option<f64>,
    pub max_c: Option<f64>,
    pub avg_c: Option<f64>,
    /// Minutes beyond each alarm's limit that day: (alarm index, minutes).
    pub minutes_beyond: Vec<(u32, i64)>,
    /// "Checked" stamps: staff pressed the button ("AM 10:33").
    pub checked: Vec<(String, NaiveTime)>,
}

/// An alarm episode from a Q-tag's `Res` block.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Episode {
    pub alarm: u32,
    pub start: NaiveDateTime,
    pub minutes: i64,
    pub fired: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub extreme_c: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Export {
    pub device: String,
    pub serial: String,
    pub interval_min: Option<i64>,
    pub alarms: Vec<Alarm>,
    pub history: Vec<HistDay>,
    pub episodes: Vec<Episode>,
    pub rows: Vec<Row>,
}

/// Why a file is not a readable export: at a line (counted from 1, as an editor shows it), or
/// about the file as a whole (`line` 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if *line == 0 { String::new() } else { format!("line {line}: ") })]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// `key: value, key: value` pairs of one line; values may be empty.
fn pairs(s: &str) -> Vec<(&str, &str)> {
    s.split(", ")
        .filter_map(|p| p.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect()
}

fn get<'a>(p: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

fn temp(v: &str, fahrenheit: bool) -> Option<f64> {
    let t: f64 = v.trim_start_matches('+').parse().ok()?;
    Some(if fahrenheit { (t - 32.0) * 5.0 / 9.0 } else { t })
}

fn stamp(v: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M").ok()
}

pub fn parse(text: &str) -> Result<Export, ParseError> {
    let mut e = Export::default();
    let mut section = "";
    let mut fahrenheit = false;
    // Position inside nested blocks: the current alarm index and history day.
    let mut in_alarm_block = false;
    let mut in_checked = false;
    let mut alarm_index: Option<u32> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let depth = line.len() - line.trim_start_matches(' ').len();
        let body = line.trim();
        if section == "Data" {
            if let Some(rest) = line.strip_prefix('\t') {
                let f: Vec<&str> = rest.split('\t').collect();
                let Some(local) = stamp(f[0]) else { continue }; // the header row
                let value = f.get(1).copied().unwrap_or("");
                let temp_c = if value.contains("--") {
                    None
                } else {
                    Some(temp(value, fahrenheit).ok_or_else(|| ParseError {
                        line: line_no,
                        message: format!("temperature {value:?} is not a number"),
                    })?)
                };
                e.rows.push(Row {
                    local,
                    temp_c,
                    out_of_limits: f.get(2).is_some_and(|x| x.trim() == "x"),
                });
                continue;
            }
            section = "End";
        }
        if depth == 0 {
            let (key, value) = body
                .split_once(':')
                .map(|(k, v)| (k.trim(), v.trim()))
                .unwrap_or((body, ""));
            match key {
                "Device" => e.device = value.to_string(),
                "Conf" | "Hist" | "Res" | "Data" | "Marker" => section = key,
                _ => {
                    section = if section == "End" || section == "Data" {
                        "End"
                    } else {
                        "Other"
                    }
                }
            }
            in_alarm_block = false;
            continue;
        }
        let p = pairs(body);
        match section {
            "Conf" => {
                if depth == 1 {
                    in_alarm_block = body == "Alarm:";
                    if let Some(s) = get(&p, "Serial") {
                        e.serial = s.to_string();
                    }
                    if let Some(i) = get(&p, "Logging Interval") {
                        e.interval_min = i.parse().ok();
                    }
                    if get(&p, "Temp unit") == Some("F") {
                        fahrenheit = true;
                    }
                } else if in_alarm_block && depth == 2 {
                    alarm_index = body.trim_end_matches(':').parse().ok();
                } else if in_alarm_block && depth == 3 {
                    let kind = get(&p, "Type").and_then(|t| t.parse().ok());
                    if let (Some(index), Some(limit)) = (alarm_index, get(&p, "T AL").and_then(|v| temp(v, fahrenheit)))
                    {
                        if kind != Some(0) {
                            let delay_min = get(&p, "t AL").and_then(|v| v.parse().ok()).unwrap_or(0);
                            e.alarms.push(Alarm {
                                index,
                                kind,
                                limit_c: limit,
                                delay_min,
                            });
                        }
                    }
                }
            }
            "Hist" => match depth {
                1 if body.ends_with(':') && body.trim_end_matches(':').parse::<u32>().is_ok() => {
                    in_alarm_block = false;
                    in_checked = false;
                }
                2 => {
                    in_alarm_block = body == "Alarm:";
                    in_checked = body == "Checked:";
                    if let Some(d) = get(&p, "Date").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) {
                        e.history.push(HistDay {
                            date: d,
                            min_c: None,
                            max_c: None,
                            avg_c: None,
                            minutes_beyond: vec![],
                            checked: vec![],
                        });
                    }
                    if let Some(day) = e.history.last_mut() {
                        if let Some(v) = get(&p, "Min T") {
                            day.min_c = temp(v, fahrenheit);
                        }
                        if let Some(v) = get(&p, "Max T") {
                            day.max_c = temp(v, fahrenheit);
                        }
                        if let Some(v) = get(&p, "Avrg T") {
                            day.avg_c = temp(v, fahrenheit);
                        }
                    }
                }
                3 if in_alarm_block => alarm_index = body.trim_end_matches(':').parse().ok(),
                3 if in_checked => {
                    for (k, v) in &p {
                        if let (Some(day), Ok(t)) = (e.history.last_mut(), NaiveTime::parse_from_str(v, "%H:%M")) {
                            day.checked.push((k.trim_start_matches("TS ").to_string(), t));
                        }
                    }
                }
                4 if in_alarm_block => {
                    if let (Some(day), Some(i), Some(m)) = (
                        e.history.last_mut(),
                        alarm_index,
                        get(&p, "t Acc").and_then(|v| v.parse().ok()),
                    ) {
                        day.minutes_beyond.push((i, m));
                    }
                }
                _ => {}
            },
            "Res" => match depth {
                1 => in_alarm_block = body == "Alarm:",
                2 if in_alarm_block => alarm_index = body.trim_end_matches(':').parse().ok(),
                3 if in_alarm_block => {
                    if let (Some(alarm), Some(start)) = (alarm_index, get(&p, "TS S").and_then(stamp)) {
                        e.episodes.push(Episode {
                            alarm,
                            start,
                            minutes: get(&p, "t A").and_then(|v| v.parse().ok()).unwrap_or(0),
                            fired: get(&p, "TS A").and_then(stamp),
                            end: get(&p, "TS E").and_then(stamp),
                            extreme_c: get(&p, "T M").and_then(|v| temp(v, fahrenheit)),
                        });
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    if e.serial.is_empty() {
        return Err(ParseError {
            line: 0,
            message: "no \"Serial:\" in the Conf section: not a Berlinger export".into(),
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real export from the repository's fixtures (tests/fixtures/logger-exports, see its NOTICE).
    fn file(path: &str) -> String {
        let full = format!("{}/../tests/fixtures/logger-exports/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading the fixture {full}: {e}"))
    }

    #[test]
    fn errors_name_lines_counted_from_one_and_no_line_for_the_whole_file() {
        let whole = parse("Device: Fridge-tag 2\nConf:\n").unwrap_err().to_string();
        assert!(!whole.contains("line 0"), "{whole}");
        assert!(whole.contains("Serial"), "{whole}");
        let at = ParseError {
            line: 3,
            message: "x".into(),
        };
        assert_eq!(at.to_string(), "line 3: x");
    }

    #[test]
    fn a_fridge_tag_2l_export_reads_whole() {
        let e = parse(&file("fridgetag-2l/130500109088_202206081014.txt")).unwrap();
        assert_eq!(e.serial, "130500109088");
        assert_eq!(e.interval_min, Some(5));
        assert_eq!(e.alarms.len(), 2);
        assert!(e
            .alarms
            .iter()
            .any(|a| a.is_high() && a.limit_c == 8.0 && a.delay_min == 60));
        assert!(e.rows.len() > 10_000, "{}", e.rows.len());
        assert_eq!(e.rows[0].temp_c, Some(26.3));
        assert!(e.rows[0].out_of_limits);
        let june7 = e.history.iter().find(|d| d.date.to_string() == "2022-06-07").unwrap();
        assert_eq!(june7.max_c, Some(30.3));
        assert!(june7.minutes_beyond.contains(&(1, 312)));
        assert!(e.history.iter().any(|d| !d.checked.is_empty()));
    }

    #[test]
    fn a_q_tag_export_has_its_alarm_episodes() {
        let e = parse(&file("qtag-clm-doc-lr/RCPJ00010_02_202211090128.txt")).unwrap();
        assert_eq!(e.serial, "RCPJ00010");
        assert_eq!(e.interval_min, Some(10));
        assert_eq!(e.alarms.len(), 4, "type 0 is unused");
        let low: Vec<_> = e.episodes.iter().filter(|x| x.alarm == 5).collect();
        assert_eq!(low.len(), 3);
        assert_eq!(low[0].extreme_c, Some(0.9));
        assert!(e.rows.len() > 100);
    }

    #[test]
    fn missing_readings_are_gaps_and_a_history_only_file_has_no_rows() {
        let ul = parse(&file("fridgetag-ul/100800001215_202304201410.txt")).unwrap();
        assert!(ul.rows.iter().any(|r| r.temp_c.is_none()));
        let two = parse(&file("fridgetag-2/130400191542_202302140605.txt")).unwrap();
        assert!(two.rows.is_empty());
        assert!(!two.history.is_empty());
        assert!(parse("hello").is_err());
    }
}
