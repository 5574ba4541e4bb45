//! Personal accounts: one person, one sign-in, one or more grants. A state admin manages
//! anyone's account; a clinic's `vfc-coordinator` or `provider-of-record` the accounts of its
//! own staff, granting nothing wider than it holds. Every change is audited in its own
//! transaction. This module owns `accounts` and `account_grants`.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::links::{self, Purpose};
use super::tokens::{columns, grant_of};
use super::{Caller, Grant, Role, Scope};
use crate::accounts::audit::{self, Entry, Who};
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db, Page};

pub use super::contacts::normalise_email;

/// A grant as the API writes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct GrantBody {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl GrantBody {
    fn of(g: &Grant) -> GrantBody {
        let (pin, location) = columns(&g.scope);
        GrantBody {
            role: g.role.as_str().into(),
            pin,
            location,
        }
    }
    fn grant(&self) -> Result<Grant> {
        grant_of(&self.role, self.pin.as_deref(), self.location.as_deref())
    }
}

/// An account as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// `invited` (no password yet), `active`, `disabled`.
    pub status: String,
    pub disabled_reason: Option<String>,
    pub grants: Vec<GrantBody>,
    /// Whether a second factor (TOTP) is on.
    pub second_factor: bool,
    /// Whether this account must use one (a state role, or one that makes accounts or tokens).
    pub second_factor_required: bool,
    pub last_sign_in_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// Locations whose alerts reach this person as a contact (whether or not they sign in).
    pub contact_of: Vec<super::contacts::ContactOf>,
}

/// The stored account, as the sign-in and the checks need it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub status: String,
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: Option<i64>,
    pub grants: Vec<Grant>,
}

impl Stored {
    pub fn needs_second_factor(&self) -> bool {
        self.grants.iter().any(|g| g.role.needs_second_factor())
    }
}

const COLUMNS: &str = "id, email, name, status, disabled_reason, password_hash, totp_secret, totp_enabled_at, \
                       totp_last_step, last_sign_in_at, created_at, created_by";

async fn grants_of(conn: &mut AnyConnection, id: i64) -> Result<Vec<Grant>> {
    let rows = sqlx::query("SELECT role, pin, location_code FROM account_grants WHERE account_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            let role =
                Role::parse(&role).ok_or_else(|| Error::unreadable("account_grants", id, format!("role {role}")))?;
            let pin: Option<String> = r.try_get("pin")?;
            let loc: Option<String> = r.try_get("location_code")?;
            let scope = match (pin, loc) {
                (_, Some(c)) => Scope::Location(c),
                (Some(p), None) => Scope::Pin(p),
                (None, None) => Scope::Program,
            };
            Ok(Grant { role, scope })
        })
        .collect()
}

/// Reads an account by id or by normalised email.
pub async fn stored(conn: &mut AnyConnection, by: By<'_>) -> Result<Option<Stored>> {
    let row = match by {
        By::Id(id) => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }
        By::Email(e) => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM accounts WHERE email = $1"))
                .bind(e)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let Some(r) = row else { return Ok(None) };
    let id: i64 = r.try_get("id")?;
    Ok(Some(Stored {
        id,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret: r.try_get("totp_secret")?,
        totp_enabled: r.try_get::<Option<i64>, _>("totp_enabled_at")?.is_some(),
        totp_last_step: r.try_get("totp_last_step")?,
        grants: grants_of(conn, id).await?,
    }))
}

pub enum By<'a> {
    Id(i64),
    Email(&'a str),
}

pub(super) async fn shown(conn: &mut AnyConnection, id: i64) -> Result<Option<Account>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let grants = grants_of(conn, id).await?;
    let email: String = r.try_get("email")?;
    let contact_of = super::contacts::contact_of(conn, &email).await?;
    Ok(Some(Account {
        id,
        second_factor: r.try_get::<Option<i64>, _>("totp_enabled_at")?.is_some(),
        second_factor_required: grants.iter().any(|g| g.role.needs_second_factor()),
        grants: grants.iter().map(GrantBody::of).collect(),
        email,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        disabled_reason: r.try_get("disabled_reason")?,
        last_sign_in_at: r.try_get::<Option<i64>, _>("last_sign_in_at")?.map(rfc3339),
        created_at: rfc3339(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        contact_of,
    }))
}

/// What `POST /api/v1/accounts` asks for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAccount {
    pub email: String,
    pub name: String,
    pub grants: Vec<GrantBody>,
}

/// What `PATCH /api/v1/accounts/{id}` may change; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AccountPatch {
    pub name: Option<String>,
    /// Replaces every grant.
    pub grants: Option<Vec<GrantBody>>,
}

fn check_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::Invalid(
            "\"name\" must be the person's name (1-200 characters)".into(),
        ));
    }
    Ok(name.to_string())
}

fn check_grants(raw: &[GrantBody]) -> Result<Vec<Grant>> {
    if raw.is_empty() || raw.len() > 100 {
        return Err(Error::Invalid(
            "\"grants\" needs 1 to 100 grants, e.g. [{\"role\":\"clinic-staff\",\"location\":\"012345A\"}]".into(),
        ));
    }
    let grants = raw.iter().map(GrantBody::grant).collect::<Result<Vec<_>>>()?;
    if grants.iter().any(|g| g.role == Role::Clinic) {
        return Err(Error::Invalid("\"clinic\" is a role of old tokens, not of people: use vfc-coordinator, backup-coordinator or clinic-staff".into()));
    }
    Ok(grants)
}

/// Refuses a grant the caller may not give.
fn may_give(caller: Option<&Caller>, grants: &[Grant]) -> Result<()> {
    let Some(c) = caller else { return Ok(()) };
    if !c.may_manage_accounts() {
        return Err(Error::refused(
            "scope",
            "your role may not manage accounts; ask your VFC coordinator",
        ));
    }
    match grants.iter().find(|g| !c.may_grant(g)) {
        None => Ok(()),
        Some(g) => Err(Error::refused(
            "scope",
            format!(
                "you may not grant {} at {}: only roles no wider than yours, inside {}",
                g.role.as_str(),
                g.scope.describe(),
                c.scope.describe()
            ),
        )),
    }
}

/// Makes an account and emails its invitation; `caller` is `None` on the command line.
/// Returns the account and the invitation link.
pub async fn create(
    db: &Db,
    caller: Option<&Caller>,
    public_url: &url::Url,
    new: &NewAccount,
) -> Result<(Account, String)> {
    let email = normalise_email(&new.email)?;
    let name = check_name(&new.name)?;
    let grants = check_grants(&new.grants)?;
    may_give(caller, &grants)?;
    let who = caller.map(Who::of).unwrap_or_else(Who::cli);
    let now = now_millis();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO accounts (email, name, status, created_by, created_at, updated_at) VALUES ($1, $2, 'invited', $3, $4, $4) RETURNING id",
    )
    .bind(&email)
    .bind(&name)
    .bind(&who.actor)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let id: i64 = match inserted {
        Ok(r) => r.try_get("id")?,
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(Error::Conflict(
                "this email already has an account: give it another grant (PATCH /api/v1/accounts/{id}) instead".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    insert_grants(&mut tx, id, &grants).await?;
    let by = caller.map(|c| match &c.principal {
        super::Principal::Account { name, .. } => name.clone(),
        super::Principal::Token { name, .. } => name.clone(),
    });
    let url = links::send(&mut tx, public_url, (id, &email, &name), Purpose::Invite, by.as_deref()).await?;
    let (pin, loc) = place_of(&grants);
    let entry = Entry::new("account.create", "account", [id])
        .at(pin.as_deref(), loc.as_deref())
        .changed("email", serde_json::Value::Null, email.as_str())
        .changed("name", serde_json::Value::Null, name.as_str())
        .changed("grants", serde_json::Value::Null, grants_json(&grants));
    audit::record(&mut tx, &who, entry).await?;
    let account = shown(&mut tx, id).await?.expect("just made");
    tx.commit().await?;
    Ok((account, url))
}

fn grants_json(grants: &[Grant]) -> serde_json::Value {
    serde_json::to_value(grants.iter().map(GrantBody::of).collect::<Vec<_>>()).expect("grants serialise")
}

/// Where an account's audit rows are placed: its first clinic grant's place.
pub(super) fn place_of(grants: &[Grant]) -> (Option<String>, Option<String>) {
    grants
        .iter()
        .map(|g| columns(&g.scope))
        .find(|(p, l)| p.is_some() || l.is_some())
        .unwrap_or((None, None))
}

async fn insert_grants(conn: &mut AnyConnection, id: i64, grants: &[Grant]) -> Result<()> {
    for g in grants {
        let (pin, loc) = columns(&g.scope);
        sqlx::query("INSERT INTO account_grants (account_id, role, pin, location_code) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(g.role.as_str())
            .bind(pin)
            .bind(loc)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether the caller may see this account: itself; a state role; a coordinator whose scope
/// holds one of its grants.
fn may_see(caller: &Caller, id: i64, grants: &[Grant]) -> bool {
    let manages = caller.manage_scope();
    caller.account_id() == Some(id)
        || caller.scope == Scope::Program
        || grants.iter().any(|g| manages.contains(&g.scope))
}

/// Whether the caller may change this account: a state admin; a coordinator who could have
/// granted every grant it holds. Never one's own grants or status.
pub(super) fn may_change(caller: &Caller, target: &Stored) -> Result<()> {
    if caller.account_id() == Some(target.id) {
        return Err(Error::refused(
            "scope",
            "you may not change your own grants or status; ask your coordinator",
        ));
    }
    if caller.may_manage_accounts() && target.grants.iter().all(|g| caller.may_grant(g)) {
        return Ok(());
    }
    Err(Error::refused(
        "scope",
        "you may change only the accounts of your own staff (every grant inside yours)",
    ))
}

pub(super) async fn visible(conn: &mut AnyConnection, caller: &Caller, id: i64) -> Result<Stored> {
    stored(conn, By::Id(id))
        .await?
        .filter(|a| may_see(caller, a.id, &a.grants))
        .ok_or_else(|| Error::NotFound(format!("no account {id} in your scope")))
}

/// One account the caller may see.
pub async fn get(db: &Db, caller: &Caller, id: i64) -> Result<Account> {
    let mut conn = db.pool.acquire().await?;
    visible(&mut conn, caller, id).await?;
    Ok(shown(&mut conn, id).await?.expect("just read"))
}

/// The accounts the caller may see, by id.
pub async fn list(db: &Db, caller: &Caller, page: Page) -> Result<(Vec<Account>, Option<i64>)> {
    if caller.scope != Scope::Program && !caller.may_manage_accounts() {
        return Err(Error::refused(
            "scope",
            "your role may not list accounts; ask your VFC coordinator",
        ));
    }
    let mut conn = db.pool.acquire().await?;
    // The state sees every account; a coordinator those with a grant where they manage.
    let seen = match caller.scope {
        Scope::Program => Scope::Program,
        _ => caller.manage_scope(),
    };
    let (cond, param) = seen.sql_filter("COALESCE(g.pin, l.pin)", "g.location_code", 1);
    let sql = format!(
        "SELECT DISTINCT a.id FROM accounts a LEFT JOIN account_grants g ON g.account_id = a.id \
         LEFT JOIN location_contacts l ON l.code = g.location_code WHERE {cond} AND a.id > $2 ORDER BY a.id LIMIT $3"
    );
    let ids: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(param)
        .bind(page.after.unwrap_or(0))
        .bind(page.limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(shown(&mut conn, id).await?);
    }
    Ok(page.cut(out, |a| a.id))
}

/// Changes an account's name or grants.
pub async fn update(db: &Db, caller: &Caller, id: i64, patch: &AccountPatch) -> Result<Account> {
    let mut tx = db.begin().await?;
    let before = visible(&mut tx, caller, id).await?;
    let name = patch.name.as_deref().map(check_name).transpose()?;
    let grants = patch.grants.as_deref().map(check_grants).transpose()?;
    let own_name_only = caller.account_id() == Some(id) && grants.is_none();
    if !own_name_only {
        may_change(caller, &before)?;
        if let Some(g) = &grants {
            may_give(Some(caller), g)?;
        }
    }
    let mut entry = Entry::new("account.update", "account", [id]);
    if let Some(n) = &name {
        sqlx::query("UPDATE accounts SET name = $1, updated_at = $2 WHERE id = $3")
            .bind(n)
            .bind(now_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        entry = entry.changed("name", before.name.as_str(), n.as_str());
    }
    if let Some(g) = &grants {
        sqlx::query("DELETE FROM account_grants WHERE account_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_grants(&mut tx, id, g).await?;
        entry = entry.changed("grants", grants_json(&before.grants), grants_json(g));
    }
    let (pin, loc) = place_of(grants.as_deref().unwrap_or(&before.grants));
    audit::record(&mut tx, &Who::of(caller), entry.at(pin.as_deref(), loc.as_deref())).await?;
    let shown = shown(&mut tx, id).await?.expect("still there");
    tx.commit().await?;
    Ok(shown)
}

/// The account of the current person.
pub async fn me(db: &Db, id: i64) -> Result<Account> {
    let mut conn = db.pool.acquire().await?;
    shown(&mut conn, id)
        .await?
        .ok_or_else(|| Error::NotFound("your account no longer exists".into()))
}

/// Writes when the person last signed in.
pub async fn signed_in(conn: &mut AnyConnection, id: i64) -> Result<()> {
    sqlx::query("UPDATE accounts SET last_sign_in_at = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The grants a session's caller holds (re-read on every request: a changed grant applies at
/// once).
pub async fn grants(db: &Db, id: i64) -> Result<Vec<Grant>> {
    let mut conn = db.pool.acquire().await?;
    grants_of(&mut conn, id).await
}

/// Ends every open session of an account (password changed, account disabled, second factor
/// reset).
pub async fn end_sessions(conn: &mut AnyConnection, account_id: i64, reason: &str) -> Result<()> {
    sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE account_id = $3 AND ended_at IS NULL")
        .bind(now_millis())
        .bind(reason)
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
