//! The Kafka side: one thread that polls the consumer and turns messages and rebalances into
//! [`PollEvent`]s for the async dispatcher, which owns all state (Quickwit's pattern).
//!
//! Rebalance callbacks run inside `poll`, on the poll thread. On assignment the callback reads
//! the partitions' stored offsets of this group from the database and Kafka's committed offsets, and assigns
//! each partition at the database's offset (Kafka's only when the database has none); a start
//! past the partition's high watermark (a recreated topic) becomes the log start. On revocation it hands the partitions to the dispatcher,
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
    /// Newly owned partitions, each with where it starts and what the database holds.
    Assigned(Vec<Assignment>),
    /// The poll thread moved a partition's fetch position to `offset` (a worker asked, see
    /// [`SeekRequests`]): every record of the partition sent before this event is from before
    /// the seek, every one after it from `offset` on.
    Seeked { partition: i32, offset: i64 },
    /// Partitions being taken away. `lost`: the group already gave them to someone else, so
    /// nothing more may be written. The dispatcher answers with each partition's written
    /// next offset.
    Revoked { partitions: Vec<i32>, lost: bool, ack: std_mpsc::SyncSender<Vec<(i32, i64)>> },
}

/// A newly owned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub partition: i32,
    /// The offset it was assigned at (None: the log start, or Kafka's auto.offset.reset).
    pub start: Option<i64>,
    /// The database's stored next offset, the value the first batch's compare-and-set expects
    /// (None: the database has no row). Differs from `start` when the log started over.
    pub fence: Option<i64>,
    /// Whether `fence` was read from the database; false when the read failed at assignment,
    /// and the worker reads it before its first write.
    pub fence_known: bool,
}

/// Workers ask the poll thread to move a partition's fetch position back, (partition, offset).
pub type SeekRequests = std_mpsc::Sender<(i32, i64)>;

/// (low, high) watermarks per partition, from librdkafka's statistics.
pub type Watermarks = Arc<Mutex<HashMap<i32, (i64, i64)>>>;

pub struct SinkContext {
    /// The consumer group: the sinker's identity, and its key in `sink_offsets`.
    pub group: String,
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
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
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
            self.metrics.offset_resets.with_label_values(&[RESET_OUT_OF_RANGE]).inc();
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
        // Kafka's first: a writer still committing between the two reads can then only make
        // the database's look further ahead, never Kafka's (it commits to the database first).
        let committed = self.committed_offsets(consumer, tpl);
        // None: the database could not be read; the first batch's compare-and-set then finds
        // the stored offset and the worker moves there.
        let stored_known = self.stored_offsets(&partitions);
        let stored = stored_known.clone().unwrap_or_default();
        let mut assigned = Vec::with_capacity(partitions.len());
        let mut watermarks_readable = true;
        for &partition in &partitions {
            let (s, c) = (stored.get(&partition).copied(), committed.get(&partition).copied());
            let mut start = resume_offset(s, c);
            if stored_known.is_some() && kafka_ahead(s, c) {
                self.metrics.kafka_ahead_of_database.inc();
                if s.is_some() {
                    tracing::warn!(topic = %self.topic, partition, stored = ?s, committed = ?c, "kafka's committed offset is ahead of the database's (a restored database or a lagging replica?); resuming at the database's offset, so the missing rows are written again");
                } else {
                    tracing::warn!(topic = %self.topic, partition, committed = ?c, "the database has no offset for this partition but kafka has progress (a database restored from before its first row, or sink_offsets emptied?); resuming at kafka's committed offset: rows below it that the database lacks are not written again (reset the group's offsets to re-read them)");
                }
            }
            let mut from_log_start = false;
            if let (Some(offset), true) = (start, watermarks_readable) {
                // One broker round trip per partition; on the first failure the rest are
                // skipped (the worker notices a log that started over from its first record).
                match consumer.fetch_watermarks(&self.topic, partition, Duration::from_secs(2)) {
                    Ok((_, high)) if offset > high => {
                        self.metrics.offset_resets.with_label_values(&[RESET_BEYOND_LOG_END]).inc();
                        tracing::warn!(topic = %self.topic, partition, stored = ?s, committed = ?c, high, "the stored offset is beyond the log end (the topic was deleted and created again, or its log truncated); reading the partition from its start (ids already written are skipped)");
                        start = None;
                        from_log_start = true;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        watermarks_readable = false;
                        tracing::warn!(%error, "could not read the high watermarks at assignment; a recreated topic is noticed when its first record arrives");
                    }
                }
            }
            let offset = match start {
                Some(offset) => Some(Offset::Offset(offset)),
                None if from_log_start => Some(Offset::Beginning),
                None => None,
            };
            if let Some(offset) = offset {
                if let Err(error) = tpl.set_partition_offset(&self.topic, partition, offset) {
                    tracing::error!(%error, partition, "could not set the start offset");
                }
            }
            tracing::info!(topic = %self.topic, partition, start = ?start, stored = ?s, committed = ?c, "partition assigned");
            assigned.push(Assignment { partition, start, fence: s, fence_known: stored_known.is_some() });
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
    fn assign(&self, consumer: &SinkConsumer, tpl: &TopicPartitionList, wanted: Vec<Assignment>) -> Vec<Assignment> {
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
            #[allow(
                clippy::disallowed_methods,
                reason = "the rebalance callback runs on the poll thread, a plain thread"
            )]
            thread::sleep(Duration::from_millis(100 * attempt));
        }
        let owned = self.assigned_partitions(consumer);
        let (assigned, lost): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|a| owned.contains(&a.partition));
        if !lost.is_empty() {
            let partitions: Vec<i32> = lost.iter().map(|a| a.partition).collect();
            tracing::error!(
                ?partitions,
                "partitions could not be assigned; they have no worker here until the next rebalance"
            );
        }
        let partitions: Vec<i32> = assigned.iter().map(|a| a.partition).collect();
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

    fn stored_offsets(&self, partitions: &[i32]) -> Option<HashMap<i32, i64>> {
        if Handle::try_current().is_ok() {
            return None;
        }
        let store = self.store.clone();
        let (group, topic) = (self.group.clone(), self.topic.clone());
        let partitions = partitions.to_vec();
        let lookup = async move {
            tokio::time::timeout(Duration::from_secs(10), store.load_offsets(&group, &topic, &partitions)).await
        };
        match self.runtime.block_on(lookup) {
            Ok(Ok(offsets)) => Some(offsets),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not read stored offsets; starting from kafka's committed offsets (the first write's fence moves each partition to the database's offset)");
                None
            }
            Err(_) => {
                tracing::warn!("reading stored offsets timed out; starting from kafka's committed offsets (the first write's fence moves each partition to the database's offset)");
                None
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
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "runs on the poll thread, a plain thread outside the runtime"
                    )]
                    thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

/// `sinker_offset_resets_total{reason}`: librdkafka found a position out of range.
pub const RESET_OUT_OF_RANGE: &str = "out_of_range";
/// `sinker_offset_resets_total{reason}`: the stored offset lies past the partition's log end.
pub const RESET_BEYOND_LOG_END: &str = "beyond_log_end";

/// Where a newly assigned partition resumes: the database's stored offset whenever it has one
/// (it is the source of truth, even when Kafka's committed offset is further: after a restore
/// the rows between are missing), else Kafka's committed offset.
pub fn resume_offset(stored: Option<i64>, committed: Option<i64>) -> Option<i64> {
    stored.or(committed)
}

/// Whether Kafka's committed offset is ahead of the database's: it is committed after the
/// database, so this means the database lost commits (a restore, a failover to a lagging
/// replica, a truncated table).
pub fn kafka_ahead(stored: Option<i64>, committed: Option<i64>) -> bool {
    committed.is_some_and(|c| c > stored.unwrap_or(0))
}

/// Commits next offsets to Kafka and waits for the answer (never below what was sent before).
pub fn commit_sync(consumer: &SinkConsumer, topic: &str, offsets: &[(i32, i64)]) {
    consumer.context().commits.commit_sync(consumer, topic, offsets);
}

/// The poll loop. Runs on its own thread until `stop` is set or the dispatcher is gone, then
/// leaves the group (the consumer is closed when the last reference drops).
#[allow(clippy::needless_pass_by_value, reason = "the thread owns its references for as long as it runs")]
pub fn poll_loop(consumer: Arc<SinkConsumer>, stop: Arc<AtomicBool>, seeks: &std_mpsc::Receiver<(i32, i64)>) {
    let context = consumer.context().clone();
    let mut pending_seeks: Vec<(i32, i64)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        pending_seeks.extend(seeks.try_iter());
        if !pending_seeks.is_empty() && !serve_seeks(&consumer, &context, &mut pending_seeks) {
            break;
        }
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
                context.metrics.offset_resets.with_label_values(&[RESET_OUT_OF_RANGE]).inc();
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

/// Moves fetch positions back for workers whose database went back, on the poll thread so
/// that the [`PollEvent::Seeked`] marker separates the records from before and after. A seek
/// that fails is retried on the next turn while the partition is still assigned. Returns false
/// when the dispatcher is gone.
fn serve_seeks(consumer: &SinkConsumer, context: &SinkContext, pending: &mut Vec<(i32, i64)>) -> bool {
    let assigned: Vec<i32> = consumer
        .assignment()
        .map(|a| a.elements_for_topic(&context.topic).iter().map(|e| e.partition()).collect())
        .unwrap_or_default();
    let mut retry = Vec::new();
    for (partition, offset) in pending.drain(..) {
        if !assigned.contains(&partition) {
            tracing::info!(partition, offset, "seek dropped: the partition is no longer assigned");
            continue;
        }
        match consumer.seek(&context.topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
            Ok(()) => {
                tracing::info!(partition, offset, "fetch position moved back to the database's offset");
                if !context.send(PollEvent::Seeked { partition, offset }) {
                    return false;
                }
            }
            Err(error) => {
                tracing::warn!(%error, partition, offset, "seek failed; retrying");
                retry.push((partition, offset));
            }
        }
    }
    *pending = retry;
    true
}

#[cfg(test)]
mod tests {
    use super::{kafka_ahead, resume_offset};

    #[test]
    fn resumes_at_the_database_offset_whenever_there_is_one() {
        assert_eq!(resume_offset(Some(10), Some(7)), Some(10));
        assert_eq!(resume_offset(Some(10), Some(12)), Some(10), "a restored database is filled again");
        assert_eq!(resume_offset(None, Some(7)), Some(7));
        assert_eq!(resume_offset(Some(3), None), Some(3));
        assert_eq!(resume_offset(None, None), None);
    }

    #[test]
    fn kafka_ahead_of_the_database_is_noticed() {
        assert!(kafka_ahead(Some(10), Some(12)));
        assert!(kafka_ahead(None, Some(7)), "no row in the database, progress in kafka");
        assert!(!kafka_ahead(Some(10), Some(10)));
        assert!(!kafka_ahead(Some(10), Some(7)), "kafka's copy lags after a lost async commit: normal");
        assert!(!kafka_ahead(Some(3), None));
        assert!(!kafka_ahead(None, Some(0)));
    }
}
