//! "Do Not Use" holds (docs/domain.md, "After an excursion"): when an excursion meets an alarm rule,
//! every lot with stock in that unit during it is held, linked to the excursion, until the
//! manufacturer's determination per lot releases it (viable) or writes it off (not viable:
//! wastage or return, 7A too warm / 7B too cold). Staff may also hold stock by hand.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::ledger::{self, Entry, Kind};
use super::{place, unit_of, Error, Result};
use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::coldchain::stock::{Alarmed, Determination, ExposedStock, HeldLot, Viability, WriteOff};
use crate::store::{now_millis, rfc3339, Db, Page};

/// The inventory's side of an excursion: holds when it meets a rule, and the manufacturer's
/// determinations when it is reviewed. Handed to the cold chain by the composition root.
pub struct ExcursionHolds;

impl ExposedStock for ExcursionHolds {
    fn stocked_units<'a>(&'a self, db: &'a Db) -> BoxFuture<'a, anyhow::Result<Vec<i64>>> {
        Box::pin(async move { Ok(super::stock::stocked_units(db).await?) })
    }

    fn hold<'a>(&'a self, conn: &'a mut AnyConnection, excursion: &'a Alarmed) -> BoxFuture<'a, anyhow::Result<usize>> {
        Box::pin(hold_for_excursion(conn, excursion))
    }

    fn held<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        excursion_id: i64,
    ) -> BoxFuture<'a, anyhow::Result<Vec<HeldLot>>> {
        Box::pin(async move { Ok(held_by_excursion(conn, excursion_id).await?) })
    }

    fn determine<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        excursion: &'a Alarmed,
        lots: &'a [Determination],
        actor: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(determine(conn, excursion.id, excursion.above_range, lots, actor))
    }
}

/// The lots an excursion holds now, with their product and the doses in the unit.
async fn held_by_excursion(conn: &mut AnyConnection, excursion_id: i64) -> Result<Vec<HeldLot>> {
    let rows = sqlx::query(
        "SELECT pr.name, l.lot_number, l.expires_on, l.funding, COALESCE(s.on_hand, 0) AS on_hand \
         FROM holds h JOIN lots l ON l.id = h.lot_id JOIN products pr ON pr.ndc = l.ndc \
         LEFT JOIN stock s ON s.unit_id = h.unit_id AND s.lot_id = h.lot_id \
         WHERE h.excursion_id = $1 AND h.ended_at IS NULL ORDER BY pr.name, l.lot_number",
    )
    .bind(excursion_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(HeldLot {
                product: r.try_get("name")?,
                lot: r.try_get("lot_number")?,
                expires_on: r.try_get("expires_on")?,
                funding: r.try_get("funding")?,
                doses: r.try_get("on_hand")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?)
}

pub async fn is_held(conn: &mut AnyConnection, unit_id: i64, lot_id: i64) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM holds WHERE unit_id = $1 AND lot_id = $2 AND ended_at IS NULL")
            .bind(unit_id)
            .bind(lot_id)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// The excursion whose hold keeps this stock from being written off before a determination.
pub async fn excursion_hold(conn: &mut AnyConnection, unit_id: i64, lot_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query(
        "SELECT excursion_id FROM holds WHERE unit_id = $1 AND lot_id = $2 AND ended_at IS NULL AND excursion_id IS NOT NULL",
    )
    .bind(unit_id)
    .bind(lot_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get("excursion_id"))
    .transpose()?)
}

/// Holds every lot that had stock in the excursion's unit while it lasted (one already used up
/// gets a record that is closed at once).
/// Called by the evaluator, in its transaction, whenever an excursion is linked to an alarm;
/// holding again changes nothing.
pub async fn hold_for_excursion(conn: &mut AnyConnection, excursion: &Alarmed) -> anyhow::Result<usize> {
    let excursion_id = excursion.id;
    let unit_id = excursion.unit_id;
    let location = excursion.location_code.clone();
    let start = excursion.started_at;
    let end = excursion.ended_at.unwrap_or(i64::MAX);
    // Stock present during [start, end]: on hand at the start, or brought in before the end.
    let rows = sqlx::query(
        "SELECT s.lot_id, s.on_hand, \
         CAST(COALESCE((SELECT SUM(e.doses) FROM stock_events e WHERE e.unit_id = s.unit_id AND e.lot_id = s.lot_id AND e.occurred_at > $2), 0) AS BIGINT) AS since_start, \
         CAST(COALESCE((SELECT SUM(e.doses) FROM stock_events e WHERE e.unit_id = s.unit_id AND e.lot_id = s.lot_id AND e.occurred_at > $2 \
                   AND e.occurred_at <= $3 AND e.doses > 0), 0) AS BIGINT) AS came_in \
         FROM stock s WHERE s.unit_id = $1",
    )
    .bind(unit_id)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let mut held = 0;
    for r in rows {
        let lot_id: i64 = r.try_get("lot_id")?;
        let on_hand: i64 = r.try_get("on_hand")?;
        let at_start = on_hand - r.try_get::<i64, _>("since_start")?;
        if at_start <= 0 && r.try_get::<i64, _>("came_in")? <= 0 {
            continue;
        }
        let now = now_millis();
        // Stock used up while it lasted has nothing left to label, but its record stays: the
        // doses given from it are on the revaccination review list.
        let (reason, ended) = if on_hand > 0 {
            (format!("temperature excursion {excursion_id} met an alarm rule"), None)
        } else {
            (
                format!("temperature excursion {excursion_id} met an alarm rule; no doses were left to hold"),
                Some(now),
            )
        };
        let inserted = sqlx::query(
            "INSERT INTO holds (location_code, unit_id, lot_id, excursion_id, reason, placed_at, placed_by, ended_at, ended_by, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, 'vfc-monitor', $7, $8, $9) ON CONFLICT (excursion_id, unit_id, lot_id) DO NOTHING RETURNING id",
        )
        .bind(&location)
        .bind(unit_id)
        .bind(lot_id)
        .bind(excursion_id)
        .bind(reason)
        .bind(now)
        .bind(ended)
        .bind(ended.map(|_| "vfc-monitor"))
        .bind(ended.map(|_| "used_up"))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(h) = inserted {
            let mut e = Entry::new(&location, unit_id, lot_id, Kind::Hold, 0, "vfc-monitor");
            e.hold_id = Some(h.try_get("id")?);
            e.source = "excursion";
            e.source_ref = Some(excursion_id.to_string());
            ledger::record(conn, &e).await?;
            held += 1;
        }
    }
    Ok(held)
}

/// A hold as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hold {
    pub id: i64,
    pub location: String,
    pub unit_id: i64,
    pub lot_id: i64,
    pub lot: String,
    pub ndc: String,
    pub funding: String,
    pub on_hand: i64,
    pub excursion_id: Option<i64>,
    pub reason: String,
    pub placed_at: String,
    pub placed_by: String,
    pub ended_at: Option<String>,
    pub ended_by: Option<String>,
    /// released | wasted | returned | used_up (nothing was left to hold)
    pub outcome: Option<String>,
    pub determination: Option<serde_json::Value>,
}

const HOLD_COLUMNS: &str = "h.id, h.location_code, h.unit_id, h.lot_id, l.lot_number, l.ndc, l.funding, \
    COALESCE(s.on_hand, 0) AS on_hand, h.excursion_id, h.reason, h.placed_at, h.placed_by, h.ended_at, h.ended_by, \
    h.outcome, h.determination FROM holds h JOIN lots l ON l.id = h.lot_id \
    LEFT JOIN stock s ON s.unit_id = h.unit_id AND s.lot_id = h.lot_id";

fn hold_row(r: &sqlx::any::AnyRow) -> sqlx::Result<Hold> {
    Ok(Hold {
        id: r.try_get("id")?,
        location: r.try_get("location_code")?,
        unit_id: r.try_get("unit_id")?,
        lot_id: r.try_get("lot_id")?,
        lot: r.try_get("lot_number")?,
        ndc: r.try_get("ndc")?,
        funding: r.try_get("funding")?,
        on_hand: r.try_get("on_hand")?,
        excursion_id: r.try_get("excursion_id")?,
        reason: r.try_get("reason")?,
        placed_at: rfc3339(r.try_get("placed_at")?),
        placed_by: r.try_get("placed_by")?,
        ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
        ended_by: r.try_get("ended_by")?,
        outcome: r.try_get("outcome")?,
        // Shown as stored: a determination is a manufacturer's word, kept verbatim even if this
        // version could not parse it (then as a string, never as null).
        determination: r
            .try_get::<Option<String>, _>("determination")?
            .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d))),
    })
}

pub async fn of_excursion(conn: &mut AnyConnection, excursion_id: i64) -> Result<Vec<Hold>> {
    let rows = sqlx::query(&format!(
        "SELECT {HOLD_COLUMNS} WHERE h.excursion_id = $1 ORDER BY h.id"
    ))
    .bind(excursion_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(hold_row).collect::<sqlx::Result<_>>()?)
}

/// The holds of an excursion the scope covers, with their determinations once reviewed.
pub async fn of_visible_excursion(db: &Db, scope: &crate::accounts::Scope, excursion_id: i64) -> Result<Vec<Hold>> {
    crate::coldchain::excursions::visible(db, scope, excursion_id).await?;
    let mut conn = db.pool.acquire().await?;
    of_excursion(&mut conn, excursion_id).await
}

/// Holds at a location, newest first (`open_only`: those in force).
pub async fn list(
    db: &Db,
    caller: &Caller,
    code: &str,
    open_only: bool,
    page: Page,
) -> Result<(Vec<Hold>, Option<i64>)> {
    let mut conn = db.pool.acquire().await?;
    let place = place(&mut conn, &caller.scope, code).await?;
    let rows = sqlx::query(&format!(
        "SELECT {HOLD_COLUMNS} WHERE h.location_code = $1 AND ($2 = 0 OR h.ended_at IS NULL) AND h.id < $3 \
         ORDER BY h.id DESC LIMIT $4"
    ))
    .bind(&place.code)
    .bind(open_only as i64)
    .bind(page.after.unwrap_or(i64::MAX))
    .bind(page.limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let list = rows.iter().map(hold_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(page.cut(list, |h| h.id))
}

/// Body of `POST /api/v1/locations/{code}/holds`: stock held by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    pub unit_id: i64,
    pub lot_id: i64,
    pub reason: String,
}

pub async fn place_hold(db: &Db, caller: &Caller, code: &str, body: &NewHold) -> Result<Hold> {
    if body.reason.trim().is_empty() {
        return Err(Error::Invalid("\"reason\" is required".into()));
    }
    let mut tx = db.begin().await?;
    let place = place(&mut tx, &caller.scope, code).await?;
    unit_of(&mut tx, &place, body.unit_id).await?;
    if ledger::on_hand(&mut tx, body.unit_id, body.lot_id).await? == 0 {
        return Err(Error::Invalid(format!(
            "unit {} has no doses of lot {} to hold",
            body.unit_id, body.lot_id
        )));
    }
    if is_held(&mut tx, body.unit_id, body.lot_id).await? {
        return Err(Error::Conflict("that stock is already on hold".into()));
    }
    let actor = caller.actor();
    let id = hold_in(
        &mut tx,
        &place.code,
        body.unit_id,
        body.lot_id,
        body.reason.trim(),
        &actor,
    )
    .await?;
    let entry = audit::Entry::new("hold.place", "hold", [id])
        .at(Some(&place.pin), Some(&place.code))
        .changed("lot_id", serde_json::Value::Null, body.lot_id)
        .changed("reason", serde_json::Value::Null, body.reason.trim());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    let h = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(h)
}

/// Holds stock in the caller's transaction ("Do Not Use"), with its ledger row; the hold's id.
pub async fn hold_in(
    conn: &mut AnyConnection,
    location: &str,
    unit_id: i64,
    lot_id: i64,
    reason: &str,
    actor: &str,
) -> Result<i64> {
    let id: i64 = sqlx::query(
        "INSERT INTO holds (location_code, unit_id, lot_id, reason, placed_at, placed_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(location)
    .bind(unit_id)
    .bind(lot_id)
    .bind(reason)
    .bind(now_millis())
    .bind(actor)
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?;
    let mut e = Entry::new(location, unit_id, lot_id, Kind::Hold, 0, actor);
    e.hold_id = Some(id);
    e.note = Some(reason);
    ledger::record(conn, &e).await?;
    Ok(id)
}

async fn get(conn: &mut AnyConnection, id: i64) -> Result<Hold> {
    let r = sqlx::query(&format!("SELECT {HOLD_COLUMNS} WHERE h.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no hold {id}")))?;
    Ok(hold_row(&r)?)
}

/// Releases a hold placed by hand. An excursion's hold ends only with the manufacturer's
/// determination, recorded in the excursion review.
pub async fn release(db: &Db, caller: &Caller, id: i64, note: &str) -> Result<Hold> {
    let mut tx = db.begin().await?;
    let h = get(&mut tx, id).await?;
    place(&mut tx, &caller.scope, &h.location)
        .await
        .map_err(|_| Error::NotFound(format!("no hold {id}")))?;
    if h.ended_at.is_some() {
        return Err(Error::Conflict(format!(
            "hold {id} already ended ({})",
            h.outcome.unwrap_or_default()
        )));
    }
    if let Some(x) = h.excursion_id {
        return Err(Error::Conflict(format!(
            "this hold comes from excursion {x}: record the manufacturer's determination for the lot in \
             POST /api/v1/excursions/{x}/review"
        )));
    }
    end(&mut tx, &h, Outcome::Released, None, note, &caller.actor()).await?;
    let entry = audit::Entry::new("hold.release", "hold", [id])
        .at(None, Some(&h.location))
        .changed("outcome", serde_json::Value::Null, "released");
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    let h = get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(h)
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Released,
    Wasted,
    Returned,
}

async fn end(
    conn: &mut AnyConnection,
    h: &Hold,
    outcome: Outcome,
    reason_code: Option<&str>,
    note: &str,
    actor: &str,
) -> Result<()> {
    let (word, kind, doses) = match outcome {
        Outcome::Released => ("released", Kind::Release, 0),
        Outcome::Wasted => ("wasted", Kind::Wastage, -h.on_hand),
        Outcome::Returned => ("returned", Kind::Return, -h.on_hand),
    };
    if doses != 0 || matches!(outcome, Outcome::Released) {
        let mut e = Entry::new(&h.location, h.unit_id, h.lot_id, kind, doses, actor);
        e.hold_id = Some(h.id);
        e.reason_code = reason_code;
        e.note = Some(note);
        if let Some(x) = h.excursion_id {
            e.source = "excursion";
            e.source_ref = Some(x.to_string());
        }
        ledger::record(conn, &e).await?;
    }
    sqlx::query("UPDATE holds SET ended_at = $1, ended_by = $2, outcome = $3 WHERE id = $4")
        .bind(now_millis())
        .bind(actor)
        .bind(word)
        .bind(h.id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Applies the review's determinations to the excursion's open holds. Every open hold needs
/// one; a determination for a lot the inventory does not hold here is kept in the worksheet only.
pub async fn determine(
    conn: &mut AnyConnection,
    excursion_id: i64,
    too_warm: bool,
    found: &[Determination],
    actor: &str,
) -> Result<()> {
    let open: Vec<Hold> = of_excursion(conn, excursion_id)
        .await?
        .into_iter()
        .filter(|h| h.ended_at.is_none())
        .collect();
    let matches = |h: &Hold, d: &Determination| match (d.lot_id, &d.lot) {
        (Some(id), _) => id == h.lot_id,
        (None, Some(l)) => l.trim().eq_ignore_ascii_case(&h.lot) && d.funding.is_none_or(|f| f.as_str() == h.funding),
        _ => false,
    };
    let mut missing = Vec::new();
    for h in &open {
        let mut ds = found.iter().filter(|d| matches(h, d));
        let (Some(d), None) = (ds.next(), ds.next()) else {
            missing.push(format!("{} (lot_id {}, {})", h.lot, h.lot_id, h.funding));
            continue;
        };
        let outcome = match (d.determination, d.action) {
            (Viability::Viable, _) => Outcome::Released,
            (Viability::NotViable, Some(WriteOff::Waste)) => Outcome::Wasted,
            (Viability::NotViable, _) => Outcome::Returned,
        };
        sqlx::query("UPDATE holds SET determination = $1 WHERE id = $2")
            .bind(serde_json::to_string(d).unwrap_or_default())
            .bind(h.id)
            .execute(&mut *conn)
            .await?;
        // docs/domain.md wastage codes: 7A unit too warm, 7B unit too cold.
        let code = if too_warm { "7A" } else { "7B" };
        let note = format!(
            "manufacturer determination after excursion {excursion_id}: {}{}",
            match d.determination {
                Viability::Viable => "viable",
                Viability::NotViable => "not_viable",
            },
            d.case_number
                .as_ref()
                .map(|c| format!(", case {c}"))
                .unwrap_or_default()
        );
        end(
            conn,
            h,
            outcome,
            (!matches!(outcome, Outcome::Released)).then_some(code),
            &note,
            actor,
        )
        .await?;
    }
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "give one determination (viable or not_viable) for each lot held by this excursion: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}
