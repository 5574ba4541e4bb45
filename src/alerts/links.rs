//! Acknowledgement links: one signed, expiring token per recipient and subject (an excursion or
//! a logger condition). This module owns `service_secrets`, where the signing key lives.
//!
//! Opening the link (GET) only shows the subject and a button; pressing it (POST)
//! acknowledges. Mail scanners that open every link therefore acknowledge nothing.
//! The signing key is random, kept in the database, and the same for every instance.

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;

use crate::store::{now_millis, Db};

/// How long a link works.
pub const VALID_MS: i64 = 7 * 24 * 3_600_000;

type HmacSha256 = Hmac<Sha256>;

/// The signing key, created on first use. A stored key that is not 32 bytes of hex is an error:
/// signing with an empty or short key would let anyone forge links.
pub async fn key(db: &Db) -> anyhow::Result<Vec<u8>> {
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    sqlx::query("INSERT INTO service_secrets (name, value) VALUES ('ack_links', $1) ON CONFLICT (name) DO NOTHING")
        .bind(fresh)
        .execute(&db.pool)
        .await?;
    let value: String = sqlx::query("SELECT value FROM service_secrets WHERE name = 'ack_links'")
        .fetch_one(&db.pool)
        .await?
        .try_get("value")?;
    let key = hex::decode(value.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .context("service_secrets row 'ack_links' is not 64 hex digits (32 bytes); restore it from a backup, or delete the row to make a new key (links already sent stop working)")?;
    Ok(key)
}

/// What links in emails need: the public address and the key that signs them.
#[derive(Clone)]
pub struct Links {
    pub public_url: url::Url,
    pub key: Vec<u8>,
}

impl Links {
    /// The recipient's own link to acknowledge `subject`, valid for [`VALID_MS`] from now.
    pub fn ack_url(&self, subject: Subject, email: &str) -> String {
        format!(
            "{}ack/{}",
            self.public_url,
            subject_token(&self.key, subject, email, now_millis())
        )
    }
}

fn sign(key: &[u8], payload: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What a link acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Excursion(i64),
    /// A logger condition (no data, battery, probe, calibration).
    Device(i64),
}

impl Subject {
    fn encode(self) -> String {
        match self {
            Subject::Excursion(id) => id.to_string(),
            Subject::Device(id) => format!("d{id}"),
        }
    }
    fn decode(raw: &str) -> Option<Self> {
        match raw.strip_prefix('d') {
            Some(id) => id.parse().ok().map(Subject::Device),
            None => raw.parse().ok().map(Subject::Excursion),
        }
    }
}

/// A token for `email` to acknowledge `excursion_id`, valid from `now` for [`VALID_MS`].
pub fn token(key: &[u8], excursion_id: i64, email: &str, now: i64) -> String {
    subject_token(key, Subject::Excursion(excursion_id), email, now)
}

/// A token for `email` to acknowledge `subject`.
pub fn subject_token(key: &[u8], subject: Subject, email: &str, now: i64) -> String {
    let payload = format!(
        "{}.{}.{}",
        subject.encode(),
        now + VALID_MS,
        hex::encode(email.as_bytes())
    );
    let sig = sign(key, &payload);
    format!("{payload}.{sig}")
}

/// What a valid token says.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    pub subject: Subject,
    pub email: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    Malformed,
    Expired,
}

pub fn verify(key: &[u8], token: &str) -> Result<Claim, Invalid> {
    let mut parts = token.rsplitn(2, '.');
    let (sig, payload) = (
        parts.next().ok_or(Invalid::Malformed)?,
        parts.next().ok_or(Invalid::Malformed)?,
    );
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac.verify_slice(&hex::decode(sig).map_err(|_| Invalid::Malformed)?)
        .map_err(|_| Invalid::Malformed)?;
    let fields: Vec<&str> = payload.split('.').collect();
    let [id, expires, email] = fields[..] else {
        return Err(Invalid::Malformed);
    };
    let expires: i64 = expires.parse().map_err(|_| Invalid::Malformed)?;
    if expires < now_millis() {
        return Err(Invalid::Expired);
    }
    Ok(Claim {
        subject: Subject::decode(id).ok_or(Invalid::Malformed)?,
        email: String::from_utf8(hex::decode(email).map_err(|_| Invalid::Malformed)?)
            .map_err(|_| Invalid::Malformed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_and_a_forged_one_does_not() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = token(key, 42, "pat@clinic.org", now_millis());
        assert_eq!(
            verify(key, &t),
            Ok(Claim {
                subject: Subject::Excursion(42),
                email: "pat@clinic.org".into()
            })
        );
        let d = subject_token(key, Subject::Device(7), "pat@clinic.org", now_millis());
        assert_eq!(verify(key, &d).unwrap().subject, Subject::Device(7));
        let forged = t.replacen("42.", "43.", 1);
        assert_eq!(verify(key, &forged), Err(Invalid::Malformed));
        assert_eq!(verify(b"another key", &t), Err(Invalid::Malformed));
        let old = token(key, 42, "pat@clinic.org", now_millis() - VALID_MS - 1000);
        assert_eq!(verify(key, &old), Err(Invalid::Expired));
    }
}
