//! What a location's home shows of each storage unit (a tile): its temperature now and its
//! status — in range, out of range, excursion, no data, maintenance — by text and icon, the age
//! of its last reading, its loggers' battery and calibration, its open alerts, and today's
//! check (min/max since the day began where the unit is, and who signed).

use serde::Serialize;

use crate::accounts::Scope;
use crate::error::Result;
use crate::registry::{locations, loggers, units};
use crate::store::{now_millis, rfc3339, Db};

#[derive(Debug, Serialize)]
pub struct LoggerLine {
    pub serial: String,
    pub role: String,
    pub battery_pct: Option<f64>,
    pub calibration_expires_on: Option<String>,
    /// The calibration expired, or none is on record.
    pub calibration_due: bool,
}

#[derive(Debug, Serialize)]
pub struct Tile {
    pub unit_id: i64,
    pub name: String,
    pub kind: String,
    pub range: (f64, f64),
    /// in_range | out_of_range | excursion | no_data | maintenance
    pub status: &'static str,
    /// In words, for the page (status is never told by colour alone).
    pub status_text: String,
    pub temp_c: Option<f64>,
    pub last_reading_at: Option<String>,
    /// Minutes since the last reading.
    pub age_minutes: Option<i64>,
    pub loggers: Vec<LoggerLine>,
    pub open_excursions: Vec<i64>,
    /// Today, where the unit is (YYYY-MM-DD), and its record so far.
    pub today: String,
    pub today_min_c: Option<f64>,
    pub today_max_c: Option<f64>,
    pub signed_by: Option<String>,
}

/// The tiles of location `code` (in the scope), in unit order.
pub async fn of_location(db: &Db, scope: &Scope, code: &str) -> Result<(locations::Location, Vec<Tile>)> {
    let location = locations::get(db, scope, code).await?;
    let tz = location.tz()?;
    let now = now_millis();
    let today = crate::store::from_millis(now).with_timezone(&tz).date_naive();
    let list = units::list(db, scope, &location.code).await?;
    let mut conn = db.pool.acquire().await?;
    let serving = loggers::serving_location(&mut conn, &location.code).await?;
    let open = super::excursions::list(
        db,
        scope,
        &super::excursions::Filter {
            location: crate::domain::LocationCode::parse(&location.code).ok(),
            unit: None,
            status: Some(super::excursions::Status::Open),
            from: None,
            to: None,
        },
    )
    .await?;
    let mut tiles = Vec::with_capacity(list.len());
    for u in list {
        let detail = units::detail(db, scope, u.id).await?;
        let mine: Vec<&loggers::Serving> = serving.iter().filter(|l| l.unit_id == u.id).collect();
        let interval_s = mine
            .iter()
            .find(|l| l.role == "primary")
            .and_then(|l| l.reading_interval_s)
            .unwrap_or(300);
        let latest = detail.latest_reading.as_ref().and_then(|r| {
            chrono::DateTime::parse_from_rfc3339(&r.ts)
                .ok()
                .map(|t| (t.timestamp_millis(), r.temp_c))
        });
        let age = latest.map(|(ts, _)| ((now - ts) / 60_000).max(0));
        let stale_after = (2 * interval_s / 60).max(60);
        let excursions: Vec<i64> = open.iter().filter(|x| x.unit_id == u.id).map(|x| x.id).collect();
        let range = (u.range.min_c, u.range.max_c);
        let maintenance = super::downtime::in_force(&mut conn, u.id, now).await?;
        let (status, status_text) = if let Some(why) = maintenance {
            ("maintenance", format!("Maintenance: {why}"))
        } else if !excursions.is_empty() {
            ("excursion", "Excursion: out of range now".to_string())
        } else {
            match (latest, age) {
                (None, _) => ("no_data", "No data yet".to_string()),
                (Some(_), Some(a)) if a > stale_after => ("no_data", format!("No data for {}", minutes(a))),
                (Some((_, t)), _) if t < range.0 || t > range.1 => ("out_of_range", "Out of range".to_string()),
                _ => ("in_range", "In range".to_string()),
            }
        };
        let day = super::daily::record_in(&mut conn, u.id, range, tz, today, today).await?;
        let day = day.into_iter().next();
        tiles.push(Tile {
            unit_id: u.id,
            name: u.name.clone(),
            kind: u.kind.as_str().to_string(),
            range,
            status,
            status_text,
            temp_c: latest.map(|(_, t)| t),
            last_reading_at: latest.map(|(ts, _)| rfc3339(ts)),
            age_minutes: age,
            loggers: mine
                .iter()
                .map(|l| LoggerLine {
                    serial: l.serial.clone(),
                    role: l.role.clone(),
                    battery_pct: l.battery_pct,
                    calibration_due: l
                        .calibration_expires_on
                        .as_deref()
                        .is_none_or(|e| e < today.to_string().as_str()),
                    calibration_expires_on: l.calibration_expires_on.clone(),
                })
                .collect(),
            open_excursions: excursions,
            today: today.to_string(),
            today_min_c: day.as_ref().and_then(|d| d.min_c),
            today_max_c: day.as_ref().and_then(|d| d.max_c),
            signed_by: day.and_then(|d| d.signed_by),
        });
    }
    Ok((location, tiles))
}

/// "45 min", "3 h", "2 days".
pub fn minutes(m: i64) -> String {
    match m {
        m if m < 90 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} days", m / 1440),
    }
}
