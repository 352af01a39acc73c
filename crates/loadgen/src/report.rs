//! The report: JSON for harnesses, a short summary for people.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::SystemTime};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    collector::Stats,
    config::{Config, Mode},
};

/// Bump when a field changes meaning or disappears (adding fields does not bump it).
pub const REPORT_VERSION: u32 = 1;

/// Open loop: a p99 schedule lag above this gets a warning in the summary.
const SCHEDULE_LAG_WARNING_MS: f64 = 10.0;

/// Histograms count microseconds from 1 µs to 120 s with 3 significant digits; longer values
/// are recorded as 120 s.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 120_000_000, 3).context("cannot create a latency histogram")
}

/// Percentiles in milliseconds; all null when nothing was recorded.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let count = histogram.len();
        let ms = |micros: f64| (count > 0).then(|| round3(micros / 1000.0));
        Self {
            count,
            mean: ms(histogram.mean()),
            p50: ms(histogram.value_at_quantile(0.50) as f64),
            p90: ms(histogram.value_at_quantile(0.90) as f64),
            p99: ms(histogram.value_at_quantile(0.99) as f64),
            p999: ms(histogram.value_at_quantile(0.999) as f64),
            max: ms(histogram.max() as f64),
        }
    }
}

/// Why the run stopped sending.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    Duration,
    Requests,
    Signal,
}

/// When the run happened, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub started_at: SystemTime,
    /// From the end of the warmup to the last measured answer (or the end of sending).
    pub duration_s: f64,
    /// From the end of the warmup to the end of sending.
    pub send_duration_s: f64,
    pub stopped_by: StoppedBy,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub report_version: u32,
    pub loadgen_version: &'static str,
    /// An unoptimized build cannot keep up with high rates: see schedule_lag_ms.
    pub debug_build: bool,
    pub started_at: String,
    pub mode: &'static str,
    pub url: String,
    pub target_rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub seed: u64,
    pub batch: usize,
    pub payload_bytes: usize,
    pub keys: &'static str,
    pub key_space: u32,
    pub hot_ratio: f64,
    pub duplicate_ratio: f64,
    pub event_type: String,
    pub timeout_s: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub send_duration_s: f64,
    pub stopped_by: StoppedBy,
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
    pub sent_requests_per_s: f64,
    pub requests_per_s: f64,
    pub requests_2xx_per_s: f64,
    pub events_per_s: f64,
    pub events_2xx_per_s: f64,
    pub statuses: BTreeMap<String, u64>,
    pub error_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    pub latency_2xx_ms: Latency,
    pub schedule_lag_ms: Option<Latency>,
    pub warmup_requests_sent: u64,
    pub warmup_requests_dropped: u64,
    pub warmup_events_sent: u64,
    pub ids_written: Option<u64>,
}

impl Report {
    pub fn new(config: &Config, seed: u64, stats: &Stats, timing: Timing) -> Self {
        let per_s = |n: u64, seconds: f64| {
            if seconds > 0.0 {
                round3(n as f64 / seconds)
            } else {
                0.0
            }
        };
        let duration = timing.duration_s;
        let open = config.mode == Mode::Open;
        Self {
            report_version: REPORT_VERSION,
            loadgen_version: env!("CARGO_PKG_VERSION"),
            debug_build: cfg!(debug_assertions),
            started_at: humantime::format_rfc3339_millis(timing.started_at).to_string(),
            mode: config.mode.as_str(),
            url: redacted_url(&config.url),
            target_rate: if open { config.rate } else { None },
            concurrency: if open { None } else { config.concurrency },
            max_in_flight: open.then_some(config.max_in_flight),
            seed,
            batch: config.batch,
            payload_bytes: config.payload_bytes,
            keys: config.keys.as_str(),
            key_space: config.key_space,
            hot_ratio: config.hot_ratio,
            duplicate_ratio: config.duplicate_ratio,
            event_type: config.event_type.clone(),
            timeout_s: config.timeout.as_secs_f64(),
            warmup_s: config.warmup.as_secs_f64(),
            duration_s: round3(duration),
            send_duration_s: round3(timing.send_duration_s),
            stopped_by: timing.stopped_by,
            requests_sent: stats.requests_sent,
            requests_completed: stats.requests_completed,
            requests_2xx: stats.requests_2xx,
            requests_timed_out: stats.requests_timed_out,
            requests_failed: stats.requests_failed,
            requests_dropped: stats.requests_dropped,
            events_sent: stats.events_sent,
            events_completed: stats.events_completed,
            events_2xx: stats.events_2xx,
            duplicates_sent: stats.duplicates_sent,
            sent_requests_per_s: per_s(stats.requests_sent, timing.send_duration_s),
            requests_per_s: per_s(stats.requests_completed, duration),
            requests_2xx_per_s: per_s(stats.requests_2xx, duration),
            events_per_s: per_s(stats.events_completed, duration),
            events_2xx_per_s: per_s(stats.events_2xx, duration),
            statuses: stats.statuses.clone(),
            error_codes: stats.error_codes.clone(),
            errors: stats.errors.clone(),
            latency_ms: Latency::from_histogram(&stats.latency),
            latency_2xx_ms: Latency::from_histogram(&stats.latency_2xx),
            schedule_lag_ms: open.then(|| Latency::from_histogram(&stats.schedule_lag)),
            warmup_requests_sent: stats.warmup_requests_sent,
            warmup_requests_dropped: stats.warmup_requests_dropped,
            warmup_events_sent: stats.warmup_events_sent,
            ids_written: config.ids_out.is_some().then_some(stats.ids_written),
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).context("cannot serialize the report")?;
        json.push(b'\n');
        std::fs::write(path, json).with_context(|| format!("cannot write the report to {}", path.display()))
    }

    /// A few lines for stderr.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let load = match (self.target_rate, self.concurrency) {
            (Some(rate), _) => format!("open loop at {rate} req/s"),
            (_, Some(workers)) => format!("closed loop with {workers} workers"),
            _ => self.mode.to_owned(),
        };
        let _ = writeln!(
            out,
            "loadgen: {load}, batch {}, {} B payloads, keys {}, seed {}, {}",
            self.batch, self.payload_bytes, self.keys, self.seed, self.url
        );
        let _ = writeln!(
            out,
            "  measured {:.3} s (sending {:.3} s, warmup {} s, stopped by {:?})",
            self.duration_s, self.send_duration_s, self.warmup_s, self.stopped_by
        );
        let _ = writeln!(
            out,
            "  requests: {} sent, {} answered ({} 2xx), {} timed out, {} failed, {} dropped",
            self.requests_sent,
            self.requests_completed,
            self.requests_2xx,
            self.requests_timed_out,
            self.requests_failed,
            self.requests_dropped
        );
        let _ = writeln!(
            out,
            "  events: {} sent ({} duplicates), {} answered 2xx",
            self.events_sent, self.duplicates_sent, self.events_2xx
        );
        let _ = writeln!(
            out,
            "  throughput: {:.1} req/s answered ({:.1} 2xx, {:.1} sent), {:.1} events/s answered ({:.1} 2xx)",
            self.requests_per_s,
            self.requests_2xx_per_s,
            self.sent_requests_per_s,
            self.events_per_s,
            self.events_2xx_per_s
        );
        let statuses: Vec<String> = self.statuses.iter().map(|(status, n)| format!("{status}={n}")).collect();
        let _ =
            writeln!(out, "  statuses: {}", if statuses.is_empty() { "none".to_owned() } else { statuses.join(" ") });
        if !self.error_codes.is_empty() {
            let codes: Vec<String> = self.error_codes.iter().map(|(code, n)| format!("{code}={n}")).collect();
            let _ = writeln!(out, "  error codes: {}", codes.join(" "));
        }
        for (message, n) in &self.errors {
            let _ = writeln!(out, "  error x{n}: {message}");
        }
        let _ = writeln!(out, "  latency ms, answered+timeouts: {}", latency_line(&self.latency_ms));
        let _ = writeln!(out, "  latency ms, 2xx:               {}", latency_line(&self.latency_2xx_ms));
        if let Some(lag) = &self.schedule_lag_ms {
            let _ = writeln!(out, "  schedule lag ms (loadgen's own lateness): {}", latency_line(lag));
            if lag.p99.is_some_and(|p99| p99 > SCHEDULE_LAG_WARNING_MS) {
                let _ = writeln!(
                    out,
                    "  warning: loadgen fell behind its own schedule (p99 {:.1} ms late), so the latencies include its delays; \
                     use a release build, a lower rate, or more cpu for loadgen",
                    lag.p99.unwrap_or_default()
                );
            }
        }
        if self.warmup_requests_sent + self.warmup_requests_dropped > 0 {
            let _ = writeln!(
                out,
                "  warmup (discarded): {} requests, {} events, {} dropped",
                self.warmup_requests_sent, self.warmup_events_sent, self.warmup_requests_dropped
            );
        }
        out
    }
}

fn latency_line(latency: &Latency) -> String {
    let show = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} mean {} (n={})",
        show(latency.p50),
        show(latency.p90),
        show(latency.p99),
        show(latency.p999),
        show(latency.max),
        show(latency.mean),
        latency.count
    )
}

/// The url without a password, should it carry one.
fn redacted_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    url.to_string()
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() -> anyhow::Result<()> {
        let mut histogram = new_histogram()?;
        for micros in 1..=10_000u64 {
            histogram.record(micros)?;
        }
        let latency = Latency::from_histogram(&histogram);
        assert_eq!(latency.count, 10_000);
        let close = |got: Option<f64>, want: f64| {
            let got = got.unwrap_or(f64::NAN);
            assert!((got - want).abs() <= want * 0.001 + 0.001, "got {got} want {want}");
        };
        close(latency.p50, 5.0);
        close(latency.p90, 9.0);
        close(latency.p99, 9.9);
        close(latency.p999, 9.99);
        close(latency.max, 10.0);
        close(latency.mean, 5.0005);
        Ok(())
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() -> anyhow::Result<()> {
        let mut histogram = new_histogram()?;
        histogram.record_n(1_000, 990)?; // 1 ms
        histogram.record_n(2_000_000, 10)?; // 2 s
        let latency = Latency::from_histogram(&histogram);
        assert_eq!(latency.p50, Some(1.0));
        assert_eq!(latency.p90, Some(1.0));
        assert!(latency.p999.unwrap_or_default() >= 1999.0);
        assert!(latency.max.unwrap_or_default() >= 1999.0);
        Ok(())
    }

    #[test]
    fn the_range_runs_from_a_microsecond_to_two_minutes() -> anyhow::Result<()> {
        let mut histogram = new_histogram()?;
        histogram.saturating_record(1);
        histogram.saturating_record(500_000_000); // 500 s: clamped
        let latency = Latency::from_histogram(&histogram);
        assert_eq!(latency.p50, Some(0.001));
        let max = latency.max.unwrap_or_default();
        assert!((119_900.0..=120_100.0).contains(&max), "{max}");
        Ok(())
    }

    #[test]
    fn an_empty_histogram_gives_nulls() -> anyhow::Result<()> {
        let latency = Latency::from_histogram(&new_histogram()?);
        assert_eq!(latency.count, 0);
        assert_eq!(latency.p99, None);
        assert_eq!(serde_json::to_value(&latency)?["p50"], serde_json::Value::Null);
        Ok(())
    }

    #[test]
    fn passwords_in_urls_are_redacted() -> anyhow::Result<()> {
        let url: reqwest::Url = "http://user:hunter2@127.0.0.1:1/v1/events".parse()?;
        assert_eq!(redacted_url(&url), "http://user:redacted@127.0.0.1:1/v1/events");
        Ok(())
    }
}
