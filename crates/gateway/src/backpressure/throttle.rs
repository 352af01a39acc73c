//! The throttle's pure state machine: refuse writes at `--lag-throttle`, accept them again at
//! `--lag-resume` (hysteresis), and say how long until then.

use std::time::Duration;

use super::retry_after::{retry_after, RETRY_AFTER_MAX};

#[derive(Debug, Clone)]
pub struct Throttle {
    /// Lag at which writes are refused; 0 disables throttling.
    pub throttle_at: u64,
    /// Lag at or below which writes are accepted again (0: once the sinkers caught up).
    pub resume_at: u64,
    pub active: bool,
}

impl Throttle {
    pub fn new(throttle_at: u64, resume_at: u64) -> Self {
        Self { throttle_at, resume_at, active: false }
    }

    /// Feeds a lag measurement; returns whether writes are throttled now.
    pub fn observe(&mut self, lag: u64) -> bool {
        if self.throttle_at == 0 {
            self.active = false;
        } else if lag >= self.throttle_at {
            self.active = true;
        } else if lag <= self.resume_at {
            self.active = false;
        }
        self.active
    }

    /// Time until lag, draining at `rate` records/s, is down to the resume level. Any rate
    /// (zero, subnormal, NaN, infinite) gives a value in [1 s, 60 s]; never panics.
    pub fn retry_after(&self, lag: u64, rate: f64) -> Duration {
        if rate.is_nan() || rate <= 0.0 {
            return RETRY_AFTER_MAX;
        }
        let excess = lag.saturating_sub(self.resume_at).max(1) as f64;
        retry_after(excess / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backpressure::retry_after::RETRY_AFTER_MIN;

    #[test]
    fn throttle_has_hysteresis() {
        let mut t = Throttle::new(1000, 800);
        assert!(!t.observe(999));
        assert!(t.observe(1000));
        assert!(t.observe(900), "still above the resume level");
        assert!(t.observe(801));
        assert!(!t.observe(800), "at the resume level");
        assert!(!t.observe(900), "below the throttle level after resuming");
    }

    #[test]
    fn resume_zero_resumes_at_zero_lag() {
        let mut t = Throttle::new(10, 0);
        assert!(t.observe(10));
        assert!(t.observe(1));
        assert!(!t.observe(0), "--lag-resume 0 un-throttles once the sinkers caught up");
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

    /// The drain-rate average decays toward zero while idle: 0.7^n of a real rate passes
    /// through every tiny value, and `excess / rate` overflows what a Duration holds.
    #[test]
    fn retry_after_never_panics_on_tiny_or_odd_rates() {
        let t = Throttle::new(1000, 800);
        for rate in
            [1e-300, 5e-324, 1e-20, 0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE]
        {
            for lag in [0, 1, 800, 1000, u64::MAX] {
                let d = t.retry_after(lag, rate);
                assert!((RETRY_AFTER_MIN..=RETRY_AFTER_MAX).contains(&d), "lag {lag} rate {rate}: {d:?}");
            }
        }
        assert_eq!(t.retry_after(u64::MAX, 1e-300), RETRY_AFTER_MAX);
        assert_eq!(t.retry_after(u64::MAX, f64::INFINITY), RETRY_AFTER_MIN, "infinitely fast drains at once");
        let mut rate = 1000.0;
        for _ in 0..3000 {
            rate *= 0.7;
            let d = t.retry_after(0, rate);
            assert!((RETRY_AFTER_MIN..=RETRY_AFTER_MAX).contains(&d), "rate {rate}: {d:?}");
        }
    }
}
