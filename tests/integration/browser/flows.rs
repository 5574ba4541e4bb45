//! What a coordinator does in the browser: sign in with a second factor, read the chart, review
//! an excursion; every page fits a phone.

use chrono::{Duration, Utc};
use fantoccini::Locator;
use serde_json::Value;

use super::Browser;
use crate::harness::{Broker, Database, TestApp};

const PASSWORD: &str = "copper lantern drifts north";

/// The code an authenticator app shows for `secret` (`offset` seconds from now).
pub(super) fn code(email: &str, secret: &str, offset: i64) -> String {
    let uri = format!("otpauth://totp/vfc-monitor:{email}?secret={secret}&issuer=vfc-monitor");
    let totp = totp_rs::Totp::from_url_unchecked(uri).expect("the key the page shows");
    totp.generate((Utc::now().timestamp() + offset) as u64).to_string()
}

/// A person invited from the command line (`role`, and `extra` such as `--location 012345A`)
/// who sets a password in the browser and signs in; a state role enrols its second factor on
/// the way. Returns the key of the second factor, when there is one.
pub(super) async fn sign_up(app: &TestApp, b: &Browser, email: &str, role: &str, extra: &[&str]) -> Option<String> {
    let mut args = vec![
        "account",
        "create",
        "--email",
        email,
        "--name",
        "Casey Quinn",
        "--role",
        role,
    ];
    args.extend_from_slice(extra);
    let link = app.cli_last_line(&args);
    let token = link.rsplit('/').next().unwrap();
    b.go(&format!("/invite/{token}")).await;
    b.fill("password", PASSWORD).await;
    b.press("Set my password").await;
    assert!(b.path().await.starts_with("/login"), "{}", b.path().await);
    b.fill("email", email).await;
    b.fill("password", PASSWORD).await;
    b.press("Sign in").await;
    if b.path().await != "/me/totp" {
        return None;
    }
    b.press("Set up a second factor").await;
    let secret =
        b.c.find(Locator::Css("code.secret"))
            .await
            .expect("the key, for typing by hand")
            .text()
            .await
            .unwrap();
    b.fill("code", &code(email, &secret, 0)).await;
    b.press("Turn it on").await;
    assert!(
        b.text().await.contains("Your second factor is on."),
        "{}",
        b.text().await
    );
    b.follow("Continue").await;
    Some(secret)
}

/// An excursion at 012345A's fridge (unit `unit`) that is over: the API's view of it.
async fn excursion_over(app: &TestApp) -> Value {
    app.freezing("LT-1").await;
    let x = app
        .eventually("an excursion", || async {
            let l = app.get("/api/v1/excursions").await;
            l["excursions"][0]["id"]
                .as_i64()
                .map(|_| l["excursions"][0].clone())
                .ok_or_else(|| l.to_string())
        })
        .await;
    let mut p = app.publisher("back").await;
    p.reading("LT-1", &(Utc::now() + Duration::seconds(1)).to_rfc3339(), 4.6)
        .await;
    p.wait_acked(1).await;
    app.eventually("the excursion over", || async {
        let e = app.get(&format!("/api/v1/excursions/{}", x["id"])).await;
        if e["ended_at"].is_string() {
            Ok(e)
        } else {
            Err(e.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_coordinator_signs_in_with_a_second_factor_and_comes_back_to_the_page_asked_for() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let b = Browser::open(&app).await;
    let email = "casey.quinn@state.example";
    let secret = sign_up(&app, &b, email, "state-coordinator", &[])
        .await
        .expect("a state role enrols a second factor before anything else");
    assert_eq!(b.path().await, "/");
    b.press("Sign out").await;

    // A link to a unit, followed while signed out: sign in, with the next code, and land there.
    b.go(&format!("/units/{unit}")).await;
    assert!(b.path().await.starts_with("/login?next="), "{}", b.path().await);
    b.fill("email", email).await;
    b.fill("password", PASSWORD).await;
    b.fill("totp", &code(email, &secret, 30)).await;
    b.press("Sign in").await;
    assert_eq!(b.path().await, format!("/units/{unit}"));
    assert!(b.text().await.contains("Main refrigerator"), "{}", b.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_shaded_excursion_in_the_browser_carries_the_apis_start_and_end() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let x = excursion_over(&app).await;
    let b = Browser::open(&app).await;
    sign_up(
        &app,
        &b,
        "sam.staff@example.org",
        "clinic-staff",
        &["--location", "012345A"],
    )
    .await;
    b.go(&format!("/units/{unit}?window=24h")).await;
    let shape =
        b.c.find(Locator::Css(&format!("svg [data-excursion-id=\"{}\"]", x["id"])))
            .await
            .expect("the excursion shaded on the chart");
    assert_eq!(
        shape.attr("data-start").await.unwrap().as_deref(),
        x["started_at"].as_str()
    );
    assert_eq!(shape.attr("data-end").await.unwrap().as_deref(), x["ended_at"].as_str());
    b.screenshot("unit").await;
}

/// 012345A's fridge holds RotaTeq lot RV-B1 (10 doses) when it freezes: an excursion, over,
/// that put the lot on hold.
async fn excursion_with_a_hold(app: &TestApp, unit: i64) -> Value {
    crate::inventory::receive(
        app,
        unit,
        (crate::inventory::ROTATEQ, "RV-B1", "2099-01-31", "vfc"),
        10,
        Utc::now() - Duration::hours(2),
    )
    .await;
    let x = excursion_over(app).await;
    app.eventually("the lot on hold", || async {
        let h = app.get(&format!("/api/v1/excursions/{}/holds", x["id"])).await;
        if h["holds"].as_array().is_some_and(|a| !a.is_empty()) {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    x
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_home_shows_the_open_excursion_with_how_long_it_went_unacknowledged() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    app.freezing("LT-1").await;
    let x = app
        .eventually("an open excursion", || async {
            let l = app.get("/api/v1/excursions?status=open").await;
            l["excursions"][0]["id"]
                .as_i64()
                .map(|_| l["excursions"][0].clone())
                .ok_or_else(|| l.to_string())
        })
        .await;
    let b = Browser::open(&app).await;
    sign_up(&app, &b, "casey.quinn@state.example", "state-coordinator", &[]).await;
    assert_eq!(b.path().await, "/");
    let card =
        b.c.find(Locator::Css("#card-excursions"))
            .await
            .expect("the open excursions card")
            .text()
            .await
            .unwrap();
    assert!(card.contains("Main refrigerator"), "{card}");
    assert!(card.contains("not acknowledged"), "{card}");
    assert!(card.contains("012345A"), "{card}");
    b.screenshot("state-home").await;
    // Its row leads to the excursion.
    b.c.find(Locator::Css(&format!(
        "#card-excursions a[href=\"/excursions/{}\"]",
        x["id"]
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    b.c.wait().for_element(Locator::Css("figure.chart")).await.unwrap();
    assert_eq!(b.path().await, format!("/excursions/{}", x["id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_home_finds_a_location_by_part_of_its_name() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    app.create_location("067890", "B").await;
    let b = Browser::open(&app).await;
    sign_up(&app, &b, "casey.quinn@state.example", "state-coordinator", &[]).await;
    let name = app.get("/api/v1/locations/067890B").await["name"]
        .as_str()
        .unwrap()
        .to_string();
    let part: String = name.chars().skip(1).take(6).collect();
    b.fill("q", &part.to_lowercase()).await;
    b.press("Search").await;
    let found = b.text().await;
    assert!(found.contains("067890B"), "{found}");
    b.follow("067890B").await;
    assert_eq!(b.path().await, "/locations/067890B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_reviews_an_excursion_through_its_worksheet_and_the_api_shows_the_review() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let x = excursion_with_a_hold(&app, unit).await;
    let b = Browser::open(&app).await;
    sign_up(
        &app,
        &b,
        "val.vance@example.org",
        "vfc-coordinator",
        &["--location", "012345A"],
    )
    .await;
    b.go(&format!("/excursions/{}", x["id"])).await;
    b.screenshot("excursion").await;
    let hold = app.get(&format!("/api/v1/excursions/{}/holds", x["id"])).await["holds"][0].clone();

    // A mistake first: the room temperature is not a number. The page comes back with what was
    // typed, and the error by the field.
    b.fill("reviewed_by", "Val Vance, VFC coordinator").await;
    b.fill("cause", "The door was left ajar overnight.").await;
    b.fill(
        "corrective_action",
        "Closed the door; the unit recovered within the hour.",
    )
    .await;
    b.fill("room_temp_c", "warm").await;
    b.choose(&format!("lot_{}_determination", hold["id"]), "viable").await;
    b.fill(&format!("lot_{}_case", hold["id"]), "MRK-4471").await;
    b.press("Record the review").await;
    let err =
        b.c.find(Locator::Css("#room_temp_c-error"))
            .await
            .expect("the error next to the room temperature")
            .text()
            .await
            .unwrap();
    assert!(err.contains("number"), "{err}");
    let kept =
        b.c.find(Locator::Css("[name=cause]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
    assert_eq!(kept.as_deref(), Some("The door was left ajar overnight."));

    b.fill("room_temp_c", "21.5").await;
    b.press("Record the review").await;
    assert!(b.text().await.contains("The review is recorded"), "{}", b.text().await);

    let after = app.get(&format!("/api/v1/excursions/{}", x["id"])).await;
    assert_eq!(after["status"], "reviewed", "{after}");
    assert_eq!(after["review"]["reviewed_by"], "Val Vance, VFC coordinator");
    assert_eq!(after["review"]["room_temp_c"], 21.5);
    assert_eq!(after["review"]["lot_determinations"][0]["determination"], "viable");
    assert_eq!(after["review"]["lot_determinations"][0]["case_number"], "MRK-4471");
    let held = app.get(&format!("/api/v1/excursions/{}/holds", x["id"])).await;
    assert_eq!(held["holds"][0]["outcome"], "released", "{held}");
}

/// Signs in at the sign-in page; `secret` is the second factor's key, and `offset` picks a code
/// not used yet (each code is accepted once).
pub(super) async fn sign_in(b: &Browser, email: &str, secret: Option<&str>, offset: i64) {
    b.go("/login").await;
    b.fill("email", email).await;
    b.fill("password", PASSWORD).await;
    if let Some(secret) = secret {
        b.fill("totp", &code(email, secret, offset)).await;
    }
    b.press("Sign in").await;
    assert!(!b.path().await.starts_with("/login"), "signed in: {}", b.text().await);
}

/// The index `i` of the suggestion form's line for `ndc` and `funding` (its `doses_{i}` field).
async fn line_index(b: &Browser, ndc: &str, funding: &str) -> String {
    b.c.execute(
        "return [...document.querySelectorAll('input[name^=ndc_]')].filter(e => e.value === arguments[0]) \
           .map(e => e.name.slice(4)).find(i => document.querySelector('[name=funding_' + i + ']').value === arguments[1]);",
        vec![serde_json::json!(ndc), serde_json::json!(funding)],
    )
    .await
    .unwrap()
    .as_str()
    .unwrap_or_else(|| panic!("a suggestion line for {ndc} {funding}"))
    .to_string()
}

/// Today where 012345A is (New York), whatever the hour in UTC.
pub(super) fn new_york_today() -> String {
    Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_orders_through_the_pages_the_state_reduces_a_line_and_the_clinic_receives_the_shipment() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    // Only one prerequisite is on, and it fails: no dose was ever reported here.
    crate::orders::ordering(
        &app,
        serde_json::json!({"prerequisites": {"reconciliation_days": null, "doses_reported_days": 30, "temperature_records": false,
            "daily_signoff": false, "unreviewed_excursion_hours": null, "calibration_current": false,
            "decrement_exception_days": null}}),
    )
    .await;
    let b = Browser::open(&app).await;
    let clinic = "val.vance@example.org";
    let clinic_key = sign_up(&app, &b, clinic, "vfc-coordinator", &["--location", "012345A"])
        .await
        .unwrap();

    // The checklist shows what fails; submitting anyway keeps a draft and says why.
    b.go("/locations/012345A/orders").await;
    let page = b.text().await;
    assert!(page.contains("Doses reported: not met"), "{page}");
    let i = line_index(&b, crate::inventory::ROTATEQ, "vfc").await;
    b.fill(&format!("doses_{i}"), "20").await;
    b.press("Submit the order").await;
    let refused = b.text().await;
    assert!(refused.contains("prerequisite"), "{refused}");
    let orders = app.get("/api/v1/locations/012345A/orders").await;
    let id = orders["orders"][0]["id"].as_i64().expect("the draft is kept");
    assert_eq!(orders["orders"][0]["status"], "draft");

    // Fixed on the same page: no doses were given here.
    b.go("/locations/012345A/orders").await;
    b.set_value("since", &new_york_today()).await;
    b.press("Report no doses given").await;
    assert!(b.text().await.contains("Doses reported: met"), "{}", b.text().await);
    b.go(&format!("/orders/{id}")).await;
    b.press("Submit the order").await;
    assert!(b.text().await.contains("Submitted"), "{}", b.text().await);
    b.screenshot("order").await;
    b.press("Sign out").await;

    // The state reduces the line, with its reason.
    let state = "casey.quinn@state.example";
    sign_up(&app, &b, state, "state-coordinator", &[]).await;
    b.go("/orders").await;
    b.follow(&format!("Order {id}")).await;
    let line = app.get(&format!("/api/v1/orders/{id}")).await["lines"][0]["id"].clone();
    b.fill(&format!("doses_{line}"), "10").await;
    b.fill(&format!("reason_{line}"), "Three months of use is 10 doses")
        .await;
    b.press("Approve").await;
    assert!(b.text().await.contains("Approved"), "{}", b.text().await);
    let approved = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(approved["lines"][0]["approved_doses"], 10);
    assert_eq!(
        approved["lines"][0]["reduction_reason"],
        "Three months of use is 10 doses"
    );

    // Sent and shipped (the distributor's files), then received at the clinic.
    let r = app
        .http
        .post(app.url("/api/v1/orders/export"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = crate::orders::ship(
        &app,
        &format!(
            "{id},{},RV-S1,2099-01-31,10,0,UPS,1Z999AA10123456784,{},false\n",
            crate::inventory::ROTATEQ,
            new_york_today()
        ),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    b.press("Sign out").await;
    sign_in(&b, clinic, Some(&clinic_key), 30).await;
    b.go(&format!("/orders/{id}")).await;
    assert!(b.text().await.contains("1Z999AA10123456784"), "the tracking number");
    b.press("Record what arrived").await;
    assert!(
        b.text().await.contains("Received: the doses are in the inventory"),
        "{}",
        b.text().await
    );
    let received = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(received["status"], "received", "{received}");
    let stock = app.get("/api/v1/locations/012345A/inventory").await;
    let lot = stock["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot"] == "RV-S1")
        .unwrap_or_else(|| panic!("the lot on the shelf: {stock}"));
    assert_eq!(lot["on_hand"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_390_pixels_wide_without_scrolling_sideways() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    // Something on every list: an unmatched dose, a borrowing record, a gateway.
    crate::inventory::receive(
        &app,
        unit,
        (crate::inventory::ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        Utc::now() - Duration::hours(3),
    )
    .await;
    for (control, lot, eligibility) in [("Q-1", "NOPE42", "V02"), ("B-1", "X123456", "V01")] {
        let (status, ack) = crate::matrix::hl7(&app, &app.token, crate::matrix::vxu(control, lot, eligibility)).await;
        assert!(status == 200 && !ack.contains("MSA|AR"), "{ack}");
    }
    app.register_gateway("012345A", "gw-012345A-1").await;
    let x = excursion_with_a_hold(&app, unit).await;
    let (status, order) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/orders",
            serde_json::json!({"lines": [{"ndc": crate::inventory::ROTATEQ, "funding": "vfc", "doses": 10}]}),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let b = Browser::open(&app).await;
    sign_up(&app, &b, "casey.quinn@state.example", "state-coordinator", &[]).await;
    b.window(390, 844).await;
    let width: i64 =
        b.c.execute("return window.innerWidth;", vec![])
            .await
            .unwrap()
            .as_i64()
            .unwrap();
    assert!(width <= 390, "the window is a phone's: {width}");
    let pages = [
        "/".to_string(),
        "/?list=excursions".to_string(),
        "/locations/012345A".to_string(),
        format!("/units/{unit}"),
        format!("/units/{unit}/daily"),
        format!("/excursions/{}", x["id"]),
        "/locations/012345A/inventory".to_string(),
        "/locations/012345A/receipts".to_string(),
        "/locations/012345A/wastage".to_string(),
        "/locations/012345A/returns".to_string(),
        "/locations/012345A/transfers".to_string(),
        "/locations/012345A/reconciliations".to_string(),
        "/locations/012345A/decrement-exceptions".to_string(),
        "/locations/012345A/borrowing".to_string(),
        "/locations/012345A/gateways".to_string(),
        "/locations/012345A/orders".to_string(),
        "/orders".to_string(),
        "/orders?status=any".to_string(),
        format!("/orders/{}", order["id"]),
        "/me/totp".to_string(),
        "/me".to_string(),
    ];
    for p in &pages {
        b.go(p).await;
        let sideways = b.sideways_scroll().await;
        assert_eq!(sideways, 0, "{p} scrolls sideways at 390 px: {}", b.too_wide().await);
    }
    b.go("/locations/012345A").await;
    b.screenshot("location-phone").await;
    b.go("/locations/012345A/reconciliations").await;
    b.screenshot("count-sheet-phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_admin_invites_a_coordinator_makes_a_token_once_and_finds_both_in_the_audit_log() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    let b = Browser::open(&app).await;
    sign_up(&app, &b, "ada.admin@state.example", "state-admin", &[]).await;

    // An invitation with a mistake comes back with what was typed.
    b.go("/accounts").await;
    b.fill("name", "Robin Reyes").await;
    b.fill("email", "robin.reyes@example.org").await;
    b.choose("role", "vfc-coordinator").await;
    b.fill("place", "99999Z").await;
    b.press("Send the invitation").await;
    let kept =
        b.c.find(Locator::Css("[name=email]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
    assert_eq!(kept.as_deref(), Some("robin.reyes@example.org"), "{}", b.text().await);
    assert!(b.c.find(Locator::Css("p.error")).await.is_ok(), "{}", b.text().await);
    b.fill("place", "012345A").await;
    b.press("Send the invitation").await;
    assert!(
        b.text().await.contains("Invitation sent to robin.reyes@example.org"),
        "{}",
        b.text().await
    );
    assert!(app
        .wait_email_with("robin.reyes@example.org")
        .await
        .iter()
        .any(|m| m.contains("/invite/")));

    // A token, shown once.
    b.go("/tokens").await;
    b.fill("name", "EHR feed").await;
    b.choose("role", "clinic-staff").await;
    b.fill("place", "012345A").await;
    b.press("Make the token").await;
    let secret =
        b.c.find(Locator::Css("code.secret"))
            .await
            .expect("the new token's secret, shown once")
            .text()
            .await
            .unwrap();
    let (status, _) = app.get_as(&secret, "/api/v1/locations/012345A").await;
    assert_eq!(status, 200, "the token works");
    b.go("/tokens").await;
    assert!(!b.text().await.contains(&secret), "shown only once");

    // The audit log, filtered by action.
    b.go("/audit?action=account.create").await;
    let log = b.text().await;
    assert!(
        log.contains("account.create") && log.contains("ada.admin@state.example"),
        "{log}"
    );
    assert!(!log.contains("token.create"), "filtered: {log}");
}
