//! End-to-end confirmation to gateways: the mark stops at a gap and moves once it fills.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Broker, Database, Subscriber, TestApp};
use crate::on_both_databases;

fn batch(epoch: &str, seqs: &[u64]) -> String {
    let readings: Vec<_> = seqs
        .iter()
        .map(|s| json!({"ts": format!("2026-11-20T10:{:02}:00Z", s), "temp_c": 5.0, "seq": s}))
        .collect();
    json!({"gateway": "gw-012345A-1", "epoch": epoch, "battery_pct": 87, "readings": readings}).to_string()
}

/// Reads confirmations until one says `seq`, failing on any other final value.
async fn expect_mark(app: &TestApp, sub: &mut Subscriber, epoch: &str, seq: u64) {
    let mut seen = Vec::new();
    while let Some((topic, body)) = sub.next(Duration::from_secs(10)).await {
        assert_eq!(topic, "vfc/gateways/gw-012345A-1/committed/GW-LOGGER-1");
        seen.push(body.clone());
        if body == json!({"epoch": epoch, "seq": seq}) {
            return;
        }
        assert!(body["seq"].as_u64().unwrap() <= seq, "mark went past {seq}: {seen:?}");
    }
    panic!(
        "no confirmation of seq {seq}; saw {seen:?}\n--- service log ---\n{}",
        app.log()
    );
}

async fn a_gap_in_seq_holds_the_mark_until_it_fills(db: Database) {
    let mut app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    app.register_gateway("012345A", "gw-012345A-1").await;
    let mut sub = Subscriber::connect(app.mqtt_port, "vfc/gateways/+/committed/+").await;
    let mut p = app.publisher("gw-012345A-1").await;
    let topic = "vfc/gateways/gw-012345A-1/loggers/GW-LOGGER-1/readings";

    p.publish(topic, batch("e1", &[1, 2, 4, 5])).await;
    expect_mark(&app, &mut sub, "e1", 2).await;

    // A dead letter counts as committed: seq 3 arrives broken, and the mark moves past it.
    p.publish(
        topic,
        json!({"gateway": "gw-012345A-1", "epoch": "e1", "readings": [{"ts": "2026-11-20T10:03:00Z", "temp_c": "n/a", "seq": 3}]})
            .to_string(),
    )
    .await;
    expect_mark(&app, &mut sub, "e1", 5).await;

    // Resending what is already committed confirms it again and stores nothing twice.
    p.publish(topic, batch("e1", &[4, 5, 6])).await;
    expect_mark(&app, &mut sub, "e1", 6).await;
    p.wait_acked(3).await;

    // The mark is kept in the database: a restarted service continues from it, and a gap
    // still holds it.
    app.kill();
    app.start().await;
    let p = app.publisher("gw-012345A-1").await;
    let mut sub = Subscriber::connect(app.mqtt_port, "vfc/gateways/+/committed/+").await;
    // (The embedded broker died with the service, retained confirmations with it; the
    // gateway learns its mark again from the next batch it sends.)
    p.publish(topic, batch("e1", &[8])).await;
    let (_, after_gap) = sub
        .next(Duration::from_secs(10))
        .await
        .expect("a confirmation after seq 8");
    assert_eq!(
        after_gap,
        json!({"epoch": "e1", "seq": 6}),
        "seq 7 is missing: the mark stays at 6"
    );
    p.publish(topic, batch("e1", &[7])).await;
    expect_mark(&app, &mut sub, "e1", 8).await;

    // A new spool is a new epoch, counted from 1.
    p.publish(topic, batch("e2", &[1])).await;
    expect_mark(&app, &mut sub, "e2", 1).await;

    let logger = app.get("/api/v1/loggers/GW-LOGGER-1").await;
    assert_eq!(logger["gateway"], "gw-012345A-1");
    assert_eq!(logger["battery_pct"], 87.0);
    let page = app
        .get("/api/v1/loggers/GW-LOGGER-1/readings?from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z")
        .await;
    // seq 1..8 of epoch e1 (3 was a dead letter) and seq 1 of e2 at the same time as e1's seq 1.
    assert_eq!(page["readings"].as_array().unwrap().len(), 7, "{page}");
}

async fn a_logger_status_updates_battery_probe_and_gateway(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    app.register_gateway("012345A", "gw-1").await;
    let mut p = app.publisher("gw-1").await;
    p.publish(
        "vfc/gateways/gw-1/loggers/LT-5/status",
        json!({"battery_pct": 12, "probe_connected": false, "firmware": "2.1.0", "gateway": "gw-1", "spool_depth": 40})
            .to_string(),
    )
    .await;
    p.wait_acked(1).await;
    let logger = app
        .eventually("status stored", || async {
            let (status, body) = app.get_as(&app.token, "/api/v1/loggers/LT-5").await;
            if status == 200 {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        })
        .await;
    assert_eq!(logger["battery_pct"], 12.0);
    assert_eq!(logger["probe_connected"], false);
    assert_eq!(logger["firmware"], "2.1.0");
    assert_eq!(logger["spool_depth"], 40);
    assert_eq!(logger["gateway"], "gw-1");
}

on_both_databases!(
    a_gap_in_seq_holds_the_mark_until_it_fills,
    a_logger_status_updates_battery_probe_and_gateway
);
