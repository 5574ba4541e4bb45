//! A dose as an EHR reports it, and what recording it did.

use super::super::catalog::Vaccine;
use crate::domain::{Eligibility, Funding, FundingSource, LotNumber};

/// RXA-21.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Update,
    Delete,
}

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Hl7,
    Json,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hl7 => "hl7",
            Source::Json => "json",
        }
    }

    pub fn parse(raw: &str) -> Option<Source> {
        match raw {
            "hl7" => Some(Source::Hl7),
            "json" => Some(Source::Json),
            _ => None,
        }
    }
}

/// A dose as an EHR reports it, parsed.
#[derive(Debug, Clone)]
pub struct DoseReport {
    /// ORC-3 as `id^namespace`.
    pub orc_key: Option<String>,
    /// PID-3 as `id^authority`.
    pub patient_id: String,
    pub vaccine: Vaccine,
    pub lot: Option<LotNumber>,
    /// When the dose was given, epoch ms, and its day as the EHR wrote it.
    pub administered_at: i64,
    pub day: chrono::NaiveDate,
    /// RXA-9 = 00 and RXA-20 CP or PA: the dose left this clinic's shelf.
    pub given_here: bool,
    /// Why not, when not (historical, refused, not administered).
    pub not_given: Option<String>,
    pub action: Action,
    pub eligibility: Option<Eligibility>,
    pub funding_source: Option<FundingSource>,
    pub message_id: Option<String>,
    pub source: Source,
    /// When the report was made, epoch ms (HL7 MSH-7, never after it arrived): of two reports
    /// of one dose, the later one has the last word, whatever order they arrive in.
    pub reported_at: i64,
}

impl DoseReport {
    /// Whether the report takes a dose off the shelf: given here, and not a delete.
    pub fn counts(&self) -> bool {
        self.given_here && self.action != Action::Delete
    }
}

/// Why a dose matched no stock (and waits in the decrement-exceptions queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// The vaccine is not in the catalog.
    UnknownVaccine,
    /// The report has no lot number.
    NoLot,
    /// No lot with that number and vaccine in this provider's inventory.
    UnknownLot,
    /// The provider holds it, but not at this location (or not with the funding named).
    LotNotHere,
    /// The lot is here, with nothing left on hand.
    NoStock,
    /// The lot is held with two fundings and the report says neither funding nor eligibility.
    AmbiguousFunding,
}

impl Unmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Unmatched::UnknownVaccine => "unknown_vaccine",
            Unmatched::NoLot => "no_lot",
            Unmatched::UnknownLot => "unknown_lot",
            Unmatched::LotNotHere => "lot_not_here",
            Unmatched::NoStock => "no_stock",
            Unmatched::AmbiguousFunding => "ambiguous_funding",
        }
    }
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Decremented {
        administration_id: i64,
        lot_id: i64,
        /// The lot number, for people.
        lot: String,
        unit_id: i64,
        flags: Vec<Flag>,
    },
    /// The same dose again: nothing changed.
    Duplicate { administration_id: i64 },
    /// Delete, or a correction to not given: the dose went back on the shelf.
    GivenBack { administration_id: i64 },
    /// Kept in the exceptions queue for someone to assign to a lot.
    Exception {
        administration_id: i64,
        exception_id: i64,
        reason: Unmatched,
        /// Why, for people.
        words: String,
    },
    /// Historical, refused or not administered: inventory unchanged.
    NotCounted { why: String },
    /// A delete of a dose not on record.
    NothingToDo { why: String },
}

/// Something a clinic must look at about a decremented dose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// Given from a lot expired on this day: revaccination review.
    ExpiredLot(chrono::NaiveDate),
    /// Given from a lot on hold (Do Not Use): revaccination review.
    HeldLot,
    /// Given from stock of the other funding: borrowing, reason to complete.
    Borrowing { eligibility: Eligibility, funding: Funding },
    /// The EHR named a funding source (OBX 30963-3) the stock used does not have.
    FundingMismatch { said: Funding, stock: Funding },
}

impl Outcome {
    /// The dose on record this outcome changed or found, if any.
    pub fn administration_id(&self) -> Option<i64> {
        match self {
            Outcome::Decremented { administration_id, .. }
            | Outcome::Duplicate { administration_id }
            | Outcome::GivenBack { administration_id }
            | Outcome::Exception { administration_id, .. } => Some(*administration_id),
            Outcome::NotCounted { .. } | Outcome::NothingToDo { .. } => None,
        }
    }

    /// A sentence for the clinic (HL7 ERR-8, JSON `message`) when the outcome needs a look.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            Outcome::Decremented { flags, lot, .. } => flags
                .iter()
                .map(|f| match f {
                    Flag::ExpiredLot(on) => format!(
                        "lot {lot} expired on {on}: the dose was decremented and is listed for revaccination review"
                    ),
                    Flag::HeldLot => format!(
                        "lot {lot} is on hold (Do Not Use): the dose was decremented and is listed for revaccination review"
                    ),
                    Flag::Borrowing { eligibility, funding } => format!(
                        "a {eligibility} patient was given {} stock of lot {lot}: recorded as borrowing; complete its reason",
                        funding.as_str()
                    ),
                    Flag::FundingMismatch { said, stock } => format!(
                        "the funding source says {} but lot {lot} is held here only as {} stock; check the EHR's funding",
                        said.as_str(),
                        stock.as_str()
                    ),
                })
                .collect(),
            Outcome::Exception { words, .. } => vec![format!("{words}; kept in the decrement-exceptions queue")],
            _ => vec![],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Decremented { .. } => "decremented",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::GivenBack { .. } => "given_back",
            Outcome::Exception { .. } => "exception",
            Outcome::NotCounted { .. } => "not_counted",
            Outcome::NothingToDo { .. } => "nothing_to_do",
        }
    }
}
