//! Simulated loggers: a refrigerator's compressor cycling around 5 °C, a freezer around −20 °C,
//! noise, door openings, and scripted scenarios (`door-open`, `compressor-failure`, `freeze`,
//! `power-outage`, `low-battery`).
//!
//! A reading is never stamped in the future. A run starts `replay` before now and plays that
//! past window `speed` times faster than real time, then goes on live (or stops, `live: false`).
//! The physics is a first-order model: the cabinet drifts towards the room's 22 °C and the
//! compressor, when on, pulls it down; a thermostat switches the compressor at the band's edges.

use std::collections::VecDeque;
use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::feed::{Device, Feed, Reading};

const ROOM_C: f64 = 22.0;
/// Physics step, minutes.
const STEP_MIN: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Refrigerator,
    Freezer,
}

impl UnitKind {
    /// (compressor on above, off below, drift rate towards the room per minute, pull when on, °C/min)
    fn thermostat(self) -> (f64, f64, f64, f64) {
        match self {
            UnitKind::Refrigerator => (6.0, 4.0, 0.006, 0.25),
            UnitKind::Freezer => (-18.5, -21.5, 0.004, 0.45),
        }
    }
    fn start_c(self) -> f64 {
        match self {
            UnitKind::Refrigerator => 5.0,
            UnitKind::Freezer => -20.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioKind {
    /// The door left ajar: a short warm spell.
    DoorOpen,
    /// The compressor stops: a slow warm-up past 8 °C.
    CompressorFailure,
    /// The thermostat sticks on: the cabinet drops below 0 °C.
    Freeze,
    /// No power: the compressor stops and the gateway is dark; the logger keeps recording on
    /// its battery and everything it recorded is sent when the power returns (backfill).
    PowerOutage,
    /// The logger's battery runs low.
    LowBattery,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::DoorOpen => "door-open",
            ScenarioKind::CompressorFailure => "compressor-failure",
            ScenarioKind::Freeze => "freeze",
            ScenarioKind::PowerOutage => "power-outage",
            ScenarioKind::LowBattery => "low-battery",
        }
    }

    fn default_length(self) -> Option<Duration> {
        match self {
            ScenarioKind::DoorOpen => Some(Duration::minutes(25)),
            ScenarioKind::Freeze => Some(Duration::minutes(90)),
            ScenarioKind::PowerOutage => Some(Duration::hours(2)),
            ScenarioKind::CompressorFailure | ScenarioKind::LowBattery => None,
        }
    }
    fn for_refrigerators(self) -> bool {
        matches!(self, ScenarioKind::DoorOpen | ScenarioKind::Freeze)
    }
}

/// `NAME[@AFTER][+LASTING][=SERIAL]`: e.g. `compressor-failure@2h`, `power-outage@1h+3h=SIM-2`.
/// `AFTER` counts from the start of the simulated window (default 10m); without `LASTING` a
/// scenario keeps its usual length (door-open 25m, freeze 90m, power-outage 2h; the others last);
/// without `SERIAL` it hits the first logger it fits (a refrigerator for door-open and freeze).
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub kind: ScenarioKind,
    pub after: Duration,
    pub lasting: Option<Duration>,
    pub serial: Option<String>,
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let (rest, serial) = match raw.split_once('=') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (raw, None),
        };
        let (rest, lasting) = match rest.split_once('+') {
            Some((r, l)) => (r, Some(parse_duration(l)?)),
            None => (rest, None),
        };
        let (name, after) = match rest.split_once('@') {
            Some((n, a)) => (n, parse_duration(a)?),
            None => (rest, Duration::minutes(10)),
        };
        let kind = match name {
            "door-open" => ScenarioKind::DoorOpen,
            "compressor-failure" => ScenarioKind::CompressorFailure,
            "freeze" => ScenarioKind::Freeze,
            "power-outage" => ScenarioKind::PowerOutage,
            "low-battery" => ScenarioKind::LowBattery,
            other => {
                return Err(format!(
                    "unknown scenario {other:?}: door-open, compressor-failure, freeze, power-outage or low-battery"
                ))
            }
        };
        Ok(Scenario {
            kind,
            after,
            lasting: lasting.or(kind.default_length()),
            serial,
        })
    }
}

/// `90s`, `5m`, `2h`, `1d`, or a sum of them (`1h30m`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let bad = || format!("{raw:?} is not a duration such as 30s, 5m, 2h or 1h30m");
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in raw.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || total <= Duration::zero() {
        return Err(bad());
    }
    Ok(total)
}

/// One simulated logger.
#[derive(Debug, Clone)]
pub struct LoggerSpec {
    pub serial: String,
    pub kind: UnitKind,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub loggers: Vec<LoggerSpec>,
    pub interval: Duration,
    /// How far back the run starts.
    pub replay: Duration,
    /// How much faster than real time the past window plays.
    pub speed: f64,
    pub scenarios: Vec<Scenario>,
    /// Go on in real time after the replay (else stop at now).
    pub live: bool,
    pub seed: u64,
}

impl Plan {
    /// `refrigerators` then `freezers` loggers named `{prefix}1`, `{prefix}2`…
    pub fn loggers(prefix: &str, refrigerators: usize, freezers: usize) -> Vec<LoggerSpec> {
        let kinds = std::iter::repeat_n(UnitKind::Refrigerator, refrigerators)
            .chain(std::iter::repeat_n(UnitKind::Freezer, freezers));
        kinds
            .enumerate()
            .map(|(i, kind)| LoggerSpec {
                serial: format!("{prefix}{}", i + 1),
                kind,
            })
            .collect()
    }

    /// Which logger each scenario hits; an error names one that fits none.
    fn targets(&self) -> Result<Vec<(usize, Scenario)>, String> {
        self.scenarios
            .iter()
            .map(|s| {
                let found = match &s.serial {
                    Some(serial) => self.loggers.iter().position(|l| &l.serial == serial),
                    None if s.kind.for_refrigerators() => {
                        self.loggers.iter().position(|l| l.kind == UnitKind::Refrigerator)
                    }
                    None => (!self.loggers.is_empty()).then_some(0),
                };
                found.map(|i| (i, s.clone())).ok_or_else(|| match &s.serial {
                    Some(serial) => format!("scenario {}: no simulated logger {serial}", s.kind.name()),
                    None => format!("scenario {}: no simulated logger it fits", s.kind.name()),
                })
            })
            .collect()
    }
}

struct Sim {
    spec: LoggerSpec,
    temp_c: f64,
    compressor: bool,
    door_until: Option<DateTime<Utc>>,
    battery_pct: f64,
    next: DateTime<Utc>,
    clock: DateTime<Utc>,
    /// Recorded during a power outage, sent when it ends.
    held: VecDeque<Reading>,
    rng: StdRng,
}

/// The loggers of a plan, stepped through simulated time.
pub struct Simulator {
    loggers: Vec<Sim>,
    scenarios: Vec<(usize, Scenario)>,
    start: DateTime<Utc>,
    interval: Duration,
}

impl Simulator {
    /// Starts the window `plan.replay` before `now`, on the reading grid.
    pub fn new(plan: &Plan, now: DateTime<Utc>) -> Result<Simulator, String> {
        if plan.interval < Duration::seconds(1) {
            return Err("the reading interval must be at least 1s".into());
        }
        let scenarios = plan.targets()?;
        if let Some((_, s)) = scenarios.iter().find(|(_, s)| !plan.live && s.after > plan.replay) {
            return Err(format!(
                "scenario {} starts {} min into a {} min window that stops at now (--no-live): it would never run",
                s.kind.name(),
                s.after.num_minutes(),
                plan.replay.num_minutes()
            ));
        }
        let start = (now - plan.replay)
            .duration_trunc(plan.interval)
            .map_err(|e| e.to_string())?;
        let loggers = plan
            .loggers
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut rng = StdRng::seed_from_u64(plan.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                Sim {
                    temp_c: spec.kind.start_c() + rng.random_range(-0.8..0.8),
                    compressor: rng.random_bool(0.5),
                    door_until: None,
                    battery_pct: rng.random_range(80.0..100.0),
                    next: start,
                    clock: start,
                    held: VecDeque::new(),
                    spec: spec.clone(),
                    rng,
                }
            })
            .collect();
        Ok(Simulator {
            loggers,
            scenarios,
            start,
            interval: plan.interval,
        })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Each logger's battery, as its status reports it.
    pub fn batteries(&self) -> Vec<(String, f64)> {
        self.loggers
            .iter()
            .map(|l| (l.spec.serial.clone(), (l.battery_pct * 10.0).round() / 10.0))
            .collect()
    }

    fn active(&self, logger: usize, kind: ScenarioKind, at: DateTime<Utc>) -> bool {
        self.scenarios.iter().any(|(i, s)| {
            let from = self.start + s.after;
            *i == logger && s.kind == kind && at >= from && s.lasting.is_none_or(|l| at < from + l)
        })
    }

    /// Runs every logger up to `to`: the readings taken by then and not held back by an outage.
    pub fn advance(&mut self, to: DateTime<Utc>) -> Vec<Reading> {
        let mut out = Vec::new();
        for i in 0..self.loggers.len() {
            while self.loggers[i].next <= to {
                let at = self.loggers[i].next;
                self.step_until(i, at);
                let dark = self.active(i, ScenarioKind::PowerOutage, at);
                let l = &mut self.loggers[i];
                let noise = l.rng.random_range(-0.1..0.1);
                let reading = Reading {
                    serial: l.spec.serial.clone(),
                    ts: at,
                    temp_c: ((l.temp_c + noise) * 10.0).round() / 10.0,
                };
                if dark {
                    l.held.push_back(reading);
                } else {
                    out.extend(l.held.drain(..));
                    out.push(reading);
                }
                l.next = at + self.interval;
            }
        }
        out
    }

    /// Whatever an outage still holds back (the power comes back as the run ends).
    pub fn flush(&mut self) -> Vec<Reading> {
        self.loggers.iter_mut().flat_map(|l| l.held.drain(..)).collect()
    }

    fn step_until(&mut self, i: usize, to: DateTime<Utc>) {
        let step = Duration::milliseconds((STEP_MIN * 60_000.0) as i64);
        while self.loggers[i].clock < to {
            let at = self.loggers[i].clock;
            let failed =
                self.active(i, ScenarioKind::CompressorFailure, at) || self.active(i, ScenarioKind::PowerOutage, at);
            let stuck_on = self.active(i, ScenarioKind::Freeze, at);
            let ajar = self.active(i, ScenarioKind::DoorOpen, at);
            let low = self.active(i, ScenarioKind::LowBattery, at);
            let l = &mut self.loggers[i];
            let (on_above, off_below, drift, pull) = l.spec.kind.thermostat();
            if l.temp_c > on_above {
                l.compressor = true;
            } else if l.temp_c < off_below {
                l.compressor = false;
            }
            // A door opened in the normal course of a clinic day: about once an hour, a minute.
            if l.rng.random_bool((STEP_MIN / 60.0).min(1.0)) {
                l.door_until = Some(at + Duration::minutes(1));
            }
            let door = ajar || l.door_until.is_some_and(|u| at < u);
            let cooling = !failed && (stuck_on || l.compressor);
            let mut rate = drift * (ROOM_C - l.temp_c);
            if cooling {
                rate -= pull;
            }
            if door {
                rate += 0.4;
            }
            l.temp_c += rate * STEP_MIN;
            l.battery_pct = if low {
                (l.battery_pct - 2.0 * STEP_MIN).max(6.0)
            } else {
                (l.battery_pct - 0.0001 * STEP_MIN).max(6.0)
            };
            l.clock = at + step;
        }
    }
}

/// Plays `plan` from `replay` ago: the past window `speed` times faster than real time, then
/// live (when `plan.live`). Each batch of readings goes to `sink`, with each logger's battery.
pub async fn drive<F, Fut>(plan: Plan, cancel: CancellationToken, mut sink: F) -> anyhow::Result<()>
where
    F: FnMut(Vec<Reading>, Vec<(String, f64)>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut sim = Simulator::new(&plan, Utc::now()).map_err(anyhow::Error::msg)?;
    let began = std::time::Instant::now();
    let speed = plan.speed.max(1.0);
    let tick = std::time::Duration::from_millis(100);
    loop {
        let now = Utc::now();
        let replayed = sim.start() + Duration::milliseconds((began.elapsed().as_secs_f64() * speed * 1000.0) as i64);
        let caught_up = replayed >= now;
        let mut batch = sim.advance(replayed.min(now));
        if caught_up && !plan.live {
            batch.extend(sim.flush());
        }
        if !batch.is_empty() {
            sink(batch, sim.batteries()).await?;
        }
        if caught_up && !plan.live {
            return Ok(());
        }
        let wait = if caught_up {
            std::time::Duration::from_secs(1)
        } else {
            tick
        };
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The simulator as a gateway source: readings into the spool, each logger's battery (and its
/// probe, always connected) into its status.
pub fn source(plan: Plan) -> crate::gateway::Source {
    crate::gateway::source(move |feed: Feed| async move {
        let stop = feed.cancelled().clone();
        drive(plan, stop, |readings, batteries| {
            let feed = feed.clone();
            async move {
                for (serial, pct) in batteries {
                    let device = Device {
                        battery_pct: Some(pct),
                        probe_connected: Some(true),
                    };
                    feed.device(&serial, device).await;
                }
                // A stopping gateway stops the simulation; what was taken is on disk.
                let _ = feed.take(readings, None).await;
                Ok(())
            }
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(scenarios: &[&str]) -> Plan {
        Plan {
            loggers: Plan::loggers("SIM-", 1, 1),
            interval: Duration::minutes(5),
            replay: Duration::hours(8),
            speed: 1.0,
            scenarios: scenarios.iter().map(|s| s.parse().unwrap()).collect(),
            live: false,
            seed: 7,
        }
    }

    fn run(p: &Plan) -> Vec<Reading> {
        let now = Utc::now();
        let mut sim = Simulator::new(p, now).unwrap();
        let mut all = sim.advance(now);
        all.extend(sim.flush());
        all
    }

    fn of<'a>(all: &'a [Reading], serial: &str) -> Vec<&'a Reading> {
        all.iter().filter(|r| r.serial == serial).collect()
    }

    #[test]
    fn normal_units_stay_in_range_on_the_grid_and_never_in_the_future() {
        let all = run(&plan(&[]));
        let now = Utc::now();
        let fridge = of(&all, "SIM-1");
        assert_eq!(fridge.len(), 8 * 12 + 1, "one reading per 5 minutes over the window");
        assert!(fridge.windows(2).all(|w| w[1].ts - w[0].ts == Duration::minutes(5)));
        assert!(all.iter().all(|r| r.ts <= now));
        assert!(fridge.iter().all(|r| (2.5..=7.9).contains(&r.temp_c)), "{fridge:?}");
        let freezer = of(&all, "SIM-2");
        assert!(
            freezer.iter().all(|r| (-23.5..=-16.0).contains(&r.temp_c)),
            "{freezer:?}"
        );
        // The compressor cycles: the refrigerator goes both up and down.
        let min = fridge.iter().map(|r| r.temp_c).fold(f64::MAX, f64::min);
        let max = fridge.iter().map(|r| r.temp_c).fold(f64::MIN, f64::max);
        assert!(max - min > 1.0, "{min}..{max}");
    }

    #[test]
    fn scenarios_do_what_they_say() {
        let all = run(&plan(&["compressor-failure@2h"]));
        let fridge = of(&all, "SIM-1");
        let warm = fridge.iter().filter(|r| r.temp_c > 8.0).count();
        assert!(warm * 5 >= 120, "above 8 °C for two hours or more, got {warm} readings");
        assert!(fridge[..20].iter().all(|r| r.temp_c < 8.0), "not before it starts");

        let all = run(&plan(&["freeze@1h"]));
        assert!(of(&all, "SIM-1").iter().any(|r| r.temp_c < 0.0));

        let all = run(&plan(&["door-open@1h"]));
        let peak = of(&all, "SIM-1").iter().map(|r| r.temp_c).fold(f64::MIN, f64::max);
        assert!(peak > 8.0 && peak < 14.0, "a brief warm spell, got {peak}");
    }

    #[test]
    fn a_power_outage_holds_its_readings_back_then_sends_them_all() {
        let p = plan(&["power-outage@2h+3h=SIM-1"]);
        let now = Utc::now();
        let mut sim = Simulator::new(&p, now).unwrap();
        let before_end = sim.start() + Duration::hours(4);
        let first = sim.advance(before_end);
        let fridge: Vec<_> = first.iter().filter(|r| r.serial == "SIM-1").collect();
        assert_eq!(
            fridge.last().unwrap().ts,
            sim.start() + Duration::hours(2) - Duration::minutes(5)
        );
        let rest = sim.advance(now);
        let backfill: Vec<_> = rest.iter().filter(|r| r.serial == "SIM-1").collect();
        assert_eq!(backfill[0].ts, sim.start() + Duration::hours(2), "sent in time order");
        assert_eq!(fridge.len() + backfill.len(), 8 * 12 + 1, "nothing lost");
        assert!(backfill.iter().any(|r| r.temp_c > 8.0), "the unit warmed while dark");
    }

    #[test]
    fn low_battery_and_scenario_syntax() {
        let p = plan(&["low-battery@1h=SIM-2"]);
        let now = Utc::now();
        let mut sim = Simulator::new(&p, now).unwrap();
        sim.advance(now);
        let b = sim.batteries();
        assert!(b[1].1 < 10.0 && b[0].1 > 50.0, "{b:?}");

        let s: Scenario = "power-outage@1h30m+45m=GW-7".parse().unwrap();
        assert_eq!(s.after, Duration::minutes(90));
        assert_eq!(s.lasting, Some(Duration::minutes(45)));
        assert_eq!(s.serial.as_deref(), Some("GW-7"));
        assert!("melt".parse::<Scenario>().unwrap_err().contains("door-open"));
        assert!(parse_duration("5x").is_err());
        let mut unknown = plan(&["freeze=NOPE"]);
        unknown.loggers.truncate(1);
        assert!(Simulator::new(&unknown, now).is_err());
    }
}
