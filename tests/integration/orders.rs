//! Orders: suggestions to the dose, each prerequisite failing alone and passing once fixed, a
//! waiver, the order window, the whole path from draft to stock on the shelf, and scope.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{on_hand, MMR, ROTATEQ};
use crate::on_both_databases;

const VARIVAX: &str = "00006-4826-00";

/// Publishes a reading of `serial` at `temp` every hour from `from` until before `to`, and waits
/// until the broker has them.
async fn hourly(app: &TestApp, serial: &str, from: DateTime<Utc>, to: DateTime<Utc>, temp: f64) {
    let mut p = app.publisher(&format!("pub-{serial}-{}", from.timestamp())).await;
    let mut at = from;
    let mut sent = 0;
    while at < to {
        let mut batch = Vec::new();
        while at < to && batch.len() < 200 {
            batch.push(json!({"ts": at.to_rfc3339(), "temp_c": temp}));
            at += Duration::hours(1);
        }
        p.publish(
            &format!("vfc/loggers/{serial}/readings"),
            json!({ "readings": batch }).to_string(),
        )
        .await;
        sent += 1;
    }
    p.wait_acked(sent).await;
}

async fn send(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, Value) {
    app.send_as(&app.token, method, path, body).await
}

async fn ok(app: &TestApp, method: &str, path: &str, body: Value) -> Value {
    let (s, out) = send(app, method, path, body).await;
    assert!(s == 200 || s == 201, "{method} {path}: {s} {out}");
    out
}

/// Sets keys of the program's `ordering` settings (and the state coordinators who are told).
pub async fn ordering(app: &TestApp, keys: Value) {
    let mut program = app.get("/api/v1/program").await;
    for (k, v) in keys.as_object().unwrap() {
        if k == "prerequisites" {
            for (pk, pv) in v.as_object().unwrap() {
                program["ordering"]["prerequisites"][pk] = pv.clone();
            }
        } else {
            program["ordering"][k] = v.clone();
        }
    }
    program["state_coordinators"] = json!([{"name": "Morgan State", "email": "vfc.state@health.example"}]);
    ok(app, "PUT", "/api/v1/program", program).await;
}

/// Every prerequisite off: tests of suggestions and of the order's life start here.
async fn no_prerequisites(app: &TestApp) {
    ordering(
        app,
        json!({"prerequisites": {"reconciliation_days": null, "doses_reported_days": null, "temperature_records": false,
            "daily_signoff": false, "unreviewed_excursion_hours": null, "calibration_current": false,
            "decrement_exception_days": null}}),
    )
    .await;
}

async fn receive(
    app: &TestApp,
    code: &str,
    unit: i64,
    lot: (&str, &str, &str, &str),
    doses: i64,
    at: DateTime<Utc>,
) -> i64 {
    let (ndc, lot, expires, funding) = lot;
    let body = json!({"unit_id": unit, "received_at": at.to_rfc3339(),
        "lines": [{"ndc": ndc, "lot": lot, "expires_on": expires, "funding": funding, "doses": doses}]});
    let out = ok(app, "POST", &format!("/api/v1/locations/{code}/receipts"), body).await;
    out["events"][0]["lot_id"].as_i64().unwrap()
}

/// `n` doses of `cvx` from lot `lot`, the first at `first` and the rest spread until `last`.
async fn give(
    app: &TestApp,
    tag: &str,
    cvx: &str,
    lot: &str,
    n: i64,
    (first, last): (DateTime<Utc>, DateTime<Utc>),
    eligibility: &str,
) {
    let step = if n > 1 {
        (last - first) / (n as i32 - 1)
    } else {
        Duration::zero()
    };
    let doses: Vec<Value> = (0..n)
        .map(|i| {
            json!({"dose_id": format!("{tag}-{i}"), "patient_id": format!("P-{tag}-{i}"), "cvx": cvx, "lot": lot,
                   "eligibility": eligibility, "administered_at": (first + step * i as i32).to_rfc3339()})
        })
        .collect();
    let out = ok(
        app,
        "POST",
        "/api/v1/locations/012345A/administrations",
        json!({ "doses": doses }),
    )
    .await;
    for r in out["results"].as_array().unwrap() {
        assert_eq!(r["outcome"], "decremented", "{r}");
    }
}

async fn suggestion(app: &TestApp, ndc: &str, funding: &str) -> Value {
    let s = app.get("/api/v1/locations/012345A/orders/suggestion?set=routine").await;
    s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ndc"] == ndc && l["funding"] == funding)
        .cloned()
        .unwrap_or_else(|| panic!("no line for {ndc} {funding}: {s}"))
}

fn figures(l: &Value) -> (i64, f64, i64, i64, i64, i64) {
    (
        l["months"].as_i64().unwrap(),
        l["monthly_use"].as_f64().unwrap(),
        l["max_stock"].as_i64().unwrap(),
        l["usable_on_hand"].as_i64().unwrap(),
        l["on_order"].as_i64().unwrap(),
        l["suggested"].as_i64().unwrap(),
    )
}

async fn suggestions_follow_the_formula_to_the_dose(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    let fridge = app.fridge().await;
    let now = Utc::now();
    // RotaTeq: first given 85 days ago (3 months of history), 60 doses since, 40 left, a
    // package of 10.
    let rota = receive(
        &app,
        "012345A",
        fridge,
        (ROTATEQ, "RV-1", "2099-01-31", "vfc"),
        100,
        now - Duration::days(90),
    )
    .await;
    give(
        &app,
        "rv",
        "116",
        "RV-1",
        60,
        (now - Duration::days(85), now - Duration::days(1)),
        "V02",
    )
    .await;
    let l = suggestion(&app, ROTATEQ, "vfc").await;
    assert_eq!(figures(&l), (3, 20.0, 60, 40, 0, 20), "{l}");
    assert_eq!(
        (l["package"].as_i64(), l["administered_365"].as_i64()),
        (Some(10), Some(60))
    );
    assert_eq!(l["days_of_history"], 85);
    // M-M-R II: first given 400 days ago, 120 doses in the last 365 days.
    receive(
        &app,
        "012345A",
        fridge,
        (MMR, "MM-1", "2099-01-31", "vfc"),
        300,
        now - Duration::days(410),
    )
    .await;
    give(
        &app,
        "mmr-old",
        "03",
        "MM-1",
        1,
        (now - Duration::days(400), now - Duration::days(400)),
        "V02",
    )
    .await;
    give(
        &app,
        "mmr",
        "03",
        "MM-1",
        120,
        (now - Duration::days(360), now - Duration::days(2)),
        "V02",
    )
    .await;
    let m = suggestion(&app, MMR, "vfc").await;
    assert_eq!((figures(&m).0, figures(&m).1, figures(&m).2), (12, 10.0, 30), "{m}");
    assert_eq!(m["suggested"], 0, "179 usable cover 30: {m}");

    // A lot that expires within 30 days is not usable.
    let (s, out) = send(
        &app,
        "PUT",
        &format!("/api/v1/lots/{rota}"),
        json!({"expires_on": (now + Duration::days(20)).format("%Y-%m-%d").to_string(), "reason": "label misread"}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let l = suggestion(&app, ROTATEQ, "vfc").await;
    assert_eq!(figures(&l), (3, 20.0, 60, 0, 0, 60), "{l}");
    assert!(l["flags"].as_array().unwrap().contains(&json!("short_dated")), "{l}");
    ok(
        &app,
        "PUT",
        &format!("/api/v1/lots/{rota}"),
        json!({"expires_on": "2099-01-31", "reason": "label read again"}),
    )
    .await;
    assert_eq!(suggestion(&app, ROTATEQ, "vfc").await["suggested"], 20);

    // A lot on hold is not usable.
    let hold = ok(
        &app,
        "POST",
        "/api/v1/locations/012345A/holds",
        json!({"unit_id": fridge, "lot_id": rota, "reason": "door found open"}),
    )
    .await;
    assert_eq!(
        figures(&suggestion(&app, ROTATEQ, "vfc").await),
        (3, 20.0, 60, 0, 0, 60)
    );
    ok(
        &app,
        "POST",
        &format!("/api/v1/holds/{}/release", hold["id"]),
        json!({"note": "manufacturer: viable"}),
    )
    .await;
    assert_eq!(suggestion(&app, ROTATEQ, "vfc").await["usable_on_hand"], 40);

    // An approved line not yet received is on order.
    let order = ok(
        &app,
        "POST",
        "/api/v1/locations/012345A/orders",
        json!({"lines": [{"ndc": ROTATEQ, "funding": "vfc", "doses": 30}]}),
    )
    .await;
    let id = order["id"].as_i64().unwrap();
    ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/submit"),
        json!({"urgent": false}),
    )
    .await;
    assert_eq!(
        figures(&suggestion(&app, ROTATEQ, "vfc").await),
        (3, 20.0, 60, 40, 30, 0),
        "submitted counts"
    );
    ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/approve"),
        json!({"lines": [{"id": order["lines"][0]["id"], "doses": 15, "reason": "stock allocation"}]}),
    )
    .await;
    assert_eq!(
        figures(&suggestion(&app, ROTATEQ, "vfc").await),
        (3, 20.0, 60, 40, 15, 10),
        "the approved quantity counts"
    );

    // Private doses are never counted, and there is no private line.
    receive(
        &app,
        "012345A",
        fridge,
        (ROTATEQ, "PRIV-1", "2099-01-31", "private"),
        50,
        now - Duration::days(30),
    )
    .await;
    give(
        &app,
        "priv",
        "116",
        "PRIV-1",
        10,
        (now - Duration::days(20), now - Duration::days(1)),
        "V01",
    )
    .await;
    assert_eq!(
        figures(&suggestion(&app, ROTATEQ, "vfc").await),
        (3, 20.0, 60, 40, 15, 10)
    );
    let all = app.get("/api/v1/locations/012345A/orders/suggestion").await;
    assert!(
        all["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["funding"] != "private"),
        "{all}"
    );
    // State-funded stock has its own line: no history there.
    let state = suggestion(&app, ROTATEQ, "state").await;
    assert_eq!(state["suggested"], 0);
    assert!(
        state["flags"].as_array().unwrap().contains(&json!("no_usage_history")),
        "{state}"
    );
}

/// 012345A ready to order: a refrigerator with a calibrated hourly logger and 33 days of
/// readings, RotaTeq on hand since 40 days ago, counted now, and a dose given today. The
/// excursion and decrement-exception checks look at anything older than 0 hours / days.
async fn ready_clinic(app: &TestApp) -> i64 {
    ordering(
        app,
        json!({"prerequisites": {"unreviewed_excursion_hours": 0, "decrement_exception_days": 0}}),
    )
    .await;
    app.create_location("012345", "A").await;
    let fridge = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    let now = Utc::now();
    app.assign(
        fridge,
        json!({"serial": "LT-O1", "reading_interval_s": 3600, "from": (now - Duration::days(60)).to_rfc3339(),
               "calibrated_on": "2026-01-01", "calibration_expires_on": "2099-01-01"}),
    )
    .await;
    // Hourly until three hours ago, then readings around the window a later warm spell fills
    // (170 to 95 minutes ago), so yesterday is complete where the clinic is at any hour.
    hourly(app, "LT-O1", now - Duration::days(33), now - Duration::hours(3), 5.0).await;
    let mut p = app.publisher("pub-LT-O1-recent").await;
    let recent: Vec<Value> = [180, 85, 25]
        .iter()
        .map(|m| json!({"ts": (now - Duration::minutes(*m)).to_rfc3339(), "temp_c": 5.0}))
        .collect();
    p.publish("vfc/loggers/LT-O1/readings", json!({ "readings": recent }).to_string())
        .await;
    p.wait_acked(1).await;
    let lot = receive(
        app,
        "012345A",
        fridge,
        (ROTATEQ, "RV-9", "2099-01-31", "vfc"),
        50,
        now - Duration::days(40),
    )
    .await;
    give(
        app,
        "today",
        "116",
        "RV-9",
        1,
        (now - Duration::hours(4), now - Duration::hours(4)),
        "V02",
    )
    .await;
    reconcile(app, &[(fridge, lot, 49)]).await;
    fridge
}

async fn reconcile(app: &TestApp, counts: &[(i64, i64, i64)]) {
    let counts: Vec<Value> = counts
        .iter()
        .map(|(u, l, n)| json!({"unit_id": u, "lot_id": l, "counted": n}))
        .collect();
    ok(
        app,
        "POST",
        "/api/v1/locations/012345A/reconciliations",
        json!({"as_of": Utc::now().to_rfc3339(), "counted_by": "Pat Primary", "counts": counts}),
    )
    .await;
}

async fn checks(app: &TestApp) -> Value {
    app.get("/api/v1/locations/012345A/orders/prerequisites").await
}

/// Waits until exactly the checks in `failing` fail, and returns the answer.
async fn failing(app: &TestApp, failing: &[&str]) -> Value {
    app.eventually(&format!("exactly {failing:?} failing"), || async {
        let r = checks(app).await;
        let mut bad: Vec<&str> = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["check"].as_str().unwrap())
            .collect();
        bad.sort();
        let mut want = failing.to_vec();
        want.sort();
        if bad == want && r["ready"] == failing.is_empty() {
            Ok(r)
        } else {
            Err(format!("{r}"))
        }
    })
    .await
}

fn detail<'a>(r: &'a Value, check: &str) -> &'a str {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap()["detail"]
        .as_str()
        .unwrap()
}

async fn each_prerequisite_fails_alone_naming_what_to_fix_and_passes_once_fixed(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let fridge = ready_clinic(&app).await;
    failing(&app, &[]).await;
    let now = Utc::now();

    // No dose in the last 14 days: the check says how to report none.
    ordering(&app, json!({"prerequisites": {"doses_reported_days": 1}})).await;
    app.sql(&format!(
        "UPDATE administrations SET created_at = {} WHERE location_code = '012345A'",
        (now - Duration::days(3)).timestamp_millis()
    ))
    .await;
    let r = failing(&app, &["doses_reported"]).await;
    assert!(detail(&r, "doses_reported").contains("no-doses-report"), "{r}");
    ok(
        &app,
        "POST",
        "/api/v1/locations/012345A/no-doses-report",
        json!({"since": (now - Duration::days(3)).format("%Y-%m-%d").to_string()}),
    )
    .await;
    failing(&app, &[]).await;

    // A second unit holding stock with no readings: the check names it and its days.
    let freezer = app.create_unit("012345A", "Freezer", "freezer").await;
    app.assign(
        freezer,
        json!({"serial": "LT-O2", "reading_interval_s": 3600, "from": (now - Duration::days(60)).to_rfc3339(),
               "calibrated_on": "2026-01-01", "calibration_expires_on": "2099-01-01"}),
    )
    .await;
    let vari = receive(
        &app,
        "012345A",
        freezer,
        (VARIVAX, "VX-1", "2099-01-31", "vfc"),
        10,
        now - Duration::days(35),
    )
    .await;
    let r = failing(&app, &["temperature_records"]).await;
    let d = detail(&r, "temperature_records");
    assert!(
        d.contains(&format!("unit {freezer} (Freezer)")) && d.contains("readings missing on"),
        "{r}"
    );
    assert!(!d.contains("Main refrigerator"), "the fridge's record is complete: {d}");
    hourly(&app, "LT-O2", now - Duration::days(33), now, -20.0).await;
    failing(&app, &[]).await;

    // The count must cover the freezer's lot too: a count older than 30 days fails.
    app.sql(&format!(
        "UPDATE reconciliations SET as_of = {} WHERE location_code = '012345A'",
        (now - Duration::days(31)).timestamp_millis()
    ))
    .await;
    let r = failing(&app, &["reconciliation"]).await;
    assert!(detail(&r, "reconciliation").contains("reconciliations"), "{r}");
    let lots = app.get("/api/v1/locations/012345A/inventory").await;
    let counts: Vec<(i64, i64, i64)> = lots["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["unit_id"].as_i64().unwrap(),
                l["lot_id"].as_i64().unwrap(),
                l["on_hand"].as_i64().unwrap(),
            )
        })
        .collect();
    reconcile(&app, &counts).await;
    failing(&app, &[]).await;

    // A backup logger whose calibration expired.
    app.assign(
        fridge,
        json!({"serial": "LT-OLD", "role": "backup", "calibrated_on": "2020-01-01", "calibration_expires_on": "2022-01-01"}),
    )
    .await;
    let r = failing(&app, &["calibration_current"]).await;
    assert!(
        detail(&r, "calibration_current").contains("LT-OLD")
            && detail(&r, "calibration_current").contains("2022-01-01"),
        "{r}"
    );
    ok(
        &app,
        "DELETE",
        &format!("/api/v1/units/{fridge}/logger/LT-OLD"),
        json!({}),
    )
    .await;
    app.assign(
        fridge,
        json!({"serial": "LT-NEW", "role": "backup", "calibrated_on": "2026-06-01", "calibration_expires_on": "2028-06-01",
               "from": Utc::now().to_rfc3339()}),
    )
    .await;
    failing(&app, &[]).await;

    // A dose whose lot is not here waits in the decrement-exception queue.
    let dose = json!({"doses": [{"dose_id": "X-1", "patient_id": "P-X", "cvx": "116", "lot": "NOPE-1", "eligibility": "V02",
                                  "administered_at": (now - Duration::hours(1)).to_rfc3339()}]});
    ok(&app, "POST", "/api/v1/locations/012345A/administrations", dose).await;
    let r = failing(&app, &["decrement_exceptions"]).await;
    let queue = app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    let ex = queue["exceptions"][0]["id"].as_i64().unwrap();
    assert!(detail(&r, "decrement_exceptions").contains(&ex.to_string()), "{r}");
    let rv = lots["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot"] == "RV-9")
        .unwrap()["lot_id"]
        .clone();
    ok(
        &app,
        "POST",
        &format!("/api/v1/decrement-exceptions/{ex}/resolve"),
        json!({"lot_id": rv}),
    )
    .await;
    failing(&app, &[]).await;

    // An excursion that met a rule and is not reviewed.
    let mut p = app.publisher("pub-warm").await;
    let start = now - Duration::minutes(170);
    let warm: Vec<Value> = (0..16)
        .map(|i| json!({"ts": (start + Duration::minutes(5 * i)).to_rfc3339(), "temp_c": if i < 15 { 9.5 } else { 5.0 }}))
        .collect();
    p.publish("vfc/loggers/LT-O1/readings", json!({ "readings": warm }).to_string())
        .await;
    p.wait_acked(1).await;
    let r = failing(&app, &["unreviewed_excursions"]).await;
    let excursions = app.get(&format!("/api/v1/excursions?unit={fridge}")).await;
    let xid = excursions["excursions"][0]["id"].as_i64().unwrap();
    assert!(
        detail(&r, "unreviewed_excursions").contains(&format!("excursion {xid}")),
        "{r}"
    );
    let holds = app.get(&format!("/api/v1/excursions/{xid}/holds")).await;
    let dets: Vec<Value> = holds["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| json!({"lot_id": h["lot_id"], "determination": "viable", "case_number": "MSD-9"}))
        .collect();
    app.eventually("the excursion ended", || async {
        let x = app.get(&format!("/api/v1/excursions/{xid}")).await;
        if x["ended_at"].is_null() {
            Err(format!("{x}"))
        } else {
            Ok(())
        }
    })
    .await;
    ok(
        &app,
        "POST",
        &format!("/api/v1/excursions/{xid}/review"),
        json!({"reviewed_by": "Pat Primary, RN", "cause": "door ajar",
        "corrective_action": "door closed", "lot_determinations": dets}),
    )
    .await;
    failing(&app, &[]).await;

    // Signed daily checks, when the program asks for them: every workday of the last 3 days.
    ordering(
        &app,
        json!({"prerequisites": {"daily_signoff": true}, "temperature_lookback_days": 3}),
    )
    .await;
    let today = now.with_timezone(&chrono_tz::America::New_York).date_naive();
    let workdays: Vec<String> = (1..=3)
        .map(|n| today - Duration::days(n))
        .filter(|d| d.weekday().number_from_monday() <= 5)
        .map(|d| d.to_string())
        .collect();
    assert!(!workdays.is_empty(), "any three days in a row hold a workday");
    let r = failing(&app, &["temperature_records"]).await;
    let d = detail(&r, "temperature_records");
    assert!(
        d.contains("not signed on") && workdays.iter().all(|w| d.contains(w.as_str())),
        "{r}"
    );
    for unit in [fridge, freezer] {
        for day in &workdays {
            ok(
                &app,
                "POST",
                &format!("/api/v1/units/{unit}/daily/{day}/sign"),
                json!({}),
            )
            .await;
        }
    }
    failing(&app, &[]).await;
    assert_eq!(on_hand(&app, freezer, vari).await, 10, "nothing of it moved");
}

async fn a_waiver_lets_one_submission_through_and_is_audited(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    ready_clinic(&app).await;
    failing(&app, &[]).await;
    let now = Utc::now();
    // A dose whose lot is not here: the exception check fails.
    let dose = json!({"doses": [{"dose_id": "X-1", "patient_id": "P-X", "cvx": "116", "lot": "NOPE-1", "eligibility": "V02",
                                  "administered_at": (now - Duration::hours(1)).to_rfc3339()}]});
    ok(&app, "POST", "/api/v1/locations/012345A/administrations", dose).await;
    failing(&app, &["decrement_exceptions"]).await;
    let lines = json!({"lines": [{"ndc": ROTATEQ, "funding": "vfc", "doses": 10}]});
    let first = ok(&app, "POST", "/api/v1/locations/012345A/orders", lines.clone()).await["id"]
        .as_i64()
        .unwrap();
    let (s, out) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{first}/submit"),
        json!({"urgent": false}),
    )
    .await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (409, Some("prerequisites")),
        "{out}"
    );
    assert_eq!(out["error"]["checks"][0]["check"], "decrement_exceptions", "{out}");
    assert_eq!(out["error"]["checks"].as_array().unwrap().len(), 1, "{out}");

    // Only the state waives.
    let clinic = app.create_token(&["--role", "vfc-coordinator", "--location", "012345A", "--name", "clinic"]);
    let waiver = json!({"check": "decrement_exceptions", "reason": "EHR vendor fixing lot mapping this week"});
    let (s, _) = app
        .send_as(
            &clinic,
            "POST",
            "/api/v1/locations/012345A/orders/waivers",
            waiver.clone(),
        )
        .await;
    assert_eq!(s, 403);
    let w = ok(&app, "POST", "/api/v1/locations/012345A/orders/waivers", waiver).await;
    let r = checks(&app).await;
    assert_eq!(r["ready"], true, "{r}");
    let o = ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{first}/submit"),
        json!({"urgent": false}),
    )
    .await;
    assert_eq!(o["status"], "in_review");
    assert_eq!(o["waivers"][0]["id"], w["id"], "the order shows the waiver: {o}");
    assert_eq!(o["waivers"][0]["check"], "decrement_exceptions");

    // Used once: the next submission is refused again.
    let second = ok(&app, "POST", "/api/v1/locations/012345A/orders", lines).await["id"]
        .as_i64()
        .unwrap();
    let (s, out) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{second}/submit"),
        json!({"urgent": false}),
    )
    .await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (409, Some("prerequisites")),
        "{out}"
    );

    let audit = app.get("/api/v1/audit?action=orders.waive").await;
    let row = &audit["audit"][0];
    assert_eq!(row["object_ids"][0], w["id"].to_string(), "{audit}");
    assert_eq!(row["location_code"], "012345A");
    assert!(
        row["actor"].as_str().unwrap().contains("test state coordinator"),
        "{row}"
    );
}

async fn outside_its_window_a_routine_order_is_refused_and_an_urgent_one_is_flagged(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    app.fridge().await;
    // Every month but this one and the next: outside the window whatever the day.
    let today = Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive();
    let (this, next) = (today.month(), today.month() % 12 + 1);
    let months: Vec<u32> = (1..=12).filter(|m| *m != this && *m != next).collect();
    let profile = json!({"frequency": "quarterly", "window": {"months": months, "half": "first"},
        "ship_to": "1 Main St, Baltimore, MD 21201", "delivery_days": ["tue", "wed"], "delivery_hours": "09:00-16:00",
        "instructions": "Deliver to rear dock"});
    let clinic = app.create_token(&["--role", "vfc-coordinator", "--location", "012345A", "--name", "clinic"]);
    let (s, _) = app
        .send_as(&clinic, "PUT", "/api/v1/locations/012345A/ordering", profile.clone())
        .await;
    assert_eq!(s, 403, "the state sets the profile");
    let view = ok(&app, "PUT", "/api/v1/locations/012345A/ordering", profile).await;
    assert_eq!(view["computed_frequency"], "as_needed", "no doses yet: {view}");
    let (s, seen) = app.get_as(&clinic, "/api/v1/locations/012345A/ordering").await;
    assert_eq!((s, &seen["frequency"]), (200, &json!("quarterly")));

    let order = ok(
        &app,
        "POST",
        "/api/v1/locations/012345A/orders",
        json!({"lines": [{"ndc": MMR, "funding": "vfc", "doses": 10}]}),
    )
    .await;
    let id = order["id"].as_i64().unwrap();
    let path = format!("/api/v1/orders/{id}/submit");
    let (s, out) = app.send_as(&clinic, "POST", &path, json!({"urgent": false})).await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (409, Some("outside_window")),
        "{out}"
    );
    assert!(out["error"]["next_window_opens"].is_string(), "{out}");
    let (s, out) = app.send_as(&clinic, "POST", &path, json!({"urgent": true})).await;
    assert_eq!(s, 400, "urgent needs a reason: {out}");
    let (s, out) = app
        .send_as(
            &clinic,
            "POST",
            &path,
            json!({"urgent": true, "urgent_reason": "refrigerator failure, stock wasted"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(
        (out["status"].as_str(), out["urgent"].as_bool()),
        (Some("in_review"), Some(true))
    );
    let queue = app.get("/api/v1/orders?status=in_review&urgent=true").await;
    assert_eq!(queue["orders"][0]["id"], id, "{queue}");
    assert_eq!(
        queue["orders"][0]["urgent_reason"],
        "refrigerator failure, stock wasted"
    );
}

async fn an_order_goes_from_draft_to_doses_on_the_shelf_and_its_history_tells_the_story(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    let fridge = app.fridge().await;
    let freezer = app.create_unit("012345A", "Freezer", "freezer").await;
    ok(
        &app,
        "PUT",
        "/api/v1/locations/012345A/product-units",
        json!({"ndc": VARIVAX, "unit_id": freezer}),
    )
    .await;
    ok(
        &app,
        "PUT",
        "/api/v1/locations/012345A/ordering",
        json!({"frequency": "as_needed", "ship_to": "1 Main St, Baltimore, MD 21201",
        "delivery_hours": "09:00-16:00", "instructions": "Rear dock, ring bell"}),
    )
    .await;
    let staff = app.create_token(&["--role", "clinic-staff", "--location", "012345A", "--name", "staff"]);
    let coordinator = app.create_token(&[
        "--role",
        "vfc-coordinator",
        "--location",
        "012345A",
        "--name",
        "coordinator",
    ]);

    // Bad lines are refused with what to fix; nothing is written.
    for (bad, says) in [
        (json!({"ndc": MMR, "funding": "private", "doses": 10}), "private"),
        (json!({"ndc": MMR, "funding": "vfc", "doses": -5}), "above 0"),
        (json!({"ndc": MMR, "funding": "vfc", "doses": 2.5}), "doses"),
        (
            json!({"ndc": "12345-6789-01", "funding": "vfc", "doses": 10}),
            "order set",
        ),
    ] {
        let (s, out) = app
            .send_as(
                &staff,
                "POST",
                "/api/v1/locations/012345A/orders",
                json!({"lines": [bad]}),
            )
            .await;
        assert_eq!(s, 400, "{out}");
        assert!(
            out["error"]["message"].as_str().unwrap().contains(says),
            "{says}: {out}"
        );
    }
    assert_eq!(app.get("/api/v1/locations/012345A/orders").await["orders"], json!([]));

    // Staff draft; the coordinator submits.
    let draft = json!({"lines": [{"ndc": ROTATEQ, "funding": "vfc", "doses": 20}, {"ndc": MMR, "funding": "vfc", "doses": 10},
                                 {"ndc": VARIVAX, "funding": "vfc", "doses": 10}], "note": "flu season ahead"});
    let (s, order) = app
        .send_as(&staff, "POST", "/api/v1/locations/012345A/orders", draft)
        .await;
    assert_eq!((s, order["status"].as_str()), (201, Some("draft")), "{order}");
    let id = order["id"].as_i64().unwrap();
    let line = |ndc: &str| {
        order["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ndc"] == ndc)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (rota_line, mmr_line) = (line(ROTATEQ), line(MMR));
    let (s, out) = app
        .send_as(
            &staff,
            "POST",
            &format!("/api/v1/orders/{id}/submit"),
            json!({"urgent": false}),
        )
        .await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (403, Some("scope")),
        "staff do not submit: {out}"
    );
    let (s, out) = app
        .send_as(
            &coordinator,
            "POST",
            &format!("/api/v1/orders/{id}/submit"),
            json!({"urgent": false}),
        )
        .await;
    assert_eq!((s, out["status"].as_str()), (200, Some("in_review")), "{out}");

    // The state reduces one line with a reason; an increase is refused.
    let (s, out) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/approve"),
        json!({"lines": [{"id": mmr_line, "doses": 50}]}),
    )
    .await;
    assert_eq!(s, 400, "{out}");
    let (s, out) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/approve"),
        json!({"lines": [{"id": mmr_line, "doses": 5}]}),
    )
    .await;
    assert_eq!(s, 400, "a reduction needs a reason: {out}");
    let approved = ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/approve"),
        json!({"lines": [{"id": mmr_line, "doses": 5, "reason": "3 months of use is 5 doses"}]}),
    )
    .await;
    assert_eq!(approved["status"], "approved");
    let (s, out) = app
        .send_as(
            &staff,
            "PATCH",
            &format!("/api/v1/orders/{id}"),
            json!({"note": "more please"}),
        )
        .await;
    assert_eq!(s, 409, "an approved order is locked: {out}");
    app.wait_email_with("3 months of use is 5 doses").await;

    // Export: the approved order, once; the batch downloads again.
    let r = app
        .http
        .post(app.url("/api/v1/orders/export"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let batch = r.headers()["x-export-batch"].to_str().unwrap().to_string();
    let csv = r.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "order_id,line_id,pin,suffix,ship_to,delivery_hours,instructions,ndc,funding,doses,urgent,approved_at"
    );
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows.iter().any(|r| r.starts_with(&format!("{id},{mmr_line},012345,A,\"1 Main St, Baltimore, MD 21201\",09:00-16:00,\"Rear dock, ring bell\",{MMR},vfc,5,false,"))), "{csv}");
    let again = app
        .http
        .post(app.url("/api/v1/orders/export"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        again.lines().count(),
        1,
        "a second export holds only what was approved since: {again}"
    );
    let r = app
        .http
        .get(app.url(&format!("/api/v1/orders/exports/{batch}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), csv);
    assert_eq!(app.get(&format!("/api/v1/orders/{id}")).await["status"], "sent");

    // A bad shipment file changes nothing, and says every bad row.
    let header = "order_id,ndc,lot,expires_on,doses,backordered_doses,carrier,tracking_number,ship_date,direct_ship";
    let bad = format!(
        "{header}\n999999,{ROTATEQ},R1,2028-01-31,20,0,UPS,1Z1,2026-11-20,false\n{id},{ROTATEQ},R1,2028-01-31,25,0,UPS,1Z1,2026-11-20,false\n\
         {id},58160-0842-52,B1,2028-01-31,5,0,UPS,1Z1,2026-11-20,false\n{id},{VARIVAX},V1,2028-02-30,10,0,FedEx,77,2026-11-20,true\n\
         {id},{ROTATEQ},ROTA-77,2028-01-31,20,0,UPS,1Z999AA10123456784,2026-11-20,false\n"
    );
    let shipments = |body: String| {
        app.http
            .post(app.url("/api/v1/shipments"))
            .bearer_auth(&app.token)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let r = shipments(bad).await.unwrap();
    assert_eq!(r.status(), 422);
    let out: Value = r.json().await.unwrap();
    let lines: Vec<i64> = out["error"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 5], "{out}");
    let o = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(
        (o["status"].as_str(), o["shipments"].as_array().unwrap().len()),
        (Some("sent"), 0),
        "{o}"
    );

    // One line shipped, one backordered, one shipped direct by the manufacturer.
    let good = format!(
        "{header}\n{id},{ROTATEQ},ROTA-77,2028-01-31,20,0,UPS,1Z999AA10123456784,2026-11-20,false\n\
         {id},{MMR},,,0,5,,,,false\n{id},{VARIVAX},VX-55,2027-12-31,10,0,FedEx,7712345,2026-11-21,true\n"
    );
    let r = shipments(good.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        (out["imported"].as_i64(), out["orders"][0]["status"].as_str()),
        (Some(3), Some("partially_shipped")),
        "{out}"
    );
    let out: Value = shipments(good).await.unwrap().json().await.unwrap();
    assert_eq!(
        (out["imported"].as_i64(), out["already_imported"].as_i64()),
        (Some(0), Some(3)),
        "{out}"
    );
    app.wait_email_with("1Z999AA10123456784").await;

    // The backorder is cancelled: the state closes the line; everything left has shipped.
    let closed = ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/lines/{mmr_line}/close"),
        json!({"reason": "manufacturer backorder cancelled"}),
    )
    .await;
    assert_eq!(closed["status"], "shipped", "{closed}");

    // Received: two RotaTeq doses short, the varicella too warm.
    let ships = closed["shipments"].as_array().unwrap();
    let ship = |ndc: &str| ships.iter().find(|s| s["ndc"] == ndc).unwrap()["id"].as_i64().unwrap();
    let body = json!({"lines": [
        {"shipment_line_id": ship(ROTATEQ), "unit_id": fridge, "doses_received": 18, "lot": "ROTA-77", "expires_on": "2028-01-31", "condition": "ok"},
        {"shipment_line_id": ship(VARIVAX), "doses_received": 10, "lot": "VX-55", "expires_on": "2027-12-31", "condition": "too_warm"}
    ]});
    let (s, out) = app
        .send_as(&staff, "POST", &format!("/api/v1/orders/{id}/receive"), body.clone())
        .await;
    assert_eq!(s, 400, "a shortfall needs a reason: {out}");
    let mut body = body;
    body["lines"][0]["shortfall_reason"] = json!("short_shipped");
    let (s, received) = app
        .send_as(&staff, "POST", &format!("/api/v1/orders/{id}/receive"), body.clone())
        .await;
    assert_eq!((s, received["status"].as_str()), (200, Some("received")), "{received}");
    let (s, out) = app
        .send_as(&staff, "POST", &format!("/api/v1/orders/{id}/receive"), body)
        .await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (409, Some("already_received")),
        "{out}"
    );
    assert!(out["error"]["received"]["doses_received"].is_number(), "{out}");

    // The same file again, written another way (TRUE, lower-case lot), after everything: it
    // was imported, and nothing counts twice.
    let again = format!(
        "{header}\n{id},{ROTATEQ},rota-77,2028-01-31,20,0,UPS,1Z999AA10123456784,2026-11-20,FALSE\n\
         {id},{MMR},,,0,5,,,,false\n{id},{VARIVAX},VX-55,2027-12-31,10,0,FedEx,7712345,2026-11-21,TRUE\n"
    );
    let r = shipments(again).await.unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        (out["imported"].as_i64(), out["already_imported"].as_i64()),
        (Some(0), Some(3)),
        "{out}"
    );

    // The shelf: RotaTeq in the fridge, the varicella in the freezer, on hold.
    let inv = app.get("/api/v1/locations/012345A/inventory").await;
    let lot = |name: &str| {
        inv["lots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lot"] == name)
            .cloned()
            .unwrap()
    };
    let (rota, vari) = (lot("ROTA-77"), lot("VX-55"));
    assert_eq!(
        (
            rota["unit_id"].as_i64(),
            rota["on_hand"].as_i64(),
            rota["status"].as_str()
        ),
        (Some(fridge), Some(18), Some("usable"))
    );
    assert_eq!(
        (
            vari["unit_id"].as_i64(),
            vari["on_hand"].as_i64(),
            vari["status"].as_str()
        ),
        (Some(freezer), Some(10), Some("on_hold"))
    );
    assert_eq!(on_hand(&app, fridge, rota["lot_id"].as_i64().unwrap()).await, 18);
    let ledger = app
        .get(&format!("/api/v1/locations/012345A/lots/{}/ledger", rota["lot_id"]))
        .await;
    assert_eq!(ledger["events"][0]["source"], "order", "{ledger}");
    assert_eq!(rota["funding"], "vfc");

    // The emails went out: approved, shipped, on hold at arrival (to the state too), received.
    let mails = app.wait_email_with(&format!("VFC order {id} received")).await;
    for subject in ["approved", "partially shipped", "stock on hold at arrival", "received"] {
        assert!(
            mails
                .iter()
                .any(|m| m.contains(&format!("VFC order {id}")) && m.contains(subject)),
            "{subject}"
        );
    }
    assert!(mails
        .iter()
        .any(|m| m.contains("vfc.state@health.example") && m.contains("stock on hold at arrival")));

    // The history tells the whole story; so does the audit trail.
    let o = app.get(&format!("/api/v1/orders/{id}")).await;
    let statuses: Vec<&str> = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "draft",
            "in_review",
            "approved",
            "sent",
            "partially_shipped",
            "partially_shipped",
            "shipped",
            "shipped",
            "received"
        ],
        "{o}"
    );
    let line_of = |id: i64| {
        o["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(line_of(mmr_line)["reduction_reason"], "3 months of use is 5 doses");
    assert_eq!(line_of(mmr_line)["closed_reason"], "manufacturer backorder cancelled");
    assert_eq!(line_of(rota_line)["received_doses"], 18);
    assert!(o["shipments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["direct_ship"] == true && s["tracking_number"] == "7712345"));
    let all = app.get("/api/v1/audit?limit=1000").await;
    let actions: Vec<&str> = all["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "order.create",
        "order.submit",
        "order.approve",
        "orders.export",
        "orders.shipments",
        "order.close_line",
        "order.receive",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

async fn a_clinic_sees_and_acts_on_its_own_locations_orders_only(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    for s in ["A", "B"] {
        app.create_location("012345", s).await;
    }
    app.create_location("054321", "A").await;
    let b_order = ok(
        &app,
        "POST",
        "/api/v1/locations/012345B/orders",
        json!({"lines": [{"ndc": MMR, "funding": "vfc", "doses": 10}]}),
    )
    .await;
    let b = b_order["id"].as_i64().unwrap();
    let a_token = app.create_token(&["--role", "vfc-coordinator", "--location", "012345A", "--name", "a"]);
    let other = app.create_token(&["--role", "vfc-coordinator", "--pin", "054321", "--name", "other pin"]);
    for token in [&a_token, &other] {
        assert_eq!(app.get_as(token, &format!("/api/v1/orders/{b}")).await.0, 404);
        let (s, _) = app
            .send_as(
                token,
                "POST",
                &format!("/api/v1/orders/{b}/submit"),
                json!({"urgent": false}),
            )
            .await;
        assert_eq!(s, 404);
        let (s, _) = app
            .send_as(
                token,
                "PATCH",
                &format!("/api/v1/orders/{b}"),
                json!({"note": "mine now"}),
            )
            .await;
        assert_eq!(s, 404);
        assert_eq!(app.get_as(token, "/api/v1/locations/012345B/orders").await.0, 404);
        let (s, list) = app.get_as(token, "/api/v1/orders").await;
        assert_eq!((s, &list["orders"]), (200, &json!([])), "{list}");
    }
    let pin = app.create_token(&["--role", "vfc-coordinator", "--pin", "012345", "--name", "pin"]);
    let (s, list) = app.get_as(&pin, "/api/v1/orders").await;
    assert_eq!(
        (s, list["orders"][0]["id"].as_i64()),
        (200, Some(b)),
        "the PIN sees its suffix location's order"
    );
}

async fn the_queue_shows_each_locations_prerequisites_as_its_inputs_change(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    ordering(&app, json!({"prerequisites": {"reconciliation_days": 30}})).await;
    let fridge = app.fridge().await;
    let lot = receive(
        &app,
        "012345A",
        fridge,
        (MMR, "MM-3", "2099-01-31", "vfc"),
        20,
        Utc::now() - Duration::days(2),
    )
    .await;
    ok(
        &app,
        "POST",
        "/api/v1/locations/012345A/orders/waivers",
        json!({"check": "reconciliation", "reason": "count booked for Friday"}),
    )
    .await;
    let id = ok(
        &app,
        "POST",
        "/api/v1/locations/012345A/orders",
        json!({"lines": [{"ndc": MMR, "funding": "vfc", "doses": 10}]}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/submit"),
        json!({"urgent": false}),
    )
    .await;
    // Nobody asks for the prerequisites again: the stored status follows what happens.
    let queued = |ready: bool| {
        let app = &app;
        async move {
            app.eventually(&format!("the queue showing ready = {ready}"), || async {
                let q = app.get("/api/v1/orders?status=in_review").await;
                let p = &q["orders"][0]["prerequisites"];
                if p["ready"] == ready {
                    Ok(p.clone())
                } else {
                    Err(format!("{q}"))
                }
            })
            .await
        }
    };
    let p = queued(false).await;
    let failed: Vec<&Value> = p["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "the waiver was used by the submission: {p}");
    assert_eq!(failed[0]["check"], "reconciliation");
    reconcile(&app, &[(fridge, lot, 20)]).await;
    queued(true).await;
}

/// An order of 012345A with `lines`, submitted, approved as asked and exported: its id.
async fn sent_order(app: &TestApp, lines: Value) -> i64 {
    let id = ok(
        app,
        "POST",
        "/api/v1/locations/012345A/orders",
        json!({ "lines": lines }),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    ok(
        app,
        "POST",
        &format!("/api/v1/orders/{id}/submit"),
        json!({"urgent": false}),
    )
    .await;
    ok(app, "POST", &format!("/api/v1/orders/{id}/approve"), json!({})).await;
    let r = app
        .http
        .post(app.url("/api/v1/orders/export"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    id
}

/// The distributor's shipment file with `rows` under its header, imported by the state.
pub async fn ship(app: &TestApp, rows: &str) -> reqwest::Response {
    let file = format!(
        "order_id,ndc,lot,expires_on,doses,backordered_doses,carrier,tracking_number,ship_date,direct_ship\n{rows}"
    );
    app.http
        .post(app.url("/api/v1/shipments"))
        .bearer_auth(&app.token)
        .header("content-type", "text/csv")
        .body(file)
        .send()
        .await
        .unwrap()
}

async fn a_box_that_never_arrived_is_received_as_none_with_its_reason(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    let fridge = app.fridge().await;
    let id = sent_order(&app, json!([{"ndc": MMR, "funding": "vfc", "doses": 10}])).await;
    let r = ship(
        &app,
        &format!("{id},{MMR},MM-9,2028-03-31,10,0,UPS,1Z77,2026-11-20,false\n"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let ship = app.get(&format!("/api/v1/orders/{id}")).await["shipments"][0]["id"]
        .as_i64()
        .unwrap();
    let (s, out) = send(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/receive"),
        json!({"lines": [{"shipment_line_id": ship, "unit_id": fridge, "doses_received": 0, "condition": "ok"}]}),
    )
    .await;
    assert_eq!(s, 400, "none arrived: the reason is needed: {out}");
    let received = ok(&app, "POST", &format!("/api/v1/orders/{id}/receive"),
        json!({"lines": [{"shipment_line_id": ship, "doses_received": 0, "condition": "ok", "shortfall_reason": "lost_in_transit"}]})).await;
    assert_eq!(received["status"], "received", "{received}");
    let got = &received["shipments"][0]["received"];
    assert_eq!(
        (
            got["doses_received"].as_i64(),
            got["lot_id"].is_null(),
            got["shortfall_reason"].as_str()
        ),
        (Some(0), true, Some("lost_in_transit")),
        "{received}"
    );
    assert_eq!(app.get(&format!("/api/v1/orders/{id}")).await["status"], "received");
    let inv = app.get("/api/v1/locations/012345A/inventory").await;
    assert_eq!(inv["lots"], json!([]), "nothing came into stock: {inv}");
}

async fn one_ndc_ordered_as_vfc_and_state_stock_ships_and_arrives_as_each(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    no_prerequisites(&app).await;
    let fridge = app.fridge().await;
    let lines =
        json!([{"ndc": ROTATEQ, "funding": "vfc", "doses": 10}, {"ndc": ROTATEQ, "funding": "state", "doses": 10}]);
    let id = sent_order(&app, lines).await;
    // The file has no funding column: the two rows fill the two lines in order.
    let rows = format!(
        "{id},{ROTATEQ},RV-V,2028-03-31,10,0,UPS,1Z1,2026-11-20,false\n{id},{ROTATEQ},RV-S,2028-03-31,10,0,UPS,1Z1,2026-11-20,false\n"
    );
    let r = ship(&app, &rows).await;
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["orders"][0]["status"], "shipped", "{out}");
    let o = app.get(&format!("/api/v1/orders/{id}")).await;
    let lines: Vec<&Value> = o["lines"].as_array().unwrap().iter().collect();
    assert!(lines.iter().all(|l| l["shipped_doses"] == 10), "{o}");
    let body: Vec<Value> = o["shipments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"shipment_line_id": s["id"], "unit_id": fridge, "doses_received": 10, "condition": "ok"}))
        .collect();
    let done = ok(
        &app,
        "POST",
        &format!("/api/v1/orders/{id}/receive"),
        json!({ "lines": body }),
    )
    .await;
    assert_eq!(done["status"], "received");
    let inv = app.get("/api/v1/locations/012345A/inventory").await;
    let funding = |lot: &str| {
        inv["lots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lot"] == lot)
            .unwrap()["funding"]
            .clone()
    };
    assert_eq!(
        (funding("RV-V"), funding("RV-S")),
        (json!("vfc"), json!("state")),
        "{inv}"
    );
}

on_both_databases!(
    one_ndc_ordered_as_vfc_and_state_stock_ships_and_arrives_as_each,
    a_box_that_never_arrived_is_received_as_none_with_its_reason,
    the_queue_shows_each_locations_prerequisites_as_its_inputs_change,
    suggestions_follow_the_formula_to_the_dose,
    each_prerequisite_fails_alone_naming_what_to_fix_and_passes_once_fixed,
    a_waiver_lets_one_submission_through_and_is_audited,
    outside_its_window_a_routine_order_is_refused_and_an_urgent_one_is_flagged,
    an_order_goes_from_draft_to_doses_on_the_shelf_and_its_history_tells_the_story,
    a_clinic_sees_and_acts_on_its_own_locations_orders_only,
);
