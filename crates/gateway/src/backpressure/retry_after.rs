//! Turning "seconds until it is worth retrying" into a `Retry-After`, safely.
//!
//! The seconds come from divisions by measured rates, which may be zero, subnormal, NaN or
//! infinite; `Duration::from_secs_f64` panics on anything it cannot represent. So the value is
//! clamped while it is still a float, and only then converted.

use std::time::Duration;

/// Shortest Retry-After the gateway sends (for lag and for rate limits).
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
/// Longest Retry-After the gateway sends (for lag and for rate limits).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// `seconds` rounded up to whole seconds and clamped to [`RETRY_AFTER_MIN`, `RETRY_AFTER_MAX`].
/// NaN and anything too large for a `Duration` give the maximum; never panics.
pub fn retry_after(seconds: f64) -> Duration {
    if seconds.is_nan() {
        return RETRY_AFTER_MAX;
    }
    let clamped = seconds.ceil().clamp(RETRY_AFTER_MIN.as_secs_f64(), RETRY_AFTER_MAX.as_secs_f64());
    Duration::try_from_secs_f64(clamped).unwrap_or(RETRY_AFTER_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_float_gives_a_bounded_duration() {
        assert_eq!(retry_after(0.0), RETRY_AFTER_MIN);
        assert_eq!(retry_after(-5.0), RETRY_AFTER_MIN);
        assert_eq!(retry_after(f64::NEG_INFINITY), RETRY_AFTER_MIN);
        assert_eq!(retry_after(0.2), RETRY_AFTER_MIN);
        assert_eq!(retry_after(9.1), Duration::from_secs(10));
        assert_eq!(retry_after(60.0), RETRY_AFTER_MAX);
        assert_eq!(retry_after(1e30), RETRY_AFTER_MAX);
        assert_eq!(retry_after(1.0 / 1e-300), RETRY_AFTER_MAX);
        assert_eq!(retry_after(f64::MAX), RETRY_AFTER_MAX);
        assert_eq!(retry_after(f64::INFINITY), RETRY_AFTER_MAX);
        assert_eq!(retry_after(f64::NAN), RETRY_AFTER_MAX);
    }
}
