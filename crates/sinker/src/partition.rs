//! One worker per owned partition: batches its records in offset order and writes each batch
//! in one transaction that also moves the group's fence of the partition in `sink_offsets`.
//!
//! Invariants held here:
//! - a partition has one worker, and the worker writes one batch at a time, in offset order;
//! - `position` is the next offset to write, and a record below it is dropped; it grows, except
//!   when the database went back (restore, lagging replica: the fence says so, the worker
//!   seeks back to the database's offset) or the log started over (a recreated topic);
//! - a record the consumer delivers again (after a pause and resume) is dropped, never taken
//!   for a log that started over (received.rs tells the two apart);
//! - a batch's compare-and-set expects exactly the stored offset (`fence`);
//! - the Kafka commit of an offset follows the database commit of the rows below it;
//! - dead letters of a batch are acknowledged by the broker before its transaction commits.

use std::{
    fmt::Display,
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::Utc;
use rdkafka::{consumer::Consumer, message::OwnedMessage, Message};
use sluice_core::{RejectReason, Rejection};
use sluice_routes::ResolvedRoutes;
use tokio::{
    sync::{mpsc, oneshot},
    time::{sleep_until, Instant},
};
use tokio_util::sync::CancellationToken;

use crate::{
    adaptive::{SharedSizer, Stopwatch},
    backoff::Backoff,
    batch::{BatchPolicy, Pending},
    batch_tx::{BatchTx, Opened},
    consumer::{Assignment, SeekRequests, SinkConsumer, RESET_BEYOND_LOG_END},
    dlq::{self, DeadLetters},
    failpoint,
    lookahead::Lookahead,
    metrics::Metrics,
    prepared::{Incoming, Outcome, Prepared},
    received::{self, Arrival, Received},
    routed::{self, RoutedWritten, Units},
    store::{self, ErrorKind, Fence, Store},
    stuck::{StuckGuard, StuckPartitions},
};

/// How often a worker reads its inbox ahead while a batch is being written.
const LOOKAHEAD_PERIOD: Duration = Duration::from_millis(5);

/// What every worker shares.
pub struct Shared {
    /// The consumer group: this sinker's key in `sink_offsets`, next to topic and partition.
    pub group: String,
    pub topic: String,
    pub store: Store,
    pub dlq: DeadLetters,
    pub consumer: Arc<SinkConsumer>,
    pub metrics: Metrics,
    pub policy: BatchPolicy,
    pub sizer: SharedSizer,
    pub insert_method: store::InsertMethod,
    /// `--routes`, resolved against the catalog at start. None: the built-in route (every
    /// event into `events`, with `insert_method`).
    pub routes: Option<Arc<ResolvedRoutes>>,
    pub max_event_bytes: usize,
    /// `--read-ahead`: read and decode the next batch while one is being written.
    pub read_ahead: bool,
    /// Where a worker asks the poll thread to move its partition's fetch position back.
    pub seeks: SeekRequests,
    pub stuck: Arc<StuckPartitions>,
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
    Record(Incoming),
    /// The poll thread moved the fetch position to this offset: records from here on are
    /// from the new position.
    Seeked(i64),
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
    /// The stored next offset as far as this worker knows (None: no row known); the next
    /// batch's compare-and-set expects exactly this value.
    fence: Option<i64>,
    /// Whether `fence` came from the database (see [`Assignment::fence_known`]).
    fence_known: bool,
    /// The last records received (held, written or dropped): a step back is either a record
    /// delivered again (dropped) or a log that started over (see received.rs).
    received: Received,
    /// Waiting for the poll thread to seek back to this offset: records are dropped until the
    /// [`WorkerInput::Seeked`] marker.
    seeking: Option<i64>,
    pending: Pending<Incoming>,
    /// Inputs read (and records decoded) while a batch is being written.
    ahead: Lookahead,
    stuck: StuckGuard,
}

/// Why a write attempt did not complete.
enum WriteError {
    Db(sqlx::Error),
    /// COMMIT was sent but its answer never came (the connection broke): the batch may or may
    /// not be in the database. The retry's fence tells which.
    CommitUnknown(sqlx::Error),
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
        assignment: Assignment,
        shared: Arc<Shared>,
        state: Arc<PartitionState>,
        inbox: mpsc::UnboundedReceiver<WorkerInput>,
        abandon: CancellationToken,
    ) -> Self {
        let Assignment { partition, start, fence, fence_known } = assignment;
        state.written.store(start.unwrap_or(-1), Ordering::SeqCst);
        let stuck = StuckGuard::new(partition, shared.stuck.clone());
        let ahead = Lookahead::new(shared.metrics.records_read_ahead.clone());
        Self {
            partition,
            shared,
            state,
            inbox,
            abandon,
            position: start,
            fence,
            fence_known,
            received: Received::default(),
            seeking: None,
            pending: Pending::default(),
            ahead,
            stuck,
        }
    }

    #[tracing::instrument(name = "partition", skip_all, fields(topic = %self.shared.topic, partition = self.partition))]
    pub async fn run(mut self) {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let deadline = self.pending.deadline(&self.shared.policy);
            tokio::select! {
                input = self.ahead.next(&mut self.inbox) => match input {
                    Some(WorkerInput::Record(msg)) => {
                        let fingerprint = received::fingerprint(&msg);
                        match self.arrival(&msg, fingerprint) {
                            Arrival::Next => {}
                            Arrival::Again => {
                                self.drop_again(&msg);
                                continue;
                            }
                            Arrival::StartedOver => {
                                self.flush().await;
                                self.restart_log(&msg);
                            }
                        }
                        self.accept(msg, fingerprint);
                        if self.pending.is_full(&self.shared.policy, self.shared.sizer.target()) {
                            self.flush().await;
                        }
                    }
                    Some(WorkerInput::Seeked(offset)) => {
                        if self.seeking == Some(offset) {
                            tracing::info!(offset, "reading again from the database's offset");
                            self.seeking = None;
                            self.received.clear();
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

    fn accept(&mut self, msg: Incoming, fingerprint: u64) {
        if self.abandon.is_cancelled() || self.seeking.is_some() {
            // Leaving (the next owner reads it again), or fetched before a seek back.
            self.state.buffered.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.received.push(msg.offset(), fingerprint);
        if self.position.is_some_and(|p| msg.offset() < p) {
            // Already written (by another owner, after a fence conflict).
            self.state.buffered.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if self.pending.is_empty() {
            self.state.oldest_unwritten_ms.store(timestamp_ms(&msg), Ordering::SeqCst);
        }
        self.pending.push(msg, Instant::now());
    }

    /// How a record relates to what was received before (records a worker drops anyway, while
    /// leaving or waiting for a seek, are [`Arrival::Next`]).
    fn arrival(&self, msg: &OwnedMessage, fingerprint: u64) -> Arrival {
        if self.abandon.is_cancelled() || self.seeking.is_some() {
            return Arrival::Next;
        }
        self.received.classify(msg.offset(), fingerprint, self.position)
    }

    /// A record librdkafka delivered a second time (after a pause and resume): the first
    /// delivery is held or written already.
    fn drop_again(&self, msg: &OwnedMessage) {
        self.shared.metrics.records_redelivered.inc();
        tracing::debug!(offset = msg.offset(), last_received = ?self.received.last(), "a record received again from the consumer; dropped");
        self.state.buffered.fetch_sub(1, Ordering::SeqCst);
    }

    /// The log started over: write it again from its start (ids already written are
    /// skipped). The first batch's compare-and-set replaces the stale stored offset.
    fn restart_log(&mut self, msg: &OwnedMessage) {
        self.shared.metrics.offset_resets.with_label_values(&[RESET_BEYOND_LOG_END]).inc();
        tracing::warn!(offset = msg.offset(), last_received = ?self.received.last(), position = ?self.position, stored = ?self.fence, "the partition's log started over below the written position (the topic was deleted and created again, or its log truncated); writing it again from its start");
        self.position = None;
        self.received.clear();
        self.shared.consumer.context().commits.rewind(self.partition, &self.state.written, -1);
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
        failpoint::panic_here("sinker.panic_in_worker");
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let ahead = self.ahead.take_encoded();
        let mut batch = Prepared::new(records, &self.shared, self.position, ahead);
        // Set once a COMMIT of this batch had an unknown outcome.
        let mut commit_unknown = false;
        loop {
            if self.abandon.is_cancelled() {
                self.give_up(batch.records.len());
                return;
            }
            if !self.fence_known {
                // Never write with an unknown fence: a stale stored offset (a recreated topic)
                // would otherwise look like another owner's progress and new records be skipped.
                match self.shared.store.load_offsets(&self.shared.group, &self.shared.topic, &[self.partition]).await {
                    Ok(stored) => {
                        self.fence = fence_to_expect(self.position, stored.get(&self.partition).copied());
                        self.fence_known = true;
                        tracing::info!(stored = ?stored.get(&self.partition), position = ?self.position, "read the partition's stored offset that was unknown at assignment");
                    }
                    Err(error) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(%error, retry_in = ?delay, "the partition's stored offset cannot be read yet; nothing is written before it is known");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = self.abandon.cancelled() => {}
                        }
                        continue;
                    }
                }
            }
            let attempt = self.attempt(&mut batch).await;
            match attempt {
                None => {
                    self.give_up(batch.records.len());
                    return;
                }
                Some(Ok(Written::Done)) => {
                    self.after_commit(&batch);
                    return;
                }
                Some(Ok(Written::Conflict { stored })) if commit_unknown && stored == batch.to => {
                    // Our own earlier COMMIT had gone through (the fence stands exactly at the
                    // end of this batch): not another owner's write.
                    tracing::info!(from = batch.from, to = batch.to, "batch already written: the COMMIT whose answer was lost had gone through; nothing is written twice");
                    self.state.buffered.fetch_sub(batch.records.len(), Ordering::SeqCst);
                    self.position = Some(stored);
                    self.fence = Some(stored);
                    self.stuck.clear();
                    self.state.written.store(stored, Ordering::SeqCst);
                    let oldest = self.pending.first().map_or(0, |m| timestamp_ms(m));
                    self.state.oldest_unwritten_ms.store(oldest, Ordering::SeqCst);
                    return;
                }
                Some(Ok(Written::Conflict { stored })) if stored < batch.from => {
                    self.shared.metrics.offset_conflicts.inc();
                    self.stuck.clear();
                    self.go_back(stored, batch.from, batch.records.len());
                    return;
                }
                Some(Ok(Written::Conflict { stored })) => {
                    self.shared.metrics.offset_conflicts.inc();
                    self.stuck.clear();
                    tracing::warn!(stored, from = batch.from, "offset fence refused the batch: another owner wrote this partition further; skipping what it wrote");
                    let before = batch.records.len();
                    let rest: Vec<Incoming> =
                        batch.records.into_iter().filter(|m| m.offset() >= stored).map(Incoming::new).collect();
                    self.state.buffered.fetch_sub(before - rest.len(), Ordering::SeqCst);
                    self.position = Some(stored);
                    self.fence = Some(stored);
                    self.state.written.store(stored, Ordering::SeqCst);
                    if rest.is_empty() {
                        self.state.oldest_unwritten_ms.store(0, Ordering::SeqCst);
                        return;
                    }
                    batch = Prepared::new(rest, &self.shared, self.position, None);
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
                                let reason = store::database_message(e);
                                tracing::error!(error = %reason, retry_in = ?delay, "the database refuses the sinker's statements (schema, permissions, a trigger's exception, an internal error); fix the database, the sinker keeps retrying");
                                self.stuck.set(stuck_reason(
                                    self.partition,
                                    "the database refuses the sinker's writes",
                                    &reason,
                                ));
                            } else {
                                tracing::warn!(error = %e, kind = kind.label(), retry_in = ?delay, "batch not written; retrying");
                            }
                        }
                        WriteError::CommitUnknown(e) => {
                            commit_unknown = true;
                            self.shared.metrics.db_errors.with_label_values(&[store::classify(e).label()]).inc();
                            tracing::warn!(error = %e, from = batch.from, to = batch.to, retry_in = ?delay, "the database connection broke during COMMIT: the outcome is unknown (the batch may or may not be written); retrying is safe: the offset fence shows which, and no row is written twice");
                        }
                        WriteError::DeadLetter(e) => {
                            let reason = dlq::failure_reason(e);
                            self.shared.metrics.dlq_failures.with_label_values(&[reason]).inc();
                            if dlq::is_permanent(reason) {
                                tracing::error!(error = %e, reason, retry_in = ?delay, "the dead-letter topic refuses the sinker's records; fix the topic or its permissions, the sinker keeps retrying");
                                self.stuck.set(stuck_reason(
                                    self.partition,
                                    &format!("the dead-letter topic refuses writes ({reason})"),
                                    e,
                                ));
                            } else {
                                tracing::warn!(error = %e, retry_in = ?delay, "dead letters not acknowledged; retrying the batch");
                            }
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

    /// One write attempt of `batch`, None when the worker is told to abandon it meanwhile.
    /// With `--read-ahead`, while the database works on it, the next inputs are read and their
    /// records decoded (lookahead.rs), on a short period rather than on each record's arrival;
    /// they are acted on, in order, afterwards.
    async fn attempt(&mut self, batch: &mut Prepared) -> Option<Result<Written, WriteError>> {
        let write = write(&self.shared, self.partition, self.fence, batch);
        if !self.shared.read_ahead {
            return tokio::select! {
                result = write => Some(result),
                () = self.abandon.cancelled() => None,
            };
        }
        tokio::pin!(write);
        let rows = self.shared.sizer.target().min(self.shared.policy.max_rows);
        let mut period = tokio::time::interval(LOOKAHEAD_PERIOD);
        period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut write => return Some(result),
                () = self.abandon.cancelled() => return None,
                _ = period.tick(), if self.ahead.has_room(rows, self.shared.policy.max_bytes) => {
                    self.ahead.read(&mut self.inbox, &self.shared, rows);
                }
            }
        }
    }

    /// The database is behind this worker (restored from a backup, failed over to a lagging
    /// replica): drop everything held, wait for the poll thread to move the fetch position
    /// back to the database's offset, and write everything from there again.
    fn go_back(&mut self, stored: i64, from: i64, held: usize) {
        self.shared.metrics.kafka_ahead_of_database.inc();
        tracing::warn!(stored, from, "the database's stored offset is behind this writer's position (a restored database or a lagging replica?); going back to it and writing the missing rows again");
        let dropped = held + self.pending.take().len();
        self.state.buffered.fetch_sub(dropped, Ordering::SeqCst);
        self.state.oldest_unwritten_ms.store(0, Ordering::SeqCst);
        self.position = Some(stored);
        self.fence = Some(stored);
        self.seeking = Some(stored);
        // Kafka's copy must come back down with the database: the commit log refuses lower
        // offsets for a partition it has not rewound.
        self.shared.consumer.context().commits.rewind(self.partition, &self.state.written, stored);
        if self.shared.seeks.send((self.partition, stored)).is_err() {
            tracing::warn!("the poll thread is gone; the partition is read again by its next owner");
        }
    }

    fn after_commit(&mut self, batch: &Prepared) {
        let m = &self.shared.metrics;
        let valid = batch.len() as u64 - batch.db_rejections as u64;
        match (&batch.outcome.routed, &self.shared.routes) {
            (Some(written), Some(routes)) => {
                m.rows_inserted.inc_by(written.inserted());
                m.duplicates_skipped.inc_by(written.skipped());
                m.count_routes(routes, written);
            }
            _ => {
                m.rows_inserted.inc_by(batch.outcome.inserted);
                m.duplicates_skipped.inc_by(valid.saturating_sub(batch.outcome.inserted));
                if let Some(path) = batch.outcome.copy {
                    m.copy_batches.with_label_values(&[store::EVENTS_ROUTE, path.label()]).inc();
                }
            }
        }
        for (_, r) in &batch.rejections {
            m.dlq_messages.with_label_values(&[r.reason.code()]).inc();
        }
        m.dlq_messages.with_label_values(&[RejectReason::DatabaseRejected.code()]).inc_by(batch.db_rejections as u64);
        m.records_decoded_ahead.inc_by(batch.decoded_ahead as u64);
        if batch.encoded_ahead {
            m.batches_encoded_ahead.inc();
        }
        m.batch_rows.observe(batch.records.len() as f64);
        m.batch_commit_seconds.observe(batch.commit_seconds);
        self.shared.sizer.on_commit(Duration::from_secs_f64(batch.commit_seconds));

        self.position = Some(batch.to);
        self.fence = Some(batch.to);
        self.stuck.clear();
        self.state.written.store(batch.to, Ordering::SeqCst);
        self.state.buffered.fetch_sub(batch.records.len(), Ordering::SeqCst);
        let oldest = self.pending.first().map_or(0, |m| timestamp_ms(m));
        self.state.oldest_unwritten_ms.store(oldest, Ordering::SeqCst);
        tracing::debug!(
            from = batch.from,
            to = batch.to,
            rows = batch.records.len(),
            inserted = batch.outcome.inserted,
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

/// One attempt: fence, insert, dead letters, commit. `fence`: the stored offset the worker
/// knows of (see [`PartitionWorker::fence`]).
async fn write(
    shared: &Shared,
    partition: i32,
    fence: Option<i64>,
    batch: &mut Prepared,
) -> Result<Written, WriteError> {
    let expected = fence.unwrap_or(batch.from);
    if !batch.decode_rejections_sent && !batch.rejections.is_empty() {
        let letters: Vec<_> = batch.rejections.iter().map(|(i, r)| (&*batch.records[*i], r)).collect();
        shared.dlq.send_all(&letters).await.map_err(WriteError::DeadLetter)?;
        batch.decode_rejections_sent = true;
    }
    // The adaptive sizer sees only the database's work, not the waits around it.
    let mut db = Stopwatch::default();
    // BEGIN, the fence (and COPY's savepoint) in one round trip.
    let savepoint = batch.copies(shared).then_some(store::COPY_SAVEPOINT);
    let range = (expected, batch.to);
    let opened = BatchTx::begin_fenced(shared.store.pool(), &shared.group, &shared.topic, partition, range, savepoint);
    db.start();
    let mut tx = match opened.await.map_err(WriteError::Db)? {
        Opened::Advanced(tx) => tx,
        Opened::Conflict { stored } => return Ok(Written::Conflict { stored }),
    };
    let (outcome, refused) = match write_rows(&mut tx, shared, batch).await {
        Ok(outcome) => (outcome, Vec::new()),
        Err(e) if store::classify(&e) == ErrorKind::Rejected => {
            shared.metrics.db_errors.with_label_values(&[ErrorKind::Rejected.label()]).inc();
            tracing::warn!(error = %e, records = batch.len(), "the database refused a row of the batch; isolating it");
            tx.rollback().await.map_err(WriteError::Db)?;
            db.stop();
            tx = BatchTx::begin(shared.store.pool()).await.map_err(WriteError::Db)?;
            db.start();
            if let Fence::Conflict { stored } =
                store::advance_offset(&mut tx, &shared.group, &shared.topic, partition, expected, batch.to)
                    .await
                    .map_err(WriteError::Db)?
            {
                return Ok(Written::Conflict { stored });
            }
            write_rows_isolating(&mut tx, shared, batch).await.map_err(WriteError::Db)?
        }
        Err(e) => return Err(WriteError::Db(e)),
    };
    if !refused.is_empty() {
        let rejections: Vec<(usize, Rejection)> = refused
            .iter()
            .map(|(i, reason)| (*i, Rejection::new(RejectReason::DatabaseRejected, reason.clone())))
            .collect();
        let letters: Vec<_> = rejections.iter().map(|(i, r)| (&*batch.records[*i], r)).collect();
        db.stop();
        shared.dlq.send_all(&letters).await.map_err(WriteError::DeadLetter)?;
        db.start();
        batch.db_rejections = rejections.len();
    }
    failpoint::hit("sinker.before_db_commit");
    // A COMMIT that fails with a connection error (the connection broke, or the session was
    // terminated) may have been applied: its outcome is unknown. Other errors rolled back.
    tx.commit().await.map_err(|e| match store::classify(&e) {
        ErrorKind::Connection => WriteError::CommitUnknown(e),
        _ => WriteError::Db(e),
    })?;
    failpoint::hit("sinker.after_db_commit");
    db.stop();
    batch.outcome = outcome;
    batch.commit_seconds = db.elapsed_at(Instant::now()).as_secs_f64();
    Ok(Written::Done)
}

/// Writes a batch's rows in the transaction: into `events`, or through the routes.
async fn write_rows(conn: &mut sqlx::PgConnection, shared: &Shared, batch: &Prepared) -> Result<Outcome, sqlx::Error> {
    match &shared.routes {
        None => {
            // The transaction opened with COPY's savepoint (see `copies`).
            let rows = batch.event_rows();
            let inserted = match &batch.copy_stream {
                Some(stream) => store::insert_encoded(conn, &rows, stream, true).await?,
                None => store::insert_batch(conn, &rows, shared.insert_method, true).await?,
            };
            Ok(Outcome { inserted: inserted.rows, routed: None, copy: inserted.copy })
        }
        Some(routes) => {
            let units = Units { routes, units: &batch.units };
            // The transaction opened with COPY's savepoint when the routes COPY (see `copies`).
            let written =
                routed::write_op_refs(conn, routes, units.ops(0..batch.units.len()), batch.copies(shared)).await?;
            Ok(Outcome { inserted: written.inserted(), routed: Some(written), copy: None })
        }
    }
}

/// [`write_rows`], isolating what PostgreSQL refuses; returns the refused records' indexes.
async fn write_rows_isolating(
    conn: &mut sqlx::PgConnection,
    shared: &Shared,
    batch: &Prepared,
) -> Result<(Outcome, Vec<(usize, String)>), sqlx::Error> {
    match &shared.routes {
        None => {
            let (inserted, refused) = store::insert_isolating(conn, &batch.event_rows()).await?;
            let refused = refused.into_iter().map(|(i, why)| (batch.events[i].0, why)).collect();
            Ok((Outcome { inserted, routed: None, copy: None }, refused))
        }
        Some(routes) => {
            let (parts, refused) = store::write_isolating(conn, &Units { routes, units: &batch.units }).await?;
            let mut written = RoutedWritten::default();
            for part in parts {
                written.add(part);
            }
            let refused = refused.into_iter().map(|(i, why)| (batch.units[i].0, why)).collect();
            Ok((Outcome { inserted: written.inserted(), routed: Some(written), copy: None }, refused))
        }
    }
}

fn stuck_reason(partition: i32, what: &str, error: &dyn Display) -> String {
    format!("partition {partition} is stuck: {what}: {error}; fix it, the sinker keeps retrying")
}

/// What the first compare-and-set expects once the stored offset is read late. Reading from a
/// log start (`position` None: nothing was known, or the log started over), the stored offset
/// is replaced whatever it is (a stale one from a recreated topic must not skip new records;
/// at worst written ids are read again and skipped by their keys). Otherwise the batch's own
/// start is expected, and the exact fence sorts out a database ahead (another owner: skip) or
/// behind (a restore: go back).
fn fence_to_expect(position: Option<i64>, stored: Option<i64>) -> Option<i64> {
    match position {
        None => stored,
        Some(_) => None,
    }
}

fn timestamp_ms(msg: &OwnedMessage) -> i64 {
    msg.timestamp().to_millis().unwrap_or_else(|| Utc::now().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::fence_to_expect;

    #[test]
    fn a_fence_read_late_never_skips_records_read_from_a_log_start() {
        // Reading from the log start (a recreated topic, or nothing known): the stale stored
        // offset is what the first compare-and-set expects, so it is replaced, not obeyed.
        assert_eq!(fence_to_expect(None, Some(500)), Some(500));
        assert_eq!(fence_to_expect(None, None), None);
        // Resuming at a position: the batch's own start is expected; the exact fence then
        // tells a database ahead (skip) from one behind (go back).
        assert_eq!(fence_to_expect(Some(40), Some(500)), None);
        assert_eq!(fence_to_expect(Some(40), Some(10)), None);
    }
}
