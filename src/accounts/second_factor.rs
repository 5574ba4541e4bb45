//! The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of clock skew
//! either way) through the `totp-rs` crate, and ten single-use recovery codes stored as hashes.
//! A code is accepted once: the step it matched is remembered and no step at or before it is
//! accepted again. Required for every state role and for anyone who can create accounts or
//! tokens; until enrolled such a person can do nothing but enrol and sign out.

use rand::RngCore;
use sqlx::AnyConnection;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use super::people::{self, By, Stored};
use super::tokens::hash;
use super::Caller;
use crate::accounts::audit::{self, Entry, Who};
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

/// What the authenticator app needs.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret in base32, to type in by hand.
    pub secret: String,
    /// `otpauth://totp/…`, what the QR code holds.
    pub otpauth_uri: String,
    /// The QR code as an SVG image.
    pub qr_svg: String,
}

fn totp(secret_b32: &str, email: &str) -> Result<Totp> {
    let bytes = Secret::try_from_base32(secret_b32)
        .map_err(|_| Error::unreadable("accounts", email, "the TOTP secret is not base32"))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(bytes)
        .with_issuer(Some("vfc-monitor"))
        .with_account_name(email)
        .build()
        .map_err(|e| Error::unreadable("accounts", email, format!("TOTP: {e}")))
}

/// The caller's own account: a second factor is a person's, never a token's.
async fn own(conn: &mut AnyConnection, caller: &Caller) -> Result<Stored> {
    let id = caller
        .account_id()
        .ok_or_else(|| Error::Invalid("a second factor is for people signed in, not tokens".into()))?;
    people::stored(conn, By::Id(id))
        .await?
        .ok_or_else(|| Error::NotFound("your account no longer exists".into()))
}

/// Starts (or restarts) enrolment: a new secret, not yet in force.
pub async fn start(db: &Db, caller: &Caller) -> Result<Enrolment> {
    let mut tx = db.begin().await?;
    let a = own(&mut tx, caller).await?;
    let id = a.id;
    if a.totp_enabled {
        return Err(Error::Conflict(
            "a second factor is already on; to move it to another phone, ask your coordinator (or a state admin) to reset it".into(),
        ));
    }
    let mut raw = [0u8; 20];
    rand::rng().fill_bytes(&mut raw);
    let b32 = Secret::from(raw.to_vec()).to_base32();
    sqlx::query("UPDATE accounts SET totp_secret = $1, updated_at = $2 WHERE id = $3")
        .bind(&b32)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &Who::of(caller),
        Entry::new("second_factor.start", "account", [id]),
    )
    .await?;
    tx.commit().await?;
    enrolment(&b32, &a.email)
}

/// The enrolment started and not yet confirmed, shown again (after a mistyped code).
pub async fn pending(db: &Db, caller: &Caller) -> Result<Enrolment> {
    let mut conn = db.pool.acquire().await?;
    let a = own(&mut conn, caller).await?;
    match (&a.totp_secret, a.totp_enabled) {
        (Some(b32), false) => enrolment(b32, &a.email),
        _ => Err(Error::Conflict("no second factor is being set up".into())),
    }
}

fn enrolment(b32: &str, email: &str) -> Result<Enrolment> {
    let t = totp(b32, email)?;
    let uri = t.to_url().map_err(|e| Error::Invalid(format!("otpauth URI: {e}")))?;
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| Error::Invalid(format!("QR code: {e}")))?;
    let svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Enrolment {
        secret: b32.to_string(),
        otpauth_uri: uri,
        qr_svg: svg,
    })
}

/// Whether `code` is right now and not used before; remembers its step.
pub async fn accept_code(conn: &mut AnyConnection, a: &Stored, code: &str) -> Result<bool> {
    let Some(b32) = &a.totp_secret else { return Ok(false) };
    let t = totp(b32, &a.email)?;
    let now = (now_millis() / 1000) as u64;
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(step) = t.check(&code, now) else {
        return Ok(false);
    };
    let step = step as i64;
    // Compare and set in one statement, so two sign-ins with one code cannot both pass.
    let done = sqlx::query(
        "UPDATE accounts SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
    )
    .bind(step)
    .bind(a.id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Uses a recovery code once.
pub async fn use_recovery_code(conn: &mut AnyConnection, account_id: i64, code: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND code_sha256 = $3 AND used_at IS NULL",
    )
    .bind(now_millis())
    .bind(account_id)
    .bind(hash(&normal_code(code)))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Recovery codes compare without case, spaces or dashes.
fn normal_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Turns the second factor on with a first code from the app; returns ten recovery codes
/// (shown only now). The session that did it counts as having passed the second factor.
pub async fn confirm(db: &Db, caller: &Caller, session_key: Option<&str>, code: &str) -> Result<Vec<String>> {
    let mut tx = db.begin().await?;
    let a = own(&mut tx, caller).await?;
    let id = a.id;
    if a.totp_enabled {
        return Err(Error::Conflict("a second factor is already on".into()));
    }
    if a.totp_secret.is_none() {
        return Err(Error::Conflict(
            "start with POST /api/v1/me/totp, then confirm a code from the app".into(),
        ));
    }
    if !accept_code(&mut tx, &a, code).await? {
        tx.rollback().await?;
        metrics::counter!("vfc_second_factor_failures_total").increment(1);
        let e = Entry::new("second_factor.confirm_failed", "account", [id]);
        audit::record_alone(db, &Who::of(caller), e).await?;
        return Err(Error::refused(
            "invalid_code",
            "that code is not the app's current one: check the phone's clock and type the code now shown",
        ));
    }
    sqlx::query("UPDATE accounts SET totp_enabled_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let codes = new_recovery_codes(&mut tx, id).await?;
    if let Some(key) = session_key {
        passed_second_factor(&mut tx, key).await?;
    }
    let entry = Entry::new("second_factor.enable", "account", [id]).changed("second_factor", false, true);
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(codes)
}

async fn new_recovery_codes(conn: &mut AnyConnection, id: i64) -> Result<Vec<String>> {
    sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let mut codes = Vec::with_capacity(10);
    for _ in 0..10 {
        let mut raw = [0u8; 6];
        rand::rng().fill_bytes(&mut raw);
        let hexed = hex::encode(raw);
        let code = format!("{}-{}-{}", &hexed[0..4], &hexed[4..8], &hexed[8..12]);
        sqlx::query("INSERT INTO recovery_codes (account_id, code_sha256) VALUES ($1, $2)")
            .bind(id)
            .bind(hash(&normal_code(&code)))
            .execute(&mut *conn)
            .await?;
        codes.push(code);
    }
    Ok(codes)
}

/// Resets someone's lost second factor (a state admin, or for clinic staff their PIN's
/// coordinator): it is off, its recovery codes void, its sessions ended; they enrol again at
/// their next sign-in.
pub async fn reset(db: &Db, caller: &Caller, id: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    let a = people::stored(&mut tx, By::Id(id))
        .await?
        .filter(|a| caller.scope == super::Scope::Program || a.grants.iter().any(|g| caller.scope.contains(&g.scope)))
        .ok_or_else(|| Error::NotFound(format!("no account {id} in your scope")))?;
    // A state admin resets anyone's; a clinic's coordinator only their own clinic staff's.
    let admin = caller.grants.iter().any(|g| g.role == super::Role::StateAdmin);
    let staff_of_theirs = !a.grants.is_empty()
        && a.grants
            .iter()
            .all(|g| g.role == super::Role::ClinicStaff && caller.may_grant(g));
    if caller.account_id() == Some(id) || !caller.is_person() || !(admin || staff_of_theirs) {
        return Err(Error::refused(
            "scope",
            "a second factor is reset by a state admin, or for clinic staff by their coordinator",
        ));
    }
    sqlx::query(
        "UPDATE accounts SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(now_millis())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    people::end_sessions(&mut tx, id, "second factor reset").await?;
    let (pin, loc) = a
        .grants
        .iter()
        .map(|g| super::tokens::columns(&g.scope))
        .find(|(p, l)| p.is_some() || l.is_some())
        .unwrap_or((None, None));
    let entry = Entry::new("second_factor.reset", "account", [id])
        .at(pin.as_deref(), loc.as_deref())
        .changed("second_factor", a.totp_enabled, false);
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    Ok(())
}

/// The current code for a base32 secret at a Unix time (tests and the bench compute codes as
/// an authenticator app would).
pub fn code_at(secret_b32: &str, unix_seconds: u64) -> Option<String> {
    let t = totp(secret_b32, "x@example.org").ok()?;
    Some(t.generate(unix_seconds).to_string())
}

/// Marks a session as having passed a second factor (just after enrolment).
async fn passed_second_factor(conn: &mut AnyConnection, key: &str) -> Result<()> {
    sqlx::query("UPDATE sessions SET second_factor_at = $1 WHERE id_sha256 = $2")
        .bind(now_millis())
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
