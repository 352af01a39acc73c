//! Adaptive batch size: additive increase, multiplicative decrease, driven by how long batch
//! commits take and by lock contention. One sizer per process: its partitions share a database.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus::IntGauge;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct SizerConfig {
    pub min_rows: usize,
    pub max_rows: usize,
    pub target_latency: Duration,
    pub grow_step: usize,
}

/// The arithmetic, without locking or metrics.
#[derive(Debug, Clone)]
pub struct Sizer {
    config: SizerConfig,
    target: usize,
}

impl Sizer {
    pub fn new(config: SizerConfig) -> Self {
        debug_assert!(config.min_rows >= 1 && config.min_rows <= config.max_rows);
        Self { config, target: config.max_rows }
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// A batch committed after `latency`: halve the target when slower than the goal, grow it
    /// by one step (up to the maximum) when faster.
    pub fn on_commit(&mut self, latency: Duration) -> usize {
        if latency > self.config.target_latency {
            self.shrink();
        } else {
            self.target = (self.target + self.config.grow_step).min(self.config.max_rows);
        }
        self.target
    }

    /// The database reported a lock timeout, deadlock, serialization failure or statement
    /// timeout: halve the target.
    pub fn on_contention(&mut self) -> usize {
        self.shrink();
        self.target
    }

    fn shrink(&mut self) {
        self.target = (self.target / 2).max(self.config.min_rows);
    }
}

/// Times only the database's part of a batch write: from a connection in hand to the commit,
/// without waiting for a pooled connection or for dead letters to be acknowledged. With many
/// partitions sharing a small pool, the wait for a connection grows with the partition count,
/// not with the batch size: counting it would shrink the batch target for nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stopwatch {
    since: Option<Instant>,
    total: Duration,
}

impl Stopwatch {
    pub fn start(&mut self) {
        self.start_at(Instant::now());
    }

    pub fn stop(&mut self) {
        self.stop_at(Instant::now());
    }

    pub fn start_at(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    pub fn stop_at(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            self.total += now.saturating_duration_since(since);
        }
    }

    /// The time measured so far (a running segment counts up to now).
    pub fn elapsed_at(&self, now: Instant) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// The process-wide sizer, exported as `sinker_batch_target_rows`.
#[derive(Clone)]
pub struct SharedSizer {
    inner: Arc<Mutex<Sizer>>,
    gauge: IntGauge,
}

impl SharedSizer {
    pub fn new(config: SizerConfig, gauge: IntGauge) -> Self {
        let sizer = Sizer::new(config);
        gauge.set(sizer.target() as i64);
        Self { inner: Arc::new(Mutex::new(sizer)), gauge }
    }

    pub fn target(&self) -> usize {
        self.inner.lock().map(|s| s.target()).unwrap_or(1)
    }

    pub fn on_commit(&self, latency: Duration) {
        self.update(|s| s.on_commit(latency));
    }

    pub fn on_contention(&self) {
        self.update(Sizer::on_contention);
    }

    fn update(&self, f: impl FnOnce(&mut Sizer) -> usize) {
        if let Ok(mut sizer) = self.inner.lock() {
            let before = sizer.target();
            let after = f(&mut sizer);
            if after != before {
                tracing::debug!(before, after, "batch target changed");
            }
            self.gauge.set(after as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizer() -> Sizer {
        Sizer::new(SizerConfig {
            min_rows: 10,
            max_rows: 500,
            target_latency: Duration::from_millis(250),
            grow_step: 50,
        })
    }

    #[test]
    fn starts_at_the_maximum() {
        assert_eq!(sizer().target(), 500);
    }

    #[test]
    fn slow_commits_halve_down_to_the_minimum() {
        let mut s = sizer();
        let slow = Duration::from_millis(400);
        let targets: Vec<usize> = (0..7).map(|_| s.on_commit(slow)).collect();
        assert_eq!(targets, vec![250, 125, 62, 31, 15, 10, 10]);
    }

    #[test]
    fn contention_halves_and_fast_commits_add_a_step_up_to_the_maximum() {
        let mut s = sizer();
        assert_eq!(s.on_contention(), 250);
        assert_eq!(s.on_contention(), 125);
        let fast = Duration::from_millis(20);
        let targets: Vec<usize> = (0..9).map(|_| s.on_commit(fast)).collect();
        assert_eq!(targets, vec![175, 225, 275, 325, 375, 425, 475, 500, 500]);
    }

    #[test]
    fn the_stopwatch_counts_only_the_database_segments() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut watch = Stopwatch::default();
        // 2 s waiting for a pooled connection (not started), 30 ms of fence and insert, 3 s
        // waiting for dead letters (stopped), 20 ms to commit.
        watch.start_at(t0 + ms(2000));
        watch.stop_at(t0 + ms(2030));
        watch.start_at(t0 + ms(5030));
        watch.start_at(t0 + ms(5040)); // starting twice keeps the first start
        watch.stop_at(t0 + ms(5050));
        watch.stop_at(t0 + ms(9000)); // stopping twice adds nothing
        assert_eq!(watch.elapsed_at(t0 + ms(9999)), ms(50));
        let mut sizer = sizer();
        assert_eq!(sizer.on_commit(watch.elapsed_at(t0)), 500, "fast: the waits do not shrink the target");
    }

    #[test]
    fn a_commit_at_exactly_the_goal_counts_as_fast() {
        let mut s = sizer();
        s.on_contention();
        assert_eq!(s.on_commit(Duration::from_millis(250)), 300);
    }
}
