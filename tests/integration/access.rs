//! Tokens and scope: a clinic never sees another PIN; no token, no API.

use serde_json::json;

use crate::harness::{location_body, Broker, Database, TestApp};
use crate::on_both_databases;

const RANGE: &str = "from=2026-11-01T00:00:00Z&to=2026-11-30T00:00:00Z";

async fn a_clinic_token_never_sees_another_pin(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    app.create_location("012345", "B").await;
    app.create_location("067890", "").await;
    let mine = app.create_unit("012345A", "Fridge A", "refrigerator").await;
    let sibling = app.create_unit("012345B", "Fridge B", "refrigerator").await;
    let theirs = app.create_unit("067890", "Their fridge", "refrigerator").await;
    app.assign(mine, json!({"serial": "MINE-1", "from": "2026-11-01T00:00:00Z"}))
        .await;
    app.assign(sibling, json!({"serial": "SIB-1", "from": "2026-11-01T00:00:00Z"}))
        .await;
    app.assign(theirs, json!({"serial": "THEIRS-1", "from": "2026-11-01T00:00:00Z"}))
        .await;
    let mut p = app.publisher("loggers").await;
    for s in ["MINE-1", "SIB-1", "THEIRS-1", "LOOSE-1"] {
        p.reading(s, "2026-11-20T08:00:00Z", 5.0).await;
    }
    p.wait_acked(4).await;
    app.eventually("readings stored", || async {
        let page = app.get(&format!("/api/v1/units/{theirs}/readings?{RANGE}")).await;
        if page["readings"].as_array().unwrap().len() == 1 {
            Ok(())
        } else {
            Err(page.to_string())
        }
    })
    .await;

    let pin = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "Bayview practice"]);
    let one = app.create_token(&[
        "--role",
        "clinic",
        "--location",
        "012345A",
        "--name",
        "Bayview A front desk",
    ]);

    // What the PIN token sees: both of its suffix locations and nothing of 067890.
    let list = app.get_as(&pin, "/api/v1/locations").await.1;
    let codes: Vec<&str> = list["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["012345A", "012345B"]);
    let list = app.get_as(&one, "/api/v1/locations").await.1;
    assert_eq!(list["locations"].as_array().unwrap().len(), 1);

    for path in [
        "/api/v1/locations/067890".to_string(),
        "/api/v1/locations/067890/units".to_string(),
        format!("/api/v1/units/{theirs}"),
        format!("/api/v1/units/{theirs}/readings?{RANGE}"),
        "/api/v1/loggers/THEIRS-1".to_string(),
        format!("/api/v1/loggers/THEIRS-1/readings?{RANGE}"),
        "/api/v1/loggers/LOOSE-1".to_string(),
        "/api/v1/units/999999".to_string(),
    ] {
        let (status, body) = app.get_as(&pin, &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    // The one-location token does not see the sibling suffix either.
    for path in [
        "/api/v1/locations/012345B".to_string(),
        format!("/api/v1/units/{sibling}/readings?{RANGE}"),
    ] {
        assert_eq!(app.get_as(&one, &path).await.0, 404, "{path}");
    }
    assert_eq!(
        app.get_as(&one, &format!("/api/v1/units/{mine}/readings?{RANGE}"))
            .await
            .0,
        200
    );

    let loggers = app.get_as(&pin, "/api/v1/loggers").await.1;
    let serials: Vec<&str> = loggers["loggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, ["MINE-1", "SIB-1"]);

    // Of the loggers no unit has, a clinic sees only those its own gateways brought: none here.
    let (status, loose) = app.get_as(&pin, "/api/v1/loggers?assigned=false").await;
    assert_eq!(
        (status, loose["loggers"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{loose}"
    );
    // Actions its role may not take: 403.
    assert_eq!(app.get_as(&pin, "/api/v1/dead-letters").await.0, 403);
    let (status, body) = app
        .send_as(
            &pin,
            "PUT",
            &format!("/api/v1/units/{mine}/logger"),
            json!({"serial": "THEIRS-1"}),
        )
        .await;
    assert_eq!(status, 409, "taking another PIN's logger: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in use elsewhere"),
        "says it is taken, and no more: {body}"
    );
    let (status, _) = app
        .send_as(&pin, "POST", "/api/v1/locations", location_body("067890", "B"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .send_as(&one, "POST", "/api/v1/locations", location_body("012345", "C"))
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .send_as(&pin, "POST", "/api/v1/locations", location_body("012345", "C"))
        .await;
    assert_eq!(status, 201, "a PIN token may add its own suffix location: {body}");
    let (status, _) = app
        .send_as(
            &pin,
            "POST",
            "/api/v1/locations/067890/units",
            json!({"name": "x", "kind": "freezer"}),
        )
        .await;
    assert_eq!(status, 404);
    // Its own logger it may move between its units.
    let (status, body) = app
        .send_as(
            &pin,
            "PUT",
            &format!("/api/v1/units/{sibling}/logger"),
            json!({"serial": "MINE-1", "role": "backup"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Readings LOOSE-1 took before any unit had it are the state's: no backdated claim.
    let (status, body) = app
        .send_as(
            &pin,
            "PUT",
            &format!("/api/v1/units/{mine}/logger"),
            json!({"serial": "LOOSE-1", "role": "backup", "from": "2026-11-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // The state coordinator sees everything.
    let loose = app.get("/api/v1/loggers?assigned=false").await;
    assert_eq!(loose["loggers"][0]["serial"], "LOOSE-1");
}

async fn no_token_or_a_revoked_one_gets_401(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    for path in [
        "/api/v1/locations",
        "/api/v1/loggers",
        "/api/v1/dead-letters",
        "/api/v1/units/1",
    ] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert_eq!(app.get_as("vfc_not-a-real-token", "/api/v1/locations").await.0, 401);
    let r = app
        .http
        .post(app.url("/api/v1/locations"))
        .json(&location_body("012345", "A"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let token = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "to revoke"]);
    assert_eq!(app.get_as(&token, "/api/v1/locations").await.0, 200);
    let list = String::from_utf8(app.cli(&["token", "list"]).stdout).unwrap();
    let id = list
        .lines()
        .find(|l| l.contains("to revoke"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    assert!(!list.contains(&token), "secrets are never listed");
    let out = app.cli(&["token", "revoke", &id]);
    assert!(out.status.success());
    assert_eq!(app.get_as(&token, "/api/v1/locations").await.0, 401);
    // Health and metrics are for operators and load balancers, without a token.
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    let doc = app.openapi().await;
    assert!(doc["paths"]["/api/v1/units/{id}/readings"].is_object());
}

on_both_databases!(
    a_clinic_token_never_sees_another_pin,
    no_token_or_a_revoked_one_gets_401
);
