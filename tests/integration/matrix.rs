//! The authorization matrix: every route of the API, what a caller without a token gets, and
//! what another PIN's clinic gets when it names this PIN's things. A route the OpenAPI document
//! lists and this matrix does not is a failure: every new route is placed here on purpose.

use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{receive, ROTATEQ};

/// What another PIN's clinic token gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    /// 200, and nothing of PIN 012345 in the list.
    Listed,
    /// 403: the state coordinator's (or, creating a location, another PIN's).
    Forbidden,
    /// 404: it cannot learn that the thing exists (400 when its body is refused before that).
    Hidden,
    /// 200 with an HL7 ACK that records nothing of 012345.
    Ack,
}

use Other::{Ack, Forbidden, Hidden, Listed};

const MATRIX: &[(&str, &str, Other)] = &[
    ("GET", "/api/v1/locations", Listed),
    ("POST", "/api/v1/locations", Forbidden),
    ("GET", "/api/v1/locations/{code}", Hidden),
    ("PUT", "/api/v1/locations/{code}", Hidden),
    ("GET", "/api/v1/locations/{code}/units", Hidden),
    ("POST", "/api/v1/locations/{code}/units", Hidden),
    ("GET", "/api/v1/units/{id}", Hidden),
    ("PUT", "/api/v1/units/{id}", Hidden),
    ("PUT", "/api/v1/units/{id}/logger", Hidden),
    ("DELETE", "/api/v1/units/{id}/logger/{serial}", Hidden),
    ("GET", "/api/v1/units/{id}/readings", Hidden),
    ("GET", "/api/v1/loggers", Listed),
    ("GET", "/api/v1/loggers/{serial}", Hidden),
    ("GET", "/api/v1/loggers/{serial}/readings", Hidden),
    ("GET", "/api/v1/dead-letters", Forbidden),
    ("GET", "/api/v1/program", Forbidden),
    ("PUT", "/api/v1/program", Forbidden),
    ("GET", "/api/v1/units/{id}/rules", Hidden),
    ("PUT", "/api/v1/units/{id}/rules", Hidden),
    ("GET", "/api/v1/units/{id}/rules/history", Hidden),
    ("GET", "/api/v1/units/{id}/downtime", Hidden),
    ("POST", "/api/v1/units/{id}/downtime", Hidden),
    ("POST", "/api/v1/units/{id}/downtime/{downtime_id}/end", Hidden),
    ("GET", "/api/v1/units/{id}/daily", Hidden),
    ("POST", "/api/v1/units/{id}/daily/{date}/sign", Hidden),
    ("GET", "/api/v1/device-alerts", Listed),
    ("POST", "/api/v1/device-alerts/{id}/acknowledge", Hidden),
    ("GET", "/api/v1/evaluation-failures", Forbidden),
    ("GET", "/api/v1/excursions", Listed),
    ("GET", "/api/v1/excursions/{id}", Hidden),
    ("POST", "/api/v1/excursions/{id}/acknowledge", Hidden),
    ("POST", "/api/v1/excursions/{id}/review", Hidden),
    ("GET", "/api/v1/excursions/{id}/holds", Hidden),
    ("GET", "/api/v1/catalog/products", Listed),
    ("POST", "/api/v1/catalog/products", Forbidden),
    ("GET", "/api/v1/inventory", Listed),
    ("GET", "/api/v1/locations/{code}/inventory", Hidden),
    ("POST", "/api/v1/locations/{code}/receipts", Hidden),
    ("POST", "/api/v1/locations/{code}/wastage", Hidden),
    ("POST", "/api/v1/locations/{code}/returns", Hidden),
    ("POST", "/api/v1/locations/{code}/adjustments", Hidden),
    ("POST", "/api/v1/locations/{code}/stock-events/{id}/reverse", Hidden),
    ("GET", "/api/v1/locations/{code}/lots/{lot_id}/ledger", Hidden),
    ("PUT", "/api/v1/lots/{id}", Forbidden),
    ("GET", "/api/v1/locations/{code}/transfers", Hidden),
    ("POST", "/api/v1/locations/{code}/transfers", Hidden),
    ("GET", "/api/v1/transfers/{id}", Hidden),
    ("POST", "/api/v1/transfers/{id}/approve", Forbidden),
    ("POST", "/api/v1/transfers/{id}/reject", Forbidden),
    ("GET", "/api/v1/locations/{code}/reconciliations", Hidden),
    ("POST", "/api/v1/locations/{code}/reconciliations", Hidden),
    ("GET", "/api/v1/locations/{code}/holds", Hidden),
    ("POST", "/api/v1/locations/{code}/holds", Hidden),
    ("POST", "/api/v1/holds/{id}/release", Hidden),
    ("GET", "/api/v1/locations/{code}/product-units", Hidden),
    ("PUT", "/api/v1/locations/{code}/product-units", Hidden),
    ("GET", "/api/v1/locations/{code}/facility-ids", Hidden),
    ("PUT", "/api/v1/locations/{code}/facility-ids", Hidden),
    ("GET", "/api/v1/locations/{code}/decrement-exceptions", Hidden),
    ("POST", "/api/v1/decrement-exceptions/{id}/resolve", Hidden),
    ("GET", "/api/v1/locations/{code}/borrowing", Hidden),
    ("PUT", "/api/v1/borrowing/{id}", Hidden),
    ("GET", "/api/v1/locations/{code}/revaccination-review", Hidden),
    ("POST", "/api/v1/hl7", Ack),
    ("POST", "/api/v1/locations/{code}/administrations", Hidden),
];

/// The route with PIN 012345's things in it.
fn concrete(path: &str, excursion: i64) -> String {
    let path = path
        .replace("{code}", "012345A")
        .replace("{serial}", "LT-1")
        .replace("{lot_id}", "1")
        .replace("{downtime_id}", "1")
        .replace("{date}", "2026-11-01");
    if path.starts_with("/api/v1/excursions/{id}") {
        path.replace("{id}", &excursion.to_string())
    } else {
        path.replace("{id}", "1")
    }
}

fn query(path: &str) -> &'static str {
    if path.ends_with("/readings") {
        "?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z"
    } else if path.ends_with("/daily") {
        "?from=2026-11-01&to=2026-11-02"
    } else {
        ""
    }
}

/// A body for the HL7 route: a dose at 012345A.
fn vxu() -> String {
    "MSH|^~\\&|EHR|012345A|VFCMON|MDIIS|20261101093000-0500||VXU^V04^VXU_V04|M-1|P|2.5.1\r\
     PID|1||P1^^^EHR^MR||Doe^Avery||20241105|F\r\
     RXA|0|1|20261101||116^Rotavirus^CVX|2|mL^mL^UCUM||00^New^NIP001||^^^012345A||||X123456|20991231|MSD^Merck^MVX|||CP|A\r"
        .to_string()
}

async fn call(app: &TestApp, token: Option<&str>, method: &str, path: &str) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(m, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = if path.ends_with("/hl7") {
        req.body(vxu())
    } else if method == "POST" && path == "/api/v1/locations" {
        req.json(&crate::harness::location_body("012345", "C"))
    } else if method != "GET" && method != "DELETE" {
        req.json(&json!({}))
    } else {
        req
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_missing_token_and_hides_one_pin_from_another() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    receive(
        &app,
        unit,
        (ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now(),
    )
    .await;
    app.freezing("LT-1").await;
    let excursion = app
        .eventually("an excursion of 012345A", || async {
            let l = app.get("/api/v1/excursions").await;
            l["excursions"][0]["id"].as_i64().ok_or_else(|| l.to_string())
        })
        .await;
    app.create_location("067890", "A").await;
    let other = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "another PIN"]);

    // Every route of the OpenAPI document is in the matrix, and every row is a route.
    let doc = app.openapi().await;
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    for (method, path) in &routes {
        assert!(
            MATRIX.iter().any(|(m, p, _)| m == method && p == path),
            "{method} {path} is not in the authorization matrix: add it with what another PIN gets"
        );
    }
    assert_eq!(
        routes.len(),
        MATRIX.len(),
        "a row of the matrix is not a route any more"
    );

    for (method, path, expect) in MATRIX {
        let target = format!("{}{}", concrete(path, excursion), query(path));
        let (status, body) = call(&app, None, method, &target).await;
        assert_eq!(status, 401, "{method} {target} without a token: {body}");
        let (status, body) = call(&app, Some(&other), method, &target).await;
        let ok = match expect {
            Listed => status == 200 && !body.contains("012345") && !body.contains("LT-1"),
            Forbidden => status == 403,
            Hidden => status == 404 || (status == 400 && *method != "GET"),
            Ack => status == 200 && body.starts_with("MSH|") && !body.contains("MSA|AA"),
        };
        assert!(
            ok,
            "{method} {target} as another PIN: expected {expect:?}, got {status}: {body}"
        );
        if status == 400 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(
                !v["error"]["message"].as_str().unwrap_or("").contains("012345"),
                "a refused body says nothing of 012345: {body}"
            );
        }
    }
    // Nothing of 012345 changed: its lot still has its ten doses.
    let inv = app.get("/api/v1/locations/012345A/inventory").await;
    assert_eq!(inv["lots"][0]["on_hand"], 10, "{inv}");
}
