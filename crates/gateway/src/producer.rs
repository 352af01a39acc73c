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
    Event,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::metrics::Metrics;

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

/// Produces every event and waits, until `deadline` at the latest, for the broker to confirm
/// them. Returns the ids that were NOT confirmed (empty: all of them were).
pub async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    events: &[Outgoing],
    deadline: Instant,
    metrics: &Metrics,
) -> Vec<Uuid> {
    let mut pending = Vec::with_capacity(events.len());
    let mut unconfirmed = Vec::new();
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
                tracing::warn!(%error, id = %event.id, "event could not be queued for kafka");
                metrics.delivery_failures.with_label_values(&[reason]).inc();
                unconfirmed.push(event.id);
            }
        }
    }
    let (ids, deliveries): (Vec<Uuid>, Vec<_>) = pending.into_iter().unzip();
    match tokio::time::timeout_at(deadline, join_all(deliveries)).await {
        Ok(results) => {
            for (id, result) in ids.into_iter().zip(results) {
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => {
                        tracing::warn!(%error, %id, "kafka did not confirm an event");
                        metrics.delivery_failures.with_label_values(&["delivery_error"]).inc();
                        unconfirmed.push(id);
                    }
                    Err(_canceled) => {
                        metrics.delivery_failures.with_label_values(&["canceled"]).inc();
                        unconfirmed.push(id);
                    }
                }
            }
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
