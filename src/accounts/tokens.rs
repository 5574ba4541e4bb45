//! API tokens: machine credentials of a place (an EHR feed, a script), each a random 256-bit
//! secret shown once and stored only as its SHA-256 hash. A token names its maker (an account,
//! or the command line) but does not depend on it: an EHR feed must not stop when the person who
//! set it up leaves. This module owns `api_tokens`.
//!
//! SHA-256 (not a slow password hash) is right here because the secret has 256 bits of
//! entropy: there is nothing to brute-force, and every API request must verify one quickly.

use anyhow::bail;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::{Caller, Grant, Principal, Role, Scope};
use crate::accounts::audit::{self, Entry, Who};
use crate::domain::{LocationCode, VfcPin};
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

/// Prefix that makes a leaked token recognisable to secret scanners.
const PREFIX: &str = "vfc_";

/// A token's last use is written at most this often (not on every request).
const LAST_USE_EVERY_MS: i64 = 60_000;

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A random secret with a recognisable prefix (tokens, sessions, links).
pub fn secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A token as made: its id and the secret, shown only now.
pub struct NewToken {
    pub id: i64,
    pub secret: String,
}

/// Makes a token on the command line (`vfc token create`): audited as `cli`.
pub async fn create(db: &Db, name: &str, role: Role, scope: &Scope) -> anyhow::Result<NewToken> {
    if name.trim().is_empty() {
        bail!("--name must say whose token this is (e.g. \"Maryland VFC coordinator\")");
    }
    let grant = Grant {
        role,
        scope: scope.clone(),
    };
    grant.check().map_err(anyhow::Error::msg)?;
    let mut tx = db.begin().await?;
    let token = insert(&mut tx, name.trim(), &grant, None, "cli").await?;
    audit::record(&mut tx, &Who::cli(), entry("token.create", token.id, name, &grant)).await?;
    tx.commit().await?;
    Ok(token)
}

fn entry(action: &'static str, id: i64, name: &str, grant: &Grant) -> Entry {
    let (pin, loc) = columns(&grant.scope);
    Entry::new(action, "token", [id])
        .at(pin.as_deref(), loc.as_deref())
        .changed("name", serde_json::Value::Null, name)
        .changed("role", serde_json::Value::Null, grant.role.as_str())
}

/// The `pin` and `location_code` columns of a one-place scope.
pub fn columns(scope: &Scope) -> (Option<String>, Option<String>) {
    match scope {
        Scope::Pin(p) => (Some(p.clone()), None),
        Scope::Location(c) => (None, Some(c.clone())),
        _ => (None, None),
    }
}

async fn insert(
    conn: &mut AnyConnection,
    name: &str,
    grant: &Grant,
    account_id: Option<i64>,
    created_by: &str,
) -> Result<NewToken> {
    let (pin, location) = columns(&grant.scope);
    let secret = secret(PREFIX);
    let id: i64 = sqlx::query(
        "INSERT INTO api_tokens (name, role, pin, location_code, secret_sha256, created_at, account_id, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(name)
    .bind(grant.role.as_str())
    .bind(pin)
    .bind(location)
    .bind(hash(&secret))
    .bind(now_millis())
    .bind(account_id)
    .bind(created_by)
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?;
    Ok(NewToken { id, secret })
}

/// What `POST /api/v1/tokens` asks for.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// Whose token this is, e.g. "Epic feed, Main St clinic".
    pub name: String,
    pub role: String,
    pub pin: Option<String>,
    pub location: Option<String>,
}

/// A grant from a request's `role` and `pin`/`location`.
pub fn grant_of(role: &str, pin: Option<&str>, location: Option<&str>) -> Result<Grant> {
    let role = Role::parse(role).ok_or_else(|| {
        Error::Invalid(format!(
            "\"role\" {role:?} is not one of {}",
            Role::ALL.map(Role::as_str).join(", ")
        ))
    })?;
    let scope = match (pin, location) {
        (Some(_), Some(_)) => return Err(Error::Invalid("give \"pin\" or \"location\", not both".into())),
        (Some(p), None) => Scope::Pin(VfcPin::parse(p)?.to_string()),
        (None, Some(c)) => Scope::Location(LocationCode::parse(c)?.to_string()),
        (None, None) => Scope::Program,
    };
    let grant = Grant { role, scope };
    grant.check().map_err(Error::Invalid)?;
    Ok(grant)
}

/// Makes a token for a caller who may make tokens, never wider than its own grants.
pub async fn create_by(db: &Db, caller: &Caller, req: &TokenRequest) -> Result<(TokenInfo, String)> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::Invalid(
            "\"name\" must say whose token this is (1-200 characters)".into(),
        ));
    }
    if !caller.may_make_tokens() {
        return Err(Error::refused(
            "scope",
            "your role may not create API tokens; ask your VFC coordinator",
        ));
    }
    let grant = grant_of(&req.role, req.pin.as_deref(), req.location.as_deref())?;
    if grant.role == Role::Clinic {
        return Err(Error::Invalid(
            "\"clinic\" is the role of tokens made before accounts; use vfc-coordinator, backup-coordinator or clinic-staff".into(),
        ));
    }
    if !caller.may_make_token(&grant) {
        return Err(Error::refused(
            "scope",
            format!(
                "you may create tokens only inside your own grants ({}), with a role no wider than yours",
                caller.scope.describe()
            ),
        ));
    }
    let mut tx = db.begin().await?;
    let token = insert(&mut tx, name, &grant, caller.account_id(), &caller.actor()).await?;
    audit::record(&mut tx, &Who::of(caller), entry("token.create", token.id, name, &grant)).await?;
    let info = find_in(&mut tx, token.id).await?.expect("just made");
    tx.commit().await?;
    Ok((info, token.secret))
}

/// Parses the scope flags of `vfc token create`.
pub fn scope_from_flags(role: Role, pin: Option<&str>, location: Option<&str>) -> anyhow::Result<Scope> {
    Ok(match (pin, location) {
        (Some(_), Some(_)) => bail!("give --pin or --location, not both"),
        (Some(p), None) => Scope::Pin(VfcPin::parse(p)?.to_string()),
        (None, Some(c)) => Scope::Location(LocationCode::parse(c)?.to_string()),
        (None, None) if role.scope_kind() == super::ScopeKind::Program => Scope::Program,
        (None, None) => {
            bail!(
                "--role {} needs --pin PIN (all its locations) or --location CODE (one)",
                role.as_str()
            )
        }
    })
}

/// Revokes a token by id on the command line; revoking twice is not an error.
pub async fn revoke(db: &Db, id: i64) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    let Some(info) = find_in(&mut tx, id).await? else {
        bail!("no token with id {id} (ids are printed by `vfc token create` and `vfc token list`)");
    };
    if info.revoked_at.is_some() {
        return Ok(false);
    }
    revoke_in(&mut tx, &Who::cli(), &info).await?;
    tx.commit().await?;
    Ok(true)
}

async fn revoke_in(conn: &mut AnyConnection, who: &Who, info: &TokenInfo) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_millis())
        .bind(info.id)
        .execute(&mut *conn)
        .await?;
    let e = Entry::new("token.revoke", "token", [info.id])
        .at(info.pin.as_deref(), info.location.as_deref())
        .changed("revoked", false, true);
    audit::record(conn, who, e).await
}

/// Revokes a token the caller could have made (its place inside the caller's token-making
/// grants); one outside its scope is not found.
pub async fn revoke_by(db: &Db, caller: &Caller, id: i64) -> Result<TokenInfo> {
    let mut tx = db.begin().await?;
    let info = find_in(&mut tx, id)
        .await?
        .filter(|t| caller.scope.contains(&t.scope()))
        .ok_or_else(|| Error::NotFound(format!("no token {id} in your scope")))?;
    if !caller.may_make_token(&info.grant()) {
        return Err(Error::refused(
            "scope",
            "your role may not revoke this token; ask your VFC coordinator",
        ));
    }
    if info.revoked_at.is_none() {
        revoke_in(&mut tx, &Who::of(caller), &info).await?;
    }
    let info = find_in(&mut tx, id).await?.expect("still there");
    tx.commit().await?;
    Ok(info)
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub pin: Option<String>,
    pub location: Option<String>,
    /// Who made it: `account:{id}:{email}`, or `cli`.
    pub created_by: String,
    /// The account that made it, if a person did (disabling it does not revoke the token).
    pub account_id: Option<i64>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl TokenInfo {
    fn scope(&self) -> Scope {
        match (&self.pin, &self.location) {
            (_, Some(c)) => Scope::Location(c.clone()),
            (Some(p), None) => Scope::Pin(p.clone()),
            (None, None) => Scope::Program,
        }
    }

    fn grant(&self) -> Grant {
        Grant {
            role: Role::parse(&self.role).unwrap_or(Role::Clinic),
            scope: self.scope(),
        }
    }

    /// The scope in words (`vfc token list`).
    pub fn place(&self) -> String {
        self.scope().describe()
    }
}

const COLUMNS: &str =
    "id, name, role, pin, location_code, created_by, account_id, created_at, last_used_at, revoked_at";

fn info(r: &sqlx::any::AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        pin: r.try_get("pin")?,
        location: r.try_get("location_code")?,
        created_by: r
            .try_get::<Option<String>, _>("created_by")?
            .unwrap_or_else(|| "cli".into()),
        account_id: r.try_get("account_id")?,
        created_at: rfc3339(r.try_get("created_at")?),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(rfc3339),
    })
}

async fn find_in(conn: &mut AnyConnection, id: i64) -> Result<Option<TokenInfo>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(info).transpose()
}

/// Every token (`vfc token list`).
pub async fn list(db: &Db) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id"))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(info).collect()
}

/// The tokens of the places a scope covers (a PIN's tokens include its locations'), newest
/// first; program tokens only for the program.
pub async fn list_in(db: &Db, scope: &Scope, include_revoked: bool) -> Result<Vec<TokenInfo>> {
    let (cond, param) = scope.sql_filter("COALESCE(t.pin, l.pin)", "t.location_code", 1);
    let program = if *scope == Scope::Program {
        ""
    } else {
        " AND (t.pin IS NOT NULL OR t.location_code IS NOT NULL)"
    };
    let revoked = if include_revoked {
        ""
    } else {
        " AND t.revoked_at IS NULL"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE id IN (SELECT t.id FROM api_tokens t \
         LEFT JOIN location_contacts l ON l.code = t.location_code WHERE {cond}{program}{revoked}) ORDER BY id DESC LIMIT 1000"
    );
    let rows = sqlx::query(&sql).bind(param).fetch_all(&db.pool).await?;
    rows.iter().map(info).collect()
}

/// The live tokens an account made (to tell coordinators when the account is disabled).
pub async fn made_by(conn: &mut AnyConnection, account_id: i64) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE account_id = $1 AND revoked_at IS NULL ORDER BY id"
    ))
    .bind(account_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(info).collect()
}

/// The caller behind a bearer secret, if it is a live token. Its last use is noted at most once
/// a minute.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Option<Caller>> {
    let row = sqlx::query(
        "SELECT id, name, role, pin, location_code, last_used_at FROM api_tokens \
         WHERE secret_sha256 = $1 AND revoked_at IS NULL",
    )
    .bind(hash(secret))
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let id: i64 = r.try_get("id")?;
    let role_raw: String = r.try_get("role")?;
    let role = Role::parse(&role_raw)
        .ok_or_else(|| Error::unreadable("api_tokens", id, format!("unknown role {role_raw}")))?;
    let pin: Option<String> = r.try_get("pin")?;
    let loc: Option<String> = r.try_get("location_code")?;
    let scope = match (pin, loc) {
        (_, Some(c)) => Scope::Location(c),
        (Some(p), None) => Scope::Pin(p),
        (None, None) if role.scope_kind() == super::ScopeKind::Program => Scope::Program,
        (None, None) => return Ok(None),
    };
    let now = now_millis();
    let last: Option<i64> = r.try_get("last_used_at")?;
    if last.is_none_or(|t| now - t >= LAST_USE_EVERY_MS) {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&db.pool)
            .await?;
    }
    Ok(Some(Caller::single(
        Principal::Token {
            id,
            name: r.try_get("name")?,
        },
        role,
        scope,
    )))
}
