//! The in-flight cap (`--max-inflight-bytes`) and its gauge, held by one RAII guard.
//!
//! A request takes a guard for the bytes of its records before it hands them to librdkafka,
//! and the guard goes with the delivery futures (see `producer::produce_all`): it is released
//! when the last of them resolved, whether the client is still waiting, gave up, or timed out.
//! So the cap and `gateway_inflight_bytes` count what librdkafka really holds.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct InflightGuard {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: IntGauge,
}

impl InflightGuard {
    /// Takes `bytes` of the cap at once, or `None` when they are not free now.
    pub fn try_acquire(cap: &Arc<Semaphore>, bytes: usize, gauge: &IntGauge) -> Option<Self> {
        let permits = u32::try_from(bytes).ok()?;
        let permit = cap.clone().try_acquire_many_owned(permits).ok()?;
        let bytes = i64::try_from(bytes).ok()?;
        gauge.add(bytes);
        Some(Self { _permit: permit, bytes, gauge: gauge.clone() })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_holds_permits_and_gauge_together() {
        let cap = Arc::new(Semaphore::new(100));
        let gauge = IntGauge::new("g", "g").expect("gauge");
        let a = InflightGuard::try_acquire(&cap, 60, &gauge).expect("fits");
        assert_eq!(gauge.get(), 60);
        assert!(InflightGuard::try_acquire(&cap, 41, &gauge).is_none(), "over the cap");
        assert_eq!(gauge.get(), 60, "a refused acquire counts nothing");
        let b = InflightGuard::try_acquire(&cap, 40, &gauge).expect("fits");
        assert_eq!((gauge.get(), cap.available_permits()), (100, 0));
        drop(a);
        assert_eq!((gauge.get(), cap.available_permits()), (40, 60));
        drop(b);
        assert_eq!((gauge.get(), cap.available_permits()), (0, 100));
    }

    #[test]
    fn a_guard_moved_into_a_task_is_released_when_the_task_ends() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let cap = Arc::new(Semaphore::new(100));
            let gauge = IntGauge::new("g", "g").expect("gauge");
            let guard = InflightGuard::try_acquire(&cap, 70, &gauge).expect("fits");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let _guard = guard;
                let _ = rx.await;
            });
            tokio::task::yield_now().await;
            assert_eq!(gauge.get(), 70, "held while the deliveries are pending");
            drop(tx);
            task.await.expect("task");
            assert_eq!((gauge.get(), cap.available_permits()), (0, 100));
        });
    }
}
