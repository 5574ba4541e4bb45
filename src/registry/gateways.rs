//! Gateways: the clinic boxes that publish readings for the loggers they serve, each registered
//! at one location. This module owns `gateways`; with the assignments it answers the ingest's
//! question "may this gateway speak for this serial at this time?" (README, "MQTT contract").
//!
//! A gateway's id is also its broker username, and the broker lets it publish only under
//! `vfc/gateways/{its id}/…` (`deploy/mosquitto.acl`), so the topic names who sent a message.
//! What the registry adds is where that gateway stands: a gateway registered at a location of
//! PIN 054321 speaks for loggers serving PIN 054321, and for loggers no unit has yet.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use utoipa::ToSchema;

use super::{locations, Error, Result};
use crate::accounts::audit::{self, Entry, Who};
use crate::accounts::{Caller, Scope};
use crate::store::{rfc3339, Db};

/// `POST /api/v1/locations/{code}/gateways`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGateway {
    /// `gw-` and 1 to 60 letters, digits or hyphens: the gateway's `--gateway-id` and its
    /// broker username.
    #[schema(example = "gw-012345A-1")]
    pub id: String,
    /// What the clinic calls it ("Front desk Raspberry Pi").
    pub name: String,
}

/// A gateway not heard from for this long is silent: it sends every logger's readings or
/// status each minute or so.
pub const SILENT_AFTER_MS: i64 = 15 * 60_000;

/// A registered gateway and what it last said about itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub location: String,
    pub registered_at: String,
    /// Its last message on the broker (readings or status), if any.
    pub last_seen_at: Option<String>,
    /// Loggers whose latest reading or status came through it.
    pub loggers_seen: i64,
    /// Readings waiting in its spool for the service's confirmation, summed over its loggers.
    pub spool_depth: Option<i64>,
    /// What needs someone's attention: its own spool warnings, and out-of-order marks dropped.
    pub warnings: Vec<String>,
    /// Readings through it that are held, not in any unit's record (`GET /api/v1/held-readings`).
    pub held_readings: i64,
}

/// Where a registered gateway stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub location_code: String,
    pub pin: String,
}

fn check(new: &NewGateway) -> Result<()> {
    if !firmware_bridge::wire::is_gateway_id(&new.id) {
        return Err(Error::Invalid(format!(
            "gateway id {:?} must be \"gw-\" and 1 to 60 letters, digits or hyphens (it is the gateway's broker username)",
            new.id
        )));
    }
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "\"name\" must be 1 to 200 characters without control characters".into(),
        ));
    }
    Ok(())
}

/// Registers a gateway at a location the caller covers. Registering it again at the same
/// location renames it; a gateway registered at another location answers the uniform 409.
/// Returns whether it was newly registered here.
pub async fn register(db: &Db, caller: &Caller, code: &str, new: &NewGateway, now: i64) -> Result<bool> {
    let location = locations::get(db, &caller.scope, code).await?;
    check(new)?;
    let mut tx = db.begin().await?;
    // A gateway never seen gets its row here; the one below is then updated.
    sqlx::query("INSERT INTO gateways (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(&new.id)
        .execute(&mut *tx)
        .await?;
    let lock = db.dialect().for_update();
    let registered_at: Option<String> = sqlx::query(&format!("SELECT location_code FROM gateways WHERE id = $1{lock}"))
        .bind(&new.id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("location_code")?;
    let fresh = match registered_at {
        Some(at) if at != location.code => {
            return Err(Error::Conflict(format!(
                "gateway {} is already in use elsewhere",
                new.id
            )))
        }
        Some(_) => {
            sqlx::query("UPDATE gateways SET name = $1 WHERE id = $2")
                .bind(new.name.trim())
                .bind(&new.id)
                .execute(&mut *tx)
                .await?;
            false
        }
        None => {
            sqlx::query(
                "UPDATE gateways SET location_code = $1, name = $2, registered_at = $3, registered_by = $4 WHERE id = $5",
            )
            .bind(&location.code)
            .bind(new.name.trim())
            .bind(now)
            .bind(caller.actor())
            .bind(&new.id)
            .execute(&mut *tx)
            .await?;
            true
        }
    };
    let action = if fresh { "gateway.register" } else { "gateway.rename" };
    let entry = Entry::new(action, "gateway", [new.id.as_str()])
        .at(Some(&location.pin), Some(&location.code))
        .changed("name", serde_json::Value::Null, new.name.trim());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(fresh)
}

/// Takes a gateway off a location; its later readings are held until it is registered again.
pub async fn remove(db: &Db, caller: &Caller, code: &str, id: &str) -> Result<()> {
    let location = locations::get(db, &caller.scope, code).await?;
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE gateways SET location_code = NULL, name = NULL, registered_at = NULL, registered_by = NULL \
         WHERE id = $1 AND location_code = $2",
    )
    .bind(id)
    .bind(&location.code)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no gateway {id} at {}", location.code)));
    }
    let entry = Entry::new("gateway.remove", "gateway", [id])
        .at(Some(&location.pin), Some(&location.code))
        .changed("location", location.code.as_str(), serde_json::Value::Null);
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(())
}

const COLUMNS: &str = "g.id, g.name, g.location_code, g.registered_at, g.last_seen_at, g.warning, g.gaps_dropped, \
    (SELECT COUNT(*) FROM loggers s WHERE s.gateway = g.id) AS loggers_seen, \
    CAST((SELECT SUM(s.spool_depth) FROM loggers s WHERE s.gateway = g.id) AS BIGINT) AS spool_depth";

fn from_row(r: &AnyRow) -> Result<Gateway> {
    let mut warnings = Vec::new();
    if let Some(w) = r.try_get::<Option<String>, _>("warning")? {
        warnings.push(w);
    }
    let dropped: i64 = r.try_get("gaps_dropped")?;
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} out-of-order sequence numbers were past the cap and not kept: its confirmations wait \
             until it sends the missing readings again"
        ));
    }
    Ok(Gateway {
        id: r.try_get("id")?,
        name: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
        location: r.try_get::<Option<String>, _>("location_code")?.unwrap_or_default(),
        registered_at: r
            .try_get::<Option<i64>, _>("registered_at")?
            .map(rfc3339)
            .unwrap_or_default(),
        last_seen_at: r.try_get::<Option<i64>, _>("last_seen_at")?.map(rfc3339),
        loggers_seen: r.try_get("loggers_seen")?,
        spool_depth: r.try_get("spool_depth")?,
        warnings,
        held_readings: 0,
    })
}

/// The gateways registered at a location the scope covers, by id.
pub async fn list(db: &Db, scope: &Scope, code: &str) -> Result<Vec<Gateway>> {
    let location = locations::get(db, scope, code).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM gateways g WHERE g.location_code = $1 ORDER BY g.id"
    ))
    .bind(&location.code)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Where each of `ids` is registered; ids not registered are absent.
pub async fn places(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> std::result::Result<HashMap<String, Place>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT g.id, g.location_code, l.pin FROM gateways g JOIN locations l ON l.code = g.location_code \
         WHERE g.id IN ({})",
        crate::store::placeholders(ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    let mut out = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        out.insert(
            r.try_get("id")?,
            Place {
                location_code: r.try_get("location_code")?,
                pin: r.try_get("pin")?,
            },
        );
    }
    Ok(out)
}

/// Notes that gateways were heard from (registered or not), so the state can see who is
/// talking on the broker.
pub async fn heard(tx: &mut Transaction<'static, Any>, ids: &[&str], at: i64) -> std::result::Result<(), sqlx::Error> {
    for id in ids {
        sqlx::query(
            "INSERT INTO gateways (id, first_seen_at, last_seen_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = $2, first_seen_at = COALESCE(gateways.first_seen_at, $2)",
        )
        .bind(*id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Records what a gateway's status said of its spool (`None` clears an earlier warning).
pub async fn spool_warning(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    warning: Option<&str>,
    at: i64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("UPDATE gateways SET warning = $1, warning_at = $2 WHERE id = $3")
        .bind(warning)
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Counts out-of-order sequence numbers of a gateway that were past the cap and dropped.
pub async fn gaps_dropped(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    n: u64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("UPDATE gateways SET gaps_dropped = gaps_dropped + $1 WHERE id = $2")
        .bind(n as i64)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
