//! The clinic gateway (`firmware-bridge run` / `simulate`) against the real service: nothing is
//! lost through broker outages, a broker that forgets, a power cut, or a file dropped twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::harness::{Broker, Database, GatewayProcess, TestApp};
use crate::on_both_databases;

const BASE: &str = "2026-08-01T00:00:00Z";
const FROM: &str = "2026-07-31T00:00:00Z";
const TO: &str = "2026-12-31T00:00:00Z";
/// Before any test's readings: for loggers and windows that reach back over real exports.
const FROM_PAST: &str = "2020-01-01T00:00:00Z";

/// Line `i` of logger LT-1: every 5 minutes from BASE, a temperature that varies in range.
fn at(i: usize) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(BASE).unwrap().to_utc() + chrono::Duration::minutes(5 * i as i64)
}

fn append_lines(file: &Path, range: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let mut text = String::new();
    for i in range {
        text.push_str(&format!(
            "LT-1,{},{:.1}\n",
            at(i).to_rfc3339(),
            4.0 + (i % 20) as f64 / 10.0
        ));
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn gateway_args(app: &TestApp, id: &str, spool: &Path) -> Vec<String> {
    [
        "run",
        "--broker",
        &app.mqtt_url(id),
        "--gateway-id",
        id,
        "--spool",
        &spool.display().to_string(),
        "--resend-after",
        "2s",
        "--status-every",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(args: &[String], extra: &[&str], log: PathBuf) -> GatewayProcess {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    GatewayProcess::start(&all, &log)
}

/// Waits up to `limit` for `check`, failing with the last state and both logs.
async fn wait_for<T, F, Fut>(app: &TestApp, gw: &GatewayProcess, limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    app.eventually_within(limit, what, || format!("--- gateway log ---\n{}\n", gw.log()), check)
        .await
}

/// Waits (20 s at most) until the gateway's log says `needle`.
async fn gateway_says(app: &TestApp, gw: &GatewayProcess, needle: &str) {
    wait_for(
        app,
        gw,
        Duration::from_secs(20),
        &format!("the gateway says {needle:?}"),
        || async {
            if gw.log().contains(needle) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await
}

/// Readings the gateway has taken into its spool (its log's `T` lines), confirmed or not.
fn spooled(spool: &Path) -> usize {
    let text = std::fs::read_to_string(spool.join("spool.log")).unwrap_or_default();
    text.lines().filter(|l| l.starts_with("T ")).count()
}

/// The readings' times.
fn times(readings: &[Value]) -> Vec<DateTime<Utc>> {
    readings
        .iter()
        .map(|r| {
            DateTime::parse_from_rfc3339(r["ts"].as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect()
}

/// Waits until the unit holds exactly readings 0..n of LT-1, each once and in time order.
async fn expect_lines(app: &TestApp, gw: &GatewayProcess, unit: i64, n: usize, limit: Duration) {
    let got = wait_for(app, gw, limit, &format!("{n} readings stored"), || async {
        let r = app.readings(unit, FROM, TO).await;
        if r.len() >= n {
            Ok(r)
        } else {
            Err(format!("{} readings", r.len()))
        }
    })
    .await;
    let expected: Vec<DateTime<Utc>> = (0..n).map(at).collect();
    assert_eq!(times(&got), expected, "every reading once, with its original time");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["temp_c"].as_f64().unwrap(), 4.0 + (i % 20) as f64 / 10.0);
    }
}

/// The service's retained confirmation for (gateway, LT-1): the seq it has committed up to.
async fn mark(app: &TestApp, gateway: &str, serial: &str) -> Option<u64> {
    let mut sub = app
        .subscriber(&format!("vfc/gateways/{gateway}/committed/{serial}"))
        .await;
    sub.next(Duration::from_secs(2))
        .await
        .map(|(_, v)| v["seq"].as_u64().unwrap())
}

async fn a_broker_outage_loses_nothing(broker: Broker) {
    let mut app = TestApp::spawn(Database::Sqlite, broker).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-outage").await;
    let file = app.dir.path().join("logger.txt");
    append_lines(&file, 0..100);
    let args = gateway_args(&app, "gw-outage", &app.dir.path().join("spool"));
    let file_arg = file.display().to_string();
    let gw = start(&args, &["--lines", &file_arg], app.dir.path().join("gw.log"));
    expect_lines(&app, &gw, unit, 100, Duration::from_secs(30)).await;

    // The broker goes away (with the embedded broker, the whole service) while readings keep
    // coming; they wait in the spool.
    match broker {
        Broker::Mosquitto => app.mosquitto.as_mut().unwrap().stop(),
        Broker::Embedded => assert!(app.stop().success()),
    }
    append_lines(&file, 100..250);
    gateway_says(&app, &gw, "lost the broker").await;
    append_lines(&file, 250..300);
    match broker {
        Broker::Mosquitto => app.mosquitto.as_mut().unwrap().resume(),
        Broker::Embedded => app.start().await,
    }
    expect_lines(&app, &gw, unit, 300, Duration::from_secs(60)).await;
    // Each line was taken once: 300 gapless seqs, all confirmed.
    let confirmed = wait_for(&app, &gw, Duration::from_secs(20), "mark at 300", || async {
        match mark(&app, "gw-outage", "LT-1").await {
            Some(300) => Ok(300),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(confirmed, 300);
    assert!(!gw.log().contains("skipped a bad line"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_stopped_and_started_again_loses_nothing() {
    a_broker_outage_loses_nothing(Broker::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_stopped_and_started_again_loses_nothing() {
    a_broker_outage_loses_nothing(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_without_persistence_costs_nothing() {
    let mut app = TestApp::spawn(Database::Sqlite, Broker::Mosquitto).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-forget").await;
    let file = app.dir.path().join("logger.txt");
    append_lines(&file, 0..50);
    let args = gateway_args(&app, "gw-forget", &app.dir.path().join("spool"));
    let file_arg = file.display().to_string();
    let gw = start(&args, &["--lines", &file_arg], app.dir.path().join("gw.log"));
    expect_lines(&app, &gw, unit, 50, Duration::from_secs(30)).await;

    // The service is away; the broker queues the next readings for its session, and PUBACKs them
    // to the gateway. Then the broker crashes and loses that queue.
    assert!(app.stop().success());
    let mut watch = app.subscriber("vfc/gateways/+/loggers/LT-1/readings").await;
    append_lines(&file, 50..150);
    let mut highest = 0;
    while highest < 150 {
        let (_, batch) = watch
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the gateway did not publish seq 150:\n{}", gw.log()));
        highest = batch["readings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .max()
            .unwrap_or(0)
            .max(highest);
    }
    drop(watch);
    app.mosquitto.as_mut().unwrap().restart_without_persistence();
    // The gateway reconnects (after its backoff, from 500 ms) and publishes its unconfirmed
    // readings at once, to a broker that no longer knows the service's session: they reach
    // nobody — but this watcher, subscribed first, which sees them go by.
    let mut watch = app.subscriber("vfc/gateways/+/loggers/LT-1/readings").await;
    let mut again = 0;
    while again < 150 {
        let (_, batch) = watch
            .next(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("the gateway did not publish again after reconnecting:\n{}", gw.log()));
        again = batch["readings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .max()
            .unwrap_or(0)
            .max(again);
    }
    drop(watch);
    app.start().await;

    // Nothing confirmed those 100 readings, so the gateway sends them again after its timeout.
    expect_lines(&app, &gw, unit, 150, Duration::from_secs(60)).await;
    assert!(
        gw.log().contains("publishing the unconfirmed readings again"),
        "{}",
        gw.log()
    );
}

async fn a_gateway_killed_in_a_backlog_loses_nothing(db: Database) {
    let mut app = TestApp::spawn(db, Broker::Embedded).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-cut").await;
    // A backlog: the service (and its broker) is down while 6,000 readings are taken.
    assert!(app.stop().success());
    let file = app.dir.path().join("logger.txt");
    append_lines(&file, 0..6_000);
    let spool = app.dir.path().join("spool");
    let args = gateway_args(&app, "gw-cut", &spool);
    let file_arg = file.display().to_string();
    let mut gw = start(&args, &["--lines", &file_arg], app.dir.path().join("gw.log"));
    wait_for(&app, &gw, Duration::from_secs(30), "6,000 readings spooled", || async {
        let taken = spooled(&spool);
        if taken == 6_000 {
            Ok(())
        } else {
            Err(format!("{taken} spooled"))
        }
    })
    .await;

    // The service comes back; in the middle of the backlog, the gateway loses power.
    app.start().await;
    let stored_at_cut = wait_for(
        &app,
        &gw,
        Duration::from_secs(30),
        "the backlog starts to arrive",
        || async {
            let n = app.readings(unit, FROM, TO).await.len();
            if n > 0 {
                Ok(n)
            } else {
                Err("none yet".into())
            }
        },
    )
    .await;
    gw.kill();
    assert!(
        stored_at_cut < 6_000,
        "the cut came after the backlog was through: {stored_at_cut}"
    );
    append_lines(&file, 6_000..6_100);

    gw.resume();
    expect_lines(&app, &gw, unit, 6_100, Duration::from_secs(120)).await;
    // It resumed after the last line taken, not from the top: one seq per line.
    wait_for(&app, &gw, Duration::from_secs(20), "mark at 6,100", || async {
        match mark(&app, "gw-cut", "LT-1").await {
            Some(6_100) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(gw.log().contains("resuming after the last line taken"), "{}", gw.log());
}

on_both_databases!(a_gateway_killed_in_a_backlog_loses_nothing);

/// Rows with a temperature in a Berlinger export's data table, read without the crate's parser.
fn berlinger_rows(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix('\t'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let ok = f.len() >= 2 && f[0].len() == 16 && f[0].as_bytes()[4] == b'-';
            ok.then(|| (f[0].to_string(), f[1].parse::<f64>().ok()))
                .and_then(|(t, v)| v.map(|v| (t, v)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_are_read_and_published_once() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    app.register_gateway("012345A", "gw-files").await;
    let mut units = Vec::new();
    for serial in ["RCPJ00010", "130500109088", "1012345678"] {
        let unit = app
            .create_unit("012345A", &format!("Unit of {serial}"), "refrigerator")
            .await;
        app.assign(
            unit,
            json!({"serial": serial, "reading_interval_s": 300, "from": FROM_PAST}),
        )
        .await;
        units.push(unit);
    }
    let drop_dir = app.dir.path().join("drop");
    std::fs::create_dir_all(&drop_dir).unwrap();
    let mut args = gateway_args(&app, "gw-files", &app.dir.path().join("spool"));
    args.extend(["--watch", &drop_dir.display().to_string(), "--watch-every", "0.2"].map(String::from));
    let gw = start(
        &args,
        &["--timezone", "America/New_York"],
        app.dir.path().join("gw.log"),
    );

    let exports = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/logger-exports");
    let qtag = format!("{exports}/qtag-clm-doc-lr/RCPJ00010_03_202304201359.txt");
    let ft2l = format!("{exports}/fridgetag-2l/130500109088_202206081014.txt");
    let logtag = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/firmware-bridge/tests/fixtures/logtag-constructed.csv"
    );
    std::fs::copy(&qtag, drop_dir.join("qtag.txt")).unwrap_or_else(|e| panic!("copying the fixture {qtag}: {e}"));
    std::fs::copy(&ft2l, drop_dir.join("fridgetag.txt")).unwrap_or_else(|e| panic!("copying the fixture {ft2l}: {e}"));
    std::fs::copy(logtag, drop_dir.join("logtag.csv")).unwrap_or_else(|e| panic!("copying the fixture {logtag}: {e}"));

    // Every row with a temperature, at its local time in New York.
    let zone: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let utc = |local: &str, fmt: &str| {
        use chrono::TimeZone;
        let t = chrono::NaiveDateTime::parse_from_str(local, fmt).unwrap();
        zone.from_local_datetime(&t).earliest().unwrap().to_utc()
    };
    for (file, unit) in [(&qtag, units[0]), (&ft2l, units[1])] {
        let rows = berlinger_rows(&std::fs::read_to_string(file).unwrap());
        assert!(rows.len() > 100, "{file}: {} rows", rows.len());
        let got = wait_for(
            &app,
            &gw,
            Duration::from_secs(60),
            &format!("{} readings of {file}", rows.len()),
            || async {
                let r = app.readings(unit, FROM_PAST, TO).await;
                if r.len() >= rows.len() {
                    Ok(r)
                } else {
                    Err(format!("{} readings", r.len()))
                }
            },
        )
        .await;
        assert_eq!(got.len(), rows.len());
        for (i, (local, temp)) in [0, rows.len() / 2, rows.len() - 1].map(|i| (i, &rows[i])) {
            let ts = DateTime::parse_from_rfc3339(got[i]["ts"].as_str().unwrap())
                .unwrap()
                .to_utc();
            assert_eq!(ts, utc(local, "%Y-%m-%d %H:%M"), "row {i} of {file}");
            assert_eq!(got[i]["temp_c"].as_f64().unwrap(), *temp, "row {i} of {file}");
        }
    }
    // The LogTag fixture: 09:00, 09:05 and 09:10 New York time; the unreadable row is skipped.
    let got = wait_for(&app, &gw, Duration::from_secs(30), "LogTag readings", || async {
        let r = app.readings(units[2], "2026-11-20T00:00:00Z", TO).await;
        if r.len() >= 3 {
            Ok(r)
        } else {
            Err(format!("{} readings", r.len()))
        }
    })
    .await;
    let first: Vec<(String, f64)> = got
        .iter()
        .take(3)
        .map(|r| (r["ts"].as_str().unwrap().to_string(), r["temp_c"].as_f64().unwrap()))
        .collect();
    let expect_ts = |s: &str| utc(s, "%Y-%m-%d %H:%M:%S").to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        first,
        vec![
            (expect_ts("2026-11-20 09:00:00"), 4.8),
            (expect_ts("2026-11-20 09:05:00"), 5.1),
            (expect_ts("2026-11-20 09:10:00"), 9.4)
        ]
    );
    assert!(gw.log().contains("skipped a row"), "{}", gw.log());

    // The same Q-tag export dropped again, under another name: published once.
    let before = wait_for(&app, &gw, Duration::from_secs(20), "Q-tag confirmed", || async {
        mark(&app, "gw-files", "RCPJ00010")
            .await
            .ok_or_else(|| "no mark".to_string())
    })
    .await;
    std::fs::copy(&qtag, drop_dir.join("qtag again.txt")).unwrap();
    gateway_says(&app, &gw, "published before").await;
    assert_eq!(
        mark(&app, "gw-files", "RCPJ00010").await,
        Some(before),
        "no reading sent twice"
    );
    assert_eq!(
        before as usize,
        berlinger_rows(&std::fs::read_to_string(&qtag).unwrap()).len()
    );
}

/// The drop folder's own files are read; a link to a file elsewhere, or a file far larger than
/// any export, is not (each logged once).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_folder_follows_no_link_and_reads_no_oversized_file() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    app.register_gateway("012345A", "gw-files").await;
    let mut units = Vec::new();
    for serial in ["RCPJ00010", "130500109088"] {
        let unit = app
            .create_unit("012345A", &format!("Unit of {serial}"), "refrigerator")
            .await;
        app.assign(
            unit,
            json!({"serial": serial, "reading_interval_s": 300, "from": FROM_PAST}),
        )
        .await;
        units.push(unit);
    }
    let exports = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/logger-exports");
    let drop_dir = app.dir.path().join("drop");
    std::fs::create_dir_all(&drop_dir).unwrap();
    // Sorted before the real export, so they are looked at first.
    std::os::unix::fs::symlink(
        format!("{exports}/fridgetag-2l/130500109088_202206081014.txt"),
        drop_dir.join("a-link.txt"),
    )
    .unwrap();
    let huge = std::fs::File::create(drop_dir.join("b-huge.txt")).unwrap();
    huge.set_len(firmware_bridge::sources::MAX_EXPORT_BYTES + 1).unwrap();
    let qtag = format!("{exports}/qtag-clm-doc-lr/RCPJ00010_03_202304201359.txt");
    std::fs::copy(&qtag, drop_dir.join("c-qtag.txt")).unwrap();
    let mut args = gateway_args(&app, "gw-files", &app.dir.path().join("spool"));
    args.extend(["--watch", &drop_dir.display().to_string(), "--watch-every", "0.2"].map(String::from));
    let gw = start(
        &args,
        &["--timezone", "America/New_York"],
        app.dir.path().join("gw.log"),
    );

    let rows = berlinger_rows(&std::fs::read_to_string(&qtag).unwrap()).len();
    wait_for(
        &app,
        &gw,
        Duration::from_secs(60),
        "the real export's readings",
        || async {
            let r = app.readings(units[0], FROM_PAST, TO).await;
            if r.len() >= rows {
                Ok(())
            } else {
                Err(format!("{} readings", r.len()))
            }
        },
    )
    .await;
    let log = gw.log();
    assert!(log.contains("a symbolic link in the drop folder"), "{log}");
    assert!(log.contains("not an export this gateway reads"), "{log}");
    assert_eq!(
        log.matches("a symbolic link in the drop folder").count(),
        1,
        "logged once: {log}"
    );
    assert!(
        app.readings(units[1], FROM_PAST, TO).await.is_empty(),
        "the linked file was not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_outage_is_backfilled_and_its_excursion_marked_late() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    app.create_location("012345", "A").await;
    app.register_gateway("012345A", "gw-po").await;
    let unit = app.create_unit("012345A", "Main refrigerator", "refrigerator").await;
    let since = (Utc::now() - chrono::Duration::hours(7)).to_rfc3339();
    app.assign(
        unit,
        json!({"serial": "PO-1", "reading_interval_s": 300, "from": since}),
    )
    .await;
    let spool = app.dir.path().join("spool");
    let broker = app.mqtt_url("gw-po");
    let spool_arg = spool.display().to_string();
    // Five hours replayed in a few seconds; the power is out from 1 h to 3 h into them.
    let mut gw = GatewayProcess::start(
        &[
            "simulate",
            "--broker",
            &broker,
            "--spool",
            &spool_arg,
            "--gateway-id",
            "gw-po",
            "--refrigerators",
            "1",
            "--freezers",
            "0",
            "--prefix",
            "PO-",
            "--interval",
            "5m",
            "--replay",
            "5h",
            "--speed",
            "4000",
            "--scenario",
            "power-outage@1h+2h",
            "--no-live",
            "--exit-when-drained",
        ],
        &app.dir.path().join("gw.log"),
    );
    let ended = gw.wait(Duration::from_secs(60)).await;
    assert!(ended.success(), "{}", gw.log());
    let finished = Utc::now();

    let got = app.readings(unit, FROM_PAST, TO).await;
    let times = times(&got);
    // The whole window, the outage included, every 5 minutes without a gap.
    assert!(times.len() >= 60, "{} readings", times.len());
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == chrono::Duration::minutes(5)),
        "{times:?}"
    );
    assert!(finished - *times.last().unwrap() < chrono::Duration::minutes(6));
    assert!(*times.last().unwrap() - times[0] >= chrono::Duration::minutes(295));

    // The unit warmed while dark; the excursion was found only when the backfill came: late.
    let found: Value = app
        .eventually("the outage's excursion", || async {
            let list = app
                .get(&format!("/api/v1/excursions?unit={unit}&from={FROM_PAST}"))
                .await;
            list["excursions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["above_range"] == true)
                .cloned()
                .ok_or_else(|| list.to_string())
        })
        .await;
    assert_eq!(found["detected_late"], true, "{found}");
    assert_eq!(found["alerted"], true, "{found}");
    let started = DateTime::parse_from_rfc3339(found["started_at"].as_str().unwrap())
        .unwrap()
        .to_utc();
    assert!(started > times[0] + chrono::Duration::minutes(60) && started < times[0] + chrono::Duration::minutes(180));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_readings_and_deletes_none() {
    let mut app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-full").await;
    assert!(app.stop().success());
    // 1 MiB holds about 16,000 readings; the logger has 17,500 waiting.
    let file = app.dir.path().join("logger.txt");
    append_lines(&file, 0..17_500);
    let spool = app.dir.path().join("spool");
    let args = gateway_args(&app, "gw-full", &spool);
    let file_arg = file.display().to_string();
    let gw = start(
        &args,
        &["--lines", &file_arg, "--spool-cap-mb", "1"],
        app.dir.path().join("gw.log"),
    );
    wait_for(&app, &gw, Duration::from_secs(30), "the spool full", || async {
        let log = gw.log();
        if log.contains("NOT TAKING READINGS") && log.contains("over 90% of its cap") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let taken = spooled(&spool);
    assert!((14_000..17_500).contains(&taken), "{taken} spooled");

    // The service is back: the spool drains, the rest of the file is taken, nothing is lost.
    app.start().await;
    expect_lines(&app, &gw, unit, 17_500, Duration::from_secs(180)).await;
    assert!(gw.log().contains("the spool has room again"), "{}", gw.log());
    wait_for(&app, &gw, Duration::from_secs(20), "the gateway's status", || async {
        let l = app.get("/api/v1/loggers/LT-1").await;
        if l["gateway"] == "gw-full" && l["spool_depth"] == 0 {
            Ok(())
        } else {
            Err(l.to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_is_read_as_writers_come_and_go_and_a_stop_does_not_wait_for_one() {
    let app = TestApp::spawn(Database::Sqlite, Broker::Embedded).await;
    let unit = app.fridge().await;
    app.register_gateway("012345A", "gw-fifo").await;
    let fifo = app.dir.path().join("logger.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let args = gateway_args(&app, "gw-fifo", &app.dir.path().join("spool"));
    let fifo_arg = fifo.display().to_string();
    let mut gw = start(&args, &["--lines", &fifo_arg], app.dir.path().join("gw.log"));
    // Two writers one after the other, as a logger's serial reader restarting would be.
    for part in [0..20, 20..30] {
        let path = fifo.clone();
        tokio::task::spawn_blocking(move || append_lines(&path, part))
            .await
            .unwrap();
    }
    expect_lines(&app, &gw, unit, 30, Duration::from_secs(30)).await;
    // No writer now: the gateway is blocked opening the FIFO, and still stops at once.
    gw.terminate();
    let status = gw.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", gw.log());
}
