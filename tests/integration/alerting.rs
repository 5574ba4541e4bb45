//! Alert delivery: maintenance windows, escalation and acknowledgement links, and email that
//! waits out an SMTP outage (a real SMTP server over TCP).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::harness::{unused_port, Broker, Database, TestApp};
use crate::on_both_databases;

async fn freezing_now(app: &TestApp) {
    let mut p = app.publisher("logger").await;
    p.reading("LT-1", &Utc::now().to_rfc3339(), 0.2).await;
    p.wait_acked(1).await;
}

async fn a_unit_in_a_maintenance_window_records_without_paging(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let from = (Utc::now() - chrono::Duration::hours(5)).to_rfc3339();
    let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/units/{unit}/downtime"),
            json!({"kind": "maintenance", "reason": "defrost", "from": from, "until": until}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/units/{unit}/downtime"),
            json!({"kind": "maintenance", "reason": "x"}),
        )
        .await;
    assert_eq!(status, 400, "a maintenance window needs an end: {body}");
    // Two hours warm and a freezing reading, all inside the window.
    let start = Utc::now() - chrono::Duration::hours(3);
    let readings: Vec<Value> = (0..30)
        .map(|i| json!({"ts": (start + chrono::Duration::minutes(5 * i)).to_rfc3339(), "temp_c": if i == 29 { 0.2 } else { 12.0 }}))
        .collect();
    let mut p = app.publisher("logger").await;
    p.publish("vfc/loggers/LT-1/readings", json!({ "readings": readings }).to_string())
        .await;
    p.wait_acked(1).await;
    let list = app
        .eventually("the excursion", || async {
            let l = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
            let l = l["excursions"].as_array().unwrap().clone();
            if l.len() == 1 && l[0]["suppressed"].is_string() {
                Ok(l)
            } else {
                Err(format!("{l:?}"))
            }
        })
        .await;
    assert_eq!(list[0]["alerted"], false);
    assert!(list[0]["suppressed"].as_str().unwrap().contains("defrost"), "{list:?}");
    // The outbox rows are written with the excursion: none means nobody is paged.
    assert!(app.excursion_emails(list[0]["id"].as_i64().unwrap()).await.is_empty());
    // And the evaluator and the sender are alive: another unit's freezing reading alerts, alone.
    app.other_fridge("LT-2").await;
    app.freezing("LT-2").await;
    app.wait_email_with("Fridge of LT-2").await;
    let alerts = app.emails_with("VFC temperature alert");
    assert_eq!(alerts.len(), 1, "only the other unit's alert: {alerts:?}");
    // The defrost is over early: end the window.
    let windows = app.get(&format!("/api/v1/units/{unit}/downtime")).await;
    let id = windows["downtime"][0]["id"].as_i64().unwrap();
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/units/{unit}/downtime/{id}/end"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["until"].is_string());
    assert_eq!(
        app.send_as(
            &app.token,
            "POST",
            &format!("/api/v1/units/{unit}/downtime/{id}/end"),
            json!({})
        )
        .await
        .0,
        409
    );
}

async fn escalation_reaches_the_backup_then_the_state_and_a_posted_ack_stops_it(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let mut program = app.get("/api/v1/program").await;
    program["state_coordinators"] = json!([{"name": "Morgan State", "email": "vfc.state@health.example"}]);
    program["escalation"] =
        json!({"backup_after_minutes": 0.05, "state_after_minutes": 0.1, "reminder_every_minutes": 0.2});
    let (status, body) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{body}");

    freezing_now(&app).await;
    let mail = app.wait_emails(3).await;
    assert!(
        mail[0].contains("To: \"Pat Primary\" <primary.012345A@example.org>")
            || mail[0].contains("primary.012345A@example.org")
    );
    assert!(
        mail[1].contains("backup.012345A@example.org") && mail[1].contains("not acknowledged"),
        "{}",
        mail[1]
    );
    assert!(mail[2].contains("vfc.state@health.example"), "{}", mail[2]);
    // What a coordinator needs on the phone: the range in both scales and the logger.
    assert!(
        mail[0].contains("35.6 to 46.4 ") && mail[0].contains("Logger: LT-1"),
        "{}",
        mail[0]
    );

    // The backup's own link: opening it shows the excursion and acknowledges nothing.
    let link = mail[1]
        .lines()
        .find(|l| l.contains("/ack/"))
        .expect("an acknowledgement link")
        .trim()
        .to_string();
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\">") && html.contains("012345A"),
        "{html}"
    );
    let list = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
    assert!(
        list["excursions"][0]["acknowledged_at"].is_null(),
        "GET acknowledged something"
    );

    // Pressing the button acknowledges, once.
    let done = app.http.post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done
        .text()
        .await
        .unwrap()
        .contains("Acknowledged by backup.012345A@example.org"));
    let again = app.http.post(&link).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("backup.012345A@example.org"));
    let e = &app.get(&format!("/api/v1/excursions?unit={unit}")).await["excursions"][0];
    assert_eq!(e["acknowledged_by"], "backup.012345A@example.org");

    // No reminder after the acknowledgement (one would be due 12 s after the last email). A
    // second alarm that starts now reaches its own reminder later than that: once it has, the
    // acknowledged one has had its chance.
    app.other_fridge("LT-2").await;
    app.freezing("LT-2").await;
    app.eventually_within(
        Duration::from_secs(60),
        "the second alarm's reminder",
        String::new,
        || async {
            match app
                .emails_with("Reminder, VFC temperature alert: 012345A Fridge of LT-2")
                .len()
            {
                0 => Err("no reminder yet".to_string()),
                _ => Ok(()),
            }
        },
    )
    .await;
    let id = e["id"].as_i64().unwrap();
    let purposes: Vec<Value> = app
        .excursion_emails(id)
        .await
        .iter()
        .map(|m| m["purpose"].clone())
        .collect();
    assert_eq!(
        purposes,
        [json!("alert"), json!("escalation"), json!("escalation")],
        "escalation stopped"
    );

    // A forged link is refused.
    let forged = link.replace("/ack/", "/ack/1");
    assert_eq!(app.http.post(&forged).send().await.unwrap().status(), 404);
}

/// The project's SMTP sink on `port`, collecting what it accepts.
async fn smtp_sink(port: u16) -> Arc<Mutex<Vec<String>>> {
    let (_, mut rx) = vfc_monitor::bench::smtp_sink::start(port).await.unwrap();
    let got: Arc<Mutex<Vec<String>>> = Default::default();
    let store = got.clone();
    tokio::spawn(async move {
        while let Some((_, m)) = rx.recv().await {
            store.lock().unwrap().push(m);
        }
    });
    got
}

async fn email_waits_out_an_smtp_outage_and_arrives_once(db: Database) {
    let port = unused_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::spawn_with(
        db,
        Broker::Embedded,
        &[("VFC_SMTP_URL", &url), ("VFC_MAIL_FROM", "alerts@vfc.example")],
    )
    .await;
    let unit = app.fridge().await;
    freezing_now(&app).await;
    // The SMTP server is down: the alert waits in the outbox, tried and not lost.
    let id = app
        .eventually("a failed attempt", || async {
            let l = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
            let Some(id) = l["excursions"][0]["id"].as_i64() else {
                return Err(l.to_string());
            };
            let d = app.get(&format!("/api/v1/excursions/{id}")).await;
            if d["emails"][0]["attempts"].as_i64().unwrap_or(0) >= 1 {
                Ok(id)
            } else {
                Err(d.to_string())
            }
        })
        .await;
    let d = app.get(&format!("/api/v1/excursions/{id}")).await;
    assert_eq!(d["emails"][0]["status"], "pending");
    assert!(d["emails"][0]["last_error"].is_string());

    // Now the server comes up.
    let got = smtp_sink(port).await;
    app.eventually("the email delivered", || async {
        let n = got.lock().unwrap().len();
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    // Another alert after it: once that arrives, a second copy of the first would have too.
    app.other_fridge("LT-2").await;
    app.freezing("LT-2").await;
    app.eventually("the second alert delivered", || async {
        match got.lock().unwrap().len() {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "each delivered once");
    let first_id = got[0]
        .lines()
        .find(|l| l.starts_with("Message-ID: <vfc-outbox-"))
        .unwrap_or_else(|| panic!("{}", got[0]));
    assert_eq!(
        got.iter().filter(|m| m.contains(first_id)).count(),
        1,
        "the first alert once"
    );
    assert!(got[0].contains("From: alerts@vfc.example"));
    let d = app.get(&format!("/api/v1/excursions/{id}")).await;
    assert_eq!(d["emails"][0]["status"], "sent");
}

/// Logger `serial`, last heard from three hours ago and with a weak battery: once three of its
/// conditions are open, they (by kind).
pub async fn quiet_and_weak(app: &TestApp, serial: &str) -> Vec<Value> {
    let mut p = app.publisher(&format!("weak-{serial}")).await;
    p.reading(serial, &(Utc::now() - chrono::Duration::hours(3)).to_rfc3339(), 5.0)
        .await;
    p.publish(
        &format!("vfc/loggers/{serial}/status"),
        json!({"battery_pct": 12}).to_string(),
    )
    .await;
    p.wait_acked(2).await;
    let mut alerts = app
        .eventually("three conditions", || async {
            let l = app.get("/api/v1/device-alerts?open=true").await;
            let l = l["device_alerts"].as_array().unwrap().clone();
            if l.len() == 3 {
                Ok(l)
            } else {
                Err(format!("{l:?}"))
            }
        })
        .await;
    alerts.sort_by_key(|a| a["kind"].as_str().unwrap().to_string());
    alerts
}

async fn a_quiet_logger_a_low_battery_and_an_expiring_certificate_each_email_once(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    let unit = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    let expires = (Utc::now() + chrono::Duration::days(10)).date_naive().to_string();
    app.assign(unit, json!({"serial": "LT-9", "reading_interval_s": 300, "calibration_expires_on": expires, "from": "2020-01-01T00:00:00Z"}))
        .await;
    let alerts = quiet_and_weak(&app, "LT-9").await;
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["battery_low", "calibration_expiring", "no_data"]);
    let mail = app.wait_emails(3).await;
    assert!(mail.iter().any(|m| m.contains("no reading since")), "{mail:?}");
    // Data again: the no-data episode closes; nothing is sent twice.
    let mut p = app.publisher("logger").await;
    p.reading("LT-9", &Utc::now().to_rfc3339(), 5.0).await;
    p.wait_acked(1).await;
    app.eventually("no_data closed", || async {
        let l = app.get("/api/v1/device-alerts?open=true").await;
        let n = l["device_alerts"].as_array().unwrap().len();
        if n == 2 {
            Ok(())
        } else {
            Err(l.to_string())
        }
    })
    .await;
    // A new condition on another logger: once its email is out, every check since the episodes
    // opened has run, and each sent nothing again.
    let other = app.create_unit("012345A", "Freezer", "freezer").await;
    app.assign(other, json!({"serial": "LT-10", "from": "2020-01-01T00:00:00Z"}))
        .await;
    p.publish("vfc/loggers/LT-10/status", json!({"battery_pct": 12}).to_string())
        .await;
    p.wait_acked(2).await;
    let mail = app.wait_email_with("(LT-10)").await;
    assert_eq!(mail.len(), 4, "one email per episode, not per check: {mail:?}");
    assert_eq!(app.emails_with("no reading since").len(), 1);
    let clinic = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "other"]);
    let l = app.get_as(&clinic, "/api/v1/device-alerts").await.1;
    assert!(
        l["device_alerts"].as_array().unwrap().is_empty(),
        "another PIN sees nothing"
    );
}

async fn a_logger_condition_escalates_until_acknowledged(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    let unit = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    app.assign(
        unit,
        json!({"serial": "LT-Q", "reading_interval_s": 300, "from": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let mut program = app.get("/api/v1/program").await;
    program["escalation"] =
        json!({"backup_after_minutes": 0.05, "state_after_minutes": 60.0, "reminder_every_minutes": 0.15});
    assert_eq!(app.send_as(&app.token, "PUT", "/api/v1/program", program).await.0, 200);
    let mut p = app.publisher("logger").await;
    p.reading("LT-Q", &(Utc::now() - chrono::Duration::hours(2)).to_rfc3339(), 5.0)
        .await;
    p.wait_acked(1).await;
    let mail = app.wait_emails(2).await;
    assert!(mail[0].contains("no reading since") && mail[0].contains("primary.012345A@example.org"));
    assert!(
        mail[1].contains("next contact") && mail[1].contains("backup.012345A@example.org"),
        "{}",
        mail[1]
    );
    let link = mail[1]
        .lines()
        .find(|l| l.contains("/ack/"))
        .unwrap()
        .trim()
        .to_string();
    let page = app.http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Data logger problem") && page.contains("LT-Q"), "{page}");
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);
    let l = app.get("/api/v1/device-alerts?open=true").await;
    assert_eq!(l["device_alerts"][0]["acknowledged_by"], "backup.012345A@example.org");
    // A second quiet logger, now: its reminder comes later than LT-Q's would have been due.
    let other = app.create_unit("012345A", "Freezer", "freezer").await;
    app.assign(
        other,
        json!({"serial": "LT-R", "reading_interval_s": 300, "from": "2020-01-01T00:00:00Z"}),
    )
    .await;
    p.reading("LT-R", &(Utc::now() - chrono::Duration::hours(2)).to_rfc3339(), -20.0)
        .await;
    p.wait_acked(2).await;
    app.eventually_within(Duration::from_secs(60), "LT-R's reminder", String::new, || async {
        match app
            .emails_with("Reminder: still not acknowledged")
            .iter()
            .filter(|m| m.contains("(LT-R)"))
            .count()
        {
            0 => Err("no reminder yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    let reminders_for_q = app
        .emails_with("Reminder: still not acknowledged")
        .iter()
        .filter(|m| m.contains("(LT-Q)"))
        .count();
    assert_eq!(reminders_for_q, 0, "no reminder once acknowledged");
}

async fn an_alert_email_carries_its_chart_the_lots_on_hold_the_address_the_programs_phone_and_who_is_next(
    db: Database,
) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let mut program = app.get("/api/v1/program").await;
    program["phone"] = json!("410-767-6679");
    let (status, body) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{body}");
    let now = Utc::now();
    crate::inventory::receive(
        &app,
        unit,
        (crate::inventory::ROTATEQ, "RV-A1", "2099-01-31", "vfc"),
        10,
        now - chrono::Duration::hours(3),
    )
    .await;
    // A compressor failure: 70 minutes above 8 °C, which meets the one-hour rule and the
    // cumulative rule at the same reading.
    let mut p = app.publisher("LT-1").await;
    p.reading("LT-1", &(now - chrono::Duration::minutes(75)).to_rfc3339(), 4.8)
        .await;
    for m in (0..=70).rev().step_by(5) {
        p.reading("LT-1", &(now - chrono::Duration::minutes(m)).to_rfc3339(), 9.4)
            .await;
    }
    p.wait_acked(16).await;
    let mail = app.wait_email_with("VFC temperature alert").await;
    let alert = mail.iter().find(|m| m.contains("VFC temperature alert")).unwrap();
    assert!(alert.contains("Content-Type: image/png"), "the chart: {alert}");
    assert!(
        alert.contains("RV-A1") && alert.contains("2099-01-31") && alert.contains("10 doses"),
        "{alert}"
    );
    assert!(alert.contains("1 Main St, Baltimore, MD"), "the address: {alert}");
    assert!(alert.contains("410-767-6679"), "the program's phone: {alert}");
    assert!(
        alert.contains("If nobody acknowledges by") && alert.contains("Bo Backup"),
        "who is next: {alert}"
    );
    let plain = alert.find("for 60 consecutive minutes").expect("the one-hour rule");
    let cumulative = alert.find("minutes in total within").expect("the cumulative rule");
    assert!(plain < cumulative, "the plainest rule first: {alert}");
    assert!(!alert.contains("offline"), "{alert}");
}

on_both_databases!(
    an_alert_email_carries_its_chart_the_lots_on_hold_the_address_the_programs_phone_and_who_is_next,
    a_logger_condition_escalates_until_acknowledged,
    a_quiet_logger_a_low_battery_and_an_expiring_certificate_each_email_once,
    a_unit_in_a_maintenance_window_records_without_paging,
    escalation_reaches_the_backup_then_the_state_and_a_posted_ack_stops_it,
    email_waits_out_an_smtp_outage_and_arrives_once,
);
