//! The batching policy: a batch closes on rows, bytes or age, whichever comes first,
//! independent of how many records one poll returned.

use std::{ops::Deref, time::Duration};

use rdkafka::message::OwnedMessage;
use tokio::time::Instant;

use crate::flow::Buffered;

#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// Records waiting to be written, in offset order (`T`: a record, with whatever travels with it).
pub struct Pending<T = Buffered> {
    records: Vec<T>,
    bytes: usize,
    opened: Option<Instant>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self { records: Vec::new(), bytes: 0, opened: None }
    }
}

/// The bytes a record counts for in a batch.
pub fn record_bytes(msg: &OwnedMessage) -> usize {
    use rdkafka::Message;
    msg.payload().map_or(0, <[u8]>::len) + msg.key().map_or(0, <[u8]>::len)
}

impl<T: Deref<Target = OwnedMessage>> Pending<T> {
    pub fn push(&mut self, msg: T, now: Instant) {
        if self.records.is_empty() {
            self.opened = Some(now);
        }
        self.bytes += record_bytes(&msg);
        self.records.push(msg);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn first(&self) -> Option<&T> {
        self.records.first()
    }

    /// Whether the batch must close now. `target_rows` is the adaptive row target
    /// (at most `policy.max_rows`).
    pub fn is_full(&self, policy: &BatchPolicy, target_rows: usize) -> bool {
        self.records.len() >= target_rows.min(policy.max_rows).max(1) || self.bytes >= policy.max_bytes
    }

    /// When the batch must close at the latest, if it holds anything.
    pub fn deadline(&self, policy: &BatchPolicy) -> Option<Instant> {
        self.opened.map(|t| t + policy.max_age)
    }

    /// Takes the records out, leaving the batch empty.
    pub fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.opened = None;
        std::mem::take(&mut self.records)
    }

    /// Puts records back in front (they were not written), keeping offset order.
    pub fn restore_front(&mut self, mut records: Vec<T>, now: Instant) {
        if records.is_empty() {
            return;
        }
        self.bytes += records.iter().map(|r| record_bytes(r)).sum::<usize>();
        records.append(&mut self.records);
        self.records = records;
        self.opened = Some(self.opened.map_or(now, |t| t.min(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::{message::OwnedHeaders, Timestamp};

    fn msg(offset: i64, size: usize) -> Buffered {
        Buffered::untracked(OwnedMessage::new(
            Some(vec![b'x'; size]),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None::<OwnedHeaders>,
        ))
    }

    fn policy() -> BatchPolicy {
        BatchPolicy { max_rows: 3, max_bytes: 100, max_age: Duration::from_millis(200) }
    }

    #[test]
    fn closes_on_rows() {
        let now = Instant::now();
        let mut p = Pending::default();
        for i in 0..2 {
            p.push(msg(i, 1), now);
        }
        assert!(!p.is_full(&policy(), 500));
        p.push(msg(2, 1), now);
        assert!(p.is_full(&policy(), 500), "max_rows binds when the target is larger");
        assert_eq!(p.take().len(), 3);
        assert!(p.is_empty() && p.deadline(&policy()).is_none());
    }

    #[test]
    fn adaptive_target_binds_below_max_rows() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.push(msg(0, 1), now);
        assert!(p.is_full(&policy(), 1));
        assert!(!p.is_full(&policy(), 2));
    }

    #[test]
    fn closes_on_bytes() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.push(msg(0, 99), now);
        assert!(!p.is_full(&policy(), 500));
        p.push(msg(1, 1), now);
        assert!(p.is_full(&policy(), 500));
    }

    #[test]
    fn deadline_is_from_the_first_record() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.push(msg(0, 1), t0);
        p.push(msg(1, 1), t0 + Duration::from_millis(150));
        assert_eq!(p.deadline(&policy()), Some(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn restored_records_go_first() {
        use rdkafka::Message;
        let now = Instant::now();
        let mut p = Pending::default();
        p.push(msg(5, 1), now);
        p.restore_front(vec![msg(3, 1), msg(4, 1)], now);
        let offsets: Vec<i64> = p.take().iter().map(|m| m.offset()).collect();
        assert_eq!(offsets, vec![3, 4, 5]);
    }
}
