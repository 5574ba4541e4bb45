//! The record of every change to what guards a unit — its rules, its range, its downtime, its
//! primary logger — and to the program's settings: who, when, before and after. Each change to a
//! unit is told to the location's primary and backup coordinators in the same transaction, so a
//! change nobody expected is noticed; the state lists them all (`GET /api/v1/rule-changes`).
//! This module owns `rule_changes`.

use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::rules::Rule;
use crate::alerts::{outbox, About, Email, Recipient};
use crate::error::{Error, Result};
use crate::registry::assignments::{PrimaryChange, Watcher};
use crate::registry::units;
use crate::store::{rfc3339, Db, Page};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Program,
    UnitRules,
    UnitRange,
    Downtime,
    PrimaryLogger,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Program => "program",
            Subject::UnitRules => "unit_rules",
            Subject::UnitRange => "unit_range",
            Subject::Downtime => "downtime",
            Subject::PrimaryLogger => "primary_logger",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Subject::Program => "the program's settings",
            Subject::UnitRules => "alarm rules",
            Subject::UnitRange => "temperature range",
            Subject::Downtime => "downtime",
            Subject::PrimaryLogger => "primary data logger",
        }
    }
}

/// A change, as JSON documents before (None: nothing) and after.
pub struct Change<'a> {
    pub subject: Subject,
    pub unit_id: Option<i64>,
    pub before: Option<String>,
    pub after: &'a str,
    pub actor: &'a str,
    pub at: i64,
}

/// Records a change in the caller's transaction; a unit's is emailed to its location's
/// coordinators — all but a unit's first primary logger, which only adds a watch.
pub async fn record(tx: &mut AnyConnection, c: &Change<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO rule_changes (subject, unit_id, before, after, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(c.subject.as_str())
    .bind(c.unit_id)
    .bind(c.before.clone())
    .bind(c.after)
    .bind(c.actor)
    .bind(c.at)
    .execute(&mut *tx)
    .await?;
    let first_logger = c.subject == Subject::PrimaryLogger && c.before.as_deref() == Some("null");
    if let (Some(unit_id), false) = (c.unit_id, first_logger) {
        tell(tx, unit_id, c).await?;
    }
    Ok(())
}

/// One value of a change in words: rules one per line, a range, a downtime, a serial.
fn in_words(subject: Subject, json: Option<&str>) -> String {
    let Some(json) = json else { return "none".into() };
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    let text = match subject {
        Subject::UnitRules => match serde_json::from_value::<Option<Vec<Rule>>>(value.clone()) {
            Ok(Some(rules)) => rules
                .iter()
                .map(|r| format!("\n  - {}: {}", r.id, r.describe()))
                .collect::<String>(),
            Ok(None) => "the program's rules for its kind".into(),
            Err(_) => String::new(),
        },
        Subject::UnitRange => match (value["min_c"].as_f64(), value["max_c"].as_f64()) {
            (Some(lo), Some(hi)) => format!("{lo:.1} to {hi:.1} °C"),
            _ => String::new(),
        },
        Subject::Downtime => match value["kind"].as_str() {
            Some(kind) => format!(
                "{} from {}{}: {}",
                kind.replace('_', " "),
                value["from"].as_str().unwrap_or("?"),
                value["until"]
                    .as_str()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default(),
                value["reason"].as_str().unwrap_or("")
            ),
            None => String::new(),
        },
        Subject::PrimaryLogger => value
            .as_str()
            .map(|s| format!("logger {s}"))
            .unwrap_or_else(|| "no logger".into()),
        Subject::Program => String::new(),
    };
    if text.is_empty() {
        json.to_string()
    } else {
        text
    }
}

/// Emails the location's primary and backup coordinators about a change to one of its units.
async fn tell(tx: &mut AnyConnection, unit_id: i64, c: &Change<'_>) -> Result<()> {
    let Some(place) = units::place_of(tx, unit_id).await? else {
        return Ok(());
    };
    let (code, unit, location) = (&place.location_code, &place.unit_name, &place.location_name);
    let when = super::notices::local(place.tz(), c.at);
    let subject = format!("VFC unit changed: {code} {unit}, {}", c.subject.words());
    let who = c.actor.splitn(3, ':').nth(2).unwrap_or(c.actor);
    let people = [
        Recipient::new(&place.primary.0, &place.primary.1),
        Recipient::new(&place.backup.0, &place.backup.1),
    ];
    for (i, to) in people.iter().enumerate() {
        if i == 1 && to.email == people[0].email {
            continue;
        }
        let body = format!(
            "{name},\n\n\
             The {what} of the {unit} at {location} ({code}) changed at {when}, by {who}.\n\n\
             Before: {before}\n\
             Now:    {after}\n\n\
             If you did not expect this change, contact the state VFC coordinator: it may change who is \
             alerted, and when.\n\n\
             — vfc-monitor\n",
            name = to.name,
            what = c.subject.words(),
            before = in_words(c.subject, c.before.as_deref()),
            after = in_words(c.subject, Some(c.after)),
        );
        let email = Email {
            about: About::Unit(unit_id),
            purpose: "unit_change",
            to,
            subject: &subject,
            body: &body,
        };
        outbox::enqueue(tx, &email).await?;
    }
    Ok(())
}

/// The cold chain's watch on the registry: a unit's primary logger is what its alarms read, so
/// a change of it is recorded and told like a change of its rules.
pub struct PrimaryLoggers;

impl Watcher for PrimaryLoggers {
    fn primary_changed<'a>(&'a self, tx: &'a mut AnyConnection, c: PrimaryChange<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let json = |s: Option<&str>| serde_json::to_string(&s).expect("a serial serialises");
            let after = json(c.after);
            let change = Change {
                subject: Subject::PrimaryLogger,
                unit_id: Some(c.unit_id),
                before: Some(json(c.before)),
                after: &after,
                actor: c.actor,
                at: c.at,
            };
            record(tx, &change).await
        })
    }
}

/// A change, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleChange {
    pub id: i64,
    /// program | unit_rules | unit_range | downtime | primary_logger
    pub subject: String,
    /// The unit changed, and its location; null for the program's settings.
    pub unit_id: Option<i64>,
    pub location: Option<String>,
    /// As it was; null for none, or for a stored value this version cannot read.
    pub before: Option<serde_json::Value>,
    pub after: serde_json::Value,
    pub changed_by: String,
    pub changed_at: String,
}

const COLUMNS: &str = "c.id, c.subject, c.unit_id, p.location_code, c.before, c.after, c.changed_by, c.changed_at \
    FROM rule_changes c LEFT JOIN unit_places p ON p.unit_id = c.unit_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<RuleChange> {
    let id: i64 = r.try_get("id")?;
    let after: String = r.try_get("after")?;
    Ok(RuleChange {
        id,
        subject: r.try_get("subject")?,
        unit_id: r.try_get("unit_id")?,
        location: r.try_get("location_code")?,
        // What was replaced may be exactly the unreadable value someone fixed.
        before: r
            .try_get::<Option<String>, _>("before")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        after: serde_json::from_str(&after).map_err(|e| Error::unreadable("rule_changes", id, e))?,
        changed_by: r.try_get("changed_by")?,
        changed_at: rfc3339(r.try_get("changed_at")?),
    })
}

/// Every change to a unit, oldest first.
pub async fn history(db: &Db, unit_id: i64) -> Result<Vec<RuleChange>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} WHERE c.unit_id = $1 ORDER BY c.changed_at, c.id"
    ))
    .bind(unit_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Changes of the whole program from `from` (epoch ms), oldest first: a page, and the cursor
/// of the next page, if there is one.
pub async fn since(db: &Db, from: i64, page: Page) -> Result<(Vec<RuleChange>, Option<i64>)> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} WHERE c.changed_at >= $1 AND c.id > $2 ORDER BY c.id LIMIT $3"
    ))
    .bind(from)
    .bind(page.after.unwrap_or(0))
    .bind(page.limit + 1)
    .fetch_all(&db.pool)
    .await?;
    let changes = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(page.cut(changes, |c| c.id))
}
