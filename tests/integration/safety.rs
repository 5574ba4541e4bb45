//! Alarms that cannot silently stop: one unit that cannot be judged never stops the others and
//! its coordinators are told, an unreadable program document never stops the alarms, a
//! background task that fails is named by `/healthz` and comes back, two reviews of one
//! excursion are recorded once, and no date or panic takes a handler down.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{on_hand, receive, ROTATEQ};
use crate::on_both_databases;

/// Rules stored by an older version, or damaged by hand: not JSON this version can read.
async fn break_rules(app: &TestApp, unit: i64) {
    app.sql(&format!(
        "INSERT INTO unit_rules (unit_id, rules, updated_by, updated_at) VALUES ({unit}, '[{{\"id\": \"warm\"', 'hand', 0)"
    ))
    .await;
}

/// The units the evaluator cannot judge, once there are `n`.
async fn quarantined(app: &TestApp, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} unit(s) in quarantine"), || async {
        let l = app.get("/api/v1/evaluation-failures").await;
        let l = l["evaluation_failures"].as_array().unwrap().clone();
        if l.len() == n {
            Ok(l)
        } else {
            Err(format!("{l:?}"))
        }
    })
    .await
}

async fn a_unit_whose_rules_cannot_be_read_is_quarantined_and_another_units_freezing_still_emails(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let broken = app.fridge().await;
    let fine = app.other_fridge("LT-2").await;
    break_rules(&app, broken).await;
    app.freezing("LT-1").await;
    app.freezing("LT-2").await;

    app.wait_email_with("VFC temperature alert: 012345A Fridge of LT-2")
        .await;
    let failures = quarantined(&app, 1).await;
    assert_eq!(failures[0]["unit_id"], broken);
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("unit_rules row {broken}")) && error.contains("PUT /api/v1/units"),
        "names the row and what fixes it: {error}"
    );
    assert!(app.metric("vfc_evaluation_failures_total").await >= 1.0);
    let excursions = app.get(&format!("/api/v1/excursions?unit={fine}")).await;
    assert_eq!(excursions["excursions"].as_array().unwrap().len(), 1);
    let (status, health) = app.health().await;
    assert_eq!((status, &health["status"]), (200, &json!("attention")), "{health}");
    assert!(
        health["warnings"][0]
            .as_str()
            .unwrap()
            .contains("1 storage unit(s) cannot be judged"),
        "{health}"
    );
}

async fn the_coordinators_are_told_when_a_unit_stops_being_judged_and_again_when_it_is(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let broken = app.fridge().await;
    let mut program = app.get("/api/v1/program").await;
    program["state_coordinators"] = json!([{"name": "Morgan State", "email": "vfc.state@health.example"}]);
    assert_eq!(app.send_as(&app.token, "PUT", "/api/v1/program", program).await.0, 200);
    break_rules(&app, broken).await;
    app.freezing("LT-1").await;

    let mail = app.wait_email_with("VFC monitoring problem").await;
    let stopped: Vec<&String> = mail.iter().filter(|m| m.contains("VFC monitoring problem")).collect();
    let to: Vec<bool> = ["primary.012345A@example.org", "vfc.state@health.example"]
        .iter()
        .map(|who| stopped.iter().any(|m| m.contains(who)))
        .collect();
    assert_eq!(to, [true, true], "the clinic's primary and the state: {stopped:?}");
    assert!(
        stopped[0].contains(&format!("unit_rules row {broken}")) && stopped[0].contains("by hand"),
        "what went wrong, and what to do meanwhile: {}",
        stopped[0]
    );

    // Fixed (back to the program's rules), the unit is judged: its freezing reading alarms,
    // and whoever was told it stopped is told it is back.
    let (status, body) = app
        .send_as(
            &app.token,
            "PUT",
            &format!("/api/v1/units/{broken}/rules"),
            json!({"rules": null}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_email_with("VFC temperature alert: 012345A Main refrigerator")
        .await;
    app.eventually("both told it is back", || async {
        match app.emails_with("VFC monitoring back").len() {
            2 => Ok(()),
            n => Err(format!("{n} told")),
        }
    })
    .await;
    assert_eq!(quarantined(&app, 0).await, Vec::<Value>::new());
    let (status, health) = app.health().await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
}

async fn the_list_of_units_that_cannot_be_judged_is_the_states(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    let clinic = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "clinic"]);
    assert_eq!(app.get_as(&clinic, "/api/v1/evaluation-failures").await.0, 403);
    let l = app.get("/api/v1/evaluation-failures").await;
    assert_eq!(l, json!({"evaluation_failures": []}));
}

/// A program document that cannot be read is named, loudly, but never stops the alarms: they
/// go on with the last settings that read.
async fn an_unreadable_program_document_is_named_and_the_alarms_go_on(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let program = app.get("/api/v1/program").await;
    app.sql(
        "INSERT INTO program (id, settings, updated_by, updated_at) VALUES (1, '{\"escalation\": \"soon\"}', 'hand', 0) \
         ON CONFLICT (id) DO UPDATE SET settings = excluded.settings",
    )
    .await;
    let named = app
        .eventually("healthz names the program document", || async {
            match app.health().await {
                (200, h) if h["status"] == "attention" => Ok(h),
                (s, h) => Err(format!("{s} {h}")),
            }
        })
        .await;
    assert!(
        named["warnings"][0]
            .as_str()
            .unwrap()
            .contains("program row 1 cannot be read"),
        "{named}"
    );
    assert_eq!(named["tasks"]["escalation"], "running", "{named}");

    app.freezing("LT-1").await;
    app.wait_email_with("VFC temperature alert: 012345A Main refrigerator")
        .await;
    let list = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
    assert_eq!(list["excursions"][0]["alerted"], true, "{list}");
    assert!(app.metric("vfc_program_unreadable_passes_total").await >= 1.0);
    assert!(
        app.log().contains("program row 1 cannot be read"),
        "the log names the row"
    );

    let (status, body) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{body}");
    let (status, health) = app.health().await;
    assert_eq!((status, &health["warnings"]), (200, &json!([])), "{health}");
}

/// A background task that fails is named by `/healthz` (503) and runs again once the cause
/// is gone: here the escalation's table is taken away from under it and put back.
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
    app.sql("ALTER TABLE device_alerts RENAME TO device_alerts_away").await;
    let down = app
        .eventually("escalation named as down", || async {
            match app.health().await {
                (503, h) if h["tasks"]["escalation"] == "restarting" => Ok(h),
                (s, h) => Err(format!("{s} {h}")),
            }
        })
        .await;
    assert_eq!(down["status"], "degraded");
    assert!(app.log().contains("device_alerts"), "the log names the cause");
    assert!(app.metric("vfc_task_restarts_total{task=\"escalation\"}").await >= 1.0);

    app.sql("ALTER TABLE device_alerts_away RENAME TO device_alerts").await;
    app.eventually("every task running again", || async {
        match app.health().await {
            (200, h) => Ok(h),
            (s, h) => Err(format!("{s} {h}")),
        }
    })
    .await;
}

async fn an_escalation_that_cannot_be_composed_never_stops_the_others(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let mut program = app.get("/api/v1/program").await;
    program["escalation"] =
        json!({"backup_after_minutes": 0.05, "state_after_minutes": 0.1, "reminder_every_minutes": 0.2});
    assert_eq!(app.send_as(&app.token, "PUT", "/api/v1/program", program).await.0, 200);
    // A logger condition this version cannot read, due for escalation long ago.
    let past = (Utc::now() - Duration::hours(2)).timestamp_millis();
    app.sql(&format!(
        "INSERT INTO device_alerts (serial, unit_id, kind, detail, started_at, last_notified_at) \
         VALUES ('LT-1', {unit}, 'smoke', 'from a later version', {past}, {past})"
    ))
    .await;
    app.freezing("LT-1").await;
    app.eventually("the backup told of the excursion", || async {
        match app.emails_with("backup.012345A@example.org").as_slice() {
            [m, ..] if m.contains("not acknowledged") => Ok(()),
            other => Err(format!("{} to the backup", other.len())),
        }
    })
    .await;
    assert!(app.metric("vfc_escalation_failures_total").await >= 1.0);
    assert!(app.log().contains("device_alerts row"), "the log names the row");
    assert_eq!(app.health().await.1["tasks"]["escalation"], "running");
}

async fn an_alert_for_a_location_whose_time_zone_cannot_be_read_goes_out_in_utc(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    app.sql("UPDATE locations SET timezone = 'Mars/Olympus_Mons' WHERE code = '012345A'")
        .await;
    app.freezing("LT-1").await;
    let mail = app
        .wait_email_with("VFC temperature alert: 012345A Main refrigerator")
        .await;
    let alert = mail.iter().find(|m| m.contains("VFC temperature alert")).unwrap();
    assert!(
        alert.contains("Times are in UTC") && alert.contains(" UTC"),
        "says which clock it reads: {alert}"
    );
}

async fn a_logger_whose_calibration_date_cannot_be_read_counts_as_expired_and_is_checked_for_the_rest(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    let unit = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    app.assign(
        unit,
        json!({"serial": "LT-9", "reading_interval_s": 300, "calibration_expires_on": "2031-06-30", "from": "2020-01-01T00:00:00Z"}),
    )
    .await;
    app.sql("UPDATE loggers SET calibration_expires_on = 'next June' WHERE serial = 'LT-9'")
        .await;
    let alerts = crate::alerting::quiet_and_weak(&app, "LT-9").await;
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["battery_low", "calibration_expired", "no_data"]);
    let expired = alerts.iter().find(|a| a["kind"] == "calibration_expired").unwrap();
    assert!(
        expired["detail"]
            .as_str()
            .unwrap()
            .contains("\"next June\" is not YYYY-MM-DD"),
        "{expired}"
    );
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
        "from=1999-12-31&to=2000-01-02",
    ] {
        let (status, body) = app
            .get_as(&app.token, &format!("/api/v1/units/{unit}/daily?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2000-01-01 to 2100-12-31"),
            "{body}"
        );
    }
    // Times as well as days, in queries and in bodies.
    let (status, body) = app
        .get_as(
            &app.token,
            &format!("/api/v1/units/{unit}/readings?from=1970-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2000-01-01 to 2100-12-31"),
        "{body}"
    );
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/units/{unit}/downtime"),
            json!({"kind": "maintenance", "reason": "defrost", "from": "1999-12-31T23:00:00Z", "until": "2000-01-01T01:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"from\" must be a time from 2000"),
        "{body}"
    );
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

/// An `.eml` file carries live acknowledgement links; the SQLite files every record.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_with_live_links_and_the_database_files_are_the_services_user_s_alone() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    app.freezing("LT-1").await;
    app.wait_email_with("VFC temperature alert").await;
    let data = app.data_dir();
    let eml = std::fs::read_dir(data.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "eml"))
        .expect("an email file");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        [
            mode(&data),
            mode(&data.join("outbox")),
            mode(&eml),
            mode(&data.join("vfc.db")),
            mode(&data.join("vfc.db-wal"))
        ],
        [0o700, 0o700, 0o600, 0o600, 0o600]
    );
}

on_both_databases!(
    an_escalation_that_cannot_be_composed_never_stops_the_others,
    an_alert_for_a_location_whose_time_zone_cannot_be_read_goes_out_in_utc,
    a_logger_whose_calibration_date_cannot_be_read_counts_as_expired_and_is_checked_for_the_rest,
    a_unit_whose_rules_cannot_be_read_is_quarantined_and_another_units_freezing_still_emails,
    the_coordinators_are_told_when_a_unit_stops_being_judged_and_again_when_it_is,
    the_list_of_units_that_cannot_be_judged_is_the_states,
    an_unreadable_program_document_is_named_and_the_alarms_go_on,
    two_reviews_sent_at_once_are_recorded_once,
    a_date_beyond_any_record_is_refused_not_a_panic,
);
