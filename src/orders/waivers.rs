//! What a location says and the state grants beside the checks: "no doses were given since …"
//! (which satisfies the doses-reported check) and a state coordinator's waiver of one check for
//! one location, good for its next submission or the program's days, audited and shown on the
//! order that used it.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::error::{Error, Result};
use crate::inventory;
use crate::store::{now_millis, rfc3339, Db};

const DAY_MS: i64 = 86_400_000;

/// The checks, by the names the API uses.
pub const CHECKS: [&str; 6] = [
    "reconciliation",
    "doses_reported",
    "temperature_records",
    "unreviewed_excursions",
    "calibration_current",
    "decrement_exceptions",
];

/// A waiver in force, as a check shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaiverRef {
    pub id: i64,
    pub reason: String,
    pub granted_by: String,
    pub expires_at: String,
}

pub async fn latest_no_dose_report(conn: &mut AnyConnection, code: &str) -> Result<Option<(i64, NaiveDate)>> {
    let Some(r) = sqlx::query(
        "SELECT since, reported_at FROM no_dose_reports WHERE location_code = $1 ORDER BY reported_at DESC, id DESC LIMIT 1",
    )
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let since: String = r.try_get("since")?;
    let day =
        NaiveDate::parse_from_str(&since, "%Y-%m-%d").map_err(|e| Error::unreadable("no_dose_reports", code, e))?;
    Ok(Some((r.try_get("reported_at")?, day)))
}

/// Body of `POST /api/v1/locations/{code}/no-doses-report`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoDoses {
    /// No doses were given here from this day (YYYY-MM-DD) until today.
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NoDosesReport {
    pub id: i64,
    pub location: String,
    pub since: String,
    pub reported_by: String,
    pub reported_at: String,
}

pub async fn report_no_doses(db: &Db, caller: &Caller, code: &str, body: &NoDoses) -> Result<NoDosesReport> {
    let since = crate::domain::parse_date("since", &body.since)?;
    let mut tx = db.begin().await?;
    let place = inventory::place(&mut tx, &caller.scope, code).await?;
    let now = now_millis();
    if since > inventory::today(place.tz, now) {
        return Err(Error::Invalid(format!("\"since\" {since} is in the future")));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO no_dose_reports (location_code, since, reported_by, reported_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(&place.code)
    .bind(since.to_string())
    .bind(caller.actor())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let entry = audit::Entry::new("orders.no_doses", "no_dose_report", [id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("since", serde_json::Value::Null, since.to_string());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(NoDosesReport {
        id,
        location: place.code,
        since: since.to_string(),
        reported_by: caller.actor(),
        reported_at: rfc3339(now),
    })
}

/// Body of `POST /api/v1/locations/{code}/orders/waivers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWaiver {
    /// One of the check names of `GET …/orders/prerequisites`.
    pub check: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Waiver {
    pub id: i64,
    pub location: String,
    pub check: String,
    pub reason: String,
    pub granted_by: String,
    pub granted_at: String,
    pub expires_at: String,
    /// The submission that used it.
    pub order_id: Option<i64>,
}

fn waiver_row(r: &sqlx::any::AnyRow) -> sqlx::Result<Waiver> {
    Ok(Waiver {
        id: r.try_get("id")?,
        location: r.try_get("location_code")?,
        check: r.try_get("check_name")?,
        reason: r.try_get("reason")?,
        granted_by: r.try_get("granted_by")?,
        granted_at: rfc3339(r.try_get("granted_at")?),
        expires_at: rfc3339(r.try_get("expires_at")?),
        order_id: r.try_get("order_id")?,
    })
}

pub async fn waive(db: &Db, caller: &Caller, code: &str, body: &NewWaiver) -> Result<Waiver> {
    if !CHECKS.contains(&body.check.as_str()) {
        return Err(Error::Invalid(format!(
            "\"check\" {:?} is not one of {}",
            body.check,
            CHECKS.join(", ")
        )));
    }
    let reason = super::reason(Some(&body.reason), "why the check is waived")?;
    let mut tx = db.begin().await?;
    let place = inventory::place(&mut tx, &caller.scope, code).await?;
    let program = crate::coldchain::settings::program_in(&mut tx).await?.ordering;
    let now = now_millis();
    let expires = now + (program.waiver_days * DAY_MS as f64) as i64;
    let id: i64 = sqlx::query(
        "INSERT INTO order_waivers (location_code, check_name, reason, granted_by, granted_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&place.code)
    .bind(&body.check)
    .bind(&reason)
    .bind(caller.actor())
    .bind(now)
    .bind(expires)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let entry = audit::Entry::new("orders.waive", "order_waiver", [id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("check", serde_json::Value::Null, body.check.as_str())
        .changed("reason", serde_json::Value::Null, reason.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    let r = sqlx::query("SELECT * FROM order_waivers WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(waiver_row(&r)?)
}

pub async fn waivers_in_force(conn: &mut AnyConnection, code: &str, now: i64) -> Result<Vec<(String, WaiverRef)>> {
    sqlx::query(
        "SELECT id, check_name, reason, granted_by, expires_at FROM order_waivers \
         WHERE location_code = $1 AND order_id IS NULL AND expires_at > $2 ORDER BY id",
    )
    .bind(code)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get("check_name")?,
            WaiverRef {
                id: r.try_get("id")?,
                reason: r.try_get("reason")?,
                granted_by: r.try_get("granted_by")?,
                expires_at: rfc3339(r.try_get("expires_at")?),
            },
        ))
    })
    .collect::<sqlx::Result<_>>()
    .map_err(Into::into)
}

/// Marks the waivers a submission used (`ids`) as used by it.
pub async fn use_waivers(conn: &mut AnyConnection, ids: &[i64], order_id: i64) -> Result<()> {
    for id in ids {
        sqlx::query("UPDATE order_waivers SET order_id = $1 WHERE id = $2 AND order_id IS NULL")
            .bind(order_id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The waivers an order used.
pub async fn of_order(conn: &mut AnyConnection, order_id: i64) -> Result<Vec<Waiver>> {
    sqlx::query("SELECT * FROM order_waivers WHERE order_id = $1 ORDER BY id")
        .bind(order_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(waiver_row)
        .collect::<sqlx::Result<_>>()
        .map_err(Into::into)
}
