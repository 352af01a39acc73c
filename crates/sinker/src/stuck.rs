//! Partitions stuck on a permanent error (the database refuses the sinker's statements, or the
//! dead-letter topic refuses its records): retried with capped backoff until an operator fixes
//! the cause, and never silently: `/readyz` answers 503 naming them and `sinker_partitions_stuck`
//! counts them.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus::IntGauge;

pub struct StuckPartitions {
    reasons: Mutex<BTreeMap<i32, String>>,
    gauge: IntGauge,
}

impl StuckPartitions {
    pub fn new(gauge: IntGauge) -> Self {
        Self { reasons: Mutex::new(BTreeMap::new()), gauge }
    }

    /// Marks `partition` as stuck on `reason` (replacing an earlier reason).
    pub fn set(&self, partition: i32, reason: String) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        reasons.insert(partition, reason);
        self.gauge.set(reasons.len() as i64);
    }

    pub fn clear(&self, partition: i32) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        if reasons.remove(&partition).is_some() {
            self.gauge.set(reasons.len() as i64);
        }
    }

    /// The stuck partitions with their reasons, in partition order.
    pub fn snapshot(&self) -> Vec<(i32, String)> {
        let reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        reasons.iter().map(|(p, r)| (*p, r.clone())).collect()
    }
}

/// A worker's handle on its partition's entry: cleared when the worker ends, however it ends.
pub struct StuckGuard {
    partition: i32,
    stuck: Arc<StuckPartitions>,
}

impl StuckGuard {
    pub fn new(partition: i32, stuck: Arc<StuckPartitions>) -> Self {
        Self { partition, stuck }
    }

    pub fn set(&self, reason: String) {
        self.stuck.set(self.partition, reason);
    }

    pub fn clear(&self) {
        self.stuck.clear(self.partition);
    }
}

impl Drop for StuckGuard {
    fn drop(&mut self) {
        self.stuck.clear(self.partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_counts_stuck_partitions_and_guards_clear_on_drop() {
        let gauge = IntGauge::new("stuck", "help").expect("gauge");
        let stuck = Arc::new(StuckPartitions::new(gauge.clone()));
        let a = StuckGuard::new(0, stuck.clone());
        let b = StuckGuard::new(3, stuck.clone());
        a.set("first".into());
        a.set("second".into());
        b.set("other".into());
        assert_eq!(gauge.get(), 2);
        assert_eq!(stuck.snapshot(), vec![(0, "second".to_owned()), (3, "other".to_owned())]);
        a.clear();
        assert_eq!(gauge.get(), 1);
        drop(b);
        assert_eq!(gauge.get(), 0);
        assert!(stuck.snapshot().is_empty());
        drop(a);
        assert_eq!(gauge.get(), 0);
    }
}
