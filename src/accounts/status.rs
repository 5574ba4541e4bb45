//! An account's status: disabled (by a coordinator, or by the service after the program's
//! inactive days) and enabled again. Disabling ends the account's sessions at once; the tokens
//! it made keep working (they belong to their place) and the coordinators of those places are
//! told. Alerts keep reaching the person as a location contact whatever the account's status.

use sqlx::{AnyConnection, Row};

use super::audit::{self, Entry, Who};
use super::people::{self, By, Stored};
use super::Caller;
use crate::alerts::outbox::{self, About, Email, Recipient};
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

/// Disables an account: its sessions end at once; its tokens keep working (they belong to
/// their place), and the coordinators of their places are told.
pub async fn disable(db: &Db, caller: Option<&Caller>, id: i64, reason: &str) -> Result<people::Account> {
    let mut tx = db.begin().await?;
    let before = match caller {
        Some(c) => {
            let a = people::visible(&mut tx, c, id).await?;
            people::may_change(c, &a)?;
            a
        }
        None => people::stored(&mut tx, By::Id(id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no account {id}")))?,
    };
    let who = caller.map(Who::of).unwrap_or_else(Who::system);
    disable_in(&mut tx, &who, &before, reason).await?;
    let shown = people::shown(&mut tx, id).await?.expect("still there");
    tx.commit().await?;
    Ok(shown)
}

/// [`disable`] in the caller's transaction (the inactivity sweep disables many).
pub async fn disable_in(conn: &mut AnyConnection, who: &Who, account: &Stored, reason: &str) -> Result<()> {
    if account.status == "disabled" {
        return Ok(());
    }
    sqlx::query("UPDATE accounts SET status = 'disabled', disabled_reason = $1, updated_at = $2 WHERE id = $3")
        .bind(reason)
        .bind(now_millis())
        .bind(account.id)
        .execute(&mut *conn)
        .await?;
    people::end_sessions(conn, account.id, "account disabled").await?;
    let tokens = super::tokens::made_by(conn, account.id).await?;
    for t in &tokens {
        tell_coordinators(conn, t, account).await?;
    }
    let (pin, loc) = people::place_of(&account.grants);
    let entry = Entry::new("account.disable", "account", [account.id])
        .at(pin.as_deref(), loc.as_deref())
        .changed("status", account.status.as_str(), "disabled")
        .changed("disabled_reason", serde_json::Value::Null, reason);
    audit::record(conn, who, entry).await
}

/// Tells a token's place's coordinators that its maker's account was disabled.
async fn tell_coordinators(conn: &mut AnyConnection, t: &super::tokens::TokenInfo, maker: &Stored) -> Result<()> {
    let rows = sqlx::query(
        "SELECT primary_name, primary_email, backup_name, backup_email FROM location_contacts \
         WHERE code = $1 OR pin = $2 ORDER BY code",
    )
    .bind(t.location.as_deref().unwrap_or(""))
    .bind(t.pin.as_deref().unwrap_or(""))
    .fetch_all(&mut *conn)
    .await?;
    let mut told: Vec<String> = Vec::new();
    for r in rows {
        for (n, e) in [("primary_name", "primary_email"), ("backup_name", "backup_email")] {
            let (name, email): (String, String) = (r.try_get(n)?, r.try_get(e)?);
            if told.contains(&email.to_lowercase()) || email.eq_ignore_ascii_case(&maker.email) {
                continue;
            }
            told.push(email.to_lowercase());
            let body = format!(
                "Hello {name},\n\nThe vfc-monitor account of {} ({}) was disabled. API token {} \"{}\" ({}), \
                 which they made, keeps working so that the feed does not stop. If it should stop, \
                 revoke it (DELETE /api/v1/tokens/{}); otherwise nothing needs doing.\n",
                maker.name,
                maker.email,
                t.id,
                t.name,
                t.place(),
                t.id
            );
            outbox::enqueue(
                conn,
                &Email {
                    about: About::Account,
                    purpose: "token_maker_disabled",
                    to: &Recipient::new(name, email),
                    subject: "An API token's maker was disabled",
                    body: &body,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// Enables a disabled account again (active with its password; invited without one).
pub async fn enable(db: &Db, caller: &Caller, id: i64) -> Result<people::Account> {
    let mut tx = db.begin().await?;
    let before = people::visible(&mut tx, caller, id).await?;
    people::may_change(caller, &before)?;
    let status = if before.password_hash.is_some() {
        "active"
    } else {
        "invited"
    };
    if before.status == "disabled" {
        // The inactivity clock starts again now, or the sweep would disable it at once.
        sqlx::query(
            "UPDATE accounts SET status = $1, disabled_reason = NULL, last_sign_in_at = $2, updated_at = $2 WHERE id = $3",
        )
        .bind(status)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let (pin, loc) = people::place_of(&before.grants);
        let entry = Entry::new("account.enable", "account", [id])
            .at(pin.as_deref(), loc.as_deref())
            .changed("status", "disabled", status);
        audit::record(&mut tx, &Who::of(caller), entry).await?;
    }
    let shown = people::shown(&mut tx, id).await?.expect("still there");
    tx.commit().await?;
    Ok(shown)
}

/// Disables the sign-in of every active account not signed in for `inactive_ms` (counted from
/// its last sign-in, or its password being set), as `system`; the person and the coordinators
/// of their places are told by email. Their alerts as a location contact go on. Returns how
/// many were disabled.
pub async fn sweep_inactive(db: &Db, inactive_ms: i64, days: f64) -> Result<usize> {
    let cutoff = now_millis() - inactive_ms;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM accounts WHERE status = 'active' \
         AND COALESCE(last_sign_in_at, password_changed_at, created_at) < $1 ORDER BY id LIMIT 1000",
    )
    .bind(cutoff)
    .fetch_all(&db.pool)
    .await?;
    let reason = format!("not signed in for {days} days");
    for id in &ids {
        let mut tx = db.begin().await?;
        let Some(a) = people::stored(&mut tx, By::Id(*id)).await? else {
            continue;
        };
        disable_in(&mut tx, &Who::system(), &a, &reason).await?;
        tell_inactive(&mut tx, &a, &reason).await?;
        tx.commit().await?;
        metrics::counter!("vfc_accounts_disabled_inactive_total").increment(1);
    }
    Ok(ids.len())
}

/// Tells a person, and the coordinators of the places they hold grants at, that their sign-in
/// was disabled for inactivity.
async fn tell_inactive(conn: &mut AnyConnection, a: &Stored, reason: &str) -> Result<()> {
    let mut to = vec![Recipient::new(&a.name, &a.email)];
    for g in &a.grants {
        let (pin, loc) = super::tokens::columns(&g.scope);
        let rows = sqlx::query(
            "SELECT primary_name, primary_email, backup_name, backup_email FROM location_contacts \
             WHERE code = $1 OR pin = $2 ORDER BY code",
        )
        .bind(loc.unwrap_or_default())
        .bind(pin.unwrap_or_default())
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            for (n, e) in [("primary_name", "primary_email"), ("backup_name", "backup_email")] {
                let r = Recipient::new(r.try_get::<String, _>(n)?, r.try_get::<String, _>(e)?);
                if !to.iter().any(|t| t.email.eq_ignore_ascii_case(&r.email)) {
                    to.push(r);
                }
            }
        }
    }
    for (i, r) in to.iter().enumerate() {
        let body = if i == 0 {
            format!(
                "Hello {},\n\nYour vfc-monitor sign-in was disabled: {reason}. Your coordinator (or the state \
                 program) can enable it again. Alerts for the locations you are a contact of keep reaching you \
                 by email all the same.\n",
                r.name
            )
        } else {
            format!(
                "Hello {},\n\nThe vfc-monitor sign-in of {} ({}) was disabled: {reason}. Enable it again \
                 (POST /api/v1/accounts/{}/enable) if they still need it; alerts keep reaching them as a \
                 location contact either way.\n",
                r.name, a.name, a.email, a.id
            )
        };
        outbox::enqueue(
            conn,
            &Email {
                about: About::Account,
                purpose: "account_inactive",
                to: r,
                subject: "A vfc-monitor sign-in was disabled after inactivity",
                body: &body,
            },
        )
        .await?;
    }
    Ok(())
}
