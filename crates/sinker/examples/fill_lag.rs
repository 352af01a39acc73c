//! Fills a topic with valid events straight through Kafka (no gateway), for the memory
//! benchmark (bench/memory_budget.py): `fill_lag BROKERS TOPIC PARTITIONS COUNT DATA_BYTES`.
//! Creates the topic with PARTITIONS partitions (unless it exists). Keys are the event's
//! position, so the events spread over every partition.

use std::time::{Duration, Instant};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    ClientConfig,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions, count, pad] = args.as_slice() else {
        anyhow::bail!("usage: fill_lag BROKERS TOPIC PARTITIONS COUNT DATA_BYTES");
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, partitions.parse()?, TopicReplication::Fixed(1));
    for result in futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => anyhow::bail!("could not create {topic}: {code}"),
        }
    }
    let count: usize = count.parse()?;
    let pad = "x".repeat(pad.parse()?);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
    let started = Instant::now();
    for i in 0..count {
        let key = i.to_string();
        let value = serde_json::json!({"id": uuid::Uuid::now_v7(), "type": "lag", "data": {"pad": pad}}).to_string();
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
    producer.flush(Duration::from_secs(120))?;
    eprintln!("fill_lag: {count} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
