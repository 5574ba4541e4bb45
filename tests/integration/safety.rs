//! Alarms that cannot silently stop: one unit that cannot be judged never stops the others, a
//! background task that fails is named by `/healthz` and comes back, two reviews of one
//! excursion are recorded once, and no date or panic takes a handler down.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{on_hand, receive, ROTATEQ};
use crate::on_both_databases;

/// A second refrigerator at 012345A with its own logger; its id.
async fn second_fridge(app: &TestApp, serial: &str) -> i64 {
    let unit = app.create_unit("012345A", "Second refrigerator", "refrigerator").await;
    app.assign(
        unit,
        json!({"serial": serial, "reading_interval_s": 300, "from": "2020-01-01T00:00:00Z"}),
    )
    .await;
    unit
}

async fn freezing_now(app: &TestApp, serial: &str) {
    let mut p = app.publisher(&format!("pub-{serial}")).await;
    p.reading(serial, &(Utc::now() - Duration::minutes(5)).to_rfc3339(), 4.8)
        .await;
    p.reading(serial, &Utc::now().to_rfc3339(), 0.2).await;
    p.wait_acked(2).await;
}

async fn a_unit_whose_rules_cannot_be_read_is_quarantined_and_another_units_freezing_still_emails(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let broken = app.fridge().await;
    let fine = second_fridge(&app, "LT-2").await;
    // Rules stored by an older version, or damaged by hand: not JSON this version can read.
    app.sql(&format!(
        "INSERT INTO unit_rules (unit_id, rules, updated_by, updated_at) VALUES ({broken}, '[{{\"id\": \"warm\"', 'hand', 0)"
    ))
    .await;
    freezing_now(&app, "LT-1").await;
    freezing_now(&app, "LT-2").await;

    let mail = app.wait_emails(1).await;
    assert!(
        mail[0].contains("Second refrigerator"),
        "the other unit's alert: {}",
        mail[0]
    );
    let failures = app
        .eventually("the broken unit in quarantine", || async {
            let l = app.get("/api/v1/evaluation-failures").await;
            match l["evaluation_failures"].as_array().unwrap().as_slice() {
                [one] => Ok(one.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert_eq!(failures["unit_id"], broken);
    let error = failures["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("unit_rules row {broken}")) && error.contains("PUT /api/v1/units"),
        "names the row and what fixes it: {error}"
    );
    assert!(app.metric("vfc_evaluation_failures_total").await >= 1.0);
    let excursions = app.get(&format!("/api/v1/excursions?unit={fine}")).await;
    assert_eq!(excursions["excursions"].as_array().unwrap().len(), 1);

    // Fixed (back to the program's rules), the unit is judged: its freezing reading alarms too.
    let (status, body) = app
        .send_as(
            &app.token,
            "PUT",
            &format!("/api/v1/units/{broken}/rules"),
            json!({"rules": null}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mail = app.wait_emails(2).await;
    assert!(mail[1].contains("Main refrigerator"), "{}", mail[1]);
    let l = app.get("/api/v1/evaluation-failures").await;
    assert_eq!(l["evaluation_failures"], json!([]), "out of quarantine");
}

async fn the_list_of_units_that_cannot_be_judged_is_the_states(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    let clinic = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "clinic"]);
    assert_eq!(app.get_as(&clinic, "/api/v1/evaluation-failures").await.0, 403);
    let l = app.get("/api/v1/evaluation-failures").await;
    assert_eq!(l, json!({"evaluation_failures": []}));
}

/// A program document that cannot be read stops escalation loudly (never the defaults): the
/// task fails, `/healthz` names it, and it runs again once the document is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_task_that_fails_turns_healthz_red_until_it_runs_again() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let (status, healthy) = app.health().await;
    assert_eq!(status, 200, "{healthy}");
    for task in [
        "ingest",
        "evaluator",
        "escalation",
        "device-checks",
        "email-sender",
        "hl7-intake",
    ] {
        assert_eq!(healthy["tasks"][task], "running", "{healthy}");
    }
    let program = app.get("/api/v1/program").await;
    app.sql("INSERT INTO program (id, settings, updated_by, updated_at) VALUES (1, '{\"escalation\": \"soon\"}', 'hand', 0)")
        .await;
    let down = app
        .eventually("escalation named as down", || async {
            match app.health().await {
                (503, h) if h["tasks"]["escalation"] == "restarting" => Ok(h),
                (s, h) => Err(format!("{s} {h}")),
            }
        })
        .await;
    assert_eq!(down["status"], "degraded");
    assert!(
        app.log().contains("program row 1 cannot be read"),
        "the log names the row"
    );
    assert!(app.metric("vfc_task_restarts_total{task=\"escalation\"}").await >= 1.0);

    let (status, body) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{body}");
    app.eventually("every task running again", || async {
        match app.health().await {
            (200, h) => Ok(h),
            (s, h) => Err(format!("{s} {h}")),
        }
    })
    .await;
}

async fn two_reviews_sent_at_once_are_recorded_once(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let lot = receive(
        &app,
        unit,
        (ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        Utc::now() - Duration::hours(3),
    )
    .await;
    // A freezing reading an hour ago, back in range since: an alarmed, closed excursion.
    let start = Utc::now() - Duration::hours(1);
    let readings: Vec<Value> = [5.0, 0.2, 5.0]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"ts": (start + Duration::minutes(5 * i as i64)).to_rfc3339(), "temp_c": t}))
        .collect();
    let mut p = app.publisher("logger").await;
    p.publish("vfc/loggers/LT-1/readings", json!({ "readings": readings }).to_string())
        .await;
    p.wait_acked(1).await;
    let id = app
        .eventually("the excursion, closed, its lot on hold", || async {
            let l = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
            let Some(id) = l["excursions"][0]["id"]
                .as_i64()
                .filter(|_| l["excursions"][0]["status"] == "closed")
            else {
                return Err(l.to_string());
            };
            let holds = app.get(&format!("/api/v1/excursions/{id}/holds")).await;
            if holds["holds"].as_array().unwrap().len() == 1 {
                Ok(id)
            } else {
                Err(holds.to_string())
            }
        })
        .await;
    let review = json!({
        "reviewed_by": "Pat Primary, RN", "cause": "thermostat", "corrective_action": "replaced",
        "lot_determinations": [{"lot_id": lot, "determination": "not_viable", "action": "waste"}]
    });
    let path = format!("/api/v1/excursions/{id}/review");
    let (a, b) = tokio::join!(
        app.send_as(&app.token, "POST", &path, review.clone()),
        app.send_as(&app.token, "POST", &path, review.clone()),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "one recorded, one refused: {a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already reviewed"),
        "{refused}"
    );
    assert_eq!(on_hand(&app, unit, lot).await, 0, "wasted once");
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{lot}/ledger")).await;
    let wasted = ledger["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "wastage")
        .count();
    assert_eq!(wasted, 1, "{ledger}");
}

async fn a_date_beyond_any_record_is_refused_not_a_panic(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    for query in [
        "from=%2B262142-12-31&to=%2B262142-12-31",
        "from=2026-01-01&to=%2B262142-12-31",
        "from=0001-01-01&to=0001-01-02",
    ] {
        let (status, body) = app
            .get_as(&app.token, &format!("/api/v1/units/{unit}/daily?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1900-01-01 to 9999-12-31"),
            "{body}"
        );
    }
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/receipts",
            json!({"unit_id": unit, "lines": [{"ndc": ROTATEQ, "lot": "X1", "expires_on": "+262142-12-31", "funding": "vfc", "doses": 1}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(app.metric("vfc_http_panics_total").await, 0.0);
    assert_eq!(app.health().await.0, 200, "still serving");
}

on_both_databases!(
    a_unit_whose_rules_cannot_be_read_is_quarantined_and_another_units_freezing_still_emails,
    the_list_of_units_that_cannot_be_judged_is_the_states,
    two_reviews_sent_at_once_are_recorded_once,
    a_date_beyond_any_record_is_refused_not_a_panic,
);
