//! From readings to excursions and rules met — pure functions, so every rule can be tested on
//! hand-made series.
//!
//! docs/domain.md: an excursion lasts from the first out-of-range reading to the first in-range
//! reading after it (while open, to the latest reading); a gap between readings longer than two
//! logging intervals is unknown time, neither in range nor out, and the record says so.

use super::rules::{Rule, RuleKind};

/// One reading of the unit's primary logger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ts: i64,
    pub temp_c: f64,
    /// When the service received it (to tell live from backfilled).
    pub received_at: i64,
}

/// One out-of-range episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub started_at: i64,
    /// The first in-range reading after it; `None` while open.
    pub ended_at: Option<i64>,
    /// Latest reading that belongs to it (the in-range one when closed).
    pub last_reading_at: i64,
    pub min_c: f64,
    pub max_c: f64,
    /// Out-of-range readings.
    pub readings: usize,
    /// Time known to be out of range, ms.
    pub out_ms: i64,
    /// Time inside the episode covered by gaps, ms.
    pub unknown_ms: i64,
    pub above: bool,
    pub below: bool,
    /// When the first reading arrived at the service.
    pub first_received_at: i64,
}

impl Episode {
    pub fn end_or_last(&self) -> i64 {
        self.ended_at.unwrap_or(self.last_reading_at)
    }
}

/// A rule met.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub rule_id: String,
    /// The first reading that counted toward it: stable across re-evaluation.
    pub anchor_ts: i64,
    /// The reading at which the rule was met.
    pub met_at: i64,
    /// When that reading arrived.
    pub met_received_at: i64,
    /// Span of readings that counted: excursions overlapping it are linked to the alarm.
    pub span: (i64, i64),
}

fn out_of_range(t: f64, range: (f64, f64)) -> bool {
    t < range.0 || t > range.1
}

/// Out-of-range episodes of a time-ordered series. `gap_ms`: longer spacing is unknown time.
pub fn episodes(samples: &[Sample], range: (f64, f64), gap_ms: i64) -> Vec<Episode> {
    let mut out = Vec::new();
    let mut cur: Option<Episode> = None;
    let mut prev: Option<&Sample> = None;
    for s in samples {
        if let (Some(ep), Some(p)) = (cur.as_mut(), prev) {
            // Time since the previous reading, which was out of range.
            let dt = s.ts - p.ts;
            if dt > gap_ms {
                ep.unknown_ms += dt;
            } else {
                ep.out_ms += dt;
            }
        }
        if out_of_range(s.temp_c, range) {
            let ep = cur.get_or_insert(Episode {
                started_at: s.ts,
                ended_at: None,
                last_reading_at: s.ts,
                min_c: s.temp_c,
                max_c: s.temp_c,
                readings: 0,
                out_ms: 0,
                unknown_ms: 0,
                above: false,
                below: false,
                first_received_at: s.received_at,
            });
            ep.last_reading_at = s.ts;
            ep.min_c = ep.min_c.min(s.temp_c);
            ep.max_c = ep.max_c.max(s.temp_c);
            ep.readings += 1;
            ep.above |= s.temp_c > range.1;
            ep.below |= s.temp_c < range.0;
        } else if let Some(mut ep) = cur.take() {
            ep.ended_at = Some(s.ts);
            ep.last_reading_at = s.ts;
            out.push(ep);
        }
        prev = Some(s);
    }
    out.extend(cur);
    out
}

/// Every time a rule is met in the series.
///
/// Consecutive: the condition holds on every reading from the run's first to one at least
/// `minutes` later (gaps count as unknown, not as time held). Cumulative: the time the condition
/// held within the sliding window reaches `minutes`; once met, the rule is met again only after
/// the window total has fallen below it.
pub fn hits(samples: &[Sample], range: (f64, f64), rules: &[Rule], gap_ms: i64) -> Vec<Hit> {
    let mut out = Vec::new();
    for rule in rules {
        let need = rule.minutes * 60_000;
        match rule.kind {
            RuleKind::Consecutive => {
                let mut run: Option<(i64, i64, bool)> = None; // (start, held_ms, hit)
                let mut prev: Option<&Sample> = None;
                for s in samples {
                    if rule.condition.holds(s.temp_c, range) {
                        let r = run.get_or_insert((s.ts, 0, false));
                        if let Some(p) = prev {
                            let dt = s.ts - p.ts;
                            if p.ts >= r.0 && dt <= gap_ms {
                                r.1 += dt;
                            }
                        }
                        if !r.2 && r.1 >= need {
                            r.2 = true;
                            out.push(Hit {
                                rule_id: rule.id.clone(),
                                anchor_ts: r.0,
                                met_at: s.ts,
                                met_received_at: s.received_at,
                                span: (r.0, s.ts),
                            });
                        }
                    } else {
                        run = None;
                    }
                    prev = Some(s);
                }
            }
            RuleKind::Cumulative => {
                let window = rule.window_minutes.unwrap_or(24 * 60) * 60_000;
                // Intervals [from, to) during which the condition held.
                let mut held: std::collections::VecDeque<(i64, i64)> = Default::default();
                let mut active = false;
                let mut prev: Option<&Sample> = None;
                for s in samples {
                    if let Some(p) = prev {
                        if rule.condition.holds(p.temp_c, range) && s.ts - p.ts <= gap_ms {
                            held.push_back((p.ts, s.ts));
                        }
                    }
                    let from = s.ts - window;
                    while held.front().is_some_and(|h| h.1 <= from) {
                        held.pop_front();
                    }
                    let total: i64 = held.iter().map(|h| h.1 - h.0.max(from)).sum();
                    let met = total >= need.max(1) || (need == 0 && rule.condition.holds(s.temp_c, range));
                    if met && !active {
                        let anchor = held.front().map(|h| h.0.max(from)).unwrap_or(s.ts);
                        out.push(Hit {
                            rule_id: rule.id.clone(),
                            anchor_ts: anchor,
                            met_at: s.ts,
                            met_received_at: s.received_at,
                            span: (anchor, s.ts),
                        });
                    }
                    active = met;
                    prev = Some(s);
                }
            }
        }
    }
    out.sort_by_key(|h| (h.met_at, h.rule_id.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coldchain::rules::{default_rules, Condition, Severity};
    use crate::domain::UnitKind;

    const MIN: i64 = 60_000;
    const FRIDGE: (f64, f64) = (2.0, 8.0);
    const GAP: i64 = 10 * MIN; // two 5-minute intervals

    /// Readings every 5 minutes from t=0 with these temperatures.
    fn series(temps: &[f64]) -> Vec<Sample> {
        temps
            .iter()
            .enumerate()
            .map(|(i, t)| Sample {
                ts: i as i64 * 5 * MIN,
                temp_c: *t,
                received_at: i as i64 * 5 * MIN,
            })
            .collect()
    }

    fn fridge_hits(temps: &[f64]) -> Vec<String> {
        hits(&series(temps), FRIDGE, &default_rules(UnitKind::Refrigerator), GAP)
            .into_iter()
            .map(|h| h.rule_id)
            .collect()
    }

    #[test]
    fn an_excursion_runs_from_first_out_to_first_back_in() {
        let eps = episodes(&series(&[5.0, 9.0, 9.5, 8.5, 5.0, 5.0]), FRIDGE, GAP);
        assert_eq!(eps.len(), 1);
        let e = &eps[0];
        assert_eq!((e.started_at, e.ended_at), (5 * MIN, Some(20 * MIN)));
        assert_eq!(e.out_ms, 15 * MIN);
        assert_eq!((e.min_c, e.max_c, e.readings), (8.5, 9.5, 3));
        assert!(e.above && !e.below);
    }

    #[test]
    fn a_gap_is_unknown_time_not_out_of_range() {
        let mut s = series(&[9.0, 9.0]);
        s.push(Sample {
            ts: 70 * MIN,
            temp_c: 9.0,
            received_at: 0,
        });
        s.push(Sample {
            ts: 75 * MIN,
            temp_c: 5.0,
            received_at: 0,
        });
        let e = &episodes(&s, FRIDGE, GAP)[0];
        assert_eq!(e.unknown_ms, 65 * MIN);
        assert_eq!(e.out_ms, 10 * MIN);
        assert_eq!(e.ended_at, Some(75 * MIN));
    }

    #[test]
    fn an_open_excursion_has_no_end() {
        let e = &episodes(&series(&[5.0, 12.0, 13.0]), FRIDGE, GAP)[0];
        assert_eq!(e.ended_at, None);
        assert_eq!(e.last_reading_at, 10 * MIN);
    }

    #[test]
    fn warm_for_55_minutes_is_recorded_but_60_meets_the_rule() {
        // 12 readings above 8 °C span 55 minutes; the 13th makes 60.
        let short: Vec<f64> = std::iter::once(5.0)
            .chain(std::iter::repeat_n(9.0, 12))
            .chain([5.0])
            .collect();
        assert!(!fridge_hits(&short).contains(&"warm-60".to_string()));
        let long: Vec<f64> = std::iter::once(5.0)
            .chain(std::iter::repeat_n(9.0, 13))
            .chain([5.0])
            .collect();
        let h = fridge_hits(&long);
        assert_eq!(h.iter().filter(|r| *r == "warm-60").count(), 1, "{h:?}");
    }

    #[test]
    fn cold_for_15_minutes_meets_the_cold_rule_and_freezing_alerts_at_once() {
        assert!(!fridge_hits(&[5.0, 1.5, 1.5, 1.5, 5.0]).contains(&"cold-15".into()));
        assert!(fridge_hits(&[5.0, 1.5, 1.5, 1.5, 1.5, 5.0]).contains(&"cold-15".into()));
        let h = hits(
            &series(&[5.0, 0.4, 5.0]),
            FRIDGE,
            &default_rules(UnitKind::Refrigerator),
            GAP,
        );
        let freezing = h.iter().find(|h| h.rule_id == "freezing").expect("freezing at once");
        assert_eq!(freezing.met_at, 5 * MIN);
    }

    #[test]
    fn a_ten_minute_door_opening_meets_no_rule() {
        assert!(fridge_hits(&[5.0, 9.0, 9.0, 5.0]).is_empty());
        assert_eq!(episodes(&series(&[5.0, 9.0, 9.0, 5.0]), FRIDGE, GAP).len(), 1);
    }

    #[test]
    fn three_short_episodes_meet_the_cumulative_rule_once() {
        // Three 25-minute warm episodes (5 readings out each), an hour apart: 75 min in 24 h.
        let mut temps = vec![5.0];
        for _ in 0..3 {
            temps.extend(std::iter::repeat_n(9.0, 5));
            temps.extend(std::iter::repeat_n(5.0, 12));
        }
        let h = hits(&series(&temps), FRIDGE, &default_rules(UnitKind::Refrigerator), GAP);
        let cumulative: Vec<_> = h.iter().filter(|h| h.rule_id == "cumulative-60-in-24h").collect();
        assert_eq!(cumulative.len(), 1, "{h:?}");
        assert!(!h.iter().any(|h| h.rule_id == "warm-60"));
        let eps = episodes(&series(&temps), FRIDGE, GAP);
        assert_eq!(eps.len(), 3);
        let (from, to) = cumulative[0].span;
        assert!(
            eps.iter().all(|e| e.started_at >= from && e.started_at <= to),
            "the alarm covers all three"
        );
    }

    #[test]
    fn a_gap_does_not_count_toward_a_consecutive_rule() {
        let mut s = series(&[5.0, 9.0]);
        s.push(Sample {
            ts: 125 * MIN,
            temp_c: 9.0,
            received_at: 0,
        });
        let r = vec![Rule {
            id: "warm".into(),
            condition: Condition::Above { temp_c: 8.0 },
            kind: RuleKind::Consecutive,
            minutes: 60,
            window_minutes: None,
            severity: Severity::Critical,
        }];
        assert!(hits(&s, FRIDGE, &r, GAP).is_empty());
    }

    /// Every consecutive default rule of every unit kind: a series that holds the condition for
    /// one interval less than the rule's duration meets nothing; the full duration meets it once.
    #[test]
    fn every_consecutive_default_rule_is_met_at_its_duration_and_not_before() {
        use crate::coldchain::rules::Condition;
        for kind in [
            UnitKind::Refrigerator,
            UnitKind::Freezer,
            UnitKind::UltraCold,
            UnitKind::Other,
        ] {
            let range = kind.default_range().unwrap_or((2.0, 8.0));
            let rules = default_rules(kind);
            for rule in rules.iter().filter(|r| r.kind == RuleKind::Consecutive) {
                let (ok, bad) = match rule.condition {
                    Condition::Above { temp_c } => ((range.0 + range.1) / 2.0, temp_c + 1.0),
                    Condition::Below { temp_c } | Condition::AtOrBelow { temp_c } => {
                        ((range.0 + range.1) / 2.0, temp_c - 1.0)
                    }
                    Condition::OutsideRange => ((range.0 + range.1) / 2.0, range.1 + 1.0),
                };
                // Readings every minute: n bad readings hold the condition for n-1 minutes.
                let run = |n: i64| -> Vec<Sample> {
                    (0..n + 2)
                        .map(|i| Sample {
                            ts: i * MIN,
                            temp_c: if i >= 1 && i <= n { bad } else { ok },
                            received_at: 0,
                        })
                        .collect()
                };
                let met = |n: i64| hits(&run(n), range, std::slice::from_ref(rule), 2 * MIN).len();
                let need = rule.minutes + 1;
                assert_eq!(met(need), 1, "{kind:?} {} at its duration", rule.id);
                if rule.minutes > 0 {
                    assert_eq!(met(need - 1), 0, "{kind:?} {} one minute short", rule.id);
                }
            }
        }
    }
}
