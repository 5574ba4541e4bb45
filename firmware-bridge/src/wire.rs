//! The MQTT wire format (docs/architecture.md, "Public contracts → MQTT").
//!
//! Topics — each publisher speaks only under its own broker username (`deploy/mosquitto.acl`):
//! - `vfc/gateways/{gateway}/loggers/{serial}/readings` and `…/status` — a gateway (username
//!   `{gateway}`) for the loggers it serves;
//! - `vfc/loggers/{serial}/readings` and `…/status` — a logger that speaks MQTT itself
//!   (username `{serial}`);
//! - `vfc/gateways/{gateway}/committed/{serial}` — the service's retained confirmation
//!   `{"epoch","seq"}`: every reading of that gateway, epoch and logger with `seq` ≤ N is
//!   committed. Only the service writes it; only that gateway reads it.
//!
//! Readings are one `{"ts","temp_c"}` or a batch
//! `{"readings":[{"ts","temp_c","seq"}…],"gateway","epoch","battery_pct"}`. Status carries
//! battery, probe, firmware, gateway and spool depth.
//!
//! Parsing is lenient about shape and strict about values: one bad reading in a batch is
//! reported on its own (with its `seq` when it had one, so a gateway's confirmation can still
//! move past it), the others stay good.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest payload the service accepts; bigger ones are dead letters.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// A reading stamped further in the future than this is refused (clock error on the device).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(10);
/// Plausible range of a logger probe; anything outside is a broken sensor or a bad encoding.
pub const MIN_TEMP_C: f64 = -100.0;
pub const MAX_TEMP_C: f64 = 100.0;

/// Topic filter for the readings and status of loggers that speak MQTT themselves.
pub const LOGGERS_FILTER: &str = "vfc/loggers/+/+";
/// Topic filter for the readings and status gateways send for their loggers.
pub const GATEWAYS_FILTER: &str = "vfc/gateways/+/loggers/+/+";

/// Where a logger that speaks MQTT itself publishes its readings.
pub fn readings_topic(serial: &str) -> String {
    format!("vfc/loggers/{serial}/readings")
}

/// Where a logger that speaks MQTT itself publishes its status.
pub fn status_topic(serial: &str) -> String {
    format!("vfc/loggers/{serial}/status")
}

/// Where a gateway publishes the readings of a logger it serves.
pub fn gateway_readings_topic(gateway: &str, serial: &str) -> String {
    format!("vfc/gateways/{gateway}/loggers/{serial}/readings")
}

/// Where a gateway publishes the status of a logger it serves.
pub fn gateway_status_topic(gateway: &str, serial: &str) -> String {
    format!("vfc/gateways/{gateway}/loggers/{serial}/status")
}

pub fn committed_topic(gateway: &str, serial: &str) -> String {
    format!("vfc/gateways/{gateway}/committed/{serial}")
}

/// What a reading or status topic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggerTopic<'a> {
    /// The gateway the topic names (and the broker let publish there); `None` for a logger
    /// publishing for itself.
    pub gateway: Option<&'a str>,
    pub serial: &'a str,
    pub kind: TopicKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Readings,
    Status,
}

/// Splits `vfc/loggers/{serial}/readings|status` and
/// `vfc/gateways/{gateway}/loggers/{serial}/readings|status`; `None` for anything else.
pub fn parse_logger_topic(topic: &str) -> Option<LoggerTopic<'_>> {
    let parts: Vec<&str> = topic.split('/').collect();
    let (gateway, serial, kind) = match parts.as_slice() {
        ["vfc", "loggers", serial, kind] => (None, *serial, *kind),
        ["vfc", "gateways", gateway, "loggers", serial, kind] if !gateway.is_empty() => {
            (Some(*gateway), *serial, *kind)
        }
        _ => return None,
    };
    if serial.is_empty() {
        return None;
    }
    let kind = match kind {
        "readings" => TopicKind::Readings,
        "status" => TopicKind::Status,
        _ => return None,
    };
    Some(LoggerTopic { gateway, serial, kind })
}

/// A gateway id: `gw-` and 1 to 60 letters, digits or hyphens. It is the gateway's broker
/// username and a topic segment, so it can never be read as a serial (which may not start
/// with `gw-`) or as a wildcard.
pub fn is_gateway_id(s: &str) -> bool {
    s.strip_prefix("gw-").is_some_and(|rest| {
        (1..=60).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// One temperature reading as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireReading {
    pub ts: DateTime<Utc>,
    pub temp_c: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A batch as a gateway sends it (serialisation side; parsing goes through [`parse_readings`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayBatch<'a> {
    pub readings: &'a [WireReading],
    pub gateway: &'a str,
    pub epoch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
}

/// Where a batch came from, when a gateway sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayOrigin {
    pub gateway: String,
    pub epoch: String,
}

/// A readings payload after parsing: the good readings and, separately, each bad one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReadings {
    pub origin: Option<GatewayOrigin>,
    pub battery_pct: Option<f64>,
    pub readings: Vec<WireReading>,
    /// Readings that were refused, with the `seq` they carried (if any) and why.
    pub rejected: Vec<RejectedReading>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RejectedReading {
    pub index: usize,
    pub seq: Option<u64>,
    pub reason: String,
}

/// Why a whole payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is {0} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload must be a JSON object with \"ts\" and \"temp_c\", or with \"readings\"")]
    NotAnObject,
    #[error("{0}")]
    Invalid(String),
}

/// Parses a readings payload (a logger's own topic or a gateway's).
///
/// `now` bounds how far in the future a timestamp may be.
pub fn parse_readings(payload: &[u8], now: DateTime<Utc>) -> Result<ParsedReadings, PayloadError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let value: Value = serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(PayloadError::NotAnObject);
    };
    let Some(items) = obj.get("readings") else {
        // A single reading: any problem refuses the whole (one-reading) payload.
        let reading = parse_one(&Value::Object(obj.clone()), now, false).map_err(PayloadError::Invalid)?;
        return Ok(ParsedReadings {
            origin: None,
            battery_pct: None,
            readings: vec![reading],
            rejected: Vec::new(),
        });
    };
    let Value::Array(items) = items else {
        return Err(PayloadError::Invalid("\"readings\" must be an array".into()));
    };
    let gateway = optional_str(&obj, "gateway")?;
    let epoch = optional_str(&obj, "epoch")?;
    let origin = match (gateway, epoch) {
        (Some(gateway), Some(epoch)) => {
            if !is_topic_segment(&gateway) {
                return Err(PayloadError::Invalid(format!(
                    "\"gateway\" {gateway:?} must be 1-64 characters without '/', '+' or '#'"
                )));
            }
            Some(GatewayOrigin { gateway, epoch })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(PayloadError::Invalid(
                "\"gateway\" is set but \"epoch\" is missing".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(PayloadError::Invalid(
                "\"epoch\" is set but \"gateway\" is missing".into(),
            ))
        }
    };
    let battery_pct = match obj.get("battery_pct") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|b| (0.0..=100.0).contains(b))
                .ok_or_else(|| PayloadError::Invalid("\"battery_pct\" must be a number from 0 to 100".into()))?,
        ),
    };
    let mut parsed = ParsedReadings {
        origin,
        battery_pct,
        readings: Vec::with_capacity(items.len()),
        rejected: Vec::new(),
    };
    let needs_seq = parsed.origin.is_some();
    for (index, item) in items.iter().enumerate() {
        match parse_one(item, now, needs_seq) {
            Ok(r) => parsed.readings.push(r),
            Err(reason) => parsed.rejected.push(RejectedReading {
                index,
                seq: item.get("seq").and_then(Value::as_u64),
                reason: format!("readings[{index}]: {reason}"),
            }),
        }
    }
    Ok(parsed)
}

fn optional_str(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(PayloadError::Invalid(format!("\"{key}\" must be a non-empty string"))),
    }
}

fn parse_one(item: &Value, now: DateTime<Utc>, needs_seq: bool) -> Result<WireReading, String> {
    let Value::Object(obj) = item else {
        return Err("a reading must be an object with \"ts\" and \"temp_c\"".into());
    };
    let ts = match obj.get("ts") {
        None => return Err("missing \"ts\" (RFC 3339 time with offset)".into()),
        Some(Value::String(s)) => parse_ts(s)?,
        Some(_) => return Err("\"ts\" must be an RFC 3339 string such as \"2026-11-25T13:00:00Z\"".into()),
    };
    if ts > now + MAX_FUTURE_SKEW {
        return Err(format!(
            "\"ts\" {} is more than 10 minutes in the future (check the logger's clock)",
            ts.to_rfc3339()
        ));
    }
    let temp_c = match obj.get("temp_c") {
        None => return Err("missing \"temp_c\" (degrees Celsius)".into()),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| format!("\"temp_c\" must be a number, got {v}"))?,
    };
    if !(MIN_TEMP_C..=MAX_TEMP_C).contains(&temp_c) {
        return Err(format!(
            "\"temp_c\" {temp_c} is outside the plausible range {MIN_TEMP_C}..{MAX_TEMP_C} °C"
        ));
    }
    let seq = match obj.get("seq") {
        None | Some(Value::Null) if needs_seq => {
            return Err("a reading from a gateway needs \"seq\" (1, 2, 3… per logger)".into())
        }
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|s| *s >= 1)
                .ok_or_else(|| format!("\"seq\" must be a whole number ≥ 1, got {v}"))?,
        ),
    };
    Ok(WireReading { ts, temp_c, seq })
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("\"ts\" {s:?} is not an RFC 3339 time with offset ({e})"))
}

/// A topic segment a gateway id or serial may use.
pub fn is_topic_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.contains(['/', '+', '#']) && !s.chars().any(char::is_control)
}

/// A logger serial: a topic segment of letters, digits, `-`, `_`, `.`, `:` that does not start
/// with `gw-` (so it can never be taken for a gateway's broker username).
pub fn is_serial(s: &str) -> bool {
    is_topic_segment(s) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) && !s.starts_with("gw-")
}

/// The service's confirmation on `vfc/gateways/{gateway}/committed/{serial}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub epoch: String,
    pub seq: u64,
}

/// A logger's status (on its own topic or its gateway's); every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_connected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_depth: Option<u64>,
    /// The gateway's spool is near or at its cap (readings are not reaching the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_warning: Option<String>,
}

/// Parses a status payload.
pub fn parse_status(payload: &[u8]) -> Result<Status, PayloadError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let status: Status = serde_json::from_slice(payload).map_err(|e| {
        if serde_json::from_slice::<Value>(payload).is_ok() {
            PayloadError::Invalid(format!("status: {e}"))
        } else {
            PayloadError::NotJson(e.to_string())
        }
    })?;
    if let Some(b) = status.battery_pct {
        if !(0.0..=100.0).contains(&b) {
            return Err(PayloadError::Invalid(
                "\"battery_pct\" must be a number from 0 to 100".into(),
            ));
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T13:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_gateway_topic_names_its_gateway_and_a_logger_topic_none() {
        let t = parse_logger_topic("vfc/gateways/gw-012345A-1/loggers/LT-1/readings").unwrap();
        assert_eq!(
            (t.gateway, t.serial, t.kind),
            (Some("gw-012345A-1"), "LT-1", TopicKind::Readings)
        );
        let t = parse_logger_topic("vfc/loggers/LT-1/status").unwrap();
        assert_eq!((t.gateway, t.serial, t.kind), (None, "LT-1", TopicKind::Status));
        for bad in [
            "vfc/loggers/LT-1/other",
            "vfc/loggers//readings",
            "vfc/loggers/a/b/readings",
            "vfc/gateways//loggers/LT-1/readings",
            "vfc/gateways/gw-a/committed/LT-1",
            "vfc/gateways/gw-a/loggers/LT-1/readings/x",
        ] {
            assert_eq!(parse_logger_topic(bad), None, "{bad}");
        }
        assert_eq!(
            gateway_readings_topic("gw-a", "LT-1"),
            "vfc/gateways/gw-a/loggers/LT-1/readings"
        );
    }

    #[test]
    fn a_gateway_id_is_gw_and_up_to_60_letters_digits_or_hyphens() {
        assert!(is_gateway_id("gw-012345A-1"));
        assert!(is_gateway_id(&format!("gw-{}", "a".repeat(60))));
        for bad in ["gw-", "gateway-1", "gw-a/b", "gw-+", "gw-#", "gw-a_b", "GW-a"] {
            assert!(!is_gateway_id(bad), "{bad}");
        }
        assert!(!is_gateway_id(&format!("gw-{}", "a".repeat(61))));
    }

    #[test]
    fn a_single_reading_parses_with_any_offset() {
        let p = parse_readings(br#"{"ts":"2026-11-25T08:00:00-05:00","temp_c":4.6}"#, now()).unwrap();
        assert_eq!(p.readings.len(), 1);
        assert_eq!(p.readings[0].ts, now());
        assert_eq!(p.readings[0].temp_c, 4.6);
        assert!(p.origin.is_none());
    }

    #[test]
    fn one_bad_reading_in_a_batch_is_rejected_alone_with_its_seq() {
        let p = parse_readings(
            br#"{"gateway":"gw-1","epoch":"e1","readings":[
                {"ts":"2026-11-25T12:00:00Z","temp_c":4.0,"seq":1},
                {"ts":"2026-11-25T12:05:00Z","temp_c":"warm","seq":2},
                {"ts":"2026-11-25T12:10:00Z","temp_c":5.0,"seq":3}]}"#,
            now(),
        )
        .unwrap();
        assert_eq!(p.readings.len(), 2);
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].seq, Some(2));
        assert!(p.rejected[0].reason.contains("temp_c"), "{}", p.rejected[0].reason);
        assert_eq!(p.origin.unwrap().gateway, "gw-1");
    }

    #[test]
    fn values_outside_the_rules_are_refused_with_a_reason() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not JSON"),
            (br#"{"temp_c":4.0}"#, "missing \"ts\""),
            (br#"{"ts":"2026-11-25T12:00:00Z"}"#, "missing \"temp_c\""),
            (br#"{"ts":"2026-11-25T12:00:00Z","temp_c":140}"#, "plausible range"),
            (br#"{"ts":"yesterday","temp_c":4}"#, "RFC 3339"),
            (br#"{"ts":"2026-11-25T13:11:00Z","temp_c":4}"#, "future"),
        ];
        for (payload, why) in cases {
            let err = parse_readings(payload, now()).unwrap_err().to_string();
            assert!(err.contains(why), "{err} should mention {why}");
        }
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(parse_readings(&big, now()), Err(PayloadError::TooLarge(_))));
    }

    #[test]
    fn gateway_readings_need_a_seq() {
        let p = parse_readings(
            br#"{"gateway":"gw","epoch":"e","readings":[{"ts":"2026-11-25T12:00:00Z","temp_c":4}]}"#,
            now(),
        )
        .unwrap();
        assert!(p.readings.is_empty());
        assert!(p.rejected[0].reason.contains("seq"));
    }

    #[test]
    fn topics_round_trip() {
        let own = |kind| LoggerTopic {
            gateway: None,
            serial: "LT-1",
            kind,
        };
        assert_eq!(
            parse_logger_topic(&readings_topic("LT-1")),
            Some(own(TopicKind::Readings))
        );
        assert_eq!(parse_logger_topic(&status_topic("LT-1")), Some(own(TopicKind::Status)));
        let via = LoggerTopic {
            gateway: Some("gw-a"),
            serial: "LT-1",
            kind: TopicKind::Status,
        };
        assert_eq!(parse_logger_topic(&gateway_status_topic("gw-a", "LT-1")), Some(via));
        assert_eq!(committed_topic("gw", "LT-1"), "vfc/gateways/gw/committed/LT-1");
    }

    #[test]
    fn a_serial_may_not_start_like_a_gateway_id() {
        assert!(is_serial("LT-1001") && is_serial("GW-LOGGER-1"));
        for bad in ["gw-1", "a/b", "a+", "#", "", "a b"] {
            assert!(!is_serial(bad), "{bad}");
        }
    }
}
