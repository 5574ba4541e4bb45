//! The authorization matrix: every route of the API, what a caller without a token gets, and
//! what another PIN's clinic and a sibling location's token get when they name PIN 012345A's
//! things (and that 012345's own clinic reaches each of them). A route the OpenAPI document
//! lists and this matrix does not is a failure: every new route is placed here on purpose.

use serde_json::{json, Value};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{receive, ROTATEQ};
use crate::on_both_databases;

/// What another PIN's clinic token gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    /// 200, and nothing of PIN 012345 in the list.
    Listed,
    /// 403: the state coordinator's (or, creating a location, another PIN's).
    Forbidden,
    /// 404: it cannot learn that the thing exists.
    Hidden,
    /// 200 with an HL7 ACK that records nothing of 012345.
    Ack,
    /// Needs no caller (its credential is in the body or the link): every caller, and none,
    /// gets the same answer.
    Public,
    /// A person's session only: a token gets 401 like no caller.
    SessionOnly,
}

use Other::{Ack, Forbidden, Hidden, Listed, Public, SessionOnly};

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
    ("GET", "/api/v1/locations/{code}/gateways", Hidden),
    ("POST", "/api/v1/locations/{code}/gateways", Hidden),
    ("DELETE", "/api/v1/locations/{code}/gateways/{gateway}", Hidden),
    ("GET", "/api/v1/held-readings", Forbidden),
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
    ("GET", "/api/v1/rule-changes", Forbidden),
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
    ("POST", "/api/v1/accounts", Forbidden),
    ("GET", "/api/v1/accounts", Forbidden),
    ("GET", "/api/v1/accounts/{id}", Hidden),
    ("PATCH", "/api/v1/accounts/{id}", Hidden),
    ("POST", "/api/v1/accounts/{id}/totp/reset", Hidden),
    ("POST", "/api/v1/accounts/{id}/disable", Hidden),
    ("POST", "/api/v1/accounts/{id}/enable", Hidden),
    ("POST", "/api/v1/tokens", Forbidden),
    ("GET", "/api/v1/tokens", Forbidden),
    ("GET", "/api/v1/locations/{code}/tokens", Hidden),
    ("DELETE", "/api/v1/tokens/{id}", Hidden),
    ("GET", "/api/v1/audit", Listed),
    ("GET", "/api/v1/me", Listed),
    ("POST", "/api/v1/session", Public),
    ("DELETE", "/api/v1/session", SessionOnly),
    ("POST", "/api/v1/me/totp", SessionOnly),
    ("POST", "/api/v1/me/totp/confirm", SessionOnly),
    ("POST", "/api/v1/invitations/{token}", Public),
    ("POST", "/api/v1/password-resets", Public),
    ("POST", "/api/v1/password-resets/{token}", Public),
    ("GET", "/api/v1/locations/{code}/ordering", Hidden),
    ("PUT", "/api/v1/locations/{code}/ordering", Forbidden),
    ("POST", "/api/v1/locations/{code}/no-doses-report", Hidden),
    ("GET", "/api/v1/locations/{code}/orders/prerequisites", Hidden),
    ("POST", "/api/v1/locations/{code}/orders/waivers", Forbidden),
    ("GET", "/api/v1/locations/{code}/orders/suggestion", Hidden),
    ("GET", "/api/v1/locations/{code}/orders", Hidden),
    ("POST", "/api/v1/locations/{code}/orders", Hidden),
    ("GET", "/api/v1/orders", Listed),
    ("GET", "/api/v1/orders/{id}", Hidden),
    ("PATCH", "/api/v1/orders/{id}", Hidden),
    ("POST", "/api/v1/orders/{id}/submit", Hidden),
    ("POST", "/api/v1/orders/{id}/local-approve", Hidden),
    ("POST", "/api/v1/orders/{id}/approve", Forbidden),
    ("POST", "/api/v1/orders/{id}/deny", Forbidden),
    ("POST", "/api/v1/orders/{id}/return", Forbidden),
    ("POST", "/api/v1/orders/{id}/cancel", Hidden),
    ("POST", "/api/v1/orders/{id}/lines/{line_id}/close", Forbidden),
    ("POST", "/api/v1/orders/{id}/receive", Hidden),
    ("POST", "/api/v1/orders/export", Forbidden),
    ("GET", "/api/v1/orders/exports/{id}", Forbidden),
    ("POST", "/api/v1/shipments", Forbidden),
];

/// One real thing of each kind at PIN 012345, so a 404 to another PIN is the scope speaking,
/// not an empty table.
struct Things {
    unit: i64,
    second_unit: i64,
    lot: i64,
    excursion: i64,
    hold: i64,
    downtime: i64,
    device_alert: i64,
    transfer: i64,
    stock_event: i64,
    exception: i64,
    borrowing: i64,
    /// Clinic staff at 012345A.
    account: i64,
    /// A token of 012345A.
    token: i64,
    /// 012345's VFC coordinator, signed in with a second factor: accounts and tokens are managed
    /// by people, never by tokens.
    coordinator: Person,
    /// An order of 012345A (a draft at first) and its line.
    order: i64,
    order_line: i64,
    /// A shipment line of an order the walk sent, and a shipment file for one.
    shipment_line: i64,
    shipment_csv: String,
    /// 012345's provider of record (a token), who approves orders locally, and how the audit
    /// trail names it.
    provider: String,
    provider_actor: String,
}

/// A person signed in.
struct Person {
    cookie: String,
    csrf: String,
    actor: String,
}

/// Who calls.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Token(&'a str),
    Person(&'a Person),
}

/// 012345's own caller for a route: its coordinator in person for accounts and tokens, its
/// token for everything else.
fn owner_for<'a>(route: &str, token: &'a str, t: &'a Things) -> As<'a> {
    if route.ends_with("/local-approve") {
        return As::Token(&t.provider);
    }
    if route.starts_with("/api/v1/accounts") || route.starts_with("/api/v1/tokens") || route.ends_with("/tokens") {
        As::Person(&t.coordinator)
    } else {
        As::Token(token)
    }
}

/// A vfc-coordinator of PIN 012345 who accepted the invitation, signed in and set up TOTP.
async fn coordinator(app: &TestApp) -> Person {
    let email = "cora.matrix@example.org";
    let link = app.cli_last_line(&[
        "account",
        "create",
        "--email",
        email,
        "--name",
        "Cora Matrix",
        "--role",
        "vfc-coordinator",
        "--pin",
        "012345",
    ]);
    let token = link.rsplit('/').next().unwrap();
    let password = "copper lantern drifts north";
    let r = app
        .http
        .post(app.url(&format!("/api/v1/invitations/{token}")))
        .json(&json!({ "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .http
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": email, "password": password}))
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
    let signed: Value = r.json().await.unwrap();
    let person = Person {
        cookie,
        csrf: signed["csrf_token"].as_str().unwrap().to_string(),
        actor: format!("account:{}:{email}", signed["account"]["id"]),
    };
    let send = |path: &str, body: Value| {
        app.http
            .post(app.url(path))
            .header("cookie", &person.cookie)
            .header("x-csrf-token", &person.csrf)
            .json(&body)
            .send()
    };
    let e: Value = send("/api/v1/me/totp", json!({})).await.unwrap().json().await.unwrap();
    let totp = totp_rs::Totp::from_url(e["otpauth_uri"].as_str().unwrap()).unwrap();
    let code = totp.generate(chrono::Utc::now().timestamp() as u64).to_string();
    let r = send("/api/v1/me/totp/confirm", json!({ "code": code })).await.unwrap();
    assert_eq!(r.status(), 200);
    person
}

/// A VXU of one dose at 012345A; `eligibility` V02 (VFC) matches the VFC lot, V01 borrows it,
/// `lot` unknown queues it.
pub(crate) fn vxu(control: &str, lot: &str, eligibility: &str) -> String {
    format!(
        "MSH|^~\\&|EHR|012345A|VFCMON|MDIIS|20261101093000-0500||VXU^V04^VXU_V04|{control}|P|2.5.1\r\
         PID|1||P-{control}^^^EHR^MR||Doe^Avery||20241105|F\r\
         ORC|RE||{control}^EHR\r\
         RXA|0|1|{}||116^Rotavirus^CVX|2|mL^mL^UCUM||00^New^NIP001||^^^012345A||||{lot}|20991231|MSD^Merck^MVX|||CP|A\r\
         OBX|1|CE|64994-7^Vaccine Funding Program Eligibility^LN|1|{eligibility}^x^HL70064||||||F\r",
        chrono::Utc::now().format("%Y%m%d%H%M%S+0000")
    )
}

pub(crate) async fn hl7(app: &TestApp, token: &str, body: String) -> (u16, String) {
    let r = app
        .http
        .post(app.url("/api/v1/hl7"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) async fn first_id(app: &TestApp, what: &str, path: &str, list: &str) -> i64 {
    app.eventually(what, || async {
        let l = app.get(path).await;
        l[list][0]["id"].as_i64().ok_or_else(|| l.to_string())
    })
    .await
}

async fn things(app: &TestApp) -> Things {
    let unit = app.fridge().await;
    let second_unit = app.create_unit("012345A", "Second refrigerator", "refrigerator").await;
    let lot = receive(
        app,
        unit,
        (ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{lot}/ledger")).await;
    let stock_event = ledger["events"][0]["id"].as_i64().expect("the receipt");
    let (status, t) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/transfers",
            json!({"from_unit_id": unit, "to_unit_id": second_unit, "reason": "rebalance", "lines": [{"lot_id": lot, "doses": 1}]}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let transfer = t["id"].as_i64().unwrap();
    let (status, d) = app
        .send_as(
            &app.token,
            "POST",
            &format!("/api/v1/units/{second_unit}/downtime"),
            json!({"kind": "maintenance", "reason": "defrost", "until": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(status, 201, "{d}");
    let downtime = d["id"].as_i64().unwrap();
    for (control, lot, eligibility) in [("Q-1", "NOPE42", "V02"), ("B-1", "X123456", "V01")] {
        let (status, ack) = hl7(app, &app.token, vxu(control, lot, eligibility)).await;
        assert!(status == 200 && !ack.contains("MSA|AR"), "{ack}");
    }
    let exception = first_id(
        app,
        "a queued dose",
        "/api/v1/locations/012345A/decrement-exceptions",
        "exceptions",
    )
    .await;
    let borrowing = first_id(
        app,
        "a borrowing record",
        "/api/v1/locations/012345A/borrowing",
        "borrowing",
    )
    .await;
    app.register_gateway("012345A", "gw-012345A-1").await;
    let mut p = app.publisher("matrix-status").await;
    p.publish("vfc/loggers/LT-1/status", json!({"battery_pct": 12}).to_string())
        .await;
    p.wait_acked(1).await;
    let device_alert = first_id(app, "a low battery", "/api/v1/device-alerts?open=true", "device_alerts").await;
    app.freezing("LT-1").await;
    let excursion = first_id(app, "an excursion of 012345A", "/api/v1/excursions", "excursions").await;
    let hold = first_id(
        app,
        "the excursion's hold",
        &format!("/api/v1/excursions/{excursion}/holds"),
        "holds",
    )
    .await;
    let out = app.cli(&[
        "account",
        "create",
        "--email",
        "staff.a@example.org",
        "--name",
        "Staff A",
        "--role",
        "clinic-staff",
        "--location",
        "012345A",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let account = app.get("/api/v1/accounts").await["accounts"][0]["id"].as_i64().unwrap();
    let out = app.cli(&[
        "token",
        "create",
        "--role",
        "clinic",
        "--location",
        "012345A",
        "--name",
        "matrix EHR",
    ]);
    let token = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .expect("created token N");
    let coordinator = coordinator(app).await;
    let (status, order) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/orders",
            json!({"lines": [{"ndc": ROTATEQ, "funding": "vfc", "doses": 10}]}),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let out = app.cli(&[
        "token",
        "create",
        "--role",
        "provider-of-record",
        "--pin",
        "012345",
        "--name",
        "provider",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let provider = stdout.lines().last().unwrap().trim().to_string();
    let provider_actor = format!("token:{}:provider", stdout.split_whitespace().nth(2).unwrap());
    Things {
        order: order["id"].as_i64().unwrap(),
        order_line: order["lines"][0]["id"].as_i64().unwrap(),
        shipment_line: 0,
        shipment_csv: shipment_row(order["id"].as_i64().unwrap()),
        provider,
        provider_actor,
        coordinator,
        account,
        token,
        unit,
        second_unit,
        lot,
        excursion,
        hold,
        downtime,
        device_alert,
        transfer,
        stock_event,
        exception,
        borrowing,
    }
}

/// A shipment file shipping order `id`'s 10 doses of RotaTeq.
fn shipment_row(id: i64) -> String {
    format!(
        "order_id,ndc,lot,expires_on,doses,backordered_doses,carrier,tracking_number,ship_date,direct_ship\n\
         {id},{ROTATEQ},ORD-{id},2099-01-31,10,0,UPS,1Z{id},2026-11-20,false\n"
    )
}

/// The route with PIN 012345's things in it.
fn concrete(path: &str, t: &Things) -> String {
    let id = if path.starts_with("/api/v1/orders/") {
        t.order
    } else if path.starts_with("/api/v1/units/") {
        t.unit
    } else if path.starts_with("/api/v1/excursions/") {
        t.excursion
    } else if path.starts_with("/api/v1/holds/") {
        t.hold
    } else if path.starts_with("/api/v1/device-alerts/") {
        t.device_alert
    } else if path.starts_with("/api/v1/transfers/") {
        t.transfer
    } else if path.contains("/stock-events/") {
        t.stock_event
    } else if path.starts_with("/api/v1/decrement-exceptions/") {
        t.exception
    } else if path.starts_with("/api/v1/borrowing/") {
        t.borrowing
    } else if path.starts_with("/api/v1/accounts/") {
        t.account
    } else if path.starts_with("/api/v1/tokens/") {
        t.token
    } else {
        t.lot
    };
    // Downtime belongs to the second unit.
    let unit = if path.contains("{downtime_id}") {
        t.second_unit
    } else {
        id
    };
    path.replace("{code}", "012345A")
        .replace("{token}", "a-link-that-never-was")
        .replace("{serial}", "LT-1")
        .replace("{gateway}", "gw-012345A-1")
        .replace("{lot_id}", &t.lot.to_string())
        .replace("{line_id}", &t.order_line.to_string())
        .replace("{downtime_id}", &t.downtime.to_string())
        .replace("{date}", "2026-11-01")
        .replace(
            "{id}",
            &if path.starts_with("/api/v1/units/") { unit } else { id }.to_string(),
        )
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

/// A body its route accepts, so that what refuses another PIN is the scope, not the body.
fn body(method: &str, path: &str, t: &Things) -> Option<Value> {
    let (unit, lot) = (t.unit, t.lot);
    let removal = json!({"unit_id": unit, "lot_id": lot, "doses": 1, "reason_code": "12A"});
    let b = match (method, path) {
        ("GET" | "DELETE", _) => return None,
        ("POST", "/api/v1/locations") => crate::harness::location_body("012345", "C"),
        ("PUT", "/api/v1/locations/{code}") => {
            let mut b = crate::harness::location_body("012345", "A");
            let o = b.as_object_mut().unwrap();
            o.remove("pin");
            o.remove("suffix");
            b
        }
        ("POST", "/api/v1/locations/{code}/units") => json!({"name": "Matrix fridge", "kind": "refrigerator"}),
        ("PUT", "/api/v1/units/{id}") => json!({"name": "Renamed"}),
        ("POST", "/api/v1/locations/{code}/gateways") => json!({"id": "gw-matrix-1", "name": "Matrix gateway"}),
        ("PUT", "/api/v1/units/{id}/logger") => {
            json!({"serial": "LT-M", "role": "backup", "from": "2026-01-01T00:00:00Z"})
        }
        ("PUT", "/api/v1/units/{id}/rules") => json!({"rules": null}),
        ("POST", "/api/v1/units/{id}/downtime") => json!({"kind": "maintenance", "reason": "defrost",
            "until": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        ("POST", "/api/v1/units/{id}/daily/{date}/sign") => json!({"note": "checked"}),
        ("PUT", "/api/v1/program") => json!({}),
        ("POST", "/api/v1/excursions/{id}/review") => {
            json!({"reviewed_by": "Pat Primary", "cause": "door", "corrective_action": "closed it",
                "lot_determinations": [{"lot_id": lot, "determination": "viable"}]})
        }
        ("POST", "/api/v1/catalog/products") => json!({"ndc": "99999-9999-99", "name": "Test", "cvx": "116"}),
        ("POST", "/api/v1/locations/{code}/receipts") => json!({"unit_id": unit, "lines": [
            {"ndc": ROTATEQ, "lot": "M-1", "expires_on": "2099-01-31", "funding": "vfc", "doses": 1}]}),
        ("POST", "/api/v1/locations/{code}/wastage" | "/api/v1/locations/{code}/returns") => removal,
        ("POST", "/api/v1/locations/{code}/adjustments") => {
            json!({"unit_id": unit, "lot_id": lot, "doses": -1, "reason": "recount"})
        }
        ("POST", "/api/v1/locations/{code}/stock-events/{id}/reverse") => json!({"reason": "entered twice"}),
        ("PUT", "/api/v1/lots/{id}") => json!({"expires_on": "2099-02-28", "reason": "label"}),
        ("POST", "/api/v1/locations/{code}/transfers") => json!({"from_unit_id": unit, "to_unit_id": t.second_unit,
            "reason": "rebalance", "lines": [{"lot_id": lot, "doses": 1}]}),
        ("POST", "/api/v1/locations/{code}/reconciliations") => json!({"as_of": chrono::Utc::now().to_rfc3339(),
            "counted_by": "Pat", "counts": [{"unit_id": unit, "lot_id": lot, "counted": 9}]}),
        ("POST", "/api/v1/locations/{code}/holds") => json!({"unit_id": unit, "lot_id": lot, "reason": "label torn"}),
        ("POST", "/api/v1/holds/{id}/release") => json!({"note": "viable"}),
        ("PUT", "/api/v1/locations/{code}/product-units") => json!({"ndc": ROTATEQ, "unit_id": unit}),
        ("PUT", "/api/v1/locations/{code}/facility-ids") => json!({"facility_ids": ["EHR-9"]}),
        ("POST", "/api/v1/decrement-exceptions/{id}/resolve") => json!({"dismiss": "private stock"}),
        ("PUT", "/api/v1/borrowing/{id}") => json!({"reason": "vfc_order_delayed"}),
        ("POST", "/api/v1/locations/{code}/administrations") => json!({"doses": [{"patient_id": "P-9",
            "cvx": "116", "lot": "X123456", "administered_on": "2026-11-01", "eligibility": "V02"}]}),
        ("POST", "/api/v1/transfers/{id}/reject") => json!({"note": "not needed"}),
        ("POST", "/api/v1/accounts") => json!({"email": "new.staff@example.org", "name": "New Staff",
            "grants": [{"role": "clinic-staff", "location": "012345A"}]}),
        ("PATCH", "/api/v1/accounts/{id}") => json!({"name": "Renamed Staff"}),
        ("POST", "/api/v1/tokens") => json!({"name": "EHR", "role": "clinic-staff", "location": "012345A"}),
        ("POST", "/api/v1/session") => json!({"email": "nobody@example.org", "password": "not the password at all"}),
        ("POST", "/api/v1/password-resets") => json!({"email": "nobody@example.org"}),
        ("POST", "/api/v1/invitations/{token}" | "/api/v1/password-resets/{token}") => {
            json!({"password": "copper lantern drifts north"})
        }
        ("POST", "/api/v1/me/totp/confirm") => json!({"code": "000000"}),
        ("PUT", "/api/v1/locations/{code}/ordering") => json!({"frequency": "as_needed", "instructions": "Rear dock"}),
        ("POST", "/api/v1/locations/{code}/no-doses-report") => json!({"since": "2026-11-01"}),
        ("POST", "/api/v1/locations/{code}/orders/waivers") => {
            json!({"check": "reconciliation", "reason": "count booked"})
        }
        ("POST", "/api/v1/locations/{code}/orders") => {
            json!({"lines": [{"ndc": ROTATEQ, "funding": "vfc", "doses": 10}]})
        }
        ("PATCH", "/api/v1/orders/{id}") => json!({"note": "for the clinic day"}),
        ("POST", "/api/v1/orders/{id}/submit") => json!({"urgent": false}),
        ("POST", "/api/v1/orders/{id}/deny" | "/api/v1/orders/{id}/return" | "/api/v1/orders/{id}/cancel") => {
            json!({"reason": "ordered twice"})
        }
        ("POST", "/api/v1/orders/{id}/lines/{line_id}/close") => json!({"reason": "backorder cancelled"}),
        ("POST", "/api/v1/orders/{id}/receive") => {
            json!({"lines": [{"shipment_line_id": t.shipment_line, "unit_id": unit,
            "doses_received": 10, "lot": format!("ORD-{}", t.order), "expires_on": "2099-01-31", "condition": "ok"}]})
        }
        // Routes that take no body.
        _ => json!({}),
    };
    Some(b)
}

/// Calls one route of the matrix with PIN 012345's things in its path and a body it accepts.
async fn call(app: &TestApp, who: As<'_>, method: &str, route: &str, t: &Things) -> (String, u16, String) {
    let target = format!("{}{}", concrete(route, t), query(route));
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(m, app.url(&target));
    match who {
        As::Nobody => {}
        As::Token(token) => req = req.bearer_auth(token),
        As::Person(p) => req = req.header("cookie", &p.cookie).header("x-csrf-token", &p.csrf),
    }
    req = if route.ends_with("/hl7") {
        req.body(vxu("M-1", "X123456", "V02"))
    } else if route == "/api/v1/shipments" {
        req.header("content-type", "text/csv").body(t.shipment_csv.clone())
    } else if let Some(b) = body(method, route, t) {
        req.json(&b)
    } else {
        req
    };
    let r = req.send().await.unwrap();
    (target, r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// What the state coordinator sees of 012345: it must be the same after another PIN tried
/// every route.
async fn snapshot(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/api/v1/locations/012345A",
        "/api/v1/locations/012345A/units",
        "/api/v1/locations/012345A/gateways",
        "/api/v1/locations/012345A/inventory",
        "/api/v1/locations/012345A/holds",
        "/api/v1/locations/012345A/transfers",
        "/api/v1/locations/012345A/decrement-exceptions",
        "/api/v1/locations/012345A/borrowing",
        "/api/v1/locations/012345A/facility-ids",
        "/api/v1/locations/012345A/product-units",
        "/api/v1/locations/012345A/reconciliations",
        "/api/v1/locations/012345A/orders",
        "/api/v1/locations/012345A/ordering",
        "/api/v1/excursions",
        "/api/v1/device-alerts",
        "/api/v1/catalog/products",
    ] {
        out.push(app.get(path).await);
    }
    out
}

async fn every_route_refuses_a_missing_token_and_hides_one_pin_from_another(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let t = things(&app).await;
    app.create_location("067890", "A").await;
    let other = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "another PIN"]);
    // The owner is a coordinator of the PIN: it may also manage its staff's accounts and tokens.
    let owner = app.create_token(&["--role", "vfc-coordinator", "--pin", "012345", "--name", "the clinic"]);
    // A sibling location of the same PIN, with a token of its own: 012345A's things are as hidden
    // from it as from another PIN.
    app.create_location("012345", "B").await;
    let sibling = app.create_token(&["--role", "clinic", "--location", "012345B", "--name", "sibling"]);

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

    let before = snapshot(&app).await;
    let mut calls = 0;
    for (method, path, expect) in MATRIX {
        let (target, status, body) = call(&app, As::Nobody, method, path, &t).await;
        calls += 1;
        if *expect == Public {
            // Whoever calls gets the same answer as no one.
            for token in [&other, &sibling, &owner] {
                let (_, s2, b2) = call(&app, As::Token(token), method, path, &t).await;
                calls += 1;
                assert_eq!(
                    (s2, &b2),
                    (status, &body),
                    "{method} {target}: the caller changed the answer"
                );
            }
            continue;
        }
        assert_eq!(status, 401, "{method} {target} without a token: {body}");
        for (who, token, theirs) in [
            ("another PIN", &other, "012345"),
            ("location 012345B", &sibling, "012345A"),
        ] {
            let (target, status, body) = call(&app, As::Token(token), method, path, &t).await;
            calls += 1;
            let ok = match expect {
                Listed => status == 200 && !body.contains(theirs) && !body.contains("LT-1"),
                Forbidden => status == 403,
                Hidden => status == 404,
                Ack => status == 200 && body.starts_with("MSH|") && !body.contains("MSA|AA"),
                SessionOnly => status == 401,
                Public => unreachable!("handled above"),
            };
            assert!(
                ok,
                "{method} {target} as {who}: expected {expect:?}, got {status}: {body}"
            );
        }
    }
    assert_eq!(snapshot(&app).await, before, "nothing of 012345 changed");

    // The control: 012345's own clinic reaches every one of those things, so each 404 above
    // was the scope and each empty list hid something.
    for (method, path, expect) in MATRIX {
        let (target, status, body) = call(&app, owner_for(path, &owner, &t), method, path, &t).await;
        let reached = match expect {
            Hidden => !matches!(status, 401 | 403 | 404),
            Listed if path.contains("/catalog/") => status == 200,
            Listed => status == 200 && (body.contains("012345") || body.contains("LT-1")),
            Ack => status == 200 && body.contains("MSA|AA"),
            Forbidden => true,
            // A token is no session: the owner's gets 401 too; signing in is tested on its own.
            SessionOnly => status == 401,
            Public => continue,
        };
        assert!(reached, "{method} {target} as 012345's clinic: {status}: {body}");
        calls += 1;
    }
    // The matrix's size, for the record: routes × callers.
    println!("authorization matrix: {} routes, {calls} calls", MATRIX.len());
}

/// The newest audit row's id (0 for none).
async fn last_audit_id(app: &TestApp) -> i64 {
    app.get("/api/v1/audit?limit=1").await["audit"][0]["id"]
        .as_i64()
        .unwrap_or(0)
}

/// The audit walk: every write route of the API leaves exactly one audit row, naming who did
/// it and the objects it changed, in the transaction of the change. Each route is called as
/// 012345's coordinator, or, where that is the state's, as the state coordinator. Routes that
/// need no caller or a person's session (signing in, links, a second factor) have their own
/// walk below.
async fn every_write_route_leaves_one_audit_row_naming_its_actor_and_objects(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let mut t = things(&app).await;
    let out = app.cli(&[
        "token",
        "create",
        "--role",
        "vfc-coordinator",
        "--pin",
        "012345",
        "--name",
        "the clinic",
    ]);
    let owner = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let owner_id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let state_id = app.get("/api/v1/me").await["token"].as_str().unwrap().to_string();
    // The excursion back in range, so that it can be reviewed.
    let mut p = app.publisher("walk").await;
    p.reading(
        "LT-1",
        &(chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339(),
        4.6,
    )
    .await;
    p.wait_acked(1).await;
    app.eventually("the excursion over", || async {
        let x = app.get(&format!("/api/v1/excursions/{}", t.excursion)).await;
        x["ended_at"].as_str().map(|_| ()).ok_or_else(|| x.to_string())
    })
    .await;
    // Orders are submitted in the walk without waiting for prerequisites.
    set_ordering(
        &app,
        json!({"prerequisites": {"reconciliation_days": null, "doses_reported_days": null, "temperature_records": false,
            "daily_signoff": false, "unreviewed_excursion_hours": null, "calibration_current": false,
            "decrement_exception_days": null}}),
    )
    .await;
    // Another PIN to send doses to: approving and rejecting need a pending request.
    app.create_location("067890", "A").await;
    app.create_unit("067890A", "Their refrigerator", "refrigerator").await;
    let mut walked = 0;
    for (method, path, expect) in MATRIX {
        if *method == "GET" || matches!(expect, Public | SessionOnly) {
            continue;
        }
        if path.starts_with("/api/v1/transfers/") && (path.ends_with("/approve") || path.ends_with("/reject")) {
            let (status, request) = app
                .send_as(
                    &owner,
                    "POST",
                    "/api/v1/locations/012345A/transfers",
                    json!({"from_unit_id": t.unit, "to_location": "067890A", "reason": "they ran out",
                        "lines": [{"lot_id": t.lot, "doses": 1}]}),
                )
                .await;
            assert_eq!(
                (status, request["status"].as_str()),
                (201, Some("pending")),
                "{request}"
            );
            t.transfer = request["id"].as_i64().unwrap();
        }
        if path.contains("/stock-events/") {
            // The receipt's doses have moved on by now: reverse the walk's own adjustment.
            let ledger = app
                .get(&format!("/api/v1/locations/012345A/lots/{}/ledger", t.lot))
                .await;
            t.stock_event = ledger["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "adjustment")
                .filter_map(|e| e["id"].as_i64())
                .max()
                .expect("the walk's adjustment");
        }
        if path.starts_with("/api/v1/holds/") {
            // The excursion's hold ended with its review: release the walk's own.
            let holds = app.get("/api/v1/locations/012345A/holds?open=true").await;
            t.hold = holds["holds"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|h| h["id"].as_i64())
                .max()
                .expect("the walk's hold");
        }
        if path.starts_with("/api/v1/orders/") || *path == "/api/v1/shipments" {
            order_for_the_walk(&app, &owner, method, path, &mut t).await;
        }
        let before = last_audit_id(&app).await;
        if path.ends_with("/reconciliations") {
            // A count of every lot on hand, as the walk has left them.
            let stock = app.get("/api/v1/locations/012345A/inventory").await;
            let counts: Vec<Value> = stock["lots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| json!({"unit_id": l["unit_id"], "lot_id": l["lot_id"], "counted": l["on_hand"]}))
                .collect();
            let body = json!({"as_of": chrono::Utc::now().to_rfc3339(), "counted_by": "Pat", "counts": counts});
            let (status, out) = app.send_as(&owner, method, &concrete(path, &t), body).await;
            assert_eq!(status, 201, "{out}");
            let rows = app.get("/api/v1/audit?limit=2").await["audit"]
                .as_array()
                .unwrap()
                .clone();
            let new: Vec<&Value> = rows.iter().filter(|r| r["id"].as_i64().unwrap() > before).collect();
            assert_eq!(new.len(), 1, "{new:?}");
            assert_eq!(
                new[0]["actor"].as_str().unwrap(),
                format!("token:{owner_id}:the clinic")
            );
            walked += 1;
            continue;
        }
        if *path == "/api/v1/program" {
            // The matrix's empty body is refused before the scope; the walk saves the document.
            let program = app.get(path).await;
            let (status, body) = app.send_as(&app.token, method, path, program).await;
            assert_eq!(status, 200, "{body}");
            let row = &app.get("/api/v1/audit?limit=1").await["audit"][0];
            assert!(
                row["id"].as_i64().unwrap() > before && row["actor"] == state_id.as_str(),
                "{row}"
            );
            walked += 1;
            continue;
        }
        let who = owner_for(path, &owner, &t);
        let (mut target, mut status, mut body) = call(&app, who, method, path, &t).await;
        let mut actor = match who {
            As::Person(p) => p.actor.clone(),
            As::Token(token) if token == t.provider => t.provider_actor.clone(),
            _ => format!("token:{owner_id}:the clinic"),
        };
        if status == 403 {
            (target, status, body) = call(&app, As::Token(&app.token), method, path, &t).await;
            actor = state_id.clone();
        }
        assert!((200..300).contains(&status), "{method} {target}: {status}: {body}");
        let rows = app.get("/api/v1/audit?limit=10").await["audit"]
            .as_array()
            .unwrap()
            .clone();
        let new: Vec<&Value> = rows.iter().filter(|r| r["id"].as_i64().unwrap() > before).collect();
        assert_eq!(new.len(), 1, "{method} {target} left {} audit rows: {new:?}", new.len());
        let row = new[0];
        let expected_actor = if path.ends_with("/hl7") {
            "hl7:012345A"
        } else {
            actor.as_str()
        };
        assert_eq!(row["actor"], expected_actor, "{method} {target}: {row}");
        assert!(
            !row["object_ids"].as_array().unwrap().is_empty(),
            "{method} {target} names no object: {row}"
        );
        assert!(row["action"].as_str().is_some_and(|a| a.contains('.')), "{row}");
        walked += 1;
    }
    walked += walk_a_persons_routes(&app).await;
    println!("audit walk: {walked} write routes, one row each");
}

/// Puts an order in the state the route acts on (a draft to submit, one in review to approve,
/// one approved to close a line of, one sent with a shipment to receive), as 012345's clinic and
/// the state would.
async fn order_for_the_walk(app: &TestApp, owner: &str, method: &str, path: &str, t: &mut Things) {
    let send = |token: String, method: &'static str, path: String, body: Value| async move {
        let (status, out) = app.send_as(&token, method, &path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status}: {out}");
        out
    };
    let state = app.token.clone();
    let local = path.ends_with("/local-approve");
    if local {
        set_ordering(app, json!({"local_approval": true})).await;
    }
    let draft = send(
        owner.to_string(),
        "POST",
        "/api/v1/locations/012345A/orders".into(),
        json!({"lines": [{"ndc": ROTATEQ, "funding": "vfc", "doses": 10}]}),
    )
    .await;
    t.order = draft["id"].as_i64().unwrap();
    t.order_line = draft["lines"][0]["id"].as_i64().unwrap();
    let id = t.order;
    if method == "PATCH" || path.ends_with("/submit") || path.ends_with("/cancel") {
        return;
    }
    send(
        owner.to_string(),
        "POST",
        format!("/api/v1/orders/{id}/submit"),
        json!({"urgent": false}),
    )
    .await;
    if local {
        set_ordering(app, json!({"local_approval": false})).await;
    }
    if local || path.ends_with("/approve") || path.ends_with("/deny") || path.ends_with("/return") {
        return;
    }
    send(state.clone(), "POST", format!("/api/v1/orders/{id}/approve"), json!({})).await;
    if path.ends_with("/close") || path == "/api/v1/orders/export" {
        return;
    }
    let r = app
        .http
        .post(app.url("/api/v1/orders/export"))
        .bearer_auth(&state)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.shipment_csv = shipment_row(id);
    if path.ends_with("/receive") {
        let r = app
            .http
            .post(app.url("/api/v1/shipments"))
            .bearer_auth(&state)
            .header("content-type", "text/csv")
            .body(t.shipment_csv.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let o = app.get(&format!("/api/v1/orders/{id}")).await;
        t.shipment_line = o["shipments"][0]["id"].as_i64().unwrap();
    }
}

/// Sets keys of the program's ordering settings.
async fn set_ordering(app: &TestApp, keys: Value) {
    let mut program = app.get("/api/v1/program").await;
    for (k, v) in keys.as_object().unwrap() {
        program["ordering"][k] = v.clone();
    }
    let (status, out) = app.send_as(&app.token, "PUT", "/api/v1/program", program).await;
    assert_eq!(status, 200, "{out}");
}

/// The walk of the routes a person uses: from the invitation link to signing out, each leaves
/// one row naming the person's account (or, asking for a reset, no one).
async fn walk_a_persons_routes(app: &TestApp) -> usize {
    let link = app.cli_last_line(&[
        "account",
        "create",
        "--email",
        "walker@state.example",
        "--name",
        "Wren Walker",
        "--role",
        "state-viewer",
    ]);
    let token = link.rsplit('/').next().unwrap().to_string();
    let id = app.get("/api/v1/accounts?limit=1000").await["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "walker@state.example")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let me = format!("account:{id}:walker@state.example");
    let http = &app.http;
    let mut cookie = String::new();
    let mut csrf = String::new();
    let mut walked = 0;
    let steps: [(&str, &str, &str); 7] = [
        ("POST", "/api/v1/invitations/{token}", "account.accept_invitation"),
        ("POST", "/api/v1/password-resets", "account.request_reset"),
        ("POST", "/api/v1/password-resets/{token}", "account.reset_password"),
        ("POST", "/api/v1/session", "session.sign_in"),
        ("POST", "/api/v1/me/totp", "second_factor.start"),
        ("POST", "/api/v1/me/totp/confirm", "second_factor.enable"),
        ("DELETE", "/api/v1/session", "session.sign_out"),
    ];
    let mut uri = String::new();
    for (method, route, action) in steps {
        assert!(
            MATRIX.iter().any(|(m, p, _)| *m == method && *p == route),
            "{method} {route} is a route"
        );
        let before = last_audit_id(app).await;
        let path = match route {
            "/api/v1/invitations/{token}" => format!("/api/v1/invitations/{token}"),
            "/api/v1/password-resets/{token}" => {
                let all = app.wait_email_with("Reset your vfc-monitor password").await;
                let mail = all
                    .iter()
                    .find(|m| m.contains("Reset your vfc-monitor password"))
                    .unwrap();
                let at = mail.find("/reset/").unwrap() + "/reset/".len();
                format!("/api/v1/password-resets/{}", &mail[at..at + 64])
            }
            other => other.to_string(),
        };
        let body = match route {
            "/api/v1/invitations/{token}" => json!({"password": "copper lantern drifts north"}),
            "/api/v1/password-resets" => json!({"email": "walker@state.example"}),
            "/api/v1/password-resets/{token}" => json!({"password": "violet harbour sings twice"}),
            "/api/v1/session" => json!({"email": "walker@state.example", "password": "violet harbour sings twice"}),
            "/api/v1/me/totp/confirm" => {
                let totp = totp_rs::Totp::from_url(&uri).unwrap();
                json!({"code": totp.generate(chrono::Utc::now().timestamp() as u64).to_string()})
            }
            _ => json!({}),
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http.request(m, app.url(&path)).json(&body);
        if !cookie.is_empty() {
            req = req.header("cookie", &cookie).header("x-csrf-token", &csrf);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        if let Some(c) = r.headers().get("set-cookie") {
            cookie = c.to_str().unwrap().split(';').next().unwrap().to_string();
        }
        let out: Value = r.json().await.unwrap_or(Value::Null);
        assert!((200..300).contains(&status), "{method} {path}: {status}: {out}");
        if let Some(c) = out["csrf_token"].as_str() {
            csrf = c.to_string();
        }
        if let Some(u) = out["otpauth_uri"].as_str() {
            uri = u.to_string();
        }
        // A reset is asked for after the answer, so its row may come a moment later.
        let rows = app
            .eventually(&format!("the audit row of {method} {route}"), || async {
                let rows = app.get("/api/v1/audit?limit=10").await["audit"]
                    .as_array()
                    .unwrap()
                    .clone();
                let new: Vec<Value> = rows
                    .into_iter()
                    .filter(|r| r["id"].as_i64().unwrap() > before)
                    .collect();
                if new.is_empty() {
                    Err("none yet".to_string())
                } else {
                    Ok(new)
                }
            })
            .await;
        assert_eq!(
            rows.len(),
            1,
            "{method} {route} left {} audit rows: {rows:?}",
            rows.len()
        );
        let new: Vec<&Value> = rows.iter().collect();
        assert_eq!(new[0]["action"], action, "{method} {route}");
        // Asking for a reset is anyone's; everything else is the person's own.
        let actor = if action == "account.request_reset" {
            "anonymous"
        } else {
            me.as_str()
        };
        assert_eq!(new[0]["actor"], actor, "{method} {route}");
        assert_eq!(new[0]["object_ids"], json!([id.to_string()]), "{method} {route}");
        walked += 1;
    }
    walked
}

on_both_databases!(
    every_route_refuses_a_missing_token_and_hides_one_pin_from_another,
    every_write_route_leaves_one_audit_row_naming_its_actor_and_objects,
);
