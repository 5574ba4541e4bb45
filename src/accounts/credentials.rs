//! Setting a password from an emailed link (an invitation, a reset), changing one's own, and
//! asking for a reset. A link is used in the same transaction that sets the password, so a
//! second use finds it used; setting a password ends every session of the account. Asking for a reset answers
//! the same whether or not the email has an account: only the email differs.

use sqlx::AnyConnection;

use super::audit::{self, Entry, Who};
use super::links::{self, Purpose};
use super::password;
use super::people::{self, By, Stored};
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

/// Sets a password from a link (invitation or reset), in one transaction with using the link.
pub async fn set_from_link(db: &Db, purpose: Purpose, token: &str, raw: &str, from: String) -> Result<()> {
    let id = links::peek(db, token, purpose).await?;
    let account = {
        let mut conn = db.pool.acquire().await?;
        people::stored(&mut conn, By::Id(id)).await?.ok_or_else(links::dead)?
    };
    let normalised = password::check(raw, &account.name, &account.email)?;
    let hash = password::blocking(move || password::hash(&normalised)).await;
    let mut tx = db.begin().await?;
    // Used in the same transaction: a second use of the link finds it used.
    let used_for = links::redeem(&mut tx, token, purpose).await?;
    if used_for != id {
        return Err(links::dead());
    }
    let who = Who::account(id, &account.email, Some(from));
    let action = match purpose {
        Purpose::Invite => "account.accept_invitation",
        Purpose::Reset => "account.reset_password",
    };
    set_password(&mut tx, &who, &account, &hash, action).await?;
    tx.commit().await?;
    Ok(())
}

/// A signed-in person changes their own password, giving the current one first (a session left
/// open on a shared computer is not enough). Every session of the account ends, this one too:
/// they sign in again with the new password.
pub async fn change(db: &Db, id: i64, current: &str, raw: &str, from: String) -> Result<()> {
    let account = {
        let mut conn = db.pool.acquire().await?;
        people::stored(&mut conn, By::Id(id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no account {id}")))?
    };
    let (given, stored) = (current.to_string(), account.password_hash.clone().unwrap_or_default());
    if !password::blocking(move || password::verify(&given, &stored)).await {
        return Err(Error::refused(
            "wrong_password",
            "\"current_password\" is not your current password",
        ));
    }
    let normalised = password::check(raw, &account.name, &account.email)?;
    let hash = password::blocking(move || password::hash(&normalised)).await;
    let mut tx = db.begin().await?;
    let who = Who::account(id, &account.email, Some(from));
    set_password(&mut tx, &who, &account, &hash, "account.change_password").await?;
    tx.commit().await?;
    Ok(())
}

pub async fn request_reset(db: &Db, public_url: &url::Url, raw: &str, from: String) -> Result<()> {
    let Ok(email) = people::normalise_email(raw) else {
        return Ok(());
    };
    let mut tx = db.begin().await?;
    let Some(a) = people::stored(&mut tx, By::Email(&email))
        .await?
        .filter(|a| a.status != "disabled")
    else {
        return Ok(());
    };
    // One reset email a minute at most: asking again and again floods no one's inbox.
    if links::issued_within(&mut tx, a.id, Purpose::Reset, 60_000).await? {
        return Ok(());
    }
    links::send(&mut tx, public_url, (a.id, &a.email, &a.name), Purpose::Reset, None).await?;
    audit::record(
        &mut tx,
        &Who::anonymous(Some(from)),
        Entry::new("account.request_reset", "account", [a.id]),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a new password (already checked and hashed): an invited account becomes active, and
/// every open session ends.
async fn set_password(
    conn: &mut AnyConnection,
    who: &Who,
    account: &Stored,
    hash: &str,
    action: &'static str,
) -> Result<()> {
    let now = now_millis();
    let status = if account.status == "invited" {
        "active"
    } else {
        account.status.as_str()
    };
    sqlx::query(
        "UPDATE accounts SET password_hash = $1, password_changed_at = $2, status = $3, updated_at = $2 WHERE id = $4",
    )
    .bind(hash)
    .bind(now)
    .bind(status)
    .bind(account.id)
    .execute(&mut *conn)
    .await?;
    people::end_sessions(conn, account.id, "password changed").await?;
    let (pin, loc) = people::place_of(&account.grants);
    let entry = Entry::new(action, "account", [account.id])
        .at(pin.as_deref(), loc.as_deref())
        .changed("password", serde_json::Value::Null, "(changed)")
        .changed("status", account.status.as_str(), status);
    audit::record(conn, who, entry).await
}
