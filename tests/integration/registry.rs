//! The registry: suffix locations, units with CDC ranges, and which logger served which unit.

use serde_json::json;

use crate::harness::{location_body, Broker, Database, TestApp};
use crate::on_both_databases;

const FROM: &str = "2026-11-01T00:00:00Z";
const TO: &str = "2026-11-30T00:00:00Z";

async fn a_swapped_logger_and_a_backup_each_serve_the_unit_they_had_at_the_time(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    let fridge = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    let freezer = app.create_unit("012345A", "Freezer", "freezer").await;

    app.assign(fridge, json!({"serial": "L1", "from": "2026-11-10T00:00:00Z"}))
        .await;
    app.assign(
        fridge,
        json!({"serial": "B1", "role": "backup", "from": "2026-11-10T00:00:00Z"}),
    )
    .await;
    // On the 12th L1 goes to the freezer and L2 (freshly calibrated) replaces it.
    app.assign(freezer, json!({"serial": "L1", "from": "2026-11-12T00:00:00Z"}))
        .await;
    app.assign(
        fridge,
        json!({"serial": "L2", "from": "2026-11-12T00:00:00Z", "calibration_expires_on": "2028-11-01"}),
    )
    .await;

    let mut p = app.publisher("loggers").await;
    for (serial, day, temp) in [
        ("L1", 11, 5.0),
        ("L1", 13, -20.0),
        ("L2", 13, 4.5),
        ("B1", 11, 5.1),
        ("B1", 13, 4.6),
        ("L2", 9, 4.0),
    ] {
        p.reading(serial, &format!("2026-11-{day:02}T08:00:00Z"), temp).await;
    }
    p.wait_acked(6).await;
    app.eventually("all six stored", || async {
        let mut n = 0;
        for s in ["L1", "L2", "B1"] {
            let page = app
                .get(&format!("/api/v1/loggers/{s}/readings?from={FROM}&to={TO}"))
                .await;
            n += page["readings"].as_array().unwrap().len();
        }
        if n == 6 {
            Ok(())
        } else {
            Err(format!("{n} of 6"))
        }
    })
    .await;

    let fridge_readings = app.readings(fridge, FROM, TO).await;
    let seen: Vec<(String, String, String)> = fridge_readings
        .iter()
        .map(|r| {
            (
                r["ts"].as_str().unwrap()[..10].to_string(),
                r["serial"].as_str().unwrap().into(),
                r["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = |d: &str, s: &str, r: &str| (d.to_string(), s.to_string(), r.to_string());
    assert_eq!(
        seen,
        vec![
            want("2026-11-11", "B1", "backup"),
            want("2026-11-11", "L1", "primary"),
            want("2026-11-13", "B1", "backup"),
            want("2026-11-13", "L2", "primary"),
        ],
        "L2's reading from before it served the fridge is not the fridge's"
    );
    let freezer_readings = app.readings(freezer, FROM, TO).await;
    assert_eq!(freezer_readings.len(), 1);
    assert_eq!(freezer_readings[0]["temp_c"], -20.0);

    let detail = app.get(&format!("/api/v1/units/{fridge}")).await;
    let loggers: Vec<&str> = detail["loggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["serial"].as_str().unwrap())
        .collect();
    assert_eq!(loggers, ["L2", "B1"], "primary first, then backup");
    assert_eq!(
        detail["latest_reading"]["serial"], "L2",
        "the primary drives the unit's latest reading"
    );
    assert_eq!(detail["range"], json!({"min_c": 2.0, "max_c": 8.0}));

    let l1 = app.get("/api/v1/loggers/L1").await;
    assert_eq!(l1["history"].as_array().unwrap().len(), 2);
    assert_eq!(l1["history"][0]["to"], "2026-11-12T00:00:00Z");
    assert_eq!(l1["assignment"]["unit_id"], freezer);

    // Removing the backup ends its assignment; its past readings stay with the fridge.
    let (status, _) = app
        .send_as(
            &app.token,
            "DELETE",
            &format!("/api/v1/units/{fridge}/logger/B1"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.readings(fridge, FROM, TO).await.len(), 4);
    let (status, _) = app
        .send_as(
            &app.token,
            "DELETE",
            &format!("/api/v1/units/{fridge}/logger/B1"),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    // History cannot be rewritten: L1 cannot return to the fridge at a time it was serving the freezer.
    let (status, body) = app
        .send_as(
            &app.token,
            "PUT",
            &format!("/api/v1/units/{fridge}/logger"),
            json!({"serial": "L1", "from": "2026-11-11T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

async fn units_default_to_the_cdc_range_of_their_kind(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "B").await;
    for (kind, min, max) in [
        ("refrigerator", 2.0, 8.0),
        ("freezer", -50.0, -15.0),
        ("ultra_cold", -90.0, -60.0),
    ] {
        let id = app.create_unit("012345B", kind, kind).await;
        let u = app.get(&format!("/api/v1/units/{id}")).await;
        assert_eq!(u["range"], json!({"min_c": min, "max_c": max}), "{kind}");
        assert_eq!(u["location"], "012345B");
    }
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345B/units",
            json!({"name": "Pharmacy fridge", "kind": "other"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("range"), "{body}");
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345B/units",
            json!({"name": "Moderna freezer", "kind": "ultra_cold", "range": {"min_c": -80.0, "max_c": -60.0}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["range"]["min_c"], -80.0);
    let units = app.get("/api/v1/locations/012345B/units").await;
    assert_eq!(units["units"].as_array().unwrap().len(), 4);
}

async fn locations_need_both_coordinators_and_suffixes_are_separate(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let a = app.create_location("012345", "A").await;
    assert_eq!(a["code"], "012345A");
    let b = app.create_location("012345", "B").await;
    assert_eq!(b["code"], "012345B");
    let (status, _) = app
        .send_as(&app.token, "POST", "/api/v1/locations", location_body("012345", "A"))
        .await;
    assert_eq!(status, 409, "the same suffix location twice");

    let mut no_backup = location_body("012345", "C");
    no_backup["contacts"].as_object_mut().unwrap().remove("backup");
    let (status, body) = app.send_as(&app.token, "POST", "/api/v1/locations", no_backup).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("backup"), "{body}");

    let mut bad_tz = location_body("012345", "C");
    bad_tz["timezone"] = json!("Eastern");
    let (status, body) = app.send_as(&app.token, "POST", "/api/v1/locations", bad_tz).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("IANA"), "{body}");

    let mut bad_email = location_body("012345", "C");
    bad_email["contacts"]["primary"]["email"] = json!("pat at clinic");
    let (status, body) = app.send_as(&app.token, "POST", "/api/v1/locations", bad_email).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contacts.primary.email"),
        "{body}"
    );

    let list = app.get("/api/v1/locations").await;
    let codes: Vec<&str> = list["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["012345A", "012345B"]);
    let one = app.get("/api/v1/locations/012345a").await;
    assert_eq!(one["contacts"]["backup"]["name"], "Bo Backup");
}

on_both_databases!(
    a_swapped_logger_and_a_backup_each_serve_the_unit_they_had_at_the_time,
    units_default_to_the_cdc_range_of_their_kind,
    locations_need_both_coordinators_and_suffixes_are_separate,
);
