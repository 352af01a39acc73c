//! The drain rate: how fast the sinker group's committed offsets advance, smoothed.

use tokio::time::Instant;

/// Below this many records per second the average is taken as zero: an idle group's average
/// decays geometrically and would otherwise wander through subnormal floats.
const NEGLIGIBLE: f64 = 1e-6;

#[derive(Debug, Default, Clone)]
pub struct DrainRate {
    last: Option<(Instant, i64)>,
    rate: Option<f64>,
}

impl DrainRate {
    /// Feeds the sum of consumed offsets at `now`; returns the smoothed records/s (finite, >= 0).
    pub fn observe(&mut self, now: Instant, consumed: i64) -> f64 {
        if let Some((then, before)) = self.last {
            let dt = now.duration_since(then).as_secs_f64();
            if dt > 0.0 {
                let sample = (consumed.saturating_sub(before).max(0) as f64) / dt;
                let smoothed = match self.rate {
                    Some(r) => 0.3 * sample + 0.7 * r,
                    None => sample,
                };
                self.rate = Some(if smoothed.is_finite() && smoothed >= NEGLIGIBLE { smoothed } else { 0.0 });
            }
        }
        self.last = Some((now, consumed));
        self.rate.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
    fn an_idle_group_decays_to_exactly_zero() {
        let t0 = Instant::now();
        let mut d = DrainRate::default();
        d.observe(t0, 0);
        assert_eq!(d.observe(t0 + Duration::from_secs(1), 1_000_000), 1_000_000.0);
        let mut rate = 1.0;
        for i in 2..200 {
            rate = d.observe(t0 + Duration::from_secs(i), 1_000_000);
            assert!(rate == 0.0 || rate >= NEGLIGIBLE, "never subnormal: {rate}");
        }
        assert_eq!(rate, 0.0);
    }
}
