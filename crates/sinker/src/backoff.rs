//! Exponential backoff with full jitter, for retrying the database.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};

pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self::with_rng(base, max, StdRng::from_os_rng())
    }

    pub fn with_rng(base: Duration, max: Duration, rng: StdRng) -> Self {
        Self { base, max, attempt: 0, rng }
    }

    /// The next wait: uniform in [0, min(max, base * 2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(self.rng.random::<f64>())
    }

    /// The cap of the next wait, without jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.base.saturating_mul(factor).min(self.max)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubling_up_to_the_cap_and_resets() {
        let mut b = Backoff::with_rng(Duration::from_millis(100), Duration::from_secs(2), StdRng::seed_from_u64(7));
        let ceilings: Vec<_> = (0..7)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c, "{d:?} > {c:?}");
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_is_deterministic_for_a_seed() {
        let run = || {
            let mut b = Backoff::with_rng(Duration::from_millis(50), Duration::from_secs(1), StdRng::seed_from_u64(42));
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
