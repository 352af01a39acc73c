//! Per-client token buckets: each client (one per API key, or "anonymous" without keys) is
//! refilled at `--rate-limit` events/s up to `--rate-limit-burst`.
//!
//! Tokens are taken only once a request is about to be produced (after validation, readiness
//! and the in-flight cap): a request refused for any other reason costs its client nothing.

use std::{collections::HashMap, hash::Hash, sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::backpressure::retry_after::retry_after;

pub struct RateLimiter<K = crate::auth::Client> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `events` tokens from `client`'s bucket, or says how long until they are there.
    pub fn take(&self, client: &K, events: usize, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = buckets.entry(client.clone()).or_insert((self.burst, now));
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
        Err(retry_after(missing / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backpressure::retry_after::RETRY_AFTER_MAX;

    #[test]
    fn buckets_refill_per_client() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(10.0, 20.0);
        assert!(limiter.take(&"a", 20, t0).is_ok());
        assert_eq!(limiter.take(&"a", 5, t0), Err(Duration::from_secs(1)));
        assert!(limiter.take(&"b", 20, t0).is_ok(), "another client has its own bucket");
        assert!(limiter.take(&"a", 5, t0 + Duration::from_millis(500)).is_ok());
        assert_eq!(limiter.take(&"a", 20, t0 + Duration::from_millis(500)), Err(Duration::from_secs(2)));
        assert!(limiter.take(&"c", 50, t0).is_ok(), "a request larger than the burst passes on a full bucket");
        assert!(limiter.take(&"c", 1, t0 + Duration::from_secs(1)).is_err(), "and leaves a debt");
    }

    #[test]
    fn tiny_rates_never_panic() {
        let t0 = Instant::now();
        for rate in [1e-300, 5e-324, f64::MIN_POSITIVE, 1e-20] {
            let limiter = RateLimiter::new(rate, 5.0);
            assert!(limiter.take(&"a", 5, t0).is_ok());
            assert_eq!(limiter.take(&"a", 5, t0), Err(RETRY_AFTER_MAX), "rate {rate}");
            assert_eq!(limiter.take(&"a", usize::MAX, t0), Err(RETRY_AFTER_MAX), "rate {rate}");
        }
    }
}
