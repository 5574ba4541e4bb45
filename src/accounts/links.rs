//! Single-use links sent by email: an invitation (`/invite/{token}`, 72 hours) and a password
//! reset (`/reset/{token}`, 1 hour). Only the hash of a link's secret is kept. A link that was
//! used, has expired, was replaced or never existed is refused with one and the same answer
//! (`expired_link`), so a link tells nothing about the account behind it. This module owns
//! `account_links`, and writes the emails that carry them.

use sqlx::{AnyConnection, Row};

use super::tokens::{hash, secret};
use crate::alerts::outbox::{self, About, Email, Recipient};
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Invite,
    Reset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Invite => "invite",
            Purpose::Reset => "reset",
        }
    }

    /// How long the link works.
    pub fn lifetime_ms(self) -> i64 {
        match self {
            Purpose::Invite => 72 * 3_600_000,
            Purpose::Reset => 3_600_000,
        }
    }

    /// The link's path on the site.
    pub fn path(self, token: &str) -> String {
        format!("/{}/{token}", self.as_str())
    }
}

/// The one answer for every link that does not work.
pub fn dead() -> Error {
    Error::refused(
        "expired_link",
        "this link does not work: it was used, has expired or was replaced. Ask for a new one",
    )
}

/// Issues a link for an account; older unused links of the same purpose stop working.
pub async fn issue(conn: &mut AnyConnection, account_id: i64, purpose: Purpose) -> Result<String> {
    let now = now_millis();
    sqlx::query("UPDATE account_links SET used_at = $1 WHERE account_id = $2 AND purpose = $3 AND used_at IS NULL")
        .bind(now)
        .bind(account_id)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
    let token = secret("");
    sqlx::query(
        "INSERT INTO account_links (token_sha256, account_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash(&token))
    .bind(account_id)
    .bind(purpose.as_str())
    .bind(now + purpose.lifetime_ms())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

async fn live(conn: &mut AnyConnection, token: &str, purpose: Purpose) -> Result<i64> {
    // A malformed token is looked up like any other: the answer is the same.
    let row = sqlx::query(
        "SELECT l.account_id FROM account_links l JOIN accounts a ON a.id = l.account_id \
         WHERE l.token_sha256 = $1 AND l.purpose = $2 AND l.used_at IS NULL AND l.expires_at > $3 \
         AND a.status <> 'disabled'",
    )
    .bind(hash(token))
    .bind(purpose.as_str())
    .bind(now_millis())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(r.try_get("account_id")?),
        None => Err(dead()),
    }
}

/// Whether a link of this purpose was issued to the account in the last `ms` milliseconds.
pub async fn issued_within(conn: &mut AnyConnection, account_id: i64, purpose: Purpose, ms: i64) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM account_links WHERE account_id = $1 AND purpose = $2 AND created_at > $3",
    )
    .bind(account_id)
    .bind(purpose.as_str())
    .bind(now_millis() - ms)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n > 0)
}

/// The account a working link is for, without using it (the page that asks for a password).
pub async fn peek(db: &Db, token: &str, purpose: Purpose) -> Result<i64> {
    let mut conn = db.pool.acquire().await?;
    live(&mut conn, token, purpose).await
}

/// Uses a link once, in the transaction that does what it was for.
pub async fn redeem(conn: &mut AnyConnection, token: &str, purpose: Purpose) -> Result<i64> {
    let account = live(conn, token, purpose).await?;
    let done = sqlx::query("UPDATE account_links SET used_at = $1 WHERE token_sha256 = $2 AND used_at IS NULL")
        .bind(now_millis())
        .bind(hash(token))
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Err(dead());
    }
    Ok(account)
}

/// The invitation or reset email.
fn link_email(purpose: Purpose, name: &str, url: &str, by: Option<&str>) -> (String, String) {
    match purpose {
        Purpose::Invite => (
            "Your vfc-monitor account".into(),
            format!(
                "Hello {name},\n\n{} made you an account in vfc-monitor, the state VFC program's vaccine \
                 cold-chain and inventory service.\n\nSet your password here (the link works once, for 72 hours):\n{url}\n\n\
                 Choose a password of at least 15 characters; a few unrelated words make a good one. \
                 Your account is yours alone: do not share it.\n",
                by.unwrap_or("The state VFC program")
            ),
        ),
        Purpose::Reset => (
            "Reset your vfc-monitor password".into(),
            format!(
                "Hello {name},\n\nSomeone (we hope you) asked to reset your vfc-monitor password. \
                 Choose a new one here (the link works once, for 1 hour):\n{url}\n\n\
                 If you did not ask, ignore this email: your password stays as it is.\n"
            ),
        ),
    }
}

/// Issues a link and queues its email, in the caller's transaction.
pub async fn send(
    conn: &mut AnyConnection,
    public_url: &url::Url,
    account: (i64, &str, &str),
    purpose: Purpose,
    by: Option<&str>,
) -> Result<String> {
    let (id, email, name) = account;
    let token = issue(conn, id, purpose).await?;
    let url = public_url
        .join(purpose.path(&token).trim_start_matches('/'))
        .map_err(|e| Error::Invalid(format!("VFC_PUBLIC_URL cannot hold a link: {e}")))?
        .to_string();
    let (subject, body) = link_email(purpose, name, &url, by);
    outbox::enqueue(
        conn,
        &Email {
            about: About::Account,
            purpose: match purpose {
                Purpose::Invite => "invitation",
                Purpose::Reset => "password_reset",
            },
            to: &Recipient::new(name, email),
            subject: &subject,
            body: &body,
        },
    )
    .await?;
    Ok(url)
}
