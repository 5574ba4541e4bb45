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
    /// When the report that put the dose in this state was made (`None`: before that was kept).
    pub reported_at: Option<i64>,
}

/// Why a report changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nothing {
    /// A report older than the one on record: the later report has the last word.
    Stale,
    /// A correction to not given of a dose that already does not count.
    AlreadyNotCounted,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing(Nothing),
    /// A delete (or a correction to not given) of a dose not on record: kept as a dose in
    /// `status`, so that the report it corrects, arriving later (and older), changes nothing.
    Tombstone(Status),
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
/// delete), made at `reported_at`, does to the dose on record, if any.
pub fn step(prior: Option<Prior>, action: Action, counts: bool, reported_at: i64) -> Step {
    let Some(prior) = prior else {
        return match (action, counts) {
            (Action::Delete, _) => Step::Tombstone(Status::Deleted),
            (Action::Update, false) => Step::Tombstone(Status::NotGiven),
            (Action::Add, false) => Step::NotCounted,
            (_, true) => Step::Queue,
        };
    };
    if prior.reported_at.is_some_and(|on_record| on_record > reported_at) {
        return Step::Nothing(Nothing::Stale);
    }
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

impl Step {
    /// Whether the dose on record takes this report's time as its own: every step that speaks
    /// for the dose's state does; a resent history (which never undoes) and a stale report do not.
    pub fn records_time(self) -> bool {
        !matches!(self, Step::NotCounted | Step::Nothing(Nothing::Stale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Add, Delete, Update};
    use Status::{Decremented, Deleted, Dismissed, Exception, NotGiven};

    /// On record from a report made at 10; the reports of the table are made at 20.
    fn prior(status: Status, same: bool) -> Option<Prior> {
        Some(Prior {
            status,
            same,
            reported_at: Some(10),
        })
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
                Step::Tombstone(Deleted),
                "nothing to give back; the delete is kept",
            ),
            (
                None,
                Update,
                false,
                Step::Tombstone(NotGiven),
                "corrected to not given before the dose arrived: kept",
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
                step(*prior, *action, *counts, 20),
                *want,
                "{why}: {prior:?} {action:?} counts={counts}"
            );
        }
    }

    #[test]
    fn a_report_older_than_the_one_on_record_changes_nothing() {
        for status in [Decremented, Exception, Dismissed, Deleted, NotGiven] {
            for (action, counts) in [(Add, true), (Update, true), (Update, false), (Delete, false)] {
                assert_eq!(
                    step(prior(status, false), action, counts, 5),
                    Step::Nothing(Nothing::Stale)
                );
            }
        }
        let unknown_time = Some(Prior {
            status: Decremented,
            same: false,
            reported_at: None,
        });
        assert_eq!(
            step(unknown_time, Update, true, 5),
            RETAKE_MOVED,
            "recorded before times were kept"
        );
    }

    /// A report of one dose in the model: what it says, when it was made.
    #[derive(Debug, Clone, Copy)]
    struct Report {
        action: Action,
        /// The lot it names (0 or 1), or `None` when not given here.
        lot: Option<usize>,
        at: i64,
    }

    /// The stock of two lots and the dose on record after `reports` arrive in this order, as
    /// `doses::apply` carries out each step (every lot has stock: a counted new dose is taken).
    fn arrive(reports: &[Report]) -> ([i64; 2], Option<Status>) {
        let mut stock = [10i64; 2];
        let mut record: Option<(Status, usize, Option<i64>)> = None;
        for r in reports {
            let counts = r.lot.is_some() && r.action != Delete;
            let lot = r.lot.unwrap_or(0);
            let prior = record.map(|(status, on, reported_at)| Prior {
                status,
                same: r.lot == Some(on),
                reported_at,
            });
            let s = step(prior, r.action, counts, r.at);
            let at = s.records_time().then_some(r.at);
            let taken_from = |record: &Option<(Status, usize, Option<i64>)>| match record {
                Some((Decremented, on, _)) => Some(*on),
                _ => None,
            };
            record = match s {
                Step::Nothing(_) | Step::NotCounted => record.map(|(st, on, t)| (st, on, at.or(t))),
                Step::Duplicate => record.map(|(st, on, t)| (st, on, at.or(t))),
                Step::Tombstone(status) => Some((status, lot, at)),
                Step::Queue => {
                    stock[lot] -= 1;
                    Some((Decremented, lot, at))
                }
                Step::Retake { give_back, .. } => {
                    if let (true, Some(on)) = (give_back, taken_from(&record)) {
                        stock[on] += 1;
                    }
                    stock[lot] -= 1;
                    Some((Decremented, lot, at))
                }
                Step::End { give_back, status, .. } => {
                    if let (true, Some(on)) = (give_back, taken_from(&record)) {
                        stock[on] += 1;
                    }
                    record.map(|(_, on, _)| (status, on, at))
                }
            };
        }
        (stock, record.map(|(s, _, _)| s))
    }

    /// Every order of `reports`.
    fn orders(reports: &[Report]) -> Vec<Vec<Report>> {
        if reports.len() <= 1 {
            return vec![reports.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..reports.len() {
            let mut rest = reports.to_vec();
            let first = rest.remove(i);
            for mut o in orders(&rest) {
                o.insert(0, first);
                out.push(o);
            }
        }
        out
    }

    /// The property, exhaustively: for every three reports of one dose drawn from add,
    /// update (to either lot, or to not given) and delete, made one after another, every order of
    /// arrival leaves the same stock as the order they were made in.
    #[test]
    fn any_order_of_an_add_an_update_and_a_delete_leaves_the_same_stock() {
        let kinds = [
            (Add, Some(0)),
            (Add, Some(1)),
            (Add, None),
            (Update, Some(0)),
            (Update, Some(1)),
            (Update, None),
            (Delete, None),
        ];
        let mut checked = 0;
        for a in kinds {
            for b in kinds {
                for c in kinds {
                    let made: Vec<Report> = [a, b, c]
                        .iter()
                        .enumerate()
                        .map(|(i, (action, lot))| Report {
                            action: *action,
                            lot: *lot,
                            at: 100 + i as i64,
                        })
                        .collect();
                    let (want, _) = arrive(&made);
                    for order in orders(&made) {
                        let (got, _) = arrive(&order);
                        assert_eq!(got, want, "made {made:?}, arrived {order:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 7 * 7 * 7 * 6);
    }

    #[test]
    fn statuses_are_read_as_written() {
        for s in [Decremented, Exception, Dismissed, Deleted, NotGiven] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("gone"), None);
    }
}
