//! HL7 v2.5.1 immunization messages (docs/domain.md, "Doses administered over HL7"; CDC
//! implementation guide release 1.5): VXU^V04 in, ACK out, over HTTP (`POST /api/v1/hl7`) or
//! MLLP over TCP.
//!
//! [`vxu`] reads a message into dose reports, [`intake`] records them (every message once,
//! concurrent messages committed together) and answers with the [`ack`]; [`mllp`] frames
//! messages on a TCP connection for senders on an allowlist.

pub mod ack;
pub mod dates;
pub mod intake;
pub mod messages;
pub mod mllp;
pub mod vxu;

/// One ERR segment: where (segment, occurrence, field), the HL7 table 0357 code, the
/// severity (E error, W warning, I information) and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub at: Option<(String, usize, usize)>,
    pub code: u16,
    pub severity: char,
    pub text: String,
}

impl Issue {
    pub fn error(at: Option<(&str, usize, usize)>, code: u16, text: impl Into<String>) -> Self {
        Issue {
            at: at.map(|(s, n, f)| (s.to_string(), n, f)),
            code,
            severity: 'E',
            text: text.into(),
        }
    }
    pub fn warning(at: Option<(&str, usize, usize)>, code: u16, text: impl Into<String>) -> Self {
        Issue {
            severity: 'W',
            ..Issue::error(at, code, text)
        }
    }
}

/// HL7 table 0357, message error condition codes.
pub fn code_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        104 => "Value too long",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        _ => "Application internal error",
    }
}
