//! The dispatcher: one async loop, one `select!` over shutdown, poll events and a tick. It
//! routes records to partition workers, starts and stops workers on rebalances, pauses
//! partitions whose buffer is full and resumes them when it drains, and keeps the lag gauges.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use rdkafka::{consumer::Consumer, Message};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::{commit_sync, Assignment, PollEvent, Watermarks},
    flow::{Buffered, Reason},
    partition::{PartitionState, PartitionWorker, Shared, WorkerInput},
};

/// One turn of the dispatcher's loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    Shutdown,
    Tick,
    /// A poll event, or None when the poll thread is gone.
    Event(Option<T>),
}

/// Waits for the next thing to do. The order is fixed: shutdown, then the tick, then events.
/// The tick is ready at most once per period, so it cannot starve the events; an events
/// channel that is never empty (a busy topic) cannot starve the tick, which resumes
/// partitions, refreshes lag and re-commits offsets.
pub async fn next_step<T>(
    shutdown: &CancellationToken,
    events: &mut mpsc::Receiver<T>,
    tick: &mut tokio::time::Interval,
) -> Step<T> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Step::Shutdown,
        _ = tick.tick() => Step::Tick,
        event = events.recv() => Step::Event(event),
    }
}

struct Worker {
    inbox: mpsc::UnboundedSender<WorkerInput>,
    state: Arc<PartitionState>,
    abandon: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Paused because the worker holds --max-buffered-records (the dispatcher's reason; the
    /// byte budget's is the poll thread's, see flow.rs).
    records_paused: bool,
}

pub struct Dispatcher {
    pub shared: Arc<Shared>,
    pub watermarks: Watermarks,
    pub max_buffered: usize,
    pub drain_timeout: Duration,
    workers: HashMap<i32, Worker>,
    refreshing_watermarks: Arc<AtomicBool>,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>, watermarks: Watermarks, max_buffered: usize, drain_timeout: Duration) -> Self {
        Self {
            shared,
            watermarks,
            max_buffered,
            drain_timeout,
            workers: HashMap::new(),
            refreshing_watermarks: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs until shutdown or until the poll thread is gone; then drains every partition and
    /// commits what was written.
    ///
    /// A partition worker that ends by itself (a panic: workers only end when told to) is an
    /// error: the dispatcher drains the other partitions and returns it, so the process exits
    /// non-zero and the group moves the partition to a healthy sinker, instead of leaving it
    /// owned and never written.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<PollEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        // Resuming a drained partition promptly matters: a paused partition's prefetched
        // records were dropped, so after a resume the consumer must fetch again before the
        // worker has anything to write.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut failure = None;
        loop {
            match next_step(&shutdown, &mut events, &mut tick).await {
                Step::Shutdown | Step::Event(None) => break,
                Step::Event(Some(PollEvent::Message(msg))) => self.route(msg),
                Step::Event(Some(PollEvent::Assigned(partitions))) => self.start(partitions),
                Step::Event(Some(PollEvent::Seeked { partition, offset })) => {
                    if let Some(worker) = self.workers.get(&partition) {
                        let _ = worker.inbox.send(WorkerInput::Seeked(offset));
                    }
                }
                Step::Event(Some(PollEvent::Revoked { partitions, lost, ack })) => {
                    let written = self.stop(&partitions, lost).await;
                    let _ = ack.send(written);
                }
                Step::Tick => {
                    ticks += 1;
                    if let Some(error) = self.dead_worker().await {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "a partition worker died; draining the others and exiting so the group moves its partition"
                        );
                        failure = Some(error);
                        break;
                    }
                    self.resume_drained();
                    if ticks % 50 == 0 {
                        self.update_lag();
                    }
                    if ticks % 250 == 0 {
                        self.recommit_written();
                    }
                }
            }
        }
        let owned: Vec<i32> = self.workers.keys().copied().collect();
        tracing::info!(partitions = ?owned, "draining partitions before exit");
        let written = self.stop(&owned, false).await;
        let consumer = self.shared.consumer.clone();
        let topic = self.shared.topic.clone();
        let _ = tokio::task::spawn_blocking(move || commit_sync(&consumer, &topic, &written)).await;
        failure.map_or(Ok(()), Err)
    }

    /// A worker whose task ended although nobody stopped it, removed and described.
    async fn dead_worker(&mut self) -> Option<anyhow::Error> {
        let partition = self.workers.iter().find(|(_, w)| w.task.is_finished()).map(|(p, _)| *p)?;
        let worker = self.workers.remove(&partition)?;
        self.shared.consumer.context().flow.forget(&[partition]);
        self.shared.metrics.partitions_assigned.set(self.workers.len() as i64);
        let how = match worker.task.await {
            Ok(()) => "returned".to_owned(),
            Err(error) => sluice_core::task::describe_exit(error),
        };
        Some(anyhow::anyhow!("the worker of partition {partition} stopped unexpectedly ({how})"))
    }

    fn route(&mut self, msg: Buffered) {
        let partition = msg.partition();
        let Some(worker) = self.workers.get_mut(&partition) else {
            tracing::debug!(partition, offset = msg.offset(), "record for a partition not owned; dropped");
            return;
        };
        let buffered = worker.state.buffered.fetch_add(1, Ordering::SeqCst) + 1;
        if worker.inbox.send(WorkerInput::Record(crate::prepared::Incoming::new(msg))).is_err() {
            worker.state.buffered.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if buffered >= self.max_buffered && !worker.records_paused {
            worker.records_paused = true;
            self.shared.consumer.context().flow.set(&self.shared.consumer, partition, Reason::Records, true);
            tracing::info!(partition, buffered, "partition paused: its buffer is full (the database is slow or down)");
        }
    }

    /// Resumes partitions whose buffer halved, and those the byte budget paused once the
    /// total is at half the budget.
    fn resume_drained(&mut self) {
        let low = self.max_buffered / 2;
        let flow = &self.shared.consumer.context().flow;
        for (&partition, worker) in &mut self.workers {
            if worker.records_paused && worker.state.buffered.load(Ordering::SeqCst) <= low {
                worker.records_paused = false;
                flow.set(&self.shared.consumer, partition, Reason::Records, false);
                tracing::info!(partition, "partition's buffer drained");
            }
        }
        flow.resume_within_budget(&self.shared.consumer);
    }

    fn start(&mut self, partitions: Vec<Assignment>) {
        let owned: Vec<i32> = partitions.iter().map(|a| a.partition).collect();
        self.shared.consumer.context().commits.forget(&owned);
        for assignment in partitions {
            let partition = assignment.partition;
            let (inbox, rx) = mpsc::unbounded_channel();
            let state = Arc::new(PartitionState::default());
            let abandon = CancellationToken::new();
            let worker = PartitionWorker::new(assignment, self.shared.clone(), state.clone(), rx, abandon.clone());
            let task = tokio::spawn(worker.run());
            if let Some(old) =
                self.workers.insert(partition, Worker { inbox, state, abandon, task, records_paused: false })
            {
                tracing::error!(partition, "partition assigned twice; stopping the old worker");
                old.abandon.cancel();
            }
        }
        self.shared.metrics.partitions_assigned.set(self.workers.len() as i64);
    }

    /// Stops the workers of these partitions: each writes what it holds (for at most the
    /// drain timeout) unless `lost`. Returns each partition's written next offset.
    async fn stop(&mut self, partitions: &[i32], lost: bool) -> Vec<(i32, i64)> {
        let mut replies = Vec::new();
        for partition in partitions {
            let Some(worker) = self.workers.remove(partition) else { continue };
            self.shared.consumer.context().flow.forget(&[*partition]);
            self.shared.metrics.forget_partition(&self.shared.topic, *partition);
            let (reply, answer) = oneshot::channel();
            if lost {
                worker.abandon.cancel();
            } else {
                let abandon = worker.abandon.clone();
                let grace = self.drain_timeout;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    abandon.cancel();
                });
            }
            let _ = worker.inbox.send(WorkerInput::Stop { drop_pending: lost, reply });
            replies.push((*partition, answer, worker.task));
        }
        self.shared.metrics.partitions_assigned.set(self.workers.len() as i64);
        let mut written = Vec::new();
        for (partition, answer, task) in replies {
            match tokio::time::timeout(self.drain_timeout + Duration::from_secs(5), answer).await {
                Ok(Ok(Some(offset))) => written.push((partition, offset)),
                Ok(Ok(None)) => {}
                _ => tracing::warn!(partition, "partition worker did not answer in time"),
            }
            task.abort();
        }
        written
    }

    /// Every few seconds, commits every owned partition's written offset to Kafka again. Kafka's
    /// copy can fall behind the database's: an async commit lost to a crash or a rebalance, or
    /// a partition assigned at a stored offset past Kafka's and with nothing new to write. The
    /// copy feeds lag monitoring, so it must catch up without waiting for new records. Safe:
    /// `written` only ever holds offsets the database has committed.
    /// The commit log drops an offset below one already sent (a worker may have committed
    /// past the `written` read here).
    fn recommit_written(&self) {
        let consumer = &self.shared.consumer;
        let written = self.workers.iter().map(|(&p, w)| (p, &w.state.written));
        consumer.context().commits.commit_written_async(consumer, &self.shared.topic, written);
    }

    fn update_lag(&self) {
        let topic = &self.shared.topic;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let watermarks = self.watermarks.lock().map(|m| m.clone()).unwrap_or_default();
        for (&partition, worker) in &self.workers {
            let Some(&(low, high)) = watermarks.get(&partition) else {
                continue;
            };
            // Nothing written yet and no stored offset: everything from the low watermark on
            // is unwritten (auto.offset.reset=earliest).
            let written = match worker.state.written.load(Ordering::SeqCst) {
                w if w < 0 => low,
                w => w,
            };
            let lag = (high - written).max(0);
            let labels = [topic.as_str(), &partition.to_string()];
            self.shared.metrics.consumer_lag.with_label_values(&labels).set(lag);
            let seconds = self.shared.metrics.consumer_lag_seconds.with_label_values(&labels);
            let oldest = worker.state.oldest_unwritten_ms.load(Ordering::SeqCst);
            if lag == 0 {
                seconds.set(0.0);
            } else if oldest > 0 {
                seconds.set(((now_ms - oldest).max(0) as f64) / 1000.0);
            }
        }
        self.refresh_paused_watermarks();
    }

    /// librdkafka stops updating a paused partition's high watermark (librdkafka#4996): ask
    /// the broker directly for those, off the async threads, one refresh at a time.
    fn refresh_paused_watermarks(&self) {
        let paused: Vec<i32> = self
            .shared
            .consumer
            .context()
            .flow
            .paused_partitions()
            .into_iter()
            .filter(|p| self.workers.contains_key(p))
            .collect();
        if paused.is_empty() || self.refreshing_watermarks.swap(true, Ordering::SeqCst) {
            return;
        }
        let consumer = self.shared.consumer.clone();
        let topic = self.shared.topic.clone();
        let map = self.watermarks.clone();
        let flag = self.refreshing_watermarks.clone();
        tokio::task::spawn_blocking(move || {
            for partition in paused {
                if let Ok(marks) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(1)) {
                    if let Ok(mut m) = map.lock() {
                        m.insert(partition, marks);
                    }
                }
            }
            flag.store(false, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{next_step, Step};

    #[tokio::test(start_paused = true)]
    async fn a_busy_events_channel_does_not_starve_the_tick() {
        let shutdown = CancellationToken::new();
        let (tx, mut events) = mpsc::channel(10_000);
        for i in 0..10_000 {
            tx.try_send(i).expect("room");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        assert_eq!(next_step(&shutdown, &mut events, &mut tick).await, Step::Tick, "the first tick is immediate");
        for round in 0..5 {
            // Events flow while the tick is not due ...
            for _ in 0..100 {
                assert!(matches!(next_step(&shutdown, &mut events, &mut tick).await, Step::Event(Some(_))));
            }
            // ... and the tick comes first as soon as it is, though events are still waiting.
            tokio::time::advance(Duration::from_millis(20)).await;
            assert_eq!(next_step(&shutdown, &mut events, &mut tick).await, Step::Tick, "round {round}");
        }
        shutdown.cancel();
        assert_eq!(next_step(&shutdown, &mut events, &mut tick).await, Step::Shutdown);
    }
}
