//! A unit's temperature chart (`/units/{id}/chart.svg`): the primary logger's readings as the
//! rules read them, the backup logger's as a second line, the unit's range and its rules'
//! thresholds, and its excursions in the window — handed to [`crate::charts`] to draw.

use crate::accounts::Scope;
use crate::charts::{Bucket, Series, Shade, Summary, TempChart};
use crate::domain::LoggerRole;
use crate::error::{Error, Result};
use crate::registry::{assignments, locations, units};
use crate::store::Db;

/// The longest window one chart covers.
pub const MAX_DAYS: i64 = 92;

/// How a chart is wanted: every reading (for its CSV), or summarised by the database into
/// buckets for a chart `width` pixels wide (two pixels a bucket, as the chart draws them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Points,
    Width(u32),
}

/// A logger's readings over `window` as runs of buckets of `bucket_ms` counted from `origin`.
async fn summarised(
    conn: &mut sqlx::AnyConnection,
    serial: &str,
    window: (i64, i64),
    origin: i64,
    bucket_ms: i64,
    gap_ms: i64,
) -> Result<Vec<Vec<Bucket>>> {
    let env = crate::readings::envelope(conn, serial, window, origin, bucket_ms).await?;
    Ok(crate::charts::runs_of(
        env.into_iter().map(|e| {
            let start = origin + e.bucket * bucket_ms;
            Summary {
                bucket: Bucket {
                    start,
                    end: start + bucket_ms,
                    min: e.min_c,
                    max: e.max_c,
                },
                first_ts: e.first_ts,
                last_ts: e.last_ts,
                count: e.count,
            }
        }),
        gap_ms,
    ))
}

/// The chart of unit `unit_id` (in the scope) over `[from, to)`, epoch ms, with its readings as
/// `detail` asks.
pub async fn of_unit_as(db: &Db, scope: &Scope, unit_id: i64, from: i64, to: i64, detail: Detail) -> Result<TempChart> {
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
    let bucket_ms = match detail {
        Detail::Points => None,
        Detail::Width(w) => Some(((to - from) / i64::from((w / 2).max(10))).max(1) + 1),
    };
    let mut series = match bucket_ms {
        None => {
            let primary = super::primary::record(&mut conn, unit_id, from, to).await?;
            vec![Series {
                name: primary.serial.clone().unwrap_or_else(|| "primary logger".into()),
                points: primary.samples.iter().map(|s| (s.ts, s.temp_c)).collect(),
                gap_ms: primary.gap_ms,
                runs: None,
            }]
        }
        Some(bucket_ms) => {
            // As the rules read them: each primary logger over its own time, one run apart.
            let windows = crate::registry::assignments::primary_windows(&mut conn, unit_id, from).await?;
            let gap_ms = 2
                * windows
                    .iter()
                    .map(|w| w.reading_interval_s.unwrap_or(300))
                    .max()
                    .unwrap_or(300)
                    .max(1)
                * 1000;
            let mut runs = Vec::new();
            let mut name = None;
            for w in &windows {
                let window = (from.max(w.from), w.to.unwrap_or(i64::MAX).min(to));
                runs.extend(summarised(&mut conn, &w.serial, window, from, bucket_ms, gap_ms).await?);
                name = Some(w.serial.clone());
            }
            vec![Series {
                name: name.unwrap_or_else(|| "primary logger".into()),
                points: Vec::new(),
                gap_ms,
                runs: Some(runs),
            }]
        }
    };
    let primary_gap = series[0].gap_ms;
    let mut backup: Vec<(i64, f64)> = Vec::new();
    let mut backup_runs = Vec::new();
    let mut backup_name = None;
    for w in assignments::unit_windows(db, unit_id).await? {
        if w.role != Some(LoggerRole::Backup) || w.from >= to || w.to.is_some_and(|t| t <= from) {
            continue;
        }
        let (a, b) = (w.from.max(from), w.to.unwrap_or(i64::MAX).min(to));
        match bucket_ms {
            None => {
                for r in crate::readings::taken_between(&mut conn, &w.serial, a, b).await? {
                    backup.push((r.ts, r.temp_c));
                }
            }
            Some(bucket_ms) => {
                backup_runs.extend(summarised(&mut conn, &w.serial, (a, b), from, bucket_ms, primary_gap).await?)
            }
        }
        backup_name = Some(w.serial);
    }
    if let Some(name) = backup_name {
        backup.sort_by_key(|p| p.0);
        series.push(Series {
            name,
            points: backup,
            gap_ms: primary_gap,
            runs: bucket_ms.map(|_| backup_runs),
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
        match series[0].extremes() {
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
