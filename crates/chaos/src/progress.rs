//! The longest time any partition went without progress: sampled every second, a partition
//! is stuck while the sinker group's stored offset (`sink_offsets`) is below the high watermark
//! and does not move. Samples that cannot be taken (brokers or database down) leave the clocks
//! running, so the figure is an upper bound (to a sample or two) of the real longest stall.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use crate::audit;

#[derive(Debug, Default, Clone)]
pub struct Stall {
    pub partition: i32,
    pub longest: Duration,
    /// Seconds from the start of the load when the longest stall ended (or was last seen).
    pub ended_at: Duration,
}

pub struct ProgressMonitor {
    longest: Arc<Mutex<Stall>>,
    task: JoinHandle<()>,
}

impl ProgressMonitor {
    pub fn start(brokers: String, group: String, topic: String, pool: sqlx::PgPool, start: Instant) -> Self {
        let longest = Arc::new(Mutex::new(Stall::default()));
        let task = {
            let longest = longest.clone();
            tokio::spawn(async move {
                // per partition: (stored offset, when it last moved or was caught up)
                let mut last: HashMap<i32, (i64, Instant)> = HashMap::new();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let (b, t) = (brokers.clone(), topic.clone());
                    let Ok(Ok(kafka)) =
                        tokio::task::spawn_blocking(move || audit::kafka_offsets(&b, "chaos-progress", &t)).await
                    else {
                        continue;
                    };
                    let Ok(stored) = audit::sink_offsets(&pool, &group, &topic).await else {
                        continue;
                    };
                    let now = Instant::now();
                    for (p, (high, _)) in kafka {
                        let at = stored.get(&p).copied().unwrap_or(0);
                        let entry = last.entry(p).or_insert((at, now));
                        // Time since the last sample that saw it move or caught up: an upper
                        // bound, to the sampling interval, of the time it went without progress.
                        let stuck = now - entry.1;
                        if at != entry.0 || at >= high {
                            *entry = (at, now);
                        }
                        if let Ok(mut l) = longest.lock() {
                            if stuck > l.longest {
                                *l = Stall { partition: p, longest: stuck, ended_at: now - start };
                            }
                        }
                    }
                }
            })
        };
        Self { longest, task }
    }

    pub fn longest(&self) -> Stall {
        self.longest.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ProgressMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
