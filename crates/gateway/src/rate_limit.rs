//! Per-client token buckets: each client (one per API key, or "anonymous" without keys) is
//! refilled at its [`Limit`] (`--rate-limit` events/s up to `--rate-limit-burst`, or the key's
//! own `rate_limit` from `--api-keys-file`).
//!
//! Tokens are taken only once a request is about to be produced (after validation, readiness
//! and the in-flight cap): a request refused for any other reason costs its client nothing.

use std::{collections::HashMap, hash::Hash, sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::backpressure::retry_after::retry_after;

/// A token bucket's refill rate (events/s) and size (events).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

impl Limit {
    /// `rate` events/s with a bucket of `burst` events (default: one second's worth, at least
    /// 1). A rate of 0 is no limit (`Ok(None)`).
    pub fn new(rate: f64, burst: Option<f64>) -> Result<Option<Self>, String> {
        if rate < 0.0 || !rate.is_finite() {
            return Err("rate_limit must be a non-negative number of events per second".to_owned());
        }
        if burst.is_some_and(|b| b < 0.0 || !b.is_finite()) {
            return Err("rate_limit_burst must be a non-negative number of events".to_owned());
        }
        Ok((rate > 0.0).then(|| Self { rate, burst: burst.unwrap_or(rate).max(1.0) }))
    }
}

pub struct RateLimiter<K = crate::auth::Client> {
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        Self { buckets: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Takes `events` tokens from `client`'s bucket, refilled at `limit`, or says how long until
    /// they are there. A client's limit is expected to stay the same from call to call.
    pub fn take(&self, client: &K, limit: Limit, events: usize, now: Instant) -> Result<(), Duration> {
        let Limit { rate, burst } = limit;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = buckets.entry(client.clone()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        let need = events as f64;
        if need > burst {
            // Larger than a full bucket: admit it when the bucket is full, at the cost of debt.
            if *tokens >= burst {
                *tokens -= need;
                return Ok(());
            }
        } else if *tokens >= need {
            *tokens -= need;
            return Ok(());
        }
        let missing = need.min(burst) - *tokens;
        Err(retry_after(missing / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backpressure::retry_after::RETRY_AFTER_MAX;

    #[test]
    fn buckets_refill_per_client() {
        let t0 = Instant::now();
        let limiter = RateLimiter::default();
        let l = Limit { rate: 10.0, burst: 20.0 };
        assert!(limiter.take(&"a", l, 20, t0).is_ok());
        assert_eq!(limiter.take(&"a", l, 5, t0), Err(Duration::from_secs(1)));
        assert!(limiter.take(&"b", l, 20, t0).is_ok(), "another client has its own bucket");
        assert!(limiter.take(&"a", l, 5, t0 + Duration::from_millis(500)).is_ok());
        assert_eq!(limiter.take(&"a", l, 20, t0 + Duration::from_millis(500)), Err(Duration::from_secs(2)));
        assert!(limiter.take(&"c", l, 50, t0).is_ok(), "a request larger than the burst passes on a full bucket");
        assert!(limiter.take(&"c", l, 1, t0 + Duration::from_secs(1)).is_err(), "and leaves a debt");
    }

    #[test]
    fn each_client_refills_at_its_own_limit() {
        let t0 = Instant::now();
        let limiter = RateLimiter::default();
        let slow = Limit { rate: 1.0, burst: 1.0 };
        let fast = Limit { rate: 100.0, burst: 100.0 };
        assert!(limiter.take(&"slow", slow, 1, t0).is_ok());
        assert_eq!(limiter.take(&"slow", slow, 1, t0), Err(Duration::from_secs(1)));
        for _ in 0..100 {
            assert!(limiter.take(&"fast", fast, 1, t0).is_ok());
        }
        assert!(limiter.take(&"fast", fast, 1, t0 + Duration::from_millis(10)).is_ok());
    }

    #[test]
    fn limits_are_checked_and_zero_is_none() {
        assert_eq!(Limit::new(0.0, None), Ok(None));
        assert_eq!(Limit::new(5.0, None), Ok(Some(Limit { rate: 5.0, burst: 5.0 })));
        assert_eq!(Limit::new(0.5, None), Ok(Some(Limit { rate: 0.5, burst: 1.0 })), "a burst holds one event");
        assert_eq!(Limit::new(5.0, Some(12.0)), Ok(Some(Limit { rate: 5.0, burst: 12.0 })));
        assert!(Limit::new(-1.0, None).is_err());
        assert!(Limit::new(f64::NAN, None).is_err());
        assert!(Limit::new(1.0, Some(f64::INFINITY)).is_err());
    }

    #[test]
    fn tiny_rates_never_panic() {
        let t0 = Instant::now();
        for rate in [1e-300, 5e-324, f64::MIN_POSITIVE, 1e-20] {
            let limiter = RateLimiter::default();
            let l = Limit { rate, burst: 5.0 };
            assert!(limiter.take(&"a", l, 5, t0).is_ok());
            assert_eq!(limiter.take(&"a", l, 5, t0), Err(RETRY_AFTER_MAX), "rate {rate}");
            assert_eq!(limiter.take(&"a", l, usize::MAX, t0), Err(RETRY_AFTER_MAX), "rate {rate}");
        }
    }
}
