//! Reconciliation (docs/domain.md): a physical count per lot and unit **as of a stated time**. Each
//! difference from what the ledger held at that time becomes an adjustment with its reason,
//! dated at that time, so doses reported after it are neither counted twice nor lost.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::ledger::{self, Entry, Kind};
use super::{parse_time, place, Error, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::store::{now_millis, rfc3339, Db, Page};

/// Body of `POST /api/v1/locations/{code}/reconciliations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReconciliation {
    /// When the count was taken (RFC 3339); not in the future.
    pub as_of: String,
    /// Who counted.
    pub counted_by: String,
    /// One line per lot and unit; every lot the ledger holds at that time must be counted.
    pub counts: Vec<Count>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub unit_id: i64,
    pub lot_id: i64,
    pub counted: i64,
    /// Why the count differs from the ledger (required when it does).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CountLine {
    pub unit_id: i64,
    pub lot_id: i64,
    /// What the ledger held at `as_of`.
    pub expected: i64,
    pub counted: i64,
    pub adjustment: i64,
    pub reason: Option<String>,
    pub event_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliation {
    pub id: i64,
    pub location: String,
    pub as_of: String,
    pub counted_by: String,
    pub lines: Vec<CountLine>,
    pub note: Option<String>,
    pub recorded_by: String,
    pub recorded_at: String,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Reconciliation> {
    let id: i64 = r.try_get("id")?;
    Ok(Reconciliation {
        id,
        location: r.try_get("location_code")?,
        as_of: rfc3339(r.try_get("as_of")?),
        counted_by: r.try_get("counted_by")?,
        lines: serde_json::from_str(&r.try_get::<String, _>("lines")?)
            .map_err(|e| Error::unreadable("reconciliations", id, format!("lines: {e}")))?,
        note: r.try_get("note")?,
        recorded_by: r.try_get("recorded_by")?,
        recorded_at: rfc3339(r.try_get("recorded_at")?),
    })
}

pub async fn record(db: &Db, caller: &Caller, code: &str, body: &NewReconciliation) -> Result<Reconciliation> {
    let now = now_millis();
    let as_of = parse_time("as_of", Some(&body.as_of))?.expect("given");
    if as_of > now + 60_000 {
        return Err(Error::Invalid(
            "\"as_of\" is in the future: state when the count was taken".into(),
        ));
    }
    if body.counted_by.trim().is_empty() {
        return Err(Error::Invalid("\"counted_by\" is required".into()));
    }
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    // What the ledger held at as_of, per stock row of this location.
    let expected: Vec<(i64, i64, i64)> = sqlx::query(
        "SELECT s.unit_id, s.lot_id, s.on_hand - CAST(COALESCE((SELECT SUM(e.doses) FROM stock_events e \
         WHERE e.unit_id = s.unit_id AND e.lot_id = s.lot_id AND e.occurred_at > $2), 0) AS BIGINT) AS expected \
         FROM stock s WHERE s.location_code = $1",
    )
    .bind(&place.code)
    .bind(as_of)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("unit_id")?, r.try_get("lot_id")?, r.try_get("expected")?)))
    .collect::<sqlx::Result<_>>()?;
    let missing: Vec<String> = expected
        .iter()
        .filter(|(u, l, n)| *n > 0 && !body.counts.iter().any(|c| c.unit_id == *u && c.lot_id == *l))
        .map(|(u, l, n)| format!("lot_id {l} in unit {u} ({n} expected)"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "a reconciliation counts every lot on hand; also count: {}",
            missing.join(", ")
        )));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO reconciliations (location_code, as_of, counted_by, lines, note, recorded_by, recorded_at) \
         VALUES ($1, $2, $3, '[]', $4, $5, $6) RETURNING id",
    )
    .bind(&place.code)
    .bind(as_of)
    .bind(body.counted_by.trim())
    .bind(body.note.as_deref())
    .bind(caller.actor())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let actor = caller.actor();
    let mut lines = Vec::with_capacity(body.counts.len());
    for (i, c) in body.counts.iter().enumerate() {
        if body.counts[..i]
            .iter()
            .any(|o| o.unit_id == c.unit_id && o.lot_id == c.lot_id)
        {
            return Err(Error::Invalid(format!(
                "counts[{i}]: lot {} in unit {} is counted twice; send one line per lot and unit",
                c.lot_id, c.unit_id
            )));
        }
        if !(0..=crate::domain::Doses::MAX).contains(&c.counted) {
            return Err(Error::Invalid(format!("counts[{i}]: \"counted\" must be 0 or more")));
        }
        let Some(&(_, _, exp)) = expected.iter().find(|(u, l, _)| *u == c.unit_id && *l == c.lot_id) else {
            return Err(Error::Invalid(format!(
                "counts[{i}]: unit {} has no record of lot {}; receive it first (POST /api/v1/locations/{}/receipts)",
                c.unit_id, c.lot_id, place.code
            )));
        };
        let diff = c.counted - exp;
        let reason = c.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
        let mut event_id = None;
        if diff != 0 {
            let reason = reason.ok_or_else(|| {
                Error::Invalid(format!(
                    "counts[{i}]: counted {} but the ledger held {exp} at as_of; give the \"reason\" for the difference",
                    c.counted
                ))
            })?;
            let mut e = Entry::new(&place.code, c.unit_id, c.lot_id, Kind::Adjustment, diff, &actor);
            e.occurred_at = as_of;
            e.reason_code = Some("reconciliation");
            e.note = Some(reason);
            e.source = "reconciliation";
            e.source_ref = Some(id.to_string());
            event_id = Some(ledger::record(&mut tx, &e).await?);
        }
        lines.push(CountLine {
            unit_id: c.unit_id,
            lot_id: c.lot_id,
            expected: exp,
            counted: c.counted,
            adjustment: diff,
            reason: reason.map(str::to_string),
            event_id,
        });
    }
    sqlx::query("UPDATE reconciliations SET lines = $1 WHERE id = $2")
        .bind(serde_json::to_string(&lines).unwrap_or_default())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query("SELECT * FROM reconciliations WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let mut ids = vec![id];
    ids.extend(lines.iter().filter_map(|l| l.event_id));
    let entry = audit::Entry::new("stock.reconcile", "reconciliation", ids)
        .at(Some(&place.pin), Some(&place.code))
        .changed("counts", serde_json::Value::Null, body.counts.len());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    from_row(&r)
}

/// A location's reconciliations, latest count first (orders ask for a recent one).
/// The `as_of` of the location's latest physical count, if any.
pub async fn last_count_at(conn: &mut sqlx::AnyConnection, code: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query("SELECT MAX(as_of) AS last FROM reconciliations WHERE location_code = $1")
            .bind(code)
            .fetch_one(&mut *conn)
            .await?
            .try_get::<Option<i64>, _>("last")?,
    )
}

/// A location's reconciliations, newest first.
pub async fn list(db: &Db, caller: &Caller, code: &str, page: Page) -> Result<(Vec<Reconciliation>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows =
        sqlx::query("SELECT * FROM reconciliations WHERE location_code = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .bind(&place.code)
            .bind(page.after.unwrap_or(i64::MAX))
            .bind(page.limit + 1)
            .fetch_all(&mut *conn)
            .await?;
    let list = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(page.cut(list, |r| r.id))
}
