//! A unit out of service, or in maintenance (defrost, move, repair): readings are kept and
//! excursions recorded, with the reason, but nobody is paged (docs/domain.md, "Excursions and
//! alarm rules"). This module owns `unit_downtime`.
//!
//! Downtime silences a unit's alarms, so a clinic's is bounded: it may not take a unit out of
//! service while vaccine is stored in it, and its maintenance windows last at most the
//! program's `clinic_maintenance_max_hours` (24 h by default). The state may do either.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::accounts::audit::{Entry, Who};
use crate::accounts::Caller;
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

/// The longest maintenance window; longer is out of service.
const MAX_MAINTENANCE_MS: i64 = 14 * 86_400_000;

/// Why a unit is not watched for a while. (Named apart from a logger's condition in the API
/// document: two schemas of one name would silently become one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = DowntimeKind)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Not in use until someone ends it.
    OutOfService,
    /// For a stated while (at most 14 days).
    Maintenance,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OutOfService => "out_of_service",
            Kind::Maintenance => "maintenance",
        }
    }
    fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "out_of_service" => Some(Kind::OutOfService),
            "maintenance" => Some(Kind::Maintenance),
            _ => None,
        }
    }
}

/// Body of `POST /api/v1/units/{id}/downtime`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDowntime {
    pub kind: Kind,
    pub reason: String,
    /// Start; default the start of this minute.
    #[serde(default)]
    pub from: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// End; required for maintenance, open-ended for out of service.
    #[serde(default)]
    pub until: Option<chrono::DateTime<chrono::FixedOffset>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Downtime {
    pub id: i64,
    pub kind: Kind,
    pub reason: String,
    pub from: String,
    pub until: Option<String>,
    pub created_by: String,
}

fn from_row(r: &AnyRow) -> Result<Downtime> {
    let id: i64 = r.try_get("id")?;
    let kind: String = r.try_get("kind")?;
    Ok(Downtime {
        id,
        kind: Kind::parse(&kind).ok_or_else(|| Error::unreadable("unit_downtime", id, format!("kind {kind:?}")))?,
        reason: r.try_get("reason")?,
        from: rfc3339(r.try_get("from_ts")?),
        until: r.try_get::<Option<i64>, _>("until_ts")?.map(rfc3339),
        created_by: r.try_get("created_by")?,
    })
}

/// Records a period for unit `unit_id` (the caller has checked the unit is in scope);
/// `stocked`: vaccine is stored in the unit now.
pub async fn add(db: &Db, unit_id: i64, body: &NewDowntime, caller: &Caller, stocked: bool) -> Result<Downtime> {
    let actor = caller.actor();
    let actor = actor.as_str();
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(
            "\"reason\" is required (e.g. \"defrost\", \"moving the unit\")".into(),
        ));
    }
    let now = now_millis();
    // Default: the start of this minute, so a reading stamped in whole seconds just now is covered.
    let from = match body.from {
        Some(t) => crate::domain::check_instant("from", t.timestamp_millis())?,
        None => now - now.rem_euclid(60_000),
    };
    let until = body
        .until
        .map(|t| crate::domain::check_instant("until", t.timestamp_millis()))
        .transpose()?;
    match (body.kind, until) {
        (Kind::Maintenance, None) => return Err(Error::Invalid("a maintenance window needs \"until\"".into())),
        (_, Some(u)) if u <= from => return Err(Error::Invalid("\"until\" must be after \"from\"".into())),
        (Kind::Maintenance, Some(u)) if u - from > MAX_MAINTENANCE_MS => {
            return Err(Error::Invalid(
                "a maintenance window lasts at most 14 days; use out_of_service for longer".into(),
            ))
        }
        _ => {}
    }
    let mut tx = db.begin().await?;
    if !caller.is_state() {
        // One period at a time: windows placed back to back or overlapping would silence the
        // unit past the cap. The next may be set once this one has ended.
        let planned = sqlx::query(
            "SELECT id FROM unit_downtime WHERE unit_id = $1 AND (until_ts IS NULL OR until_ts > $2) LIMIT 1",
        )
        .bind(unit_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = planned {
            return Err(Error::StateApprovalRequired(format!(
                "unit {unit_id} already has downtime {} in force or planned: a clinic sets one period at a time; \
                 end it first, or ask the state VFC coordinator",
                r.try_get::<i64, _>("id")?
            )));
        }
        match (body.kind, until) {
            (Kind::OutOfService, _) if stocked => {
                return Err(Error::StateApprovalRequired(format!(
                    "unit {unit_id} stores vaccine: move it to a working unit first (vaccine may not sit in a unit \
                     that is out of service), or ask the state VFC coordinator"
                )))
            }
            (Kind::Maintenance, Some(u)) => {
                let hours = super::settings::program(db).await?.clinic_maintenance_max_hours;
                if (u - from) as f64 > hours * 3_600_000.0 {
                    return Err(Error::StateApprovalRequired(format!(
                        "a clinic's maintenance window lasts at most {hours} hours (no alerts meanwhile); \
                         a longer one is for the state VFC coordinator"
                    )));
                }
            }
            _ => {}
        }
    }
    let id: i64 = sqlx::query(
        "INSERT INTO unit_downtime (unit_id, kind, reason, from_ts, until_ts, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(unit_id)
    .bind(body.kind.as_str())
    .bind(reason)
    .bind(from)
    .bind(until)
    .bind(actor)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let added = Downtime {
        id,
        kind: body.kind,
        reason: reason.to_string(),
        from: rfc3339(from),
        until: until.map(rfc3339),
        created_by: actor.to_string(),
    };
    told(&mut tx, unit_id, None, &added, actor, now).await?;
    let entry = Entry::new("downtime.add", "downtime", [id])
        .changed(
            "kind",
            serde_json::Value::Null,
            serde_json::to_value(body.kind).expect("plain data"),
        )
        .changed("reason", serde_json::Value::Null, reason)
        .changed("until", serde_json::Value::Null, added.until.clone());
    crate::registry::units::audited(&mut tx, &Who::of(caller), entry, unit_id).await?;
    tx.commit().await?;
    Ok(added)
}

/// Records a period set or ended among the unit's changes, and tells its coordinators.
async fn told(
    tx: &mut AnyConnection,
    unit_id: i64,
    before: Option<&Downtime>,
    after: &Downtime,
    actor: &str,
    now: i64,
) -> Result<()> {
    let json = |d: &Downtime| serde_json::to_string(d).expect("plain data");
    let after = json(after);
    let change = super::changes::Change {
        subject: super::changes::Subject::Downtime,
        unit_id: Some(unit_id),
        before: before.map(json),
        after: &after,
        actor,
        at: now,
    };
    super::changes::record(tx, &change).await
}

/// A unit's periods, latest first.
pub async fn list(db: &Db, unit_id: i64) -> Result<Vec<Downtime>> {
    let rows = sqlx::query(
        "SELECT id, kind, reason, from_ts, until_ts, created_by FROM unit_downtime WHERE unit_id = $1 ORDER BY from_ts DESC",
    )
    .bind(unit_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Ends a period in force now: alerts page people again.
pub async fn end(db: &Db, unit_id: i64, id: i64, caller: &Caller) -> Result<Downtime> {
    let now = now_millis();
    let mut tx = db.begin().await?;
    let before = sqlx::query(
        "SELECT id, kind, reason, from_ts, until_ts, created_by FROM unit_downtime WHERE id = $1 AND unit_id = $2",
    )
    .bind(id)
    .bind(unit_id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| from_row(&r))
    .transpose()?;
    let done = sqlx::query(
        "UPDATE unit_downtime SET until_ts = $1 WHERE id = $2 AND unit_id = $3 AND from_ts <= $1 AND (until_ts IS NULL OR until_ts > $1)",
    )
    .bind(now)
    .bind(id)
    .bind(unit_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let Some(before) = before else {
        return Err(Error::NotFound(format!("no downtime {id} on unit {unit_id}")));
    };
    if done == 0 {
        return Err(Error::Conflict(
            "this period is not in force now (it ended, or has not begun)".into(),
        ));
    }
    let ended = Downtime {
        until: Some(rfc3339(now)),
        ..before.clone()
    };
    told(&mut tx, unit_id, Some(&before), &ended, &caller.actor(), now).await?;
    let entry =
        Entry::new("downtime.end", "downtime", [id]).changed("until", before.until.clone(), ended.until.clone());
    crate::registry::units::audited(&mut tx, &Who::of(caller), entry, unit_id).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Refuses to put vaccine into a unit out of service now (docs/domain.md: vaccine may not sit in
/// a unit that is out of service): end the period first.
pub async fn refuse_stock_if_out_of_service(conn: &mut AnyConnection, unit_id: i64, now: i64) -> Result<()> {
    let off = sqlx::query(
        "SELECT id FROM unit_downtime WHERE unit_id = $1 AND kind = 'out_of_service' AND from_ts <= $2 \
         AND (until_ts IS NULL OR until_ts > $2) LIMIT 1",
    )
    .bind(unit_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match off {
        Some(r) => Err(Error::Conflict(format!(
            "unit {unit_id} is out of service (downtime {}): vaccine may not be stored in it; end the period \
             (POST /api/v1/units/{unit_id}/downtime/{{id}}/end) or choose a working unit",
            r.try_get::<i64, _>("id")?
        ))),
        None => Ok(()),
    }
}

/// The period in force for a unit at `at`, as words for the record ("unit maintenance : defrost").
pub async fn in_force(conn: &mut AnyConnection, unit_id: i64, at: i64) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT kind, reason FROM unit_downtime WHERE unit_id = $1 AND from_ts <= $2 AND (until_ts IS NULL OR until_ts > $2) \
         ORDER BY from_ts DESC LIMIT 1",
    )
    .bind(unit_id)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row
        .map(|d| {
            let kind: String = d.try_get("kind")?;
            let reason: String = d.try_get("reason")?;
            Ok::<_, sqlx::Error>(format!("unit {} : {reason}", kind.replace('_', " ")))
        })
        .transpose()?)
}
