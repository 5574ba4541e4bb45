//! API tokens: a random 256-bit secret shown once, stored only as its SHA-256 hash.
//!
//! SHA-256 (not a slow password hash) is right here because the secret has 256 bits of
//! entropy: there is nothing to brute-force, and every API request must verify one quickly.

use anyhow::{bail, Context};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Caller, Role, Scope};
use crate::domain::{LocationCode, VfcPin};
use crate::store::{now_millis, Db};

/// Prefix that makes a leaked token recognisable to secret scanners.
const PREFIX: &str = "vfc_";

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A token as `vfc token create` makes it.
pub struct NewToken {
    pub id: i64,
    pub secret: String,
}

pub async fn create(db: &Db, name: &str, role: Role, scope: &Scope) -> anyhow::Result<NewToken> {
    if name.trim().is_empty() {
        bail!("--name must say whose token this is (e.g. \"Maryland VFC coordinator\")");
    }
    let (pin, location) = match (role, scope) {
        (Role::StateCoordinator, Scope::Program) => (None, None),
        (Role::Clinic, Scope::Pin(p)) => (Some(p.clone()), None),
        (Role::Clinic, Scope::Location(c)) => (None, Some(c.clone())),
        (Role::StateCoordinator, _) => bail!("a state-coordinator token sees every PIN: drop --pin/--location"),
        (Role::Clinic, Scope::Program) => bail!("a clinic token needs --pin PIN or --location CODE"),
    };
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", hex::encode(bytes));
    let id: i64 = sqlx::query(
        "INSERT INTO api_tokens (name, role, pin, location_code, secret_sha256, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(name.trim())
    .bind(role.as_str())
    .bind(pin)
    .bind(location)
    .bind(hash(&secret))
    .bind(now_millis())
    .fetch_one(&db.pool)
    .await
    .context("storing the token")?
    .try_get("id")?;
    Ok(NewToken { id, secret })
}

/// Parses the scope flags of `vfc token create`.
pub fn scope_from_flags(role: Role, pin: Option<&str>, location: Option<&str>) -> anyhow::Result<Scope> {
    Ok(match (role, pin, location) {
        (Role::StateCoordinator, None, None) => Scope::Program,
        (_, Some(_), Some(_)) => bail!("give --pin or --location, not both"),
        (_, Some(p), None) => Scope::Pin(VfcPin::parse(p)?.to_string()),
        (_, None, Some(c)) => Scope::Location(LocationCode::parse(c)?.to_string()),
        (Role::Clinic, None, None) => {
            bail!("a clinic token needs --pin PIN (all its locations) or --location CODE (one)")
        }
    })
}

/// Revokes a token by id; revoking twice is not an error.
pub async fn revoke(db: &Db, id: i64) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_millis())
        .bind(id)
        .execute(&db.pool)
        .await?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query("SELECT id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
        if exists.is_none() {
            bail!("no token with id {id} (ids are printed by `vfc token create` and `vfc token list`)");
        }
        return Ok(false);
    }
    Ok(true)
}

/// One row of `vfc token list`.
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub scope: String,
    pub revoked: bool,
}

pub async fn list(db: &Db) -> anyhow::Result<Vec<TokenInfo>> {
    let rows = sqlx::query("SELECT id, name, role, pin, location_code, revoked_at FROM api_tokens ORDER BY id")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            let pin: Option<String> = r.try_get("pin")?;
            let loc: Option<String> = r.try_get("location_code")?;
            Ok(TokenInfo {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                scope: loc
                    .or(pin.map(|p| format!("PIN {p}")))
                    .unwrap_or_else(|| "all PINs".into()),
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            })
        })
        .collect()
}

/// The caller behind a bearer secret, if it is a live token.
pub async fn authenticate(db: &Db, secret: &str) -> anyhow::Result<Option<Caller>> {
    let row = sqlx::query(
        "SELECT id, name, role, pin, location_code FROM api_tokens \
         WHERE secret_sha256 = $1 AND revoked_at IS NULL",
    )
    .bind(hash(secret))
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let role_raw: String = r.try_get("role")?;
    let role = Role::parse(&role_raw).with_context(|| format!("token has unknown role {role_raw}"))?;
    let pin: Option<String> = r.try_get("pin")?;
    let loc: Option<String> = r.try_get("location_code")?;
    let scope = match (role, pin, loc) {
        (Role::StateCoordinator, _, _) => Scope::Program,
        (Role::Clinic, _, Some(c)) => Scope::Location(c),
        (Role::Clinic, Some(p), None) => Scope::Pin(p),
        (Role::Clinic, None, None) => return Ok(None),
    };
    Ok(Some(Caller {
        token_id: r.try_get("id")?,
        name: r.try_get("name")?,
        role,
        scope,
    }))
}
