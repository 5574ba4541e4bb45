//! Trust: what a clinic's token may do to the safeguards of its own units. Alarms only the
//! state can weaken (docs/domain.md, "Excursions and alarm rules", "Who may change them").

use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{receive, ROTATEQ};
use crate::on_both_databases;

/// A token of the clinic at 012345A, the owner of the fridge.
fn clinic(app: &TestApp) -> String {
    app.create_token(&["--role", "clinic", "--location", "012345A", "--name", "front desk"])
}

/// Sends as `token` and expects 403 `state_approval_required` naming `why`.
async fn refused(app: &TestApp, token: &str, method: &str, path: &str, body: Value, why: &str) {
    let (status, out) = app.send_as(token, method, path, body).await;
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (403, Some("state_approval_required")),
        "{method} {path}: {out}"
    );
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains(why), "{message} should say {why:?}");
}

async fn a_clinic_cannot_loosen_or_remove_a_units_rules_and_its_freezing_still_alerts(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let token = clinic(&app);
    let path = format!("/api/v1/units/{unit}/rules");
    refused(
        &app,
        &token,
        "PUT",
        &path,
        json!({"rules": []}),
        "rule warm-60 would be removed",
    )
    .await;
    let mut rules = app.get(&path).await["rules"].clone();
    rules[2]["condition"]["temp_c"] = json!(-5.0);
    refused(
        &app,
        &token,
        "PUT",
        &path,
        json!({ "rules": rules }),
        "rule freezing would fire later",
    )
    .await;

    app.freezing("LT-1").await;
    app.wait_email_with("VFC temperature alert: 012345A Main refrigerator")
        .await;
    let history = app.get(&format!("/api/v1/units/{unit}/rules/history")).await;
    let subjects: Vec<&str> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["primary_logger"], "only its first logger: {history}");
}

async fn a_clinic_may_tighten_a_units_rules_and_not_go_back_to_looser_ones(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let token = clinic(&app);
    let path = format!("/api/v1/units/{unit}/rules");
    let mut rules = app.get(&path).await["rules"].clone();
    rules[0]["condition"]["temp_c"] = json!(7.5);
    rules[0]["minutes"] = json!(30);
    rules
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "warm-now", "condition": {"type": "above", "temp_c": 12.0},
        "kind": "consecutive", "minutes": 0, "severity": "critical"}));
    let (status, out) = app.send_as(&token, "PUT", &path, json!({ "rules": rules })).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["source"], "unit", "{out}");
    // Back to the program's rules would alarm only above 8 °C again: the state's to decide.
    refused(
        &app,
        &token,
        "PUT",
        &path,
        json!({"rules": null}),
        "rule warm-60 would fire later",
    )
    .await;
    let (status, out) = app.send_as(&app.token, "PUT", &path, json!({"rules": null})).await;
    assert_eq!((status, &out["source"]), (200, &json!("program")), "{out}");
}

async fn a_clinic_may_narrow_a_units_range_but_not_widen_it(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let token = clinic(&app);
    let path = format!("/api/v1/units/{unit}");
    refused(
        &app,
        &token,
        "PUT",
        &path,
        json!({"range": {"min_c": -90.0, "max_c": 90.0}}),
        "wider than 2.0 to 8.0",
    )
    .await;
    let (status, out) = app
        .send_as(&token, "PUT", &path, json!({"range": {"min_c": 3.0, "max_c": 7.0}}))
        .await;
    assert_eq!(
        (status, &out["range"]),
        (200, &json!({"min_c": 3.0, "max_c": 7.0})),
        "{out}"
    );
    // Back out to the kind's range is wider than what is set now: the state's to decide.
    refused(
        &app,
        &token,
        "PUT",
        &path,
        json!({"range": {"min_c": 2.0, "max_c": 8.0}}),
        "wider than 3.0 to 7.0",
    )
    .await;
    let (status, out) = app
        .send_as(&app.token, "PUT", &path, json!({"range": {"min_c": 1.0, "max_c": 9.0}}))
        .await;
    assert_eq!(status, 200, "the state may: {out}");
}

async fn a_clinic_cannot_create_a_unit_with_a_range_wider_than_its_kinds(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    let token = clinic(&app);
    let path = "/api/v1/locations/012345A/units";
    let wide = json!({"name": "Wide fridge", "kind": "refrigerator", "range": {"min_c": -20.0, "max_c": 30.0}});
    refused(&app, &token, "POST", path, wide.clone(), "wider than 2.0 to 8.0").await;
    let other = json!({"name": "Shelf", "kind": "other", "range": {"min_c": 15.0, "max_c": 25.0}});
    refused(&app, &token, "POST", path, other, "no storage range").await;
    let narrow = json!({"name": "Narrow fridge", "kind": "refrigerator", "range": {"min_c": 3.0, "max_c": 7.0}});
    assert_eq!(app.send_as(&token, "POST", path, narrow).await.0, 201);
    assert_eq!(
        app.send_as(&app.token, "POST", path, wide).await.0,
        201,
        "the state may"
    );
}

async fn a_clinic_cannot_take_a_unit_that_stores_vaccine_out_of_service(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let empty = app.create_unit("012345A", "Empty refrigerator", "refrigerator").await;
    receive(
        &app,
        unit,
        (ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    let token = clinic(&app);
    let off = json!({"kind": "out_of_service", "reason": "compressor noise"});
    refused(
        &app,
        &token,
        "POST",
        &format!("/api/v1/units/{unit}/downtime"),
        off.clone(),
        "stores vaccine",
    )
    .await;
    let path = format!("/api/v1/units/{empty}/downtime");
    assert_eq!(
        app.send_as(&token, "POST", &path, off.clone()).await.0,
        201,
        "an empty unit may"
    );
    let path = format!("/api/v1/units/{unit}/downtime");
    assert_eq!(
        app.send_as(&app.token, "POST", &path, off).await.0,
        201,
        "the state may"
    );
}

async fn a_clinics_maintenance_window_is_capped_by_the_program(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let token = clinic(&app);
    let path = format!("/api/v1/units/{unit}/downtime");
    let window = |hours: i64| {
        json!({"kind": "maintenance", "reason": "defrost",
            "until": (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339()})
    };
    refused(&app, &token, "POST", &path, window(30), "at most 24 hours").await;
    let (status, first) = app.send_as(&token, "POST", &path, window(20)).await;
    assert_eq!(status, 201, "{first}");
    let end = format!("{path}/{}/end", first["id"]);
    assert_eq!(app.send_as(&token, "POST", &end, json!({})).await.0, 200);
    // The program may allow clinics longer windows.
    let mut program = app.get("/api/v1/program").await;
    assert_eq!(program["clinic_maintenance_max_hours"], 24.0);
    program["clinic_maintenance_max_hours"] = json!(48.0);
    assert_eq!(app.send_as(&app.token, "PUT", "/api/v1/program", program).await.0, 200);
    assert_eq!(app.send_as(&token, "POST", &path, window(30)).await.0, 201);
}

/// The change emails of unit `what` ("alarm rules", …) sent so far, once both coordinators have
/// theirs.
async fn told(app: &TestApp, what: &str) -> Vec<String> {
    let needle = format!("Main refrigerator, {what}");
    app.eventually(&format!("both coordinators told of the {what}"), || async {
        let mail = app.emails_with(&needle);
        let to = |who: &str| mail.iter().filter(|m| m.contains(who)).count();
        match (to("primary.012345A@example.org"), to("backup.012345A@example.org")) {
            (1, 1) => Ok(mail.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn every_change_to_what_guards_a_unit_is_told_to_its_coordinators_and_listed_for_the_state(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let token = clinic(&app);
    let rules_path = format!("/api/v1/units/{unit}/rules");
    let mut rules = app.get(&rules_path).await["rules"].clone();
    rules[0]["minutes"] = json!(30);
    assert_eq!(
        app.send_as(&token, "PUT", &rules_path, json!({ "rules": rules }))
            .await
            .0,
        200
    );
    let mail = told(&app, "alarm rules").await;
    assert!(
        mail[0].contains("warm-60: above 8.0 =C2=B0C for 30 consecutive minutes")
            || mail[0].contains("warm-60: above 8.0 °C for 30 consecutive minutes"),
        "before and after in words: {}",
        mail[0]
    );
    assert!(mail[0].contains("front desk"), "who: {}", mail[0]);

    let path = format!("/api/v1/units/{unit}");
    let narrow = json!({"range": {"min_c": 3.0, "max_c": 7.0}});
    assert_eq!(app.send_as(&token, "PUT", &path, narrow).await.0, 200);
    told(&app, "temperature range").await;

    let window = json!({"kind": "maintenance", "reason": "defrost",
        "until": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339()});
    let path = format!("/api/v1/units/{unit}/downtime");
    assert_eq!(app.send_as(&token, "POST", &path, window).await.0, 201);
    let mail = told(&app, "downtime").await;
    assert!(mail[0].contains("maintenance from"), "{}", mail[0]);

    app.assign(unit, json!({"serial": "LT-2", "reading_interval_s": 300}))
        .await;
    let mail = told(&app, "primary data logger").await;
    assert!(
        mail[0].contains("logger LT-1") && mail[0].contains("logger LT-2"),
        "{}",
        mail[0]
    );

    let (status, _) = app.get_as(&token, "/api/v1/rule-changes").await;
    assert_eq!(status, 403, "the state's list");
    let list = app.get("/api/v1/rule-changes").await;
    let subjects: Vec<&str> = list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "primary_logger",
            "unit_rules",
            "unit_range",
            "downtime",
            "primary_logger"
        ],
        "{list}"
    );
    assert_eq!(list["changes"][1]["location"], "012345A");
    assert_eq!(list["next"], Value::Null);
    let page = app.get("/api/v1/rule-changes?limit=2").await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    let rest = app
        .get(&format!(
            "/api/v1/rule-changes?cursor={}",
            page["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["changes"].as_array().unwrap().len(), 3, "{rest}");
}

async fn a_unit_that_stores_vaccine_without_a_logger_is_as_unwatched_as_a_silent_one(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    receive(
        &app,
        unit,
        (ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now() - chrono::Duration::hours(3),
    )
    .await;
    // Its logger was taken off two hours ago and none replaced it.
    let at = (chrono::Utc::now() - chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M:%SZ");
    let (status, out) = app
        .send_as(
            &app.token,
            "DELETE",
            &format!("/api/v1/units/{unit}/logger/LT-1?at={at}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let open = |want: usize| {
        let app = &app;
        async move {
            app.eventually(&format!("{want} open condition(s)"), || async {
                let l = app.get("/api/v1/device-alerts?open=true").await;
                let l = l["device_alerts"].as_array().unwrap().clone();
                if l.len() == want {
                    Ok(l)
                } else {
                    Err(format!("{l:?}"))
                }
            })
            .await
        }
    };
    let alerts = open(1).await;
    assert_eq!(
        (&alerts[0]["kind"], &alerts[0]["serial"], &alerts[0]["unit_id"]),
        (&json!("no_data"), &Value::Null, &json!(unit))
    );
    let mail = app.wait_email_with("no data (no logger)").await;
    let alert = mail.iter().find(|m| m.contains("no data (no logger)")).unwrap();
    assert!(
        alert.contains("No data logger watches the Main refrigerator"),
        "{alert}"
    );

    // A logger serves it again: the condition ends.
    app.assign(unit, json!({"serial": "LT-3", "reading_interval_s": 300}))
        .await;
    open(0).await;
}

/// A lot of Rotateq received into `unit` at `code`, an hour ago; its id.
async fn stock_at(app: &TestApp, code: &str, unit: i64, lot: &str) -> i64 {
    let body = json!({"unit_id": unit, "received_at": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        "lines": [{"ndc": ROTATEQ, "lot": lot, "expires_on": "2099-01-31", "funding": "vfc", "doses": 10}]});
    let (status, out) = app
        .send_as(&app.token, "POST", &format!("/api/v1/locations/{code}/receipts"), body)
        .await;
    assert_eq!(status, 201, "{out}");
    out["events"][0]["lot_id"].as_i64().unwrap()
}

async fn a_location_token_transfers_between_its_own_units_and_needs_the_pin_for_a_sibling(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let second = app.create_unit("012345A", "Second refrigerator", "refrigerator").await;
    app.create_location("012345", "B").await;
    let sibling = app.create_unit("012345B", "B refrigerator", "refrigerator").await;
    let lot = stock_at(&app, "012345A", unit, "X123456").await;
    let token = clinic(&app);
    let path = "/api/v1/locations/012345A/transfers";
    let to = |code: &str, to_unit: i64| {
        json!({"from_unit_id": unit, "to_location": code, "to_unit_id": to_unit, "reason": "rebalance",
            "lines": [{"lot_id": lot, "doses": 1}]})
    };
    let (status, out) = app.send_as(&token, "POST", path, to("012345A", second)).await;
    assert_eq!((status, &out["status"]), (201, &json!("completed")), "{out}");
    let (status, out) = app.send_as(&token, "POST", path, to("012345B", sibling)).await;
    assert_eq!(status, 403, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a token for the whole PIN"),
        "{out}"
    );
    let b = app.get("/api/v1/locations/012345B/inventory").await;
    assert_eq!(b["lots"], json!([]), "nothing reached 012345B: {b}");
    let pin = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "the practice"]);
    let (status, out) = app.send_as(&pin, "POST", path, to("012345B", sibling)).await;
    assert_eq!((status, &out["status"]), (201, &json!("completed")), "{out}");
}

async fn a_transfer_request_to_another_pin_reads_the_same_whether_or_not_that_location_exists(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let lot = stock_at(&app, "012345A", unit, "X123456").await;
    app.create_location("067890", "A").await;
    let token = clinic(&app);
    let path = "/api/v1/locations/012345A/transfers";
    let to = |code: &str| json!({"from_unit_id": unit, "to_location": code, "reason": "closing", "lines": [{"lot_id": lot, "doses": 1}]});
    let (s1, real) = app.send_as(&token, "POST", path, to("067890A")).await;
    let (s2, none) = app.send_as(&token, "POST", path, to("099999Z")).await;
    assert_eq!((s1, s2), (201, 201), "{real} {none}");
    let shape = |t: &Value| (t["status"].clone(), t["to_unit_id"].clone(), t["decided_by"].clone());
    assert_eq!(shape(&real), shape(&none));
    assert_eq!(real["status"], "pending");
    // The state finds out: approving a request to nowhere says so; it is rejected with a note.
    let id = none["id"].as_i64().unwrap();
    let (status, out) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/transfers/{id}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("099999Z is not a registered"),
        "{out}"
    );
    let (status, out) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/transfers/{id}/reject"),
            json!({"note": "no such provider"}),
        )
        .await;
    assert_eq!((status, &out["status"]), (200, &json!("rejected")), "{out}");
}

async fn a_logger_moved_to_another_pin_reports_to_its_new_owner_only(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    let token = clinic(&app);
    let mut p = app.publisher("lt-1").await;
    let before = chrono::Utc::now() - chrono::Duration::minutes(30);
    p.reading("LT-1", &before.to_rfc3339(), 5.0).await;
    p.publish("vfc/loggers/LT-1/status", json!({"battery_pct": 80}).to_string())
        .await;
    p.wait_acked(2).await;
    app.eventually("the status stored", || async {
        let l = app.get("/api/v1/loggers/LT-1").await;
        if l["battery_pct"] == 80.0 {
            Ok(())
        } else {
            Err(l.to_string())
        }
    })
    .await;
    // The state moves it to PIN 054321, where it reports on.
    app.create_location("054321", "A").await;
    let theirs = app.create_unit("054321A", "Their refrigerator", "refrigerator").await;
    let moved = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    app.assign(theirs, json!({"serial": "LT-1", "from": moved})).await;
    p.reading("LT-1", &chrono::Utc::now().to_rfc3339(), 4.0).await;
    p.wait_acked(3).await;
    app.register_gateway("054321A", "gw-054321A-1").await;
    let mut theirs_gw = app.publisher("gw-054321A-1").await;
    theirs_gw
        .publish(
            "vfc/gateways/gw-054321A-1/loggers/LT-1/status",
            json!({"battery_pct": 12, "gateway": "gw-054321A-1"}).to_string(),
        )
        .await;
    theirs_gw.wait_acked(1).await;
    app.eventually("the new status stored", || async {
        let l = app.get("/api/v1/loggers/LT-1").await;
        if l["battery_pct"] == 12.0 {
            Ok(())
        } else {
            Err(l.to_string())
        }
    })
    .await;
    let (status, old) = app.get_as(&token, "/api/v1/loggers/LT-1").await;
    assert_eq!(status, 200, "it served 012345: {old}");
    assert_eq!(
        old["last_reading"]["temp_c"], 5.0,
        "only its reading while it was ours: {old}"
    );
    assert_eq!(
        (&old["battery_pct"], &old["gateway"], &old["assignment"]),
        (&Value::Null, &Value::Null, &Value::Null),
        "{old}"
    );
}

async fn another_pins_lot_and_a_lot_that_does_not_exist_get_the_same_answer(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    app.create_location("067890", "A").await;
    let theirs = app.create_unit("067890A", "Their refrigerator", "refrigerator").await;
    let their_lot = stock_at(&app, "067890A", theirs, "Y999").await;
    let token = clinic(&app);
    let dose = json!({"doses": [{"patient_id": "P1", "cvx": "116", "lot": "NOPE42", "eligibility": "V02",
        // Today where the clinic is (New York), whatever the hour in UTC.
        "administered_on": chrono::Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive().to_string()}]});
    let (status, out) = app
        .send_as(&token, "POST", "/api/v1/locations/012345A/administrations", dose)
        .await;
    assert_eq!(status, 200, "{out}");
    let queue = app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    let id = queue["exceptions"][0]["id"].as_i64().expect("the queued dose");
    let path = format!("/api/v1/decrement-exceptions/{id}/resolve");
    let (s1, foreign) = app.send_as(&token, "POST", &path, json!({"lot_id": their_lot})).await;
    let (s2, missing) = app.send_as(&token, "POST", &path, json!({"lot_id": 999_999})).await;
    let said = |v: &Value, id: i64| {
        v["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&format!("lot {id} "), "lot … ")
    };
    assert_eq!((s1, said(&foreign, their_lot)), (s2, said(&missing, 999_999)));
    assert_eq!(s1, 400);
}

async fn a_serial_or_facility_id_taken_by_another_pin_is_already_in_use_elsewhere(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    app.create_location("067890", "A").await;
    let theirs = app.create_unit("067890A", "Their refrigerator", "refrigerator").await;
    app.assign(theirs, json!({"serial": "LT-9", "from": "2020-01-01T00:00:00Z"}))
        .await;
    let (status, out) = app
        .send_as(
            &app.token,
            "PUT",
            "/api/v1/locations/067890A/facility-ids",
            json!({"facility_ids": ["CITY-PEDS"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let token = clinic(&app);
    let (status, out) = app
        .send_as(
            &token,
            "PUT",
            &format!("/api/v1/units/{unit}/logger"),
            json!({"serial": "LT-9"}),
        )
        .await;
    assert_eq!(status, 409, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in use elsewhere"),
        "{out}"
    );
    let (status, out) = app
        .send_as(
            &token,
            "PUT",
            "/api/v1/locations/012345A/facility-ids",
            json!({"facility_ids": ["CITY-PEDS"]}),
        )
        .await;
    assert_eq!(status, 409, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("already in use elsewhere") && !message.contains("067890"),
        "{out}"
    );
}

async fn every_list_comes_in_pages_of_at_most_a_thousand(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let second = app.create_unit("012345A", "Second refrigerator", "refrigerator").await;
    let lot = stock_at(&app, "012345A", unit, "X123456").await;
    for _ in 0..3 {
        let body = json!({"from_unit_id": unit, "to_unit_id": second, "reason": "rebalance",
            "lines": [{"lot_id": lot, "doses": 1}]});
        let path = "/api/v1/locations/012345A/transfers";
        assert_eq!(app.send_as(&app.token, "POST", path, body).await.0, 201);
    }
    let first = app.get("/api/v1/locations/012345A/transfers?limit=2").await;
    assert_eq!(first["transfers"].as_array().unwrap().len(), 2, "{first}");
    let next = first["next"].as_str().expect("a next page");
    let rest = app
        .get(&format!("/api/v1/locations/012345A/transfers?limit=2&cursor={next}"))
        .await;
    assert_eq!(rest["transfers"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["next"], Value::Null);
    let ids: Vec<i64> = [&first, &rest]
        .iter()
        .flat_map(|p| {
            p["transfers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(ids.len(), 3, "each once, newest first: {ids:?}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // Loggers come a page at a time by serial.
    app.assign(second, json!({"serial": "LT-2", "from": "2020-01-01T00:00:00Z"}))
        .await;
    let page = app.get("/api/v1/loggers?limit=1").await;
    assert_eq!(
        (page["loggers"][0]["serial"].as_str(), page["next"].as_str()),
        (Some("LT-1"), Some("LT-1"))
    );
    let page = app.get("/api/v1/loggers?limit=1&cursor=LT-1").await;
    assert_eq!(
        (page["loggers"][0]["serial"].as_str(), &page["next"]),
        (Some("LT-2"), &Value::Null)
    );
    assert_eq!(app.get_as(&app.token, "/api/v1/loggers?limit=0").await.0, 400);
    for list in [
        "transfers",
        "holds",
        "borrowing",
        "reconciliations",
        "decrement-exceptions",
        "revaccination-review",
    ] {
        for limit in ["0", "1001", "x"] {
            let (status, body) = app
                .get_as(&app.token, &format!("/api/v1/locations/012345A/{list}?limit={limit}"))
                .await;
            assert_eq!(status, 400, "{list} limit={limit}: {body}");
        }
        let (status, body) = app
            .get_as(&app.token, &format!("/api/v1/locations/012345A/{list}?limit=1000"))
            .await;
        assert_eq!(status, 200, "{list}: {body}");
    }
}

async fn no_vaccine_goes_into_a_unit_out_of_service_and_a_clinic_sets_one_period_at_a_time(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let spare = app.create_unit("012345A", "Spare refrigerator", "refrigerator").await;
    let lot = stock_at(&app, "012345A", unit, "X123456").await;
    let token = clinic(&app);
    let off = json!({"kind": "out_of_service", "reason": "compressor noise"});
    let path = format!("/api/v1/units/{spare}/downtime");
    assert_eq!(
        app.send_as(&token, "POST", &path, off.clone()).await.0,
        201,
        "an empty unit may"
    );
    // A second period while one is in force would stretch the silence: one at a time.
    let window = json!({"kind": "maintenance", "reason": "defrost",
        "until": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339()});
    refused(&app, &token, "POST", &path, window, "one period at a time").await;
    // Vaccine may not be stored in it, by receipt or by transfer.
    let receipt = json!({"unit_id": spare, "lines": [{"ndc": ROTATEQ, "lot": "Y1", "expires_on": "2099-01-31",
        "funding": "vfc", "doses": 5}]});
    let (status, out) = app
        .send_as(&token, "POST", "/api/v1/locations/012345A/receipts", receipt)
        .await;
    assert_eq!(status, 409, "{out}");
    assert!(
        out["error"]["message"].as_str().unwrap().contains("out of service"),
        "{out}"
    );
    let transfer = json!({"from_unit_id": unit, "to_unit_id": spare, "reason": "move",
        "lines": [{"lot_id": lot, "doses": 1}]});
    let (status, out) = app
        .send_as(&token, "POST", "/api/v1/locations/012345A/transfers", transfer)
        .await;
    assert_eq!(status, 409, "{out}");
}

async fn a_primary_logger_made_the_backup_or_taken_off_in_the_past_changes_the_units_record(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    // Warm for 25 minutes, two hours ago: an excursion of the unit that paged nobody (one that
    // did stays on the record, whatever comes later).
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    let readings: Vec<Value> = (0..20)
        .map(|i| {
            let t = if (2..8).contains(&i) { 9.5 } else { 5.0 };
            json!({"ts": (start + chrono::Duration::minutes(5 * i)).to_rfc3339(), "temp_c": t})
        })
        .collect();
    let mut p = app.publisher("lt-1").await;
    p.publish("vfc/loggers/LT-1/readings", json!({ "readings": readings }).to_string())
        .await;
    p.wait_acked(1).await;
    let count = |want: usize| {
        let app = &app;
        async move {
            app.eventually(&format!("{want} excursion(s)"), || async {
                let l = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
                match l["excursions"].as_array().unwrap().len() {
                    n if n == want => Ok(()),
                    n => Err(format!("{n}")),
                }
            })
            .await
        }
    };
    count(1).await;
    // Taken off three hours ago (it was not the unit's logger then after all): its readings
    // leave the unit's record, and the excursion with them.
    let at = (chrono::Utc::now() - chrono::Duration::hours(3)).format("%Y-%m-%dT%H:%M:%SZ");
    let (status, out) = app
        .send_as(
            &app.token,
            "DELETE",
            &format!("/api/v1/units/{unit}/logger/LT-1?at={at}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{out}");
    count(0).await;
    // Another unit's primary made its backup: the unit has no primary any more, and that is a
    // change its coordinators hear of.
    let other = app.other_fridge("LT-2").await;
    app.assign(other, json!({"serial": "LT-2", "role": "backup"})).await;
    let history = app.get(&format!("/api/v1/units/{other}/rules/history")).await;
    let last = history["changes"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(
        (&last["subject"], &last["before"], &last["after"]),
        (&json!("primary_logger"), &json!("LT-2"), &Value::Null)
    );
}

on_both_databases!(
    no_vaccine_goes_into_a_unit_out_of_service_and_a_clinic_sets_one_period_at_a_time,
    a_primary_logger_made_the_backup_or_taken_off_in_the_past_changes_the_units_record,
    every_list_comes_in_pages_of_at_most_a_thousand,
    a_location_token_transfers_between_its_own_units_and_needs_the_pin_for_a_sibling,
    a_transfer_request_to_another_pin_reads_the_same_whether_or_not_that_location_exists,
    a_logger_moved_to_another_pin_reports_to_its_new_owner_only,
    another_pins_lot_and_a_lot_that_does_not_exist_get_the_same_answer,
    a_serial_or_facility_id_taken_by_another_pin_is_already_in_use_elsewhere,
    a_unit_that_stores_vaccine_without_a_logger_is_as_unwatched_as_a_silent_one,
    every_change_to_what_guards_a_unit_is_told_to_its_coordinators_and_listed_for_the_state,
    a_clinic_cannot_take_a_unit_that_stores_vaccine_out_of_service,
    a_clinics_maintenance_window_is_capped_by_the_program,
    a_clinic_cannot_loosen_or_remove_a_units_rules_and_its_freezing_still_alerts,
    a_clinic_may_tighten_a_units_rules_and_not_go_back_to_looser_ones,
    a_clinic_may_narrow_a_units_range_but_not_widen_it,
    a_clinic_cannot_create_a_unit_with_a_range_wider_than_its_kinds,
);
