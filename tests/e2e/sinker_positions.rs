//! The sinker's position against the world changing under it: a database restored from a
//! backup, a topic deleted and created again, a record too large for the dead-letter topic, a
//! database that refuses every write until an operator fixes it.

use std::{collections::HashSet, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    consumer::Consumer,
    producer::{FutureProducer, FutureRecord},
    ClientConfig, Message,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{create_topic, eventually, header, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

fn event(id: Uuid) -> Vec<u8> {
    json!({"id": id, "type": "pos", "ts": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:01Z", "data": {"n": 1}})
        .to_string()
        .into_bytes()
}

async fn produce(env: &TestEnv, ids: &[Uuid]) {
    let values: Vec<Vec<u8>> = ids.iter().map(|id| event(*id)).collect();
    let records: Vec<(Option<&str>, Option<&[u8]>)> = values.iter().map(|v| (Some("k"), Some(v.as_slice()))).collect();
    env.produce_raw(&records).await;
}

fn new_ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

async fn stored_ids(env: &TestEnv) -> HashSet<Uuid> {
    sqlx::query_scalar("SELECT id FROM events").fetch_all(&env.pool).await.expect("ids").into_iter().collect()
}

/// A restore from a backup taken when the first `keep` events were written: the later rows and
/// the fence go back together, as they were committed together.
async fn restore_to(env: &TestEnv, ids: &[Uuid], keep: usize) {
    let gone: Vec<Uuid> = ids[keep..].to_vec();
    sqlx::query("DELETE FROM events WHERE id = ANY($1)").bind(&gone).execute(&env.pool).await.expect("delete rows");
    let restored = sqlx::query(
        "UPDATE sink_offsets SET next_offset = $1 WHERE consumer_group = $2 AND topic = $3 AND partition = 0",
    )
    .bind(keep as i64)
    .bind(&env.group)
    .bind(&env.topic)
    .execute(&env.pool)
    .await
    .expect("set the fence back");
    assert_eq!(restored.rows_affected(), 1, "the sinker's fence row");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_database_is_filled_again_exactly_once() {
    let env = TestEnv::new(1).await;
    let ids = new_ids(100);
    produce(&env, &ids).await;
    let mut sinker = env.sinker(&["--batch-size", "10"]);
    env.wait_rows(100, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    sinker.signal("TERM");
    assert!(sinker.wait_exit(WAIT).await.success());

    // Restored while no sinker runs: Kafka's committed offset (100) is ahead of the database's (40).
    restore_to(&env, &ids, 40).await;
    let restarted = env.sinker(&["--batch-size", "10"]);
    env.wait_rows(100, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(stored_ids(&env).await, ids.iter().copied().collect::<HashSet<_>>());
    assert_eq!(restarted.metric("sinker_kafka_ahead_of_database_total", &[]).await, Some(1.0));
    assert_eq!(restarted.metric("sinker_rows_inserted_total", &[]).await, Some(60.0), "exactly the lost rows, once");
    assert_eq!(restarted.metric("sinker_duplicates_skipped_total", &[]).await, Some(0.0));
    assert!(restarted.logs().contains("kafka's committed offset is ahead of the database's"), "{}", restarted.logs());

    // Restored under a running sinker: its next batch (from 100) meets a fence at 70; it goes
    // back to 70 and writes everything again from there.
    restore_to(&env, &ids, 70).await;
    let more = new_ids(5);
    produce(&env, &more).await;
    env.wait_rows(105, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    let all: HashSet<Uuid> = ids.iter().chain(&more).copied().collect();
    assert_eq!(stored_ids(&env).await, all);
    assert_eq!(restarted.metric("sinker_kafka_ahead_of_database_total", &[]).await, Some(2.0));
    assert_eq!(restarted.metric("sinker_rows_inserted_total", &[]).await, Some(60.0 + 35.0));
    assert_eq!(restarted.metric("sinker_duplicates_skipped_total", &[]).await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_topic_is_read_from_its_start() {
    let env = TestEnv::new(1).await;
    let first = new_ids(30);
    produce(&env, &first).await;
    let mut sinker = env.sinker(&[]);
    env.wait_rows(30, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    sinker.signal("TERM");
    assert!(sinker.wait_exit(WAIT).await.success());

    // The topic goes away and comes back with the same name: its offsets start at 0 again,
    // below the stored 30.
    recreate_topic(&env).await;
    let second = new_ids(10);
    produce(&env, &second).await;

    let sinker = env.sinker(&[]);
    env.wait_rows(40, WAIT).await;
    let third = new_ids(5);
    produce(&env, &third).await;
    env.wait_rows(45, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.sink_offsets().await.get(&0), Some(&15));
    let all: HashSet<Uuid> = first.iter().chain(&second).chain(&third).copied().collect();
    assert_eq!(stored_ids(&env).await, all);
    // At least once: a rebalance before the first write notices the stale offset again.
    let resets = sinker.metric("sinker_offset_resets_total", &[("reason", "beyond_log_end")]).await.unwrap_or(0.0);
    assert!(resets >= 1.0, "the restart from the log start is counted: {resets}");
    assert!(sinker.logs().contains("beyond the log end"), "{}", sinker.logs());
}

async fn recreate_topic(env: &TestEnv) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &env.brokers).create().expect("admin");
    for result in admin.delete_topics(&[&env.topic], &AdminOptions::new()).await.expect("delete topic") {
        result.expect("topic deleted");
    }
    eventually(WAIT, "the topic is gone", || async {
        let consumer = crate::helpers::base_consumer(&env.brokers, None);
        let md = consumer.fetch_metadata(Some(&env.topic), Duration::from_secs(5)).ok()?;
        md.topics().iter().all(|t| t.name() != env.topic || t.error().is_some()).then_some(())
    })
    .await;
    create_topic(&env.brokers, &env.topic, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_recreated_under_a_running_sinker_is_read_from_its_start() {
    let env = TestEnv::new(1).await;
    let first = new_ids(30);
    produce(&env, &first).await;
    let sinker = env.sinker(&[]);
    env.wait_rows(30, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;

    recreate_topic(&env).await;
    let second = new_ids(10);
    produce(&env, &second).await;
    env.wait_rows(40, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.sink_offsets().await.get(&0), Some(&10));
    let all: HashSet<Uuid> = first.iter().chain(&second).copied().collect();
    assert_eq!(stored_ids(&env).await, all);
    // At least once: a rebalance before the first write notices the stale offset again.
    let resets = sinker.metric("sinker_offset_resets_total", &[("reason", "beyond_log_end")]).await.unwrap_or(0.0);
    assert!(resets >= 1.0, "the restart from the log start is counted: {resets}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_the_dead_letter_topic_is_dead_lettered_truncated() {
    let env = TestEnv::new(1).await;
    // A producer that allows what the broker allows (1,048,588 bytes), as a Java client may.
    let big: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.brokers)
        .set("message.max.bytes", "1048588")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let blob = "x".repeat(1_048_000);
    let oversized = format!(r#"{{"id":"{}","type":"big","data":{{"blob":"{blob}"}}}}"#, Uuid::now_v7());
    big.send(FutureRecord::to(&env.topic).key("big").payload(oversized.as_bytes()), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce the oversized record");
    let normal = new_ids(1);
    produce(&env, &normal).await;

    let sinker = env.sinker(&[]);
    env.wait_rows(1, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(stored_ids(&env).await, normal.iter().copied().collect::<HashSet<_>>());
    let letters = env.dlq_records();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(header(letter, "sluice-dlq-reason").as_deref(), Some("too_large"));
    assert_eq!(header(letter, "sluice-source-topic").as_deref(), Some(env.topic.as_str()));
    assert_eq!(header(letter, "sluice-source-partition").as_deref(), Some("0"));
    assert_eq!(header(letter, "sluice-source-offset").as_deref(), Some("0"));
    assert_eq!(header(letter, "sluice-dlq-truncated").as_deref(), Some(oversized.len().to_string().as_str()));
    let kept = letter.payload().expect("a truncated payload");
    assert!(
        kept.len() < oversized.len() && oversized.as_bytes().starts_with(kept),
        "the payload's first {} bytes",
        kept.len()
    );
    assert_eq!(sinker.metric("sinker_dlq_messages_total", &[("reason", "too_large")]).await, Some(1.0));
    assert_eq!(sinker.metric("sinker_dlq_failures_total", &[]).await, Some(0.0));
}

async fn readyz(sinker: &crate::helpers::Proc) -> Option<(u16, serde_json::Value)> {
    let response =
        reqwest::Client::new().get(sinker.url("/readyz")).timeout(Duration::from_secs(2)).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_database_error_shows_in_readyz_and_metrics_until_fixed() {
    let env = TestEnv::new(1).await;
    env.migrate();
    for statement in [
        "CREATE FUNCTION freeze_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'events are frozen for maintenance'; END $$",
        "CREATE TRIGGER freeze_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION freeze_events()",
    ] {
        sqlx::query(statement).execute(&env.pool).await.expect("install the trigger");
    }
    let mut sinker = env.sinker(&[]);
    sinker.wait_ready("/readyz", WAIT).await;
    let ids = new_ids(5);
    produce(&env, &ids).await;

    let body = eventually(WAIT, "/readyz says the partition is stuck", || async {
        let (status, body) = readyz(&sinker).await?;
        (status == 503).then_some(body)
    })
    .await;
    let reason = body["reason"].as_str().expect("a reason");
    assert!(reason.contains("events are frozen for maintenance") && reason.contains("P0001"), "{body}");
    assert_eq!(body["stuck_partitions"][0]["partition"], json!(0), "{body}");
    assert_eq!(sinker.metric("sinker_partitions_stuck", &[]).await, Some(1.0));
    assert!(sinker.metric("sinker_db_errors_total", &[("kind", "fatal")]).await.unwrap_or(0.0) >= 1.0);
    assert_eq!(env.row_count().await, 0);

    sqlx::query("DROP TRIGGER freeze_events ON events").execute(&env.pool).await.expect("drop the trigger");
    env.wait_rows(5, WAIT).await;
    eventually(WAIT, "/readyz back to 200", || async {
        let (status, _) = readyz(&sinker).await?;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(sinker.metric("sinker_partitions_stuck", &[]).await, Some(0.0));
    assert_eq!(stored_ids(&env).await, ids.iter().copied().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_topic_that_refuses_a_letter_shows_in_readyz_until_fixed() {
    use rdkafka::admin::{AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
    let env = TestEnv::new(1).await;
    // The dead-letter topic exists already, with a record size limit below the letter's.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &env.brokers).create().expect("admin");
    let small = NewTopic::new(&env.dlq_topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "2000");
    for result in admin.create_topics([&small], &AdminOptions::new()).await.expect("create the dead-letter topic") {
        result.expect("dead-letter topic created");
    }
    let junk = "not json ".repeat(500);
    env.produce_raw(&[(Some("k"), Some(junk.as_bytes()))]).await;
    let after = new_ids(3);
    produce(&env, &after).await;

    let mut sinker = env.sinker(&[]);
    let body = eventually(WAIT, "/readyz says the partition is stuck", || async {
        let (status, body) = readyz(&sinker).await?;
        (status == 503 && body["stuck_partitions"][0]["partition"] == json!(0)).then_some(body)
    })
    .await;
    let reason = body["reason"].as_str().expect("a reason");
    assert!(reason.contains("dead-letter topic refuses writes (too_large)"), "{body}");
    assert!(sinker.metric("sinker_dlq_failures_total", &[("reason", "too_large")]).await.unwrap_or(0.0) >= 1.0);
    assert_eq!(sinker.metric("sinker_partitions_stuck", &[]).await, Some(1.0));
    assert_eq!(env.row_count().await, 0, "nothing past the letter is written");

    // The operator raises the topic's limit: the letter goes through, then the rows.
    let raise = AlterConfig::new(ResourceSpecifier::Topic(&env.dlq_topic)).set("max.message.bytes", "1048588");
    for result in admin.alter_configs([&raise], &AdminOptions::new()).await.expect("alter the dead-letter topic") {
        result.expect("limit raised");
    }
    env.wait_rows(3, WAIT).await;
    eventually(WAIT, "/readyz back to 200", || async {
        let (status, _) = readyz(&sinker).await?;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(sinker.metric("sinker_partitions_stuck", &[]).await, Some(0.0));
    let letters = env.dlq_records();
    assert_eq!(letters.len(), 1);
    assert_eq!(header(&letters[0], "sluice-dlq-reason").as_deref(), Some("not_json"));
    assert!(sinker.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_insert_permission_shows_in_readyz_until_granted_again() {
    let env = TestEnv::new(1).await;
    let role = format!("r_{}", env.name.to_lowercase());
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD 'sinker-pw'"))
        .execute(&env.pool)
        .await
        .expect("create role");
    let database = env.database_url.rsplit('/').next().expect("db name").to_owned();
    env.migrate();
    for grant in [
        format!("GRANT ALL ON DATABASE {database} TO {role}"),
        format!("GRANT ALL ON SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("REVOKE INSERT ON events FROM {role}"),
    ] {
        sqlx::query(&grant).execute(&env.pool).await.expect("grant");
    }
    let url = env.database_url.replacen("sluice:sluice@", &format!("{role}:sinker-pw@"), 1);
    let mut sinker = env.sinker(&["--database-url", &url]);
    sinker.wait_ready("/readyz", WAIT).await;
    let ids = new_ids(4);
    produce(&env, &ids).await;

    let body = eventually(WAIT, "/readyz says the partition is stuck", || async {
        let (status, body) = readyz(&sinker).await?;
        (status == 503).then_some(body)
    })
    .await;
    let reason = body["reason"].as_str().expect("a reason");
    assert!(reason.contains("permission denied") && reason.contains("42501"), "{body}");
    assert_eq!(sinker.metric("sinker_partitions_stuck", &[]).await, Some(1.0));

    sqlx::query(&format!("GRANT INSERT ON events TO {role}")).execute(&env.pool).await.expect("grant insert");
    env.wait_rows(4, WAIT).await;
    eventually(WAIT, "/readyz back to 200", || async {
        let (status, _) = readyz(&sinker).await?;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(sinker.metric("sinker_partitions_stuck", &[]).await, Some(0.0));
    assert_eq!(stored_ids(&env).await, ids.iter().copied().collect::<HashSet<_>>());
}
