//! Excursions: every out-of-range episode of a unit's primary logger, the alarm rules they met,
//! and what people did about them (acknowledgement, review). This module owns the `excursions`,
//! `alarms` and `alarm_excursions` tables; everyone else reads and changes them through it.
//!
//! - [`record`]: what the evaluator writes as it judges readings;
//! - [`review`]: the excursion worksheet and the manufacturer's determinations;
//! - here: the record as people and the other capabilities read it.

pub mod record;
pub mod review;
pub mod waiting;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::accounts::audit::{Entry, Who};
use crate::accounts::Scope;
use crate::domain::LocationCode;
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

/// Where an excursion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Still out of range.
    Open,
    /// Back in range, not reviewed yet.
    Closed,
    /// The worksheet is recorded.
    Reviewed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Reviewed => "reviewed",
        }
    }

    pub fn parse(raw: &str) -> std::result::Result<Self, crate::domain::ParseError> {
        match raw {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            "reviewed" => Ok(Self::Reviewed),
            _ => Err(crate::domain::ParseError(format!(
                "status {raw:?} must be open, closed or reviewed"
            ))),
        }
    }
}

/// A unit's temperature range as it was when the excursion was recorded.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct RangeThen {
    pub min_c: f64,
    pub max_c: f64,
}

/// An excursion as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Excursion {
    pub id: i64,
    pub unit_id: i64,
    pub location: String,
    pub serial: String,
    pub started_at: String,
    /// First reading back in range; null while open.
    pub ended_at: Option<String>,
    pub last_reading_at: String,
    pub min_c: f64,
    pub max_c: f64,
    pub readings: i64,
    /// Known time out of range (gaps excluded).
    pub minutes_out_of_range: f64,
    /// Time covered by gaps in the readings: neither in range nor out.
    pub minutes_unknown: f64,
    pub above_range: bool,
    pub below_range: bool,
    pub range: RangeThen,
    pub status: Status,
    /// A rule was met and someone was paged.
    pub alerted: bool,
    pub detected_late: bool,
    /// Why nobody was paged, when a rule was met in a maintenance window or long ago.
    pub suppressed: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    /// The excursion worksheet, once reviewed.
    pub review: Option<serde_json::Value>,
}

/// A rule an excursion met, as the rule was at the time.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmInfo {
    pub rule_id: String,
    pub rule: serde_json::Value,
    pub met_at: String,
    pub paged: bool,
}

const COLUMNS: &str =
    "e.id, e.unit_id, p.location_code, p.pin, e.serial, e.started_at, e.ended_at, e.last_reading_at, \
    e.min_c, e.max_c, e.readings, e.out_ms, e.unknown_ms, e.above_range, e.below_range, e.range_min_c, e.range_max_c, \
    e.status, e.alerted, e.detected_late, e.suppressed, e.acknowledged_at, e.acknowledged_by, e.review";
const FROM: &str = "excursions e JOIN unit_places p ON p.unit_id = e.unit_id";

fn from_row(r: &AnyRow) -> Result<Excursion> {
    let id: i64 = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let review = match r.try_get::<Option<String>, _>("review")? {
        None => None,
        Some(s) => {
            Some(serde_json::from_str(&s).map_err(|e| Error::unreadable("excursions", id, format!("review: {e}")))?)
        }
    };
    Ok(Excursion {
        id,
        unit_id: r.try_get("unit_id")?,
        location: r.try_get("location_code")?,
        serial: r.try_get("serial")?,
        started_at: rfc3339(r.try_get("started_at")?),
        ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
        last_reading_at: rfc3339(r.try_get("last_reading_at")?),
        min_c: r.try_get("min_c")?,
        max_c: r.try_get("max_c")?,
        readings: r.try_get("readings")?,
        minutes_out_of_range: r.try_get::<i64, _>("out_ms")? as f64 / 60_000.0,
        minutes_unknown: r.try_get::<i64, _>("unknown_ms")? as f64 / 60_000.0,
        above_range: r.try_get::<i64, _>("above_range")? == 1,
        below_range: r.try_get::<i64, _>("below_range")? == 1,
        range: RangeThen {
            min_c: r.try_get("range_min_c")?,
            max_c: r.try_get("range_max_c")?,
        },
        status: Status::parse(&status).map_err(|e| Error::unreadable("excursions", id, e))?,
        alerted: r.try_get::<i64, _>("alerted")? == 1,
        detected_late: r.try_get::<i64, _>("detected_late")? == 1,
        suppressed: r.try_get("suppressed")?,
        acknowledged_at: r.try_get::<Option<i64>, _>("acknowledged_at")?.map(rfc3339),
        acknowledged_by: r.try_get("acknowledged_by")?,
        review,
    })
}

/// Which excursions to list.
#[derive(Debug, Default)]
pub struct Filter {
    pub location: Option<LocationCode>,
    pub unit: Option<i64>,
    pub status: Option<Status>,
    /// Started at or after, epoch ms.
    pub from: Option<i64>,
    /// Started at or before, epoch ms.
    pub to: Option<i64>,
}

/// Most excursions one list returns.
pub const MAX_LIST: i64 = 10_000;

/// Excursions in scope, newest first.
pub async fn list(db: &Db, scope: &Scope, f: &Filter) -> Result<Vec<Excursion>> {
    let (scope_cond, scope_param) = scope.sql_filter("p.pin", "p.location_code", 1);
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE {scope_cond} AND ($2 IS NULL OR p.location_code = $2) \
         AND ($3 IS NULL OR e.unit_id = $3) AND ($4 IS NULL OR e.status = $4) AND e.started_at >= $5 \
         AND e.started_at <= $6 ORDER BY e.started_at DESC, e.id DESC LIMIT {MAX_LIST}"
    );
    let rows = sqlx::query(&sql)
        .bind(scope_param.unwrap_or_default())
        .bind(f.location.as_ref().map(|c| c.to_string()))
        .bind(f.unit)
        .bind(f.status.map(Status::as_str))
        .bind(f.from.unwrap_or(i64::MIN))
        .bind(f.to.unwrap_or(i64::MAX))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// An excursion the scope covers; `NotFound` when absent or outside it alike.
pub async fn visible(db: &Db, scope: &Scope, id: i64) -> Result<Excursion> {
    let mut conn = db.pool.acquire().await?;
    visible_in(&mut conn, scope, id).await
}

async fn visible_in(conn: &mut AnyConnection, scope: &Scope, id: i64) -> Result<Excursion> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r)
            if scope.covers_code(
                &r.try_get::<String, _>("pin")?,
                &r.try_get::<String, _>("location_code")?,
            ) =>
        {
            from_row(&r)
        }
        _ => Err(Error::NotFound(format!("no excursion {id}"))),
    }
}

/// The rules an excursion met so far, each as it was then (an email lists them); a rule
/// this version cannot read is left out of the email rather than stopping it.
pub async fn rules_met(conn: &mut AnyConnection, id: i64) -> Result<Vec<super::rules::Rule>> {
    let rows = sqlx::query(
        "SELECT a.rule FROM alarms a JOIN alarm_excursions x ON x.alarm_id = a.id WHERE x.excursion_id = $1 ORDER BY a.met_at",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let rule: String = r.try_get("rule")?;
        match serde_json::from_str(&rule) {
            Ok(rule) => out.push(rule),
            Err(e) => tracing::warn!(excursion = id, error = %e, "a rule met cannot be read; the email leaves it out"),
        }
    }
    Ok(out)
}

/// The rules an excursion met, each as it was then, in the order they were met.
pub async fn alarms_of(db: &Db, id: i64) -> Result<Vec<AlarmInfo>> {
    let rows = sqlx::query(
        "SELECT a.id, a.rule_id, a.rule, a.met_at, a.paged FROM alarms a JOIN alarm_excursions x ON x.alarm_id = a.id \
         WHERE x.excursion_id = $1 ORDER BY a.met_at",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let alarm: i64 = r.try_get("id")?;
            let rule: String = r.try_get("rule")?;
            Ok(AlarmInfo {
                rule_id: r.try_get("rule_id")?,
                rule: serde_json::from_str(&rule)
                    .map_err(|e| Error::unreadable("alarms", alarm, format!("rule: {e}")))?,
                met_at: rfc3339(r.try_get("met_at")?),
                paged: r.try_get::<i64, _>("paged")? == 1,
            })
        })
        .collect()
}

/// Acknowledges an excursion once (the first acknowledgement stands); returns who and when.
pub async fn acknowledge(db: &Db, id: i64, by: &str, who: &Who) -> Result<(String, i64)> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE excursions SET acknowledged_at = $1, acknowledged_by = $2 WHERE id = $3 AND acknowledged_at IS NULL",
    )
    .bind(now_millis())
    .bind(by)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let r = sqlx::query("SELECT unit_id, acknowledged_at, acknowledged_by FROM excursions WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no excursion {id}")))?;
    if done.rows_affected() == 1 {
        let entry = Entry::new("excursion.acknowledge", "excursion", [id]).changed(
            "acknowledged_by",
            serde_json::Value::Null,
            by,
        );
        crate::registry::units::audited(&mut tx, who, entry, r.try_get("unit_id")?).await?;
    }
    tx.commit().await?;
    Ok((r.try_get("acknowledged_by")?, r.try_get("acknowledged_at")?))
}

/// What an email or a page says about an excursion: where, when, how far out of range.
#[derive(Debug, Clone)]
pub struct Facts {
    pub id: i64,
    pub unit_id: i64,
    pub serial: String,
    pub location_code: String,
    pub location_name: String,
    /// The location's street address, when on record.
    pub address: Option<String>,
    pub pin: String,
    /// The location's time zone; UTC when the stored zone cannot be read (see
    /// `timezone_unreadable`): an alert in UTC that says so beats no alert.
    pub timezone: chrono_tz::Tz,
    pub timezone_unreadable: Option<String>,
    pub unit_name: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub min_c: f64,
    pub max_c: f64,
    pub range: (f64, f64),
    pub above_range: bool,
    pub detected_late: bool,
    pub escalation_level: i64,
    pub acknowledged: Option<(String, i64)>,
    /// The location's primary and backup coordinators, (name, email).
    pub primary: (String, String),
    pub backup: (String, String),
}

/// The facts of one excursion, if it exists.
/// The facts of one, on a connection of its own.
pub async fn find(db: &Db, id: i64) -> Result<Option<Facts>> {
    let mut conn = db.pool.acquire().await?;
    facts(&mut conn, id).await
}

pub async fn facts(conn: &mut AnyConnection, id: i64) -> Result<Option<Facts>> {
    let Some(r) = sqlx::query(
        "SELECT e.id, e.unit_id, e.serial, e.started_at, e.ended_at, e.min_c, e.max_c, e.range_min_c, e.range_max_c, \
         e.above_range, e.detected_late, e.escalation_level, e.acknowledged_by, e.acknowledged_at, p.unit_name, \
         p.location_code, p.location_name, p.pin, p.timezone, p.primary_name, p.primary_email, p.backup_name, p.backup_email, \
         p.address FROM excursions e JOIN unit_places p ON p.unit_id = e.unit_id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let tz: String = r.try_get("timezone")?;
    let location_code: String = r.try_get("location_code")?;
    let (timezone, timezone_unreadable) = match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => (z, None),
        Err(_) => {
            let e = Error::unreadable(
                "locations",
                &location_code,
                format!("time zone {tz:?} is not an IANA zone; fix it with PUT /api/v1/locations/{location_code}"),
            );
            tracing::error!(error = %e, "showing this location's times in UTC");
            (chrono_tz::UTC, Some(e.to_string()))
        }
    };
    Ok(Some(Facts {
        id,
        unit_id: r.try_get("unit_id")?,
        serial: r.try_get("serial")?,
        location_code,
        location_name: r.try_get("location_name")?,
        address: r.try_get("address")?,
        pin: r.try_get("pin")?,
        timezone,
        timezone_unreadable,
        unit_name: r.try_get("unit_name")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        min_c: r.try_get("min_c")?,
        max_c: r.try_get("max_c")?,
        range: (r.try_get("range_min_c")?, r.try_get("range_max_c")?),
        above_range: r.try_get::<i64, _>("above_range")? == 1,
        detected_late: r.try_get::<i64, _>("detected_late")? == 1,
        escalation_level: r.try_get("escalation_level")?,
        acknowledged: match (
            r.try_get::<Option<String>, _>("acknowledged_by")?,
            r.try_get::<Option<i64>, _>("acknowledged_at")?,
        ) {
            (Some(by), Some(at)) => Some((by, at)),
            _ => None,
        },
        primary: (r.try_get("primary_name")?, r.try_get("primary_email")?),
        backup: (r.try_get("backup_name")?, r.try_get("backup_email")?),
    }))
}

/// One excursion of a unit as the inventory weighs a lot's exposure.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub id: i64,
    pub unit_id: i64,
    pub start: i64,
    /// The first reading back in range, or the latest reading while open.
    pub end: i64,
    pub out_ms: i64,
    pub above: bool,
    pub min_c: f64,
    pub max_c: f64,
}

/// Every excursion of a unit, oldest first.
pub async fn spans_of_unit(conn: &mut AnyConnection, unit_id: i64) -> Result<Vec<Span>> {
    let rows = sqlx::query(
        "SELECT id, unit_id, started_at, COALESCE(ended_at, last_reading_at) AS end_at, out_ms, above_range, min_c, max_c \
         FROM excursions WHERE unit_id = $1 ORDER BY started_at",
    )
    .bind(unit_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Span {
                id: r.try_get("id")?,
                unit_id: r.try_get("unit_id")?,
                start: r.try_get("started_at")?,
                end: r.try_get("end_at")?,
                out_ms: r.try_get("out_ms")?,
                above: r.try_get::<i64, _>("above_range")? != 0,
                min_c: r.try_get("min_c")?,
                max_c: r.try_get("max_c")?,
            })
        })
        .collect()
}

/// An excursion as a chart shades it.
#[derive(Debug, Clone)]
pub struct Shaded {
    pub id: i64,
    pub start: i64,
    /// Its end, or its latest reading while open.
    pub end: i64,
    pub ended_at: Option<i64>,
}

/// The unit's excursions that overlap `[from, to)`, oldest first.
pub async fn between(conn: &mut AnyConnection, unit_id: i64, from: i64, to: i64) -> Result<Vec<Shaded>> {
    sqlx::query(
        "SELECT id, started_at, ended_at, COALESCE(ended_at, last_reading_at) AS end_at FROM excursions \
         WHERE unit_id = $1 AND started_at < $2 AND COALESCE(ended_at, last_reading_at) >= $3 ORDER BY started_at",
    )
    .bind(unit_id)
    .bind(to)
    .bind(from)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Shaded {
            id: r.try_get("id")?,
            start: r.try_get("started_at")?,
            end: r.try_get("end_at")?,
            ended_at: r.try_get("ended_at")?,
        })
    })
    .collect::<sqlx::Result<_>>()
    .map_err(Into::into)
}

/// The locations with an excursion opened, changed or reviewed since `since` (epoch ms).
pub async fn locations_changed_since(conn: &mut AnyConnection, since: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT p.location_code FROM excursions e JOIN unit_places p ON p.unit_id = e.unit_id WHERE e.updated_at >= $1",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?)
}

/// Excursions at location `code` that met a rule before `met_before` (epoch ms) and are not
/// reviewed yet, oldest first: (id, unit id, when the rule was first met).
pub async fn unreviewed_met_before(
    conn: &mut AnyConnection,
    code: &str,
    met_before: i64,
) -> Result<Vec<(i64, i64, i64)>> {
    sqlx::query(
        "SELECT e.id, e.unit_id, MIN(a.met_at) AS met_at FROM excursions e \
         JOIN unit_places p ON p.unit_id = e.unit_id \
         JOIN alarm_excursions ae ON ae.excursion_id = e.id JOIN alarms a ON a.id = ae.alarm_id \
         WHERE p.location_code = $1 AND e.status <> 'reviewed' \
         GROUP BY e.id, e.unit_id HAVING MIN(a.met_at) < $2 ORDER BY MIN(a.met_at), e.id",
    )
    .bind(code)
    .bind(met_before)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("unit_id")?, r.try_get("met_at")?)))
    .collect::<sqlx::Result<_>>()
    .map_err(Into::into)
}

/// When each of these excursions began, by id.
pub async fn started_at(conn: &mut AnyConnection, ids: &[i64]) -> Result<std::collections::HashMap<i64, i64>> {
    let mut out = std::collections::HashMap::new();
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        if let Some(r) = sqlx::query("SELECT started_at FROM excursions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        {
            out.insert(*id, r.try_get("started_at")?);
        }
    }
    Ok(out)
}
