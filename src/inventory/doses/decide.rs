//! What a dose report does to a dose on record: a pure function of the record's state, the
//! report's action and whether it counts, so every case is a row of a table test.
//!
//! docs/domain.md, "Doses administered over HL7": only an update (RXA-21 `U`) or a delete
//! (`D`) corrects a dose on record — a history resent with the dose marked historical or
//! refused does not undo it; the same dose sent again changes nothing; a delete gives the
//! dose back; an update moves the decrement.

use super::report::Action;

/// Where a dose on record stands (`administrations.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Taken off the shelf.
    Decremented,
    /// Waiting in the decrement-exceptions queue.
    Exception,
    /// Taken off the queue without a decrement.
    Dismissed,
    /// The EHR deleted it.
    Deleted,
    /// Corrected to not given (refused, not administered, historical).
    NotGiven,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Decremented => "decremented",
            Status::Exception => "exception",
            Status::Dismissed => "dismissed",
            Status::Deleted => "deleted",
            Status::NotGiven => "not_given",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        [
            Status::Decremented,
            Status::Exception,
            Status::Dismissed,
            Status::Deleted,
            Status::NotGiven,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// The dose on record, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prior {
    pub status: Status,
    /// The report names the same lot and vaccine as the record.
    pub same: bool,
}

/// Why a report changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nothing {
    /// A delete of a dose not on record.
    NoSuchDose,
    /// A correction to not given of a dose that already does not count.
    AlreadyNotCounted,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing(Nothing),
    /// Not given here (historical, refused, not administered): inventory unchanged.
    NotCounted,
    /// The same dose again.
    Duplicate,
    /// A new dose that matched no stock: into the exceptions queue, never dropped.
    Queue,
    /// Take the dose (again) off the shelf, after giving back the earlier decrement and closing
    /// its queued exceptions as these say.
    Retake {
        give_back: bool,
        close_exceptions: bool,
    },
    /// The dose no longer counts: give back / close as these say, and end it with `status`.
    End {
        give_back: bool,
        close_exceptions: bool,
        status: Status,
    },
}

/// What a report with `action` (which `counts` when the dose was given here and is not a
/// delete) does to the dose on record, if any.
pub fn step(prior: Option<Prior>, action: Action, counts: bool) -> Step {
    let Some(prior) = prior else {
        return match (action, counts) {
            (Action::Delete, _) => Step::Nothing(Nothing::NoSuchDose),
            (_, false) => Step::NotCounted,
            (_, true) => Step::Queue,
        };
    };
    let ended = if action == Action::Delete {
        Status::Deleted
    } else {
        Status::NotGiven
    };
    match prior.status {
        _ if action == Action::Add && !counts => Step::NotCounted,
        Status::Decremented | Status::Exception | Status::Dismissed
            if counts && prior.same && action != Action::Update =>
        {
            Step::Duplicate
        }
        Status::Decremented if counts => Step::Retake {
            give_back: true,
            close_exceptions: false,
        },
        Status::Decremented => Step::End {
            give_back: true,
            close_exceptions: false,
            status: ended,
        },
        Status::Exception if counts => Step::Retake {
            give_back: false,
            close_exceptions: true,
        },
        Status::Exception => Step::End {
            give_back: false,
            close_exceptions: true,
            status: ended,
        },
        // Deleted, not given or dismissed before, and given now: record it again.
        _ if counts => Step::Retake {
            give_back: false,
            close_exceptions: false,
        },
        _ => Step::Nothing(Nothing::AlreadyNotCounted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Add, Delete, Update};
    use Status::{Decremented, Deleted, Dismissed, Exception, NotGiven};

    fn prior(status: Status, same: bool) -> Option<Prior> {
        Some(Prior { status, same })
    }

    const RETAKE_MOVED: Step = Step::Retake {
        give_back: true,
        close_exceptions: false,
    };
    const RETAKE_QUEUED: Step = Step::Retake {
        give_back: false,
        close_exceptions: true,
    };
    const RETAKE: Step = Step::Retake {
        give_back: false,
        close_exceptions: false,
    };

    #[test]
    fn prior_state_times_action_times_counts_gives_the_step() {
        let table: &[(Option<Prior>, Action, bool, Step, &str)] = &[
            (None, Add, true, Step::Queue, "a new dose matching no stock is queued"),
            (
                None,
                Add,
                false,
                Step::NotCounted,
                "a new historical dose changes nothing",
            ),
            (
                None,
                Update,
                true,
                Step::Queue,
                "an update of an unknown dose is a new dose",
            ),
            (
                None,
                Delete,
                false,
                Step::Nothing(Nothing::NoSuchDose),
                "nothing to give back",
            ),
            (
                prior(Decremented, true),
                Add,
                true,
                Step::Duplicate,
                "the same dose again",
            ),
            (
                prior(Exception, true),
                Add,
                true,
                Step::Duplicate,
                "still queued, same dose",
            ),
            (
                prior(Dismissed, true),
                Add,
                true,
                Step::Duplicate,
                "dismissed stays dismissed",
            ),
            (
                prior(Decremented, false),
                Add,
                true,
                RETAKE_MOVED,
                "another lot: the decrement moves",
            ),
            (
                prior(Decremented, true),
                Update,
                true,
                RETAKE_MOVED,
                "an update always re-takes",
            ),
            (
                prior(Decremented, true),
                Add,
                false,
                Step::NotCounted,
                "a resent history never undoes",
            ),
            (
                prior(Decremented, true),
                Delete,
                false,
                Step::End {
                    give_back: true,
                    close_exceptions: false,
                    status: Deleted,
                },
                "a delete gives the dose back",
            ),
            (
                prior(Decremented, true),
                Update,
                false,
                Step::End {
                    give_back: true,
                    close_exceptions: false,
                    status: NotGiven,
                },
                "corrected to not given: back on the shelf",
            ),
            (
                prior(Exception, false),
                Add,
                true,
                RETAKE_QUEUED,
                "a corrected lot leaves the queue",
            ),
            (
                prior(Exception, true),
                Delete,
                false,
                Step::End {
                    give_back: false,
                    close_exceptions: true,
                    status: Deleted,
                },
                "a queued dose deleted: the exception closes",
            ),
            (
                prior(Deleted, true),
                Add,
                true,
                RETAKE,
                "deleted, then given: recorded again",
            ),
            (prior(NotGiven, false), Update, true, RETAKE, "not given, then given"),
            (
                prior(Dismissed, false),
                Update,
                true,
                RETAKE,
                "dismissed, then corrected",
            ),
            (
                prior(Deleted, true),
                Delete,
                false,
                Step::Nothing(Nothing::AlreadyNotCounted),
                "deleted twice",
            ),
        ];
        for (prior, action, counts, want, why) in table {
            assert_eq!(
                step(*prior, *action, *counts),
                *want,
                "{why}: {prior:?} {action:?} counts={counts}"
            );
        }
    }

    #[test]
    fn statuses_are_read_as_written() {
        for s in [Decremented, Exception, Dismissed, Deleted, NotGiven] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("gone"), None);
    }
}
