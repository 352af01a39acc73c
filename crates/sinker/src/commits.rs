//! The one place that commits offsets to Kafka. It remembers the last offset it sent per
//! partition and never sends a lower one, so Kafka's committed offset only moves forward even
//! when a worker's commit and the dispatcher's periodic re-commit race (both read `written` at
//! different moments). Sending the same offset again is allowed: that is what re-commits are for.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
};

use rdkafka::{
    consumer::{CommitMode, Consumer},
    Offset, TopicPartitionList,
};

use crate::consumer::SinkConsumer;

#[derive(Default)]
pub struct CommitLog {
    last: Mutex<HashMap<i32, i64>>,
}

impl CommitLog {
    /// Keeps the offsets that do not go backwards and records them as the last sent.
    pub fn admit(&self, offsets: &[(i32, i64)]) -> Vec<(i32, i64)> {
        let Ok(mut last) = self.last.lock() else {
            return Vec::new();
        };
        admit(&mut last, offsets)
    }

    /// Forgets partitions whose ownership changed: a new assignment may legitimately start
    /// below what this process once committed (the database is the source of truth).
    pub fn forget(&self, partitions: &[i32]) {
        if let Ok(mut last) = self.last.lock() {
            for p in partitions {
                last.remove(p);
            }
        }
    }

    /// Moves a partition's written offset back (a worker going back to a restored database's
    /// offset, or a log that started over) and forgets what was sent for it, in one step under
    /// the lock: a periodic re-commit that read the old, higher `written` cannot slip in between
    /// and put Kafka ahead of the database again (see [`Self::commit_written_async`]).
    pub fn rewind(&self, partition: i32, written: &AtomicI64, to: i64) {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        last.remove(&partition);
        written.store(to, Ordering::SeqCst);
    }

    /// The periodic re-commit: reads each partition's written offset under the lock, so a
    /// concurrent [`Self::rewind`] is either wholly before it or wholly after it.
    pub fn commit_written_async<'a>(
        &self,
        consumer: &SinkConsumer,
        topic: &str,
        written: impl IntoIterator<Item = (i32, &'a AtomicI64)>,
    ) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let offsets: Vec<(i32, i64)> =
            written.into_iter().map(|(p, w)| (p, w.load(Ordering::SeqCst))).filter(|&(_, w)| w >= 0).collect();
        send_async(consumer, topic, &admit(&mut last, &offsets))
    }

    /// Commits asynchronously. The filter and the enqueue happen under one lock, so the order
    /// of the requests (which the coordinator applies in order) is the order of the offsets.
    pub fn commit_async(&self, consumer: &SinkConsumer, topic: &str, offsets: &[(i32, i64)]) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        send_async(consumer, topic, &admit(&mut last, offsets))
    }

    /// Commits and waits. Used only for partitions without a running worker (revoked, or at
    /// shutdown), so no other commit of these partitions can interleave; the lock is not held
    /// while waiting for the broker.
    pub fn commit_sync(&self, consumer: &SinkConsumer, topic: &str, offsets: &[(i32, i64)]) {
        let admitted = self.admit(offsets);
        let Some(tpl) = to_list(topic, &admitted) else {
            return;
        };
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tracing::debug!(offsets = ?admitted, "committed offsets to kafka"),
            Err(error) => {
                tracing::warn!(%error, offsets = ?admitted, "kafka offset commit failed; the database keeps the position")
            }
        }
    }
}

/// Sends an async commit of what the log admitted (call with the log's lock held, so requests
/// leave in the order of their offsets). Returns whether it was sent.
fn send_async(consumer: &SinkConsumer, topic: &str, admitted: &[(i32, i64)]) -> bool {
    let Some(tpl) = to_list(topic, admitted) else {
        return true;
    };
    match consumer.commit(&tpl, CommitMode::Async) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, offsets = ?admitted, "kafka offset commit not sent; the database keeps the position");
            false
        }
    }
}

/// The pure rule: an offset below the last one sent for its partition is dropped.
fn admit(last: &mut HashMap<i32, i64>, offsets: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let mut admitted = Vec::with_capacity(offsets.len());
    for &(partition, offset) in offsets {
        if offset < 0 || last.get(&partition).is_some_and(|&l| offset < l) {
            continue;
        }
        last.insert(partition, offset);
        admitted.push((partition, offset));
    }
    admitted
}

fn to_list(topic: &str, offsets: &[(i32, i64)]) -> Option<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        if tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).is_err() {
            tracing::error!(partition, offset, "invalid offset to commit");
        }
    }
    (tpl.count() > 0).then_some(tpl)
}

#[cfg(test)]
mod tests {
    use super::CommitLog;

    #[test]
    fn a_lower_offset_is_never_sent_after_a_higher_one() {
        let log = CommitLog::default();
        assert_eq!(log.admit(&[(0, 100), (1, 5)]), vec![(0, 100), (1, 5)]);
        // The periodic re-commit read `written` before the worker's commit of 200 was sent.
        assert_eq!(log.admit(&[(0, 200)]), vec![(0, 200)]);
        assert_eq!(log.admit(&[(0, 100), (1, 5)]), vec![(1, 5)], "equal offsets are re-sent, lower ones never");
        assert_eq!(log.admit(&[(0, 199)]), vec![]);
        assert_eq!(log.admit(&[(0, -1)]), vec![], "unknown positions are not offsets");
    }

    #[test]
    fn a_new_assignment_may_start_lower() {
        let log = CommitLog::default();
        log.admit(&[(3, 500)]);
        log.forget(&[3]);
        assert_eq!(log.admit(&[(3, 120)]), vec![(3, 120)]);
    }

    #[test]
    fn a_rewind_lowers_written_and_lets_the_lower_offset_through_once() {
        let log = CommitLog::default();
        let written = std::sync::atomic::AtomicI64::new(900);
        log.admit(&[(2, 900)]);
        // The database went back to 300: the worker rewinds; what the re-commit reads from now
        // on is 300, and 300 is admitted although 900 was sent.
        log.rewind(2, &written, 300);
        assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 300);
        assert_eq!(log.admit(&[(2, written.load(std::sync::atomic::Ordering::SeqCst))]), vec![(2, 300)]);
        assert_eq!(log.admit(&[(2, 900)]), vec![(2, 900)], "moving forward again is normal");
        assert_eq!(log.admit(&[(2, 300)]), vec![], "but never back without a rewind");
    }
}
