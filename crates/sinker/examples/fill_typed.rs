//! Fills a topic with valid events straight through Kafka (no gateway) for the routes
//! benchmarks (bench/run.py, scenario 8): `fill_typed BROKERS TOPIC PARTITIONS COUNT WORKLOAD`.
//!
//! - `typed`: three event types in turn (`bench.view`, `bench.order`, `bench.payment`), each
//!   with `data` fields for a uuid, a bigint, a numeric, a text, a timestamptz and a jsonb
//!   column; record keys are the event's position, so the events spread over every partition.
//! - `hot`: one type, `bench.counter`, keyed by a row key among COUNT/10 keys of which the hot
//!   1% take half the events; `data.version` counts each key's events from 1, and the record
//!   key is the row key (all of a row's events in one partition, in version order).
//!
//! Creates the topic with PARTITIONS partitions (unless it exists). Prints one JSON line with
//! what it wrote.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    ClientConfig,
};
use serde_json::json;

const TYPES: [&str; 3] = ["bench.view", "bench.order", "bench.payment"];

#[allow(clippy::print_stdout, reason = "the summary line bench/run.py reads")]
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions, count, workload] = args.as_slice() else {
        anyhow::bail!("usage: fill_typed BROKERS TOPIC PARTITIONS COUNT typed|hot");
    };
    let hot = match workload.as_str() {
        "typed" => false,
        "hot" => true,
        other => anyhow::bail!("unknown workload {other}: use typed or hot"),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, partitions.parse()?, TopicReplication::Fixed(1));
    for result in futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => anyhow::bail!("could not create {topic}: {code}"),
        }
    }
    let count: u64 = count.parse()?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        // No reordering by retries: each row's versions stay in order within its partition.
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
    let mut rng = StdRng::seed_from_u64(12);
    let keys = (count / 10).max(100);
    let hot_keys = keys / 100;
    let mut versions: HashMap<u64, i64> = HashMap::new();
    let base = Utc::now();
    let pad = "p".repeat(120);
    let started = Instant::now();
    for i in 0..count {
        let at = (base + chrono::Duration::milliseconds(i as i64)).to_rfc3339_opts(SecondsFormat::Micros, true);
        let (key, value) = if hot {
            let row =
                if rng.random_bool(0.5) { rng.random_range(0..hot_keys) } else { rng.random_range(hot_keys..keys) };
            let version = versions.entry(row).and_modify(|v| *v += 1).or_insert(1);
            let value = json!({"id": uuid::Uuid::now_v7(), "type": "bench.counter", "key": row.to_string(), "ts": at,
                "data": {"row": row, "version": *version, "amount": format!("{}.{:02}", i % 100_000, i % 100),
                         "label": format!("row {row}"), "at": at, "attrs": {"n": i % 7, "tags": ["a", "b"], "pad": pad}}});
            (row.to_string(), value.to_string())
        } else {
            let value = json!({"id": uuid::Uuid::now_v7(), "type": TYPES[(i % 3) as usize], "ts": at,
                "data": {"user": uuid::Uuid::new_v4(), "n": i, "amount": format!("{}.{:02}", i % 100_000, i % 100),
                         "label": format!("label {}", i % 1000), "at": at, "attrs": {"n": i % 7, "tags": ["a", "b"], "pad": pad}}});
            (i.to_string(), value.to_string())
        };
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // Let librdkafka deliver what it queued (a synchronous program, no runtime).
                    producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => anyhow::bail!("produce failed: {error}"),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let summary = json!({"events": count, "seconds": started.elapsed().as_secs_f64(),
                         "keys": if hot { versions.len() as u64 } else { 0 }, "hot_keys": if hot { hot_keys } else { 0 }});
    println!("{summary}");
    Ok(())
}
