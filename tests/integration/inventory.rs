//! Inventory: receipts, on hand, holds from excursions with their determinations, exposure
//! across excursions and a transfer, reconciliation as of a time, transfers between PINs.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{Database, TestApp};
use crate::on_both_databases;

pub const ROTATEQ: &str = "00006-4047-41";
pub const MMR: &str = "00006-4681-00";

/// Receives `doses` of a lot into `unit` at `at`; the lot's id.
/// `lot` is (NDC, lot number, expiry, funding).
pub async fn receive(app: &TestApp, unit: i64, lot: (&str, &str, &str, &str), doses: i64, at: DateTime<Utc>) -> i64 {
    let (ndc, lot, expires, funding) = lot;
    let body = json!({"unit_id": unit, "received_at": at.to_rfc3339(),
        "lines": [{"ndc": ndc, "lot": lot, "expires_on": expires, "funding": funding, "doses": doses}]});
    let (status, out) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/receipts", body)
        .await;
    assert_eq!(status, 201, "{out}");
    out["events"][0]["lot_id"].as_i64().unwrap()
}

/// The inventory line of (unit, lot) at 012345A, empty ones included.
pub async fn line(app: &TestApp, unit: i64, lot: i64) -> Value {
    let inv = app.get("/api/v1/locations/012345A/inventory?include_empty=true").await;
    inv["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["unit_id"] == unit && l["lot_id"] == lot)
        .cloned()
        .unwrap_or_else(|| panic!("no line for unit {unit} lot {lot}: {inv}"))
}

pub async fn on_hand(app: &TestApp, unit: i64, lot: i64) -> i64 {
    line(app, unit, lot).await["on_hand"].as_i64().unwrap()
}

/// Publishes one batch of 5-minute readings of `serial` from `start`.
async fn publish(app: &TestApp, serial: &str, start: DateTime<Utc>, temps: &[f64]) {
    let readings: Vec<Value> = temps
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"ts": (start + Duration::minutes(5 * i as i64)).to_rfc3339(), "temp_c": t}))
        .collect();
    let mut p = app.publisher(&format!("pub-{serial}")).await;
    p.publish(
        &format!("vfc/loggers/{serial}/readings"),
        json!({ "readings": readings }).to_string(),
    )
    .await;
    p.wait_acked(1).await;
}

/// 5.0 °C, then `n` readings at `t`, then 5.0 again: out of range for 5 × n minutes.
fn out_of_range(n: usize, t: f64) -> Vec<f64> {
    std::iter::once(5.0)
        .chain(std::iter::repeat_n(t, n))
        .chain([5.0])
        .collect()
}

async fn holds_of(app: &TestApp, excursion: i64) -> Vec<Value> {
    app.get(&format!("/api/v1/excursions/{excursion}/holds")).await["holds"]
        .as_array()
        .unwrap()
        .clone()
}

async fn excursion_with_holds(app: &TestApp, unit: i64, n: usize) -> Value {
    app.eventually("the excursion meets a rule and its lots are held", || async {
        let list = app.get(&format!("/api/v1/excursions?unit={unit}")).await;
        let list = list["excursions"].as_array().unwrap().clone();
        // Readings this old page nobody (the late-page limit), but the rule was met all the same.
        match list.iter().find(|e| e["status"] == "closed") {
            Some(e) if list.len() == n && !holds_of(app, e["id"].as_i64().unwrap()).await.is_empty() => Ok(e.clone()),
            _ => Err(format!("{list:?}")),
        }
    })
    .await
}

fn review(determinations: Value) -> Value {
    json!({"reviewed_by": "Pat Primary, RN", "cause": "compressor failed", "corrective_action": "vaccine moved, unit repaired",
           "lot_determinations": determinations})
}

async fn an_excursion_holds_exactly_its_units_lots_and_exposure_follows_a_transfer(db: Database) {
    let app = TestApp::spawn(db, crate::harness::Broker::Embedded).await;
    let fridge = app.fridge().await;
    let second = app.create_unit("012345A", "Second refrigerator", "refrigerator").await;
    app.assign(
        second,
        json!({"serial": "LT-2", "reading_interval_s": 300, "from": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let now = Utc::now();
    let l1 = receive(
        &app,
        fridge,
        (ROTATEQ, "ROTA1", "2099-01-31", "vfc"),
        10,
        now - Duration::hours(48),
    )
    .await;
    let other = receive(
        &app,
        second,
        (MMR, "MMR1", "2099-01-31", "vfc"),
        5,
        now - Duration::hours(48),
    )
    .await;
    // Arrives after the excursion is over: never exposed to it.
    let later = receive(
        &app,
        fridge,
        (MMR, "MMR2", "2099-01-31", "private"),
        3,
        now - Duration::hours(1),
    )
    .await;

    // One dose, given during the excursion below: nothing left to hold when the rule is met.
    let used = receive(
        &app,
        fridge,
        (MMR, "USED1", "2099-01-31", "vfc"),
        1,
        now - Duration::hours(48),
    )
    .await;
    let at = now - Duration::hours(30) + Duration::minutes(20);
    let given = json!({"doses": [{"dose_id": "U1", "patient_id": "P-U1", "cvx": "03", "lot": "USED1", "administered_at": at.to_rfc3339()}]});
    let (status, body) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/administrations", given)
        .await;
    assert_eq!(
        (status, body["results"][0]["outcome"].as_str()),
        (200, Some("decremented")),
        "{body}"
    );

    // Excursion 1 in the fridge: 65 minutes at 9.5 °C meets the warm-60 rule.
    publish(&app, "LT-1", now - Duration::hours(30), &out_of_range(13, 9.5)).await;
    let ex1 = excursion_with_holds(&app, fridge, 1).await;
    let all = holds_of(&app, ex1["id"].as_i64().unwrap()).await;
    let held: Vec<&Value> = all.iter().filter(|h| h["ended_at"].is_null()).collect();
    assert_eq!(
        held.len(),
        1,
        "only the lot in the fridge during the excursion: {all:?}"
    );
    assert_eq!(held[0]["lot_id"], l1);
    // The lot used up during the excursion keeps a closed record; its dose is to be reviewed.
    let used_up = all
        .iter()
        .find(|h| h["lot_id"] == used)
        .expect("a record for the used-up lot");
    assert_eq!(used_up["outcome"], "used_up");
    let review_list = app.get("/api/v1/locations/012345A/revaccination-review").await;
    let listed = &review_list["doses"].as_array().unwrap()[0];
    assert_eq!(
        (listed["lot_id"].as_i64(), listed["why"][0].as_str()),
        (Some(used), Some("exposed")),
        "{review_list}"
    );
    // Held stock is not written off before the determination.
    let waste = json!({"unit_id": fridge, "lot_id": l1, "doses": 1, "reason_code": "7A"});
    let (status, body) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/wastage", waste)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(line(&app, fridge, l1).await["status"], "on_hold");
    assert_eq!(line(&app, second, other).await["status"], "usable");
    assert_eq!(line(&app, fridge, later).await["status"], "usable");
    let exposure = &line(&app, fridge, l1).await["exposure"];
    assert_eq!(exposure["above_range_minutes"], 65.0, "{exposure}");

    // Held stock cannot travel, and the review needs a determination for the held lot.
    let transfer = json!({"from_unit_id": fridge, "to_unit_id": second, "lines": [{"lot_id": l1, "doses": 4}],
                          "reason": "balance stock", "transferred_at": (now - Duration::hours(20)).to_rfc3339()});
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/transfers",
            transfer.clone(),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let path = format!("/api/v1/excursions/{}/review", ex1["id"]);
    let (status, body) = app.send_as(&app.token, "POST", &path, review(json!([]))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("ROTA1"), "{body}");
    let (status, body) = app
        .send_as(
            &app.token,
            "POST",
            &path,
            review(json!([{"lot_id": l1, "determination": "viable", "case_number": "MSD-1"}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(line(&app, fridge, l1).await["status"], "usable", "viable: released");
    assert_eq!(on_hand(&app, fridge, l1).await, 10);

    // 4 doses move to the second fridge 20 h ago; that fridge then has its own excursion.
    let (status, body) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/transfers", transfer)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "completed");
    publish(&app, "LT-2", now - Duration::hours(10), &out_of_range(14, 10.5)).await;
    let ex2 = excursion_with_holds(&app, second, 1).await;
    let mut held: Vec<i64> = holds_of(&app, ex2["id"].as_i64().unwrap())
        .await
        .iter()
        .map(|h| h["lot_id"].as_i64().unwrap())
        .collect();
    held.sort();
    assert_eq!(held, vec![l1, other]);

    // The transferred doses carry both excursions; the fridge's own stock only the first.
    let moved = line(&app, second, l1).await;
    let e = &moved["exposure"];
    assert_eq!(
        (e["excursions"].as_i64(), e["above_range_minutes"].as_f64()),
        (Some(2), Some(135.0)),
        "{e}"
    );
    assert_eq!(e["max_c"], 10.5);
    let units: Vec<i64> = e["by_unit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit_id"].as_i64().unwrap())
        .collect();
    assert_eq!(units, vec![fridge.min(second), fridge.max(second)]);
    assert_eq!(line(&app, fridge, l1).await["exposure"]["excursions"], 1);

    // Not viable: the held doses are wasted as 7A (too warm); the ledger says so.
    let path = format!("/api/v1/excursions/{}/review", ex2["id"]);
    let dets = json!([{"lot": "rota1", "funding": "vfc", "determination": "not_viable", "action": "waste"},
                      {"lot_id": other, "determination": "viable"}]);
    let (status, body) = app.send_as(&app.token, "POST", &path, review(dets)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(on_hand(&app, second, l1).await, 0);
    assert_eq!(on_hand(&app, second, other).await, 5);
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{l1}/ledger")).await;
    let wasted = ledger["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "wastage")
        .expect("a wastage event");
    assert_eq!(
        (wasted["doses"].as_i64(), wasted["reason_code"].as_str()),
        (Some(-4), Some("7A"))
    );
    let hold = &holds_of(&app, ex2["id"].as_i64().unwrap()).await;
    assert!(hold.iter().any(|h| h["outcome"] == "wasted") && hold.iter().any(|h| h["outcome"] == "released"));
}

async fn reconciliation_as_of_a_time_is_not_disturbed_by_later_doses(db: Database) {
    let app = TestApp::spawn(db, crate::harness::Broker::Embedded).await;
    let fridge = app.fridge().await;
    let now = Utc::now();
    let lot = receive(
        &app,
        fridge,
        (ROTATEQ, "REC1", "2099-01-31", "vfc"),
        10,
        now - Duration::hours(3),
    )
    .await;
    let dose = |id: &str, at: DateTime<Utc>| json!({"dose_id": id, "patient_id": format!("P-{id}"), "cvx": "116", "lot": "REC1", "administered_at": at.to_rfc3339()});
    let post = |body: Value| app.send_as(&app.token, "POST", "/api/v1/locations/012345A/administrations", body);
    // Given before the count, and one given after it but reported before the count is entered.
    let (s, out) =
        post(json!({"doses": [dose("A", now - Duration::minutes(90)), dose("B", now - Duration::minutes(45))]})).await;
    assert_eq!(s, 200, "{out}");
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "decremented"),
        "{out}"
    );

    // Counted an hour ago: 8 on the shelf where the ledger held 9 then (one vial broke unseen).
    let count = |counted: i64, reason: Option<&str>| {
        json!({"as_of": (now - Duration::minutes(60)).to_rfc3339(), "counted_by": "Pat",
               "counts": [{"unit_id": fridge, "lot_id": lot, "counted": counted, "reason": reason}]})
    };
    let path = "/api/v1/locations/012345A/reconciliations";
    let (s, out) = app.send_as(&app.token, "POST", path, count(8, None)).await;
    assert_eq!(s, 400, "a difference needs its reason: {out}");
    let row = json!({"unit_id": fridge, "lot_id": lot, "counted": 8, "reason": "x"});
    let twice = json!({"as_of": (now - Duration::minutes(60)).to_rfc3339(), "counted_by": "Pat", "counts": [row, row]});
    let (s, out) = app.send_as(&app.token, "POST", path, twice).await;
    assert_eq!(s, 400, "one line per lot and unit: {out}");
    let (s, out) = app
        .send_as(
            &app.token,
            "POST",
            path,
            json!({"as_of": now.to_rfc3339(), "counted_by": "Pat", "counts": []}),
        )
        .await;
    assert_eq!(s, 400, "every lot on hand is counted: {out}");
    let (s, out) = app
        .send_as(
            &app.token,
            "POST",
            path,
            count(8, Some("12A dropped vial found in bin")),
        )
        .await;
    assert_eq!(s, 201, "{out}");
    assert_eq!(
        (
            out["lines"][0]["expected"].as_i64(),
            out["lines"][0]["adjustment"].as_i64()
        ),
        (Some(9), Some(-1))
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 7, "10 − A − B − the adjustment");

    // Reported after the count: it decrements once and the count is not redone.
    let (s, out) = post(json!({"doses": [dose("C", now - Duration::minutes(30))]})).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(on_hand(&app, fridge, lot).await, 6);
    // Given before the count, reported only now: the count had left it out already, so its
    // adjustment gives the dose back instead of counting it twice.
    let (s, out) = post(json!({"doses": [dose("E", now - Duration::minutes(75))]})).await;
    assert_eq!(
        (s, out["results"][0]["outcome"].as_str()),
        (200, Some("decremented")),
        "{out}"
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 6, "the shelf still holds 6");
    let list = app.get(path).await;
    assert_eq!(list["reconciliations"].as_array().unwrap().len(), 1);
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{lot}/ledger")).await;
    let kinds: Vec<&str> = ledger["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "receipt",
            "administration",
            "administration",
            "adjustment",
            "adjustment",
            "administration",
            "administration"
        ],
        "in time order: the late dose E before the count, its settling adjustment at the count"
    );
}

async fn a_dose_dated_minutes_ahead_by_a_fast_clock_is_behind_a_count_taken_now(db: Database) {
    let app = TestApp::spawn(db, crate::harness::Broker::Embedded).await;
    let fridge = app.fridge().await;
    let lot = receive(
        &app,
        fridge,
        (ROTATEQ, "FAST1", "2099-01-31", "vfc"),
        10,
        Utc::now() - Duration::hours(1),
    )
    .await;
    // The EHR's clock runs five minutes fast.
    let ahead = (Utc::now() + Duration::minutes(5)).to_rfc3339();
    let (s, out) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/administrations",
            json!({"doses": [{"dose_id": "F-1", "patient_id": "P-F", "cvx": "116", "lot": "FAST1", "administered_at": ahead}]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["results"][0]["outcome"], "decremented", "{out}");
    // Nine on the shelf, counted now: as expected, no reason needed.
    let (s, out) = app
        .send_as(
            &app.token,
            "POST",
            "/api/v1/locations/012345A/reconciliations",
            json!({"as_of": Utc::now().to_rfc3339(), "counted_by": "Pat",
                   "counts": [{"unit_id": fridge, "lot_id": lot, "counted": 9}]}),
        )
        .await;
    assert_eq!(s, 201, "{out}");
    assert_eq!(out["lines"][0]["adjustment"], 0, "{out}");
}

async fn stock_never_goes_negative_and_mistakes_are_reversed_not_edited(db: Database) {
    let app = TestApp::spawn(db, crate::harness::Broker::Embedded).await;
    let fridge = app.fridge().await;
    let lot = receive(&app, fridge, (ROTATEQ, "NEG1", "2099-01-31", "vfc"), 3, Utc::now()).await;
    let waste = |doses: i64, code: &str| json!({"unit_id": fridge, "lot_id": lot, "doses": doses, "reason_code": code});
    let path = "/api/v1/locations/012345A/wastage";
    let (s, out) = app.send_as(&app.token, "POST", path, waste(4, "12A")).await;
    assert_eq!(s, 409, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("only 3"), "{out}");
    let (s, out) = app.send_as(&app.token, "POST", path, waste(1, "99")).await;
    assert_eq!(s, 400, "{out}");
    let (s, out) = app.send_as(&app.token, "POST", path, waste(2, "12a")).await;
    assert_eq!(s, 201, "{out}");
    assert_eq!(on_hand(&app, fridge, lot).await, 1);
    let event = out["events"][0]["event_id"].as_i64().unwrap();
    let rev = format!("/api/v1/locations/012345A/stock-events/{event}/reverse");
    let (s, out) = app
        .send_as(&app.token, "POST", &rev, json!({"reason": "entered twice"}))
        .await;
    assert_eq!(s, 201, "{out}");
    assert_eq!(on_hand(&app, fridge, lot).await, 3);
    let (s, _) = app.send_as(&app.token, "POST", &rev, json!({"reason": "again"})).await;
    assert_eq!(s, 409, "a mistake is reversed once");
    let ledger = app.get(&format!("/api/v1/locations/012345A/lots/{lot}/ledger")).await;
    let events = ledger["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "receipt, wastage, reversal: nothing edited");
    assert_eq!(events[1]["reversed_by"], events[2]["id"]);

    // A different expiry for a known lot is a label to check, not a second lot.
    let body = json!({"unit_id": fridge, "lines": [{"ndc": ROTATEQ, "lot": "neg1", "expires_on": "2098-01-31", "funding": "vfc", "doses": 1}]});
    let (s, out) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/receipts", body)
        .await;
    assert_eq!(s, 400, "{out}");
    // Expiring within 90 days is flagged; expired stock is not usable.
    let soon = (Utc::now() + Duration::days(30)).format("%Y-%m-%d").to_string();
    let gone = (Utc::now() - Duration::days(2)).format("%Y-%m-%d").to_string();
    let a = receive(&app, fridge, (MMR, "SOON", &soon, "vfc"), 2, Utc::now()).await;
    let b = receive(&app, fridge, (MMR, "GONE", &gone, "vfc"), 2, Utc::now()).await;
    assert_eq!(line(&app, fridge, a).await["status"], "expiring");
    assert_eq!(line(&app, fridge, b).await["status"], "expired");
    let expiring = app.get("/api/v1/inventory?status=expiring").await;
    assert_eq!(expiring["lots"].as_array().unwrap().len(), 1, "{expiring}");
}

async fn a_transfer_to_another_pin_waits_for_the_state(db: Database) {
    let app = TestApp::spawn(db, crate::harness::Broker::Embedded).await;
    let fridge = app.fridge().await;
    app.create_location("067890", "").await;
    let theirs = app.create_unit("067890", "Their fridge", "refrigerator").await;
    let lot = receive(&app, fridge, (ROTATEQ, "XFER1", "2099-01-31", "vfc"), 10, Utc::now()).await;
    let clinic = app.create_token(&["--role", "clinic", "--pin", "012345", "--name", "clinic"]);
    let body = json!({"from_unit_id": fridge, "to_location": "067890", "lines": [{"lot_id": lot, "doses": 3}], "reason": "they ran out"});
    let (s, t) = app
        .send_as(&clinic, "POST", "/api/v1/locations/012345A/transfers", body)
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["status"], "pending");
    assert_eq!(on_hand(&app, fridge, lot).await, 10, "nothing moves before approval");
    let approve = format!("/api/v1/transfers/{}/approve", t["id"]);
    let (s, _) = app.send_as(&clinic, "POST", &approve, json!({})).await;
    assert_eq!(s, 403, "a clinic cannot approve");
    let (s, t) = app.send_as(&app.token, "POST", &approve, json!({})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["to_unit_id"].as_i64()),
        (Some("completed"), Some(theirs))
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 7);
    let (s, _) = app.get_as(&clinic, "/api/v1/locations/067890/inventory").await;
    assert_eq!(s, 404, "the sending clinic does not see the other PIN's stock");
    let theirs_inv = app.get("/api/v1/locations/067890/inventory").await;
    assert_eq!(theirs_inv["lots"][0]["on_hand"], 3);
}

on_both_databases!(
    an_excursion_holds_exactly_its_units_lots_and_exposure_follows_a_transfer,
    reconciliation_as_of_a_time_is_not_disturbed_by_later_doses,
    a_dose_dated_minutes_ahead_by_a_fast_clock_is_behind_a_count_taken_now,
    stock_never_goes_negative_and_mistakes_are_reversed_not_edited,
    a_transfer_to_another_pin_waits_for_the_state,
);

async fn cdc_code_files_load_with_vfc_catalog_import(db: Database) {
    let app = TestApp::spawn(db, crate::harness::Broker::Embedded).await;
    // CDC's CVX file is UTF-16 with a byte-order mark; the NDC tables are pipe-delimited with a header.
    let cvx = "316|RSV, bivalent, protein subunit RSVpreF, diluted|respiratory syncytial virus vaccine||Active|0|False|2023/08/21\r\n";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(cvx.encode_utf16().flat_map(u16::to_le_bytes));
    let cvx_file = app.dir.path().join("cvx.txt");
    std::fs::write(&cvx_file, bytes).unwrap();
    let ndc_file = app.dir.path().join("ndc_sale.txt");
    std::fs::write(
        &ndc_file,
        "SaleNDC11|UseNDC11|SaleProprName|CVX Code|MVX Code\n0069-0344-10|0069-0344-01|Abrysvo|316|PFR\n",
    )
    .unwrap();
    let out = app.cli(&[
        "catalog",
        "import",
        "--cvx",
        cvx_file.to_str().unwrap(),
        "--ndc",
        ndc_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("cvx.txt: 1 rows stored"), "{said}");
    let products = app.get("/api/v1/catalog/products").await;
    let abrysvo = products["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ndc"] == "00069-0344-10")
        .unwrap_or_else(|| panic!("{products}"));
    assert_eq!(
        (abrysvo["cvx"].as_str(), abrysvo["use_ndcs"][0].as_str()),
        (Some("316"), Some("00069-0344-01"))
    );
    // A dose reported by its unit-of-use NDC finds stock received under the unit of sale.
    let fridge = app.fridge().await;
    let lot = receive(
        &app,
        fridge,
        ("00069-0344-10", "RSV1", "2099-01-31", "private"),
        2,
        Utc::now() - Duration::hours(1),
    )
    .await;
    let dose = json!({"doses": [{"patient_id": "P1", "ndc": "0069-0344-01", "lot": "rsv1", "administered_at": Utc::now().to_rfc3339()}]});
    let (s, out) = app
        .send_as(&app.token, "POST", "/api/v1/locations/012345A/administrations", dose)
        .await;
    assert_eq!(
        (s, out["results"][0]["outcome"].as_str()),
        (200, Some("decremented")),
        "{out}"
    );
    assert_eq!(on_hand(&app, fridge, lot).await, 1);
    // The OpenAPI document carries the request bodies.
    let doc = app.openapi().await;
    for path in [
        "/api/v1/locations/{code}/receipts",
        "/api/v1/locations/{code}/reconciliations",
        "/api/v1/hl7",
    ] {
        assert!(doc["paths"][path]["post"]["requestBody"].is_object(), "{path}");
    }
}

mod catalog {
    use super::*;
    on_both_databases!(cdc_code_files_load_with_vfc_catalog_import);
}
