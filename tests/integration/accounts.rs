//! People: invitations, passwords, sign-in, sessions, the second factor and the audit of it
//! all, through the real binary, its emails and its pages.

use reqwest::header;
use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::on_both_databases;

const GOOD: &str = "copper lantern drifts north";
const GOOD_2: &str = "violet harbour sings twice";

/// A person signed in: the session cookie and its CSRF token.
struct Person {
    cookie: String,
    csrf: String,
}

/// `vfc account create …`; returns the invitation link it prints last.
fn invite_cli(app: &TestApp, email: &str, name: &str, role: &str, place: &[&str]) -> String {
    let mut args = vec!["account", "create", "--email", email, "--name", name, "--role", role];
    args.extend_from_slice(place);
    app.cli_last_line(&args)
}

/// The secret of the `kind` link (`/invite/`, `/reset/`) in the last such email to `to`.
async fn emailed_link(app: &TestApp, to: &str, kind: &str) -> String {
    app.eventually(&format!("a {kind} link emailed to {to}"), || async {
        app.emails()
            .iter()
            .rev()
            .filter(|m| m.to_lowercase().contains(&to.to_lowercase()))
            .find_map(|m| {
                let at = m.find(kind)? + kind.len();
                Some(m[at..at + 64].to_string())
            })
            .ok_or_else(|| "not yet".to_string())
    })
    .await
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app.http.post(app.url(path)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn accept(app: &TestApp, token: &str, password: &str) -> (u16, Value) {
    post_json(
        app,
        &format!("/api/v1/invitations/{token}"),
        json!({ "password": password }),
    )
    .await
}

async fn sign_in_with(app: &TestApp, body: Value) -> (u16, Value, Option<Person>) {
    let r = app
        .http
        .post(app.url("/api/v1/session"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let person = cookie.map(|cookie| Person {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap_or_default().to_string(),
    });
    (status, body, person)
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Person {
    let (status, body, p) = sign_in_with(app, json!({"email": email, "password": password})).await;
    assert_eq!(status, 200, "{body}");
    p.unwrap()
}

/// Sends as a person; `csrf` says whether to send the CSRF header.
async fn send(app: &TestApp, p: &Person, method: &str, path: &str, body: Option<Value>, csrf: bool) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(m, app.url(path)).header(header::COOKIE, &p.cookie);
    if csrf {
        req = req.header("x-csrf-token", &p.csrf);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The code an authenticator app shows `offset` seconds from now, for the `otpauth://` URI the
/// service gave (read as an app reads it).
fn code(uri: &str, offset: i64) -> String {
    let totp = totp_rs::Totp::from_url(uri).expect("an otpauth URI an app can read");
    let at = (chrono::Utc::now().timestamp() + offset) as u64;
    totp.generate(at).to_string()
}

/// Enrols a second factor; returns its URI, the recovery codes and the code it used.
async fn enrol(app: &TestApp, p: &Person) -> (String, Vec<String>, String) {
    let (status, e) = send(app, p, "POST", "/api/v1/me/totp", None, true).await;
    assert_eq!(status, 200, "{e}");
    let uri = e["otpauth_uri"].as_str().unwrap().to_string();
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"), "a QR code image");
    let first = code(&uri, 0);
    let (status, done) = send(
        app,
        p,
        "POST",
        "/api/v1/me/totp/confirm",
        Some(json!({ "code": first })),
        true,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let codes: Vec<String> = done["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (uri, codes, first)
}

/// A state admin from the command line, signed in with a second factor.
async fn admin(app: &TestApp) -> Person {
    invite_cli(app, "ada.admin@state.example", "Ada Admin", "state-admin", &[]);
    let link = emailed_link(app, "ada.admin@state.example", "/invite/").await;
    assert_eq!(accept(app, &link, GOOD).await.0, 204);
    let p = sign_in(app, "ada.admin@state.example", GOOD).await;
    enrol(app, &p).await;
    p
}

/// Invites through the API as `by`; returns the new account.
async fn invite(app: &TestApp, by: &Person, email: &str, name: &str, grant: Value) -> Value {
    let (status, body) = send(
        app,
        by,
        "POST",
        "/api/v1/accounts",
        Some(json!({"email": email, "name": name, "grants": [grant]})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("invitation_url").is_none(),
        "the link goes to the person only: {body}"
    );
    body.clone()
}

/// An invited person who set their password from the emailed link and signed in.
async fn joined(app: &TestApp, email: &str, password: &str) -> Person {
    let link = emailed_link(app, email, "/invite/").await;
    assert_eq!(accept(app, &link, password).await.0, 204);
    sign_in(app, email, password).await
}

async fn sets_program(app: &TestApp, accounts: Value) {
    let mut program = app.get("/api/v1/program").await;
    for (k, v) in accounts.as_object().unwrap() {
        program["accounts"][k] = v.clone();
    }
    let (status, body) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{body}");
}

async fn a_state_admin_invites_a_coordinator_who_enrols_and_invites_staff_who_see_only_their_location(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    for s in ["A", "B"] {
        app.create_location("012345", s).await;
    }
    app.create_location("054321", "A").await;
    invite_cli(&app, "ada.admin@state.example", "Ada Admin", "state-admin", &[]);
    let link = emailed_link(&app, "ada.admin@state.example", "/invite/").await;
    assert_eq!(accept(&app, &link, GOOD).await.0, 204);
    let (status, signed, admin) =
        sign_in_with(&app, json!({"email": "ADA.Admin@state.example ", "password": GOOD})).await;
    assert_eq!(status, 200, "the email is compared after normalisation: {signed}");
    assert_eq!(signed["second_factor_setup_required"], true);
    let admin = admin.unwrap();
    // Until enrolled, a state admin can do nothing else.
    let (status, body) = send(&app, &admin, "GET", "/api/v1/locations", None, true).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("mfa_required")),
        "{body}"
    );
    enrol(&app, &admin).await;

    invite(
        &app,
        &admin,
        "cora@clinic.example",
        "Cora Coordinator",
        json!({"role": "vfc-coordinator", "pin": "012345"}),
    )
    .await;
    let cora = joined(&app, "cora@clinic.example", GOOD_2).await;
    enrol(&app, &cora).await;
    for (grant, why) in [
        (json!({"role": "state-viewer"}), "a state role"),
        (json!({"role": "clinic-staff", "location": "054321A"}), "another PIN"),
    ] {
        let (status, body) = send(
            &app,
            &cora,
            "POST",
            "/api/v1/accounts",
            Some(json!({"email": "x@clinic.example", "name": "X", "grants": [grant]})),
            true,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("scope")),
            "{why}: {body}"
        );
    }
    invite(
        &app,
        &cora,
        "sam@clinic.example",
        "Sam Staff",
        json!({"role": "clinic-staff", "location": "012345B"}),
    )
    .await;
    let sam = joined(&app, "sam@clinic.example", "quiet meadow under seven moons").await;
    let (status, list) = send(&app, &sam, "GET", "/api/v1/locations", None, false).await;
    assert_eq!(status, 200, "{list}");
    let codes: Vec<&str> = list["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["012345B"]);
    let (status, _) = send(&app, &sam, "GET", "/api/v1/locations/012345A", None, false).await;
    assert_eq!(status, 404);
    // Staff manage no accounts, and do not change who the location's coordinators are.
    let (status, _) = send(&app, &sam, "GET", "/api/v1/accounts", None, false).await;
    assert_eq!(status, 403);
    let mut b = crate::harness::location_body("012345", "B");
    let o = b.as_object_mut().unwrap();
    o.remove("pin");
    o.remove("suffix");
    let (status, body) = send(&app, &sam, "PUT", "/api/v1/locations/012345B", Some(b), true).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("scope")), "{body}");
}

async fn weak_passwords_are_refused_and_a_used_invitation_link_is_dead(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    invite_cli(&app, "m.okafor@clinic.example", "Margaret Okafor", "state-viewer", &[]);
    let link = emailed_link(&app, "m.okafor@clinic.example", "/invite/").await;
    for (pw, what) in [
        ("short-one", "at least 15"),
        ("passwordpassword123", "too easy to guess"),
        ("okafor-tundra-cello-88", "name or email"),
    ] {
        let (status, body) = accept(&app, &link, pw).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("weak_password")),
            "{pw}: {body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(what),
            "{pw}: {body}"
        );
    }
    assert_eq!(accept(&app, &link, GOOD).await.0, 204);
    let used = accept(&app, &link, GOOD_2).await;
    let never = accept(&app, &"0".repeat(64), GOOD_2).await;
    assert_eq!(used.0, 404);
    assert_eq!(used.1["error"]["code"], "expired_link");
    assert_eq!(used, never, "a used link answers exactly as one that never existed");
}

async fn a_reset_for_an_unknown_email_answers_exactly_like_a_known_one(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    invite_cli(&app, "kim@clinic.example", "Kim Known", "state-viewer", &[]);
    let link = emailed_link(&app, "kim@clinic.example", "/invite/").await;
    assert_eq!(accept(&app, &link, GOOD).await.0, 204);
    let before_reset = sign_in(&app, "kim@clinic.example", GOOD).await;
    let unknown = post_json(
        &app,
        "/api/v1/password-resets",
        json!({"email": "nobody@clinic.example"}),
    )
    .await;
    let known = post_json(&app, "/api/v1/password-resets", json!({"email": "kim@clinic.example"})).await;
    assert_eq!(known.0, 202);
    assert_eq!(unknown, known);
    let reset = emailed_link(&app, "kim@clinic.example", "/reset/").await;
    // Sent after the unknown email's request was answered: only the known one got mail.
    assert_eq!(app.emails_with("Reset your vfc-monitor password").len(), 1);
    assert!(app.emails_with("nobody@clinic.example").is_empty());
    let (status, _) = post_json(
        &app,
        &format!("/api/v1/password-resets/{reset}"),
        json!({"password": GOOD_2}),
    )
    .await;
    assert_eq!(status, 204);
    sign_in(&app, "kim@clinic.example", GOOD_2).await;
    let (status, _, _) = sign_in_with(&app, json!({"email": "kim@clinic.example", "password": GOOD})).await;
    assert_eq!(status, 401, "the old password is gone");
    let (status, _) = send(&app, &before_reset, "GET", "/api/v1/me", None, false).await;
    assert_eq!(status, 401, "a new password ends the sessions open before it");
}

async fn a_wrong_password_answers_alike_for_a_known_and_an_unknown_email(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    invite_cli(&app, "kim@clinic.example", "Kim Known", "state-viewer", &[]);
    let link = emailed_link(&app, "kim@clinic.example", "/invite/").await;
    assert_eq!(accept(&app, &link, GOOD).await.0, 204);
    let (s1, b1, c1) = sign_in_with(&app, json!({"email": "kim@clinic.example", "password": GOOD_2})).await;
    let (s2, b2, c2) = sign_in_with(&app, json!({"email": "nobody@clinic.example", "password": GOOD_2})).await;
    assert_eq!((s1, &b1), (401, &b2), "{b1} / {b2}");
    assert_eq!(s2, 401);
    assert_eq!(b1["error"]["code"], "invalid_credentials");
    assert!(c1.is_none() && c2.is_none(), "no session cookie for a failure");
}

async fn after_five_failures_the_right_password_waits_out_the_delay_and_it_is_audited(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    // A test-sized delay: 2 seconds instead of 1, 2, 4… minutes.
    sets_program(&app, json!({"failure_delay_cap_minutes": 0.034})).await;
    app.create_location("012345", "A").await;
    invite_cli(
        &app,
        "sam@clinic.example",
        "Sam Staff",
        "clinic-staff",
        &["--location", "012345A"],
    );
    let link = emailed_link(&app, "sam@clinic.example", "/invite/").await;
    assert_eq!(accept(&app, &link, GOOD).await.0, 204);
    for _ in 0..5 {
        let (status, _, _) = sign_in_with(&app, json!({"email": "sam@clinic.example", "password": GOOD_2})).await;
        assert_eq!(status, 401);
    }
    let (status, body, _) = sign_in_with(&app, json!({"email": "sam@clinic.example", "password": GOOD})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials")),
        "refused during the delay: {body}"
    );
    app.eventually("the right password accepted once the delay has passed", || async {
        let (status, body, _) = sign_in_with(&app, json!({"email": "sam@clinic.example", "password": GOOD})).await;
        if status == 200 {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
    let failed = app.get("/api/v1/audit?action=session.sign_in_failed").await;
    assert_eq!(failed["audit"].as_array().unwrap().len(), 5, "{failed}");
    assert_eq!(failed["audit"][0]["client_addr"], "127.0.0.1");
    let delayed = app.get("/api/v1/audit?action=session.sign_in_delayed").await;
    assert!(!delayed["audit"].as_array().unwrap().is_empty(), "{delayed}");
    assert!(app.metric("vfc_sign_in_failures_total").await >= 5.0);
    assert!(app.metric("vfc_sign_in_throttled_total").await >= 1.0);
}

async fn a_cookie_write_needs_the_csrf_token_and_a_bearer_write_does_not(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    invite_cli(
        &app,
        "sam@clinic.example",
        "Sam Staff",
        "clinic-staff",
        &["--location", "012345A"],
    );
    let sam = joined(&app, "sam@clinic.example", GOOD).await;
    let sign = |day: &str| format!("/api/v1/units/{unit}/daily/{day}/sign");
    let (status, body) = send(
        &app,
        &sam,
        "POST",
        &sign("2026-11-02"),
        Some(json!({"note": "checked"})),
        false,
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("csrf")), "{body}");
    let (status, body) = send(
        &app,
        &sam,
        "POST",
        &sign("2026-11-02"),
        Some(json!({"note": "checked"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .send_as(&app.token, "POST", &sign("2026-11-03"), json!({"note": "checked"}))
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn clinic_staff_record_checks_but_change_nothing_of_the_registry_accounts_or_tokens(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    invite_cli(
        &app,
        "sam@clinic.example",
        "Sam Staff",
        "clinic-staff",
        &["--location", "012345A"],
    );
    let sam = joined(&app, "sam@clinic.example", GOOD).await;
    let refused = [
        (
            "POST",
            "/api/v1/locations/012345A/units".to_string(),
            json!({"name": "Back fridge", "kind": "refrigerator"}),
        ),
        ("PUT", format!("/api/v1/units/{unit}/rules"), json!({"rules": null})),
        (
            "POST",
            "/api/v1/locations/012345A/gateways".to_string(),
            json!({"id": "gw-sam-1", "name": "x"}),
        ),
        (
            "POST",
            "/api/v1/tokens".to_string(),
            json!({"name": "EHR", "role": "clinic-staff", "location": "012345A"}),
        ),
    ];
    for (method, path, body) in refused {
        let (status, out) = send(&app, &sam, method, &path, Some(body), true).await;
        assert_eq!(
            (status, out["error"]["code"].as_str()),
            (403, Some("scope")),
            "{method} {path}: {out}"
        );
    }
    let (status, out) = send(&app, &sam, "GET", "/api/v1/tokens", None, false).await;
    assert_eq!(status, 403, "{out}");
    // Staff at 012345A and backup coordinator at 012345B: a coordinator's change only at B.
    app.create_location("012345", "B").await;
    let ada = admin(&app).await;
    let id = app.get("/api/v1/accounts").await["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "sam@clinic.example")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let grants = json!({"grants": [{"role": "clinic-staff", "location": "012345A"},
        {"role": "backup-coordinator", "location": "012345B"}]});
    let (status, out) = send(
        &app,
        &ada,
        "PATCH",
        &format!("/api/v1/accounts/{id}"),
        Some(grants),
        true,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let sam = sign_in(&app, "sam@clinic.example", GOOD).await;
    enrol(&app, &sam).await;
    let fridge = json!({"name": "Back fridge", "kind": "refrigerator"});
    let (status, out) = send(
        &app,
        &sam,
        "POST",
        "/api/v1/locations/012345A/units",
        Some(fridge.clone()),
        true,
    )
    .await;
    assert_eq!(status, 404, "as staff at 012345A: {out}");
    let (status, out) = send(
        &app,
        &sam,
        "POST",
        "/api/v1/locations/012345B/units",
        Some(fridge),
        true,
    )
    .await;
    assert_eq!(status, 201, "as backup coordinator at 012345B: {out}");
    // What staff do, they may.
    let (status, out) = send(
        &app,
        &sam,
        "POST",
        &format!("/api/v1/units/{unit}/daily/2026-11-02/sign"),
        Some(json!({"note": "min 3.9, max 5.1"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{out}");
}

async fn disabling_an_account_ends_its_session_and_its_locations_token_keeps_working(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    let ada = admin(&app).await;
    let cora_account = invite(
        &app,
        &ada,
        "cora@clinic.example",
        "Cora Coordinator",
        json!({"role": "vfc-coordinator", "pin": "012345"}),
    )
    .await;
    let cora = joined(&app, "cora@clinic.example", GOOD_2).await;
    enrol(&app, &cora).await;
    let (status, made) = send(
        &app,
        &cora,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "EHR feed", "role": "clinic-staff", "location": "012345A"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let ehr = made["secret"].as_str().unwrap().to_string();
    assert_eq!(
        made["token"]["created_by"].as_str().unwrap(),
        format!("account:{}:cora@clinic.example", cora_account["id"])
    );

    let id = cora_account["id"].as_i64().unwrap();
    let (status, body) = send(
        &app,
        &ada,
        "POST",
        &format!("/api/v1/accounts/{id}/disable"),
        Some(json!({"reason": "left the clinic"})),
        true,
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("disabled")), "{body}");
    let (status, _) = send(&app, &cora, "GET", "/api/v1/me", None, false).await;
    assert_eq!(status, 401, "the open session ended");
    let (status, body) = app.get_as(&ehr, "/api/v1/locations/012345A").await;
    assert_eq!(status, 200, "the location's token keeps working: {body}");
    app.wait_email_with("An API token's maker was disabled").await;
    let tokens = app.get("/api/v1/locations/012345A/tokens").await;
    let listed = &tokens["tokens"][0];
    assert_eq!(
        (listed["name"].as_str(), listed["account_id"].as_i64()),
        (Some("EHR feed"), Some(id))
    );
    assert!(listed["last_used_at"].is_string(), "{listed}");
    let audit = app
        .get(&format!("/api/v1/audit?object=account:{id}&action=account.disable"))
        .await;
    assert_eq!(
        audit["audit"][0]["actor"].as_str().unwrap(),
        "account:1:ada.admin@state.example"
    );
}

async fn an_idle_session_ends_and_so_does_a_signed_out_one(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    invite_cli(
        &app,
        "sam@clinic.example",
        "Sam Staff",
        "clinic-staff",
        &["--location", "012345A"],
    );
    let sam = joined(&app, "sam@clinic.example", GOOD).await;
    let (status, _) = send(&app, &sam, "DELETE", "/api/v1/session", None, true).await;
    assert_eq!(status, 204);
    let (status, _) = send(&app, &sam, "GET", "/api/v1/me", None, false).await;
    assert_eq!(status, 401, "signed out");

    // A test-sized idle time: 1.2 seconds.
    sets_program(&app, json!({"session_idle_minutes": 0.02})).await;
    let sam = sign_in(&app, "sam@clinic.example", GOOD).await;
    let (status, _) = send(&app, &sam, "GET", "/api/v1/me", None, false).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let (status, _) = send(&app, &sam, "GET", "/api/v1/me", None, false).await;
    assert_eq!(status, 401, "idle past the limit");
}

async fn a_totp_code_is_accepted_once_and_a_recovery_code_once(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    invite_cli(&app, "vic@state.example", "Vic Viewer", "state-viewer", &[]);
    let vic = joined(&app, "vic@state.example", GOOD).await;
    let (uri, codes, used) = enrol(&app, &vic).await;
    let again = json!({"email": "vic@state.example", "password": GOOD, "totp": used});
    assert_eq!(
        sign_in_with(&app, again).await.0,
        401,
        "the code used to enrol is spent"
    );
    let (status, _, _) = sign_in_with(&app, json!({"email": "vic@state.example", "password": GOOD})).await;
    assert_eq!(status, 401, "a code is needed once the second factor is on");
    let next = json!({"email": "vic@state.example", "password": GOOD, "totp": code(&uri, 30)});
    let (status, body, _) = sign_in_with(&app, next).await;
    assert_eq!(status, 200, "{body}");
    let recovery = json!({"email": "vic@state.example", "password": GOOD, "recovery_code": codes[3]});
    assert_eq!(sign_in_with(&app, recovery.clone()).await.0, 200);
    assert_eq!(sign_in_with(&app, recovery).await.0, 401, "a recovery code works once");
}

async fn wrong_codes_while_setting_up_a_second_factor_wait_like_failed_sign_ins(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    sets_program(&app, json!({"failure_delay_cap_minutes": 0.034})).await;
    invite_cli(&app, "vic@state.example", "Vic Viewer", "state-viewer", &[]);
    let vic = joined(&app, "vic@state.example", GOOD).await;
    let (status, e) = send(&app, &vic, "POST", "/api/v1/me/totp", None, true).await;
    assert_eq!(status, 200, "{e}");
    let uri = e["otpauth_uri"].as_str().unwrap().to_string();
    let confirm = |code: String| {
        let (app, vic) = (&app, &vic);
        async move {
            send(
                app,
                vic,
                "POST",
                "/api/v1/me/totp/confirm",
                Some(json!({ "code": code })),
                true,
            )
            .await
        }
    };
    for _ in 0..5 {
        let (status, body) = confirm("000000".into()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_code")),
            "{body}"
        );
    }
    let (status, body) = confirm(code(&uri, 0)).await;
    assert_eq!(status, 400, "even the right code waits: {body}");
    app.eventually("the right code accepted once the delay has passed", || async {
        let (status, body) = confirm(code(&uri, 0)).await;
        if status == 200 {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
}

async fn a_state_admin_resets_a_lost_second_factor_and_the_person_enrols_again(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    let ada = admin(&app).await;
    let cora_account = invite(
        &app,
        &ada,
        "cora@clinic.example",
        "Cora Coordinator",
        json!({"role": "vfc-coordinator", "pin": "012345"}),
    )
    .await;
    let cora = joined(&app, "cora@clinic.example", GOOD_2).await;
    enrol(&app, &cora).await;
    let id = cora_account["id"].as_i64().unwrap();
    // Cora may not reset her own; the admin may.
    let (status, _) = send(
        &app,
        &cora,
        "POST",
        &format!("/api/v1/accounts/{id}/totp/reset"),
        None,
        true,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = send(
        &app,
        &ada,
        "POST",
        &format!("/api/v1/accounts/{id}/totp/reset"),
        None,
        true,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = send(&app, &cora, "GET", "/api/v1/me", None, false).await;
    assert_eq!(status, 401, "her sessions ended");
    let (status, signed, again) = sign_in_with(&app, json!({"email": "cora@clinic.example", "password": GOOD_2})).await;
    assert_eq!(
        (status, &signed["second_factor_setup_required"]),
        (200, &json!(true)),
        "{signed}"
    );
    enrol(&app, &again.unwrap()).await;
    let audit = app
        .get(&format!("/api/v1/audit?object=account:{id}&action=second_factor.reset"))
        .await;
    assert_eq!(
        audit["audit"][0]["actor"], "account:1:ada.admin@state.example",
        "{audit}"
    );
}

/// GETs a page; returns its status, headers and HTML.
async fn page(app: &TestApp, path: &str, cookie: Option<&str>) -> (u16, header::HeaderMap, String) {
    let mut req = app.http.get(app.url(path));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let r = req.send().await.unwrap();
    (
        r.status().as_u16(),
        r.headers().clone(),
        unescape_slash(r.text().await.unwrap()),
    )
}

/// The template engine writes `/` as `&#x2f;` in values; a browser reads both alike.
fn unescape_slash(html: String) -> String {
    html.replace("&#x2f;", "/")
}

async fn post_form(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> (u16, header::HeaderMap, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.post(app.url(path)).form(form);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let r = req.send().await.unwrap();
    (
        r.status().as_u16(),
        r.headers().clone(),
        unescape_slash(r.text().await.unwrap()),
    )
}

async fn the_sign_in_invitation_reset_and_enrolment_pages_render_keep_input_and_escape(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (status, headers, html) = page(&app, "/login?next=/units/7", None).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("action=\"/api/v1/session\"") && html.contains("value=\"/units/7\""),
        "{html}"
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");

    let (status, _, html) = post_form(
        &app,
        "/api/v1/session",
        &[
            ("email", "typed@clinic.example"),
            ("password", "wrong"),
            ("next", "/units/7"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        html.contains("value=\"typed@clinic.example\""),
        "the email is kept: {html}"
    );
    assert!(html.contains("role=\"alert\""), "{html}");

    invite_cli(
        &app,
        "lee@clinic.example",
        "<script>alert(1)</script> Lee",
        "state-viewer",
        &[],
    );
    let link = emailed_link(&app, "lee@clinic.example", "/invite/").await;
    let (status, _, html) = page(&app, &format!("/invite/{link}"), None).await;
    assert_eq!(status, 200);
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
    let (status, _, html) = post_form(
        &app,
        &format!("/api/v1/invitations/{link}"),
        &[("password", "short")],
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        html.contains("at least 15 characters") && html.contains("Set my password"),
        "{html}"
    );
    let (status, headers, _) = post_form(
        &app,
        &format!("/api/v1/invitations/{link}"),
        &[("password", GOOD)],
        None,
    )
    .await;
    assert_eq!(
        (status, headers[header::LOCATION].to_str().unwrap()),
        (303, "/login?notice=password-set")
    );
    let (used_status, _, used) = page(&app, &format!("/invite/{link}"), None).await;
    let (never_status, _, never) = page(&app, &format!("/reset/{}", "f".repeat(64)), None).await;
    assert_eq!(
        (used_status, &used),
        (never_status, &never),
        "a used link shows the page of one that never existed"
    );

    let (status, _, html) = page(&app, "/reset", None).await;
    assert!(
        status == 200 && html.contains("action=\"/api/v1/password-resets\""),
        "{html}"
    );

    // Signing in by the form sets the cookie and, the role needing a second factor, goes to it.
    let (status, headers, _) = post_form(
        &app,
        "/api/v1/session",
        &[("email", "lee@clinic.example"), ("password", GOOD), ("next", "/")],
        None,
    )
    .await;
    assert_eq!((status, headers[header::LOCATION].to_str().unwrap()), (303, "/me/totp"));
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let (status, _, html) = page(&app, "/me/totp", Some(&cookie)).await;
    assert_eq!(status, 200);
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, _, html) = post_form(&app, "/api/v1/me/totp", &[], Some(&cookie)).await;
    assert_eq!(status, 403, "a form without the CSRF field is refused: {html}");
    let (status, _, html) = post_form(&app, "/api/v1/me/totp", &[("csrf_token", &csrf)], Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("The 6-digit code"), "{html}");
    let (status, _, html) = post_form(
        &app,
        "/api/v1/me/totp/confirm",
        &[("csrf_token", &csrf), ("code", "12345x")],
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        html.contains("value=\"12345x\"") && html.contains("role=\"alert\""),
        "the code is kept: {html}"
    );
}

async fn an_account_unused_past_the_inactive_days_is_disabled_and_its_person_still_gets_alerts(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    assert!(unit > 0);
    // The location's primary contact has an account.
    let pat = "primary.012345A@example.org";
    invite_cli(&app, pat, "Pat Primary", "clinic-staff", &["--location", "012345A"]);
    let link = emailed_link(&app, pat, "/invite/").await;
    assert_eq!(accept(&app, &link, GOOD).await.0, 204);
    sign_in(&app, pat, GOOD).await;
    let id = app.get("/api/v1/accounts").await["accounts"][0]["id"].as_i64().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/accounts/{id}")).await["contact_of"][0]["contact"],
        "primary"
    );
    let location = app.get("/api/v1/locations/012345A").await;
    assert_eq!(
        location["contacts"]["primary"]["account_id"], id,
        "linked in both places: {location}"
    );
    // A test-sized limit: 3 seconds; the service looks again at once when it starts.
    sets_program(&app, json!({"inactive_days": 0.000035})).await;
    let mut app = app;
    app.stop();
    app.start().await;
    let account = app
        .eventually("the unused account disabled", || async {
            let a = app.get(&format!("/api/v1/accounts/{id}")).await;
            if a["status"] == "disabled" {
                Ok(a)
            } else {
                Err(a.to_string())
            }
        })
        .await;
    assert!(
        account["disabled_reason"].as_str().unwrap().contains("not signed in"),
        "{account}"
    );
    let told = app.wait_email_with("disabled after inactivity").await;
    assert!(
        told.iter().any(|m| m.to_lowercase().contains(&pat.to_lowercase())),
        "the person is told"
    );
    assert!(
        told.iter().any(|m| m.contains("backup.012345A@example.org")),
        "their coordinators are told"
    );
    let (status, _, _) = sign_in_with(&app, json!({"email": pat, "password": GOOD})).await;
    assert_eq!(status, 401);
    // Alerts do not depend on signing in.
    app.freezing("LT-1").await;
    let alerts = app.wait_email_with("VFC temperature alert: 012345A").await;
    assert!(
        alerts.iter().any(|m| m.contains(pat)),
        "the disabled person still gets the alert"
    );
}

async fn a_new_primary_coordinator_is_recorded_and_emailed_to_the_state(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let mut program = app.get("/api/v1/program").await;
    program["state_coordinators"] = json!([{"name": "Sue State", "email": "sue@health.state.example"}]);
    let (status, body) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{body}");
    app.create_location("012345", "A").await;
    let mut location = crate::harness::location_body("012345", "A");
    let o = location.as_object_mut().unwrap();
    o.remove("pin");
    o.remove("suffix");
    location["contacts"]["primary"] =
        json!({"name": "Nia New", "email": "nia@clinic.example", "phone": "410-555-0199"});
    let clinic = app.create_token(&["--role", "vfc-coordinator", "--location", "012345A", "--name", "clinic"]);
    let (status, body) = app.send_as(&clinic, "PUT", "/api/v1/locations/012345A", location).await;
    assert_eq!(status, 200, "{body}");
    let all = app.wait_email_with("VFC coordinator change: 012345A").await;
    let mail = all
        .iter()
        .find(|m| m.contains("VFC coordinator change: 012345A"))
        .unwrap();
    assert!(
        mail.contains("sue@health.state.example") && mail.contains("Nia New"),
        "{mail}"
    );
    assert!(mail.contains("Pat Primary"), "the one replaced is named: {mail}");
    let audit = app
        .get("/api/v1/audit?object=location:012345A&action=location.update")
        .await;
    let change = &audit["audit"][0]["changes"]["primary"];
    assert_eq!(
        (change[0]["name"].as_str(), change[1]["name"].as_str()),
        (Some("Pat Primary"), Some("Nia New")),
        "{audit}"
    );
    assert_eq!(
        audit["audit"][0]["actor"].as_str().unwrap().split(':').nth(2),
        Some("clinic")
    );
}

on_both_databases!(
    clinic_staff_record_checks_but_change_nothing_of_the_registry_accounts_or_tokens,
    a_state_admin_resets_a_lost_second_factor_and_the_person_enrols_again,
    wrong_codes_while_setting_up_a_second_factor_wait_like_failed_sign_ins,
    an_account_unused_past_the_inactive_days_is_disabled_and_its_person_still_gets_alerts,
    a_new_primary_coordinator_is_recorded_and_emailed_to_the_state,
    a_state_admin_invites_a_coordinator_who_enrols_and_invites_staff_who_see_only_their_location,
    weak_passwords_are_refused_and_a_used_invitation_link_is_dead,
    a_reset_for_an_unknown_email_answers_exactly_like_a_known_one,
    a_wrong_password_answers_alike_for_a_known_and_an_unknown_email,
    after_five_failures_the_right_password_waits_out_the_delay_and_it_is_audited,
    a_cookie_write_needs_the_csrf_token_and_a_bearer_write_does_not,
    disabling_an_account_ends_its_session_and_its_locations_token_keeps_working,
    an_idle_session_ends_and_so_does_a_signed_out_one,
    a_totp_code_is_accepted_once_and_a_recovery_code_once,
    the_sign_in_invitation_reset_and_enrolment_pages_render_keep_input_and_escape,
);
