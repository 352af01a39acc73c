//! Liveness, readiness, and the watcher that keeps readiness current.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use rdkafka::producer::{FutureProducer, Producer};

use crate::metrics::Metrics;

/// What the last broker check found. `None` reason: ready.
#[derive(Clone, Default)]
pub struct Readiness {
    not_ready: Arc<RwLock<Option<String>>>,
}

impl Readiness {
    pub fn new_unchecked() -> Self {
        Self { not_ready: Arc::new(RwLock::new(Some("the broker has not been checked yet".to_owned()))) }
    }

    /// `Ok` when writes can go through, else why not.
    pub fn get(&self) -> Result<(), String> {
        match self.not_ready.read() {
            Ok(guard) => guard.clone().map_or(Ok(()), Err),
            Err(_) => Err("readiness state is poisoned".to_owned()),
        }
    }

    fn set(&self, value: Option<String>) {
        if let Ok(mut guard) = self.not_ready.write() {
            *guard = value;
        }
    }
}

/// Asks the broker for the topic's metadata: reachable, topic present, partitions led.
fn check(producer: &FutureProducer, topic: &str, timeout: Duration) -> Result<(), String> {
    let metadata =
        producer.client().fetch_metadata(Some(topic), timeout).map_err(|e| format!("broker unreachable ({e})"))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!("topic `{topic}` is unknown to the broker"));
    };
    if let Some(err) = t.error() {
        return Err(format!("topic `{topic}` is not available ({err:?}); create it"));
    }
    if t.partitions().is_empty() {
        return Err(format!("topic `{topic}` has no partitions; create it"));
    }
    if t.partitions().iter().any(|p| p.leader() < 0) {
        return Err(format!("topic `{topic}` has partitions without a leader"));
    }
    Ok(())
}

/// Checks once, then every `interval` until the process ends.
pub async fn watch(
    producer: FutureProducer,
    topic: String,
    readiness: Readiness,
    metrics: Metrics,
    interval: Duration,
) {
    let mut last_ok: Option<bool> = None;
    loop {
        let (p, t) = (producer.clone(), topic.clone());
        let timeout = interval.max(Duration::from_millis(500)) * 2;
        let result = tokio::task::spawn_blocking(move || check(&p, &t, timeout))
            .await
            .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")));
        let ok = result.is_ok();
        if last_ok != Some(ok) {
            match &result {
                Ok(()) => tracing::info!(topic = %topic, "kafka is ready"),
                Err(reason) => {
                    tracing::warn!(topic = %topic, %reason, "kafka is not ready; writes answer 503")
                }
            }
            last_ok = Some(ok);
        }
        metrics.kafka_ready.set(i64::from(ok));
        readiness.set(result.err());
        tokio::time::sleep(interval).await;
    }
}
