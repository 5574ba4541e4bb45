//! A unit's temperature chart (`/units/{id}/chart.svg`): the primary logger's readings as the
//! rules read them, the backup logger's as a second line, the unit's range and its rules'
//! thresholds, and its excursions in the window — handed to [`crate::charts`] to draw.

use crate::accounts::Scope;
use crate::charts::{Series, Shade, TempChart};
use crate::domain::LoggerRole;
use crate::error::{Error, Result};
use crate::registry::{assignments, locations, units};
use crate::store::Db;

/// The longest window one chart covers.
pub const MAX_DAYS: i64 = 92;

/// The chart of unit `unit_id` (in the scope) over `[from, to)`, epoch ms.
pub async fn of_unit(db: &Db, scope: &Scope, unit_id: i64, from: i64, to: i64) -> Result<TempChart> {
    let unit = units::get(db, scope, unit_id).await?;
    if to <= from || to - from > MAX_DAYS * 86_400_000 {
        return Err(Error::Invalid(format!(
            "\"to\" must come after \"from\", at most {MAX_DAYS} days later"
        )));
    }
    let tz = locations::get(db, scope, &unit.location).await?.tz()?;
    let (rules, _) = super::settings::effective_now(db, unit_id, unit.kind).await?;
    let mut thresholds: Vec<f64> = Vec::new();
    for r in &rules {
        use super::rules::Condition as C;
        if let C::Above { temp_c } | C::Below { temp_c } | C::AtOrBelow { temp_c } = r.condition {
            if !thresholds.contains(&temp_c) {
                thresholds.push(temp_c);
            }
        }
    }
    let mut conn = db.pool.acquire().await?;
    let primary = super::primary::record(&mut conn, unit_id, from, to).await?;
    let mut series = vec![Series {
        name: primary.serial.clone().unwrap_or_else(|| "primary logger".into()),
        points: primary.samples.iter().map(|s| (s.ts, s.temp_c)).collect(),
        gap_ms: primary.gap_ms,
    }];
    let mut backup: Vec<(i64, f64)> = Vec::new();
    let mut backup_name = None;
    for w in assignments::unit_windows(db, unit_id).await? {
        if w.role != Some(LoggerRole::Backup) || w.from >= to || w.to.is_some_and(|t| t <= from) {
            continue;
        }
        let (a, b) = (w.from.max(from), w.to.unwrap_or(i64::MAX).min(to));
        for r in crate::readings::taken_between(&mut conn, &w.serial, a, b).await? {
            backup.push((r.ts, r.temp_c));
        }
        backup_name = Some(w.serial);
    }
    if let Some(name) = backup_name {
        backup.sort_by_key(|p| p.0);
        series.push(Series {
            name,
            points: backup,
            gap_ms: primary.gap_ms,
        });
    }
    let shades = super::excursions::between(&mut conn, unit_id, from, to)
        .await?
        .into_iter()
        .map(|x| Shade {
            id: x.id,
            start: x.start,
            end: x.end,
            started_at: crate::store::rfc3339(x.start),
            ended_at: x.ended_at.map(crate::store::rfc3339),
        })
        .collect::<Vec<_>>();
    let alt = format!(
        "Temperatures of {} ({}) from {} to {}: range {:.1} to {:.1} °C, {} excursion(s) in the window{}",
        unit.name,
        unit.location,
        crate::store::rfc3339(from),
        crate::store::rfc3339(to),
        unit.range.min_c,
        unit.range.max_c,
        shades.len(),
        match series[0]
            .points
            .iter()
            .map(|p| p.1)
            .fold(None, |m: Option<(f64, f64)>, c| {
                Some(m.map_or((c, c), |(lo, hi)| (lo.min(c), hi.max(c))))
            }) {
            Some((lo, hi)) => format!("; readings from {lo:.1} to {hi:.1} °C"),
            None => "; no readings".into(),
        }
    );
    Ok(TempChart {
        from,
        to,
        tz,
        range: (unit.range.min_c, unit.range.max_c),
        thresholds,
        series,
        shades,
        alt,
    })
}

/// The last hours of a unit as its alert email shows them, read on the caller's connection
/// (inside the alert's transaction): the primary logger's readings as the rules read them, the
/// range, the rules' `thresholds` and the unit's excursions over `[from, to)`.
pub async fn recent(
    conn: &mut sqlx::AnyConnection,
    unit_id: i64,
    tz: chrono_tz::Tz,
    range: (f64, f64),
    thresholds: Vec<f64>,
    from: i64,
    to: i64,
) -> Result<TempChart> {
    let primary = super::primary::record(conn, unit_id, from, to).await?;
    let shades = super::excursions::between(conn, unit_id, from, to)
        .await?
        .into_iter()
        .map(|x| Shade {
            id: x.id,
            start: x.start,
            end: x.end,
            started_at: crate::store::rfc3339(x.start),
            ended_at: x.ended_at.map(crate::store::rfc3339),
        })
        .collect();
    Ok(TempChart {
        from,
        to,
        tz,
        range,
        thresholds,
        series: vec![Series {
            name: primary.serial.clone().unwrap_or_else(|| "primary logger".into()),
            points: primary.samples.iter().map(|s| (s.ts, s.temp_c)).collect(),
            gap_ms: primary.gap_ms,
        }],
        shades,
        alt: "The last 6 hours of the unit's temperatures".into(),
    })
}

/// The chart's readings as CSV: `logger,role,ts,temp_c`.
pub fn csv(chart: &TempChart) -> String {
    let mut out = String::from("logger,role,ts,temp_c\n");
    for (k, s) in chart.series.iter().enumerate() {
        let role = if k == 0 { "primary" } else { "backup" };
        for (ts, c) in &s.points {
            out.push_str(&format!("{},{role},{},{c}\n", s.name, crate::store::rfc3339(*ts)));
        }
    }
    out
}
