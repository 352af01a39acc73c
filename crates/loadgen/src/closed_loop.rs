//! Closed loop: a fixed number of workers, each sending its next request as soon as the
//! previous one was answered. Latency counts from the send; the load adapts to the server (a
//! slow server gets fewer requests), so this measures capacity, not latency under a given load.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, PoisonError,
};

use tokio::{sync::mpsc, time::Instant};

use crate::{
    client::Target,
    collector::{Outcome, Record},
    payload::Generator,
    report::StoppedBy,
    run::{FirstStop, Plan, Stop},
};

/// Runs `concurrency` workers until the plan ends, --requests is reached or stop is set, and
/// returns once all of them finished their last request, with when and why sending stopped.
pub async fn run(
    plan: Plan,
    concurrency: usize,
    target: Target,
    generator: Generator,
    tx: mpsc::UnboundedSender<Record>,
    stop: Stop,
) -> (Instant, StoppedBy) {
    let shared = Arc::new(Shared {
        plan,
        target,
        generator: Mutex::new(generator),
        claimed: AtomicU64::new(0),
        first_stop: FirstStop::default(),
    });
    let workers: Vec<_> =
        (0..concurrency).map(|_| tokio::spawn(worker(shared.clone(), tx.clone(), stop.clone()))).collect();
    drop(tx);
    for result in futures::future::join_all(workers).await {
        if let Err(error) = result {
            eprintln!("loadgen: a worker failed: {error}");
        }
    }
    shared.first_stop.get(&plan)
}

struct Shared {
    plan: Plan,
    target: Target,
    generator: Mutex<Generator>,
    /// Measured requests started so far, against --requests.
    claimed: AtomicU64,
    first_stop: FirstStop,
}

async fn worker(shared: Arc<Shared>, tx: mpsc::UnboundedSender<Record>, stop: Stop) {
    let plan = shared.plan;
    loop {
        let now = Instant::now();
        if stop.is_set() {
            shared.first_stop.mark(now, StoppedBy::Signal);
            return;
        }
        if now >= plan.end {
            shared.first_stop.mark(plan.end, StoppedBy::Duration);
            return;
        }
        let warmup = now < plan.warmup_end;
        if let (false, Some(limit)) = (warmup, plan.requests) {
            let claim = shared.claimed.fetch_add(1, Ordering::Relaxed);
            if claim >= limit {
                return;
            }
            if claim + 1 == limit {
                shared.first_stop.mark(now, StoppedBy::Requests);
            }
        }
        let request = shared.generator.lock().unwrap_or_else(PoisonError::into_inner).next_request();
        let sent = Instant::now();
        let answer = shared.target.send(request.body).await;
        let finished = Instant::now();
        let outcome = Outcome {
            warmup,
            answer,
            latency: finished.saturating_duration_since(sent),
            schedule_lag: None,
            finished,
            ids: request.ids,
            duplicates: request.duplicates,
        };
        if tx.send(Record::Done(outcome)).is_err() {
            return;
        }
    }
}
