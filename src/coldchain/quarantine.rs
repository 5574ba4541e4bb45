//! Units whose evaluation failed (docs/architecture.md, "Alarms that cannot silently stop").
//!
//! The evaluator judges every unit in its own savepoint. A unit that fails — its stored rules
//! cannot be read, a bug meets its data — is kept here with the error and the earliest reading
//! not judged yet, counted in `vfc_evaluation_failures_total`, shown to state coordinators
//! (`GET /api/v1/evaluation-failures`) and retried with backoff, while every other unit is
//! judged as usual. Judged again without error, its row goes. This module owns
//! `evaluation_failures`.
//!
//! Nobody has to poll for it: when a unit enters quarantine the location's primary coordinator
//! and the state coordinators are emailed (check the unit's thermometer by hand until told
//! otherwise), and again when it is judged once more; `/healthz` names the count. A change to
//! the program's settings, the unit's rules or its range retries it at once ([`retry_now`]).

use serde::Serialize;
use sqlx::{Any, AnyConnection, Row, Transaction};
use utoipa::ToSchema;

use crate::alerts::{outbox, About, Email, Recipient};
use crate::error::Result;
use crate::store::{rfc3339, Db};

/// First retry after 5 s, doubling up to every 10 minutes.
fn backoff_ms(attempts: i64) -> i64 {
    (5_000i64 << (attempts - 1).clamp(0, 7)).min(600_000)
}

/// The units in quarantine now, read once per pass so that a healthy unit costs no statement
/// of this module.
#[derive(Debug, Default)]
pub struct Now {
    /// Due for another try: unit → earliest reading not judged yet (at most 200).
    pub due: std::collections::BTreeMap<i64, i64>,
    /// Waiting out their backoff.
    pub waiting: std::collections::BTreeSet<i64>,
}

impl Now {
    pub fn contains(&self, unit_id: i64) -> bool {
        self.due.contains_key(&unit_id) || self.waiting.contains(&unit_id)
    }
}

pub async fn now(db: &Db, now: i64) -> Result<Now> {
    let rows =
        sqlx::query("SELECT unit_id, since_ts, next_attempt_at FROM evaluation_failures ORDER BY next_attempt_at")
            .fetch_all(&db.pool)
            .await?;
    let mut out = Now::default();
    for r in &rows {
        let unit: i64 = r.try_get("unit_id")?;
        if r.try_get::<i64, _>("next_attempt_at")? <= now && out.due.len() < 200 {
            out.due.insert(unit, r.try_get("since_ts")?);
        } else {
            out.waiting.insert(unit);
        }
    }
    Ok(out)
}

/// If the unit is waiting out its backoff, notes that readings from `since` wait too and
/// returns true (the caller leaves it alone until it is due).
pub async fn waiting(tx: &mut Transaction<'static, Any>, unit_id: i64, since: i64, now: i64) -> Result<bool> {
    let waiting = sqlx::query(
        "UPDATE evaluation_failures SET since_ts = CASE WHEN $2 < since_ts THEN $2 ELSE since_ts END \
         WHERE unit_id = $1 AND next_attempt_at > $3",
    )
    .bind(unit_id)
    .bind(since)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(waiting == 1)
}

/// Records a failure: the error, readings from `since` still to judge, the next try. The first
/// failure of a spell tells the location's primary coordinator and `state`.
pub async fn failed(
    tx: &mut AnyConnection,
    unit_id: i64,
    since: i64,
    error: &str,
    now: i64,
    state: &[Recipient],
) -> Result<()> {
    let attempts: i64 = sqlx::query("SELECT attempts FROM evaluation_failures WHERE unit_id = $1")
        .bind(unit_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("attempts"))
        .transpose()?
        .unwrap_or(0)
        + 1;
    sqlx::query(
        "INSERT INTO evaluation_failures (unit_id, since_ts, error, attempts, first_failed_at, last_failed_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (unit_id) DO UPDATE SET \
         since_ts = CASE WHEN excluded.since_ts < evaluation_failures.since_ts THEN excluded.since_ts ELSE evaluation_failures.since_ts END, \
         error = excluded.error, attempts = excluded.attempts, last_failed_at = excluded.last_failed_at, \
         next_attempt_at = excluded.next_attempt_at",
    )
    .bind(unit_id)
    .bind(since)
    .bind(error)
    .bind(attempts)
    .bind(now)
    .bind(now + backoff_ms(attempts))
    .execute(&mut *tx)
    .await?;
    if attempts == 1 {
        tell(tx, unit_id, Told::Failed(error), state).await?;
    }
    Ok(())
}

/// The unit was judged: it is out of quarantine, and whoever was told it went in is told so.
pub async fn recovered(tx: &mut AnyConnection, unit_id: i64, state: &[Recipient]) -> Result<bool> {
    let gone = sqlx::query("DELETE FROM evaluation_failures WHERE unit_id = $1")
        .bind(unit_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if gone {
        tell(tx, unit_id, Told::Recovered, state).await?;
    }
    Ok(gone)
}

/// Makes quarantined units (one, or all with `None`) due now: their settings just changed.
pub async fn retry_now(tx: &mut AnyConnection, unit_id: Option<i64>, now: i64) -> Result<()> {
    sqlx::query("UPDATE evaluation_failures SET next_attempt_at = $1 WHERE $2 IS NULL OR unit_id = $2")
        .bind(now)
        .bind(unit_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How many units cannot be judged now.
pub async fn count(db: &Db) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM evaluation_failures")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?)
}

enum Told<'a> {
    Failed(&'a str),
    Recovered,
}

/// Emails the location's primary coordinator and the state coordinators about the unit.
async fn tell(tx: &mut AnyConnection, unit_id: i64, told: Told<'_>, state: &[Recipient]) -> Result<()> {
    let Some(place) = crate::registry::units::place_of(tx, unit_id).await? else {
        return Ok(());
    };
    let (code, location, unit) = (&place.location_code, &place.location_name, &place.unit_name);
    let primary = Recipient::new(&place.primary.0, &place.primary.1);
    let mut to = vec![primary.clone()];
    to.extend(state.iter().filter(|s| s.email != primary.email).cloned());
    let (purpose, subject, what) = match told {
        Told::Failed(error) => (
            "monitoring_stopped",
            format!("VFC monitoring problem: {code} {unit} is not being checked"),
            format!(
                "vfc-monitor cannot judge the readings of the {unit} at {location} ({code}), so it cannot \
                 alert you about this unit's temperature until this is fixed. Its readings are still \
                 recorded, and will be judged as soon as it is.\n\n\
                 What went wrong: {error}\n\n\
                 Until you hear that monitoring is back, check and record the unit's temperature by hand \
                 at the start and the end of every clinic day. The state coordinators see this unit under \
                 GET /api/v1/evaluation-failures."
            ),
        ),
        Told::Recovered => (
            "monitoring_resumed",
            format!("VFC monitoring back: {code} {unit} is checked again"),
            format!(
                "vfc-monitor judges the readings of the {unit} at {location} ({code}) again, including \
                 those recorded while it could not; any excursion among them is alerted as usual."
            ),
        ),
    };
    for person in &to {
        let body = format!("{},\n\n{what}\n\n— vfc-monitor\n", person.name);
        let email = Email {
            about: About::Unit(unit_id),
            purpose,
            to: person,
            subject: &subject,
            body: &body,
        };
        outbox::enqueue(tx, &email).await?;
    }
    Ok(())
}

/// A unit the evaluator cannot judge now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Failure {
    pub unit_id: i64,
    pub location: String,
    pub unit_name: String,
    /// What went wrong, naming the row to fix.
    pub error: String,
    pub attempts: i64,
    pub first_failed_at: String,
    pub last_failed_at: String,
    pub next_attempt_at: String,
    /// The earliest reading not judged yet: its excursions wait until the unit is judged.
    pub readings_waiting_since: String,
}

/// Every unit in quarantine, longest first.
pub async fn list(db: &Db) -> Result<Vec<Failure>> {
    let rows = sqlx::query(
        "SELECT f.unit_id, p.location_code, p.unit_name, f.error, f.attempts, f.first_failed_at, f.last_failed_at, \
         f.next_attempt_at, f.since_ts FROM evaluation_failures f JOIN unit_places p ON p.unit_id = f.unit_id \
         ORDER BY f.first_failed_at, f.unit_id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Failure {
                unit_id: r.try_get("unit_id")?,
                location: r.try_get("location_code")?,
                unit_name: r.try_get("unit_name")?,
                error: r.try_get("error")?,
                attempts: r.try_get("attempts")?,
                first_failed_at: rfc3339(r.try_get("first_failed_at")?),
                last_failed_at: rfc3339(r.try_get("last_failed_at")?),
                next_attempt_at: rfc3339(r.try_get("next_attempt_at")?),
                readings_waiting_since: rfc3339(r.try_get("since_ts")?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_five_seconds_to_ten_minutes() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(5), 80_000);
        assert_eq!(backoff_ms(8), 600_000);
        assert_eq!(backoff_ms(50), 600_000);
    }
}
