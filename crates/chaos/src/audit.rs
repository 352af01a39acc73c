//! Checking the books after the run: every count exact.

use std::{collections::HashMap, collections::HashSet, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    ClientConfig, Message, Offset, TopicPartitionList,
};
use uuid::Uuid;

pub fn consumer(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// Per partition: (high watermark, Kafka-committed offset of `group`).
pub fn kafka_offsets(brokers: &str, group: &str, topic: &str) -> anyhow::Result<HashMap<i32, (i64, Option<i64>)>> {
    let c = consumer(brokers, group)?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
    let mut out = HashMap::new();
    for p in partitions {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        let done = committed.find_partition(topic, p).and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        out.insert(p, (high, done));
    }
    Ok(out)
}

/// The markers found in dead letters, each with its `sluice-dlq-reason` header.
pub fn dead_letter_markers(
    brokers: &str,
    topic: &str,
    markers: &HashSet<String>,
) -> anyhow::Result<HashMap<String, String>> {
    let c = consumer(brokers, "chaos-audit-reader")?;
    let (_, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let mut found = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = -1;
    while last + 1 < high && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        last = m.offset();
        let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let reason = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "sluice-dlq-reason")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            })
            .unwrap_or_default();
        for marker in markers {
            if text.contains(marker.as_str()) {
                found.insert(marker.clone(), reason.clone());
            }
        }
    }
    Ok(found)
}

pub async fn stored_ids(pool: &sqlx::PgPool) -> anyhow::Result<(i64, HashSet<Uuid>)> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM events").fetch_all(pool).await?;
    Ok((rows, ids.into_iter().collect()))
}

/// The sinker group's stored next offsets of the topic (other groups' rows are theirs).
pub async fn sink_offsets(pool: &sqlx::PgPool, group: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM sink_offsets WHERE consumer_group = $1 AND topic = $2")
            .bind(group)
            .bind(topic)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
