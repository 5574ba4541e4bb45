//! The link between a location's contacts and people's accounts: a contact whose email
//! belongs to an account is shown with it on both sides. Alerts never depend on it: they go to
//! the contact's email whether or not the person signs in.

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};
use crate::store::Db;

/// An email as compared and stored: NFKC, trimmed, lower case. `Ann.Lee@Clinic.ORG ` and
/// `ann.lee@clinic.org` are one account.
pub fn normalise_email(raw: &str) -> Result<String> {
    let e: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    let ok = e.len() <= 254
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@') && !d.starts_with('.') && !d.ends_with('.'));
    if ok {
        Ok(e)
    } else {
        Err(Error::Invalid(format!("\"email\" {raw:?} is not an email address")))
    }
}

/// A location whose primary or backup contact has this account's email.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactOf {
    pub location: String,
    /// `primary` or `backup`.
    pub contact: String,
}

/// The locations whose primary or backup contact has email `email` (normalised).
pub async fn contact_of(conn: &mut AnyConnection, email: &str) -> Result<Vec<ContactOf>> {
    let contacts = sqlx::query(
        "SELECT code, lower(primary_email) = $1 AS p, lower(backup_email) = $1 AS b FROM location_contacts \
         WHERE lower(primary_email) = $1 OR lower(backup_email) = $1 ORDER BY code",
    )
    .bind(email)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for c in contacts {
        let code: String = c.try_get("code")?;
        for (col, what) in [("p", "primary"), ("b", "backup")] {
            if truthy(&c, col)? {
                out.push(ContactOf {
                    location: code.clone(),
                    contact: what.into(),
                });
            }
        }
    }
    Ok(out)
}

/// A boolean column, whichever way the database returns it.
fn truthy(r: &sqlx::any::AnyRow, col: &str) -> Result<bool> {
    Ok(r.try_get::<bool, _>(col)
        .or_else(|_| r.try_get::<i64, _>(col).map(|v| v != 0))
        .unwrap_or(false))
}

/// The accounts of some emails (compared as stored: NFKC, lower case), by email.
pub async fn ids_by_email(db: &Db, emails: &[String]) -> Result<std::collections::HashMap<String, i64>> {
    let normal: Vec<String> = emails.iter().filter_map(|e| normalise_email(e).ok()).collect();
    let mut out = std::collections::HashMap::new();
    if normal.is_empty() {
        return Ok(out);
    }
    for chunk in normal.chunks(500) {
        let sql = format!(
            "SELECT id, email FROM accounts WHERE email IN ({})",
            crate::store::placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q.bind(e);
        }
        for r in q.fetch_all(&db.pool).await? {
            out.insert(r.try_get::<String, _>("email")?, r.try_get::<i64, _>("id")?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_one_account_whatever_their_case_spacing_or_width() {
        assert_eq!(normalise_email(" Ann.Lee@Clinic.ORG ").unwrap(), "ann.lee@clinic.org");
        // Full-width letters become their ASCII forms under NFKC.
        assert_eq!(normalise_email("ａｎｎ@clinic.org").unwrap(), "ann@clinic.org");
        for bad in [
            "ann",
            "ann@",
            "@clinic.org",
            "ann@clinic",
            "a b@clinic.org",
            "a@b@c.org",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }
}
