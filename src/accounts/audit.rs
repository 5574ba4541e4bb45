//! The audit trail: who changed what, when and from where. One append-only row per request or
//! message that changed something, written in the same transaction as the change, so a change
//! and its record commit or fail together. This module owns `audit_log`; no UPDATE or DELETE
//! is ever issued on it (the migration's triggers refuse both). Readings are not audited one by
//! one: they are the record already.

use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use super::{Caller, Principal, Scope};
use crate::error::Result;
use crate::store::{now_millis, rfc3339, Db, Page};

/// Who did it, as the audit names them.
#[derive(Debug, Clone)]
pub struct Who {
    /// `account:{id}:{email}`, `token:{id}:{name}`, `hl7:{facility}`, `cli`, `system`,
    /// `anonymous`.
    pub actor: String,
    pub account_id: Option<i64>,
    pub token_id: Option<i64>,
    pub client_addr: Option<String>,
}

impl Who {
    pub fn of(caller: &Caller) -> Who {
        let (account_id, token_id) = match &caller.principal {
            Principal::Account { id, .. } => (Some(*id), None),
            Principal::Token { id, .. } => (None, Some(*id)),
        };
        Who {
            actor: caller.actor(),
            account_id,
            token_id,
            client_addr: caller.client_addr.clone(),
        }
    }

    /// The command line (`vfc token create`, `vfc account create`).
    pub fn cli() -> Who {
        Who::named("cli")
    }

    /// The service itself (a background task).
    pub fn system() -> Who {
        Who::named("system")
    }

    /// Someone not signed in (a failed sign-in, a link from an email), from `client_addr`.
    pub fn anonymous(client_addr: Option<String>) -> Who {
        Who {
            client_addr,
            ..Who::named("anonymous")
        }
    }

    /// Whoever holds a signed link from an alert email (it acknowledges as that email).
    pub fn email_link(email: &str, client_addr: Option<String>) -> Who {
        Who {
            client_addr,
            ..Who::named(&format!("email-link:{email}"))
        }
    }

    /// An EHR's HL7 message, named by its sending facility.
    pub fn hl7(facility: &str) -> Who {
        Who::named(&format!("hl7:{facility}"))
    }

    /// An account acting before it has a session (signing in, setting a password by link).
    pub fn account(id: i64, email: &str, client_addr: Option<String>) -> Who {
        Who {
            actor: format!("account:{id}:{email}"),
            account_id: Some(id),
            token_id: None,
            client_addr,
        }
    }

    fn named(actor: &str) -> Who {
        Who {
            actor: actor.into(),
            account_id: None,
            token_id: None,
            client_addr: None,
        }
    }
}

/// One change, as recorded.
#[derive(Debug, Clone)]
pub struct Entry {
    /// e.g. `account.create`, `session.sign_in_failed`.
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_ids: Vec<String>,
    /// Whose records these are, so a clinic sees its own trail.
    pub pin: Option<String>,
    pub location_code: Option<String>,
    /// `{"field": [before, after]}` for the fields that changed.
    pub changes: Option<Value>,
}

impl Entry {
    pub fn new(action: &'static str, object_type: &'static str, ids: impl IntoIterator<Item = impl ToString>) -> Entry {
        Entry {
            action,
            object_type,
            object_ids: ids.into_iter().map(|i| i.to_string()).collect(),
            pin: None,
            location_code: None,
            changes: None,
        }
    }

    /// Places the entry at a location (and its PIN) or a PIN.
    pub fn at(mut self, pin: Option<&str>, location: Option<&str>) -> Entry {
        self.location_code = location.map(str::to_string);
        self.pin = pin.map(str::to_string).or_else(|| {
            location
                .and_then(|c| crate::domain::LocationCode::parse(c).ok())
                .map(|c| c.pin().to_string())
        });
        self
    }

    /// Records a field's value before and after.
    pub fn changed(mut self, field: &str, before: impl Into<Value>, after: impl Into<Value>) -> Entry {
        let (before, after) = (before.into(), after.into());
        if before != after {
            let map = self.changes.get_or_insert_with(|| json!({}));
            map[field] = json!([before, after]);
        }
        self
    }
}

/// Writes one row, on the connection of the change's own transaction.
pub async fn record(conn: &mut AnyConnection, who: &Who, entry: Entry) -> Result<()> {
    record_many(conn, &[(who.clone(), entry)]).await
}

/// Writes the rows of several requests or messages committed together (an HL7 batch) in one
/// statement.
pub async fn record_many(conn: &mut AnyConnection, rows: &[(Who, Entry)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    const COLS: usize = 11;
    let values = (0..rows.len())
        .map(|i| {
            let params: Vec<String> = (1..=COLS).map(|c| format!("${}", i * COLS + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO audit_log (at, actor, account_id, token_id, client_addr, action, object_type, \
         object_ids, pin, location_code, changes) VALUES {values}"
    );
    let now = now_millis();
    let mut q = sqlx::query(&sql);
    for (who, entry) in rows {
        q = q
            .bind(now)
            .bind(&who.actor)
            .bind(who.account_id)
            .bind(who.token_id)
            .bind(who.client_addr.as_deref())
            .bind(entry.action)
            .bind(entry.object_type)
            .bind(serde_json::to_string(&entry.object_ids).expect("strings serialise"))
            .bind(entry.pin.as_deref())
            .bind(entry.location_code.as_deref())
            .bind(entry.changes.as_ref().map(|c| c.to_string()));
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// The locations something was written for after audit row `after` (an id), and the latest
/// row id: how a summary kept per location learns which to bring up to date.
pub async fn locations_written_after(conn: &mut AnyConnection, after: i64) -> Result<(Vec<String>, i64)> {
    let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit_log")
        .fetch_one(&mut *conn)
        .await?;
    let latest = latest.unwrap_or(0);
    let codes = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT location_code FROM audit_log WHERE id > $1 AND id <= $2 AND location_code IS NOT NULL",
    )
    .bind(after)
    .bind(latest)
    .fetch_all(&mut *conn)
    .await?;
    Ok((codes, latest))
}

/// Writes one row in a transaction of its own (an event that changes nothing else, such as a
/// failed sign-in).
pub async fn record_alone(db: &Db, who: &Who, entry: Entry) -> Result<()> {
    let mut tx = db.begin().await?;
    record(&mut tx, who, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// A row as `GET /api/v1/audit` shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub account_id: Option<i64>,
    pub token_id: Option<i64>,
    pub client_addr: Option<String>,
    pub action: String,
    pub object_type: String,
    pub object_ids: Vec<String>,
    pub pin: Option<String>,
    pub location_code: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Value>,
}

/// What to look for: each given filter narrows the list.
#[derive(Debug, Default)]
pub struct Filter {
    /// An actor as written (`account:3:…`), or its prefix (`account:3:`, `token:`); case counts.
    pub actor: Option<String>,
    /// An object type, or `type:id` for one object.
    pub object: Option<String>,
    /// An action, or its prefix (`account.`).
    pub action: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The newest rows first, inside the caller's scope (a clinic sees the rows placed in it).
pub async fn list(db: &Db, scope: &Scope, f: &Filter, page: Page) -> Result<(Vec<AuditRow>, Option<i64>)> {
    let (scope_cond, scope_param) = scope.sql_filter("pin", "location_code", 1);
    let mut sql = format!("SELECT * FROM audit_log WHERE {scope_cond}");
    let mut binds: Vec<Bind> = vec![Bind::Text(scope_param.unwrap_or_default())];
    // Each condition's `?`s are numbered in order as its values are bound.
    let mut and = |sql: &mut String, cond: &str, values: Vec<Bind>| {
        let mut out = String::new();
        let mut values = values.into_iter();
        for (i, part) in cond.split('?').enumerate() {
            if i > 0 {
                binds.push(values.next().expect("a value per ?"));
                out.push_str(&format!("${}", binds.len()));
            }
            out.push_str(part);
        }
        sql.push_str(" AND ");
        sql.push_str(&out);
    };
    if let Some(a) = &f.actor {
        and(
            &mut sql,
            "substr(actor, 1, CAST(? AS INTEGER)) = ?",
            vec![Bind::Int(a.chars().count() as i64), Bind::Text(a.clone())],
        );
    }
    if let Some(o) = &f.object {
        match o.split_once(':') {
            Some((t, id)) => and(
                &mut sql,
                "object_type = ? AND object_ids LIKE ?",
                vec![Bind::Text(t.into()), Bind::Text(format!("%\"{}\"%", like_escape(id)))],
            ),
            None => and(&mut sql, "object_type = ?", vec![Bind::Text(o.clone())]),
        }
    }
    if let Some(a) = &f.action {
        and(
            &mut sql,
            "substr(action, 1, CAST(? AS INTEGER)) = ?",
            vec![Bind::Int(a.chars().count() as i64), Bind::Text(a.clone())],
        );
    }
    if let Some(t) = f.from {
        and(&mut sql, "at >= ?", vec![Bind::Int(t)]);
    }
    if let Some(t) = f.to {
        and(&mut sql, "at < ?", vec![Bind::Int(t)]);
    }
    if let Some(after) = page.after {
        and(&mut sql, "id < ?", vec![Bind::Int(after)]);
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", page.limit + 1));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
        };
    }
    let rows = q.fetch_all(&db.pool).await?;
    let items = rows
        .iter()
        .map(|r| {
            let ids: String = r.try_get("object_ids")?;
            let changes: Option<String> = r.try_get("changes")?;
            Ok(AuditRow {
                id: r.try_get("id")?,
                at: rfc3339(r.try_get("at")?),
                actor: r.try_get("actor")?,
                account_id: r.try_get("account_id")?,
                token_id: r.try_get("token_id")?,
                client_addr: r.try_get("client_addr")?,
                action: r.try_get("action")?,
                object_type: r.try_get("object_type")?,
                object_ids: serde_json::from_str(&ids).unwrap_or_default(),
                pin: r.try_get("pin")?,
                location_code: r.try_get("location_code")?,
                changes: changes.and_then(|c| serde_json::from_str(&c).ok()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(page.cut(items, |r| r.id))
}

enum Bind {
    Text(String),
    Int(i64),
}

/// A LIKE pattern that matches `s` literally (`\` escapes are not portable; `%` and `_` are
/// dropped to `_`, which matches them and anything else: good enough for a filter).
fn like_escape(s: &str) -> String {
    s.replace(['%', '_'], "_")
}
