//! The prerequisites of an order (README, "Ordering"; docs/domain.md, "Ordering (VFC)"): a
//! recent reconciliation, doses reported, complete temperature records since the last order,
//! excursions reviewed, loggers calibrated, no old decrement exception — each switched on and
//! sized in the program's `ordering.prerequisites`, each failure naming exactly what to fix. A
//! state coordinator may waive one check for one location, for its next submission or a few
//! days.
//!
//! A location's status is stored (`order_readiness`) whenever it is computed, and a supervised
//! sweep keeps it current as its inputs change (any audited write at the location) and as time
//! passes, so lists read it and never recompute it.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::accounts::audit;
use crate::accounts::Caller;
use crate::domain::ordering::Prerequisites;
use crate::error::{Error, Result};
use crate::inventory::{self, usage, Place};
use crate::store::{now_millis, rfc3339, Db};

pub use super::waivers::{WaiverRef, CHECKS};

const DAY_MS: i64 = 86_400_000;

/// One check's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    /// What was found, and when not ok, exactly what to fix.
    pub detail: String,
    /// The start of what the check read (RFC 3339), if it reads a period.
    pub since: Option<String>,
    /// A state coordinator's waiver that lets this check pass once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverRef>,
}

/// `GET /api/v1/locations/{code}/orders/prerequisites`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// Every check passes or is waived.
    pub ready: bool,
    pub checks: Vec<Check>,
    pub computed_at: String,
}

impl Readiness {
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok && c.waiver.is_none()).collect()
    }
}

fn check(name: &str, ok: bool, detail: String, since: Option<i64>) -> Check {
    Check {
        check: name.to_string(),
        ok,
        detail,
        since: since.map(rfc3339),
        waiver: None,
    }
}

/// When location `code` last submitted an order (other than `except`), epoch ms.
pub async fn last_submitted(conn: &mut AnyConnection, code: &str, except: Option<i64>) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(submitted_at) FROM orders WHERE location_code = $1 AND id <> $2",
    )
    .bind(code)
    .bind(except.unwrap_or(-1))
    .fetch_one(&mut *conn)
    .await?)
}

/// Lists the first few of `items` and how many more.
fn some<T: std::fmt::Display>(items: &[T], max: usize) -> String {
    let mut s = items
        .iter()
        .take(max)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        s.push_str(&format!(" and {} more", items.len() - max));
    }
    s
}

/// Computes the checks of `place` now, with the waivers in force (`except`: the order being
/// submitted, whose own submission time is not "the previous order").
pub async fn compute(
    conn: &mut AnyConnection,
    place: &Place,
    p: &Prerequisites,
    lookback_days: i64,
    except: Option<i64>,
) -> Result<Readiness> {
    let now = now_millis();
    let today = inventory::today(place.tz, now);
    let code = place.code.as_str();
    let mut checks = Vec::new();

    if let Some(days) = p.reconciliation_days {
        let since = now - days * DAY_MS;
        let stocked = usage::units_that_held_stock(conn, code, now).await?;
        checks.push(match place.last_count_at {
            _ if stocked.is_empty() => check("reconciliation", true, "no unit holds stock".into(), Some(since)),
            Some(at) if at >= since => check(
                "reconciliation",
                true,
                format!("every lot counted on {}", rfc3339(at)),
                Some(since),
            ),
            last => check(
                "reconciliation",
                false,
                format!(
                    "{}; count every lot in unit(s) {} within {days} days: POST /api/v1/locations/{code}/reconciliations",
                    last.map_or("no count on record".to_string(), |at| format!("the last count was {}", rfc3339(at))),
                    some(&stocked, 10),
                ),
                Some(since),
            ),
        });
    }

    if let Some(days) = p.doses_reported_days {
        let since = now - days * DAY_MS;
        let last = inventory::doses::last_recorded_at(conn, code).await?;
        let report = super::waivers::latest_no_dose_report(conn, code).await?;
        // "No doses since D" covers the days from D on: it satisfies the check when made within
        // the period and D reaches back to the last dose recorded, or to the period's start.
        let covered = report.as_ref().is_some_and(|(reported_at, from)| {
            let reaches = match last {
                Some(l) => *from <= inventory::today(place.tz, l) + chrono::Duration::days(1),
                None => true,
            } || *from <= today - chrono::Duration::days(days);
            *reported_at >= since && reaches
        });
        checks.push(match last {
            Some(at) if at >= since => check("doses_reported", true, format!("the last dose was recorded {}", rfc3339(at)), Some(since)),
            _ if covered => {
                let (at, from) = report.expect("covered");
                check(
                    "doses_reported",
                    true,
                    format!("reported on {} that no doses were given since {from}", rfc3339(at)),
                    Some(since),
                )
            }
            last => check(
                "doses_reported",
                false,
                format!(
                    "{}; send the doses given (HL7 VXU or POST /api/v1/locations/{code}/administrations), \
                     or if none were given say so: POST /api/v1/locations/{code}/no-doses-report {{\"since\":\"YYYY-MM-DD\"}}",
                    last.map_or("no dose on record".to_string(), |at| format!(
                        "no dose recorded in the last {days} days (the last: {})",
                        rfc3339(at)
                    )),
                ),
                Some(since),
            ),
        });
    }

    if p.temperature_records || p.daily_signoff {
        let previous = last_submitted(conn, code, except).await?;
        let first = previous
            .map(|at| inventory::today(place.tz, at))
            .unwrap_or(today - chrono::Duration::days(lookback_days))
            .max(today - chrono::Duration::days(crate::coldchain::daily::MAX_DAYS - 1));
        let last = today.pred_opt().unwrap_or(today);
        let start = crate::coldchain::daily::day_start(place.tz, first);
        let mut problems = Vec::new();
        let mut missing_readings = false;
        if first <= last {
            for unit in usage::units_that_held_stock(conn, code, start).await? {
                let Some((name, range)) = crate::registry::units::brief(conn, unit).await? else {
                    continue;
                };
                let days = crate::coldchain::daily::record_in(conn, unit, range, place.tz, first, last).await?;
                let incomplete: Vec<&str> = days
                    .iter()
                    .filter(|d| p.temperature_records && !d.complete)
                    .map(|d| d.date.as_str())
                    .collect();
                let unsigned: Vec<&str> = days
                    .iter()
                    .filter(|d| p.daily_signoff && d.signed_by.is_none() && workday(&d.date))
                    .map(|d| d.date.as_str())
                    .collect();
                let mut what = Vec::new();
                if !incomplete.is_empty() {
                    missing_readings = true;
                    what.push(format!("readings missing on {}", some(&incomplete, 8)));
                }
                if !unsigned.is_empty() {
                    what.push(format!(
                        "the daily check not signed on {} (POST /api/v1/units/{unit}/daily/{{date}}/sign)",
                        some(&unsigned, 8)
                    ));
                }
                if !what.is_empty() {
                    problems.push(format!("unit {unit} ({name}): {}", what.join("; ")));
                }
            }
        }
        let period = format!("{first} to {last}");
        checks.push(if problems.is_empty() {
            check(
                "temperature_records",
                true,
                format!("complete for every unit holding stock, {period}"),
                Some(start),
            )
        } else {
            check(
                "temperature_records",
                false,
                format!(
                    "{period}: {}{}",
                    problems.join("; "),
                    if missing_readings {
                        "; for days with readings missing, bring in the logger's own file for them \
                         (vfc import FILE --unit ID) or ask the state to waive this check"
                    } else {
                        ""
                    }
                ),
                Some(start),
            )
        });
    }

    if let Some(hours) = p.unreviewed_excursion_hours {
        let before = now - hours * 3_600_000;
        let late = crate::coldchain::excursions::unreviewed_met_before(conn, code, before).await?;
        checks.push(if late.is_empty() {
            check(
                "unreviewed_excursions",
                true,
                format!("no excursion left unreviewed over {hours} hours"),
                None,
            )
        } else {
            let named: Vec<String> = late
                .iter()
                .map(|(id, unit, met)| format!("excursion {id} in unit {unit} (met its rule {})", rfc3339(*met)))
                .collect();
            check(
                "unreviewed_excursions",
                false,
                format!(
                    "{}; review with the manufacturer's determination: POST /api/v1/excursions/{{id}}/review",
                    some(&named, 5)
                ),
                None,
            )
        });
    }

    if p.calibration_current {
        let today_s = today.to_string();
        let loggers = crate::registry::loggers::serving_location(conn, code).await?;
        let bad: Vec<String> = loggers
            .iter()
            .filter(|l| l.calibration_expires_on.as_deref().is_none_or(|e| e < today_s.as_str()))
            .map(|l| match &l.calibration_expires_on {
                Some(e) => format!(
                    "{} ({} logger of unit {} {}) expired {e}",
                    l.serial, l.role, l.unit_id, l.unit_name
                ),
                None => format!(
                    "{} ({} logger of unit {} {}) has no calibration on record",
                    l.serial, l.role, l.unit_id, l.unit_name
                ),
            })
            .collect();
        checks.push(if bad.is_empty() {
            check("calibration_current", true, format!("{} logger(s), all calibrated", loggers.len()), None)
        } else {
            check(
                "calibration_current",
                false,
                format!(
                    "{}; record the new certificate (PUT /api/v1/units/{{id}}/logger with calibrated_on and calibration_expires_on)",
                    some(&bad, 5)
                ),
                None,
            )
        });
    }

    if let Some(days) = p.decrement_exception_days {
        let before = now - days * DAY_MS;
        let old = inventory::doses::exceptions::open_before(conn, code, before).await?;
        checks.push(if old.is_empty() {
            check(
                "decrement_exceptions",
                true,
                format!("none older than {days} days"),
                Some(before),
            )
        } else {
            let ids: Vec<String> = old
                .iter()
                .map(|(id, at)| format!("{id} (since {})", rfc3339(*at)))
                .collect();
            check(
                "decrement_exceptions",
                false,
                format!(
                    "resolve decrement exception(s) {}: POST /api/v1/decrement-exceptions/{{id}}/resolve",
                    some(&ids, 10)
                ),
                Some(before),
            )
        });
    }

    for w in super::waivers::waivers_in_force(conn, code, now).await? {
        if let Some(c) = checks.iter_mut().find(|c| c.check == w.0 && !c.ok) {
            c.waiver = Some(w.1);
        }
    }
    let ready = checks.iter().all(|c| c.ok || c.waiver.is_some());
    Ok(Readiness {
        ready,
        checks,
        computed_at: rfc3339(now),
    })
}

/// Monday to Friday: the days VFC asks for a check at the start of the workday.
fn workday(date: &str) -> bool {
    NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok_and(|d| d.weekday().number_from_monday() <= 5)
}

/// Stores `r` as the location's current status.
pub async fn store(conn: &mut AnyConnection, code: &str, r: &Readiness) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_readiness (location_code, ready, checks, computed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (location_code) DO UPDATE SET ready = excluded.ready, checks = excluded.checks, computed_at = excluded.computed_at",
    )
    .bind(code)
    .bind(r.ready as i64)
    .bind(serde_json::to_string(&r.checks).expect("plain data"))
    .bind(now_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Computes and stores the status of `place`.
pub async fn refresh(conn: &mut AnyConnection, place: &Place) -> Result<Readiness> {
    let program = crate::coldchain::settings::program_in(conn).await?.ordering;
    let r = compute(
        conn,
        place,
        &program.prerequisites,
        program.temperature_lookback_days,
        None,
    )
    .await?;
    store(conn, &place.code, &r).await?;
    Ok(r)
}

/// `GET …/orders/prerequisites`: computed now, and stored.
pub async fn of_location(db: &Db, caller: &Caller, code: &str) -> Result<Readiness> {
    let mut conn = db.pool.acquire().await?;
    let place = inventory::place(&mut conn, &caller.scope, code).await?;
    refresh(&mut conn, &place).await
}

/// The stored status of locations, for lists: (ready, checks, computed at).
pub async fn stored(
    conn: &mut AnyConnection,
    codes: &[String],
) -> Result<std::collections::HashMap<String, Readiness>> {
    let mut out = std::collections::HashMap::new();
    if codes.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT location_code, ready, checks, computed_at FROM order_readiness WHERE location_code IN ({})",
        crate::store::placeholders(codes.len())
    );
    let mut q = sqlx::query(&sql);
    for c in codes {
        q = q.bind(c);
    }
    for r in q.fetch_all(&mut *conn).await? {
        let code: String = r.try_get("location_code")?;
        let checks: Vec<Check> = serde_json::from_str(&r.try_get::<String, _>("checks")?)
            .map_err(|e| Error::unreadable("order_readiness", &code, e))?;
        out.insert(
            code,
            Readiness {
                ready: r.try_get::<i64, _>("ready")? != 0,
                checks,
                computed_at: rfc3339(r.try_get("computed_at")?),
            },
        );
    }
    Ok(out)
}

/// How far [`sweep`] has looked: the last audit row and the time of its last pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watermark {
    pub audit_id: i64,
    pub at: i64,
}

/// Brings stored statuses up to date: the locations written to since the watermark (audit rows)
/// or whose excursions changed since (the evaluator writes no audit row), then up to
/// `stale_batch` of those computed longest ago (over an hour). Returns how many it computed.
pub async fn sweep(db: &Db, watermark: &mut Watermark, stale_batch: i64) -> Result<usize> {
    let mut conn = db.pool.acquire().await?;
    let started = now_millis();
    let (mut codes, latest) = audit::locations_written_after(&mut conn, watermark.audit_id).await?;
    codes.extend(crate::coldchain::excursions::locations_changed_since(&mut conn, watermark.at).await?);
    let stale: Vec<String> = if stale_batch == 0 {
        Vec::new()
    } else {
        sqlx::query_scalar(
            "SELECT l.code FROM location_contacts l LEFT JOIN order_readiness r ON r.location_code = l.code \
         WHERE r.computed_at IS NULL OR r.computed_at < $1 ORDER BY COALESCE(r.computed_at, 0), l.code LIMIT $2",
        )
        .bind(now_millis() - 3_600_000)
        .bind(stale_batch)
        .fetch_all(&mut *conn)
        .await?
    };
    codes.extend(stale);
    codes.sort();
    codes.dedup();
    let everything = crate::accounts::Scope::Program;
    let mut n = 0;
    for code in &codes {
        match inventory::place(&mut conn, &everything, code).await {
            Ok(place) => {
                refresh(&mut conn, &place).await?;
                n += 1;
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    *watermark = Watermark {
        audit_id: latest,
        at: started,
    };
    Ok(n)
}
