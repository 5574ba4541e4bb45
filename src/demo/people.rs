//! The demo's people: a state coordinator and the clinic's coordinator, each signed up as a
//! person would be (an invitation, a password, a second factor), so the demo can print how to
//! sign in to the pages as them.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::PIN;

/// Someone who signs in to the demo's pages.
pub struct Person {
    /// What they do, as printed.
    what: &'static str,
    email: &'static str,
    name: &'static str,
    role: &'static str,
    /// Their grant's PIN; none for a state role.
    pin: Option<&'static str>,
    password: &'static str,
}

pub const PEOPLE: [Person; 2] = [
    Person {
        what: "state coordinator",
        email: "state.coordinator@example.org",
        name: "Sam Statewide",
        role: "state-coordinator",
        pin: None,
        password: "copper lantern drifts north",
    },
    Person {
        what: "clinic coordinator",
        email: "clinic.coordinator@example.org",
        name: "Pat Primary",
        role: "vfc-coordinator",
        pin: Some(PIN),
        password: "amber kettle sings twice",
    },
];

/// A person who signs in to the pages, made as the state would: the account with its
/// invitation, then as they would, the password and the second factor. Returns how to sign
/// in as them.
pub async fn sign_up(
    http: &reqwest::Client,
    base: &str,
    db: &crate::store::Db,
    who: &Person,
) -> anyhow::Result<String> {
    let Person {
        what,
        email,
        name,
        role,
        pin,
        password,
    } = *who;
    use crate::accounts::people::{self, GrantBody, NewAccount};
    let new = NewAccount {
        email: email.into(),
        name: name.into(),
        grants: vec![GrantBody {
            role: role.into(),
            pin: pin.map(String::from),
            location: None,
        }],
    };
    let (_, link) = people::create(db, None, &url::Url::parse(base)?, &new).await?;
    let invitation = link.rsplit('/').next().unwrap_or_default();
    let post = |path: String, body: Value| http.post(format!("{}{path}", base)).json(&body).send();
    let r = post(
        format!("/api/v1/invitations/{invitation}"),
        json!({ "password": password }),
    )
    .await?;
    if !r.status().is_success() {
        bail!("setting {email}'s password: {}", r.status());
    }
    let r = post(
        "/api/v1/session".into(),
        json!({ "email": email, "password": password }),
    )
    .await?;
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(String::from)
        .context("signing in gave no session")?;
    let session: Value = r.json().await?;
    let csrf = session["csrf_token"].as_str().unwrap_or_default().to_string();
    let as_them = |path: &str, body: Value| {
        http.post(format!("{}{path}", base))
            .header(reqwest::header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let enrolment: Value = as_them("/api/v1/me/totp", json!({})).await?.json().await?;
    let key = enrolment["secret"]
        .as_str()
        .context("no second-factor key")?
        .to_string();
    let now = chrono::Utc::now().timestamp() as u64;
    let code = crate::accounts::second_factor::code_at(&key, now).context("an unreadable key")?;
    let r = as_them("/api/v1/me/totp/confirm", json!({ "code": code })).await?;
    if !r.status().is_success() {
        bail!("turning on {email}'s second factor: {}", r.status());
    }
    Ok(format!("  {what:<20} {email:<32} password \"{password}\"   key {key}"))
}
