//! Doses administered over HL7 VXU (HTTP and MLLP) and JSON: each decrements its lot once, and
//! every message gets the ACK the CDC guide describes.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Broker, Database, TestApp};
use crate::inventory::{line, on_hand, receive, MMR, ROTATEQ};
use crate::on_both_databases;

/// One RXA group (with its ORC and funding OBX).
#[derive(Clone)]
struct Dose {
    orc: Option<&'static str>,
    patient: &'static str,
    date: String,
    vaccine: &'static str,
    lot: &'static str,
    source: &'static str,
    status: &'static str,
    action: &'static str,
    facility: &'static str,
    eligibility: Option<&'static str>,
    funding: Option<&'static str>,
}

fn dose(lot: &'static str) -> Dose {
    Dose {
        orc: Some("ORD-1"),
        patient: "MRN4471",
        date: Utc::now().format("%Y%m%d%H%M%S+0000").to_string(),
        vaccine: "116^Rotavirus, pentavalent^CVX",
        lot,
        source: "00",
        status: "CP",
        action: "A",
        facility: "012345A",
        eligibility: Some("V02"),
        funding: None,
    }
}

fn vxu(control: &str, doses: &[Dose]) -> String {
    let mut m = format!(
        "MSH|^~\\&|PEDSEHR|012345A|VFCMON|MDIIS|20250310093000-0500||VXU^V04^VXU_V04|{control}|P|2.5.1|||ER|AL|||||Z22^CDCPHINVS\r\
         PID|1||{}^^^PEDSEHR^MR||Doe^Avery^Lee^^^^L||20241105|F\r",
        doses.first().map(|d| d.patient).unwrap_or("MRN4471")
    );
    for d in doses {
        if let Some(orc) = d.orc {
            m.push_str(&format!("ORC|RE||{orc}^PEDSEHR\r"));
        }
        m.push_str(&format!(
            "RXA|0|1|{}||{}|2|mL^mL^UCUM||{}^x^NIP001||^^^{}||||{}|20260131|MSD^Merck^MVX|||{}|{}\r",
            d.date, d.vaccine, d.source, d.facility, d.lot, d.status, d.action
        ));
        if let Some(f) = d.funding {
            m.push_str(&format!(
                "OBX|1|CE|30963-3^Vaccine Funding Source^LN|1|{f}^x^CDCPHINVS||||||F\r"
            ));
        }
        if let Some(e) = d.eligibility {
            m.push_str(&format!(
                "OBX|2|CE|64994-7^Vaccine Funding Program Eligibility^LN|2|{e}^x^HL70064||||||F\r"
            ));
        }
    }
    m
}

async fn post(app: &TestApp, token: &str, body: &str) -> (u16, String) {
    let r = app
        .http
        .post(app.url("/api/v1/hl7"))
        .bearer_auth(token)
        .header("content-type", "application/hl7-v2")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Posts as the state coordinator; the ACK, which must be HTTP 200.
async fn send(app: &TestApp, body: &str) -> String {
    let (status, ack) = post(app, &app.token, body).await;
    assert_eq!(status, 200, "{ack}");
    ack
}

fn msa(ack: &str) -> String {
    ack.split('\r')
        .find(|l| l.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {ack:?}"))
        .to_string()
}

fn errs(ack: &str) -> Vec<String> {
    ack.split('\r')
        .filter(|l| l.starts_with("ERR|"))
        .map(str::to_string)
        .collect()
}

async fn stocked(app: &TestApp) -> (i64, i64) {
    let fridge = app.fridge().await;
    let lot = receive(
        app,
        fridge,
        (ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        Utc::now() - chrono::Duration::hours(2),
    )
    .await;
    (fridge, lot)
}

async fn a_dose_decrements_once_however_often_it_is_sent(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    let first = vxu("MSG1", &[dose("x123456 ")]);
    let ack = send(&app, &first).await;
    assert_eq!(msa(&ack), "MSA|AA|MSG1", "{ack}");
    assert!(
        ack.starts_with("MSH|^~\\&|") && ack.contains("ACK^V04^ACK") && ack.contains("Z23^CDCPHINVS"),
        "{ack}"
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 9);

    // The same message: its original ACK, byte for byte, and nothing changes.
    assert_eq!(send(&app, &first).await, ack);
    // The same dose (ORC-3) in a new message.
    assert_eq!(msa(&send(&app, &vxu("MSG2", &[dose("X123456")])).await), "MSA|AA|MSG2");
    // The whole history resent without ORC-3: the same patient, vaccine, day and lot.
    let mut again = dose("X123456");
    again.orc = None;
    let mut older = dose("X123456");
    older.orc = None;
    older.date = "20240101".into();
    older.source = "01";
    assert_eq!(msa(&send(&app, &vxu("MSG3", &[older, again])).await), "MSA|AA|MSG3");
    assert_eq!(on_hand(&app, fridge, lot).await, 9, "one dose, one decrement");
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{lot}/ledger")).await;
    let admin: Vec<_> = ledger["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "administration")
        .collect();
    assert_eq!(admin.len(), 1);
    assert_eq!(
        (admin[0]["source"].as_str(), admin[0]["source_ref"].as_str()),
        (Some("hl7"), Some("MSG1"))
    );
}

async fn only_doses_given_here_decrement_and_corrections_move_them(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    let other = receive(
        &app,
        fridge,
        (ROTATEQ, "Y999", "2099-01-31", "vfc"),
        5,
        Utc::now() - chrono::Duration::hours(2),
    )
    .await;
    let mut hist = dose("X123456");
    (hist.orc, hist.source) = (Some("H1"), "01");
    let mut refused = dose("X123456");
    (refused.orc, refused.status) = (Some("R1"), "RE");
    let mut not_given = dose("X123456");
    (not_given.orc, not_given.status) = (Some("N1"), "NA");
    let ack = send(&app, &vxu("M1", &[hist, refused, not_given])).await;
    assert_eq!(msa(&ack), "MSA|AA|M1", "{ack}");
    assert_eq!(on_hand(&app, fridge, lot).await, 10);

    // Given, then corrected to another lot (U), then deleted (D).
    send(&app, &vxu("M2", &[dose("X123456")])).await;
    assert_eq!(on_hand(&app, fridge, lot).await, 9);
    let mut update = dose("Y999");
    update.action = "U";
    assert_eq!(msa(&send(&app, &vxu("M3", &[update])).await), "MSA|AA|M3");
    assert_eq!(
        (on_hand(&app, fridge, lot).await, on_hand(&app, fridge, other).await),
        (10, 4)
    );
    let mut delete = dose("Y999");
    delete.action = "D";
    assert_eq!(msa(&send(&app, &vxu("M4", &[delete])).await), "MSA|AA|M4");
    assert_eq!(on_hand(&app, fridge, other).await, 5, "a delete gives the dose back");
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{other}/ledger")).await;
    let events = ledger["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["kind"], "reversal");
    assert_eq!(events.last().unwrap()["reverses"], events[1]["id"]);
}

async fn funding_and_eligibility_pick_the_stock_and_borrowing_is_recorded(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let fridge = app.fridge().await;
    let at = Utc::now() - chrono::Duration::hours(2);
    let public = receive(&app, fridge, (ROTATEQ, "BOTH1", "2099-01-31", "vfc"), 10, at).await;
    let private = receive(&app, fridge, (ROTATEQ, "BOTH1", "2099-01-31", "private"), 10, at).await;
    assert_ne!(public, private);
    // The funding source picks (a private patient given public stock: borrowing) …
    let mut a = dose("BOTH1");
    (a.orc, a.eligibility, a.funding) = (Some("F1"), Some("V01"), Some("VXC50"));
    let ack = send(&app, &vxu("B1", &[a])).await;
    assert_eq!(msa(&ack), "MSA|AA|B1");
    assert!(
        errs(&ack).iter().any(|e| e.contains("|W|") && e.contains("borrowing")),
        "{ack}"
    );
    assert_eq!(
        (
            on_hand(&app, fridge, public).await,
            on_hand(&app, fridge, private).await
        ),
        (9, 10)
    );
    // … else the eligibility does.
    let mut b = dose("BOTH1");
    (b.orc, b.eligibility, b.funding) = (Some("F2"), Some("V01"), None);
    send(&app, &vxu("B2", &[b])).await;
    let mut c = dose("BOTH1");
    (c.orc, c.eligibility, c.funding) = (Some("F3"), Some("V03"), None);
    send(&app, &vxu("B3", &[c])).await;
    assert_eq!(
        (
            on_hand(&app, fridge, public).await,
            on_hand(&app, fridge, private).await
        ),
        (8, 9)
    );
    let list = app.get("/api/v1/locations/012345A/borrowing").await;
    let list = list["borrowing"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (list[0]["eligibility"].as_str(), list[0]["stock_funding"].as_str()),
        (Some("V01"), Some("vfc"))
    );
    assert!(list[0]["reason"].is_null());
    let path = format!("/api/v1/borrowing/{}", list[0]["id"]);
    let (s, _) = app
        .send_as(&app.token, "PUT", &path, json!({"reason": "because"}))
        .await;
    assert_eq!(s, 400);
    let (s, out) = app
        .send_as(&app.token, "PUT", &path, json!({"reason": "private_order_delayed"}))
        .await;
    assert_eq!((s, out["reason"].as_str()), (200, Some("private_order_delayed")));
}

async fn unmatched_doses_wait_in_the_exceptions_queue_and_flagged_lots_still_decrement(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    let at = Utc::now() - chrono::Duration::hours(2);
    let empty = receive(&app, fridge, (MMR, "EMPTY1", "2099-01-31", "vfc"), 1, at).await;
    let (s, _) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/wastage",
            json!({"unit_id": fridge, "lot_id": empty, "doses": 1, "reason_code": "12A"}),
        )
        .await;
    assert_eq!(s, 201);
    let mut unknown = dose("NOPE42");
    unknown.orc = Some("U1");
    let mut none_left = dose("EMPTY1");
    (none_left.orc, none_left.vaccine) = (Some("U2"), "03^MMR^CVX");
    let ack = send(&app, &vxu("E1", &[unknown, none_left])).await;
    assert_eq!(msa(&ack), "MSA|AA|E1", "queued doses are recorded: {ack}");
    let warnings = errs(&ack);
    assert_eq!(warnings.len(), 2, "{ack}");
    assert!(
        warnings[0].contains("RXA^1^15") && warnings[0].contains("|W|") && warnings[0].contains("NOPE42"),
        "{ack}"
    );
    assert!(
        warnings[1].contains("RXA^2") && warnings[1].contains("no doses"),
        "{ack}"
    );

    let queue = app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    let queue = queue["exceptions"].as_array().unwrap().clone();
    let reasons: Vec<&str> = queue.iter().map(|x| x["reason_code"].as_str().unwrap()).collect();
    assert_eq!(reasons, vec!["unknown_lot", "no_stock"]);
    assert_eq!(
        (queue[0]["lot"].as_str(), queue[0]["message_id"].as_str()),
        (Some("NOPE42"), Some("E1"))
    );
    // Someone finds the dose came from X123456: resolving decrements it.
    let path = format!("/api/v1/decrement-exceptions/{}/resolve", queue[0]["id"]);
    let (s, out) = app.send_as(&app.token, "POST", &path, json!({"lot_id": lot})).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(on_hand(&app, fridge, lot).await, 9);
    let (s, _) = app.send_as(&app.token, "POST", &path, json!({"lot_id": lot})).await;
    assert_eq!(s, 409, "resolved once");
    let open = app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    assert_eq!(open["exceptions"].as_array().unwrap().len(), 1);

    // Expired and held lots: the dose left the shelf, so it decrements, and it is flagged.
    let old = receive(&app, fridge, (MMR, "OLD1", "2020-01-31", "vfc"), 2, at).await;
    let (s, _) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/holds",
            json!({"unit_id": fridge, "lot_id": lot, "reason": "manufacturer recall notice"}),
        )
        .await;
    assert_eq!(s, 201);
    let mut from_old = dose("OLD1");
    (from_old.orc, from_old.vaccine) = (Some("X1"), "03^MMR^CVX");
    let mut from_held = dose("X123456");
    from_held.orc = Some("X2");
    let ack = send(&app, &vxu("E2", &[from_old, from_held])).await;
    assert_eq!(msa(&ack), "MSA|AA|E2");
    assert!(
        ack.contains("expired on 2020-01-31") && ack.contains("on hold"),
        "{ack}"
    );
    assert_eq!(
        (on_hand(&app, fridge, old).await, on_hand(&app, fridge, lot).await),
        (1, 8)
    );
    assert_eq!(line(&app, fridge, lot).await["status"], "on_hold");
    let review = app.get("/api/v1/locations/012345A/revaccination-review").await;
    let why: Vec<String> = review["doses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["why"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(why, vec!["expired_lot", "lot_on_hold"]);
}

async fn malformed_messages_get_ae_or_ar_and_change_nothing(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    let good = vxu("BAD1", &[dose("X123456")]);
    let mut undated = dose("X123456");
    undated.date = "2025-03-10".into();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "PID|1||X\rRXA|0|1|20250310".into(),
            "MSA|AR|",
            "|100^Segment sequence error^HL70357|E|",
        ),
        (
            good.replace("VXU^V04^VXU_V04", "ADT^A08^ADT_A01"),
            "MSA|AR|BAD1",
            "|MSH^1^9|200^",
        ),
        (good.replace("|BAD1|P|", "||P|"), "MSA|AR|", "|MSH^1^10|101^"),
        (vxu("BAD1", &[undated]), "MSA|AE|BAD1", "|RXA^1^3|102^Data type error"),
        (
            good.replace("116^Rotavirus, pentavalent^CVX", ""),
            "MSA|AE|BAD1",
            "|RXA^1^5|101^Required field missing",
        ),
        (
            good.replace("PID|1||MRN4471^^^PEDSEHR^MR", "PID|1||"),
            "MSA|AE|BAD1",
            "|PID^1^3|101^",
        ),
        (
            good.replace("|CP|A", "|XX|A"),
            "MSA|AE|BAD1",
            "|RXA^1^20|103^Table value not found",
        ),
        (
            good.replace("^^^012345A|", "^^^NOWHERE|"),
            "MSA|AE|BAD1",
            "|RXA^1^11|204^",
        ),
    ];
    for (body, want_msa, want_err) in cases {
        let ack = send(&app, &body).await;
        assert!(msa(&ack).starts_with(want_msa), "{want_msa} for:\n{body}\ngot:\n{ack}");
        assert!(
            errs(&ack).iter().any(|e| e.contains(want_err)),
            "{want_err} for:\n{body}\ngot:\n{ack}"
        );
    }
    assert_eq!(on_hand(&app, fridge, lot).await, 10, "nothing changed");
    // Fixed and sent again under the same control id, it is taken.
    assert_eq!(msa(&send(&app, &good).await), "MSA|AA|BAD1");
    assert_eq!(on_hand(&app, fridge, lot).await, 9);
    let (s, _) = post(&app, "not-a-token", &good).await;
    assert_eq!(s, 401);
}

async fn a_clinic_cannot_report_doses_for_another_pin(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    app.create_location("067890", "A").await;
    let theirs = app.create_unit("067890A", "Their fridge", "refrigerator").await;
    let body = json!({"unit_id": theirs, "lines": [{"ndc": ROTATEQ, "lot": "X123456", "expires_on": "2099-01-31", "funding": "vfc", "doses": 10}]});
    assert_eq!(
        app.send_as(&app.token, "POST", "/api/v1/locations/067890A/receipts", body)
            .await
            .0,
        201
    );
    let clinic = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "Bayview EHR"]);
    let mut foreign = dose("X123456");
    foreign.facility = "067890A";
    let (s, ack) = post(&app, &clinic, &vxu("S1", &[dose("X123456"), foreign])).await;
    assert_eq!(s, 200);
    assert!(msa(&ack).starts_with("MSA|AE|S1"), "{ack}");
    // Another PIN's facility gets word for word what a facility that does not exist gets.
    let mut unknown = dose("X123456");
    (unknown.facility, unknown.orc) = ("099999Z", Some("ORD-U"));
    let (_, other) = post(&app, &clinic, &vxu("S9", &[unknown])).await;
    let text = |ack: &str| {
        errs(ack).iter().find_map(|e| {
            let at = e.find("is not a registered VFC location for this sender")?;
            Some(e[at..].split('|').next().unwrap_or_default().to_string())
        })
    };
    assert_eq!(text(&ack), text(&other), "{ack}\n{other}");
    assert!(text(&ack).is_some(), "{ack}");
    assert_eq!(on_hand(&app, fridge, lot).await, 9, "its own dose is recorded");
    let inv = app.get("/api/v1/locations/067890A/inventory").await;
    assert_eq!(inv["lots"][0]["on_hand"], 10);
    // The JSON path is scoped the same way.
    let dose_json =
        json!({"doses": [{"patient_id": "P1", "cvx": "116", "lot": "X123456", "administered_on": "2026-01-05"}]});
    let (s, _) = app
        .send_as(
            &clinic,
            "POST",
            "/api/v1/locations/067890A/administrations",
            dose_json.clone(),
        )
        .await;
    assert_eq!(s, 404);
    // A registered EHR facility id names the location.
    let (s, _) = app
        .send_as(
            &clinic,
            "PUT",
            "/api/v1/locations/012345A/facility-ids",
            json!({"facility_ids": ["bayview-main"]}),
        )
        .await;
    assert_eq!(s, 200);
    let mut named = dose("X123456");
    named.facility = "BAYVIEW-MAIN";
    named.orc = Some("ORD-2");
    let (_, ack) = post(&app, &clinic, &vxu("S2", &[named])).await;
    assert_eq!(msa(&ack), "MSA|AA|S2", "{ack}");
    assert_eq!(on_hand(&app, fridge, lot).await, 8);
}

async fn mllp_frames_round_trip_for_allowed_senders_only(db: Database) {
    let app = TestApp::spawn_with(
        db,
        Broker::Embedded,
        &[
            ("VFC_HL7_MLLP_ADDR", "127.0.0.1:0"),
            ("VFC_HL7_MLLP_ALLOW", "127.0.0.1=012345A"),
        ],
    )
    .await;
    let addr = format!("127.0.0.1:{}", app.mllp_port.expect("the MLLP port in ports.json"));
    let (fridge, lot) = stocked(&app).await;
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    for (i, control) in ["L1", "L2"].iter().enumerate() {
        let mut d = dose("X123456");
        d.orc = Some(if i == 0 { "M-1" } else { "M-2" });
        let mut framed = vec![0x0B];
        framed.extend(vxu(control, &[d]).as_bytes());
        framed.extend([0x1C, 0x0D]);
        // Split across writes: framing, not packets, delimits a message.
        // (The unit tests split frames byte by byte; here two writes, sent as they are.)
        let (a, b) = framed.split_at(framed.len() / 2);
        conn.write_all(a).await.unwrap();
        conn.flush().await.unwrap();
        conn.write_all(b).await.unwrap();
        let ack = read_frame(&mut conn).await.expect("an ACK frame");
        assert_eq!(msa(&ack), format!("MSA|AA|{control}"), "{ack}");
    }
    assert_eq!(on_hand(&app, fridge, lot).await, 8);

    // From an address not on the list (127.0.0.2 is loopback too): closed without an answer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut framed = vec![0x0B];
    framed.extend(vxu("L3", &[dose("X123456")]).as_bytes());
    framed.extend([0x1C, 0x0D]);
    let _ = other.write_all(&framed).await;
    assert_eq!(
        read_frame(&mut other).await,
        Err(Ended::Closed),
        "closed without an answer"
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 8);
    assert!(app.log().contains("not on VFC_HL7_MLLP_ALLOW"));
}

/// How a connection ended without a whole frame.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The service closed it (or reset it).
    Closed,
    /// Nothing came for 10 s.
    Silent,
}

async fn read_frame(conn: &mut tokio::net::TcpStream) -> Result<String, Ended> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
            Err(_) => return Err(Ended::Silent),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Ended::Closed),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(&[0x1C, 0x0D]) {
            assert_eq!(buf[0], 0x0B);
            return Ok(String::from_utf8(buf[1..buf.len() - 2].to_vec()).unwrap());
        }
    }
}

/// Today where the clinic is (the test locations are in New York): a date-only dose of today,
/// reported at any hour of the day.
fn today_in_new_york() -> String {
    Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m-%d")
        .to_string()
}

async fn json_doses_follow_the_same_rules(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    let body = json!({"doses": [
        {"dose_id": "J1", "dose_id_namespace": "EHR", "patient_id": "P1", "cvx": "116", "lot": "X123456", "administered_on": today_in_new_york(), "eligibility": "V02"},
        {"patient_id": "P2", "ndc": "0006-4047-41", "lot": "X123456", "administered_at": Utc::now().to_rfc3339(), "historical": true},
        {"patient_id": "P3", "cvx": "116", "lot": "X123456"}
    ]});
    let (s, out) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/administrations",
            body.clone(),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let outcomes: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["decremented", "not_counted", "rejected"]);
    assert!(
        out["results"][2]["error"].as_str().unwrap().contains("administered_at"),
        "{out}"
    );
    let (_, again) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/administrations", body)
        .await;
    assert_eq!(again["results"][0]["outcome"], "duplicate");
    assert_eq!(on_hand(&app, fridge, lot).await, 9);
}

/// docs/domain.md, "Doses administered over HL7": an add, an update to another lot and a delete
/// of one dose, made in that order (MSH-7), leave the stock as it was in whatever order they
/// arrive — a delete that comes first is kept, and the add and update made before it change
/// nothing when they come.
async fn an_add_an_update_and_a_delete_in_any_order_leave_the_stock_as_it_was(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    let other = receive(
        &app,
        fridge,
        (ROTATEQ, "Y999", "2099-01-31", "vfc"),
        5,
        Utc::now() - chrono::Duration::hours(2),
    )
    .await;
    let orders: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for (n, order) in orders.iter().enumerate() {
        let orc: &'static str = Box::leak(format!("ORD-ORDER-{n}").into_boxed_str());
        let made = |i: usize| {
            let (lot, action) = [("X123456", "A"), ("Y999", "U"), ("Y999", "D")][i];
            let mut d = dose(lot);
            (d.orc, d.action) = (Some(orc), action);
            // Made a minute apart, in the order add, update, delete.
            let sent = format!("2025031009{:02}00-0500", 30 + i);
            vxu(&format!("O{n}-{i}"), &[d]).replacen("20250310093000-0500", &sent, 1)
        };
        for i in order {
            let ack = send(&app, &made(*i)).await;
            assert!(msa(&ack).starts_with("MSA|AA"), "order {order:?}, report {i}: {ack}");
        }
        assert_eq!(
            (on_hand(&app, fridge, lot).await, on_hand(&app, fridge, other).await),
            (10, 5),
            "arrived in the order {order:?} (0 add, 1 update, 2 delete)"
        );
    }
}

on_both_databases!(
    an_add_an_update_and_a_delete_in_any_order_leave_the_stock_as_it_was,
    a_dose_decrements_once_however_often_it_is_sent,
    only_doses_given_here_decrement_and_corrections_move_them,
    funding_and_eligibility_pick_the_stock_and_borrowing_is_recorded,
    unmatched_doses_wait_in_the_exceptions_queue_and_flagged_lots_still_decrement,
    malformed_messages_get_ae_or_ar_and_change_nothing,
    a_clinic_cannot_report_doses_for_another_pin,
    mllp_frames_round_trip_for_allowed_senders_only,
    json_doses_follow_the_same_rules,
    another_pins_message_with_the_same_id_neither_swallows_nor_reads_ours,
    a_location_code_cannot_be_registered_as_another_locations_facility_id,
    a_dose_resent_as_historical_does_not_undo_its_decrement,
    a_body_with_two_messages_is_refused_whole,
    a_training_message_is_refused,
    a_dose_dated_in_the_future_is_an_error_and_a_message_without_doses_is_accepted,
    a_queued_dose_cannot_be_assigned_to_a_lot_of_another_vaccine,
    a_dismissed_exception_stays_dismissed_when_the_history_comes_again,
    an_update_that_fixes_the_eligibility_takes_the_borrowing_record_away,
    a_lot_whose_stored_funding_cannot_be_read_gets_ae_naming_the_row_not_a_resend,
);

/// 012345's EHR and another PIN's (067890) with a location each, and 012345A's fridge stocked.
struct TwoSenders {
    app: TestApp,
    fridge: i64,
    lot: i64,
    mine: String,
    theirs: String,
}

async fn two_senders(db: Database) -> TwoSenders {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    app.create_location("067890", "A").await;
    let mine = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "Bayview EHR"]);
    let theirs = app.create_token(&["--role", "clinic", "--pin", "067890", "--name", "Other EHR"]);
    TwoSenders {
        app,
        fridge,
        lot,
        mine,
        theirs,
    }
}

async fn another_pins_message_with_the_same_id_neither_swallows_nor_reads_ours(db: Database) {
    let t = two_senders(db).await;
    let mut squat = dose("X123456");
    (squat.facility, squat.orc) = ("067890A", Some("Q-1"));
    let (_, their_ack) = post(&t.app, &t.theirs, &vxu("SAME1", &[squat])).await;
    let (_, ack) = post(&t.app, &t.mine, &vxu("SAME1", &[dose("X123456")])).await;
    assert_eq!(msa(&ack), "MSA|AA|SAME1", "{ack}");
    assert_ne!(ack, their_ack);
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 9);
}

async fn a_location_code_cannot_be_registered_as_another_locations_facility_id(db: Database) {
    let t = two_senders(db).await;
    let (s, body) = t
        .app
        .send_as(
            &t.theirs,
            "PUT",
            "/api/v1/locations/067890A/facility-ids",
            json!({"facility_ids": ["012345A"]}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reads as a location code"),
        "{body}"
    );
}

async fn a_dose_resent_as_historical_does_not_undo_its_decrement(db: Database) {
    let t = two_senders(db).await;
    assert_eq!(msa(&send(&t.app, &vxu("G1", &[dose("X123456")])).await), "MSA|AA|G1");
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 9);
    // Only U or D corrects a dose: the same dose resent as historical (action A) changes nothing.
    let mut hist = dose("X123456");
    hist.source = "01";
    assert_eq!(msa(&send(&t.app, &vxu("H1", &[hist])).await), "MSA|AA|H1");
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 9);
}

async fn a_body_with_two_messages_is_refused_whole(db: Database) {
    let t = two_senders(db).await;
    let two = format!("{}{}", vxu("TWO1", &[dose("X123456")]), vxu("TWO2", &[dose("X123456")]));
    let ack = send(&t.app, &two).await;
    assert!(
        msa(&ack).starts_with("MSA|AR|TWO1") && ack.contains("second MSH"),
        "{ack}"
    );
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 10);
}

async fn a_training_message_is_refused(db: Database) {
    let t = two_senders(db).await;
    let ack = send(&t.app, &vxu("T1", &[dose("X123456")]).replace("|T1|P|", "|T1|T|")).await;
    assert!(
        msa(&ack).starts_with("MSA|AR|") && ack.contains("|MSH^1^11|202^"),
        "{ack}"
    );
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 10);
}

async fn a_dose_dated_in_the_future_is_an_error_and_a_message_without_doses_is_accepted(db: Database) {
    let t = two_senders(db).await;
    let mut later = dose("X123456");
    (later.orc, later.date) = (Some("F-1"), "20991231".into());
    let ack = send(&t.app, &vxu("F1", &[later])).await;
    assert!(msa(&ack).starts_with("MSA|AE|F1") && ack.contains("future"), "{ack}");
    assert_eq!(msa(&send(&t.app, &vxu("NORXA", &[])).await), "MSA|AA|NORXA");
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 10);
}

async fn a_queued_dose_cannot_be_assigned_to_a_lot_of_another_vaccine(db: Database) {
    let t = two_senders(db).await;
    let mut stray = dose("NOPE9");
    stray.orc = Some("D-1");
    send(&t.app, &vxu("D1", &[stray])).await;
    let queue = t.app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    let id = queue["exceptions"][0]["id"].as_i64().unwrap();
    let mmr = receive(
        &t.app,
        t.fridge,
        (MMR, "MMR7", "2099-01-31", "vfc"),
        2,
        Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    let path = format!("/api/v1/decrement-exceptions/{id}/resolve");
    let (s, out) = t.app.send_as(&t.app.token, "POST", &path, json!({"lot_id": mmr})).await;
    assert_eq!(s, 400, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("CVX"), "{out}");
    assert_eq!(on_hand(&t.app, t.fridge, mmr).await, 2);
}

async fn a_dismissed_exception_stays_dismissed_when_the_history_comes_again(db: Database) {
    let t = two_senders(db).await;
    let mut stray = dose("NOPE9");
    stray.orc = Some("D-1");
    send(&t.app, &vxu("D1", &[stray.clone()])).await;
    let queue = t.app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    let id = queue["exceptions"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/decrement-exceptions/{id}/resolve");
    let (s, out) = t
        .app
        .send_as(
            &t.app.token,
            "POST",
            &path,
            json!({"dismiss": "private stock, not tracked"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(msa(&send(&t.app, &vxu("D2", &[stray])).await), "MSA|AA|D2");
    let queue = t.app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    assert_eq!(queue["exceptions"], json!([]), "{queue}");
}

async fn an_update_that_fixes_the_eligibility_takes_the_borrowing_record_away(db: Database) {
    let t = two_senders(db).await;
    let mut v01 = dose("X123456");
    (v01.orc, v01.eligibility) = (Some("B-1"), Some("V01"));
    send(&t.app, &vxu("B1", &[v01.clone()])).await;
    let borrowing = t.app.get("/api/v1/locations/012345A/borrowing").await;
    assert_eq!(borrowing["borrowing"].as_array().unwrap().len(), 1, "{borrowing}");
    (v01.action, v01.eligibility) = ("U", Some("V02"));
    assert_eq!(msa(&send(&t.app, &vxu("B2", &[v01])).await), "MSA|AA|B2");
    let borrowing = t.app.get("/api/v1/locations/012345A/borrowing").await;
    assert_eq!(borrowing["borrowing"], json!([]), "{borrowing}");
    assert_eq!(on_hand(&t.app, t.fridge, t.lot).await, 9, "moved, not taken twice");
}

async fn a_lot_whose_stored_funding_cannot_be_read_gets_ae_naming_the_row_not_a_resend(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let (fridge, lot) = stocked(&app).await;
    app.sql(&format!("UPDATE lots SET funding = 'grant' WHERE id = {lot}"))
        .await;
    let ack = send(&app, &vxu("BAD1", &[dose("X123456")])).await;
    assert!(msa(&ack).starts_with("MSA|AE|BAD1"), "{ack}");
    let err = errs(&ack);
    assert!(
        err.iter()
            .any(|e| e.contains(&format!("lots row {lot} cannot be read")) && e.contains("must correct")),
        "names the row and who fixes it, not a passing failure: {err:?}"
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 10, "nothing recorded");
    // Corrected, the same message is recorded: the refusal was not kept as its answer.
    app.sql(&format!("UPDATE lots SET funding = 'vfc' WHERE id = {lot}"))
        .await;
    assert_eq!(msa(&send(&app, &vxu("BAD1", &[dose("X123456")])).await), "MSA|AA|BAD1");
    assert_eq!(on_hand(&app, fridge, lot).await, 9);
}
