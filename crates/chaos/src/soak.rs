//! What the soak adds to the books: the resident memory of the gateway and the sinkers sampled
//! every 10 s (with the slope of a least-squares line), the time the sinkers took to catch up
//! after each fault, and a 429 from the backpressure loop at the very end.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use crate::audit;

/// Resident set size of a process, in bytes (from /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Slope of the least-squares line through (seconds, bytes), in bytes per hour.
pub fn slope_per_hour(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_v = samples.iter().map(|(_, v)| v).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|(t, v)| (t - mean_t) * (v - mean_v)).sum();
    let var: f64 = samples.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    (var > 0.0).then(|| cov / var * 3600.0)
}

/// A process's name and its (seconds, bytes) samples.
type Series = (String, Vec<(f64, f64)>);

/// Samples the RSS of named processes every 10 s.
pub struct MemorySampler {
    samples: Arc<Mutex<Vec<Series>>>,
    task: JoinHandle<()>,
}

impl MemorySampler {
    pub fn start(processes: Vec<(String, u32)>) -> Self {
        let samples =
            Arc::new(Mutex::new(processes.iter().map(|(name, _)| (name.clone(), Vec::new())).collect::<Vec<_>>()));
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                loop {
                    let t = start.elapsed().as_secs_f64();
                    if let Ok(mut s) = samples.lock() {
                        for (i, (_, pid)) in processes.iter().enumerate() {
                            if let Some(rss) = rss_bytes(*pid) {
                                s[i].1.push((t, rss as f64));
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            })
        };
        Self { samples, task }
    }

    /// Per process: first and last sample (MiB), samples, slope (MiB per hour).
    pub fn summary(&self) -> Vec<String> {
        let mib = |b: f64| b / (1024.0 * 1024.0);
        self.samples
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(name, points)| {
                        let first = points.first().map_or(0.0, |p| mib(p.1));
                        let last = points.last().map_or(0.0, |p| mib(p.1));
                        let slope = slope_per_hour(points).map_or(0.0, mib);
                        format!(
                            "{name}: RSS {first:.1} -> {last:.1} MiB over {} samples, slope {slope:+.1} MiB/hour",
                            points.len()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for MemorySampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the database has everything that was on the topic when called (every
/// partition's stored offset of `group` at or past its high watermark then). Returns how long
/// it took.
pub async fn caught_up(
    brokers: &str,
    group: &str,
    topic: &str,
    pool: &sqlx::PgPool,
    bound: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    let highs = loop {
        let (b, t) = (b.clone(), t.clone());
        if let Ok(Ok(k)) = tokio::task::spawn_blocking(move || audit::kafka_offsets(&b, "chaos-soak", &t)).await {
            break k;
        }
        if start.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    while start.elapsed() < bound {
        if let Ok(stored) = audit::sink_offsets(pool, group, topic).await {
            if highs.iter().all(|(p, (high, _))| *high == 0 || stored.get(p).is_some_and(|s| s >= high)) {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_and_of_a_flat_series() {
        let rising: Vec<(f64, f64)> = (0..10).map(|i| (i as f64 * 10.0, 1000.0 + i as f64)).collect();
        let s = slope_per_hour(&rising).expect("slope");
        assert!((s - 360.0).abs() < 1e-6, "1 byte per 10 s is 360 per hour: {s}");
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(slope_per_hour(&flat), Some(0.0));
        assert_eq!(slope_per_hour(&flat[..1]), None);
    }

    #[test]
    fn the_rss_of_this_process_is_read() {
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
    }
}
