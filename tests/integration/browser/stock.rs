//! A clinic keeping its stock by hand in the browser: a receipt with the product found by part
//! of its NDC, wastage with its reason code, the count sheet, an unmatched dose resolved, a
//! borrowing record completed, a transfer; and a session that expired on the way.

use fantoccini::Locator;
use serde_json::Value;

use super::flows::{code, sign_up};
use super::Browser;
use crate::harness::{Broker, Database, TestApp};

const CLINIC: &str = "val.vance@example.org";

/// What a field holds now.
async fn value_of(b: &Browser, name: &str) -> String {
    b.c.find(Locator::Css(&format!("[name=\"{name}\"]")))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// 012345A's stock line of lot `lot`, from the API.
async fn line(app: &TestApp, lot: &str) -> Value {
    let inv = app.get("/api/v1/locations/012345A/inventory").await;
    inv["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot"] == lot)
        .cloned()
        .unwrap_or_else(|| panic!("lot {lot} in {inv}"))
}

/// Receives 10 doses of RotaTeq lot `lot` through the receipt page.
async fn receive_by_hand(b: &Browser, lot: &str, product: &str) {
    b.go("/locations/012345A/receipts").await;
    b.fill("product", product).await;
    b.fill("lot", lot).await;
    b.set_value("expires_on", "2099-01-31").await;
    b.choose("funding", "vfc").await;
    b.fill("doses", "10").await;
    b.press("Receive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_receives_stock_by_typing_part_of_its_ndc_wastes_two_doses_and_counts_while_doses_are_given() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let b = Browser::open(&app).await;
    sign_up(&app, &b, CLINIC, "vfc-coordinator", &["--location", "012345A"]).await;

    // "RotaTeq" is two products (two package sizes): the page says which, and keeps the rest.
    receive_by_hand(&b, "HAND1", "RotaTeq").await;
    let page = b.text().await;
    assert!(page.contains("2 products match \"RotaTeq\""), "{page}");
    assert_eq!(value_of(&b, "lot").await, "HAND1");
    assert_eq!(value_of(&b, "doses").await, "10");
    b.screenshot("receipt-refused").await;
    b.fill("product", "4047-41").await;
    b.press("Receive").await;
    assert!(
        b.path().await.starts_with("/locations/012345A/inventory?lot="),
        "{}",
        b.path().await
    );
    assert!(b.text().await.contains("The receipt is recorded"), "{}", b.text().await);
    let lot = line(&app, "HAND1").await;
    assert_eq!(
        (lot["ndc"].as_str(), lot["on_hand"].as_i64()),
        (Some(crate::inventory::ROTATEQ), Some(10))
    );
    let stock = format!("{unit}:{}", lot["lot_id"]);

    // Two doses dropped: wastage with the VFC reason code.
    b.go("/locations/012345A/wastage").await;
    b.choose("stock", &stock).await;
    b.fill("doses", "2").await;
    b.choose("reason_code", "12A").await;
    b.press("Record the wastage").await;
    let page = b.text().await;
    assert!(page.contains("The wastage is recorded"), "{page}");
    assert!(page.contains("12A"), "the ledger shows the reason: {page}");
    assert_eq!(line(&app, "HAND1").await["on_hand"], 8);

    // The count sheet starts at the 8 expected. A dose is given while staff count: the sheet
    // comes back with 7 expected, the line marked, rather than a difference of one.
    b.go("/locations/012345A/reconciliations").await;
    let count = format!("count_{stock}").replace(':', "_");
    assert_eq!(value_of(&b, &count).await, "8");
    let (status, ack) = crate::matrix::hl7(&app, &app.token, crate::matrix::vxu("C-1", "HAND1", "V02")).await;
    assert!(status == 200 && ack.contains("MSA|AA"), "{ack}");
    assert_eq!(line(&app, "HAND1").await["on_hand"], 7);
    b.fill(&count, "7").await;
    b.fill("counted_by", "Val Vance").await;
    b.press("Record the count").await;
    let page = b.text().await;
    assert!(
        page.contains("Doses were recorded while you counted") && page.contains("7 expected now, 8 before"),
        "{page}"
    );
    assert_eq!(value_of(&b, &count).await, "7", "the count is kept");
    b.press("Record the count").await;
    assert!(
        b.text().await.contains("every lot was as expected"),
        "{}",
        b.text().await
    );
    assert_eq!(line(&app, "HAND1").await["on_hand"], 7);

    // Another count finds one fewer: that difference needs its reason.
    b.go("/locations/012345A/reconciliations").await;
    b.fill(&count, "6").await;
    b.fill("counted_by", "Val Vance").await;
    b.press("Record the count").await;
    let page = b.text().await;
    assert!(page.contains("Say why 6 were counted"), "{page}");
    assert_eq!(value_of(&b, &count).await, "6", "the count is kept");
    b.fill(&count.replace("count_", "reason_"), "a vial broke").await;
    b.press("Record the count").await;
    assert!(b.text().await.contains("1 difference(s)"), "{}", b.text().await);
    b.screenshot("count-sheet").await;
    assert_eq!(line(&app, "HAND1").await["on_hand"], 6);
    let counts = app.get("/api/v1/locations/012345A/reconciliations").await;
    let lines = &counts["reconciliations"][0]["lines"];
    assert_eq!(lines[0]["adjustment"], -1, "{counts}");
    assert_eq!(lines[0]["reason"], "a vial broke", "{counts}");
    assert_eq!(
        counts["reconciliations"][1]["lines"][0]["adjustment"], 0,
        "the first count found what was expected: {counts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_resolves_an_unmatched_dose_completes_a_borrowing_record_and_transfers_a_dose() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    let second = app.create_unit("012345A", "Second refrigerator", "refrigerator").await;
    let lot_id = crate::inventory::receive(
        &app,
        unit,
        (crate::inventory::ROTATEQ, "X123456", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    let stock = format!("{unit}:{lot_id}");
    // A dose of a lot the EHR mistyped, and a private patient's dose from VFC stock.
    for (control, lot, eligibility) in [("Q-1", "NOPE42", "V02"), ("B-1", "X123456", "V01")] {
        let (status, ack) = crate::matrix::hl7(&app, &app.token, crate::matrix::vxu(control, lot, eligibility)).await;
        assert!(status == 200 && !ack.contains("MSA|AR"), "{ack}");
    }
    assert_eq!(line(&app, "X123456").await["on_hand"], 9);
    let b = Browser::open(&app).await;
    sign_up(&app, &b, CLINIC, "vfc-coordinator", &["--location", "012345A"]).await;

    // The location's home says what waits; the unmatched dose is the lot on the shelf:
    // resolving it decrements that lot.
    b.go("/locations/012345A").await;
    assert!(
        b.text().await.contains("1 borrowing record(s) need their reason"),
        "{}",
        b.text().await
    );
    b.follow("1 dose(s) reported by the EHR matched no stock: assign each to its lot")
        .await;
    assert_eq!(b.path().await, "/locations/012345A/decrement-exceptions");
    assert!(b.text().await.contains("lot \"NOPE42\""), "{}", b.text().await);
    b.choose("stock", &stock).await;
    b.press("Resolve").await;
    assert!(b.text().await.contains("The dose is resolved"), "{}", b.text().await);
    assert_eq!(line(&app, "X123456").await["on_hand"], 8);
    let queue = app.get("/api/v1/locations/012345A/decrement-exceptions").await;
    assert_eq!(queue["exceptions"].as_array().unwrap().len(), 0, "{queue}");

    // "Other" needs a note: the page says so and keeps the choice.
    b.go("/locations/012345A/borrowing").await;
    b.choose("reason", "other").await;
    b.press("Record the reason").await;
    let page = b.text().await;
    assert!(page.contains("say what happened"), "{page}");
    assert_eq!(value_of(&b, "reason").await, "other");
    b.fill("note", "the private order was lost").await;
    b.press("Record the reason").await;
    assert!(b.text().await.contains("The reason is recorded"), "{}", b.text().await);
    let borrowed = app.get("/api/v1/locations/012345A/borrowing").await;
    assert_eq!(borrowed["borrowing"][0]["reason"], "other", "{borrowed}");
    assert_eq!(
        borrowed["borrowing"][0]["note"], "the private order was lost",
        "{borrowed}"
    );

    // One dose to the second refrigerator: it moves at once.
    b.go("/locations/012345A/transfers").await;
    b.choose("stock", &stock).await;
    b.fill("doses", "1").await;
    b.choose("to_unit_id", &second.to_string()).await;
    b.fill("reason", "rebalance").await;
    b.press("Transfer").await;
    let page = b.text().await;
    assert!(page.contains("The doses moved."), "{page}");
    assert!(page.contains("rebalance"), "the transfer is listed: {page}");
    let inv = app.get("/api/v1/locations/012345A/inventory").await;
    let in_second: i64 = inv["lots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["unit_id"] == second)
        .map(|l| l["on_hand"].as_i64().unwrap())
        .sum();
    assert_eq!(in_second, 1, "{inv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_expired_while_a_form_was_open_leads_to_sign_in_and_back_to_the_form() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.fridge().await;
    let b = Browser::open(&app).await;
    let key = sign_up(&app, &b, CLINIC, "vfc-coordinator", &["--location", "012345A"])
        .await
        .expect("a coordinator has a second factor");
    b.go("/locations/012345A/receipts").await;
    b.fill("product", "4047-41").await;
    b.fill("lot", "LATE1").await;
    b.set_value("expires_on", "2099-01-31").await;
    b.choose("funding", "vfc").await;
    b.fill("doses", "5").await;
    // The coordinator stepped away for two hours: past the program's 30 idle minutes.
    app.sql("UPDATE sessions SET last_seen_at = last_seen_at - 7200000, created_at = created_at - 7200000")
        .await;
    b.press("Receive").await;
    let at = b.path().await;
    assert!(at.starts_with("/login?next=%2Flocations%2F012345A%2Freceipts"), "{at}");
    assert!(
        app.get("/api/v1/locations/012345A/inventory").await["lots"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was received without a session"
    );
    b.fill("email", CLINIC).await;
    b.fill("password", "copper lantern drifts north").await;
    // The next code: the one used at enrolment is spent.
    b.fill("totp", &code(CLINIC, &key, 30)).await;
    b.press("Sign in").await;
    assert_eq!(b.path().await, "/locations/012345A/receipts");
    assert!(b.text().await.contains("Receive"), "{}", b.text().await);
}
