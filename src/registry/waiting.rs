//! The program's devices that need someone, for the state home: loggers in service whose
//! calibration expires soon (or has), and gateways that went silent or warn of their spool.

use sqlx::Row;

use super::Result;
use crate::store::listing::{Attention, Listing, Window};
use crate::store::Db;

/// Loggers watching a unit whose calibration expires by `until` (`YYYY-MM-DD`), the soonest
/// first; an expired one (before `today`) is `first`.
pub async fn calibration_due(db: &Db, today: &str, until: &str, w: Window) -> Result<Listing> {
    const FROM: &str = "FROM loggers g JOIN logger_assignments a ON a.serial = g.serial AND a.to_ts IS NULL \
         JOIN unit_places p ON p.unit_id = a.unit_id \
         WHERE g.calibration_expires_on IS NOT NULL AND g.calibration_expires_on <= $1";
    let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n {FROM}"))
        .bind(until)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT g.serial, g.calibration_expires_on, a.role, p.location_code, p.location_name, p.unit_name {FROM} \
         ORDER BY g.calibration_expires_on, g.serial LIMIT $2 OFFSET $3"
    ))
    .bind(until)
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let expires: String = r.try_get("calibration_expires_on")?;
            let serial: String = r.try_get("serial")?;
            let expired = expires.as_str() < today;
            Ok(Attention {
                what: format!(
                    "Logger {serial} ({} of {}): calibration {} {expires}",
                    r.try_get::<String, _>("role")?,
                    r.try_get::<String, _>("unit_name")?,
                    if expired { "expired on" } else { "expires on" },
                ),
                key: serial,
                location_code: r.try_get("location_code")?,
                place: r.try_get("location_name")?,
                since: None,
                due: Some(expires),
                first: expired,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}

/// Registered gateways not heard from since `silent_before` (epoch ms), or whose latest status
/// warned of their spool; the longest silent first.
pub async fn troubled_gateways(db: &Db, silent_before: i64, w: Window) -> Result<Listing> {
    const WHERE: &str = "WHERE g.location_code IS NOT NULL AND (g.last_seen_at IS NULL OR g.last_seen_at < $1 OR g.warning IS NOT NULL)";
    let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM gateways g {WHERE}"))
        .bind(silent_before)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT g.id, g.name, g.location_code, g.last_seen_at, g.warning, l.name AS location_name \
         FROM gateways g JOIN locations l ON l.code = g.location_code {WHERE} \
         ORDER BY COALESCE(g.last_seen_at, 0), g.id LIMIT $2 OFFSET $3"
    ))
    .bind(silent_before)
    .bind(w.limit)
    .bind(w.offset)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            let seen: Option<i64> = r.try_get("last_seen_at")?;
            let warning: Option<String> = r.try_get("warning")?;
            let silent = seen.is_none_or(|t| t < silent_before);
            let name = r.try_get::<Option<String>, _>("name")?.unwrap_or_else(|| id.clone());
            Ok(Attention {
                what: match (silent, warning) {
                    (true, Some(w)) => format!("Gateway {name}: silent; it last warned: {w}"),
                    (true, None) => format!("Gateway {name}: silent"),
                    (false, Some(w)) => format!("Gateway {name}: {w}"),
                    (false, None) => format!("Gateway {name}"),
                },
                key: id,
                location_code: r.try_get("location_code")?,
                place: r.try_get("location_name")?,
                since: seen,
                due: None,
                first: silent,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { total, rows })
}
