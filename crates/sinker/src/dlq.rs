//! The dead-letter topic: records that cannot become rows, with the reason in headers.
//!
//! A dead letter keeps the original key, value and headers, and adds:
//! `sluice-dlq-reason` (a stable code, see `RejectReason::code`), `sluice-dlq-detail`
//! (a human-readable message), `sluice-source-topic`, `sluice-source-partition`,
//! `sluice-source-offset`.
//!
//! A dead letter must fit the dead-letter producer's `message.max.bytes` (librdkafka's default,
//! 1,000,000, counting the record overhead), while a source record may be as large as the
//! broker allows (1,048,588). What does not fit in [`MAX_LETTER_BYTES`] is cut: the payload is
//! truncated to its first bytes (`sluice-dlq-truncated` holds its original length); if the key
//! and headers alone are too large, the original headers are dropped
//! (`sluice-dlq-headers-dropped` holds their count) and the key is truncated
//! (`sluice-dlq-key-truncated` holds its original length). The reason and source headers are
//! always kept.
//!
//! A produce that fails is retried with the batch, forever (the record must not be lost), and
//! counted in `sinker_dlq_failures_total{reason}`. Failures that no retry can fix (too large,
//! not authorized, unknown topic) also mark the partition stuck (`/readyz`,
//! `sinker_partitions_stuck`) until an operator fixes the topic.

use std::time::Duration;

use futures::future::try_join_all;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::KafkaError,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
    Message,
};
use sluice_core::{
    kafka::{Guarantee, KafkaArgs},
    Rejection,
};

/// The most bytes of key, value and headers a dead letter carries: under the producer's
/// `message.max.bytes` (1,000,000) with room for the record overhead.
pub const MAX_LETTER_BYTES: usize = 990_000;
/// The longest `sluice-dlq-detail` kept (a database's message can quote the whole row).
const MAX_DETAIL_BYTES: usize = 4096;
/// Per-header overhead counted against the budget (varint lengths, attributes).
const HEADER_OVERHEAD: usize = 16;

/// `sinker_dlq_failures_total{reason}` values.
pub const FAILURE_REASONS: [&str; 4] = ["too_large", "unauthorized", "unknown_topic", "transient"];

/// Why a dead-letter produce failed, as a `sinker_dlq_failures_total` reason.
pub fn failure_reason(error: &KafkaError) -> &'static str {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord,
        ) => "too_large",
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        ) => "unauthorized",
        Some(
            RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::InvalidTopic,
        ) => "unknown_topic",
        _ => "transient",
    }
}

/// Whether no retry can fix a failure of this reason (an operator must).
pub fn is_permanent(reason: &str) -> bool {
    reason != "transient"
}

/// What of a record goes into its dead letter.
#[derive(Debug, PartialEq, Eq)]
pub struct Fitted<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub keep_headers: bool,
    /// Original lengths of what was cut.
    pub payload_truncated: Option<usize>,
    pub key_truncated: Option<usize>,
}

/// Cuts a record to `budget` bytes: the payload first, then the original headers (`headers`
/// bytes), then the key. `ours` is what the dead-letter headers take.
pub fn fit<'a>(
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    headers: usize,
    ours: usize,
    budget: usize,
) -> Fitted<'a> {
    let (k, v) = (key.map_or(0, <[u8]>::len), payload.map_or(0, <[u8]>::len));
    let mut fitted = Fitted { key, payload, keep_headers: true, payload_truncated: None, key_truncated: None };
    if k + v + headers + ours <= budget {
        return fitted;
    }
    let cut_payload = |room: usize| payload.map(|p| &p[..room.min(p.len())]);
    fitted.payload_truncated = Some(v);
    if k + headers + ours <= budget {
        fitted.payload = cut_payload(budget - k - headers - ours);
        return fitted;
    }
    fitted.keep_headers = false;
    if k + ours <= budget {
        fitted.payload = cut_payload(budget - k - ours);
        return fitted;
    }
    fitted.payload = cut_payload(0);
    fitted.key = key.map(|key| &key[..budget.saturating_sub(ours).min(key.len())]);
    fitted.key_truncated = Some(k);
    fitted
}

fn truncate_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaArgs, topic: String) -> anyhow::Result<Self> {
        let guaranteed = [Guarantee::new(
            "acks",
            "all",
            "a dead letter must be on every in-sync replica before the offset moves past its record",
        )];
        let producer = kafka
            .client_config(
                &[
                    ("enable.idempotence", "true"),
                    ("linger.ms", "5"),
                    ("message.timeout.ms", "30000"),
                    ("client.id", "sluice-sinker-dlq"),
                ],
                &guaranteed,
            )?
            .create()?;
        Ok(Self { producer, topic })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Creates the dead-letter topic when it is missing (one partition, broker-default
    /// replication). An existing topic is left as it is.
    pub async fn ensure_topic(&self, kafka: &KafkaArgs) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> =
            kafka.client_config(&[], &[]).map_err(|e| KafkaError::ClientCreation(e.to_string()))?.create()?;
        let topic = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(-1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&topic], &options).await? {
            match result {
                Ok(name) => tracing::info!(topic = %name, "created the dead-letter topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                        tracing::error!(topic = %name, ?code, "could not create the dead-letter topic");
                    })
                }
            }
        }
        Ok(())
    }

    /// Produces every dead letter and waits until the broker acknowledged all of them.
    pub async fn send_all(&self, letters: &[(&OwnedMessage, &Rejection)]) -> Result<(), KafkaError> {
        let mut deliveries = Vec::with_capacity(letters.len());
        for (msg, rejection) in letters {
            let partition = msg.partition().to_string();
            let offset = msg.offset().to_string();
            let mut ours: Vec<(&str, String)> = vec![
                ("sluice-dlq-reason", rejection.reason.code().to_owned()),
                ("sluice-dlq-detail", truncate_str(&rejection.detail, MAX_DETAIL_BYTES).to_owned()),
                ("sluice-source-topic", msg.topic().to_owned()),
                ("sluice-source-partition", partition),
                ("sluice-source-offset", offset),
            ];
            let original = msg.headers();
            let header_bytes = original
                .map_or(0, |h| h.iter().map(|x| x.key.len() + x.value.map_or(0, <[u8]>::len) + HEADER_OVERHEAD).sum());
            // Room for our headers plus the three that may be added below.
            let ours_bytes = ours.iter().map(|(k, v)| k.len() + v.len() + HEADER_OVERHEAD).sum::<usize>()
                + 3 * (32 + HEADER_OVERHEAD);
            let fitted = fit(msg.key(), msg.payload(), header_bytes, ours_bytes, MAX_LETTER_BYTES);
            if let Some(n) = fitted.payload_truncated {
                ours.push(("sluice-dlq-truncated", n.to_string()));
            }
            if let Some(n) = fitted.key_truncated {
                ours.push(("sluice-dlq-key-truncated", n.to_string()));
            }
            let mut headers = OwnedHeaders::new_with_capacity(original.map_or(0, |h| h.count()) + ours.len() + 1);
            match original {
                Some(h) if fitted.keep_headers => {
                    for header in h.iter() {
                        headers = headers.insert(Header { key: header.key, value: header.value });
                    }
                }
                Some(h) => ours.push(("sluice-dlq-headers-dropped", h.count().to_string())),
                None => {}
            }
            for (key, value) in &ours {
                headers = headers.insert(Header { key, value: Some(value.as_str()) });
            }
            if fitted.payload_truncated.is_some() || fitted.key_truncated.is_some() {
                tracing::warn!(source_offset = msg.offset(), payload_bytes = ?fitted.payload_truncated, key_bytes = ?fitted.key_truncated, "dead letter too large for the dead-letter topic; truncated");
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = fitted.key {
                record = record.key(key);
            }
            if let Some(payload) = fitted.payload {
                record = record.payload(payload);
            }
            let delivery = self.producer.send_result(record).map_err(|(e, _)| e)?;
            deliveries.push(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e),
                    Err(_canceled) => Err(KafkaError::Canceled),
                }
            });
        }
        try_join_all(deliveries).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_fits_is_kept_whole() {
        let (k, v) = (b"key".as_slice(), b"value".as_slice());
        let f = fit(Some(k), Some(v), 10, 100, 1000);
        assert_eq!(
            f,
            Fitted { key: Some(k), payload: Some(v), keep_headers: true, payload_truncated: None, key_truncated: None }
        );
    }

    #[test]
    fn the_payload_is_cut_first_then_headers_then_the_key() {
        let key = vec![b'k'; 100];
        let value = vec![b'v'; 10_000];
        let f = fit(Some(&key), Some(&value), 200, 300, 1000);
        assert_eq!((f.payload.map(<[u8]>::len), f.keep_headers, f.payload_truncated), (Some(400), true, Some(10_000)));
        assert!(value.starts_with(f.payload.unwrap_or_default()));

        let f = fit(Some(&key), Some(&value), 700, 300, 1000);
        assert_eq!((f.payload.map(<[u8]>::len), f.keep_headers, f.key_truncated), (Some(600), false, None));

        let big_key = vec![b'k'; 5000];
        let f = fit(Some(&big_key), Some(&value), 700, 300, 1000);
        assert_eq!((f.key.map(<[u8]>::len), f.payload.map(<[u8]>::len), f.keep_headers), (Some(700), Some(0), false));
        assert_eq!((f.payload_truncated, f.key_truncated), (Some(10_000), Some(5000)));
    }

    #[test]
    fn the_total_never_exceeds_the_budget() {
        for (k, v, h, ours) in [
            (0, 2_000_000, 0, 500),
            (1_048_000, 10, 0, 500),
            (10, 10, 2_000_000, 500),
            (300_000, 800_000, 300_000, 500),
        ] {
            let (key, value) = (vec![0u8; k], vec![0u8; v]);
            let f = fit(Some(&key), Some(&value), h, ours, MAX_LETTER_BYTES);
            let total = f.key.map_or(0, <[u8]>::len)
                + f.payload.map_or(0, <[u8]>::len)
                + if f.keep_headers { h } else { 0 }
                + ours;
            assert!(total <= MAX_LETTER_BYTES, "{k} {v} {h}: {total}");
        }
    }

    #[test]
    fn failures_are_classified() {
        use rdkafka::error::KafkaError::MessageProduction;
        assert_eq!(failure_reason(&MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)), "too_large");
        assert_eq!(failure_reason(&MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)), "unauthorized");
        assert_eq!(failure_reason(&MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition)), "unknown_topic");
        assert_eq!(failure_reason(&MessageProduction(RDKafkaErrorCode::MessageTimedOut)), "transient");
        assert!(!is_permanent("transient") && is_permanent("too_large"));
        assert_eq!(truncate_str("héllo", 2), "h");
    }
}
