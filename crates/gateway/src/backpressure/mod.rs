//! Admission control from consumer lag: the gateway answers 429 while the sinkers are too far
//! behind, with a Retry-After derived from the measured drain rate, and lets writes in again
//! once lag is down to the resume level (hysteresis).
//!
//! Unknown lag (a broker hiccup) never throttles by itself: the last decision stands for
//! `stale_after`, then writes are let in and the unknown shows in metrics and /readyz.
//!
//! One idea per file: [`throttle`] (the hysteresis), [`drain_rate`] (the smoothed rate),
//! [`retry_after`] (floats to a bounded `Retry-After`), [`watcher`] (the task that measures).
//! This file holds the view the request path reads. Per-client rate limits: `crate::rate_limit`.

pub mod drain_rate;
pub mod retry_after;
pub mod throttle;
pub mod watcher;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

pub use self::{
    retry_after::{RETRY_AFTER_MAX, RETRY_AFTER_MIN},
    throttle::Throttle,
    watcher::watch,
};

/// What the request path reads.
#[derive(Debug, Clone)]
pub struct LagView {
    pub lag: Option<u64>,
    pub throttled: bool,
    pub retry_after: Duration,
    pub measured_at: Option<Instant>,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct Backpressure {
    view: Arc<Mutex<LagView>>,
    stale_after: Duration,
}

impl Backpressure {
    pub fn new(stale_after: Duration) -> Self {
        Self {
            view: Arc::new(Mutex::new(LagView {
                lag: None,
                throttled: false,
                retry_after: RETRY_AFTER_MIN,
                measured_at: None,
                last_error: None,
            })),
            stale_after,
        }
    }

    pub fn view(&self) -> LagView {
        self.view.lock().map(|v| v.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// `Some((lag, retry_after))` when a write must be refused now.
    pub fn check(&self) -> Option<(u64, Duration)> {
        let view = self.view();
        let fresh = view.measured_at.is_some_and(|t| t.elapsed() <= self.stale_after);
        match (view.throttled && fresh, view.lag) {
            (true, Some(lag)) => Some((lag, view.retry_after)),
            _ => None,
        }
    }

    /// Why lag is unknown, if it has been for longer than `stale_after`.
    pub fn stale_reason(&self) -> Option<String> {
        let view = self.view();
        let age = view.measured_at.map(|t| t.elapsed());
        if age.is_some_and(|a| a <= self.stale_after) {
            return None;
        }
        let error = view.last_error.unwrap_or_else(|| "no measurement yet".to_owned());
        Some(match age {
            Some(a) => {
                format!("consumer lag unknown for {} s ({error}); writes are not throttled meanwhile", a.as_secs())
            }
            None => format!("consumer lag not measured yet ({error}); writes are not throttled meanwhile"),
        })
    }

    fn update(&self, f: impl FnOnce(&mut LagView)) {
        let mut v = self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut v);
    }
}
