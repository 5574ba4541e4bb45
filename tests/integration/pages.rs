//! The pages over HTTP (the browser tests come with the rest of the pages): a unit's chart as
//! its own URL (the shaded excursion carries the API's times), the unit page with its chart
//! inline, the month's daily log and its CSV, and a location's home where today's check is
//! signed with one press; another PIN's things are not there.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::harness::{Broker, Database, TestApp};
use crate::on_both_databases;

// The chart reads its buckets with SQL of its own: both databases draw it.
on_both_databases!(the_charts_shaded_excursion_carries_the_apis_start_and_end);

async fn get_text(app: &TestApp, token: &str, path: &str) -> (u16, String, String) {
    let r = app.http.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap_or_default())
}

/// The value of `attr` in the first element of `svg` that has `marker`.
fn attr(svg: &str, marker: &str, attr: &str) -> String {
    let at = svg.find(marker).unwrap_or_else(|| panic!("{marker} in {svg}"));
    let rest = &svg[at..];
    let key = format!("{attr}=\"");
    let start = rest.find(&key).unwrap() + key.len();
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

async fn the_charts_shaded_excursion_carries_the_apis_start_and_end(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
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
    // Back in range: the excursion has an end.
    let mut p = app.publisher("back").await;
    p.reading("LT-1", &(Utc::now() + Duration::seconds(1)).to_rfc3339(), 4.6)
        .await;
    p.wait_acked(1).await;
    let x: Value = app
        .eventually("the excursion over", || async {
            let e = app.get(&format!("/api/v1/excursions/{}", x["id"])).await;
            if e["ended_at"].is_string() {
                Ok(e)
            } else {
                Err(e.to_string())
            }
        })
        .await;
    let from = (Utc::now() - Duration::hours(2)).to_rfc3339();
    let to = (Utc::now() + Duration::minutes(5)).to_rfc3339();
    let path = format!(
        "/units/{unit}/chart.svg?from={}&to={}",
        urlencode(&from),
        urlencode(&to)
    );
    let (status, kind, svg) = get_text(&app, &app.token, &path).await;
    assert_eq!((status, kind.as_str()), (200, "image/svg+xml; charset=utf-8"), "{svg}");
    let marker = format!("data-excursion-id=\"{}\"", x["id"]);
    assert_eq!(attr(&svg, &marker, "data-start"), x["started_at"].as_str().unwrap());
    assert_eq!(attr(&svg, &marker, "data-end"), x["ended_at"].as_str().unwrap());
    assert!(
        svg.contains("aria-label=\"Temperatures of Main refrigerator"),
        "a text alternative"
    );
    // The same window's readings as CSV.
    let (status, _, csv) = get_text(&app, &app.token, &path.replace("chart.svg", "chart.csv")).await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("logger,role,ts,temp_c\nLT-1,primary,"), "{csv}");
    assert!(csv.contains(",0.2\n"), "the freezing reading: {csv}");

    // Another PIN's clinic: the unit is not there; nobody at all is sent to sign in.
    app.create_location("067890", "A").await;
    let other = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "other"]);
    assert_eq!(get_text(&app, &other, &path).await.0, 404);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?next=%2Funits%2F"));
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unit_page_shows_its_chart_and_the_months_log_downloads_one_row_per_day() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    app.freezing("LT-1").await;
    app.eventually("an excursion", || async {
        let l = app.get("/api/v1/excursions").await;
        l["excursions"][0]["id"].as_i64().ok_or_else(|| l.to_string())
    })
    .await;
    let (status, kind, page) = get_text(&app, &app.token, &format!("/units/{unit}?window=7d")).await;
    assert_eq!((status, kind.as_str()), (200, "text/html; charset=utf-8"), "{page}");
    assert!(
        page.contains("<svg") && page.contains("class=\"excursion\""),
        "the chart is inline: {page}"
    );
    assert!(page.contains("aria-current=\"page\">7 days"), "{page}");
    assert!(page.contains("LT-1"), "its logger: {page}");
    // A custom range of days where the unit is: the excursion's day, then a day long before.
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m-%d")
        .to_string();
    let (status, _, page) = get_text(&app, &app.token, &format!("/units/{unit}?from={today}&to={today}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("class=\"excursion\""), "today's excursion: {page}");
    let (status, _, page) = get_text(
        &app,
        &app.token,
        &format!("/units/{unit}?from=2026-01-01&to=2026-01-02"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("class=\"excursion\""), "none in January: {page}");

    let month = Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m")
        .to_string();
    let (status, _, daily) = get_text(&app, &app.token, &format!("/units/{unit}/daily?month={month}")).await;
    assert_eq!(status, 200, "{daily}");
    assert!(daily.contains(&format!("Daily temperature log, {month}")), "{daily}");
    let (status, kind, csv) = get_text(&app, &app.token, &format!("/units/{unit}/daily.csv?month=2026-02")).await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "date,min_c,max_c,minutes_above_range,minutes_below_range,readings,complete,signed_by,signed_at"
    );
    assert_eq!(rows.len(), 1 + 28, "one row per day of February 2026: {csv}");
    assert!(rows[1].starts_with("2026-02-01,,,0,0,0,false,,"), "{csv}");
    let (status, _, page) = get_text(&app, &app.token, &format!("/units/{unit}/daily?month=2026-13")).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("YYYY-MM"), "{page}");

    app.create_location("067890", "A").await;
    let other = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "other"]);
    let (status, _, page) = get_text(&app, &other, &format!("/units/{unit}")).await;
    assert_eq!(status, 404);
    assert!(page.contains("<title>Not found"), "a page, not JSON: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_home_shows_each_unit_and_staff_sign_todays_check_with_one_press() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let mut p = app.publisher("now").await;
    p.reading("LT-1", &(Utc::now() - Duration::minutes(3)).to_rfc3339(), 4.4)
        .await;
    p.wait_acked(1).await;
    let page = app
        .eventually("the tile in range", || async {
            let (s, _, page) = get_text(&app, &app.token, "/locations/012345A").await;
            if s == 200 && page.contains("In range") {
                Ok(page)
            } else {
                Err(page)
            }
        })
        .await;
    assert!(page.contains("4.4") && page.contains("LT-1"), "{page}");
    assert!(!page.contains("Sign today"), "a token has no form to sign: {page}");

    // Clinic staff, signed in, sign today's check from the page.
    let cookie = signed_in_staff(&app).await;
    let home = app
        .http
        .get(app.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("href=\"/locations/012345A\""),
        "home leads to the location: {home}"
    );
    let page = app
        .http
        .get(app.url("/locations/012345A"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form_at = page.find("/daily/").expect("a sign form");
    let action_start = page[..form_at].rfind("action=\"").unwrap() + "action=\"".len();
    let action = page[action_start..action_start + page[action_start..].find('"').unwrap()].to_string();
    let csrf = csrf_of(&page);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = no_redirects
        .post(app.url(&action))
        .header("cookie", &cookie)
        .form(&[("csrf_token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status().as_u16(),
        403,
        "a form without the page's token is refused"
    );
    let r = no_redirects
        .post(app.url(&action))
        .header("cookie", &cookie)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/locations/012345A?signed="));
    let today = action.split('/').nth(4).unwrap().to_string();
    let go = no_redirects
        .get(app.url("/locations?code=012345a"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        go.headers()["location"],
        "/locations/012345A",
        "the state's box takes a code in any case"
    );
    let days = app
        .get(&format!("/api/v1/units/{unit}/daily?from={today}&to={today}"))
        .await;
    assert_eq!(
        days["days"][0]["signed_by"]
            .as_str()
            .map(|s| s.contains("sam.staff@example.org")),
        Some(true),
        "{days}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excursions_page_shows_its_chart_and_lots_on_hold() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    crate::inventory::receive(
        &app,
        unit,
        (crate::inventory::ROTATEQ, "RV-P1", "2099-01-31", "vfc"),
        10,
        Utc::now() - Duration::hours(2),
    )
    .await;
    app.freezing("LT-1").await;
    let id = app
        .eventually("an excursion with its hold", || async {
            let l = app.get("/api/v1/excursions").await;
            let id = l["excursions"][0]["id"].as_i64().ok_or_else(|| l.to_string())?;
            let h = app.get(&format!("/api/v1/excursions/{id}/holds")).await;
            if h["holds"].as_array().is_some_and(|a| !a.is_empty()) {
                Ok(id)
            } else {
                Err(h.to_string())
            }
        })
        .await;
    let (status, _, page) = get_text(&app, &app.token, &format!("/excursions/{id}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("data-excursion-id=\"{id}\"")),
        "its chart: {page}"
    );
    assert!(
        page.contains("RV-P1") && page.contains("waiting for the manufacturer"),
        "its lot on hold: {page}"
    );
    assert!(page.contains("not yet"), "not acknowledged: {page}");
    // The email's acknowledgement page leads here.
    let mail = app
        .wait_email_with("/ack/")
        .await
        .into_iter()
        .find(|m| m.contains("/ack/"))
        .unwrap();
    let at = mail.find("/ack/").unwrap();
    let link: String = mail[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    // minijinja writes "/" in an attribute as "&#x2f;", which a browser reads back as "/".
    let ack = get_text(&app, "", &link).await.2.replace("&#x2f;", "/");
    assert!(ack.contains(&format!("href=\"/excursions/{id}\"")), "{ack}");
    app.create_location("067890", "A").await;
    let other = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "other"]);
    assert_eq!(get_text(&app, &other, &format!("/excursions/{id}")).await.0, 404);

    // Staff acknowledge from the page, once.
    let cookie = signed_in_staff(&app).await;
    let page_of = |cookie: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url(&format!("/excursions/{id}")))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let page = page_of(cookie.clone()).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .post(app.url(&format!("/excursions/{id}/acknowledge")))
        .header("cookie", &cookie)
        .form(&[("csrf_token", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let x = app.get(&format!("/api/v1/excursions/{id}")).await;
    assert!(
        x["acknowledged_by"].as_str().unwrap().contains("sam.staff@example.org"),
        "{x}"
    );
    let page = page_of(cookie).await;
    assert!(!page.contains("Acknowledge: I am handling it"), "once: {page}");
}

/// Clinic staff of 012345A, invited, with a password, signed in: the session cookie.
async fn signed_in_staff(app: &TestApp) -> String {
    signed_in(
        app,
        &[
            "sam.staff@example.org",
            "Sam Staff",
            "clinic-staff",
            "--location",
            "012345A",
        ],
    )
    .await
    .0
}

/// Someone invited from the command line (email, name, role, and a place such as
/// `--location 012345A`) who set a password and signed in: the session cookie and the
/// sign-in's answer (with its CSRF token).
async fn signed_in(app: &TestApp, who: &[&str]) -> (String, Value) {
    let mut args = vec![
        "account", "create", "--email", who[0], "--name", who[1], "--role", who[2],
    ];
    args.extend_from_slice(&who[3..]);
    let link = app.cli_last_line(&args);
    let token = link.rsplit('/').next().unwrap().to_string();
    let r = app
        .http
        .post(app.url(&format!("/api/v1/invitations/{token}")))
        .json(&serde_json::json!({"password": "copper lantern drifts north"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = app
        .http
        .post(app.url("/api/v1/session"))
        .json(&serde_json::json!({"email": who[0], "password": "copper lantern drifts north"}))
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
    (cookie, r.json().await.unwrap())
}

/// The CSRF token of a page's form.
fn csrf_of(page: &str) -> String {
    let needle = "name=\"csrf_token\" value=\"";
    let at = page.find(needle).expect("a form with the CSRF token") + needle.len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_changes_their_own_password_only_with_the_current_one_and_then_signs_in_again() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    let cookie = signed_in_staff(&app).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(app.url("/me")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("sam.staff@example.org"), "{page}");
    let csrf = csrf_of(&page);
    let change = |current: &str, new: &str, again: &str| {
        http.post(app.url("/me/password"))
            .header("cookie", &cookie)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("current_password", current),
                ("new_password", new),
                ("repeat_password", again),
            ])
            .send()
    };
    let sign_in = |password: &'static str| {
        app.http
            .post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"email": "sam.staff@example.org", "password": password}))
            .send()
    };

    let r = change(
        "not my password at all",
        "river stones hum softly",
        "river stones hum softly",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("is not your current password"));
    let r = change(
        "copper lantern drifts north",
        "river stones hum softly",
        "river stones hum soft",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("The two new passwords differ"));
    assert_eq!(
        sign_in("copper lantern drifts north").await.unwrap().status(),
        200,
        "unchanged so far"
    );

    let r = change(
        "copper lantern drifts north",
        "river stones hum softly",
        "river stones hum softly",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?notice=password-set&next=%2Fme");
    // Every session ended, this one too.
    let r = http.get(app.url("/me")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?next=%2Fme"));
    assert_ne!(sign_in("copper lantern drifts north").await.unwrap().status(), 200);
    assert_eq!(sign_in("river stones hum softly").await.unwrap().status(), 200);
    let audit = app.get("/api/v1/audit?action=account.change_password").await;
    assert_eq!(audit["audit"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_viewer_who_may_only_read_still_changes_their_own_password() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let (cookie, session) = signed_in(&app, &["vic@state.example", "Vic Viewer", "state-viewer"]).await;
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    // A state role sets up its second factor before anything else.
    let as_vic = |path: &str, body: Value| {
        app.http
            .post(app.url(path))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let e: Value = as_vic("/api/v1/me/totp", serde_json::json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp = totp_rs::Totp::from_url(e["otpauth_uri"].as_str().unwrap()).unwrap();
    let code = totp.generate(Utc::now().timestamp() as u64).to_string();
    let r = as_vic("/api/v1/me/totp/confirm", serde_json::json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(app.url("/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(app.url("/me/password"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("current_password", "copper lantern drifts north"),
            ("new_password", "river stones hum softly"),
            ("repeat_password", "river stones hum softly"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let audit = app.get("/api/v1/audit?action=account.change_password").await;
    assert_eq!(audit["audit"][0]["actor"], "account:1:vic@state.example", "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lot_held_after_an_excursion_is_not_offered_for_wastage_and_leads_to_its_review() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let lot = crate::inventory::receive(
        &app,
        unit,
        (crate::inventory::ROTATEQ, "RV-H1", "2099-01-31", "vfc"),
        10,
        Utc::now() - Duration::hours(2),
    )
    .await;
    let cookie = signed_in_staff(&app).await;
    let page_of = |path: &'static str| {
        let cookie = cookie.clone();
        let app = &app;
        async move {
            let r = app
                .http
                .get(app.url(path))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };
    let before = page_of("/locations/012345A/wastage").await;
    assert!(before.contains(&format!("value=\"{unit}:{lot}\"")), "{before}");
    app.freezing("LT-1").await;
    let id = app
        .eventually("the lot on hold", || async {
            let l = app.get("/api/v1/excursions").await;
            let id = l["excursions"][0]["id"].as_i64().ok_or_else(|| l.to_string())?;
            let h = app.get(&format!("/api/v1/excursions/{id}/holds")).await;
            if h["holds"].as_array().is_some_and(|a| !a.is_empty()) {
                Ok(id)
            } else {
                Err(h.to_string())
            }
        })
        .await;
    for path in ["/locations/012345A/wastage", "/locations/012345A/returns"] {
        let page = page_of(path).await;
        assert!(!page.contains(&format!("value=\"{unit}:{lot}\"")), "{path}: {page}");
        assert!(page.contains(&format!("excursion {id}")), "{path}: {page}");
    }
    let page = page_of("/locations/012345A/transfers").await;
    assert!(!page.contains(&format!("value=\"{unit}:{lot}\"")), "{page}");
}
