//! Passwords as NIST SP 800-63B revision 4 (2024) asks (README, "Accounts and sign-in"): at
//! least 15 characters, counted as Unicode code points after NFKC normalisation, up to 256; any
//! characters; no composition rules and no forced expiry; refused when the `zxcvbn` estimator
//! (with its lists of common and breached passwords) scores it below 3, or when it contains the
//! person's name or the local part of their email. Stored as Argon2id with the `argon2` crate's
//! default parameters (19 MiB of memory, 2 passes, 1 lane: OWASP's recommendation).

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

pub const MIN_CHARS: usize = 15;
pub const MAX_CHARS: usize = 256;

/// A password as compared and stored: NFKC-normalised, so the same characters typed on another
/// keyboard (a composed or decomposed accent, a full-width letter) are the same password.
pub fn normalise(raw: &str) -> String {
    raw.nfkc().collect()
}

fn weak(message: impl Into<String>) -> Error {
    Error::refused("weak_password", message)
}

/// Checks a new password for the person named `name` with email `email`; returns it normalised.
pub fn check(raw: &str, name: &str, email: &str) -> Result<String> {
    let pw = normalise(raw);
    let n = pw.chars().count();
    if n < MIN_CHARS {
        return Err(weak(format!(
            "choose a password of at least {MIN_CHARS} characters (this one has {n}); a few unrelated words make a strong one"
        )));
    }
    if n > MAX_CHARS {
        return Err(weak(format!("a password may have at most {MAX_CHARS} characters")));
    }
    let lower = pw.to_lowercase();
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    let mut personal: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect();
    personal.push(name.to_lowercase().split_whitespace().collect::<String>());
    if local.chars().count() >= 3 {
        personal.push(local.clone());
    }
    if let Some(part) = personal
        .iter()
        .filter(|p| p.chars().count() >= 3)
        .find(|p| lower.contains(p.as_str()))
    {
        return Err(weak(format!(
            "a password may not contain your name or email (it contains {part:?})"
        )));
    }
    let inputs: Vec<&str> = personal.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(&pw, &inputs);
    if (estimate.score() as u8) < 3 {
        let mut message = String::from("this password is too easy to guess");
        if let Some(f) = estimate.feedback() {
            if let Some(w) = f.warning() {
                message.push_str(&format!(": {w}"));
            }
            for s in f.suggestions() {
                message.push_str(&format!(" {s}"));
            }
        }
        return Err(weak(message));
    }
    Ok(pw)
}

/// Hashes a normalised password (slow on purpose: call from a blocking task).
pub fn hash(normalised: &str) -> String {
    Argon2::default()
        .hash_password(normalised.as_bytes())
        .expect("Argon2id with default parameters hashes any input")
        .to_string()
}

/// Whether a password (as typed) matches a stored hash; a hash that cannot be read matches
/// nothing.
pub fn verify(raw: &str, stored: &str) -> bool {
    Argon2::default()
        .verify_password(normalise(raw).as_bytes(), stored)
        .is_ok()
}

/// Spends the time a real check would, for an email with no account, so the answer's timing
/// tells nothing.
pub fn verify_nothing(raw: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("a password no one has, hashed once"));
    let _ = verify(raw, dummy);
}

/// How many password hashes or checks run at once (each takes 19 MiB and a core for tens of
/// milliseconds): a flood of sign-ins waits its turn instead of exhausting the machine.
const AT_ONCE: usize = 2;

/// Runs a password hash or check off the async workers, at most [`AT_ONCE`] at a time.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(AT_ONCE);
    let _turn = HASHING.acquire().await.expect("the semaphore is never closed");
    tokio::task::spawn_blocking(f)
        .await
        .expect("a password hash does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: Error) -> &'static str {
        match e {
            Error::Refused { code, .. } => code,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn fourteen_characters_are_too_few_and_fifteen_code_points_are_counted_after_nfkc() {
        assert_eq!(
            code(check("violet-kettle1", "Ann Lee", "ann@x.org").unwrap_err()),
            "weak_password"
        );
        // "ﬀ" (U+FB00) is one code point typed, two ("ff") after NFKC.
        let typed = "tr\u{FB00}ic-lantern9";
        assert_eq!(typed.chars().count(), 14);
        assert_eq!(check(typed, "Ann Lee", "ann@x.org").unwrap().chars().count(), 15);
    }

    #[test]
    fn a_common_password_is_refused_however_long() {
        let e = check("passwordpassword123", "Ann Lee", "ann@x.org").unwrap_err();
        assert_eq!(code(e), "weak_password");
    }

    #[test]
    fn a_password_containing_the_name_or_email_is_refused() {
        assert!(check("margaret-violin-tundra-88", "Margaret Okafor", "mo@x.org").is_err());
        assert!(check("cello-okafor-tundra-88", "Margaret Okafor", "mo@x.org").is_err());
        assert!(check("tundra-jsmith77-cello", "J", "jsmith77@clinic.org").is_err());
    }

    #[test]
    fn a_long_unusual_password_of_any_characters_is_accepted() {
        assert!(check("copper lantern drifts north", "Ann Lee", "ann@x.org").is_ok());
        assert!(check("Größe-Ümlaut-冷蔵庫-ok-42", "Ann Lee", "ann@x.org").is_ok());
    }

    #[test]
    fn a_hash_verifies_the_same_password_typed_in_another_normal_form_only() {
        let h = hash(&normalise("cafe\u{301}-lantern-drifts-north"));
        assert!(verify("caf\u{e9}-lantern-drifts-north", &h));
        assert!(!verify("cafe-lantern-drifts-north", &h));
        assert!(!verify("anything", "not a hash"));
    }
}
