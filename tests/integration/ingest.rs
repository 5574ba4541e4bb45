//! Readings in over MQTT: order, dedupe, dead letters, and nothing lost across kills and
//! restarts.

use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::on_both_databases;

const FROM: &str = "2026-01-01T00:00:00Z";
const TO: &str = "2026-12-31T00:00:00Z";

/// A location with one refrigerator and logger `serial` on it since 2026-01-01.
async fn unit_with_logger(app: &TestApp, serial: &str) -> i64 {
    app.create_location("012345", "A").await;
    let unit = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    app.assign(
        unit,
        json!({"serial": serial, "model": "LogTag UTRID-16", "calibration_expires_on": "2027-06-30", "from": FROM}),
    )
    .await;
    unit
}

fn ts(minute: u32) -> String {
    format!("2026-11-20T{:02}:{:02}:00Z", minute / 60, minute % 60)
}

async fn readings_reach_the_api_in_time_order(db: Database, broker: Broker) {
    let app = TestApp::spawn(db, broker).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let mut publisher = app.publisher("LT-1001").await;
    // Published out of order, as a logger flushing its buffer after live readings would.
    for m in [30, 0, 10, 20, 5, 25, 15] {
        publisher.reading("LT-1001", &ts(m), 4.0 + m as f64 / 10.0).await;
    }
    publisher.wait_acked(7).await;
    let got = app
        .eventually("7 readings stored", || async {
            let r = app.readings(unit, FROM, TO).await;
            if r.len() == 7 {
                Ok(r)
            } else {
                Err(format!("{} readings", r.len()))
            }
        })
        .await;
    let times: Vec<&str> = got.iter().map(|r| r["ts"].as_str().unwrap()).collect();
    let expected: Vec<String> = [0, 5, 10, 15, 20, 25, 30].iter().map(|m| ts(*m)).collect();
    assert_eq!(times, expected);
    assert_eq!(got[6]["temp_c"], 7.0);
    assert_eq!(got[0]["serial"], "LT-1001");
    let detail = app.get(&format!("/api/v1/units/{unit}")).await;
    assert_eq!(detail["latest_reading"]["ts"], ts(30).as_str());
}

async fn readings_reach_the_api_in_time_order_embedded(db: Database) {
    readings_reach_the_api_in_time_order(db, Broker::Embedded).await
}

async fn readings_reach_the_api_in_time_order_mosquitto(db: Database) {
    readings_reach_the_api_in_time_order(db, Broker::Mosquitto).await
}

async fn the_same_reading_three_times_is_stored_once(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let mut publisher = app.publisher("LT-1001").await;
    for _ in 0..3 {
        publisher.reading("LT-1001", &ts(0), 4.6).await;
    }
    // The same instant written with another offset is the same reading.
    publisher.reading("LT-1001", "2026-11-19T19:00:00-05:00", 4.6).await;
    publisher.reading("LT-1001", &ts(5), 4.7).await;
    publisher.wait_acked(5).await;
    app.eventually("the last reading stored", || async {
        let r = app.readings(unit, FROM, TO).await;
        if r.len() == 2 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    // The broker may hand the five messages to the ingest in any order: wait for all five.
    app.eventually("three duplicates counted", || async {
        let n = app.metric("vfc_readings_duplicate_total").await;
        if n == 3.0 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    assert_eq!(app.metric("vfc_readings_stored_total").await, 2.0);
    assert_eq!(app.readings(unit, FROM, TO).await.len(), 2);
}

async fn malformed_and_oversized_payloads_are_dead_letters(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let mut p = app.publisher("LT-1001").await;
    let topic = "vfc/loggers/LT-1001/readings";
    p.reading("LT-1001", &ts(0), 4.0).await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not JSON"),
        // PostgreSQL text cannot hold NUL: the dead letter must still be stored.
        (b"ab\0cd".to_vec(), "not JSON"),
        (json!({"temp_c": 4.0}).to_string().into_bytes(), "missing \"ts\""),
        (
            json!({"ts": ts(1), "temp_c": "cold"}).to_string().into_bytes(),
            "must be a number",
        ),
        (
            json!({"ts": ts(2), "temp_c": 250.0}).to_string().into_bytes(),
            "plausible range",
        ),
        (
            json!({"ts": "last tuesday", "temp_c": 4.0}).to_string().into_bytes(),
            "RFC 3339",
        ),
        (json!({"ts": future, "temp_c": 4.0}).to_string().into_bytes(), "future"),
        (
            format!(
                "{{\"ts\":\"{}\",\"temp_c\":4.0,\"pad\":\"{}\"}}",
                ts(3),
                "x".repeat(300 * 1024)
            )
            .into_bytes(),
            "limit",
        ),
    ];
    for (payload, _) in &bad {
        p.publish(topic, payload.clone()).await;
    }
    // A batch with one bad reading: only that one is a dead letter.
    p.publish(
        topic,
        json!({"readings": [{"ts": ts(10), "temp_c": 4.1}, {"ts": ts(11), "temp_c": null}, {"ts": ts(12), "temp_c": 4.2}]})
            .to_string(),
    )
    .await;
    p.reading("LT-1001", &ts(20), 4.5).await;
    p.wait_acked(bad.len() + 3).await;

    let got = app
        .eventually("good readings around the bad ones", || async {
            let r = app.readings(unit, FROM, TO).await;
            if r.len() == 4 {
                Ok(r)
            } else {
                Err(format!("{} readings", r.len()))
            }
        })
        .await;
    let times: Vec<&str> = got.iter().map(|r| r["ts"].as_str().unwrap()).collect();
    assert_eq!(times, [ts(0), ts(10), ts(12), ts(20)]);

    let letters = app.get("/api/v1/dead-letters?limit=1000").await;
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), bad.len() + 1, "{letters:#?}");
    for (_, why) in &bad {
        assert!(
            letters.iter().any(|l| l["reason"].as_str().unwrap().contains(why)),
            "no dead letter says {why:?}: {letters:#?}"
        );
    }
    assert!(letters
        .iter()
        .any(|l| l["reason"].as_str().unwrap().starts_with("readings[1]")));
    let big = letters
        .iter()
        .find(|l| l["reason"].as_str().unwrap().contains("limit"))
        .unwrap();
    assert!(big["payload_bytes"].as_i64().unwrap() > 300 * 1024);
    assert!(
        big["payload"].as_str().unwrap().len() <= 4096,
        "dead letters keep a bounded prefix"
    );
    assert_eq!(big["topic"], topic);
    let expected = (bad.len() + 1) as f64;
    app.eventually("every dead letter counted", || async {
        match app.metric("vfc_dead_letters_total").await {
            n if n == expected => Ok(()),
            n => Err(format!("{n} of {expected}")),
        }
    })
    .await;
}

async fn readings_of_an_unknown_serial_are_kept_and_shown_once_assigned(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let mut p = app.publisher("LT-1001").await;
    p.reading("NEW-7", &ts(0), 5.0).await;
    p.reading("NEW-7", &ts(5), 5.1).await;
    p.wait_acked(2).await;
    let unassigned = app
        .eventually("NEW-7 listed as unassigned", || async {
            let l = app.get("/api/v1/loggers?assigned=false").await;
            let list = l["loggers"].as_array().unwrap().clone();
            let both = list
                .iter()
                .any(|x| x["serial"] == "NEW-7" && x["last_reading"]["ts"] == ts(5).as_str());
            if both {
                Ok(list)
            } else {
                Err(l.to_string())
            }
        })
        .await;
    assert_eq!(unassigned.len(), 1);
    let unit = unit_with_logger(&app, "NEW-7").await;
    assert_eq!(
        app.readings(unit, FROM, TO).await.len(),
        2,
        "assigning from an earlier time shows its history"
    );
    let l = app.get("/api/v1/loggers?assigned=false").await;
    assert!(l["loggers"].as_array().unwrap().is_empty(), "{l}");
}

/// Many readings published with QoS 1 while the service is killed (SIGKILL) mid-stream and
/// restarted: Mosquitto holds the persistent session, nothing acknowledged is lost.
async fn a_killed_service_loses_no_reading(db: Database) {
    let mut app = TestApp::spawn(db, Broker::Mosquitto).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let mut p = app.publisher("LT-1001").await;
    let total = 3000;
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap();
    for i in 0..total {
        let t = (base + chrono::Duration::seconds(30 * i as i64)).to_rfc3339();
        p.reading("LT-1001", &t, 4.0).await;
        if i == total / 3 {
            app.kill();
        }
        if i == 2 * total / 3 {
            app.start().await;
        }
    }
    p.wait_acked(total).await;
    app.eventually("every acknowledged reading stored", || async {
        let n = app.readings(unit, FROM, TO).await.len();
        if n == total {
            Ok(())
        } else {
            Err(format!("{n} of {total}"))
        }
    })
    .await;
}

async fn readings_published_while_the_service_is_down_are_stored_when_it_is_back(db: Database) {
    let mut app = TestApp::spawn(db, Broker::Mosquitto).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let status = app.stop();
    assert!(
        status.success(),
        "SIGTERM stops the service cleanly: {status}\n{}",
        app.log()
    );
    let mut p = app.publisher("LT-1001").await;
    for m in 0..50 {
        p.reading("LT-1001", &ts(m), 5.0).await;
    }
    p.wait_acked(50).await;
    app.start().await;
    app.eventually("readings from while it was down", || async {
        let n = app.readings(unit, FROM, TO).await.len();
        if n == 50 {
            Ok(())
        } else {
            Err(format!("{n} of 50"))
        }
    })
    .await;
}

async fn reading_pages_continue_with_next(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let mut p = app.publisher("LT-1001").await;
    let readings: Vec<Value> = (0..250).map(|m| json!({"ts": ts(m), "temp_c": 5.0})).collect();
    p.publish(
        "vfc/loggers/LT-1001/readings",
        json!({ "readings": readings }).to_string(),
    )
    .await;
    p.wait_acked(1).await;
    app.eventually("250 readings", || async {
        let n = app.readings(unit, FROM, TO).await.len();
        if n == 250 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    let first = app
        .get(&format!("/api/v1/units/{unit}/readings?from={FROM}&to={TO}&limit=100"))
        .await;
    assert_eq!(first["readings"].as_array().unwrap().len(), 100);
    let next = first["next"].as_str().expect("a next cursor");
    let second = app
        .get(&format!(
            "/api/v1/units/{unit}/readings?from={FROM}&to={TO}&limit=200&cursor={next}"
        ))
        .await;
    assert_eq!(second["readings"].as_array().unwrap().len(), 150);
    assert_eq!(second["readings"][0]["ts"], ts(100).as_str());
    assert!(second["next"].is_null());
    let (status, body) = app
        .get_as(&app.token, &format!("/api/v1/units/{unit}/readings?from={FROM}"))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"to\" is required"),
        "{body}"
    );
}

async fn a_reading_sent_again_with_another_temperature_is_a_dead_letter_and_the_first_stays(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let mut first = app.publisher("LT-1001").await;
    first.reading("LT-1001", &ts(0), 4.6).await;
    first.wait_acked(1).await;
    app.eventually("the first stored", || async {
        match app.readings(unit, FROM, TO).await.len() {
            1 => Ok(()),
            n => Err(format!("{n}")),
        }
    })
    .await;
    // The same time again, freezing: a forger's (or a broken gateway's) second opinion.
    let mut second = app.publisher("another").await;
    second.reading("LT-1001", &ts(0), -1.0).await;
    second.wait_acked(1).await;
    let letter = app
        .eventually("the conflict kept as a dead letter", || async {
            let l = app.get("/api/v1/dead-letters").await;
            l["dead_letters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["reason"].as_str().unwrap_or("").starts_with("conflicting_duplicate"))
                .cloned()
                .ok_or_else(|| l.to_string())
        })
        .await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("4.6") && reason.contains("-1"), "both values: {reason}");
    let stored = app.readings(unit, FROM, TO).await;
    assert_eq!(
        (stored.len(), stored[0]["temp_c"].as_f64()),
        (1, Some(4.6)),
        "the first stays"
    );
    assert_eq!(app.metric("vfc_readings_conflicting_total").await, 1.0);
}

on_both_databases!(
    a_reading_sent_again_with_another_temperature_is_a_dead_letter_and_the_first_stays,
    readings_reach_the_api_in_time_order_embedded,
    readings_reach_the_api_in_time_order_mosquitto,
    the_same_reading_three_times_is_stored_once,
    malformed_and_oversized_payloads_are_dead_letters,
    readings_of_an_unknown_serial_are_kept_and_shown_once_assigned,
    a_killed_service_loses_no_reading,
    readings_published_while_the_service_is_down_are_stored_when_it_is_back,
    reading_pages_continue_with_next,
);

/// Two instances in one share group on Mosquitto and one database split the readings, and
/// every reading is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_a_share_group_split_the_readings() {
    let app = TestApp::spawn_with(
        Database::Postgres,
        Broker::Mosquitto,
        &[("VFC_MQTT_SHARE_GROUP", "vfc-ingest")],
    )
    .await;
    let unit = unit_with_logger(&app, "LT-1001").await;
    let sibling = app.sibling().await;
    let mut p = app.publisher("LT-1001").await;
    let total = 1000;
    for m in 0..total {
        let t = (chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap() + chrono::Duration::minutes(m))
            .to_rfc3339();
        p.reading("LT-1001", &t, 4.0).await;
    }
    p.wait_acked(total as usize).await;
    app.eventually("every reading stored once", || async {
        let n = app.readings(unit, FROM, TO).await.len();
        if n == total as usize {
            Ok(())
        } else {
            Err(format!("{n} of {total}"))
        }
    })
    .await;
    let first = app.metric("vfc_readings_stored_total").await;
    let second = crate::harness::metric(&app.http, &sibling.base, "vfc_readings_stored_total").await;
    assert_eq!(first + second, total as f64, "no reading stored by both");
    assert!(
        first > 0.0 && second > 0.0,
        "both instances took a share: {first} + {second}"
    );
}
