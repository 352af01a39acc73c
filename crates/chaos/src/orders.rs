//! The books of the routes profile's upserted table: per order, what the gateway answered for
//! each version and for the delete, and what row that allows at the end.
//!
//! The load keeps the workload simple enough that the final state is exactly computable:
//! - an order belongs to one load worker, which sends its versions 1, 2, 3, ... in that order
//!   (a retry resends a version with the same event id; the version guard makes arrival order
//!   irrelevant: the highest version written wins);
//! - a delete is the order's last event, sent only once every version sent so far was
//!   answered (202 or 4xx) and none was ever left without an answer, and at least one was
//!   accepted; all of an order's events share a record key, so the delete is written after
//!   every upsert of the order;
//! - versions answered 503, 429 or not at all are "uncertain": they may or may not be written.

use std::collections::BTreeSet;

/// What the gateway said about an order's delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeleteState {
    #[default]
    NotSent,
    /// Sent, never answered 202 (yet): the order takes no more events.
    Pending,
    Accepted,
    /// Only ever answered 4xx (never happens in the load: deletes go only in good requests).
    Refused,
}

/// One order's ledger.
#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    /// The last version handed out (versions start at 1).
    pub last_version: i64,
    /// Versions answered 202 at least once.
    pub accepted: BTreeSet<i64>,
    /// Versions sent and not answered 202 nor 4xx (yet).
    pub uncertain: BTreeSet<i64>,
    /// Versions only ever in requests answered 4xx: must never be the row's version.
    pub refused: BTreeSet<i64>,
    /// A version of it was once left without an answer: it is never deleted.
    pub ever_uncertain: bool,
    pub delete: DeleteState,
}

/// The order's row as stored: version, total (as PostgreSQL prints it) and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub version: i64,
    pub total: String,
    pub status: String,
}

/// How an order's row checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The row holds exactly the highest accepted version.
    Exact,
    /// Deleted, and absent.
    Deleted,
    /// Never accepted, and absent.
    NeverAccepted,
    /// Uncertain versions or delete: the row is one of the states they allow.
    Consistent,
}

impl OrderBook {
    /// Hands out the next version.
    pub fn next_version(&mut self) -> i64 {
        self.last_version += 1;
        self.last_version
    }

    /// Whether a delete may be sent now (see the module's rules).
    pub fn can_delete(&self) -> bool {
        self.delete == DeleteState::NotSent
            && self.uncertain.is_empty()
            && !self.ever_uncertain
            && !self.accepted.is_empty()
    }

    pub fn book_upsert(&mut self, version: i64, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => {
                self.accepted.insert(version);
                self.uncertain.remove(&version);
                self.refused.remove(&version);
            }
            Outcome::Refused => {
                if !self.accepted.contains(&version) && !self.uncertain.contains(&version) {
                    self.refused.insert(version);
                }
            }
            Outcome::Uncertain => {
                if !self.accepted.contains(&version) {
                    self.uncertain.insert(version);
                    self.refused.remove(&version);
                    self.ever_uncertain = true;
                }
            }
        }
    }

    pub fn book_delete(&mut self, outcome: Outcome) {
        self.delete = match (self.delete, outcome) {
            (_, Outcome::Accepted) | (DeleteState::Accepted, _) => DeleteState::Accepted,
            (DeleteState::Pending, Outcome::Refused) => DeleteState::Refused,
            (state, _) => state,
        };
    }

    /// Checks the stored row (or its absence) of order `order_id` against the books.
    pub fn check(&self, order_id: i64, row: Option<&OrderRow>) -> Result<Verdict, String> {
        if let Some(row) = row {
            if self.refused.contains(&row.version) {
                return Err(format!("order {order_id} holds version {}, which was only ever refused", row.version));
            }
            if !self.accepted.contains(&row.version) && !self.uncertain.contains(&row.version) {
                return Err(format!("order {order_id} holds version {}, which nobody sent", row.version));
            }
            let (total, status) = (crate::routes::total(order_id, row.version), crate::routes::status(row.version));
            if row.total != total || row.status != status {
                return Err(format!(
                    "order {order_id} at version {} holds total {} and status {} (expected {total} and {status}): \
                     columns from different events",
                    row.version, row.total, row.status
                ));
            }
        }
        let highest = self.accepted.last().copied();
        let stored = row.map(|r| r.version);
        match self.delete {
            DeleteState::Accepted => match stored {
                None => Ok(Verdict::Deleted),
                Some(v) => Err(format!("order {order_id} was deleted (202) and still holds version {v}")),
            },
            DeleteState::Pending => match stored {
                None => Ok(Verdict::Consistent),
                Some(v) if Some(v) == highest => Ok(Verdict::Consistent),
                Some(v) => Err(format!(
                    "order {order_id}: delete unconfirmed, so the row is absent or at version {highest:?}; found {v}"
                )),
            },
            DeleteState::NotSent | DeleteState::Refused if self.uncertain.is_empty() => match (stored, highest) {
                (None, None) => Ok(Verdict::NeverAccepted),
                (Some(v), Some(h)) if v == h => Ok(Verdict::Exact),
                (stored, highest) => Err(format!(
                    "order {order_id}: expected version {highest:?} (the highest answered 202), found {stored:?}"
                )),
            },
            DeleteState::NotSent | DeleteState::Refused => match (stored, highest) {
                (None, None) => Ok(Verdict::Consistent),
                (Some(v), Some(h)) if v >= h => Ok(Verdict::Consistent),
                (Some(_), None) => Ok(Verdict::Consistent),
                (stored, highest) => Err(format!(
                    "order {order_id}: expected at least version {highest:?} (the highest answered 202), found {stored:?}"
                )),
            },
        }
    }
}

/// The gateway's answer to a request, as the books see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202.
    Accepted,
    /// A 4xx other than 429.
    Refused,
    /// 503, 429, a timeout or no connection.
    Uncertain,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn row(order_id: i64, version: i64) -> OrderRow {
        OrderRow { version, total: crate::routes::total(order_id, version), status: crate::routes::status(version) }
    }

    #[test]
    fn the_highest_accepted_version_is_the_only_exact_row() {
        let mut b = OrderBook::default();
        for outcome in [Outcome::Accepted, Outcome::Accepted, Outcome::Refused] {
            let v = b.next_version();
            b.book_upsert(v, outcome);
        }
        assert_eq!(b.check(7, Some(&row(7, 2))), Ok(Verdict::Exact));
        assert!(b.check(7, Some(&row(7, 3))).is_err_and(|e| e.contains("only ever refused")));
        assert!(b.check(7, Some(&row(7, 1))).is_err());
        assert!(b.check(7, None).is_err());
        assert!(b.check(7, Some(&row(7, 9))).is_err_and(|e| e.contains("nobody sent")));
        let mixed = OrderRow { total: crate::routes::total(7, 1), ..row(7, 2) };
        assert!(b.check(7, Some(&mixed)).is_err_and(|e| e.contains("different events")));
    }

    #[test]
    fn a_delete_waits_for_every_answer_and_then_must_remove_the_row() {
        let mut b = OrderBook::default();
        assert!(!b.can_delete(), "nothing accepted yet");
        let v = b.next_version();
        b.book_upsert(v, Outcome::Uncertain);
        assert!(!b.can_delete());
        b.book_upsert(v, Outcome::Accepted);
        assert!(!b.can_delete(), "once left without an answer, never deleted");
        let mut b = OrderBook::default();
        let v = b.next_version();
        b.book_upsert(v, Outcome::Accepted);
        assert!(b.can_delete());
        b.delete = DeleteState::Pending;
        assert_eq!(b.check(1, None), Ok(Verdict::Consistent));
        assert_eq!(b.check(1, Some(&row(1, 1))), Ok(Verdict::Consistent));
        b.book_delete(Outcome::Accepted);
        assert_eq!(b.check(1, None), Ok(Verdict::Deleted));
        assert!(b.check(1, Some(&row(1, 1))).is_err());
        b.book_delete(Outcome::Uncertain);
        assert_eq!(b.delete, DeleteState::Accepted, "a later unanswered resend does not undo a 202");
    }

    proptest! {
        /// Whatever the answers, the row the version guard leaves (the highest version written,
        /// written = accepted plus any subset of the uncertain) passes, and so does a deleted
        /// order's absence; any other version fails.
        #[test]
        fn the_guarded_outcome_always_passes(
            answers in proptest::collection::vec((0u8..3, any::<bool>()), 1..20),
            delete in any::<bool>(),
        ) {
            let mut b = OrderBook::default();
            let mut written = Vec::new();
            for (answer, lands) in &answers {
                let v = b.next_version();
                let outcome = [Outcome::Accepted, Outcome::Refused, Outcome::Uncertain][usize::from(*answer)];
                b.book_upsert(v, outcome);
                if outcome == Outcome::Accepted || (outcome == Outcome::Uncertain && *lands) {
                    written.push(v);
                }
            }
            let stored = written.iter().max().copied();
            prop_assert!(b.check(3, stored.map(|v| row(3, v)).as_ref()).is_ok());
            if delete && b.can_delete() {
                b.delete = DeleteState::Pending;
                b.book_delete(Outcome::Accepted);
                prop_assert_eq!(b.check(3, None), Ok(Verdict::Deleted));
            }
            for v in 1..=b.last_version {
                if Some(v) != stored && b.uncertain.is_empty() && b.delete == DeleteState::NotSent {
                    prop_assert!(b.check(3, Some(&row(3, v))).is_err());
                }
            }
        }
    }
}
