//! Producing events and waiting for the broker's acknowledgement of every one.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
};
use sluice_core::{
    kafka::{Guarantee, KafkaArgs},
    scan::ApiEvent,
    Event,
};
use tokio::{sync::oneshot, time::Instant};
use uuid::Uuid;

use crate::{inflight::InflightGuard, log_limit::LogLimit, metrics::Metrics};

/// An event ready to produce: its id and its record.
pub struct Outgoing {
    pub id: Uuid,
    pub key: String,
    pub value: Vec<u8>,
}

impl Outgoing {
    pub fn new(event: &Event) -> Self {
        let (key, value) = sluice_core::wire::encode(event);
        Self { id: event.id, key, value }
    }

    /// A scanned event's record: `data` as the client sent it (`sluice_core::scan`).
    pub fn scanned(event: &ApiEvent<'_>) -> Self {
        Self { id: event.id, key: event.partition_key(), value: event.encode_value() }
    }

    pub fn size(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

/// Room librdkafka's `message.max.bytes` leaves above an event's key and value: it checks
/// key + value + the largest record framing (36 bytes; the gateway writes no headers) against
/// it, and a record batch adds 61 bytes. A round kibibyte covers both with margin.
pub const RECORD_OVERHEAD_BYTES: usize = 1024;

/// The largest `--max-event-bytes`: librdkafka's `message.max.bytes` cannot exceed 10^9.
pub const MAX_EVENT_BYTES: usize = 1_000_000_000 - RECORD_OVERHEAD_BYTES;

/// The most bytes a record adds to its event as posted: the id (as field and as record key),
/// `ts` and `received_at` with microseconds, `data` when absent, and the `key` sent twice
/// (field and record key). On the tree path only (the Segment endpoints, and the events the scan
/// leaves to it), numbers written shorter than serde_json writes them (`1e9`) can add more; see
/// `Config::largest_request_bytes`. A scanned record keeps `data` as sent, less whitespace.
pub const RECORD_OVERHEAD: usize = 4 * sluice_core::event::MAX_KEY_CHARS + 256;

/// Builds the producer: acks from every in-sync replica, idempotent, a short linger,
/// compression, a delivery timeout shorter than the HTTP request timeout, and a message size
/// cap that lets every event of up to `max_event_bytes` (key + value) through.
pub fn build(
    kafka: &KafkaArgs,
    produce_timeout: Duration,
    max_inflight_bytes: usize,
    max_event_bytes: usize,
) -> anyhow::Result<FutureProducer> {
    // librdkafka's own queue cap is a backstop; the gateway's in-flight semaphore binds first.
    let queue_kbytes = (max_inflight_bytes.saturating_mul(2) / 1024).max(1024).to_string();
    let producer = kafka
        .client_config(
            &[
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
                ("queue.buffering.max.kbytes", &queue_kbytes),
                ("queue.buffering.max.messages", "1000000"),
                // Same partition for a key as the Java client, so other producers agree with us.
                ("partitioner", "murmur2_random"),
                ("client.id", "sluice-gateway"),
            ],
            &guarantees(produce_timeout, max_event_bytes),
        )?
        .create()?;
    Ok(producer)
}

/// The producer settings a 202 rests on; `--kafka-option` cannot change them.
pub fn guarantees(produce_timeout: Duration, max_event_bytes: usize) -> Vec<Guarantee> {
    let message_max_bytes = max_event_bytes.saturating_add(RECORD_OVERHEAD_BYTES).clamp(1000, 1_000_000_000);
    vec![
        Guarantee::new("acks", "all", "a 202 means every in-sync replica has the event"),
        Guarantee::new("enable.idempotence", "true", "a retried produce must not write an event twice or out of order"),
        Guarantee::new(
            "message.timeout.ms",
            produce_timeout.as_millis().to_string(),
            "every delivery must resolve before the request times out; set --produce-timeout instead",
        ),
        Guarantee::new(
            "message.max.bytes",
            message_max_bytes.to_string(),
            "an event the gateway accepts must fit the producer's record limit; set --max-event-bytes instead",
        ),
    ]
}

/// Warnings about events kafka refused or did not confirm: one line per request (with a
/// count), and at most one such line per this period (with the count of those skipped).
const WARN_EVERY: Duration = Duration::from_secs(10);
static ENQUEUE_WARNINGS: LogLimit = LogLimit::new(WARN_EVERY);
static DELIVERY_WARNINGS: LogLimit = LogLimit::new(WARN_EVERY);

/// Produces every event and waits, until `deadline` at the latest, for the broker to confirm
/// them. Returns the ids that were NOT confirmed (empty: all of them were).
///
/// The delivery futures and `inflight` go to a task of their own, which ends when every
/// delivery resolved (librdkafka resolves each within `message.timeout.ms`): if this future
/// is dropped (the client left) or the deadline passes, the bytes stay counted, in the cap and
/// in the gauge, for exactly as long as librdkafka holds the records.
pub async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    events: &[Outgoing],
    deadline: Instant,
    metrics: &Metrics,
    inflight: InflightGuard,
) -> Vec<Uuid> {
    let mut pending = Vec::with_capacity(events.len());
    let mut unconfirmed = Vec::new();
    let mut first_enqueue_error = None;
    for event in events {
        let record = FutureRecord::to(topic).key(&event.key).payload(&event.value);
        match producer.send_result(record) {
            Ok(delivery) => pending.push((event.id, delivery)),
            Err((error, _)) => {
                let reason = if matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                    "queue_full"
                } else {
                    "enqueue_error"
                };
                metrics.delivery_failures.with_label_values(&[reason]).inc();
                first_enqueue_error.get_or_insert(error);
                unconfirmed.push(event.id);
            }
        }
    }
    if let Some(error) = first_enqueue_error {
        if let Some(suppressed) = ENQUEUE_WARNINGS.allow(std::time::Instant::now()) {
            tracing::warn!(%error, events = unconfirmed.len(), of = events.len(), suppressed_lines = suppressed,
                "events could not be queued for kafka");
        }
    }
    let (ids, deliveries): (Vec<Uuid>, Vec<_>) = pending.into_iter().unzip();
    let (done, results) = oneshot::channel();
    tokio::spawn(async move {
        let results = join_all(deliveries).await;
        drop(inflight);
        let _ = done.send(results);
    });
    match tokio::time::timeout_at(deadline, results).await {
        Ok(Ok(results)) => {
            let mut first_error = None;
            let mut failed = 0usize;
            for (id, result) in ids.into_iter().zip(results) {
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => {
                        metrics.delivery_failures.with_label_values(&["delivery_error"]).inc();
                        first_error.get_or_insert(error);
                        failed += 1;
                        unconfirmed.push(id);
                    }
                    Err(_canceled) => {
                        metrics.delivery_failures.with_label_values(&["canceled"]).inc();
                        unconfirmed.push(id);
                    }
                }
            }
            if let Some(error) = first_error {
                if let Some(suppressed) = DELIVERY_WARNINGS.allow(std::time::Instant::now()) {
                    tracing::warn!(%error, events = failed, of = events.len(), suppressed_lines = suppressed,
                        "kafka did not confirm events");
                }
            }
        }
        Ok(Err(_task_gone)) => {
            // The delivery task ended without answering (it cannot panic; defensive).
            metrics.delivery_failures.with_label_values(&["canceled"]).inc_by(ids.len() as u64);
            unconfirmed.extend(ids);
        }
        Err(_elapsed) => {
            // The producer may still deliver these; the client is told they are unconfirmed
            // and may resend them: ids make the resend harmless.
            metrics.delivery_failures.with_label_values(&["timeout"]).inc_by(ids.len() as u64);
            unconfirmed.extend(ids);
        }
    }
    unconfirmed
}

/// Flushes what is still queued, for shutdown.
pub fn flush(producer: &FutureProducer, timeout: Duration) {
    if let Err(error) = producer.flush(timeout) {
        tracing::error!(%error, in_flight = producer.in_flight_count(), "producer flush did not finish");
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::Value;

    use super::*;

    #[test]
    fn record_overhead_bounds_what_encoding_adds() {
        let key = "\u{1F600}".repeat(sluice_core::event::MAX_KEY_CHARS);
        for body in [
            r#"{"type":"x"}"#.to_owned(),
            format!(r#"{{"type":"x","key":"{key}"}}"#),
            format!(r#"{{"type":"x","key":"{key}","ts":"2026-01-01T00:00:00Z"}}"#),
            r#"{"type":"x","ts":"2026-01-01T00:00:00+01:00","data":{}}"#.to_owned(),
        ] {
            let value: Value = serde_json::from_str(&body).expect("json");
            let event = Event::from_api(value, Utc::now()).expect("valid");
            let size = Outgoing::new(&event).size();
            assert!(size <= body.len() + RECORD_OVERHEAD, "{body}: {size} bytes as a record");
            let scanned = ApiEvent::scan(&body, Utc::now()).expect("scanned");
            let size = Outgoing::scanned(&scanned).size();
            assert!(size <= body.len() + RECORD_OVERHEAD, "{body}: {size} bytes as a scanned record");
        }
    }
}
