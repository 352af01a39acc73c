//! Open loop: requests arrive on a fixed schedule whatever the server does. Request i is due at
//! start + i/rate and its latency counts from then, so when the server stalls the requests
//! queued behind it accumulate latency instead of silently not being sent (no coordinated
//! omission). Each request is its own task; past --max-in-flight a due request is dropped and
//! counted. A request may leave up to TIMER_SLACK before it is due (timer granularity); its
//! latency then counts from the send.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, Semaphore},
    time::Instant,
};

use crate::{
    client::Target,
    collector::{Outcome, Record},
    payload::Generator,
    report::StoppedBy,
    run::{FirstStop, Plan, Stop},
};

/// How much earlier than due a request may be sent (the timer's granularity).
pub const TIMER_SLACK: Duration = Duration::from_millis(1);

/// When request `i` (from 0) is due, counted from the start of the run.
pub fn scheduled_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// Sends until the plan ends, --requests is reached or stop is set; returns when the last
/// request was issued (those in flight report to the collector when they finish) with when and
/// why sending stopped.
pub async fn run(
    plan: Plan,
    rate: f64,
    max_in_flight: usize,
    target: Target,
    mut generator: Generator,
    tx: mpsc::UnboundedSender<Record>,
    mut stop: Stop,
) -> (Instant, StoppedBy) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS)));
    let first_stop = FirstStop::default();
    let mut measured = 0u64;
    for i in 0u64.. {
        let due = plan.start + scheduled_offset(i, rate);
        if due >= plan.end {
            first_stop.mark(plan.end, StoppedBy::Duration);
            break;
        }
        let warmup = due < plan.warmup_end;
        if !warmup {
            if plan.requests.is_some_and(|limit| measured >= limit) {
                // The schedule covered up to this (unsent) request's due time.
                first_stop.mark(due, StoppedBy::Requests);
                break;
            }
            measured += 1;
        }
        // Tokio's timer rounds deadlines up to the next millisecond: wake up to TIMER_SLACK
        // early rather than up to a millisecond late, which would add to every latency.
        let wake = due.checked_sub(TIMER_SLACK).unwrap_or(due);
        if wake > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.wait() => {}
            }
        }
        if stop.is_set() {
            first_stop.mark(Instant::now(), StoppedBy::Signal);
            break;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if tx.send(Record::Dropped { warmup }).is_err() {
                break;
            }
            continue;
        };
        let request = generator.next_request();
        let target = target.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let answer = target.send(request.body).await;
            let finished = Instant::now();
            drop(permit);
            // From the due time, or from the send when it went out (at most TIMER_SLACK) early.
            let _ = tx.send(Record::Done(Outcome {
                warmup,
                answer,
                latency: finished.saturating_duration_since(due.min(began)),
                schedule_lag: Some(began.saturating_duration_since(due)),
                finished,
                ids: request.ids,
                duplicates: request.duplicates,
            }));
        });
    }
    first_stop.get(&plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ith_request_is_due_at_i_over_the_rate() {
        assert_eq!(scheduled_offset(0, 200.0), Duration::ZERO);
        assert_eq!(scheduled_offset(1, 200.0), Duration::from_millis(5));
        assert_eq!(scheduled_offset(200, 200.0), Duration::from_secs(1));
        assert_eq!(scheduled_offset(999, 200.0), Duration::from_millis(4995));
        assert_eq!(scheduled_offset(3, 0.5), Duration::from_secs(6));
        let third = scheduled_offset(1, 3.0).as_nanos();
        assert!((333_333_332..=333_333_334).contains(&third), "{third}");
    }

    #[test]
    fn the_schedule_does_not_drift() {
        // Computed from i, not by adding intervals: no accumulated rounding.
        assert_eq!(scheduled_offset(3_600_000, 1000.0), Duration::from_secs(3600));
        let rate = 7.0;
        let hour = scheduled_offset(7 * 3600, rate);
        assert!(hour.abs_diff(Duration::from_secs(3600)) < Duration::from_micros(1), "{hour:?}");
    }

    #[test]
    fn five_seconds_at_200_per_second_is_1000_requests() {
        let window = Duration::from_secs(5);
        let due = (0u64..).take_while(|&i| scheduled_offset(i, 200.0) < window).count();
        assert_eq!(due, 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_server_shows_as_latency_and_dropped_requests() -> anyhow::Result<()> {
        // A socket that accepts connections (the kernel's backlog) but never answers; time is
        // paused, so the 5 s timeouts pass at once. 10 requests are due over 1 s, at most 3 in
        // flight: 3 are sent and time out, 7 are dropped.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url: reqwest::Url = format!("http://{}/v1/events", listener.local_addr()?).parse()?;
        let target = Target::new(url, &[], Duration::from_secs(5))?;
        let spec = crate::payload::PayloadSpec {
            batch: 1,
            payload_bytes: 64,
            keys: crate::config::KeyDist::None,
            key_space: 1,
            hot_ratio: 0.8,
            duplicate_ratio: 0.0,
            event_type: "t".to_owned(),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let plan = Plan { start, warmup_end: start, end: start + Duration::from_secs(1), requests: None };
        let (_stop_tx, stop) = Stop::manual();
        let (_, why) = run(plan, 10.0, 3, target, Generator::new(spec, 1), tx, stop).await;
        assert_eq!(why, StoppedBy::Duration);
        let (mut timed_out, mut dropped) = (0, 0);
        while let Some(record) = rx.recv().await {
            match record {
                Record::Done(outcome) => {
                    assert_eq!(outcome.answer, crate::client::Answer::Timeout);
                    assert!(outcome.latency >= Duration::from_secs(5), "{:?}", outcome.latency);
                    timed_out += 1;
                }
                Record::Dropped { warmup } => {
                    assert!(!warmup);
                    dropped += 1;
                }
            }
        }
        assert_eq!((timed_out, dropped), (3, 7));
        drop(listener);
        Ok(())
    }
}
