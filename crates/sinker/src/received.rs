//! What a partition worker has received lately, to tell a record delivered again from a log
//! that started over.
//!
//! One fetch stream hands out offsets in increasing order, but librdkafka can deliver a record
//! a second time: a partition paused from another thread while the poll thread is handing out
//! its last record resumes from that record again (librdkafka saves the application's position
//! when the pause is served, and the record in flight has not advanced it yet). A step back is
//! also what a recreated topic looks like (its log starts again at 0). The two need opposite
//! answers: a record received again must be dropped (in a table without a key, writing it again
//! is a duplicate row), a log that started over must be written again from its start.
//!
//! The worker keeps the offsets and fingerprints (timestamp, key and payload) of the last
//! [`REMEMBERED`] records. A record at or below the last offset whose fingerprint is the one
//! received at that offset is a delivery again; anything else below is a new log.

use std::{
    collections::VecDeque,
    hash::{BuildHasher, Hash, Hasher},
};

use rdkafka::{message::OwnedMessage, Message};

/// How many records back a delivery again is recognised. librdkafka's re-delivery goes back
/// one record; the margin costs 16 bytes a record.
pub const REMEMBERED: usize = 256;

/// How a record relates to what the worker received before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Above everything received (gaps are normal: compaction, transaction markers).
    Next,
    /// A record already received, delivered again: drop it.
    Again,
    /// Below what was received, and not a record received before: the log started over.
    StartedOver,
}

/// A record's identity beyond its offset: the same offset in a recreated topic carries another
/// record, with another timestamp at least.
pub fn fingerprint(msg: &OwnedMessage) -> u64 {
    // foldhash, not SipHash: a fingerprint is compared only with the same partition's own
    // records in this process, and SipHash of every payload cost 3% of the sinker's CPU.
    let mut hasher = foldhash::quality::FixedState::default().build_hasher();
    msg.timestamp().to_millis().hash(&mut hasher);
    msg.key().hash(&mut hasher);
    msg.payload().hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, Default)]
pub struct Received {
    /// (offset, fingerprint), oldest first, offsets increasing.
    recent: VecDeque<(i64, u64)>,
}

impl Received {
    pub fn last(&self) -> Option<i64> {
        self.recent.back().map(|&(offset, _)| offset)
    }

    /// Classifies a record. `position` is where the worker was assigned to start (or has
    /// written up to): before anything was received, a first record below it means librdkafka
    /// reset a start past the log end (auto.offset.reset after the topic was recreated).
    pub fn classify(&self, offset: i64, fingerprint: u64, position: Option<i64>) -> Arrival {
        let Some(last) = self.last() else {
            return if position.is_some_and(|p| offset < p) { Arrival::StartedOver } else { Arrival::Next };
        };
        if offset > last {
            return Arrival::Next;
        }
        match self.recent.binary_search_by_key(&offset, |&(o, _)| o) {
            Ok(i) if self.recent[i].1 == fingerprint => Arrival::Again,
            _ => Arrival::StartedOver,
        }
    }

    /// Remembers a record that was [`Arrival::Next`].
    pub fn push(&mut self, offset: i64, fingerprint: u64) {
        debug_assert!(self.last().is_none_or(|last| offset > last), "offsets only go up");
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back((offset, fingerprint));
    }

    /// Forgets everything: the fetch position moved (a seek back, a log that started over).
    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Arrival, Received, REMEMBERED};

    fn received(offsets: impl IntoIterator<Item = i64>) -> Received {
        let mut r = Received::default();
        for o in offsets {
            r.push(o, o as u64 * 7);
        }
        r
    }

    #[test]
    fn the_stream_goes_up_with_gaps() {
        let r = received([10]);
        assert_eq!(r.classify(11, 0, Some(11)), Arrival::Next);
        assert_eq!(r.classify(50, 0, Some(11)), Arrival::Next);
        // Records below the position but above the last one: another owner wrote further.
        let r = received([10]);
        assert_eq!(r.classify(12, 0, Some(30)), Arrival::Next);
    }

    #[test]
    fn the_last_record_delivered_again_after_a_resume_is_dropped() {
        let r = received(20..30);
        assert_eq!(r.classify(29, 29 * 7, Some(30)), Arrival::Again);
        assert_eq!(r.classify(25, 25 * 7, Some(30)), Arrival::Again);
    }

    #[test]
    fn the_same_offset_with_another_record_is_a_new_log() {
        let r = received(20..30);
        assert_eq!(r.classify(29, 1, Some(30)), Arrival::StartedOver);
        assert_eq!(r.classify(0, 0, Some(30)), Arrival::StartedOver, "below what is remembered");
        // A gap in what was received (compaction): an offset never seen is a new log.
        let r = received([10, 12]);
        assert_eq!(r.classify(11, 11 * 7, Some(13)), Arrival::StartedOver);
    }

    #[test]
    fn before_any_record_only_a_start_below_the_position_is_a_new_log() {
        let r = Received::default();
        assert_eq!(r.classify(0, 0, Some(30)), Arrival::StartedOver);
        assert_eq!(r.classify(30, 0, Some(30)), Arrival::Next);
        assert_eq!(r.classify(80, 0, Some(30)), Arrival::Next, "a deleted range: a forward gap");
        assert_eq!(r.classify(0, 0, None), Arrival::Next);
    }

    proptest! {
        #[test]
        fn only_the_last_records_are_remembered(n in 1_i64..2000) {
            let r = received(0..n);
            let oldest = (n - REMEMBERED as i64).max(0);
            for o in [0, oldest, n - 1] {
                let expected = if o >= oldest { Arrival::Again } else { Arrival::StartedOver };
                prop_assert_eq!(r.classify(o, o as u64 * 7, Some(n)), expected);
            }
        }
    }
}
