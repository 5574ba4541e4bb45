//! Identity on the broker: each gateway and logger speaks only for itself. Mosquitto with the
//! shipped `deploy/mosquitto.conf` and `deploy/mosquitto.acl` refuses a gateway publishing as
//! another; the service holds what a gateway sends for a logger that is not its PIN's, and files
//! it once the registry says it may.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::harness::{unique, Broker, Database, Subscriber, TestApp};
use crate::inventory::{receive, ROTATEQ};
use crate::on_both_databases;

/// An MQTT 5 publisher: under MQTT 5 a broker says why it refused a publish (PUBACK reason code).
struct Mqtt5 {
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<PubAckReason>,
}

impl Mqtt5 {
    async fn connect(app: &TestApp, user: &str) -> Mqtt5 {
        let (user, password) = app.login(user).expect("a Mosquitto account");
        let mut opts = MqttOptions::new(unique("v5-"), "127.0.0.1", app.mqtt_port);
        opts.set_credentials(user, password);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        let _ = ack_tx.send(a.reason);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("MQTT 5 connect timed out")
            .unwrap();
        Mqtt5 { client, acks }
    }

    /// Publishes with QoS 1 and returns the broker's PUBACK reason.
    async fn publish(&mut self, topic: &str, payload: Value) -> PubAckReason {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .unwrap_or_else(|_| panic!("no PUBACK for {topic}"))
            .unwrap()
    }
}

fn batch(gateway: &str, epoch: &str, readings: &[(String, f64, u64)]) -> Value {
    let readings: Vec<Value> = readings
        .iter()
        .map(|(ts, t, seq)| json!({"ts": ts, "temp_c": t, "seq": seq}))
        .collect();
    json!({"gateway": gateway, "epoch": epoch, "readings": readings})
}

fn minutes_ago(m: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(m)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_lets_a_gateway_publish_only_as_itself_and_only_the_service_confirm() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Mosquitto).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-a").await;
    app.login("gw-b");
    let mut gw_a = Mqtt5::connect(&app, "gw-a").await;
    // What gw-a reads of its own confirmations, from before anything is published.
    let mut marks = Subscriber::connect_as(
        app.mqtt_port,
        "vfc/gateways/gw-a/committed/+",
        app.login("gw-a").as_ref(),
    )
    .await;

    let forged = json!({"epoch": "forged", "seq": 999});
    for (topic, payload) in [
        (
            "vfc/gateways/gw-b/loggers/LT-1/readings",
            batch("gw-b", "e1", &[(minutes_ago(20), -3.0, 1)]),
        ),
        ("vfc/gateways/gw-b/loggers/LT-1/status", json!({"battery_pct": 1})),
        (
            "vfc/loggers/LT-1/readings",
            json!({"ts": minutes_ago(19), "temp_c": -3.0}),
        ),
        ("vfc/gateways/gw-a/committed/LT-1", forged.clone()),
        ("vfc/gateways/gw-b/committed/LT-1", forged.clone()),
    ] {
        assert_eq!(
            gw_a.publish(topic, payload).await,
            PubAckReason::NotAuthorized,
            "gw-a may not publish on {topic}"
        );
    }
    // The barrier: an allowed reading is stored and confirmed after all of the refused ones.
    let allowed = minutes_ago(10);
    assert_eq!(
        gw_a.publish(
            "vfc/gateways/gw-a/loggers/LT-1/readings",
            batch("gw-a", "e1", &[(allowed.clone(), 4.5, 1)])
        )
        .await,
        PubAckReason::Success
    );
    let (topic, mark) = marks
        .next(Duration::from_secs(20))
        .await
        .expect("the service's confirmation");
    assert_eq!(
        (topic.as_str(), &mark),
        ("vfc/gateways/gw-a/committed/LT-1", &json!({"epoch": "e1", "seq": 1}))
    );
    let stored = app.readings(unit, "2026-01-01T00:00:00Z", "2100-01-01T00:00:00Z").await;
    assert_eq!(stored.len(), 1, "only the allowed reading: {stored:?}");
    assert_eq!(stored[0]["temp_c"], 4.5);
    let logger = app.get("/api/v1/loggers/LT-1").await;
    assert_eq!(
        logger["battery_pct"],
        Value::Null,
        "gw-b's status never arrived: {logger}"
    );
}

/// Through the shipped ACL and a real gateway: a gateway whose broker account is not its id
/// sees its readings acknowledged by the broker and never confirmed, and says so loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_readings_the_broker_drops_warns_that_they_stay_unconfirmed() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Mosquitto).await;
    app.fridge().await;
    app.register_gateway("012345A", "gw-right").await;
    let file = app.dir.path().join("logger.txt");
    std::fs::write(&file, format!("LT-1,{},4.5\n", minutes_ago(5))).unwrap();
    // Signed in as gw-wrong, publishing as gw-right: the broker acknowledges and drops.
    let url = app.mqtt_url("gw-wrong");
    let spool = app.dir.path().join("spool").display().to_string();
    let file_arg = file.display().to_string();
    let mut gw = crate::harness::GatewayProcess::start(
        &[
            "run",
            "--broker",
            &url,
            "--gateway-id",
            "gw-right",
            "--spool",
            &spool,
            "--warn-unconfirmed-after",
            "2s",
            "--lines",
            &file_arg,
        ],
        &app.dir.path().join("gw.log"),
    );
    let warned = app
        .eventually("the gateway's warning", || async {
            let log = gw.log();
            if log.contains("UNCONFIRMED READINGS") {
                Ok(log)
            } else {
                Err(log)
            }
        })
        .await;
    assert!(warned.contains("gw-right"), "{warned}");
    gw.kill();
}

async fn a_gateway_of_another_pin_is_held_and_raises_nothing_while_the_owners_readings_count(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    receive(
        &app,
        unit,
        (ROTATEQ, "X1", "2099-01-31", "vfc"),
        10,
        chrono::Utc::now() - chrono::Duration::hours(2),
    )
    .await;
    app.create_location("054321", "A").await;
    app.register_gateway("054321A", "gw-054321A-1").await;
    let mut attacker = app.publisher("gw-054321A-1").await;
    let victim_time = minutes_ago(8);
    // Freezing readings for another PIN's logger, the last one at the time the real logger
    // reports next: neither may enter 012345's record.
    attacker
        .publish(
            "vfc/gateways/gw-054321A-1/loggers/LT-1/readings",
            batch(
                "gw-054321A-1",
                "e1",
                &[(minutes_ago(9), -1.0, 1), (victim_time.clone(), -1.0, 2)],
            )
            .to_string(),
        )
        .await;
    attacker.wait_acked(1).await;
    let held = app
        .eventually("two held readings", || async {
            let h = app.get("/api/v1/held-readings").await;
            let n = h["held_readings"].as_array().unwrap().len();
            if n == 2 {
                Ok(h)
            } else {
                Err(h.to_string())
            }
        })
        .await;
    assert_eq!(held["held_readings"][0]["reason"], "logger_not_served_by_gateway");
    assert_eq!(held["held_readings"][0]["gateway"], "gw-054321A-1");
    assert_eq!(app.metric("vfc_readings_held_total").await, 2.0);

    // The real logger's reading at that same time is stored, not taken for a duplicate.
    let mut owner = app.publisher("LT-1").await;
    owner.reading("LT-1", &victim_time, 4.6).await;
    owner.wait_acked(1).await;
    // The barrier: another unit's freezing must alert after all of the above was judged.
    app.other_fridge("LT-2").await;
    app.freezing("LT-2").await;
    app.wait_email_with("Fridge of LT-2").await;
    let stored = app.readings(unit, "2026-01-01T00:00:00Z", "2100-01-01T00:00:00Z").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["temp_c"], 4.6);
    let excursions = app
        .get(&format!("/api/v1/excursions?unit={unit}&from=2026-01-01T00:00:00Z"))
        .await;
    assert_eq!(excursions["excursions"].as_array().unwrap().len(), 0, "{excursions}");
    let holds = app.get("/api/v1/locations/012345A/holds").await;
    assert!(
        holds["holds"].as_array().unwrap().iter().all(|h| h["unit_id"] != unit),
        "{holds}"
    );
    assert!(
        app.emails_with("Main refrigerator").is_empty(),
        "no email about 012345A's fridge"
    );
}

async fn registering_a_gateway_later_files_its_held_readings_as_late_data(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let mut sub = Subscriber::connect(app.mqtt_port, "vfc/gateways/gw-new/committed/+").await;
    let gw = app.publisher("gw-new").await;
    let readings: Vec<(String, f64, u64)> = vec![
        (minutes_ago(40), 4.5, 1),
        (minutes_ago(35), 0.2, 2),
        (minutes_ago(30), 0.1, 3),
    ];
    gw.publish(
        "vfc/gateways/gw-new/loggers/LT-1/readings",
        batch("gw-new", "e1", &readings).to_string(),
    )
    .await;
    // Held readings are stored in full: the gateway may let them go.
    let (_, mark) = sub.next(Duration::from_secs(20)).await.expect("a confirmation");
    assert_eq!(mark, json!({"epoch": "e1", "seq": 3}));
    let held = app.get("/api/v1/held-readings?reason=unknown_gateway").await;
    assert_eq!(held["held_readings"].as_array().unwrap().len(), 3, "{held}");
    assert!(app
        .readings(unit, "2026-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
        .await
        .is_empty());

    let registered = app.register_gateway("012345A", "gw-new").await;
    assert_eq!(registered["held_readings"], 0, "{registered}");
    assert_eq!(
        app.readings(unit, "2026-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
            .await
            .len(),
        3
    );
    let excursion = app
        .eventually("the excursion of the re-filed readings", || async {
            let l = app
                .get(&format!("/api/v1/excursions?unit={unit}&from=2026-01-01T00:00:00Z"))
                .await;
            l["excursions"]
                .as_array()
                .unwrap()
                .first()
                .cloned()
                .ok_or_else(|| l.to_string())
        })
        .await;
    assert_eq!(excursion["detected_late"], true, "{excursion}");
    assert!(app.get("/api/v1/held-readings").await["held_readings"]
        .as_array()
        .unwrap()
        .is_empty());
}

async fn a_payload_naming_another_gateway_is_held_and_confirmed_only_to_its_sender(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-a").await;
    let mut sub = Subscriber::connect(app.mqtt_port, "vfc/gateways/+/committed/+").await;
    let gw = app.publisher("gw-a").await;
    let topic = "vfc/gateways/gw-a/loggers/LT-1/readings";
    gw.publish(
        topic,
        batch("gw-victim", "e1", &[(minutes_ago(20), -2.0, 1)]).to_string(),
    )
    .await;
    let (to, mark) = sub.next(Duration::from_secs(20)).await.expect("a confirmation");
    assert_eq!(
        (to.as_str(), mark),
        ("vfc/gateways/gw-a/committed/LT-1", json!({"epoch": "e1", "seq": 1}))
    );
    // The barrier: gw-a's next batch is confirmed, and nothing went to gw-victim meanwhile.
    gw.publish(topic, batch("gw-a", "e1", &[(minutes_ago(15), 4.0, 2)]).to_string())
        .await;
    let (to, mark) = sub.next(Duration::from_secs(20)).await.expect("a confirmation");
    assert_eq!(
        (to.as_str(), mark),
        ("vfc/gateways/gw-a/committed/LT-1", json!({"epoch": "e1", "seq": 2}))
    );
    let held = app.get("/api/v1/held-readings").await;
    assert_eq!(held["held_readings"][0]["reason"], "gateway_mismatch", "{held}");
    assert_eq!(held["held_readings"][0]["claimed_gateway"], "gw-victim");
    let stored = app.readings(unit, "2026-01-01T00:00:00Z", "2100-01-01T00:00:00Z").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["temp_c"], 4.0);
}

async fn a_clinic_registers_its_gateway_and_sees_the_loggers_it_brought(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    app.fridge().await;
    app.create_location("054321", "A").await;
    let clinic = app.create_token(&["--role", "clinic", "--location", "012345A", "--name", "front desk"]);
    let other = app.create_token(&["--role", "clinic", "--pin", "054321", "--name", "other clinic"]);
    let path = "/api/v1/locations/012345A/gateways";
    let body = json!({"id": "gw-012345A-1", "name": "Back office Pi"});
    let (status, created) = app.send_as(&clinic, "POST", path, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        app.send_as(&clinic, "POST", path, body.clone()).await.0,
        200,
        "again: renamed"
    );
    let (status, out) = app
        .send_as(&app.token, "POST", "/api/v1/locations/054321A/gateways", body.clone())
        .await;
    assert_eq!(status, 409, "{out}");
    assert!(out["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already in use elsewhere"));
    assert_eq!(app.send_as(&other, "POST", path, body).await.0, 404);
    let (status, out) = app
        .send_as(&clinic, "POST", path, json!({"id": "gateway 1", "name": "x"}))
        .await;
    assert_eq!(status, 400, "{out}");

    let mut gw = app.publisher("gw-012345A-1").await;
    gw.publish(
        "vfc/gateways/gw-012345A-1/loggers/NEW-9/readings",
        json!({"ts": minutes_ago(3), "temp_c": 5.0}).to_string(),
    )
    .await;
    gw.publish(
        "vfc/gateways/gw-012345A-1/loggers/NEW-9/status",
        json!({"battery_pct": 90, "gateway": "gw-012345A-1", "spool_depth": 7, "spool_warning": "spool over 90% of its cap"}).to_string(),
    )
    .await;
    gw.wait_acked(2).await;
    let listed = app
        .eventually("the new logger listed for the clinic", || async {
            let (_, l) = app.get_as(&clinic, "/api/v1/loggers?assigned=false").await;
            if l["loggers"].as_array().is_some_and(|a| a.len() == 1) {
                Ok(l)
            } else {
                Err(l.to_string())
            }
        })
        .await;
    assert_eq!(listed["loggers"][0]["serial"], "NEW-9");
    let (status, theirs) = app.get_as(&other, "/api/v1/loggers?assigned=false").await;
    assert_eq!(
        (status, theirs["loggers"].as_array().unwrap().len()),
        (200, 0),
        "{theirs}"
    );
    // The status and the reading are filed apart: wait for the status too.
    let list = app
        .eventually("the gateway's spool depth", || async {
            let (_, l) = app.get_as(&clinic, path).await;
            if l["gateways"][0]["spool_depth"].as_i64().is_some() {
                Ok(l)
            } else {
                Err(l.to_string())
            }
        })
        .await;
    let g = &list["gateways"][0];
    assert_eq!(
        (g["id"].as_str(), g["loggers_seen"].as_i64(), g["spool_depth"].as_i64()),
        (Some("gw-012345A-1"), Some(1), Some(7)),
        "{list}"
    );
    assert!(g["last_seen_at"].is_string(), "{g}");
    assert_eq!(g["warnings"][0], "spool over 90% of its cap", "{g}");

    // Removed, its next readings are held.
    let (status, _) = app
        .send_as(
            &clinic,
            "DELETE",
            "/api/v1/locations/012345A/gateways/gw-012345A-1",
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    gw.publish(
        "vfc/gateways/gw-012345A-1/loggers/NEW-9/readings",
        json!({"ts": minutes_ago(1), "temp_c": 5.0}).to_string(),
    )
    .await;
    app.eventually("the reading held", || async {
        let h = app.get("/api/v1/held-readings?gateway=gw-012345A-1").await;
        if h["held_readings"][0]["reason"] == "unknown_gateway" {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    let (status, _) = app.get_as(&clinic, "/api/v1/held-readings").await;
    assert_eq!(status, 403, "held readings are the state's list");
}

async fn a_serial_that_looks_like_a_gateway_is_refused(db: Database) {
    let app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    let (status, out) = app
        .send_as(
            &app.token,
            "PUT",
            &format!("/api/v1/units/{unit}/logger"),
            json!({"serial": "gw-1", "role": "backup"}),
        )
        .await;
    assert_eq!(status, 400, "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("gw-"), "{out}");
}

on_both_databases!(
    a_gateway_of_another_pin_is_held_and_raises_nothing_while_the_owners_readings_count,
    registering_a_gateway_later_files_its_held_readings_as_late_data,
    a_payload_naming_another_gateway_is_held_and_confirmed_only_to_its_sender,
    a_clinic_registers_its_gateway_and_sees_the_loggers_it_brought,
    a_serial_that_looks_like_a_gateway_is_refused,
);
