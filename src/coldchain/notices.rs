//! What an excursion's emails say, composed here and queued in the caller's transaction
//! through the generic outbox (`crate::alerts`).
//!
//! An excursion alert says what docs/domain.md, "After an excursion" asks: which location and
//! unit, the temperature now, since when, min/max so far, and what to do now — label the
//! vaccine "Do Not Use", keep it at proper temperature, do not discard it, contact the
//! manufacturer(s) and the program. Every email carries the recipient's own signed, expiring
//! acknowledgement link. (A logger's own conditions compose theirs in [`super::devices`].)
//!
//! It also carries what a coordinator needs on the phone to the manufacturers: the lots now on
//! hold (product, lot, expiry, doses), the location's street address and the program's phone
//! number, the range in °C and °F, the logger's serial, every rule met (the plainest first),
//! who is alerted next and when, and the last 6 hours as a chart (PNG).

use chrono::TimeZone;
use sqlx::AnyConnection;

use super::excursions::{self, Facts};
use super::rules::{Rule, RuleKind};
use super::stock::ExposedStock;
use crate::alerts::links::Subject;
use crate::alerts::{outbox, About, Email, Links, Recipient};
use crate::error::{Error, Result};
use crate::store::rfc3339;

type Tx = AnyConnection;

/// How far back an alert's chart reaches.
const CHART_MS: i64 = 6 * 3_600_000;

/// Who is told next if nobody acknowledges, and when (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Backup(i64),
    State(i64),
    Reminder(i64),
}

/// What the caller knows that the excursion's row does not.
pub struct Told<'a> {
    /// The program's phone number.
    pub phone: Option<&'a str>,
    /// Who is alerted next, if nobody acknowledges.
    pub next: Option<Next>,
    /// Rules met in this pass and not recorded yet: the email lists every rule met.
    pub also_met: &'a [Rule],
    /// The inventory's holds, for the lots on hold.
    pub stock: &'a dyn ExposedStock,
}

/// Rules as an email lists them: each once, the plainest first (a rule that holds without
/// interruption before a cumulative one; the shorter before the longer).
pub fn plainest_first(rules: &[Rule]) -> Vec<String> {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| (r.kind == RuleKind::Cumulative, r.minutes));
    let mut out: Vec<String> = Vec::new();
    for r in sorted {
        let d = r.describe();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}
/// A time as the location reads it ("2026-11-30 08:18 EST").
pub(super) fn local(tz: chrono_tz::Tz, ms: i64) -> String {
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M %Z").to_string(),
        None => rfc3339(ms),
    }
}

fn temp(c: f64) -> String {
    format!("{c:.1} °C ({:.1} °F)", c * 9.0 / 5.0 + 32.0)
}

/// Why people are told about an excursion.
pub enum Purpose<'a> {
    /// The first alert, to the primary coordinator.
    Alert(&'a Rule),
    /// Nobody acknowledged: the next people up.
    Escalation {
        minutes_unacknowledged: i64,
    },
    /// Still nobody acknowledged.
    Reminder {
        minutes_unacknowledged: i64,
    },
    BackInRange,
}

impl Purpose<'_> {
    fn key(&self) -> &'static str {
        match self {
            Purpose::Alert(_) => "alert",
            Purpose::Escalation { .. } => "escalation",
            Purpose::Reminder { .. } => "reminder",
            Purpose::BackInRange => "back_in_range",
        }
    }
}

async fn facts_of(tx: &mut Tx, excursion_id: i64) -> Result<Facts> {
    excursions::facts(tx, excursion_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no excursion {excursion_id}")))
}

/// The location's primary and backup coordinators of an excursion's unit.
pub async fn coordinators(tx: &mut Tx, excursion_id: i64) -> Result<[Recipient; 2]> {
    let f = facts_of(tx, excursion_id).await?;
    Ok([
        Recipient::new(f.primary.0, f.primary.1),
        Recipient::new(f.backup.0, f.backup.1),
    ])
}

/// Queues one email per recipient about an excursion, each with its own acknowledgement link.
pub async fn excursion(
    tx: &mut Tx,
    links: &Links,
    excursion_id: i64,
    purpose: Purpose<'_>,
    recipients: &[Recipient],
    told: &Told<'_>,
) -> Result<()> {
    let f = facts_of(tx, excursion_id).await?;
    let mut met = excursions::rules_met(tx, excursion_id).await?;
    met.extend(told.also_met.iter().cloned());
    if let Purpose::Alert(rule) = &purpose {
        met.push((*rule).clone());
    }
    let rules = plainest_first(&met);
    // The lots and the chart are extras: one that cannot be read leaves the email without it,
    // never without the email.
    let held = match told.stock.held(tx, excursion_id).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(excursion = excursion_id, error = %e, "the alert goes without its lots on hold");
            Vec::new()
        }
    };
    let chart = chart_png(tx, &f, &met).await;
    let latest = crate::readings::latest_in(tx, &f.serial).await?;
    let now_line = latest
        .map(|(ts, t)| format!("{} at {}", temp(t), local(f.timezone, ts)))
        .unwrap_or_else(|| "no reading yet".into());
    let back = match f.ended_at {
        Some(t) => format!("Back in range since: {}\n", local(f.timezone, t)),
        None => String::new(),
    };
    let late = if f.detected_late {
        format!(
            "\nThis excursion was found in readings that reached us late: the logger took them on time \
             and they were delivered afterwards (a gateway's backlog, a logger file, or a logger assigned \
             to the unit later). It began at {}, not just now.\n",
            local(f.timezone, f.started_at)
        )
    } else {
        String::new()
    };
    let late = match &f.timezone_unreadable {
        Some(_) => format!("{late}\nTimes are in UTC: the location's time zone cannot be read (fix it under the location's settings).\n"),
        None => late,
    };
    let place = format!("{} {}", f.location_code, f.unit_name);
    let since = local(f.timezone, f.started_at);
    let (subject, opening) = match &purpose {
        Purpose::Alert(_) => (
            format!("VFC temperature alert: {place} out of range since {since}"),
            String::new(),
        ),
        Purpose::Escalation { minutes_unacknowledged } => (
            format!("VFC temperature alert, not acknowledged: {place} out of range since {since}"),
            format!(
                "Nobody has acknowledged this alert in {minutes_unacknowledged} minutes; you are the next contact.\n"
            ),
        ),
        Purpose::Reminder { minutes_unacknowledged } => (
            format!("Reminder, VFC temperature alert: {place} out of range since {since}"),
            format!("Still not acknowledged after {minutes_unacknowledged} minutes.\n"),
        ),
        Purpose::BackInRange => (
            format!("VFC temperature back in range: {place}"),
            "The unit is back in range. Keep the affected vaccine labelled \"Do Not Use\" until the \
             manufacturer's determination for each lot.\n"
                .to_string(),
        ),
    };
    let rules_text = match rules.as_slice() {
        [] => String::new(),
        [one] => format!("Rule met: {one}\n"),
        many => format!(
            "Rules met:\n{}",
            many.iter().map(|r| format!("  - {r}\n")).collect::<String>()
        ),
    };
    let lots = if held.is_empty() {
        "Lots on hold: none recorded in this unit.\n".to_string()
    } else {
        format!(
            "Lots on hold (\"Do Not Use\") in this unit:\n{}",
            held.iter()
                .map(|l| format!(
                    "  - {}, lot {}, expires {}, {} doses ({})\n",
                    l.product,
                    l.lot,
                    l.expires_on,
                    l.doses,
                    l.funding.to_uppercase()
                ))
                .collect::<String>()
        )
    };
    let next = match (told.next, f.acknowledged.is_some()) {
        (Some(n), false) => {
            let (at, who) = match n {
                Next::Backup(at) => (at, format!("the backup coordinator, {}", f.backup.0)),
                Next::State(at) => (at, "the state VFC coordinators".to_string()),
                Next::Reminder(at) => (at, "a reminder goes to everyone alerted so far".to_string()),
            };
            format!(
                "If nobody acknowledges by {}, {who} is alerted.\n",
                local(f.timezone, at)
            )
        }
        _ => String::new(),
    };
    let address = f
        .address
        .as_deref()
        .map(|a| format!("Address: {a}\n"))
        .unwrap_or_default();
    let phone = told
        .phone
        .map(|p| format!("The VFC program: {p}\n"))
        .unwrap_or_default();
    let chart_line = if chart.is_some() {
        "The last 6 hours are in the chart below.\n\n"
    } else {
        ""
    };
    for to in recipients {
        let body = format!(
            "{name},\n\n\
             The {unit} at {loc_name} ({loc}) went out of its storage range ({lo:.1} to {hi:.1} °C, \
             {lo_f:.1} to {hi_f:.1} °F).\n\
             {opening}{rules_text}\n\
             Temperature now:  {now_line}\n\
             Logger: {serial}\n\
             Out of range since: {since}\n{back}\
             Lowest / highest so far: {min} / {max}\n{late}\n\
             {lots}\n\
             What to do now:\n\
             1. Label the vaccine in this unit \"Do Not Use\" and keep it at the proper temperature\n   \
                (move it to a working unit if this one cannot hold temperature).\n\
             2. Do not discard any vaccine.\n\
             3. Contact the manufacturer(s) of every affected lot and the VFC program; the manufacturer\n   \
                decides per lot whether it can still be used.\n\
             4. Record what happened: when found, temperature and room temperature, cause, actions.\n\n\
             Acknowledge that you are handling it (this link is yours; it stops the escalation):\n{ack}\n\
             {next}\n\
             {loc_name}, {loc}\n{address}{phone}\n\
             {chart_line}\
             — vfc-monitor\n",
            name = to.name,
            unit = f.unit_name,
            loc_name = f.location_name,
            loc = f.location_code,
            lo = f.range.0,
            hi = f.range.1,
            lo_f = f.range.0 * 9.0 / 5.0 + 32.0,
            hi_f = f.range.1 * 9.0 / 5.0 + 32.0,
            serial = f.serial,
            min = temp(f.min_c),
            max = temp(f.max_c),
            ack = links.ack_url(Subject::Excursion(excursion_id), &to.email),
        );
        let email = Email {
            about: About::Excursion(excursion_id),
            purpose: purpose.key(),
            to,
            subject: &subject,
            body: &body,
        };
        outbox::enqueue_with(tx, &email, chart.as_deref()).await?;
    }
    Ok(())
}

/// The last 6 hours of the unit as a PNG, with the range and the rules' thresholds; none when
/// it cannot be drawn (the email goes without it).
async fn chart_png(tx: &mut Tx, f: &Facts, rules: &[Rule]) -> Option<Vec<u8>> {
    use super::rules::Condition as C;
    let to = crate::store::now_millis().max(f.ended_at.unwrap_or(0)) + 60_000;
    let mut thresholds: Vec<f64> = Vec::new();
    for r in rules {
        if let C::Above { temp_c } | C::Below { temp_c } | C::AtOrBelow { temp_c } = r.condition {
            if !thresholds.contains(&temp_c) {
                thresholds.push(temp_c);
            }
        }
    }
    let chart = match recent(tx, f.unit_id, f.timezone, f.range, thresholds, to - CHART_MS, to).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(excursion = f.id, error = %e, "the alert goes without its chart");
            return None;
        }
    };
    match chart.png(640, 260) {
        Ok(png) => Some(png),
        Err(e) => {
            tracing::warn!(excursion = f.id, error = %e, "the alert goes without its chart");
            None
        }
    }
}

/// The last hours of a unit as its alert email shows them, read on the caller's connection
/// (inside the alert's transaction): the primary logger's readings as the rules read them, the
/// range, the rules' `thresholds` and the unit's excursions over `[from, to)`.
async fn recent(
    conn: &mut sqlx::AnyConnection,
    unit_id: i64,
    tz: chrono_tz::Tz,
    range: (f64, f64),
    thresholds: Vec<f64>,
    from: i64,
    to: i64,
) -> Result<crate::charts::TempChart> {
    let primary = super::primary::record(conn, unit_id, from, to).await?;
    let shades = super::excursions::between(conn, unit_id, from, to)
        .await?
        .into_iter()
        .map(|x| crate::charts::Shade {
            id: x.id,
            start: x.start,
            end: x.end,
            started_at: crate::store::rfc3339(x.start),
            ended_at: x.ended_at.map(crate::store::rfc3339),
        })
        .collect();
    Ok(crate::charts::TempChart {
        from,
        to,
        tz,
        range,
        thresholds,
        series: vec![crate::charts::Series {
            name: primary.serial.clone().unwrap_or_else(|| "primary logger".into()),
            points: primary.samples.iter().map(|s| (s.ts, s.temp_c)).collect(),
            gap_ms: primary.gap_ms,
            runs: None,
        }],
        shades,
        alt: "The last 6 hours of the unit's temperatures".into(),
    })
}

/// Queues the first alert of an excursion to the location's primary coordinator.
pub async fn alert(tx: &mut Tx, links: &Links, excursion_id: i64, rule: &Rule, told: &Told<'_>) -> Result<()> {
    let [primary, _] = coordinators(tx, excursion_id).await?;
    excursion(tx, links, excursion_id, Purpose::Alert(rule), &[primary], told).await
}

/// Queues "back in range" to everyone the alert has reached so far.
pub async fn back_in_range(
    tx: &mut Tx,
    links: &Links,
    excursion_id: i64,
    state: &[Recipient],
    told: &Told<'_>,
) -> Result<()> {
    let f = facts_of(tx, excursion_id).await?;
    let mut to = vec![Recipient::new(f.primary.0, f.primary.1)];
    if f.escalation_level >= 1 {
        to.push(Recipient::new(f.backup.0, f.backup.1));
    }
    if f.escalation_level >= 2 {
        to.extend(state.iter().cloned());
    }
    excursion(tx, links, excursion_id, Purpose::BackInRange, &to, told).await
}
