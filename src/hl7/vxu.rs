//! Reading a VXU^V04 into dose reports. The ER7 encoding itself is the `er7` crate's; this
//! module knows which fields of MSH, PID, ORC, RXA and OBX carry what (CDC IG 1.5) and turns
//! each RXA group into a [`Draft`] or the [`Issue`] that keeps it from being recorded.

use chrono_tz::Tz;

use super::Issue;
use crate::domain::{Cvx, LotNumber, Ndc};
use crate::domain::{Eligibility, FundingSource};
use crate::inventory::catalog::Vaccine;
use crate::inventory::doses::{Action, DoseReport, Source};

/// MSH, as the ACK and the duplicate check need it.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub sending_app: String,
    pub sending_facility: String,
    pub receiving_app: String,
    pub receiving_facility: String,
    pub control_id: String,
    pub processing_id: String,
    /// MSH-7, when the message was made, as written.
    pub sent_at: String,
}

/// One RXA group, parsed, waiting for its location (which needs the database).
#[derive(Debug, Clone)]
pub struct Draft {
    /// RXA occurrence in the message (1-based), for ERR-2.
    pub rxa: usize,
    /// RXA-11.4, else MSH-4.
    pub facility: String,
    /// Where the facility came from, for ERR-2.
    pub facility_at: (&'static str, usize, usize),
    pub orc_key: Option<String>,
    pub patient_id: String,
    pub vaccine: Vaccine,
    pub lot: Option<LotNumber>,
    /// RXA-3 as sent.
    pub given: String,
    pub given_here: bool,
    pub not_given: Option<String>,
    pub action: Action,
    pub eligibility: Option<Eligibility>,
    pub funding_source: Option<FundingSource>,
    /// Warnings that do not stop the dose (e.g. an eligibility code not in table 0064).
    pub notes: Vec<Issue>,
}

impl Draft {
    /// The report for `doses::apply`, with RXA-3 and MSH-7 read in the location's time zone.
    /// The report is as of MSH-7 (never later than now: a clock ahead cannot make a report
    /// outrank the ones after it); without a readable MSH-7, as of now.
    pub fn report(&self, tz: Tz, header: &Header, now_ms: i64) -> Result<DoseReport, Issue> {
        let message_id = header.control_id.as_str();
        let reported_at = super::dates::read_time(&header.sent_at, tz)
            .ok()
            .and_then(|g| g.at)
            .map_or(now_ms, |t| t.min(now_ms));
        let (at, day) = super::dates::given_at(&self.given, tz, now_ms)
            .map_err(|e| Issue::error(Some(("RXA", self.rxa, 3)), 102, e))?;
        Ok(DoseReport {
            orc_key: self.orc_key.clone(),
            patient_id: self.patient_id.clone(),
            vaccine: self.vaccine.clone(),
            lot: self.lot.clone(),
            administered_at: at,
            day,
            given_here: self.given_here,
            not_given: self.not_given.clone(),
            action: self.action,
            eligibility: self.eligibility,
            funding_source: self.funding_source,
            message_id: Some(message_id.to_string()),
            source: Source::Hl7,
            reported_at,
        })
    }
}

/// A message read: refused whole (`Err`), or its header and one result per RXA group.
#[derive(Debug)]
pub struct Parsed {
    pub header: Header,
    pub doses: Vec<Result<Draft, Issue>>,
    /// Message-level errors that still let the ACK be addressed (AE, nothing recorded).
    pub errors: Vec<Issue>,
}

/// Why a whole message is refused (AR), with the header when it could be read.
#[derive(Debug)]
pub struct Refused {
    pub header: Option<Header>,
    pub issue: Issue,
}

fn text(seg: &er7::Segment, sep: &er7::Separators, field: usize, comp: usize) -> String {
    seg.component(field, comp)
        .map(|c| c.to_text(sep))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Reads a message (segments separated by `\r`, `\n` or both).
pub fn parse(raw: &str) -> Result<Parsed, Box<Refused>> {
    let refuse = |header: Option<Header>, at, code, t: &str| {
        Box::new(Refused {
            header,
            issue: Issue::error(at, code, t),
        })
    };
    let msg = er7::parse(
        raw.trim_start_matches(['\u{0b}', '\r', '\n', ' '])
            .trim_end_matches(['\u{1c}', '\r', '\n']),
    )
    .map_err(|e| {
        refuse(
            None,
            Some(("MSH", 1, 0)),
            100,
            &format!("the message must begin with an MSH segment ({e})"),
        )
    })?;
    let sep = &msg.separators;
    let msh = msg.header().filter(|h| h.name == "MSH").ok_or_else(|| {
        refuse(
            None,
            Some(("MSH", 1, 0)),
            100,
            "the message must begin with an MSH segment",
        )
    })?;
    let header = Header {
        sending_app: text(msh, sep, 3, 1),
        sending_facility: text(msh, sep, 4, 1),
        receiving_app: text(msh, sep, 5, 1),
        receiving_facility: text(msh, sep, 6, 1),
        control_id: text(msh, sep, 10, 1),
        processing_id: text(msh, sep, 11, 1),
        sent_at: text(msh, sep, 7, 1),
    };
    if header.control_id.is_empty() {
        return Err(refuse(
            Some(header),
            Some(("MSH", 1, 10)),
            101,
            "MSH-10 (message control id) is required",
        ));
    }
    let (kind, event) = (text(msh, sep, 9, 1), text(msh, sep, 9, 2));
    if kind != "VXU" {
        return Err(refuse(
            Some(header),
            Some(("MSH", 1, 9)),
            200,
            &format!("MSH-9 is {kind:?}: only VXU^V04 (immunization update) messages are taken here"),
        ));
    }
    if event != "V04" {
        return Err(refuse(
            Some(header),
            Some(("MSH", 1, 9)),
            201,
            &format!("MSH-9.2 is {event:?}: only V04 is taken"),
        ));
    }
    let version = text(msh, sep, 12, 1);
    if !version.starts_with("2.5") {
        return Err(refuse(
            Some(header),
            Some(("MSH", 1, 12)),
            203,
            &format!("MSH-12 is {version:?}: this interface speaks HL7 2.5.1 (CDC IG 1.5)"),
        ));
    }
    // Training (T) and debugging (D) messages must not move real stock.
    if !header.processing_id.is_empty() && header.processing_id != "P" {
        let id = header.processing_id.clone();
        return Err(refuse(
            Some(header),
            Some(("MSH", 1, 11)),
            202,
            &format!("MSH-11 is {id:?}: this interface records production messages (P) only"),
        ));
    }
    // One message per request or frame: a second header would fold another patient's doses into this one.
    if let Some(n) = msg
        .segments
        .iter()
        .skip(1)
        .position(|s| matches!(s.name.as_str(), "MSH" | "FHS" | "BHS"))
    {
        return Err(refuse(
            Some(header),
            Some((msg.segments[n + 1].name.as_str(), 2, 0)),
            100,
            "one message per request: this body holds a second MSH (send batches one message at a time)",
        ));
    }

    let mut errors = Vec::new();
    let pid = msg.segment("PID");
    let patient_id = pid
        .map(|p| {
            let id = text(p, sep, 3, 1);
            let authority = text(p, sep, 3, 4);
            if id.is_empty() {
                String::new()
            } else {
                format!("{id}^{authority}")
            }
        })
        .unwrap_or_default();
    if pid.is_none() {
        errors.push(Issue::error(Some(("PID", 1, 0)), 100, "the message has no PID segment"));
    } else if patient_id.is_empty() {
        errors.push(Issue::error(
            Some(("PID", 1, 3)),
            101,
            "PID-3 (patient identifier) is required",
        ));
    }

    let mut doses = Vec::new();
    let (mut orc_key, mut rxa_n, mut obx_n, mut current): (Option<String>, usize, usize, Option<Result<Draft, Issue>>) =
        (None, 0, 0, None);
    for seg in &msg.segments {
        match seg.name.as_str() {
            "ORC" => {
                doses.extend(current.take());
                let (id, ns) = (text(seg, sep, 3, 1), text(seg, sep, 3, 2));
                orc_key = (!id.is_empty()).then(|| format!("{id}^{ns}"));
            }
            "RXA" => {
                doses.extend(current.take());
                rxa_n += 1;
                current = Some(rxa(
                    seg,
                    sep,
                    rxa_n,
                    orc_key.take(),
                    &patient_id,
                    &header.sending_facility,
                ));
            }
            "OBX" => {
                obx_n += 1;
                if let Some(Ok(d)) = current.as_mut() {
                    obx(seg, sep, obx_n, d);
                }
            }
            _ => {}
        }
    }
    doses.extend(current.take());
    // A VXU without RXA (a patient update) is valid; it moves no stock.
    Ok(Parsed { header, doses, errors })
}

fn rxa(
    seg: &er7::Segment,
    sep: &er7::Separators,
    n: usize,
    orc_key: Option<String>,
    patient_id: &str,
    sending_facility: &str,
) -> Result<Draft, Issue> {
    let at = |f| Some(("RXA", n, f));
    let given = text(seg, sep, 3, 1);
    if given.is_empty() {
        return Err(Issue::error(at(3), 101, "RXA-3 (date administered) is required"));
    }
    let (code, system) = (text(seg, sep, 5, 1), text(seg, sep, 5, 3).to_ascii_uppercase());
    if code.is_empty() {
        return Err(Issue::error(
            at(5),
            101,
            "RXA-5 (administered code: CVX or NDC) is required",
        ));
    }
    let vaccine = match system.as_str() {
        "CVX" => Vaccine::Cvx(Cvx::parse(&code).map_err(|e| Issue::error(at(5), 103, e.0))?),
        "NDC" | "NDC11" | "NDC10" => Vaccine::Ndc(Ndc::parse(&code).map_err(|e| Issue::error(at(5), 103, e.0))?),
        other => {
            return Err(Issue::error(
                at(5),
                103,
                format!("RXA-5.3 coding system {other:?} must be CVX or NDC"),
            ))
        }
    };
    // NIP001: 00 new record (given here); 01–08 historical. RXA-20: CP, PA, RE, NA.
    let source = text(seg, sep, 9, 1);
    let status = match text(seg, sep, 20, 1).to_ascii_uppercase() {
        s if s.is_empty() => "CP".to_string(),
        s => s,
    };
    if !["CP", "PA", "RE", "NA"].contains(&status.as_str()) {
        return Err(Issue::error(
            at(20),
            103,
            format!("RXA-20 {status:?} must be CP, PA, RE or NA"),
        ));
    }
    let historical = match source.as_str() {
        "" => text(seg, sep, 6, 1) == "999",
        "00" => false,
        s if s.len() == 2 && ("01".."09").contains(&s) => true,
        other => {
            return Err(Issue::error(
                at(9),
                103,
                format!("RXA-9 {other:?} must be 00 (new record) or 01–08 (historical)"),
            ))
        }
    };
    let action = match text(seg, sep, 21, 1).to_ascii_uppercase().as_str() {
        "" | "A" => Action::Add,
        "U" => Action::Update,
        "D" => Action::Delete,
        other => return Err(Issue::error(at(21), 103, format!("RXA-21 {other:?} must be A, U or D"))),
    };
    let lot_raw = text(seg, sep, 15, 1);
    let lot = if lot_raw.is_empty() {
        None
    } else {
        Some(LotNumber::parse(&lot_raw).map_err(|e| Issue::error(at(15), 102, e.0))?)
    };
    let given_here = !historical && ["CP", "PA"].contains(&status.as_str());
    let not_given = (!given_here).then(|| {
        if historical {
            format!("historical dose (RXA-9 {source}): given elsewhere, inventory unchanged")
        } else {
            format!("RXA-20 {status}: not administered, inventory unchanged")
        }
    });
    let rxa_facility = text(seg, sep, 11, 4);
    let (facility, facility_at) = if rxa_facility.is_empty() {
        (sending_facility.to_string(), ("MSH", 1, 4))
    } else {
        (rxa_facility, ("RXA", n, 11))
    };
    if facility.is_empty() {
        return Err(Issue::error(at(11), 101, "no facility: send RXA-11.4 or MSH-4"));
    }
    Ok(Draft {
        rxa: n,
        facility,
        facility_at,
        orc_key,
        patient_id: patient_id.to_string(),
        vaccine,
        lot,
        given,
        given_here,
        not_given,
        action,
        eligibility: None,
        funding_source: None,
        notes: vec![],
    })
}

fn obx(seg: &er7::Segment, sep: &er7::Separators, n: usize, d: &mut Draft) {
    let value = text(seg, sep, 5, 1).to_ascii_uppercase();
    match text(seg, sep, 3, 1).as_str() {
        // HL7 table 0064 (V06 and V08 are deprecated).
        "64994-7" => match Eligibility::parse(&value) {
            Ok(e) => d.eligibility = Some(e),
            Err(e) => d.notes.push(Issue::warning(
                Some(("OBX", n, 5)),
                103,
                format!("{e}; it was not used"),
            )),
        },
        "30963-3" => match FundingSource::parse(&value) {
            Ok(f) => d.funding_source = Some(f),
            Err(e) => d.notes.push(Issue::warning(
                Some(("OBX", n, 5)),
                103,
                format!("{e}; it was not used"),
            )),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "MSH|^~\\&|PEDSEHR|012345A|VFCMON|MDIIS|20250310093000-0500||VXU^V04^VXU_V04|MSG000123|P|2.5.1|||ER|AL|||||Z22^CDCPHINVS\n\
PID|1||MRN4471^^^PEDSEHR^MR||Doe^Avery^Lee^^^^L||20241105|F\n\
ORC|RE||ORD-99812^PEDSEHR\n\
RXA|0|1|20250310||116^Rotavirus, pentavalent^CVX|2|mL^mL^UCUM||00^New Record^NIP001||^^^012345A||||X123456|20260131|MSD^Merck and Co., Inc.^MVX|||CP|A\n\
OBX|1|CE|30963-3^Vaccine Funding Source^LN|1|VXC50^Public^CDCPHINVS||||||F\n\
OBX|2|CE|64994-7^Vaccine Funding Program Eligibility^LN|2|V02^VFC eligible-Medicaid^HL70064||||||F\n";

    #[test]
    fn the_domain_example_reads_as_one_dose_given_here() {
        let p = parse(EXAMPLE).unwrap();
        assert_eq!(p.header.control_id, "MSG000123");
        assert_eq!(p.header.sending_app, "PEDSEHR");
        assert!(p.errors.is_empty());
        let d = p.doses[0].as_ref().unwrap();
        assert_eq!(d.orc_key.as_deref(), Some("ORD-99812^PEDSEHR"));
        assert_eq!(d.patient_id, "MRN4471^PEDSEHR");
        assert_eq!(d.facility, "012345A");
        assert_eq!(d.lot.as_ref().unwrap().key(), "X123456");
        assert!(d.given_here);
        assert_eq!(d.eligibility, Some(Eligibility::V02));
        assert_eq!(d.funding_source, Some(FundingSource::Public));
        assert_eq!(d.vaccine, Vaccine::Cvx(Cvx::parse("116").unwrap()));
    }

    #[test]
    fn carriage_returns_separate_segments_too() {
        let p = parse(&EXAMPLE.replace('\n', "\r")).unwrap();
        assert_eq!(p.doses.len(), 1);
    }

    #[test]
    fn historical_and_refused_doses_are_not_given_here() {
        let hist = EXAMPLE.replace("00^New Record^NIP001", "01^Historical^NIP001");
        assert!(!parse(&hist).unwrap().doses[0].as_ref().unwrap().given_here);
        let refused = EXAMPLE.replace("|CP|A", "|RE|A");
        assert!(!parse(&refused).unwrap().doses[0].as_ref().unwrap().given_here);
    }

    #[test]
    fn a_message_that_is_not_a_vxu_is_refused() {
        let r = parse(&EXAMPLE.replace("VXU^V04^VXU_V04", "ADT^A08^ADT_A01")).unwrap_err();
        assert_eq!(r.issue.code, 200);
        assert_eq!(r.header.unwrap().control_id, "MSG000123");
        assert_eq!(parse("PID|1||X").unwrap_err().issue.code, 100);
    }

    #[test]
    fn a_bad_date_stops_only_its_dose() {
        let p = parse(&EXAMPLE.replace("|20250310||116", "|2025-03-10||116")).unwrap();
        let d = p.doses[0].as_ref().unwrap();
        let e = d
            .report(
                chrono_tz::America::New_York,
                &p.header,
                crate::hl7::dates::tests::EARLY_MORNING,
            )
            .unwrap_err();
        assert_eq!((e.code, e.at.unwrap().2), (102, 3));
    }
}
