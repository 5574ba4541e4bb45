//! Storage units: refrigerators, freezers, ultra-cold freezers, each with the temperature range
//! its rules judge against — the CDC range of its kind unless overridden for the unit.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::loggers::{self, Assignment};
use super::readings::{self, Reading};
use super::{locations, Error, Result};
use crate::accounts::Scope;
use crate::domain::{Celsius, UnitKind};
use crate::store::{now_millis, rfc3339, Db};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
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

fn check_range(kind: UnitKind, range: Option<Range>) -> Result<Range> {
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

pub async fn create(db: &Db, scope: &Scope, code: &str, new: &NewUnit) -> Result<Unit> {
    let location = locations::get(db, scope, code).await?;
    let name = new.name.trim();
    if name.is_empty() {
        return Err(Error::Invalid("name is required (e.g. \"Main refrigerator\")".into()));
    }
    let range = check_range(new.kind, new.range)?;
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
    .fetch_one(&db.pool)
    .await?
    .try_get("id")?;
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
    let loggers = loggers::current_assignments(db, id).await?;
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

pub async fn update(db: &Db, scope: &Scope, id: i64, upd: &UnitUpdate, actor: &str) -> Result<Unit> {
    let unit = get(db, scope, id).await?;
    let name = match &upd.name {
        Some(n) if n.trim().is_empty() => return Err(Error::Invalid("name must not be empty".into())),
        Some(n) => n.trim().to_string(),
        None => unit.name.clone(),
    };
    let range = match upd.range {
        Some(r) => check_range(unit.kind, Some(r))?,
        None => unit.range,
    };
    let now = now_millis();
    let mut tx = db.pool.begin().await?;
    sqlx::query("UPDATE units SET name = $1, range_min_c = $2, range_max_c = $3 WHERE id = $4")
        .bind(&name)
        .bind(range.min_c)
        .bind(range.max_c)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if range.min_c != unit.range.min_c || range.max_c != unit.range.max_c {
        let before = serde_json::to_string(&unit.range).expect("plain data");
        let after = serde_json::to_string(&range).expect("plain data");
        crate::coldchain::rules::record_change(&mut tx, "unit_range", Some(id), Some(before), &after, actor, now)
            .await?;
    }
    tx.commit().await?;
    get(db, scope, id).await
}
