//! Signing in and browser sessions. A session is a random secret in an `HttpOnly` cookie, kept
//! in the database only as its hash (it survives a restart and every instance shares it), with
//! its own CSRF token. It ends after the program's idle time (30 minutes) or total time (12
//! hours), when the person signs out, changes their password, or is disabled.
//!
//! Failed sign-ins reveal nothing: an unknown email, a wrong password, a wrong or missing code
//! and a try during a delay all get the same `invalid_credentials`, and an unknown email costs
//! the same Argon2 check. Failures are counted per (email, client address); past the program's
//! free failures each further try waits 1, 2, 4… minutes up to its cap. Every failure and
//! every delayed try is audited and counted. This module owns `sessions` and
//! `sign_in_failures`.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::people::{self, By, Stored};
use super::tokens::{hash, secret};
use super::{password, second_factor, Caller, Principal};
use crate::accounts::audit::{self, Entry, Who};
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

/// The session cookie's name.
pub const COOKIE: &str = "vfc_session";

/// The one answer to every failed sign-in.
pub fn invalid() -> Error {
    Error::refused(
        "invalid_credentials",
        "the email, password or code is not right, or there were too many tries: wait a minute and try again",
    )
}

/// What a sign-in sends.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    pub email: String,
    pub password: String,
    /// The 6-digit code of the authenticator app, once a second factor is on.
    pub totp: Option<String>,
    /// One of the ten recovery codes, instead of `totp`.
    pub recovery_code: Option<String>,
}

/// A session just started: the cookie's secret and the CSRF token pages and scripts send back.
#[derive(Debug)]
pub struct Started {
    pub secret: String,
    pub csrf_token: String,
    pub account_id: i64,
}

/// Signs a person in. Every failure is the same [`invalid`].
pub async fn sign_in(db: &Db, limits: &AccountSettings, creds: &Credentials, client: &str) -> Result<Started> {
    // Sign-ins of this process take turns from reading the failure count to recording the
    // outcome, so tries sent at once cannot all slip in before the count says to wait (at most
    // one more than allowed, two running at a time).
    static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _turn = TURNS.acquire().await.expect("the semaphore is never closed");
    // An address that is no email is still throttled and answered alike.
    let key = people::normalise_email(&creds.email).unwrap_or_else(|_| creds.email.trim().to_lowercase());
    let now = now_millis();
    let (failures, last) = failures(db, &key, client).await?;
    let wait = limits.delay_ms(failures);
    if wait > 0 && now < last + wait {
        metrics::counter!("vfc_sign_in_throttled_total").increment(1);
        let mut e = Entry::new("session.sign_in_delayed", "account", Vec::<String>::new());
        e.changes = Some(serde_json::json!({"email": key, "failures": failures, "retry_after_ms": last + wait - now}));
        audit::record_alone(db, &Who::anonymous(Some(client.into())), e).await?;
        return Err(invalid());
    }
    let account = {
        let mut conn = db.pool.acquire().await?;
        people::stored(&mut conn, By::Email(&key)).await?
    };
    let typed = creds.password.clone();
    let password_ok = match account.as_ref().and_then(|a| a.password_hash.clone()) {
        Some(h) => password::blocking(move || password::verify(&typed, &h)).await,
        None => {
            password::blocking(move || password::verify_nothing(&typed)).await;
            false
        }
    };
    let mut tx = db.begin().await?;
    let ok = match (&account, password_ok) {
        (Some(a), true) if a.status == "active" => second_factor_ok(&mut tx, a, creds).await?,
        _ => None,
    };
    let Some(second) = ok else {
        tx.rollback().await?;
        return Err(failed(db, &key, client, account.as_ref(), failures + 1).await);
    };
    let a = account.expect("a password matched");
    let started = start(&mut tx, a.id, client, second).await?;
    people::signed_in(&mut tx, a.id).await?;
    sqlx::query("DELETE FROM sign_in_failures WHERE email = $1 AND client_addr = $2")
        .bind(&key)
        .bind(client)
        .execute(&mut *tx)
        .await?;
    let entry =
        Entry::new("session.sign_in", "account", [a.id]).changed("second_factor", serde_json::Value::Null, second);
    audit::record(&mut tx, &Who::account(a.id, &a.email, Some(client.into())), entry).await?;
    tx.commit().await?;
    Ok(started)
}

/// Whether tries for `email` from `client` must wait now, after repeated failures (sign-ins
/// and second-factor codes count alike).
pub async fn must_wait(db: &Db, limits: &AccountSettings, email: &str, client: &str) -> Result<bool> {
    let (failures, last) = failures(db, email, client).await?;
    let wait = limits.delay_ms(failures);
    Ok(wait > 0 && now_millis() < last + wait)
}

/// Counts a wrong second-factor code while setting one up, like a failed sign-in: the same
/// growing delay follows.
pub async fn code_failed(db: &Db, email: &str, client: &str) -> Result<()> {
    let (failures, _) = failures(db, email, client).await?;
    match failed(db, email, client, None, failures + 1).await {
        Error::Refused { .. } => Ok(()),
        e => Err(e),
    }
}

/// Whether the second factor is right (`Some(true)`), not needed yet (`Some(false)`: the
/// account has none on; a role that needs one can then only enrol), or wrong (`None`).
async fn second_factor_ok(conn: &mut AnyConnection, a: &Stored, creds: &Credentials) -> Result<Option<bool>> {
    if !a.totp_enabled {
        return Ok(Some(false));
    }
    let code_ok = match (&creds.totp, &creds.recovery_code) {
        (Some(code), _) => second_factor::accept_code(conn, a, code).await?,
        (None, Some(code)) => second_factor::use_recovery_code(conn, a.id, code).await?,
        (None, None) => false,
    };
    Ok(code_ok.then_some(true))
}

async fn failures(db: &Db, email: &str, client: &str) -> Result<(i64, i64)> {
    let row =
        sqlx::query("SELECT failures, last_failure_at FROM sign_in_failures WHERE email = $1 AND client_addr = $2")
            .bind(email)
            .bind(client)
            .fetch_optional(&db.pool)
            .await?;
    Ok(match row {
        Some(r) => (r.try_get("failures")?, r.try_get("last_failure_at")?),
        None => (0, 0),
    })
}

/// Counts and audits a failure; returns the answer to give.
async fn failed(db: &Db, email: &str, client: &str, account: Option<&Stored>, count: i64) -> Error {
    let recorded = async {
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO sign_in_failures (email, client_addr, failures, last_failure_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (email, client_addr) DO UPDATE SET failures = sign_in_failures.failures + 1, last_failure_at = $3",
        )
        .bind(email)
        .bind(client)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        let ids: Vec<i64> = account.map(|a| a.id).into_iter().collect();
        let mut e = Entry::new("session.sign_in_failed", "account", ids);
        e.changes = Some(serde_json::json!({"email": email, "failures": count}));
        audit::record(&mut tx, &Who::anonymous(Some(client.into())), e).await?;
        tx.commit().await?;
        Ok::<_, Error>(())
    };
    metrics::counter!("vfc_sign_in_failures_total").increment(1);
    match recorded.await {
        Ok(()) => invalid(),
        Err(e) => e,
    }
}

/// Starts a session for an account, in the caller's transaction.
pub async fn start(conn: &mut AnyConnection, account_id: i64, client: &str, second_factor: bool) -> Result<Started> {
    let (s, csrf, now) = (secret("s_"), secret(""), now_millis());
    sqlx::query(
        "INSERT INTO sessions (id_sha256, account_id, csrf_token, client_addr, second_factor_at, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(hash(&s))
    .bind(account_id)
    .bind(&csrf)
    .bind(client)
    .bind(second_factor.then_some(now))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Started {
        secret: s,
        csrf_token: csrf,
        account_id,
    })
}

/// A live session, as a request finds it.
#[derive(Debug, Clone)]
pub struct Live {
    pub caller: Caller,
    pub csrf_token: String,
    /// The person must enrol a second factor before doing anything else.
    pub must_enrol: bool,
    /// The session's key (the hash of its secret).
    pub key: String,
}

/// The session behind a cookie secret, if live; an expired one is ended (and is `None`).
pub async fn find(db: &Db, limits: &AccountSettings, cookie: &str) -> Result<Option<Live>> {
    let key = hash(cookie);
    let row = sqlx::query(
        "SELECT s.account_id, s.csrf_token, s.second_factor_at, s.created_at, s.last_seen_at, \
         a.email, a.name, a.status, a.totp_enabled_at FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.id_sha256 = $1 AND s.ended_at IS NULL",
    )
    .bind(&key)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let now = now_millis();
    let (created, seen): (i64, i64) = (r.try_get("created_at")?, r.try_get("last_seen_at")?);
    let status: String = r.try_get("status")?;
    let ended = if status != "active" {
        Some("account disabled")
    } else if now - seen >= limits.idle_ms() {
        Some("idle")
    } else if now - created >= limits.max_ms() {
        Some("too old")
    } else {
        None
    };
    if let Some(reason) = ended {
        end(db, &key, reason).await?;
        return Ok(None);
    }
    // The last request is written at most every minute (or a tenth of the idle time, when a
    // program or a test sets it short), not on every request.
    if now - seen >= (limits.idle_ms() / 10).min(60_000) {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_sha256 = $2")
            .bind(now)
            .bind(&key)
            .execute(&db.pool)
            .await?;
    }
    let id: i64 = r.try_get("account_id")?;
    let grants = people::grants(db, id).await?;
    let needs = grants.iter().any(|g| g.role.needs_second_factor());
    let has_second = r.try_get::<Option<i64>, _>("second_factor_at")?.is_some();
    let enrolled = r.try_get::<Option<i64>, _>("totp_enabled_at")?.is_some();
    Ok(Some(Live {
        caller: Caller::new(
            Principal::Account {
                id,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
            },
            grants,
        ),
        csrf_token: r.try_get("csrf_token")?,
        must_enrol: needs && !(has_second && enrolled),
        key,
    }))
}

/// Ends one session by its key.
pub async fn end(db: &Db, key: &str, reason: &str) -> Result<()> {
    sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id_sha256 = $3 AND ended_at IS NULL")
        .bind(now_millis())
        .bind(reason)
        .bind(key)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Signs out: ends the session and audits it.
pub async fn sign_out(db: &Db, live: &Live) -> Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE sessions SET ended_at = $1, end_reason = 'signed out' WHERE id_sha256 = $2 AND ended_at IS NULL",
    )
    .bind(now_millis())
    .bind(&live.key)
    .execute(&mut *tx)
    .await?;
    let id = live.caller.account_id().unwrap_or_default();
    audit::record(
        &mut tx,
        &Who::of(&live.caller),
        Entry::new("session.sign_out", "account", [id]),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// How people's sign-ins behave (README, "Accounts and sign-in").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AccountSettings {
    /// A session ends after this long without a request.
    pub session_idle_minutes: f64,
    /// A session ends this long after sign-in, however busy.
    pub session_max_hours: f64,
    /// Failed sign-ins allowed before each further try must wait.
    pub free_failures: u32,
    /// The longest wait between tries after repeated failures (1, 2, 4… minutes up to this).
    pub failure_delay_cap_minutes: f64,
    /// Not signed in for this long: sign-in is disabled (alerts still reach the person as a
    /// contact).
    pub inactive_days: f64,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            session_idle_minutes: 30.0,
            session_max_hours: 12.0,
            free_failures: 5,
            failure_delay_cap_minutes: 15.0,
            inactive_days: 90.0,
        }
    }
}

impl AccountSettings {
    pub fn check(&self) -> std::result::Result<(), String> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !(ok(self.session_idle_minutes)
            && ok(self.session_max_hours)
            && ok(self.inactive_days)
            && ok(self.failure_delay_cap_minutes))
        {
            return Err("accounts: every duration must be a positive number".into());
        }
        if self.session_idle_minutes > self.session_max_hours * 60.0 {
            return Err("accounts: session_idle_minutes may not exceed session_max_hours".into());
        }
        if self.free_failures == 0 || self.free_failures > 100 {
            return Err("accounts: free_failures must be 1 to 100".into());
        }
        Ok(())
    }

    pub fn idle_ms(&self) -> i64 {
        (self.session_idle_minutes * 60_000.0) as i64
    }
    pub fn max_ms(&self) -> i64 {
        (self.session_max_hours * 3_600_000.0) as i64
    }
    pub fn inactive_ms(&self) -> i64 {
        (self.inactive_days * 86_400_000.0) as i64
    }
    /// How long to wait after `failures` failures before the next try (0: try now).
    pub fn delay_ms(&self, failures: i64) -> i64 {
        let over = failures - self.free_failures as i64;
        if over < 0 {
            return 0;
        }
        let minutes = 2f64.powi(over.min(30) as i32).min(self.failure_delay_cap_minutes);
        (minutes * 60_000.0) as i64
    }
}
