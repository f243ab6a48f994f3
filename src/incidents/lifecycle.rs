//! The incident lifecycle: which status changes are legal and what each one
//! does to the incident's timestamps.
//!
//! ```text
//! open ──► investigating ──► resolved ──► closed
//!   │                          ▲   │
//!   └──────────────────────────┘   └──► investigating (reopen)
//! ```
//!
//! Nothing leaves `closed`. Staying in the same status is not a transition.

use chrono::{DateTime, Utc};

use super::model::Status;
use crate::error::{AppError, AppResult};

/// Whether `from → to` is a legal transition.
pub fn is_legal(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (Open, Investigating)
            | (Open, Resolved)
            | (Investigating, Resolved)
            | (Resolved, Closed)
            | (Resolved, Investigating)
    )
}

/// Checks `from → to`; an illegal transition is `BAD_USER_INPUT` naming both states.
pub fn check(from: Status, to: Status) -> AppResult<()> {
    if is_legal(from, to) {
        return Ok(());
    }
    let why = if from == Status::Closed {
        "; a closed incident cannot change status"
    } else if from == to {
        "; the incident is already in that status"
    } else {
        ""
    };
    Err(AppError::bad_input(
        "status",
        format!("an incident cannot go from {from} to {to}{why}"),
    ))
}

/// The timestamps a transition sets or clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamps {
    /// `acknowledgedAt` after the transition.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// `resolvedAt` after the transition.
    pub resolved_at: Option<DateTime<Utc>>,
    /// `closedAt` after the transition.
    pub closed_at: Option<DateTime<Utc>>,
}

/// What a legal transition `from → to` at `now` does to the stamps:
/// resolving sets `resolvedAt`, reopening clears it, closing sets
/// `closedAt`, and starting to investigate acknowledges the incident if
/// nobody had yet.
pub fn apply(from: Status, to: Status, before: Stamps, now: DateTime<Utc>) -> Stamps {
    let mut after = before;
    match to {
        Status::Investigating => {
            if after.acknowledged_at.is_none() {
                after.acknowledged_at = Some(now);
            }
            if from == Status::Resolved {
                after.resolved_at = None;
            }
        }
        Status::Resolved => after.resolved_at = Some(now),
        Status::Closed => after.closed_at = Some(now),
        Status::Open => {}
    }
    after
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGAL: [(Status, Status); 5] = [
        (Status::Open, Status::Investigating),
        (Status::Open, Status::Resolved),
        (Status::Investigating, Status::Resolved),
        (Status::Resolved, Status::Closed),
        (Status::Resolved, Status::Investigating),
    ];

    #[test]
    fn exactly_the_five_documented_transitions_are_legal() {
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    is_legal(from, to),
                    LEGAL.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn nothing_leaves_closed() {
        for to in Status::ALL {
            let e = check(Status::Closed, to).unwrap_err();
            assert!(e.message.contains("closed"), "{}", e.message);
        }
    }

    #[test]
    fn an_illegal_transition_names_both_states() {
        let e = check(Status::Open, Status::Closed).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::BadUserInput);
        assert_eq!(e.field.as_deref(), Some("status"));
        assert!(e.message.contains("from open to closed"), "{}", e.message);
    }

    #[test]
    fn resolving_sets_resolved_at_and_reopening_clears_it() {
        let t0 = crate::util::now();
        let t1 = t0 + chrono::Duration::seconds(10);
        let none = Stamps {
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
        };
        let resolved = apply(Status::Open, Status::Resolved, none, t0);
        assert_eq!(resolved.resolved_at, Some(t0));
        assert_eq!(resolved.acknowledged_at, None);
        let reopened = apply(Status::Resolved, Status::Investigating, resolved, t1);
        assert_eq!(reopened.resolved_at, None);
        assert_eq!(reopened.acknowledged_at, Some(t1));
        let closed = apply(Status::Resolved, Status::Closed, resolved, t1);
        assert_eq!(closed.closed_at, Some(t1));
        assert_eq!(closed.resolved_at, Some(t0));
    }

    #[test]
    fn investigating_keeps_an_earlier_acknowledgement() {
        let t0 = crate::util::now();
        let before = Stamps {
            acknowledged_at: Some(t0),
            resolved_at: None,
            closed_at: None,
        };
        let after = apply(
            Status::Open,
            Status::Investigating,
            before,
            t0 + chrono::Duration::seconds(5),
        );
        assert_eq!(after.acknowledged_at, Some(t0));
    }
}
