//! Storage units: refrigerators, freezers, ultra-cold freezers, each with the temperature range
//! its rules judge against — the CDC range of its kind unless overridden for the unit.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use utoipa::ToSchema;

use super::assignments::{self, Assignment};
use super::{locations, Error, Result};
use crate::accounts::audit::{self, Entry, Who};
use crate::accounts::Caller;
use crate::accounts::Scope;
use crate::domain::{Celsius, UnitKind};
use crate::readings::{self, Reading};
use crate::store::{now_millis, rfc3339, Db};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Range {
    pub min_c: f64,
    pub max_c: f64,
}

/// Body of `POST /api/v1/locations/{code}/units`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUnit {
    pub name: String,
    pub kind: UnitKind,
    /// Overrides the kind's CDC range; required for kind `other`.
    #[serde(default)]
    pub range: Option<Range>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unit {
    pub id: i64,
    /// Location code, e.g. "012345A".
    pub location: String,
    pub name: String,
    pub kind: UnitKind,
    pub range: Range,
    pub created_at: String,
}

/// `GET /api/v1/units/{id}`: the unit, its loggers now, and its latest reading.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitDetail {
    #[serde(flatten)]
    pub unit: Unit,
    pub loggers: Vec<Assignment>,
    pub latest_reading: Option<Reading>,
}

fn from_row(r: &AnyRow) -> Result<Unit> {
    let kind: String = r.try_get("kind")?;
    Ok(Unit {
        id: r.try_get("id")?,
        location: r.try_get("location_code")?,
        name: r.try_get("name")?,
        kind: UnitKind::parse(&kind)?,
        range: Range {
            min_c: r.try_get("range_min_c")?,
            max_c: r.try_get("range_max_c")?,
        },
        created_at: rfc3339(r.try_get("created_at")?),
    })
}

/// The range a unit of `kind` is judged by: the one given, else its kind's CDC range.
pub fn check_range(kind: UnitKind, range: Option<Range>) -> Result<Range> {
    let r = match (range, kind.default_range()) {
        (Some(r), _) => r,
        (None, Some((min_c, max_c))) => Range { min_c, max_c },
        (None, None) => {
            return Err(Error::Invalid(
                "a unit of kind \"other\" needs \"range\": {\"min_c\":…,\"max_c\":…}".into(),
            ))
        }
    };
    Celsius::parse(r.min_c)?;
    Celsius::parse(r.max_c)?;
    if r.min_c >= r.max_c {
        return Err(Error::Invalid(format!(
            "range.min_c {} must be below range.max_c {}",
            r.min_c, r.max_c
        )));
    }
    Ok(r)
}

/// Where a unit is and who looks after it: the registry's published read model (`unit_places`),
/// for whoever writes to a unit's people.
#[derive(Debug, Clone)]
pub struct Place {
    pub unit_name: String,
    pub location_code: String,
    pub location_name: String,
    /// As stored; [`Place::tz`] reads it.
    pub timezone: String,
    /// (name, email) of the location's primary and backup coordinators.
    pub primary: (String, String),
    pub backup: (String, String),
}

impl Place {
    /// The location's time zone, or UTC when the stored one cannot be read.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// The place of unit `unit_id`, if it exists.
pub async fn place_of(conn: &mut AnyConnection, unit_id: i64) -> Result<Option<Place>> {
    let row = sqlx::query(
        "SELECT unit_name, location_code, location_name, timezone, primary_name, primary_email, backup_name, backup_email \
         FROM unit_places WHERE unit_id = $1",
    )
    .bind(unit_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(Place {
            unit_name: r.try_get("unit_name")?,
            location_code: r.try_get("location_code")?,
            location_name: r.try_get("location_name")?,
            timezone: r.try_get("timezone")?,
            primary: (r.try_get("primary_name")?, r.try_get("primary_email")?),
            backup: (r.try_get("backup_name")?, r.try_get("backup_email")?),
        })
    })
    .transpose()
}

pub async fn create(db: &Db, caller: &Caller, code: &str, new: &NewUnit) -> Result<Unit> {
    let scope = &caller.scope;
    let location = locations::get(db, scope, code).await?;
    let name = new.name.trim();
    if name.is_empty() {
        return Err(Error::Invalid("name is required (e.g. \"Main refrigerator\")".into()));
    }
    let range = check_range(new.kind, new.range)?;
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query(
        "INSERT INTO units (location_code, name, kind, range_min_c, range_max_c, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&location.code)
    .bind(name)
    .bind(new.kind.as_str())
    .bind(range.min_c)
    .bind(range.max_c)
    .bind(now_millis())
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let entry = Entry::new("unit.create", "unit", [id])
        .at(Some(&location.pin), Some(&location.code))
        .changed("name", serde_json::Value::Null, name)
        .changed("kind", serde_json::Value::Null, new.kind.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// A unit the caller may see; `NotFound` when absent or out of scope alike.
pub async fn get(db: &Db, scope: &Scope, id: i64) -> Result<Unit> {
    let row = sqlx::query(
        "SELECT u.id, u.location_code, u.name, u.kind, u.range_min_c, u.range_max_c, u.created_at, l.pin \
         FROM units u JOIN locations l ON l.code = u.location_code WHERE u.id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
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
        _ => Err(Error::NotFound(format!("no unit {id}"))),
    }
}

pub async fn list(db: &Db, scope: &Scope, code: &str) -> Result<Vec<Unit>> {
    let location = locations::get(db, scope, code).await?;
    let rows = sqlx::query(
        "SELECT id, location_code, name, kind, range_min_c, range_max_c, created_at FROM units \
         WHERE location_code = $1 ORDER BY id",
    )
    .bind(&location.code)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn detail(db: &Db, scope: &Scope, id: i64) -> Result<UnitDetail> {
    let unit = get(db, scope, id).await?;
    let loggers = assignments::current_assignments(db, id).await?;
    // The primary logger's latest reading drives what the unit shows; a backup's stands in
    // only when there is no primary.
    let mut latest = None;
    for a in loggers
        .iter()
        .filter(|a| a.role == crate::domain::LoggerRole::Primary)
        .chain(loggers.iter())
    {
        if let Some(r) = readings::latest(db, &a.serial, a.from_ms).await? {
            latest = Some(r);
            break;
        }
    }
    Ok(UnitDetail {
        unit,
        loggers,
        latest_reading: latest,
    })
}

/// Body of `PUT /api/v1/units/{id}`: rename, or override the range (recorded with who and when).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub range: Option<Range>,
}

/// Writes a unit's name and range. A range change is a rule change: call it through
/// `crate::coldchain::settings::update_unit`, which records who and when in the same transaction.
pub async fn write(tx: &mut Transaction<'static, Any>, id: i64, name: &str, range: Range) -> Result<()> {
    sqlx::query("UPDATE units SET name = $1, range_min_c = $2, range_max_c = $3 WHERE id = $4")
        .bind(name)
        .bind(range.min_c)
        .bind(range.max_c)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A unit's name and range, for another capability's transaction.
pub async fn brief(conn: &mut AnyConnection, unit_id: i64) -> Result<Option<(String, (f64, f64))>> {
    let Some(r) = sqlx::query("SELECT name, range_min_c, range_max_c FROM units WHERE id = $1")
        .bind(unit_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        r.try_get("name")?,
        (r.try_get("range_min_c")?, r.try_get("range_max_c")?),
    )))
}

/// The name of unit `unit_id` if it is a unit of location `code`.
pub async fn name_at(conn: &mut AnyConnection, unit_id: i64, code: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query("SELECT name FROM units WHERE id = $1 AND location_code = $2")
            .bind(unit_id)
            .bind(code)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("name"))
            .transpose()?,
    )
}

/// The units of location `code` of the same kind as unit `like`.
pub async fn same_kind_at(conn: &mut AnyConnection, like: i64, code: &str) -> Result<Vec<i64>> {
    let rows = sqlx::query(
        "SELECT u.id FROM units u JOIN units f ON f.kind = u.kind WHERE f.id = $1 AND u.location_code = $2",
    )
    .bind(like)
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// What the evaluator judges a unit by.
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    pub kind: UnitKind,
    pub range: Range,
}

/// Takes the unit's row lock (PostgreSQL; SQLite's write lock) and reads its kind and range:
/// two evaluators never interleave on one unit.
pub async fn lock_for_judging(tx: &mut AnyConnection, id: i64) -> Result<Judged> {
    sqlx::query("UPDATE units SET kind = kind WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query("SELECT kind, range_min_c, range_max_c FROM units WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no unit {id}")))?;
    let kind: String = r.try_get("kind")?;
    Ok(Judged {
        kind: UnitKind::parse(&kind).map_err(|e| Error::unreadable("units", id, e))?,
        range: Range {
            min_c: r.try_get("range_min_c")?,
            max_c: r.try_get("range_max_c")?,
        },
    })
}

/// Writes the audit row of a change to unit `unit_id`, placed at the unit's location so its
/// clinic sees it in its trail.
pub async fn audited(conn: &mut AnyConnection, who: &Who, entry: Entry, unit_id: i64) -> Result<()> {
    let place = place_of(conn, unit_id).await?;
    let entry = entry.at(None, place.as_ref().map(|p| p.location_code.as_str()));
    audit::record(conn, who, entry).await
}
