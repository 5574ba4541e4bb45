//! Where the rules live: the program's settings (`program`) and a unit's own rules
//! (`unit_rules`); every change to either, or to a unit's range, is recorded and told through
//! [`super::changes`]. This module owns `program` and `unit_rules`.
//!
//! A stored settings document may be older than this version: a key added later takes its
//! default when absent, but a value that is present and cannot be read is an error that names
//! the row — never a silent default, which would change who gets paged without anyone knowing.

use sqlx::{AnyConnection, Row};

use super::changes::{self, Subject};
use super::rules::{check_rules, no_looser, range_no_looser, ProgramSettings, Rule};
use crate::accounts::audit::{self, Entry, Who};
use crate::accounts::Caller;
use crate::domain::UnitKind;
use crate::error::{Error, Result};
use crate::registry::units::{self, Range, Unit, UnitUpdate};
use crate::store::{now_millis, Db};

/// Lays a stored document over the defaults: objects merge key by key, anything else in the
/// stored document wins. Keys the stored document lacks keep their default; keys this version
/// no longer knows (a later release dropped them) are left out and named in `dropped`, so a
/// release that retires a setting never leaves the stored document unreadable.
fn over_defaults(
    defaults: serde_json::Value,
    stored: serde_json::Value,
    path: &str,
    dropped: &mut Vec<String>,
) -> serde_json::Value {
    match (defaults, stored) {
        (serde_json::Value::Object(mut d), serde_json::Value::Object(s)) => {
            for (k, v) in s {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match d.remove(&k) {
                    Some(dv) => {
                        let merged = over_defaults(dv, v, &at, dropped);
                        d.insert(k, merged);
                    }
                    None => dropped.push(at),
                }
            }
            serde_json::Value::Object(d)
        }
        (_, stored) => stored,
    }
}

/// Reads a stored program document: absent keys take their defaults, keys this version does not
/// know are ignored (and logged), anything present and known must read.
pub fn read_program(raw: &str) -> std::result::Result<ProgramSettings, String> {
    let stored: serde_json::Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    let defaults = serde_json::to_value(ProgramSettings::default()).expect("the defaults serialise");
    let mut dropped = Vec::new();
    let merged = over_defaults(defaults, stored, "", &mut dropped);
    if !dropped.is_empty() {
        tracing::warn!(keys = ?dropped, "the stored program settings have keys this version does not know; they are ignored");
    }
    let settings: ProgramSettings = serde_json::from_value(merged).map_err(|e| e.to_string())?;
    settings.check()?;
    Ok(settings)
}

/// The program's settings the alarms run on: read afresh on every pass, and should the stored
/// document become unreadable (a bad hand edit, a release that reads it more strictly), the last
/// document that read — or, before any did, the shipped defaults — so no unit goes unjudged and
/// no alert unescalated while someone fixes it. The problem is logged when it starts, counted in
/// `vfc_program_unreadable_passes_total` and shown on `/healthz` ([`problems`]).
#[derive(Clone, Default)]
pub struct InForce(std::sync::Arc<std::sync::Mutex<InForceState>>);

#[derive(Default)]
struct InForceState {
    last_good: Option<ProgramSettings>,
    unreadable: bool,
}

impl InForce {
    pub async fn get(&self, db: &Db) -> Result<ProgramSettings> {
        let read = program(db).await;
        let mut state = self.0.lock().expect("the lock is never held across a panic");
        match read {
            Ok(p) => {
                if state.unreadable {
                    tracing::info!("the program's settings read again; alarms run on them");
                    state.unreadable = false;
                }
                state.last_good = Some(p.clone());
                Ok(p)
            }
            Err(Error::Unreadable(why)) => {
                if !state.unreadable {
                    let fallback = if state.last_good.is_some() {
                        "the last settings that read"
                    } else {
                        "the shipped defaults"
                    };
                    tracing::error!(error = %why, using = fallback, "the program's settings cannot be read; alarms go on with {fallback}");
                    state.unreadable = true;
                }
                metrics::counter!("vfc_program_unreadable_passes_total").increment(1);
                Ok(state.last_good.clone().unwrap_or_default())
            }
            Err(e) => Err(e),
        }
    }
}

/// The program's settings (the shipped defaults until someone saves them).
pub async fn program(db: &Db) -> Result<ProgramSettings> {
    let mut conn = db.pool.acquire().await?;
    program_in(&mut conn).await
}

pub async fn program_in(conn: &mut AnyConnection) -> Result<ProgramSettings> {
    let row = sqlx::query("SELECT settings FROM program WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok(ProgramSettings::default()),
        Some(r) => read_program(&r.try_get::<String, _>("settings")?).map_err(|e| {
            Error::unreadable(
                "program",
                1,
                format!("{e}; fix it with PUT /api/v1/program (the stored document is kept in the rule history)"),
            )
        }),
    }
}

/// Saves the program's settings, recording the change with the document it replaced.
pub async fn save_program(db: &Db, settings: &ProgramSettings, caller: &Caller) -> Result<()> {
    let actor = caller.actor();
    let actor = actor.as_str();
    settings.check().map_err(Error::Invalid)?;
    let json = serde_json::to_string(settings).expect("settings serialise");
    let now = now_millis();
    let mut tx = db.begin().await?;
    // The document as stored, even if it could not be read: the history keeps what was there.
    let before: Option<String> = sqlx::query("SELECT settings FROM program WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("settings"))
        .transpose()?;
    let before = before.or_else(|| Some(serde_json::to_string(&ProgramSettings::default()).expect("defaults")));
    sqlx::query(
        "INSERT INTO program (id, settings, updated_by, updated_at) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(&json)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let change = changes::Change {
        subject: Subject::Program,
        unit_id: None,
        before,
        after: &json,
        actor,
        at: now,
    };
    changes::record(&mut tx, &change).await?;
    let entry = Entry::new("program.update", "program", [1]).changed(
        "settings",
        change
            .before
            .as_deref()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok()),
        serde_json::from_str::<serde_json::Value>(&json).ok(),
    );
    audit::record(&mut tx, &Who::of(caller), compact(entry)).await?;
    // Units that could not be judged are tried again at once on the new settings.
    super::quarantine::retry_now(&mut tx, None, now).await?;
    tx.commit().await?;
    Ok(())
}

/// What a clinic is told when it asks to weaken a unit's alarms.
fn looser(unit_id: i64, why: String) -> Error {
    Error::StateApprovalRequired(format!(
        "{why}: only the state VFC coordinator may weaken unit {unit_id}'s alarms; a clinic may add rules, \
         tighten them and narrow the range"
    ))
}

/// A unit's own rules, if it has any. Stored rules that cannot be read are an error naming the
/// unit (the evaluator quarantines the unit; `PUT /units/{id}/rules` replaces them).
pub async fn unit_rules(conn: &mut AnyConnection, unit_id: i64) -> Result<Option<Vec<Rule>>> {
    let row = sqlx::query("SELECT rules FROM unit_rules WHERE unit_id = $1")
        .bind(unit_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let raw: String = r.try_get("rules")?;
    let rules: Vec<Rule> = serde_json::from_str(&raw).map_err(|e| {
        Error::unreadable(
            "unit_rules",
            unit_id,
            format!("{e}; replace them with PUT /api/v1/units/{unit_id}/rules"),
        )
    })?;
    check_rules(&rules).map_err(|e| Error::unreadable("unit_rules", unit_id, e))?;
    Ok(Some(rules))
}

/// The rules that judge a unit, and whether they are its own ("unit") or the program's.
pub async fn effective(
    conn: &mut AnyConnection,
    program: &ProgramSettings,
    unit_id: i64,
    kind: UnitKind,
) -> Result<(Vec<Rule>, &'static str)> {
    Ok(match unit_rules(conn, unit_id).await? {
        Some(rules) => (rules, "unit"),
        None => (program.rules.for_kind(kind).to_vec(), "program"),
    })
}

/// The rules that judge a unit now, and where they come from ("unit" or "program").
pub async fn effective_now(db: &Db, unit_id: i64, kind: UnitKind) -> Result<(Vec<Rule>, &'static str)> {
    let program = program(db).await?;
    let mut conn = db.pool.acquire().await?;
    effective(&mut conn, &program, unit_id, kind).await
}

/// Sets (Some) or clears (None: back to the program's) a unit's rules. A clinic may only make
/// them stricter ([`no_looser`] against the rules that judge the unit now); the state may do
/// anything.
pub async fn save_unit_rules(db: &Db, unit: &Unit, rules: Option<&[Rule]>, caller: &Caller) -> Result<()> {
    if let Some(r) = rules {
        check_rules(r).map_err(Error::Invalid)?;
    }
    let (unit_id, actor) = (unit.id, caller.actor());
    let actor = actor.as_str();
    let now = now_millis();
    let mut tx = db.begin().await?;
    if !caller.is_state() {
        let program = program_in(&mut tx).await?;
        let (judging, _) = effective(&mut tx, &program, unit_id, unit.kind).await?;
        let asked = rules
            .map(<[Rule]>::to_vec)
            .unwrap_or_else(|| program.rules.for_kind(unit.kind).to_vec());
        no_looser(&judging, &asked).map_err(|why| looser(unit_id, why))?;
    }
    // As stored, readable or not: the history keeps what was replaced.
    let before: Option<String> = sqlx::query("SELECT rules FROM unit_rules WHERE unit_id = $1")
        .bind(unit_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("rules"))
        .transpose()?;
    let after = match rules {
        Some(rules) => {
            let json = serde_json::to_string(rules).expect("rules serialise");
            sqlx::query(
                "INSERT INTO unit_rules (unit_id, rules, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (unit_id) DO UPDATE SET rules = excluded.rules, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(unit_id)
            .bind(&json)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            json
        }
        None => {
            sqlx::query("DELETE FROM unit_rules WHERE unit_id = $1")
                .bind(unit_id)
                .execute(&mut *tx)
                .await?;
            "null".to_string()
        }
    };
    let change = changes::Change {
        subject: Subject::UnitRules,
        unit_id: Some(unit_id),
        before,
        after: &after,
        actor,
        at: now,
    };
    changes::record(&mut tx, &change).await?;
    let entry = Entry::new("unit.rules", "unit", [unit_id])
        .at(None, Some(&unit.location))
        .changed(
            "rules",
            change
                .before
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok()),
            serde_json::from_str::<serde_json::Value>(&after).ok(),
        );
    audit::record(&mut tx, &Who::of(caller), compact(entry)).await?;
    super::quarantine::retry_now(&mut tx, Some(unit_id), now).await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps only the top-level keys of a settings document that changed (the audit row stays
/// compact; the rule history keeps both documents whole).
fn compact(mut entry: Entry) -> Entry {
    use serde_json::Value;
    let Some(Value::Object(changes)) = entry.changes.as_mut() else {
        return entry;
    };
    for (_, pair) in changes.iter_mut() {
        if let Value::Array(both) = pair {
            if let [Value::Object(before), Value::Object(after)] = both.as_mut_slice() {
                let same: Vec<String> = before
                    .iter()
                    .filter(|(k, v)| after.get(*k) == Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in same {
                    before.remove(&k);
                    after.remove(&k);
                }
            }
        }
    }
    entry
}

/// Renames a unit or changes its range. A range change is a rule change: it is recorded with
/// who and when, in the same transaction. A clinic may only narrow the range
/// ([`range_no_looser`]).
pub async fn update_unit(db: &Db, caller: &Caller, id: i64, upd: &UnitUpdate) -> Result<Unit> {
    let (scope, actor) = (&caller.scope, caller.actor());
    let actor = actor.as_str();
    let unit = units::get(db, scope, id).await?;
    let name = match &upd.name {
        Some(n) if n.trim().is_empty() => return Err(Error::Invalid("name must not be empty".into())),
        Some(n) => n.trim().to_string(),
        None => unit.name.clone(),
    };
    let range = match upd.range {
        Some(r) => units::check_range(unit.kind, Some(r))?,
        None => unit.range,
    };
    if !caller.is_state() && range != unit.range {
        range_no_looser(
            unit.kind,
            Some((unit.range.min_c, unit.range.max_c)),
            (range.min_c, range.max_c),
        )
        .map_err(|why| looser(id, why))?;
    }
    let now = now_millis();
    let mut tx = db.begin().await?;
    units::write(&mut tx, id, &name, range).await?;
    let entry = Entry::new("unit.update", "unit", [id])
        .at(None, Some(&unit.location))
        .changed("name", unit.name.as_str(), name.as_str())
        .changed(
            "range",
            serde_json::to_value(unit.range).expect("plain data"),
            serde_json::to_value(range).expect("plain data"),
        );
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    if range.min_c != unit.range.min_c || range.max_c != unit.range.max_c {
        let before = serde_json::to_string(&unit.range).expect("plain data");
        let after = serde_json::to_string::<Range>(&range).expect("plain data");
        let change = changes::Change {
            subject: Subject::UnitRange,
            unit_id: Some(id),
            before: Some(before),
            after: &after,
            actor,
            at: now,
        };
        changes::record(&mut tx, &change).await?;
    }
    super::quarantine::retry_now(&mut tx, Some(id), now).await?;
    tx.commit().await?;
    units::get(db, scope, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_program_without_a_later_key_takes_its_default() {
        let mut doc = serde_json::to_value(ProgramSettings::default()).unwrap();
        doc.as_object_mut().unwrap().remove("late_page_limit_hours");
        doc["name"] = serde_json::json!("Maryland VFC");
        let p = read_program(&doc.to_string()).unwrap();
        assert_eq!(p.name, "Maryland VFC");
        assert_eq!(
            p.late_page_limit_hours,
            ProgramSettings::default().late_page_limit_hours
        );
    }

    #[test]
    fn a_stored_program_from_before_accounts_reads_with_their_defaults() {
        let mut doc = serde_json::to_value(ProgramSettings::default()).unwrap();
        doc.as_object_mut().unwrap().remove("accounts");
        let read = read_program(&doc.to_string()).unwrap();
        assert_eq!(read.accounts.session_idle_minutes, 30.0);
        assert_eq!(read.accounts.inactive_days, 90.0);
        // And with only some of them set, the rest take theirs.
        doc["accounts"] = serde_json::json!({"free_failures": 3});
        let read = read_program(&doc.to_string()).unwrap();
        assert_eq!(
            (read.accounts.free_failures, read.accounts.session_max_hours),
            (3, 12.0)
        );
    }

    #[test]
    fn a_stored_program_with_a_key_this_version_retired_still_reads() {
        let mut doc = serde_json::to_value(ProgramSettings::default()).unwrap();
        doc["pager_number"] = serde_json::json!("410-555-0100");
        doc["escalation"]["sms_after_minutes"] = serde_json::json!(10);
        doc["name"] = serde_json::json!("Maryland VFC");
        let p = read_program(&doc.to_string()).unwrap();
        assert_eq!(p.name, "Maryland VFC");
    }

    #[test]
    fn a_stored_program_with_a_malformed_value_is_an_error_not_the_defaults() {
        let mut doc = serde_json::to_value(ProgramSettings::default()).unwrap();
        doc["escalation"]["backup_after_minutes"] = serde_json::json!("thirty");
        let e = read_program(&doc.to_string()).unwrap_err();
        assert!(e.contains("backup_after_minutes") || e.contains("invalid type"), "{e}");
        assert!(read_program("{not json").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_stored_program_that_breaks_a_rule_is_an_error() {
        let mut doc = serde_json::to_value(ProgramSettings::default()).unwrap();
        doc["escalation"]["backup_after_minutes"] = serde_json::json!(500.0);
        assert!(read_program(&doc.to_string())
            .unwrap_err()
            .contains("backup_after_minutes"));
    }
}
