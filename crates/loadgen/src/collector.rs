//! Gathers the outcome of every request: counts, histograms and the ids file. Runs on its own
//! blocking thread, fed through a channel, so the senders never wait on a file.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufWriter, Write as _},
    time::Duration,
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use uuid::Uuid;

use crate::{client::Answer, report};

/// Most distinct transport error messages kept; the rest are counted under `other`.
const MAX_ERROR_MESSAGES: usize = 10;

/// What happened to one request that was sent.
#[derive(Debug)]
pub struct Outcome {
    /// Sent (closed loop) or scheduled (open loop) before the warmup ended: not measured.
    pub warmup: bool,
    pub answer: Answer,
    /// Open loop: from the scheduled time; closed loop: from the send.
    pub latency: Duration,
    /// Open loop: how late the request started compared with its schedule.
    pub schedule_lag: Option<Duration>,
    pub finished: Instant,
    pub ids: Vec<Uuid>,
    pub duplicates: usize,
}

#[derive(Debug)]
pub enum Record {
    Done(Outcome),
    /// Open loop: due while --max-in-flight requests were in flight, so not sent.
    Dropped {
        warmup: bool,
    },
}

/// Totals of the measured period (warmup excluded, except in the warmup_* fields).
pub struct Stats {
    pub requests_sent: u64,
    pub requests_completed: u64,
    pub requests_2xx: u64,
    pub requests_timed_out: u64,
    pub requests_failed: u64,
    pub requests_dropped: u64,
    pub events_sent: u64,
    pub events_completed: u64,
    pub events_2xx: u64,
    pub duplicates_sent: u64,
    pub statuses: BTreeMap<String, u64>,
    pub error_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Microseconds: answered requests of any status, and timed-out ones.
    pub latency: Histogram<u64>,
    /// Microseconds: 2xx answers only.
    pub latency_2xx: Histogram<u64>,
    /// Microseconds, open loop only.
    pub schedule_lag: Histogram<u64>,
    /// When the last measured request finished.
    pub last_finished: Option<Instant>,
    pub warmup_requests_sent: u64,
    pub warmup_requests_dropped: u64,
    pub warmup_events_sent: u64,
    pub ids_written: u64,
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            requests_sent: 0,
            requests_completed: 0,
            requests_2xx: 0,
            requests_timed_out: 0,
            requests_failed: 0,
            requests_dropped: 0,
            events_sent: 0,
            events_completed: 0,
            events_2xx: 0,
            duplicates_sent: 0,
            statuses: BTreeMap::new(),
            error_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            latency: report::new_histogram()?,
            latency_2xx: report::new_histogram()?,
            schedule_lag: report::new_histogram()?,
            last_finished: None,
            warmup_requests_sent: 0,
            warmup_requests_dropped: 0,
            warmup_events_sent: 0,
            ids_written: 0,
        })
    }

    pub fn record(&mut self, record: &Record) {
        let outcome = match record {
            Record::Dropped { warmup: true } => {
                self.warmup_requests_dropped += 1;
                return;
            }
            Record::Dropped { warmup: false } => {
                self.requests_dropped += 1;
                return;
            }
            Record::Done(outcome) => outcome,
        };
        let events = outcome.ids.len() as u64;
        if outcome.warmup {
            self.warmup_requests_sent += 1;
            self.warmup_events_sent += events;
            return;
        }
        self.requests_sent += 1;
        self.events_sent += events;
        self.duplicates_sent += outcome.duplicates as u64;
        self.last_finished = Some(self.last_finished.map_or(outcome.finished, |last| last.max(outcome.finished)));
        *self.statuses.entry(outcome.answer.label()).or_default() += 1;
        if let Some(lag) = outcome.schedule_lag {
            self.schedule_lag.saturating_record(micros(lag));
        }
        let latency = micros(outcome.latency);
        match &outcome.answer {
            Answer::Status { code, error_code } => {
                self.requests_completed += 1;
                self.events_completed += events;
                self.latency.saturating_record(latency);
                if (200..300).contains(code) {
                    self.requests_2xx += 1;
                    self.events_2xx += events;
                    self.latency_2xx.saturating_record(latency);
                }
                if let Some(error_code) = error_code {
                    *self.error_codes.entry(error_code.clone()).or_default() += 1;
                }
            }
            Answer::Timeout => {
                self.requests_timed_out += 1;
                self.latency.saturating_record(latency);
            }
            Answer::Error(message) => {
                self.requests_failed += 1;
                let slot = if self.errors.len() < MAX_ERROR_MESSAGES || self.errors.contains_key(message) {
                    message.clone()
                } else {
                    "other".to_owned()
                };
                *self.errors.entry(slot).or_default() += 1;
            }
        }
    }
}

/// The latency histograms' unit: microseconds, at least 1.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Starts the collector; it ends, returning the totals, once every sender is dropped.
pub fn spawn(ids_out: Option<File>) -> (mpsc::UnboundedSender<Record>, JoinHandle<anyhow::Result<Stats>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let handle = tokio::task::spawn_blocking(move || {
        let mut stats = Stats::new()?;
        let mut ids_out = ids_out.map(|file| BufWriter::with_capacity(1 << 20, file));
        while let Some(record) = rx.blocking_recv() {
            if let (Some(out), Record::Done(outcome)) = (ids_out.as_mut(), &record) {
                let status = outcome.answer.label();
                for id in &outcome.ids {
                    writeln!(out, "{id} {status}").context("cannot write the ids file")?;
                }
                stats.ids_written += outcome.ids.len() as u64;
            }
            stats.record(&record);
        }
        if let Some(mut out) = ids_out {
            out.flush().context("cannot write the ids file")?;
            out.into_inner()
                .map_err(|error| error.into_error())
                .and_then(|file| file.sync_all())
                .context("cannot write the ids file")?;
        }
        Ok(stats)
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(answer: Answer, warmup: bool, millis: u64) -> Record {
        Record::Done(Outcome {
            warmup,
            answer,
            latency: Duration::from_millis(millis),
            schedule_lag: None,
            finished: Instant::now(),
            ids: vec![Uuid::now_v7(), Uuid::now_v7()],
            duplicates: 1,
        })
    }

    #[test]
    fn counts_split_by_outcome_and_warmup_is_kept_apart() -> anyhow::Result<()> {
        let mut stats = Stats::new()?;
        stats.record(&outcome(Answer::Status { code: 202, error_code: None }, false, 5));
        stats.record(&outcome(Answer::Status { code: 429, error_code: Some("throttled".to_owned()) }, false, 1));
        stats.record(&outcome(Answer::Timeout, false, 30_000));
        stats.record(&outcome(Answer::Error("connection refused".to_owned()), false, 1));
        stats.record(&outcome(Answer::Status { code: 202, error_code: None }, true, 5));
        stats.record(&Record::Dropped { warmup: false });
        stats.record(&Record::Dropped { warmup: true });
        assert_eq!(
            (
                stats.requests_sent,
                stats.requests_completed,
                stats.requests_2xx,
                stats.requests_timed_out,
                stats.requests_failed
            ),
            (4, 2, 1, 1, 1)
        );
        assert_eq!((stats.requests_dropped, stats.warmup_requests_dropped, stats.warmup_requests_sent), (1, 1, 1));
        assert_eq!((stats.events_sent, stats.events_completed, stats.events_2xx, stats.duplicates_sent), (8, 4, 2, 4));
        assert_eq!(stats.statuses.get("202"), Some(&1));
        assert_eq!(stats.statuses.get("429"), Some(&1));
        assert_eq!(stats.statuses.get("timeout"), Some(&1));
        assert_eq!(stats.statuses.get("error"), Some(&1));
        assert_eq!(stats.error_codes.get("throttled"), Some(&1));
        assert_eq!(stats.errors.get("connection refused"), Some(&1));
        assert_eq!(stats.latency.len(), 3, "answers and timeouts, not transport errors");
        assert_eq!(stats.latency_2xx.len(), 1);
        Ok(())
    }

    #[test]
    fn distinct_error_messages_are_capped() -> anyhow::Result<()> {
        let mut stats = Stats::new()?;
        for n in 0..25 {
            stats.record(&outcome(Answer::Error(format!("error {n}")), false, 1));
        }
        assert_eq!(stats.errors.len(), MAX_ERROR_MESSAGES + 1);
        assert_eq!(stats.errors.get("other"), Some(&15));
        Ok(())
    }
}
