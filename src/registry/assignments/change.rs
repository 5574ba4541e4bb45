//! Changing which logger serves a unit: assigning one (it moves, or it replaces the unit's
//! logger in that role) and taking one off. A change of a unit's primary logger — what its
//! alarms read — goes to a [`Watcher`] in the same transaction.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::{current_assignments, serial_history, unit_history, AssignLogger, Assignment};
use crate::accounts::audit::{self, Entry, Who};
use crate::accounts::Caller;
use crate::domain::{LoggerRole, LoggerSerial};
use crate::error::{Error, Result};
use crate::readings;
use crate::registry::{loggers, units};
use crate::store::{millis, now_millis, rfc3339, Db};

/// A unit's primary logger changed, `before` → `after` (None: no logger).
pub struct PrimaryChange<'a> {
    pub unit_id: i64,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub actor: &'a str,
    pub at: i64,
}

/// Who must know, in the same transaction, when a unit's primary logger changes: its readings
/// are what the unit's alarms judge (the cold chain records and tells it).
pub trait Watcher: Send + Sync {
    fn primary_changed<'a>(
        &'a self,
        tx: &'a mut AnyConnection,
        change: PrimaryChange<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<()>>;
}

/// Puts a logger on a unit (registering the logger if new). The unit's current logger in the
/// same role, and the logger's current unit, end where this begins; a change of either unit's
/// primary logger goes to `watcher` in the same transaction.
pub async fn assign(
    db: &Db,
    caller: &Caller,
    unit_id: i64,
    body: &AssignLogger,
    watcher: &dyn Watcher,
) -> Result<Assignment> {
    let unit = units::get(db, &caller.scope, unit_id).await?;
    let serial = LoggerSerial::parse(&body.serial)?;
    let role = body.role.unwrap_or(LoggerRole::Primary);
    let now = now_millis();
    // Default: the start of this minute, so a reading stamped in whole seconds just now is the
    // unit's.
    let from = match body.from {
        Some(t) => crate::domain::check_instant("from", millis(t))?,
        None => now - now.rem_euclid(60_000),
    };
    if from > now + 60_000 {
        return Err(Error::Invalid("\"from\" may not be in the future".into()));
    }
    if let Some(i) = body.reading_interval_s {
        if !(1..=86_400).contains(&i) {
            return Err(Error::Invalid(
                "reading_interval_s must be 1 to 86400 seconds (CDC: at most 1800)".into(),
            ));
        }
        // A longer interval delays the no-data alarm (twice the interval): past the CDC's
        // limit it is the state's to allow.
        if i > 1800 && !caller.is_state() {
            return Err(Error::StateApprovalRequired(
                "reading_interval_s over 1800 seconds is past the CDC's limit (a reading at least every 30 minutes): \
                 only the state VFC coordinator may set it"
                    .into(),
            ));
        }
    }
    if let (Some(on), Some(exp)) = (body.calibrated_on, body.calibration_expires_on) {
        if exp <= on {
            return Err(Error::Invalid(
                "calibration_expires_on must come after calibrated_on".into(),
            ));
        }
    }

    let history = serial_history(db, serial.as_str()).await?;
    // Where the logger serves now: moving it needs the right to see that unit too.
    if let Some((open, pin)) = history.iter().find(|(a, _)| a.to_ms.is_none()) {
        if !caller.scope.covers_code(pin, &open.location) {
            // Serials are unique across the program: this says it exists, and nothing more.
            return Err(Error::Conflict(format!(
                "logger {serial} is already in use elsewhere; the state VFC coordinator can release it"
            )));
        }
        if open.unit_id == unit_id && open.role == role {
            loggers::update_details(db, &serial, body).await?;
            return Ok(open.clone());
        }
        if from < open.from_ms {
            return Err(Error::Conflict(format!(
                "logger {serial} has served unit {} since {}; \"from\" must not be earlier",
                open.unit_id, open.from
            )));
        }
    }
    if let Some((closed, pin)) = history.iter().rev().find(|(a, _)| a.to_ms.is_some_and(|t| t > from)) {
        // Name the unit only to whoever may see it.
        // Outside the caller's scope this says the serial is taken, and nothing more.
        if !caller.scope.covers_code(pin, &closed.location) {
            return Err(Error::Conflict(format!(
                "logger {serial} is already in use elsewhere at that time; the state VFC coordinator can say when"
            )));
        }
        return Err(Error::Conflict(format!(
            "logger {serial} served unit {} until {}; \"from\" must be at or after that",
            closed.unit_id,
            closed.to.as_deref().unwrap_or_default()
        )));
    }
    // A unit's record has one logger per role at a time, past spans included.
    if let Some(prev) = unit_history(db, unit_id)
        .await?
        .into_iter()
        .rev()
        .find(|a| a.role == role && a.to_ms.is_some_and(|t| t > from))
    {
        return Err(Error::Conflict(format!(
            "unit {unit_id} had {} logger {} until {}; \"from\" must be at or after that",
            role.as_str(),
            prev.serial,
            prev.to.as_deref().unwrap_or_default()
        )));
    }
    // Readings a serial took while no unit had it are the state coordinator's: a clinic may
    // not claim them by backdating "from".
    if !caller.is_state()
        && from < now - 15 * 60_000
        && readings::any_between(db, serial.as_str(), from, now - 15 * 60_000).await?
    {
        return Err(Error::Forbidden(format!(
            "logger {serial} has readings from before now that no unit of yours had; \
             backdating \"from\" over them is for the state VFC coordinator"
        )));
    }
    let replaced = current_assignments(db, unit_id)
        .await?
        .into_iter()
        .find(|a| a.role == role);
    if let Some(r) = &replaced {
        if from < r.from_ms {
            return Err(Error::Conflict(format!(
                "unit {unit_id}'s {} logger {} has served since {}; \"from\" must not be earlier",
                role.as_str(),
                r.serial,
                r.from
            )));
        }
    }

    let mut tx = db.begin().await?;
    let named = loggers::Registration {
        serial: &serial,
        make: None,
        model: None,
        reading_interval_s: None,
    };
    loggers::register(&mut tx, &named, now).await?;
    // End the logger's current assignment (it moves) and the unit's current one in this role
    // (it is replaced); both end exactly where the new one begins.
    sqlx::query("UPDATE logger_assignments SET to_ts = $1 WHERE to_ts IS NULL AND (serial = $2 OR (unit_id = $3 AND role = $4))")
        .bind(from)
        .bind(serial.as_str())
        .bind(unit_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO logger_assignments (unit_id, serial, role, from_ts, to_ts, created_by, created_at) \
         VALUES ($1, $2, $3, $4, NULL, $5, $6)",
    )
    .bind(unit_id)
    .bind(serial.as_str())
    .bind(role.as_str())
    .bind(from)
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if crate::store::is_unique_violation(&e) {
            Error::Conflict(format!(
                "logger {serial} was assigned elsewhere at the same moment; try again"
            ))
        } else {
            e.into()
        }
    })?;
    // Readings it took before this assignment was made are now the unit's record: they are
    // judged like new ones (an excursion among them opens, late, and alarms by the rules).
    if from < now - 60_000 {
        readings::dirty::mark(&mut tx, [(serial.as_str(), from)]).await?;
    }
    let actor = caller.actor();
    if role == LoggerRole::Primary {
        let change = PrimaryChange {
            unit_id,
            before: replaced.as_ref().map(|r| r.serial.as_str()),
            after: Some(serial.as_str()),
            actor: &actor,
            at: now,
        };
        watcher.primary_changed(&mut tx, change).await?;
    }
    // The unit it leaves as primary: another unit, or this one when it becomes the backup.
    if let Some((left, _)) = history.iter().find(|(a, _)| {
        a.to_ms.is_none() && a.role == LoggerRole::Primary && (a.unit_id != unit_id || role != LoggerRole::Primary)
    }) {
        let change = PrimaryChange {
            unit_id: left.unit_id,
            before: Some(serial.as_str()),
            after: None,
            actor: &actor,
            at: now,
        };
        watcher.primary_changed(&mut tx, change).await?;
    }
    let entry = Entry::new("logger.assign", "unit", [unit_id.to_string(), serial.to_string()])
        .at(None, Some(&unit.location))
        .changed("serial", replaced.as_ref().map(|r| r.serial.clone()), serial.as_str())
        .changed(
            "role",
            serde_json::Value::Null,
            serde_json::to_value(role).expect("plain data"),
        )
        .changed("from", serde_json::Value::Null, rfc3339(from));
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    loggers::update_details(db, &serial, body).await?;
    Ok(Assignment {
        unit_id,
        location: unit.location,
        serial: serial.to_string(),
        role,
        from: rfc3339(from),
        to: None,
        from_ms: from,
        to_ms: None,
    })
}

/// Takes a logger off a unit at `at` (default now); a primary's going is told to `watcher`.
pub async fn unassign(
    db: &Db,
    caller: &Caller,
    unit_id: i64,
    serial: &str,
    at: Option<DateTime<Utc>>,
    watcher: &dyn Watcher,
) -> Result<Assignment> {
    let unit = units::get(db, &caller.scope, unit_id).await?;
    let mut current = current_assignments(db, unit_id)
        .await?
        .into_iter()
        .find(|a| a.serial == serial)
        .ok_or_else(|| Error::NotFound(format!("logger {serial} does not serve unit {unit_id} now")))?;
    let now = now_millis();
    let to = match at {
        Some(t) => crate::domain::check_instant("at", millis(t))?,
        None => now,
    };
    if to > now + 60_000 {
        return Err(Error::Invalid("\"at\" may not be in the future".into()));
    }
    if to < current.from_ms {
        return Err(Error::Conflict(format!(
            "logger {serial} began serving at {}; it cannot end before",
            current.from
        )));
    }
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE logger_assignments SET to_ts = $1 WHERE unit_id = $2 AND serial = $3 AND to_ts IS NULL")
        .bind(to)
        .bind(unit_id)
        .bind(serial)
        .execute(&mut *tx)
        .await?;
    if current.role == LoggerRole::Primary {
        let actor = caller.actor();
        let change = PrimaryChange {
            unit_id,
            before: Some(serial),
            after: None,
            actor: &actor,
            at: now,
        };
        watcher.primary_changed(&mut tx, change).await?;
        // Taken off in the past: its readings since then leave the unit's record, and the unit
        // is judged again from there (an excursion among them is no longer the unit's).
        if to < now - 60_000 {
            readings::dirty::mark(&mut tx, [(serial, to - 1)]).await?;
        }
    }
    let entry = Entry::new("logger.unassign", "unit", [unit_id.to_string(), serial.to_string()])
        .at(None, Some(&unit.location))
        .changed("to", serde_json::Value::Null, rfc3339(to));
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    current.to_ms = Some(to);
    current.to = Some(rfc3339(to));
    Ok(current)
}
