//! The logger's own conditions: no data (power or network loss), battery low, probe
//! disconnected, calibration certificate expiring within 30 days or expired (docs/domain.md,
//! "Data loggers": an expired certificate makes the logger non-compliant; a logger that goes
//! quiet is itself an alarm). Each episode is one row of `device_alerts` (owned here, written by
//! [`record`]) and one email to the location's primary coordinator when it opens — not one per
//! reading; it closes when the condition clears, and escalates like an excursion until someone
//! acknowledges it. This file holds the checks.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::stock::ExposedStock;
use crate::alerts::{Links, Recipient};
use crate::error::{Error, Result};
use crate::registry::assignments::{self, Serving};
use crate::store::{now_millis, rfc3339, Db};

mod record;
pub mod waiting;

use record::Condition;
pub use record::{acknowledge, escalated, facts, find, list, notify, unacknowledged, visible, DeviceAlert, Facts};

const MIN: i64 = 60_000;
/// Battery below this is low; it clears a little above, so a flickering reading does not
/// open and close episodes.
pub const BATTERY_LOW_PCT: f64 = 20.0;
const BATTERY_OK_PCT: f64 = 25.0;
const CALIBRATION_WARNING_DAYS: i64 = 30;

/// A logger's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NoData,
    BatteryLow,
    ProbeDisconnected,
    CalibrationExpired,
    CalibrationExpiring,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::NoData,
        Kind::BatteryLow,
        Kind::ProbeDisconnected,
        Kind::CalibrationExpired,
        Kind::CalibrationExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoData => "no_data",
            Kind::BatteryLow => "battery_low",
            Kind::ProbeDisconnected => "probe_disconnected",
            Kind::CalibrationExpired => "calibration_expired",
            Kind::CalibrationExpiring => "calibration_expiring",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// Runs the checks every few seconds until cancelled; a pass that fails is an error the
/// supervisor restarts the task on.
pub async fn run(
    db: Db,
    links: Links,
    stock: Arc<dyn ExposedStock>,
    outbox: Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if check(&db, &links, &*stock, now_millis()).await? > 0 {
            outbox.notify_one();
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Whether each condition holds for a logger now: `Some(true)` opens (or keeps) an episode,
/// `Some(false)` closes it, `None` leaves it as it is.
fn conditions(s: &Serving, last: Option<i64>, now: i64, today: NaiveDate) -> Vec<(Kind, Option<bool>, String)> {
    let interval = s.reading_interval_s.unwrap_or(300) * 1000;
    // A logger registered with a past "from" has been watched only since it was registered.
    let watched_since = s.from_ms.max(s.created_at);
    // docs/domain.md: no data for max(2 × the logging interval, 60 min).
    let quiet_after = (2 * interval).max(60 * MIN);
    let since = last.unwrap_or(watched_since);
    // A certificate date that cannot be read is no proof of calibration: it is its own
    // "calibration expired" condition, naming the stored value, and the other conditions are
    // checked as usual.
    let (expired, expiring) = match &s.calibration_expires_on {
        None => ((None, String::new()), (None, String::new())),
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(expires) => {
                let days_left = (expires - today).num_days();
                (
                    (
                        Some(days_left < 0),
                        format!("calibration certificate expired on {expires}: the logger is not compliant"),
                    ),
                    (
                        Some((0..=CALIBRATION_WARNING_DAYS).contains(&days_left)),
                        format!("calibration certificate expires on {expires}: arrange recalibration or a replacement"),
                    ),
                )
            }
            Err(_) => (unreadable_calibration(s, d), (Some(false), String::new())),
        },
    };
    vec![
        (
            Kind::NoData,
            Some(now - since > quiet_after),
            format!(
                "no reading since {}: check the logger's power and network",
                rfc3339(since)
            ),
        ),
        (
            Kind::BatteryLow,
            // Between the two thresholds nothing changes: an open episode stays open.
            s.battery_pct.and_then(|b| {
                if b < BATTERY_LOW_PCT {
                    Some(true)
                } else if b >= BATTERY_OK_PCT {
                    Some(false)
                } else {
                    None
                }
            }),
            format!(
                "battery at {:.0} %: replace or charge it",
                s.battery_pct.unwrap_or_default()
            ),
        ),
        (
            Kind::ProbeDisconnected,
            s.probe_connected.map(|p| !p),
            "the probe is disconnected: readings are not the vaccine's temperature".into(),
        ),
        (Kind::CalibrationExpired, expired.0, expired.1),
        (Kind::CalibrationExpiring, expiring.0, expiring.1),
    ]
}

/// A logger whose stored calibration expiry cannot be read: its calibration counts as expired,
/// the detail naming the value.
fn unreadable_calibration(s: &Serving, stored: &str) -> (Option<bool>, String) {
    let why = Error::unreadable(
        "loggers",
        &s.serial,
        format!("calibration_expires_on {stored:?} is not YYYY-MM-DD"),
    );
    metrics::counter!("vfc_device_check_failures_total").increment(1);
    tracing::error!(error = %why, "treating the logger's calibration as expired");
    (
        Some(true),
        format!("{why}: no valid calibration certificate is on record; record its expiry date again when you assign the logger"),
    )
}

/// Opens and closes condition episodes for every logger serving a unit; returns how many
/// opened. One logger whose record cannot be read is logged and counted, and the rest are
/// checked as usual.
pub async fn check(db: &Db, links: &Links, stock: &dyn ExposedStock, now: i64) -> anyhow::Result<usize> {
    let today = crate::store::from_millis(now).date_naive();
    let mut opened = 0;
    for s in assignments::serving_now(db).await? {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                metrics::counter!("vfc_device_check_failures_total").increment(1);
                tracing::error!(error = %e, "cannot check this logger's conditions; the others go on");
                continue;
            }
        };
        match check_one(db, links, &s, now, today).await {
            Ok(n) => opened += n,
            Err(e) if db.dialect().is_transient_error(&e) => return Err(e),
            Err(e) => {
                metrics::counter!("vfc_device_check_failures_total").increment(1);
                tracing::error!(serial = %s.serial, error = ?e, "cannot check this logger's conditions; the others go on");
            }
        }
    }
    Ok(opened + unwatched(db, links, stock, now).await?)
}

/// A unit that stores vaccine with no primary logger is as unwatched as one whose logger went
/// quiet: after the same hour it has the same "no data" condition, its own (serial '': no
/// logger), until a logger serves it or the vaccine is gone (docs/domain.md, "Data loggers").
async fn unwatched(db: &Db, links: &Links, stock: &dyn ExposedStock, now: i64) -> anyhow::Result<usize> {
    let stocked: std::collections::BTreeSet<i64> = stock.stocked_units(db).await?.into_iter().collect();
    let mut opened = 0;
    let mut still = std::collections::BTreeSet::new();
    for (unit_id, since) in assignments::without_primary(db).await? {
        if !stocked.contains(&unit_id) {
            continue;
        }
        still.insert(unit_id);
        if now - since <= 60 * MIN {
            continue;
        }
        let Some(to) = primary_contact(db, unit_id).await? else {
            continue;
        };
        let detail = format!(
            "no data logger has watched it since {}, yet it stores vaccine: assign one \
             (PUT /api/v1/units/{unit_id}/logger) or move the vaccine to a watched unit",
            rfc3339(since)
        );
        let c = Condition {
            serial: "",
            unit_id,
            kind: Kind::NoData,
            detail: &detail,
        };
        if record::open(db, links, &c, &to, now).await? {
            opened += 1;
        }
    }
    for unit_id in record::unwatched_now(db).await? {
        if !still.contains(&unit_id) {
            record::close_unwatched(db, unit_id, now).await?;
        }
    }
    Ok(opened)
}

/// The primary coordinator of a unit's location.
async fn primary_contact(db: &Db, unit_id: i64) -> Result<Option<Recipient>> {
    let mut conn = db.pool.acquire().await?;
    let place = crate::registry::units::place_of(&mut conn, unit_id).await?;
    Ok(place.map(|p| Recipient::new(p.primary.0, p.primary.1)))
}

/// Opens and closes one logger's condition episodes; how many opened.
async fn check_one(db: &Db, links: &Links, s: &Serving, now: i64, today: NaiveDate) -> anyhow::Result<usize> {
    let last = crate::readings::last_taken_at(db, &s.serial).await?;
    let mut opened = 0;
    for (kind, holds, detail) in conditions(s, last, now, today) {
        match holds {
            Some(true) => {
                let new = Condition {
                    serial: &s.serial,
                    unit_id: s.unit_id,
                    kind,
                    detail: &detail,
                };
                let to = Recipient::new(s.primary_name.clone(), s.primary_email.clone());
                if record::open(db, links, &new, &to, now).await? {
                    opened += 1;
                }
            }
            Some(false) => record::close(db, &s.serial, kind, now).await?,
            None => {}
        }
    }
    Ok(opened)
}
