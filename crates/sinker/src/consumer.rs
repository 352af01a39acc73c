//! The Kafka side: one thread that polls the consumer and turns messages and rebalances into
//! [`PollEvent`]s for the async dispatcher, which owns all state (Quickwit's pattern).
//!
//! Rebalance callbacks run inside `poll`, on the poll thread. On assignment the callback reads
//! the partitions' stored offsets from the database and Kafka's committed offsets, and assigns
//! each partition at the larger one. On revocation it hands the partitions to the dispatcher,
//! waits until their workers wrote (or gave up on) what they buffered, commits the written
//! offsets to Kafka, and only then lets the revocation complete.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc, Arc, Mutex,
    },
    thread,
    time::Duration,
};

use rdkafka::{
    client::ClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol},
    error::{KafkaError, KafkaResult},
    statistics::Statistics,
    types::{RDKafkaErrorCode, RDKafkaRespErr},
    Offset, TopicPartitionList,
};
use tokio::{runtime::Handle, sync::mpsc};

use crate::{
    commits::CommitLog,
    flow::{Buffered, Flow},
    metrics::Metrics,
    store::Store,
};

pub type SinkConsumer = BaseConsumer<SinkContext>;

/// What the poll thread tells the dispatcher, in the order it happened.
#[derive(Debug)]
pub enum PollEvent {
    /// A record, its bytes counted in the budget until it is written or dropped.
    Message(Buffered),
    /// Newly owned partitions, each with the offset it was assigned at (None: Kafka's
    /// auto.offset.reset decides, nothing was ever written).
    Assigned(Vec<(i32, Option<i64>)>),
    /// Partitions being taken away. `lost`: the group already gave them to someone else, so
    /// nothing more may be written. The dispatcher answers with each partition's written
    /// next offset.
    Revoked { partitions: Vec<i32>, lost: bool, ack: std_mpsc::SyncSender<Vec<(i32, i64)>> },
}

/// (low, high) watermarks per partition, from librdkafka's statistics.
pub type Watermarks = Arc<Mutex<HashMap<i32, (i64, i64)>>>;

pub struct SinkContext {
    pub topic: String,
    pub events: mpsc::Sender<PollEvent>,
    pub store: Store,
    pub runtime: Handle,
    pub metrics: Metrics,
    pub watermarks: Watermarks,
    /// Longest wait for the dispatcher to finish revoked partitions.
    pub revoke_wait: Duration,
    /// Set when the poll thread is leaving: callbacks then skip the dispatcher handshake.
    pub closing: AtomicBool,
    /// The byte budget and every partition's pause state.
    pub flow: Flow,
    /// Every Kafka commit goes through here, so committed offsets never go backwards.
    pub commits: CommitLog,
}

impl ClientContext for SinkContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        if let Ok(mut map) = self.watermarks.lock() {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.hi_offset >= 0 {
                    map.insert(*partition, (stats.lo_offset.max(0), stats.hi_offset));
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // librdkafka applies auto.offset.reset itself and only logs it (fac OFFSET): a stored
        // position below the log start (retention, DeleteRecords) or past its end.
        if fac == "OFFSET" && log_message.contains("offset reset") {
            self.metrics.offset_resets.inc();
            tracing::warn!(
                detail = log_message,
                "a partition's position was out of range (deleted or compacted records); auto.offset.reset applied"
            );
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?RDKafkaErrorCode::from(other), "rebalance failed; leaving the current assignment");
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassign failed");
                }
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            self.metrics.kafka_commit_failures.inc();
            tracing::warn!(%error, offsets = ?offsets.to_topic_map(), "kafka offset commit failed; the database keeps the position");
        }
    }
}

impl SinkContext {
    fn on_assign(&self, consumer: &SinkConsumer, tpl: &mut TopicPartitionList) {
        self.metrics.rebalances.inc();
        let partitions: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        let stored = self.stored_offsets(&partitions);
        let committed = self.committed_offsets(consumer, tpl);
        let mut assigned = Vec::with_capacity(partitions.len());
        for &partition in &partitions {
            let start = resume_offset(stored.get(&partition).copied(), committed.get(&partition).copied());
            if let Some(offset) = start {
                if let Err(error) = tpl.set_partition_offset(&self.topic, partition, Offset::Offset(offset)) {
                    tracing::error!(%error, partition, "could not set the start offset");
                }
            }
            tracing::info!(topic = %self.topic, partition, start = ?start, stored = ?stored.get(&partition), committed = ?committed.get(&partition), "partition assigned");
            assigned.push((partition, start));
        }
        let assigned = self.assign(consumer, tpl, assigned);
        if !assigned.is_empty() {
            self.send(PollEvent::Assigned(assigned));
        }
    }

    /// Assigns the partitions in librdkafka and returns those that really are assigned, so
    /// that a partition is either owned with a worker or not owned at all. A failed assign is
    /// retried a few times for what is missing, then logged and counted; what stays missing
    /// has no worker and is fetched by no one here until the next rebalance.
    ///
    /// Every assigned partition is also resumed: librdkafka keeps the application's pause
    /// flag across an unassign and a later assign of the same partition, and the new worker
    /// starts unpaused.
    fn assign(
        &self,
        consumer: &SinkConsumer,
        tpl: &TopicPartitionList,
        wanted: Vec<(i32, Option<i64>)>,
    ) -> Vec<(i32, Option<i64>)> {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let mut missing = tpl.clone();
        for attempt in 1..=3 {
            let result = if cooperative { consumer.incremental_assign(&missing) } else { consumer.assign(&missing) };
            let Err(error) = result else { break };
            self.metrics.assign_failures.inc();
            let owned = self.assigned_partitions(consumer);
            tracing::error!(%error, attempt, "assigning partitions failed");
            let mut rest = TopicPartitionList::new();
            for e in missing.elements_for_topic(&self.topic) {
                if !owned.contains(&e.partition()) {
                    let _ = rest.add_partition_offset(&self.topic, e.partition(), e.offset());
                }
            }
            if rest.count() == 0 {
                break;
            }
            missing = rest;
            thread::sleep(Duration::from_millis(100 * attempt));
        }
        let owned = self.assigned_partitions(consumer);
        let (assigned, lost): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(p, _)| owned.contains(p));
        if !lost.is_empty() {
            let partitions: Vec<i32> = lost.iter().map(|(p, _)| *p).collect();
            tracing::error!(
                ?partitions,
                "partitions could not be assigned; they have no worker here until the next rebalance"
            );
        }
        let partitions: Vec<i32> = assigned.iter().map(|(p, _)| *p).collect();
        self.flow.forget(&partitions);
        let mut resume = TopicPartitionList::new();
        for &p in &partitions {
            resume.add_partition(&self.topic, p);
        }
        if resume.count() > 0 {
            if let Err(error) = consumer.resume(&resume) {
                tracing::error!(%error, ?partitions, "could not resume newly assigned partitions");
            }
        }
        assigned
    }

    fn assigned_partitions(&self, consumer: &SinkConsumer) -> Vec<i32> {
        consumer
            .assignment()
            .map(|a| a.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }

    fn on_revoke(&self, consumer: &SinkConsumer, tpl: &mut TopicPartitionList) {
        self.metrics.rebalances.inc();
        let lost = consumer.assignment_lost();
        let partitions: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        tracing::info!(topic = %self.topic, ?partitions, lost, "partitions revoked");
        if !self.closing.load(Ordering::SeqCst) && Handle::try_current().is_err() {
            let (ack, written) = std_mpsc::sync_channel(1);
            if self.send(PollEvent::Revoked { partitions, lost, ack }) {
                match written.recv_timeout(self.revoke_wait) {
                    Ok(offsets) if !lost => self.commits.commit_sync(consumer, &self.topic, &offsets),
                    Ok(_) => {}
                    Err(_) => tracing::warn!(
                        "revoked partitions were not drained in time; the next owner replays from the database offset"
                    ),
                }
            }
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = result {
            tracing::error!(%error, "unassign failed");
        }
    }

    fn stored_offsets(&self, partitions: &[i32]) -> HashMap<i32, i64> {
        if Handle::try_current().is_ok() {
            return HashMap::new();
        }
        let store = self.store.clone();
        let topic = self.topic.clone();
        let partitions = partitions.to_vec();
        let lookup =
            async move { tokio::time::timeout(Duration::from_secs(10), store.load_offsets(&topic, &partitions)).await };
        match self.runtime.block_on(lookup) {
            Ok(Ok(offsets)) => offsets,
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not read stored offsets; starting from kafka's committed offsets (the fence skips what is already written)");
                HashMap::new()
            }
            Err(_) => {
                tracing::warn!("reading stored offsets timed out; starting from kafka's committed offsets (the fence skips what is already written)");
                HashMap::new()
            }
        }
    }

    fn committed_offsets(&self, consumer: &SinkConsumer, tpl: &TopicPartitionList) -> HashMap<i32, i64> {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(committed) => committed
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "could not read kafka's committed offsets");
                HashMap::new()
            }
        }
    }

    /// Sends without blocking forever: gives up when the dispatcher is gone or the thread is
    /// leaving. Returns whether the event was delivered.
    fn send(&self, mut event: PollEvent) -> bool {
        loop {
            match self.events.try_send(event) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if self.closing.load(Ordering::SeqCst) {
                        return false;
                    }
                    event = back;
                    thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

/// Where a newly assigned partition resumes: the larger of the database's stored offset and
/// Kafka's committed one. Kafka's can only be behind the database's (it is committed after),
/// unless the table was reset; the larger never re-reads what is known to be written.
pub fn resume_offset(stored: Option<i64>, committed: Option<i64>) -> Option<i64> {
    match (stored, committed) {
        (Some(s), Some(c)) => Some(s.max(c)),
        (s, c) => s.or(c),
    }
}

/// Commits next offsets to Kafka and waits for the answer (never below what was sent before).
pub fn commit_sync(consumer: &SinkConsumer, topic: &str, offsets: &[(i32, i64)]) {
    consumer.context().commits.commit_sync(consumer, topic, offsets);
}

/// The poll loop. Runs on its own thread until `stop` is set or the dispatcher is gone, then
/// leaves the group (the consumer is closed when the last reference drops).
pub fn poll_loop(consumer: Arc<SinkConsumer>, stop: Arc<AtomicBool>) {
    let context = consumer.context().clone();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                // None: over the byte budget; the partition was paused and sought back.
                let Some(record) = context.flow.admit(&consumer, message.detach()) else { continue };
                if !context.send(PollEvent::Message(record)) {
                    break;
                }
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                context.metrics.offset_resets.inc();
                tracing::warn!(
                    "a partition's position was out of range (deleted or compacted records); auto.offset.reset applied"
                );
            }
            Some(Err(error)) => tracing::warn!(%error, "consumer error"),
        }
    }
    context.closing.store(true, Ordering::SeqCst);
    consumer.unsubscribe();
    // Serve the revoke that unsubscribing triggers, so the group hears we left.
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().map(|a| a.count() == 0).unwrap_or(true) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resume_offset;

    #[test]
    fn resumes_at_the_larger_known_offset() {
        assert_eq!(resume_offset(Some(10), Some(7)), Some(10));
        assert_eq!(resume_offset(Some(10), Some(12)), Some(12));
        assert_eq!(resume_offset(None, Some(7)), Some(7));
        assert_eq!(resume_offset(Some(3), None), Some(3));
        assert_eq!(resume_offset(None, None), None);
    }
}
