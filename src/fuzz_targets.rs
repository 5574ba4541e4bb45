//! The parsers the fuzzers drive, one entry point per target, shared by the `cargo fuzz`
//! targets in `fuzz/` and by the stable test that replays their corpora and every crash input
//! they ever found (`tests/fuzz_corpora.rs`). Each takes arbitrary bytes, and the only thing it
//! may not do is panic: every parser must answer bad input with an error that says what to fix.

use chrono::{DateTime, Utc};

/// A fixed "now", so an input means the same thing on every run.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000, 0).expect("a valid instant")
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The MQTT side (`firmware_bridge::wire`): the bytes as a readings payload, a status payload
/// and a topic.
pub fn mqtt_payload(data: &[u8]) {
    use firmware_bridge::wire;
    let _ = wire::parse_readings(data, now());
    let _ = wire::parse_status(data);
    let topic = text(data);
    if let Some(t) = wire::parse_logger_topic(&topic) {
        let _ = crate::domain::LoggerSerial::parse(t.serial);
        let _ = t.gateway.map(wire::is_gateway_id);
    }
}

/// An HL7 v2 VXU message, read and turned into dose reports in a few time zones.
pub fn vxu(data: &[u8]) {
    let raw = text(data);
    let Ok(parsed) = crate::hl7::vxu::parse(&raw) else {
        return;
    };
    for tz in [
        chrono_tz::America::New_York,
        chrono_tz::Pacific::Honolulu,
        chrono_tz::UTC,
    ] {
        for dose in parsed.doses.iter().flatten() {
            let _ = dose.report(tz, &parsed.header, now().timestamp_millis());
        }
    }
}

/// A Berlinger Fridge-tag / Q-tag export.
pub fn berlinger(data: &[u8]) {
    let _ = firmware_bridge::berlinger::parse(&text(data));
}

/// A LogTag CSV export.
pub fn logtag(data: &[u8]) {
    let raw = text(data);
    let _ = firmware_bridge::logtag::parse(&raw);
    let _ = firmware_bridge::logtag::interval_seconds(&raw);
    let _ = firmware_bridge::logtag::range(&raw);
}

/// The gateway's line source: `serial,timestamp,temp_c` lines.
pub fn line(data: &[u8]) {
    for l in text(data).lines() {
        let _ = firmware_bridge::sources::parse_line(l);
    }
}

/// A time in a query string or a body.
pub fn query_time(data: &[u8]) {
    let _ = crate::domain::parse_instant("from", &text(data));
    let _ = crate::domain::parse_date("on", &text(data));
}

/// One target: bytes in, and no panic.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test and `scripts/fuzz.sh`.
pub const TARGETS: &[(&str, Target)] = &[
    ("mqtt_payload", mqtt_payload),
    ("vxu", vxu),
    ("berlinger", berlinger),
    ("logtag", logtag),
    ("line", line),
    ("query_time", query_time),
];
