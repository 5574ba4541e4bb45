//! The ACK (CDC IG 1.5): MSH with `ACK^V04^ACK` and profile `Z23^CDCPHINVS`, MSA with the code
//! and the message's control id, and one ERR per issue.

use super::vxu::Header;
use super::{code_text, Issue};

/// AA accepted, AE error (some dose not recorded), AR rejected (nothing recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accepted,
    Error,
    Rejected,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accepted => "AA",
            AckCode::Error => "AE",
            AckCode::Rejected => "AR",
        }
    }
}

fn escape(s: &str) -> String {
    er7::escape::escape(s, &er7::Separators::default()).into_owned()
}

/// The ACK text, segments separated by `\r` as HL7 specifies.
pub fn build(
    header: Option<&Header>,
    code: AckCode,
    issues: &[Issue],
    ack_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let empty = Header::default();
    let h = header.unwrap_or(&empty);
    let processing = if h.processing_id.is_empty() {
        "P"
    } else {
        h.processing_id.as_str()
    };
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^V04^ACK|{}|{}|2.5.1|||NE|NE|||||Z23^CDCPHINVS\r",
        if h.receiving_app.is_empty() {
            "VFCMON".to_string()
        } else {
            escape(&h.receiving_app)
        },
        escape(&h.receiving_facility),
        escape(&h.sending_app),
        escape(&h.sending_facility),
        now.format("%Y%m%d%H%M%S+0000"),
        escape(ack_id),
        escape(processing),
    );
    out.push_str(&format!("MSA|{}|{}\r", code.as_str(), escape(&h.control_id)));
    for i in issues {
        let at =
            i.at.as_ref()
                .map(|(s, n, f)| {
                    if *f == 0 {
                        format!("{s}^{n}")
                    } else {
                        format!("{s}^{n}^{f}")
                    }
                })
                .unwrap_or_default();
        out.push_str(&format!(
            "ERR||{at}|{}^{}^HL70357|{}||||{}\r",
            i.code,
            code_text(i.code),
            i.severity,
            escape(&i.text)
        ));
    }
    out
}

/// The MSA-1 code of an ACK this service wrote.
pub fn code_of(ack: &str) -> &str {
    ack.split('\r')
        .find_map(|l| l.strip_prefix("MSA|"))
        .and_then(|m| m.split('|').next())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_echoes_the_control_id_and_carries_errors_by_location() {
        let h = Header {
            sending_app: "PEDSEHR".into(),
            sending_facility: "012345A".into(),
            control_id: "MSG1".into(),
            ..Default::default()
        };
        let ack = build(
            Some(&h),
            AckCode::Error,
            &[Issue::error(Some(("RXA", 1, 3)), 102, "RXA-3 is not a date | fix it")],
            "ACK1",
            chrono::Utc::now(),
        );
        let lines: Vec<&str> = ack.split('\r').collect();
        assert!(lines[0].starts_with("MSH|^~\\&|VFCMON||PEDSEHR|012345A|"));
        assert!(lines[0].contains("|ACK^V04^ACK|ACK1|P|2.5.1|") && lines[0].ends_with("Z23^CDCPHINVS"));
        assert_eq!(lines[1], "MSA|AE|MSG1");
        assert_eq!(
            lines[2],
            "ERR||RXA^1^3|102^Data type error^HL70357|E||||RXA-3 is not a date \\F\\ fix it"
        );
        assert_eq!(code_of(&ack), "AE");
    }
}
