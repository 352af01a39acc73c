//! Admission control from consumer lag: the gateway answers 429 while the sinkers are too far
//! behind, with a Retry-After derived from the measured drain rate, and lets writes in again
//! once lag falls below the resume level (hysteresis).
//!
//! Unknown lag (a broker hiccup) never throttles by itself: the last decision stands for
//! `stale_after`, then writes are let in and the unknown shows in metrics and /readyz.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    lag::{LagReader, PartitionOffsets},
    metrics::Metrics,
};

/// Longest and shortest Retry-After the gateway sends for lag.
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// The throttle's pure state machine.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Lag at which writes are refused; 0 disables throttling.
    pub throttle_at: u64,
    /// Lag below which writes are accepted again.
    pub resume_below: u64,
    pub active: bool,
}

impl Throttle {
    pub fn new(throttle_at: u64, resume_below: u64) -> Self {
        Self { throttle_at, resume_below, active: false }
    }

    /// Feeds a lag measurement; returns whether writes are throttled now.
    pub fn observe(&mut self, lag: u64) -> bool {
        if self.throttle_at == 0 {
            self.active = false;
        } else if lag >= self.throttle_at {
            self.active = true;
        } else if lag < self.resume_below {
            self.active = false;
        }
        self.active
    }

    /// Seconds until lag, draining at `rate` records/s, falls below the resume level.
    pub fn retry_after(&self, lag: u64, rate: f64) -> Duration {
        let excess = lag.saturating_sub(self.resume_below).max(1) as f64;
        if rate <= 0.0 || !rate.is_finite() {
            return RETRY_AFTER_MAX;
        }
        Duration::from_secs_f64((excess / rate).ceil()).clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)
    }
}

/// The drain rate: how fast the group's committed offsets advance, smoothed.
#[derive(Debug, Default, Clone)]
pub struct DrainRate {
    last: Option<(Instant, i64)>,
    rate: Option<f64>,
}

impl DrainRate {
    /// Feeds the sum of consumed offsets at `now`; returns the smoothed records/s.
    pub fn observe(&mut self, now: Instant, consumed: i64) -> f64 {
        if let Some((then, before)) = self.last {
            let dt = now.duration_since(then).as_secs_f64();
            if dt > 0.0 {
                let sample = ((consumed - before).max(0) as f64) / dt;
                self.rate = Some(match self.rate {
                    Some(r) => 0.3 * sample + 0.7 * r,
                    None => sample,
                });
            }
        }
        self.last = Some((now, consumed));
        self.rate.unwrap_or(0.0)
    }
}

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
        if let Ok(mut v) = self.view.lock() {
            f(&mut v);
        }
    }
}

/// Measures lag every `interval` and updates the throttle and the metrics, forever.
pub async fn watch(
    reader: LagReader,
    mut throttle: Throttle,
    backpressure: Backpressure,
    metrics: Metrics,
    interval: Duration,
) {
    let reader = Arc::new(reader);
    let mut drain = DrainRate::default();
    let mut known_partitions: HashMap<i32, ()> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let r = reader.clone();
        let started = std::time::Instant::now();
        let measured = tokio::task::spawn_blocking(move || r.measure())
            .await
            .map_err(|e| e.to_string())
            .and_then(|m| m.map_err(|e| e.to_string()));
        metrics.lag_measure_seconds.observe(started.elapsed().as_secs_f64());
        let now = Instant::now();
        match measured {
            Ok(partitions) => {
                let lag: u64 = partitions.iter().map(PartitionOffsets::lag).sum();
                let consumed: i64 = partitions.iter().map(PartitionOffsets::consumed).sum();
                let rate = drain.observe(now, consumed);
                let was = throttle.active;
                let throttled = throttle.observe(lag);
                let retry_after = throttle.retry_after(lag, rate);
                if throttled != was {
                    if throttled {
                        tracing::warn!(
                            lag,
                            threshold = throttle.throttle_at,
                            drain_rate = rate,
                            "sinkers are behind: throttling writes (429)"
                        );
                    } else {
                        tracing::info!(lag, resume_below = throttle.resume_below, "lag is back down: accepting writes");
                    }
                }
                metrics.consumer_lag.set(lag as i64);
                metrics.committed_offset_sum.set(consumed);
                metrics.drain_rate.set(rate);
                metrics.backpressure_active.set(i64::from(throttled));
                metrics.lag_known.set(1);
                for p in &partitions {
                    metrics.consumer_lag_partition.with_label_values(&[&p.partition.to_string()]).set(p.lag() as i64);
                    known_partitions.insert(p.partition, ());
                }
                backpressure.update(|v| {
                    v.lag = Some(lag);
                    v.throttled = throttled;
                    v.retry_after = retry_after;
                    v.measured_at = Some(now);
                    v.last_error = None;
                });
            }
            Err(error) => {
                tracing::debug!(%error, "could not measure consumer lag");
                backpressure.update(|v| v.last_error = Some(error));
                if backpressure.stale_reason().is_some() {
                    metrics.lag_known.set(0);
                    metrics.backpressure_active.set(0);
                }
            }
        }
        if let Some(at) = backpressure.view().measured_at {
            metrics.lag_age_seconds.set(at.elapsed().as_secs_f64());
        }
    }
}

/// Per-client token buckets (one per API key), refilled at `rate` events/s up to `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `events` tokens from `client`'s bucket, or says how long until they are there.
    pub fn take(&self, client: &str, events: usize, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = buckets.entry(client.to_owned()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        let need = events as f64;
        if need > self.burst {
            // Larger than a full bucket: admit it when the bucket is full, at the cost of debt.
            if *tokens >= self.burst {
                *tokens -= need;
                return Ok(());
            }
        } else if *tokens >= need {
            *tokens -= need;
            return Ok(());
        }
        let missing = need.min(self.burst) - *tokens;
        Err(Duration::from_secs_f64((missing / self.rate).ceil()).clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_has_hysteresis() {
        let mut t = Throttle::new(1000, 800);
        assert!(!t.observe(999));
        assert!(t.observe(1000));
        assert!(t.observe(900), "still above the resume level");
        assert!(t.observe(800));
        assert!(!t.observe(799));
        assert!(!t.observe(900), "below the throttle level after resuming");
    }

    #[test]
    fn zero_disables() {
        let mut t = Throttle::new(0, 0);
        assert!(!t.observe(u64::MAX));
    }

    #[test]
    fn retry_after_is_the_time_to_drain_to_the_resume_level() {
        let t = Throttle::new(1000, 800);
        assert_eq!(t.retry_after(1800, 100.0), Duration::from_secs(10));
        assert_eq!(t.retry_after(1800, 100_000.0), RETRY_AFTER_MIN);
        assert_eq!(t.retry_after(1800, 0.0), RETRY_AFTER_MAX, "not draining at all");
        assert_eq!(t.retry_after(1_000_000, 1.0), RETRY_AFTER_MAX);
    }

    #[test]
    fn drain_rate_is_smoothed() {
        let t0 = Instant::now();
        let mut d = DrainRate::default();
        assert_eq!(d.observe(t0, 0), 0.0);
        assert_eq!(d.observe(t0 + Duration::from_secs(1), 100), 100.0);
        let r = d.observe(t0 + Duration::from_secs(2), 100);
        assert!((r - 70.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn buckets_refill_per_client() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(10.0, 20.0);
        assert!(limiter.take("a", 20, t0).is_ok());
        assert_eq!(limiter.take("a", 5, t0), Err(Duration::from_secs(1)));
        assert!(limiter.take("b", 20, t0).is_ok(), "another client has its own bucket");
        assert!(limiter.take("a", 5, t0 + Duration::from_millis(500)).is_ok());
        assert_eq!(limiter.take("a", 20, t0 + Duration::from_millis(500)), Err(Duration::from_secs(2)));
        assert!(limiter.take("c", 50, t0).is_ok(), "a request larger than the burst passes on a full bucket");
        assert!(limiter.take("c", 1, t0 + Duration::from_secs(1)).is_err(), "and leaves a debt");
    }
}
