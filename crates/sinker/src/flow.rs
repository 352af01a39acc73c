//! Flow control: the process-wide byte budget and the one pause state of every owned partition.
//!
//! Every record the poll thread hands on is *held* until it is written or dropped: its payload
//! and key bytes count in `sinker_buffered_bytes` through a guard that travels with the record
//! and releases them when it drops, on every path. A record that arrives while the budget is
//! used up is not handed on: its partition is paused and sought back to it, so it is fetched
//! again after the resume. The total therefore never exceeds the budget by more than one record.
//! Paused partitions resume, least-holding first, when the total falls to half the budget.
//!
//! A partition can be paused for two reasons: its worker holds `--max-buffered-records` (the
//! dispatcher's decision) or the byte budget (the poll thread's). librdkafka has one pause flag,
//! so both go through [`Flow::set`], which pauses on the first reason and resumes on the last.

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use prometheus::IntGauge;
use rdkafka::{consumer::Consumer, message::OwnedMessage, Message, Offset, TopicPartitionList};

use crate::{batch::record_bytes, consumer::SinkConsumer};

/// What librdkafka may fetch for one partition in one request (`max.partition.fetch.bytes`,
/// its default): how much headroom a resumed partition is expected to use at first.
pub const FETCH_ESTIMATE: usize = 1024 * 1024;

/// librdkafka's prefetch queue (`queued.max.messages.kbytes`, which for a subscribed consumer
/// bounds the one consumer queue, whatever the partition count): an eighth of the budget,
/// between 1 MiB and librdkafka's default of 64 MiB. `fetch.max.bytes` follows it (librdkafka
/// caps it at this value unless set), so librdkafka holds about twice this at most. An eighth,
/// not less: a drain of 6 partitions read 40% more records per second with 32 MiB than with
/// 16 MiB (BENCHMARKS.md, issue 13), for about 20 MB more RSS.
pub fn prefetch_kbytes(max_buffered_bytes: usize) -> usize {
    (max_buffered_bytes / 8 / 1024).clamp(1024, 65536)
}

/// Whether a record may be handed on: the budget is not used up yet. The record itself may
/// cross it, so the total stays below budget + one record (and a record larger than the whole
/// budget still passes when nothing else is held).
pub fn fits(total: usize, max_bytes: usize) -> bool {
    total < max_bytes
}

/// Which byte-paused partitions to resume: none while the total is above half the budget;
/// otherwise those holding least first, as many as the headroom can take one fetch each
/// (at least one).
pub fn resume_order(mut paused: Vec<(i32, usize)>, total: usize, max_bytes: usize, fetch_estimate: usize) -> Vec<i32> {
    if total > max_bytes / 2 || paused.is_empty() {
        return Vec::new();
    }
    let room = ((max_bytes - total) / fetch_estimate.max(1)).max(1);
    paused.sort_by_key(|&(partition, held)| (held, partition));
    paused.into_iter().take(room).map(|(p, _)| p).collect()
}

struct Budget {
    total: AtomicUsize,
    gauge: IntGauge,
}

/// The bytes of one record, counted while it is held.
struct Held {
    budget: Arc<Budget>,
    account: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.account.fetch_sub(self.bytes, Ordering::SeqCst);
        self.budget.total.fetch_sub(self.bytes, Ordering::SeqCst);
        self.budget.gauge.sub(self.bytes as i64);
    }
}

/// A record on its way to being written, with its bytes counted until it drops.
pub struct Buffered {
    msg: OwnedMessage,
    _held: Option<Held>,
}

impl Buffered {
    /// A record outside any budget (tests).
    pub fn untracked(msg: OwnedMessage) -> Self {
        Self { msg, _held: None }
    }
}

impl Deref for Buffered {
    type Target = OwnedMessage;

    fn deref(&self) -> &OwnedMessage {
        &self.msg
    }
}

impl std::fmt::Debug for Buffered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffered({}:{})", self.msg.partition(), self.msg.offset())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The partition's worker holds `--max-buffered-records`.
    Records,
    /// The process holds `--max-buffered-bytes`.
    Bytes,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    records: bool,
    bytes: bool,
}

impl Paused {
    fn any(self) -> bool {
        self.records || self.bytes
    }
}

/// What librdkafka must be told when a partition's pause reasons change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    Pause,
    Resume,
    Unchanged,
}

/// Sets or clears one reason: pause on the first reason, resume when none is left.
pub fn transition(before: Paused, reason: Reason, on: bool) -> (Paused, Fetch) {
    let mut after = before;
    match reason {
        Reason::Records => after.records = on,
        Reason::Bytes => after.bytes = on,
    }
    let fetch = match (before.any(), after.any()) {
        (false, true) => Fetch::Pause,
        (true, false) => Fetch::Resume,
        _ => Fetch::Unchanged,
    };
    (after, fetch)
}

#[derive(Default)]
struct State {
    paused: HashMap<i32, Paused>,
    accounts: HashMap<i32, Arc<AtomicUsize>>,
}

pub struct Flow {
    topic: String,
    max_bytes: usize,
    budget: Arc<Budget>,
    paused_gauge: IntGauge,
    state: Mutex<State>,
}

impl Flow {
    pub fn new(topic: String, max_bytes: usize, bytes_gauge: IntGauge, paused_gauge: IntGauge) -> Self {
        bytes_gauge.set(0);
        Self {
            topic,
            max_bytes,
            budget: Arc::new(Budget { total: AtomicUsize::new(0), gauge: bytes_gauge }),
            paused_gauge,
            state: Mutex::new(State::default()),
        }
    }

    pub fn total(&self) -> usize {
        self.budget.total.load(Ordering::SeqCst)
    }

    /// Called by the poll thread for every record. Returns the record with its bytes counted,
    /// or None when the budget is used up: the partition is then paused and sought back to
    /// this record, which is fetched again after the resume.
    pub fn admit(&self, consumer: &SinkConsumer, msg: OwnedMessage) -> Option<Buffered> {
        let partition = msg.partition();
        if !fits(self.total(), self.max_bytes) {
            if self.set(consumer, partition, Reason::Bytes, true) {
                tracing::debug!(partition, held = self.total(), "partition paused: the byte budget is used up");
            }
            match consumer.seek(&self.topic, partition, Offset::Offset(msg.offset()), Duration::from_secs(5)) {
                Ok(()) => return None,
                // Without the seek the record would be skipped on resume: keep it, over budget.
                Err(error) => {
                    tracing::warn!(%error, partition, offset = msg.offset(), "could not seek a paused partition back; keeping the record over the byte budget")
                }
            }
        }
        let bytes = record_bytes(&msg);
        let account = match self.state.lock() {
            Ok(mut state) => state.accounts.entry(partition).or_default().clone(),
            Err(_) => Arc::default(),
        };
        account.fetch_add(bytes, Ordering::SeqCst);
        self.budget.total.fetch_add(bytes, Ordering::SeqCst);
        self.budget.gauge.add(bytes as i64);
        Some(Buffered { msg, _held: Some(Held { budget: self.budget.clone(), account, bytes }) })
    }

    /// Sets or clears one reason for a partition's pause; pauses it in librdkafka on its first
    /// reason and resumes it when none is left. Returns whether the reason changed.
    pub fn set(&self, consumer: &SinkConsumer, partition: i32, reason: Reason, on: bool) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let before = state.paused.get(&partition).copied().unwrap_or_default();
        let (after, fetch) = transition(before, reason, on);
        if fetch != Fetch::Unchanged {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, partition);
            let result = if fetch == Fetch::Pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
            if let Err(error) = result {
                tracing::warn!(%error, partition, ?fetch, "could not change the partition's fetch state");
                return false;
            }
            if fetch == Fetch::Pause {
                self.paused_gauge.inc();
            } else {
                self.paused_gauge.dec();
            }
        }
        if after.any() {
            state.paused.insert(partition, after);
        } else {
            state.paused.remove(&partition);
        }
        before != after
    }

    /// Resumes byte-paused partitions once the total is at half the budget or below, least
    /// holding first. Called on the dispatcher's tick.
    pub fn resume_within_budget(&self, consumer: &SinkConsumer) {
        let total = self.total();
        if total > self.max_bytes / 2 {
            return;
        }
        let candidates: Vec<(i32, usize)> = match self.state.lock() {
            Ok(state) => state
                .paused
                .iter()
                .filter(|(_, p)| p.bytes)
                .map(|(&partition, _)| {
                    (partition, state.accounts.get(&partition).map_or(0, |a| a.load(Ordering::SeqCst)))
                })
                .collect(),
            Err(_) => return,
        };
        let order = resume_order(candidates, total, self.max_bytes, FETCH_ESTIMATE);
        if !order.is_empty() {
            tracing::debug!(partitions = ?order, held = total, "byte budget below half; resuming partitions");
        }
        for partition in order {
            self.set(consumer, partition, Reason::Bytes, false);
        }
    }

    /// Forgets partitions this process no longer owns or owns afresh (their librdkafka pause
    /// is cleared by the assignment).
    pub fn forget(&self, partitions: &[i32]) {
        if let Ok(mut state) = self.state.lock() {
            for partition in partitions {
                if state.paused.remove(partition).is_some_and(Paused::any) {
                    self.paused_gauge.dec();
                }
                state.accounts.remove(partition);
            }
        }
    }

    pub fn paused_partitions(&self) -> Vec<i32> {
        self.state.lock().map(|s| s.paused.keys().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_passes_while_the_budget_is_not_used_up() {
        assert!(fits(0, 100));
        assert!(fits(99, 100), "the record may cross the budget: the bound is budget + one record");
        assert!(!fits(100, 100));
        assert!(!fits(150, 100));
        assert!(fits(0, 1), "a record larger than the budget passes when nothing is held");
    }

    #[test]
    fn a_partition_paused_for_two_reasons_resumes_only_when_both_are_gone() {
        let none = Paused::default();
        let (records, fetch) = transition(none, Reason::Records, true);
        assert_eq!(fetch, Fetch::Pause);
        let (both, fetch) = transition(records, Reason::Bytes, true);
        assert_eq!(fetch, Fetch::Unchanged);
        let (bytes, fetch) = transition(both, Reason::Records, false);
        assert_eq!(fetch, Fetch::Unchanged, "still over the byte budget");
        assert_eq!(transition(bytes, Reason::Bytes, true), (bytes, Fetch::Unchanged), "setting twice is a no-op");
        assert_eq!(transition(bytes, Reason::Bytes, false), (none, Fetch::Resume));
        assert_eq!(transition(none, Reason::Bytes, false), (none, Fetch::Unchanged));
    }

    #[test]
    fn nothing_resumes_above_half_the_budget() {
        assert_eq!(resume_order(vec![(1, 10), (2, 0)], 51, 100, 10), Vec::<i32>::new());
        assert_eq!(resume_order(vec![], 0, 100, 10), Vec::<i32>::new());
    }

    #[test]
    fn least_holding_resume_first_as_many_as_the_headroom_takes() {
        let paused = vec![(7, 300), (3, 0), (5, 100), (1, 100), (9, 50)];
        // 1000 - 400 = 600 of headroom, 200 per fetch: three partitions.
        assert_eq!(resume_order(paused.clone(), 400, 1000, 200), vec![3, 9, 1]);
        // Headroom for less than one fetch still resumes one, or nothing would ever move.
        assert_eq!(resume_order(paused, 500, 1000, 2000), vec![3]);
    }

    #[test]
    fn prefetch_follows_the_budget_within_bounds() {
        assert_eq!(prefetch_kbytes(256 << 20), 32 * 1024, "the default budget prefetches 32 MiB");
        assert_eq!(prefetch_kbytes(64 << 20), 8 * 1024);
        assert_eq!(prefetch_kbytes(1 << 20), 1024);
        assert_eq!(prefetch_kbytes(16 << 30), 65536);
    }

    #[test]
    fn every_dropped_record_releases_its_bytes() {
        use rdkafka::{message::OwnedHeaders, Timestamp};
        let gauge = IntGauge::new("b", "b").expect("gauge");
        let flow = Flow::new("t".into(), 1000, gauge.clone(), IntGauge::new("p", "p").expect("gauge"));
        let account = Arc::new(AtomicUsize::new(0));
        let held = |bytes: usize| {
            let msg = OwnedMessage::new(
                Some(vec![0; bytes]),
                Some(vec![1; 3]),
                "t".into(),
                Timestamp::NotAvailable,
                0,
                0,
                None::<OwnedHeaders>,
            );
            let size = record_bytes(&msg);
            account.fetch_add(size, Ordering::SeqCst);
            flow.budget.total.fetch_add(size, Ordering::SeqCst);
            flow.budget.gauge.add(size as i64);
            Buffered { msg, _held: Some(Held { budget: flow.budget.clone(), account: account.clone(), bytes: size }) }
        };
        let a = held(97);
        let b = vec![held(10), held(20)];
        assert_eq!((flow.total(), gauge.get(), account.load(Ordering::SeqCst)), (100 + 13 + 23, 136, 136));
        drop(b);
        assert_eq!((flow.total(), gauge.get()), (100, 100));
        drop(a);
        assert_eq!((flow.total(), gauge.get(), account.load(Ordering::SeqCst)), (0, 0, 0));
    }
}
