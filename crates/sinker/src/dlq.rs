//! The dead-letter topic: records that cannot become rows, with the reason in headers.
//!
//! A dead letter keeps the original key, value and headers, and adds:
//! `sluice-dlq-reason` (a stable code, see `RejectReason::code`), `sluice-dlq-detail`
//! (a human-readable message), `sluice-source-topic`, `sluice-source-partition`,
//! `sluice-source-offset`.

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
            let mut headers = msg.headers().map_or_else(OwnedHeaders::new, |h| {
                h.iter().fold(OwnedHeaders::new_with_capacity(h.count() + 5), |acc, header| {
                    acc.insert(Header { key: header.key, value: header.value })
                })
            });
            for (key, value) in [
                ("sluice-dlq-reason", rejection.reason.code()),
                ("sluice-dlq-detail", rejection.detail.as_str()),
                ("sluice-source-topic", msg.topic()),
                ("sluice-source-partition", partition.as_str()),
                ("sluice-source-offset", offset.as_str()),
            ] {
                headers = headers.insert(Header { key, value: Some(value) });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = msg.key() {
                record = record.key(key);
            }
            if let Some(payload) = msg.payload() {
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
