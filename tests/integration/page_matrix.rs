//! The pages' authorization matrix: every page route, what nobody gets (sent to sign in, and
//! back), what another PIN's clinic gets (a "Not found" page), and what 012345's own clinic
//! gets; every form route, that it needs a person's session and the page's CSRF token, and that
//! another PIN's person gets "Not found". A page route in `src/web/` that these lists do not
//! name is a failure: every new page is placed here on purpose.

use serde_json::json;

use crate::harness::{Broker, Database, TestApp};

/// What another PIN's clinic gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Other {
    /// 200, a list of its own with nothing of 012345A.
    Listed,
    /// 404: it cannot learn that the thing exists.
    Hidden,
    /// 403: a page for people who may manage accounts or tokens.
    Forbidden,
}

use Other::{Forbidden, Hidden, Listed};

/// Pages read with a token or a session: (path pattern, what another PIN's clinic token gets,
/// what 012345's own clinic token gets).
const PAGES: &[(&str, Other, u16)] = &[
    ("/locations/{code}", Hidden, 200),
    ("/locations/{code}/inventory", Hidden, 200),
    ("/locations/{code}/orders", Hidden, 200),
    ("/locations/{code}/receipts", Hidden, 200),
    ("/locations/{code}/wastage", Hidden, 200),
    ("/locations/{code}/returns", Hidden, 200),
    ("/locations/{code}/transfers", Hidden, 200),
    ("/locations/{code}/reconciliations", Hidden, 200),
    ("/locations/{code}/decrement-exceptions", Hidden, 200),
    ("/locations/{code}/borrowing", Hidden, 200),
    ("/locations/{code}/gateways", Hidden, 200),
    ("/units/{id}", Hidden, 200),
    ("/units/{id}/daily", Hidden, 200),
    ("/units/{id}/daily.csv", Hidden, 200),
    ("/units/{id}/chart.svg", Hidden, 200),
    ("/units/{id}/chart.csv", Hidden, 200),
    ("/excursions/{id}", Hidden, 200),
    ("/orders/{id}", Hidden, 200),
    ("/orders", Listed, 200),
    // People and tokens are managed by people signed in: a token is refused (as in the API).
    ("/accounts", Forbidden, 403),
    ("/accounts/{id}", Hidden, 404),
    ("/tokens", Forbidden, 403),
    ("/audit", Listed, 200),
];

/// Forms: they need a person's session and the page's CSRF token. Another PIN's person gets
/// "Not found" (404), or for what makes something new at their own place (an invitation, a
/// token) the refusal that says why (403 or 422), never a change at 012345A.
const FORMS: &[&str] = &[
    "/units/{id}/daily/{date}/sign",
    "/excursions/{id}/acknowledge",
    "/excursions/{id}/review",
    "/locations/{code}/orders",
    "/locations/{code}/no-doses-report",
    "/locations/{code}/receipts",
    "/locations/{code}/wastage",
    "/locations/{code}/returns",
    "/locations/{code}/transfers",
    "/locations/{code}/reconciliations",
    "/decrement-exceptions/{id}/resolve",
    "/borrowing/{id}",
    "/orders/{id}/submit",
    "/orders/{id}/approve",
    "/orders/{id}/deny",
    "/orders/{id}/return",
    "/orders/{id}/cancel",
    "/orders/{id}/receive",
    "/orders/export",
    "/shipments",
    "/accounts",
    "/accounts/{id}",
    "/accounts/{id}/disable",
    "/accounts/{id}/enable",
    "/accounts/{id}/totp/reset",
    "/tokens",
    "/tokens/{id}/revoke",
];

/// Routes anyone may open (their credential is in the link or the form), or that serve a
/// signed-in person only and are tested with the accounts: (method, path).
const OTHERS: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/logout"),
    ("GET", "/reset"),
    ("GET", "/reset/{token}"),
    ("GET", "/invite/{token}"),
    ("GET", "/me/totp"),
    ("GET", "/me"),
    ("POST", "/me/password"),
    ("GET", "/static/site.css"),
    ("GET", "/locations"),
    ("GET", "/ack/{token}"),
    ("POST", "/ack/{token}"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
];

const SOURCES: &[&str] = &[
    include_str!("../../src/web/pages.rs"),
    include_str!("../../src/web/state_home.rs"),
    include_str!("../../src/web/unit_pages.rs"),
    include_str!("../../src/web/location_pages.rs"),
    include_str!("../../src/web/excursion_pages.rs"),
    include_str!("../../src/web/order_pages.rs"),
    include_str!("../../src/web/order_page.rs"),
    include_str!("../../src/web/inventory_pages.rs"),
    include_str!("../../src/web/stock_pages.rs"),
    include_str!("../../src/web/count_pages.rs"),
    include_str!("../../src/web/dose_pages.rs"),
    include_str!("../../src/web/transfer_pages.rs"),
    include_str!("../../src/web/device_pages.rs"),
    include_str!("../../src/web/people_pages.rs"),
    include_str!("../../src/web/me_pages.rs"),
    include_str!("../../src/web/audit_pages.rs"),
    include_str!("../../src/web/queue_pages.rs"),
    include_str!("../../src/web/ack.rs"),
    include_str!("../../src/web/ops.rs"),
    include_str!("../../src/web/openapi.rs"),
];

/// Every (method, path) the page modules route.
fn routed() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for src in SOURCES {
        for piece in src.split(".route(\"").skip(1) {
            let path = &piece[..piece.find('"').unwrap()];
            let rest = &piece[..piece.find("\n").unwrap_or(piece.len())];
            for method in ["get", "post", "put", "delete", "patch"] {
                if rest.contains(&format!("{method}(")) {
                    out.push((method.to_uppercase(), path.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn every_page_route_is_in_the_matrix() {
    let routes = routed();
    assert!(routes.len() > 30, "found the routes: {routes:?}");
    for (method, path) in routes {
        let placed = (method == "GET" && PAGES.iter().any(|(p, _, _)| *p == path))
            || (method == "POST" && FORMS.contains(&path.as_str()))
            || OTHERS.contains(&(method.as_str(), path.as_str()));
        assert!(
            placed,
            "{method} {path} is in no list of tests/integration/page_matrix.rs"
        );
    }
}

struct Things {
    unit: i64,
    excursion: i64,
    order: i64,
    /// An account and a token of 012345A.
    account: i64,
    token: i64,
    /// A dose that matched no stock, and one given from the other funding's stock.
    exception: i64,
    borrowing: i64,
}

fn concrete(path: &str, t: &Things) -> String {
    path.replace("{code}", "012345A")
        .replace("{id}/daily/{date}", &format!("{}/daily/2026-11-02", t.unit))
        .replace("/units/{id}", &format!("/units/{}", t.unit))
        .replace("/excursions/{id}", &format!("/excursions/{}", t.excursion))
        .replace("/orders/{id}", &format!("/orders/{}", t.order))
        .replace("/accounts/{id}", &format!("/accounts/{}", t.account))
        .replace("/tokens/{id}", &format!("/tokens/{}", t.token))
        .replace(
            "/decrement-exceptions/{id}",
            &format!("/decrement-exceptions/{}", t.exception),
        )
        .replace("/borrowing/{id}", &format!("/borrowing/{}", t.borrowing))
}

async fn things(app: &TestApp) -> Things {
    let unit = app.fridge().await;
    // Stock, a dose of an unknown lot (queued) and a private patient's dose of VFC stock
    // (borrowing).
    crate::inventory::receive(
        app,
        unit,
        (crate::inventory::ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    for (control, lot, eligibility) in [("Q-1", "NOPE42", "V02"), ("B-1", "X123456", "V01")] {
        let (status, ack) = crate::matrix::hl7(app, &app.token, crate::matrix::vxu(control, lot, eligibility)).await;
        assert!(status == 200 && !ack.contains("MSA|AR"), "{ack}");
    }
    let exception = crate::matrix::first_id(
        app,
        "a queued dose",
        "/api/v1/locations/012345A/decrement-exceptions",
        "exceptions",
    )
    .await;
    let borrowing = crate::matrix::first_id(
        app,
        "a borrowing record",
        "/api/v1/locations/012345A/borrowing",
        "borrowing",
    )
    .await;
    app.freezing("LT-1").await;
    let excursion = app
        .eventually("an excursion", || async {
            let l = app.get("/api/v1/excursions").await;
            l["excursions"][0]["id"].as_i64().ok_or_else(|| l.to_string())
        })
        .await;
    let (status, order) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/orders",
            json!({"lines": [{"ndc": crate::inventory::ROTATEQ, "funding": "vfc", "doses": 10}]}),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    app.cli_last_line(&[
        "account",
        "create",
        "--email",
        "kim.staff@example.org",
        "--name",
        "Kim Staff",
        "--role",
        "clinic-staff",
        "--location",
        "012345A",
    ]);
    let accounts = app.get("/api/v1/accounts").await;
    let account = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "kim.staff@example.org")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    app.create_token(&["--role", "clinic", "--location", "012345A", "--name", "EHR feed"]);
    let tokens = app.get("/api/v1/tokens").await;
    let token = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "EHR feed")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    Things {
        exception,
        borrowing,
        unit,
        excursion,
        order: order["id"].as_i64().unwrap(),
        account,
        token,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_sends_nobody_to_sign_in_and_shows_another_pins_clinic_nothing() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let t = things(&app).await;
    app.create_location("067890", "A").await;
    let other = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "other"]);
    let own = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "own"]);
    let http = no_redirects();
    for (pattern, other_gets, own_gets) in PAGES {
        let path = concrete(pattern, &t);
        let r = http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "nobody: {path}");
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with("/login?next=%2F"), "{path} → {to}");

        let r = http.get(app.url(&path)).bearer_auth(&other).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let expected = match other_gets {
            Listed => 200,
            Hidden => 404,
            Forbidden => 403,
        };
        assert_eq!(status, expected, "another PIN's clinic: {path}: {body}");
        assert!(
            !body.contains("012345A"),
            "another PIN's clinic sees 012345A at {path}: {body}"
        );

        let r = http.get(app.url(&path)).bearer_auth(&own).send().await.unwrap();
        assert_eq!(r.status().as_u16(), *own_gets, "012345's clinic: {path}");
    }
}

/// Clinic staff of `location`, signed in: the session cookie and a page's CSRF token.
async fn signed_in(app: &TestApp, email: &str, location: &str) -> (String, String) {
    let link = app.cli_last_line(&[
        "account",
        "create",
        "--email",
        email,
        "--name",
        "Sam Staff",
        "--role",
        "clinic-staff",
        "--location",
        location,
    ]);
    let token = link.rsplit('/').next().unwrap().to_string();
    let r = app
        .http
        .post(app.url(&format!("/api/v1/invitations/{token}")))
        .json(&json!({"password": "copper lantern drifts north"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = app
        .http
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": email, "password": "copper lantern drifts north"}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = app
        .http
        .get(app.url(&format!("/locations/{location}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = "name=\"csrf_token\" value=\"";
    let at = page.find(needle).expect("a form with the CSRF token") + needle.len();
    (cookie, page[at..at + page[at..].find('"').unwrap()].to_string())
}

async fn post_form(
    http: &reqwest::Client,
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    csrf: &str,
) -> (u16, String) {
    let mut r = http.post(app.url(path));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = if path == "/shipments" {
        let boundary = "vfc-matrix-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.csv\"\r\nContent-Type: text/csv\r\n\r\n\
             order_id,ndc,lot,expires_on,doses,backordered_doses,carrier,tracking_number,ship_date,direct_ship\r\n\
             --{boundary}--\r\n"
        );
        r.header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
    } else if path.starts_with("/decrement-exceptions/") || path.starts_with("/borrowing/") {
        // A whole, valid form naming the sender's own location: only the record's own place
        // may refuse it.
        r.header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf_token={csrf}&code=067890A&dismiss=not+ours&reason=other&note=not+ours"
            ))
    } else {
        r.header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf_token={csrf}&reason=test&since=2026-11-01&doses_0=1&ndc_0=00006-4047-41&funding_0=vfc"
            ))
    };
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let to = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, if status == 303 { to } else { r.text().await.unwrap() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_needs_a_session_and_its_csrf_token_and_hides_another_pins_things() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let t = things(&app).await;
    app.create_location("067890", "A").await;
    let (other_cookie, other_csrf) = signed_in(&app, "other.staff@example.org", "067890A").await;
    let (own_cookie, _) = signed_in(&app, "own.staff@example.org", "012345A").await;
    let http = no_redirects();
    let before = app.get(&format!("/api/v1/orders/{}", t.order)).await;
    for pattern in FORMS {
        let path = concrete(pattern, &t);
        let (status, to) = post_form(&http, &app, &path, None, "").await;
        assert_eq!(status, 303, "nobody: {path}: {to}");
        assert!(to.starts_with("/login?next="), "nobody: {path} → {to}");

        let (status, body) = post_form(&http, &app, &path, Some(&own_cookie), "not-the-token").await;
        assert_eq!(status, 403, "a form without the page's token: {path}: {body}");

        let (status, body) = post_form(&http, &app, &path, Some(&other_cookie), &other_csrf).await;
        if ["/accounts", "/tokens"].contains(&path.as_str()) {
            assert!(
                [403, 422].contains(&status),
                "another PIN's person: {path}: {status} {body}"
            );
        } else {
            assert_eq!(status, 404, "another PIN's person: {path}: {body}");
        }
        assert!(!body.contains("012345A"), "{path}: {body}");
    }
    // Nothing of 012345A changed.
    let after = app.get(&format!("/api/v1/orders/{}", t.order)).await;
    assert_eq!(before["status"], after["status"]);
    let x = app.get(&format!("/api/v1/excursions/{}", t.excursion)).await;
    assert!(x["acknowledged_at"].is_null(), "{x}");
    assert_eq!(x["status"], "open", "{x}");
    let kim = app.get(&format!("/api/v1/accounts/{}", t.account)).await;
    assert_ne!(kim["status"], "disabled", "{kim}");
    let tokens = app.get("/api/v1/tokens").await;
    assert!(
        tokens.to_string().contains("EHR feed"),
        "the token is not revoked: {tokens}"
    );
    let queue = app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    assert_eq!(queue["exceptions"][0]["id"], t.exception, "still queued: {queue}");
    let borrowed = app.get("/api/v1/locations/012345A/borrowing").await;
    assert!(borrowed["borrowing"][0]["reason"].is_null(), "{borrowed}");
}
