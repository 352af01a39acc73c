//! One worker per owned partition: batches its records in offset order and writes each batch
//! in one transaction that also moves the partition's fence in `sink_offsets`.
//!
//! Invariants held here:
//! - a partition has one worker, and the worker writes one batch at a time, in offset order;
//! - `position` (the next offset to write) only grows, and a record below it is dropped;
//! - the Kafka commit of an offset follows the database commit of the rows below it;
//! - dead letters of a batch are acknowledged by the broker before its transaction commits.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use rdkafka::{consumer::Consumer, message::OwnedMessage, Message, Timestamp};
use sluice_core::{wire, Event, RejectReason, Rejection};
use tokio::{
    sync::{mpsc, oneshot},
    time::{sleep_until, Instant},
};
use tokio_util::sync::CancellationToken;

use crate::{
    adaptive::{SharedSizer, Stopwatch},
    backoff::Backoff,
    batch::{BatchPolicy, Pending},
    consumer::SinkConsumer,
    dlq::DeadLetters,
    failpoint,
    flow::Buffered,
    metrics::Metrics,
    store::{self, ErrorKind, Fence, Store},
};

/// What every worker shares.
pub struct Shared {
    pub topic: String,
    pub store: Store,
    pub dlq: DeadLetters,
    pub consumer: Arc<SinkConsumer>,
    pub metrics: Metrics,
    pub policy: BatchPolicy,
    pub sizer: SharedSizer,
    pub insert_method: store::InsertMethod,
    pub max_event_bytes: usize,
}

/// What the dispatcher can see of a worker.
#[derive(Default)]
pub struct PartitionState {
    /// Records handed to the worker and not yet written or dropped.
    pub buffered: AtomicUsize,
    /// The written next offset (-1: unknown yet).
    pub written: AtomicI64,
    /// Timestamp (ms) of the oldest record not yet written, 0 when none is held.
    pub oldest_unwritten_ms: AtomicI64,
}

pub enum WorkerInput {
    Record(Buffered),
    /// Finish: write what is held (unless `drop_pending`), then answer with the written next offset.
    Stop {
        drop_pending: bool,
        reply: oneshot::Sender<Option<i64>>,
    },
}

pub struct PartitionWorker {
    partition: i32,
    shared: Arc<Shared>,
    state: Arc<PartitionState>,
    inbox: mpsc::UnboundedReceiver<WorkerInput>,
    /// Cancelled when the worker must stop retrying and drop what it holds.
    abandon: CancellationToken,
    position: Option<i64>,
    pending: Pending,
}

/// Why a write attempt did not complete.
enum WriteError {
    Db(sqlx::Error),
    DeadLetter(rdkafka::error::KafkaError),
}

enum Written {
    Done,
    /// The fence refused the batch: another owner wrote up to `stored`.
    Conflict {
        stored: i64,
    },
}

impl PartitionWorker {
    pub fn new(
        partition: i32,
        start: Option<i64>,
        shared: Arc<Shared>,
        state: Arc<PartitionState>,
        inbox: mpsc::UnboundedReceiver<WorkerInput>,
        abandon: CancellationToken,
    ) -> Self {
        state.written.store(start.unwrap_or(-1), Ordering::SeqCst);
        Self { partition, shared, state, inbox, abandon, position: start, pending: Pending::default() }
    }

    #[tracing::instrument(name = "partition", skip_all, fields(topic = %self.shared.topic, partition = self.partition))]
    pub async fn run(mut self) {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let deadline = self.pending.deadline(&self.shared.policy);
            tokio::select! {
                input = self.inbox.recv() => match input {
                    Some(WorkerInput::Record(msg)) => {
                        self.accept(msg);
                        if self.pending.is_full(&self.shared.policy, self.shared.sizer.target()) {
                            self.flush().await;
                        }
                    }
                    Some(WorkerInput::Stop { drop_pending, reply }) => {
                        if drop_pending {
                            self.discard_pending();
                        } else {
                            self.flush().await;
                        }
                        let _ = reply.send(self.position);
                        return;
                    }
                    None => return,
                },
                () = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => self.flush().await,
            }
        }
    }

    fn accept(&mut self, msg: Buffered) {
        if self.abandon.is_cancelled() || self.position.is_some_and(|p| msg.offset() < p) {
            // Leaving (the next owner reads it again), or already written (a replay after a
            // fence conflict).
            self.state.buffered.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if self.pending.is_empty() {
            self.state.oldest_unwritten_ms.store(timestamp_ms(&msg), Ordering::SeqCst);
        }
        self.pending.push(msg, Instant::now());
    }

    fn discard_pending(&mut self) {
        let dropped = self.pending.take().len();
        self.state.buffered.fetch_sub(dropped, Ordering::SeqCst);
    }

    /// Writes the pending batch, retrying transient failures until it is written or the
    /// worker is told to abandon it.
    async fn flush(&mut self) {
        let records = self.pending.take();
        if records.is_empty() {
            return;
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut batch = Prepared::new(records, &self.shared, self.position);
        loop {
            if self.abandon.is_cancelled() {
                self.give_up(batch.records.len());
                return;
            }
            let attempt = tokio::select! {
                result = self.write(&mut batch) => Some(result),
                () = self.abandon.cancelled() => None,
            };
            match attempt {
                None => {
                    self.give_up(batch.records.len());
                    return;
                }
                Some(Ok(Written::Done)) => {
                    self.after_commit(&batch);
                    return;
                }
                Some(Ok(Written::Conflict { stored })) => {
                    self.shared.metrics.offset_conflicts.inc();
                    tracing::warn!(stored, from = batch.from, "offset fence refused the batch: another owner wrote this partition further; skipping what it wrote");
                    let before = batch.records.len();
                    let rest: Vec<Buffered> = batch.records.into_iter().filter(|m| m.offset() >= stored).collect();
                    self.state.buffered.fetch_sub(before - rest.len(), Ordering::SeqCst);
                    self.position = Some(stored);
                    self.state.written.store(stored, Ordering::SeqCst);
                    if rest.is_empty() {
                        self.state.oldest_unwritten_ms.store(0, Ordering::SeqCst);
                        return;
                    }
                    batch = Prepared::new(rest, &self.shared, self.position);
                }
                Some(Err(error)) => {
                    let delay = backoff.next_delay();
                    match &error {
                        WriteError::Db(e) => {
                            let kind = store::classify(e);
                            if matches!(kind, ErrorKind::Contention | ErrorKind::Timeout) {
                                self.shared.sizer.on_contention();
                            }
                            self.shared.metrics.db_errors.with_label_values(&[kind.label()]).inc();
                            if kind == ErrorKind::Fatal {
                                tracing::error!(error = %e, retry_in = ?delay, "the database refuses the sinker's statements (schema or permissions); fix the database, the sinker keeps retrying");
                            } else {
                                tracing::warn!(error = %e, kind = kind.label(), retry_in = ?delay, "batch not written; retrying");
                            }
                        }
                        WriteError::DeadLetter(e) => {
                            tracing::warn!(error = %e, retry_in = ?delay, "dead letters not acknowledged; retrying the batch");
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.abandon.cancelled() => {}
                    }
                }
            }
        }
    }

    /// One attempt: fence, insert, dead letters, commit.
    async fn write(&self, batch: &mut Prepared) -> Result<Written, WriteError> {
        let shared = &self.shared;
        if !batch.decode_rejections_sent && !batch.rejections.is_empty() {
            let letters: Vec<_> = batch.rejections.iter().map(|(i, r)| (&*batch.records[*i], r)).collect();
            shared.dlq.send_all(&letters).await.map_err(WriteError::DeadLetter)?;
            batch.decode_rejections_sent = true;
        }
        // The adaptive sizer sees only the database's work, not the waits around it.
        let mut db = Stopwatch::default();
        let events: Vec<&Event> = batch.events.iter().map(|(_, e)| e).collect();
        let mut tx = shared.store.pool().begin().await.map_err(WriteError::Db)?;
        db.start();
        if let Fence::Conflict { stored } =
            store::advance_offset(&mut tx, &shared.topic, self.partition, batch.from, batch.to)
                .await
                .map_err(WriteError::Db)?
        {
            return Ok(Written::Conflict { stored });
        }
        let (inserted, refused) = match store::insert_batch(&mut tx, &events, shared.insert_method).await {
            Ok(n) => (n, Vec::new()),
            Err(e) if store::classify(&e) == ErrorKind::Rejected => {
                shared.metrics.db_errors.with_label_values(&[ErrorKind::Rejected.label()]).inc();
                tracing::warn!(error = %e, rows = events.len(), "the database refused a row of the batch; isolating it");
                drop(tx);
                db.stop();
                tx = shared.store.pool().begin().await.map_err(WriteError::Db)?;
                db.start();
                if let Fence::Conflict { stored } =
                    store::advance_offset(&mut tx, &shared.topic, self.partition, batch.from, batch.to)
                        .await
                        .map_err(WriteError::Db)?
                {
                    return Ok(Written::Conflict { stored });
                }
                store::insert_isolating(&mut tx, &events).await.map_err(WriteError::Db)?
            }
            Err(e) => return Err(WriteError::Db(e)),
        };
        if !refused.is_empty() {
            let rejections: Vec<(usize, Rejection)> = refused
                .iter()
                .map(|(i, reason)| (batch.events[*i].0, Rejection::new(RejectReason::DatabaseRejected, reason.clone())))
                .collect();
            let letters: Vec<_> = rejections.iter().map(|(i, r)| (&*batch.records[*i], r)).collect();
            db.stop();
            shared.dlq.send_all(&letters).await.map_err(WriteError::DeadLetter)?;
            db.start();
            batch.db_rejections = rejections.len();
        }
        failpoint::hit("sinker.before_db_commit");
        tx.commit().await.map_err(WriteError::Db)?;
        failpoint::hit("sinker.after_db_commit");
        db.stop();
        batch.inserted = inserted;
        batch.commit_seconds = db.elapsed_at(Instant::now()).as_secs_f64();
        Ok(Written::Done)
    }

    fn after_commit(&mut self, batch: &Prepared) {
        let m = &self.shared.metrics;
        let valid = batch.events.len() as u64 - batch.db_rejections as u64;
        m.rows_inserted.inc_by(batch.inserted);
        m.duplicates_skipped.inc_by(valid.saturating_sub(batch.inserted));
        for (_, r) in &batch.rejections {
            m.dlq_messages.with_label_values(&[r.reason.code()]).inc();
        }
        m.dlq_messages.with_label_values(&[RejectReason::DatabaseRejected.code()]).inc_by(batch.db_rejections as u64);
        m.batch_rows.observe(batch.records.len() as f64);
        m.batch_commit_seconds.observe(batch.commit_seconds);
        self.shared.sizer.on_commit(Duration::from_secs_f64(batch.commit_seconds));

        self.position = Some(batch.to);
        self.state.written.store(batch.to, Ordering::SeqCst);
        self.state.buffered.fetch_sub(batch.records.len(), Ordering::SeqCst);
        let oldest = self.pending.first().map_or(0, |m| timestamp_ms(m));
        self.state.oldest_unwritten_ms.store(oldest, Ordering::SeqCst);
        tracing::debug!(
            from = batch.from,
            to = batch.to,
            rows = batch.records.len(),
            inserted = batch.inserted,
            "batch written"
        );

        // Kafka's committed offset follows the database; it feeds lag monitoring and is the
        // usual resume point. A failed commit is harmless: the database has the truth.
        // Through the commit log: never below an offset already sent (the periodic re-commit
        // may have read an older `written`).
        let consumer = &self.shared.consumer;
        if !consumer.context().commits.commit_async(consumer, &self.shared.topic, &[(self.partition, batch.to)]) {
            m.kafka_commit_failures.inc();
        }
    }

    fn give_up(&mut self, held: usize) {
        tracing::info!(records = held, "leaving unwritten records to the next owner of the partition");
        self.state.buffered.fetch_sub(held, Ordering::SeqCst);
    }
}

/// A batch decoded once and retried as often as needed.
struct Prepared {
    records: Vec<Buffered>,
    /// Decoded events with the index of their record.
    events: Vec<(usize, Event)>,
    /// Records that are not valid events, with the reason.
    rejections: Vec<(usize, Rejection)>,
    decode_rejections_sent: bool,
    db_rejections: usize,
    from: i64,
    to: i64,
    inserted: u64,
    commit_seconds: f64,
}

impl Prepared {
    fn new(records: Vec<Buffered>, shared: &Shared, position: Option<i64>) -> Self {
        let now = Utc::now();
        let mut events = Vec::with_capacity(records.len());
        let mut rejections = Vec::new();
        for (i, msg) in records.iter().enumerate() {
            match wire::decode(msg.payload(), record_time(msg), now, shared.max_event_bytes) {
                Ok(event) => events.push((i, event)),
                Err(rejection) => rejections.push((i, rejection)),
            }
        }
        let first = records.first().map_or(0, |m| m.offset());
        let to = records.last().map_or(first, |m| m.offset() + 1);
        Self {
            from: position.unwrap_or(first).min(first),
            to,
            records,
            events,
            rejections,
            decode_rejections_sent: false,
            db_rejections: 0,
            inserted: 0,
            commit_seconds: 0.0,
        }
    }
}

fn record_time(msg: &OwnedMessage) -> Option<DateTime<Utc>> {
    match msg.timestamp() {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => DateTime::from_timestamp_millis(ms),
        Timestamp::NotAvailable => None,
    }
}

fn timestamp_ms(msg: &OwnedMessage) -> i64 {
    msg.timestamp().to_millis().unwrap_or_else(|| Utc::now().timestamp_millis())
}
