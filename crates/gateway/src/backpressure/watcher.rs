//! The lag watcher: measures the sinker group's lag every `--lag-interval` and feeds the
//! throttle, the request path's view and the metrics. It runs for the life of the process;
//! main.rs ends the process if it ever stops (see `tasks`).

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{drain_rate::DrainRate, throttle::Throttle, Backpressure};
use crate::{
    lag::{LagReader, PartitionOffsets},
    metrics::Metrics,
};

/// Measures lag every `interval` and updates the throttle and the metrics, forever.
pub async fn watch(
    reader: LagReader,
    mut throttle: Throttle,
    backpressure: Backpressure,
    metrics: Metrics,
    interval: Duration,
) {
    let reader = Arc::new(reader);
    let mut drain = DrainRate::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let r = reader.clone();
        let started = std::time::Instant::now();
        let measured = tokio::task::spawn_blocking(move || r.measure())
            .await
            .map_err(|e| e.to_string())
            .and_then(|m| m.map_err(|e| e.to_string()));
        metrics.lag_measure_seconds.observe(started.elapsed().as_secs_f64());
        let now = Instant::now();
        match measured {
            Ok(partitions) => {
                let lag: u64 = partitions.iter().map(PartitionOffsets::lag).sum();
                let consumed: i64 = partitions.iter().map(PartitionOffsets::consumed).sum();
                let rate = drain.observe(now, consumed);
                let was = throttle.active;
                let throttled = throttle.observe(lag);
                let retry_after = throttle.retry_after(lag, rate);
                if throttled != was {
                    if throttled {
                        tracing::warn!(
                            lag,
                            threshold = throttle.throttle_at,
                            drain_rate = rate,
                            "sinkers are behind: throttling writes (429)"
                        );
                    } else {
                        tracing::info!(lag, resume_at = throttle.resume_at, "lag is back down: accepting writes");
                    }
                }
                metrics.consumer_lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
                metrics.committed_offset_sum.set(consumed);
                metrics.drain_rate.set(rate);
                metrics.backpressure_active.set(i64::from(throttled));
                metrics.lag_known.set(1);
                for p in &partitions {
                    let lag = i64::try_from(p.lag()).unwrap_or(i64::MAX);
                    metrics.consumer_lag_partition.with_label_values(&[&p.partition.to_string()]).set(lag);
                }
                backpressure.update(|v| {
                    v.lag = Some(lag);
                    v.throttled = throttled;
                    v.retry_after = retry_after;
                    v.measured_at = Some(now);
                    v.last_error = None;
                });
            }
            Err(error) => {
                tracing::debug!(%error, "could not measure consumer lag");
                backpressure.update(|v| v.last_error = Some(error));
                if backpressure.stale_reason().is_some() {
                    metrics.lag_known.set(0);
                    metrics.backpressure_active.set(0);
                }
            }
        }
        if let Some(at) = backpressure.view().measured_at {
            metrics.lag_age_seconds.set(at.elapsed().as_secs_f64());
        }
    }
}
