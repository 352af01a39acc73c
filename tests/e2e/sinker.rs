//! The sinker against a real broker and a real PostgreSQL: exact row counts, exact offsets.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use rdkafka::Message;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{header, PrivateStack, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

fn event(id: Uuid, kind: &str) -> Vec<u8> {
    json!({"id": id, "type": kind, "ts": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:01Z", "data": {"n": 1}})
        .to_string()
        .into_bytes()
}

/// Produces `values` keyed by their position, spread over partitions.
async fn produce(env: &TestEnv, values: &[Vec<u8>]) {
    let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&str>, Option<&[u8]>)> =
        keys.iter().zip(values).map(|(k, v)| (Some(k.as_str()), Some(v.as_slice()))).collect();
    env.produce_raw(&records).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_ids_become_one_row_and_replays_add_nothing() {
    let env = TestEnv::new(3).await;
    let ids: Vec<Uuid> = (0..150).map(|_| Uuid::now_v7()).collect();
    // 200 records, 150 distinct ids: the first 50 ids appear twice.
    let values: Vec<Vec<u8>> = ids.iter().chain(&ids[..50]).map(|id| event(*id, "dup")).collect();
    produce(&env, &values).await;

    let mut sinker = env.sinker(&["--batch-size", "40"]);
    env.wait_rows(150, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;

    // The same events again: no new rows.
    produce(&env, &values).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.row_count().await, 150);
    assert_eq!(sinker.metric("sinker_rows_inserted_total", &[]).await, Some(150.0));
    assert_eq!(sinker.metric("sinker_duplicates_skipped_total", &[]).await, Some(250.0));
    assert!(sinker.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn records_from_other_producers_are_written() {
    let env = TestEnv::new(2).await;
    let id = Uuid::new_v4();
    // Only the required fields: ts and received_at come from the record timestamp.
    let minimal = json!({"id": id, "type": "from-java", "extra": "ignored"}).to_string();
    env.produce_raw(&[(Some("some-key"), Some(minimal.as_bytes()))]).await;
    let _sinker = env.sinker(&[]);
    env.wait_rows(1, WAIT).await;
    let (kind, key, data, ts_age): (String, Option<String>, serde_json::Value, f64) =
        sqlx::query_as("SELECT type, key, data, extract(epoch FROM now() - ts)::float8 FROM events WHERE id = $1")
            .bind(id)
            .fetch_one(&env.pool)
            .await
            .expect("row");
    assert_eq!((kind.as_str(), key, data), ("from-java", None, json!({})));
    assert!(ts_age < 120.0, "ts taken from the record timestamp, {ts_age}s ago");
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_records_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing() {
    let env = TestEnv::new(1).await;
    env.migrate();
    // A constraint the event model does not know about: the database refuses these rows.
    sqlx::query("ALTER TABLE events ADD CONSTRAINT no_forbidden CHECK (type <> 'forbidden')")
        .execute(&env.pool)
        .await
        .expect("add constraint");

    let good: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "not_json"),
        (br#"{"id": 17, "type": "x"}"#.to_vec(), "invalid_event"),
        (br#"{"type": "no id"}"#.to_vec(), "invalid_event"),
        (json!({"id": Uuid::new_v4(), "type": "x", "data": [1]}).to_string().into_bytes(), "invalid_event"),
        (
            json!({"id": Uuid::new_v4(), "type": "x", "data": {"blob": "y".repeat(5000)}}).to_string().into_bytes(),
            "too_large",
        ),
        (event(Uuid::new_v4(), "forbidden"), "database_rejected"),
    ];
    let mut values = Vec::new();
    let mut expected_reasons = Vec::new();
    for (i, id) in good.iter().enumerate() {
        values.push(event(*id, "good"));
        if i % 5 == 0 {
            let (bad, reason) = &poison[i / 5];
            values.push(bad.clone());
            expected_reasons.push(*reason);
        }
    }
    produce(&env, &values).await;

    let sinker = env.sinker(&["--max-event-bytes", "4096", "--batch-bytes", "65536", "--batch-size", "7"]);
    env.wait_rows(30, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    let stored: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM events").fetch_all(&env.pool).await.expect("ids").into_iter().collect();
    assert_eq!(stored, good.iter().copied().collect::<HashSet<_>>());

    let letters = env.dlq_records();
    assert_eq!(letters.len(), poison.len(), "one dead letter per poison record");
    let mut reasons: Vec<String> =
        letters.iter().map(|m| header(m, "sluice-dlq-reason").expect("reason header")).collect();
    reasons.sort();
    expected_reasons.sort();
    assert_eq!(reasons, expected_reasons);
    let source_records = env.topic_records();
    for letter in &letters {
        let offset: i64 = header(letter, "sluice-source-offset").expect("offset header").parse().expect("number");
        assert_eq!(header(letter, "sluice-source-topic").as_deref(), Some(env.topic.as_str()));
        assert_eq!(header(letter, "sluice-source-partition").as_deref(), Some("0"));
        assert!(header(letter, "sluice-dlq-detail").is_some_and(|d| !d.is_empty()));
        let original = source_records.iter().find(|m| m.offset() == offset).expect("source record");
        assert_eq!(letter.payload(), original.payload(), "the dead letter keeps the original value");
    }
    assert_eq!(sinker.metric("sinker_dlq_messages_total", &[("reason", "invalid_event")]).await, Some(3.0));
    assert_eq!(sinker.metric("sinker_dlq_messages_total", &[("reason", "database_rejected")]).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_the_database_and_kafka_commits_replays_nothing() {
    for failpoint in ["sinker.after_db_commit:2", "sinker.before_db_commit:2"] {
        let env = TestEnv::new(2).await;
        let values: Vec<Vec<u8>> = (0..100).map(|_| event(Uuid::now_v7(), "crash")).collect();
        produce(&env, &values).await;

        let mut doomed = env.sinker_with_env(&["--batch-size", "10"], &[("SLUICE_FAILPOINT", failpoint)]);
        let status = doomed.wait_exit(WAIT).await;
        assert!(!status.success(), "{failpoint}: the failpoint aborts the process");
        let written_before_restart = env.row_count().await;
        assert!(written_before_restart < 100, "{failpoint}: crashed early");

        let mut sinker = env.sinker(&["--batch-size", "10"]);
        env.wait_rows(100, WAIT).await;
        env.wait_offsets_at_high_watermarks(WAIT).await;
        // Every event written exactly once, and nothing the crashed one had committed to the
        // database read again: the restarted sinker resumed at the database's offsets (the
        // primary key alone would keep the count right even after a full replay).
        assert_eq!(env.row_count().await, 100);
        let missing = (100 - written_before_restart) as f64;
        assert_eq!(
            sinker.metric("sinker_rows_inserted_total", &[]).await,
            Some(missing),
            "{failpoint}: the new process inserted exactly the rows the crashed one had not committed"
        );
        assert_eq!(
            sinker.metric("sinker_duplicates_skipped_total", &[]).await,
            Some(0.0),
            "{failpoint}: a replayed range"
        );
        assert!(sinker.is_running());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sinkers_come_and_go_and_every_event_is_written_once() {
    let env = TestEnv::new(6).await;
    let mut sinkers = vec![
        env.sinker(&["--batch-size", "50"]),
        env.sinker(&["--batch-size", "50"]),
        env.sinker(&["--batch-size", "50"]),
    ];
    let producer_env = &env;
    let total = 3000;
    let produce_all = async move {
        let mut sent = HashSet::new();
        for chunk in 0..30 {
            let ids: Vec<Uuid> = (0..total / 30).map(|_| Uuid::now_v7()).collect();
            sent.extend(ids.iter().copied());
            let values: Vec<Vec<u8>> = ids.iter().map(|id| event(*id, "scale")).collect();
            let keys: Vec<String> = (0..values.len()).map(|i| format!("c{chunk}-{i}")).collect();
            let records: Vec<(Option<&str>, Option<&[u8]>)> =
                keys.iter().zip(&values).map(|(k, v)| (Some(k.as_str()), Some(v.as_slice()))).collect();
            producer_env.produce_raw(&records).await;
            // Spread the load over a few seconds, so the churn happens mid-stream.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        sent
    };
    let churn = async {
        // A sinker dies once rows flow, and one joins after the others wrote some more.
        crate::helpers::eventually(WAIT, "rows flowing before the kill", || async {
            (env.row_count().await >= 300).then_some(())
        })
        .await;
        sinkers[1].kill9();
        let at_kill = env.row_count().await;
        crate::helpers::eventually(WAIT, "rows flowing after the kill", || async {
            let n = env.row_count().await;
            (n > at_kill || n == total as i64).then_some(())
        })
        .await;
        sinkers.push(env.sinker(&["--batch-size", "50"]));
    };
    let (sent, ()) = tokio::join!(produce_all, churn);
    env.wait_rows(total as i64, Duration::from_secs(120)).await;
    env.wait_offsets_at_high_watermarks(Duration::from_secs(120)).await;
    // The ids in the table are exactly the ids sent (a count of distinct ids could not fail:
    // the primary key makes it equal to the row count).
    let stored: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM events").fetch_all(&env.pool).await.expect("ids").into_iter().collect();
    assert_eq!(stored.len(), sent.len());
    assert!(stored == sent, "the table's ids differ from the ids sent");
    for (i, s) in sinkers.iter_mut().enumerate() {
        if i != 1 {
            assert!(s.is_running(), "sinker {i} still running; log:\n{}", s.logs());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_what_is_buffered_and_exits_zero() {
    let env = TestEnv::new(2).await;
    let values: Vec<Vec<u8>> = (0..50).map(|_| event(Uuid::now_v7(), "term")).collect();
    // A long batch timeout: the records sit in the buffer until shutdown flushes them.
    let mut sinker = env.sinker(&["--batch-timeout", "60s", "--batch-size", "1000"]);
    sinker.wait_ready("/readyz", WAIT).await;
    produce(&env, &values).await;
    crate::helpers::eventually(WAIT, "the sinker holds the records", || async {
        let lag = sinker.metric("sinker_consumer_lag", &[]).await?;
        (lag == 50.0).then_some(())
    })
    .await;
    assert_eq!(env.row_count().await, 0);
    sinker.signal("TERM");
    let status = sinker.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", sinker.logs());
    assert_eq!(env.row_count().await, 50);
    env.wait_offsets_at_high_watermarks(WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_loses_nothing_and_kafka_never_runs_ahead() {
    let stack = PrivateStack::start();
    let env = TestEnv::with_stack(3, &stack.brokers(), &stack.admin_database_url()).await;
    let mut sinker = env.sinker(&["--batch-size", "20"]);
    let first: Vec<Vec<u8>> = (0..100).map(|_| event(Uuid::now_v7(), "before")).collect();
    produce(&env, &first).await;
    env.wait_rows(100, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    let stored_before: HashMap<i32, i64> = env.sink_offsets().await;

    stack.run(&["pg-stop", "--immediate"]);
    let second: Vec<Vec<u8>> = (0..200).map(|_| event(Uuid::now_v7(), "during")).collect();
    produce(&env, &second).await;
    crate::helpers::eventually(WAIT, "the sinker holds the new records and fails to write them", || async {
        let lag = sinker.metric("sinker_consumer_lag", &[]).await?;
        let errors = sinker.metric("sinker_db_errors_total", &[("kind", "connection")]).await?;
        (lag == 200.0 && errors >= 1.0).then_some(())
    })
    .await;
    assert!(sinker.is_running(), "the sinker survives the outage; log:\n{}", sinker.logs());
    let committed_during = env.committed();
    stack.run(&["pg-start"]);

    env.wait_rows(300, Duration::from_secs(90)).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    // Kafka's committed offsets during the outage were exactly what the database had before
    // it (read before PostgreSQL stopped: the final offsets are the high watermarks, which
    // any commit would be under).
    let committed_during: HashMap<i32, i64> = committed_during.into_iter().filter(|(_, o)| *o > 0).collect();
    assert_eq!(committed_during, stored_before, "kafka's committed offsets moved during the outage");
    assert!(sinker.is_running());
    assert!(sinker.metric("sinker_db_errors_total", &[("kind", "connection")]).await.unwrap_or(0.0) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_password_never_reaches_the_logs() {
    let env = TestEnv::new(1).await;
    let role = format!("r_{}", env.name.to_lowercase());
    let password = format!("Pw-{}-Secret", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        .execute(&env.pool)
        .await
        .expect("create role");
    let database = env.database_url.rsplit('/').next().expect("db name").to_owned();
    env.migrate();
    for grant in [
        format!("GRANT ALL ON DATABASE {database} TO {role}"),
        format!("GRANT ALL ON SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(&grant).execute(&env.pool).await.expect("grant");
    }
    let url = env.database_url.replacen("sluice:sluice@", &format!("{role}:{password}@"), 1);
    assert!(url.contains(&password));

    // A working run, with debug logs.
    let mut sinker = env.sinker_with_env(&["--database-url", &url], &[("RUST_LOG", "debug")]);
    sinker.wait_ready("/readyz", WAIT).await;
    produce(&env, &[event(Uuid::now_v7(), "secret")]).await;
    env.wait_rows(1, WAIT).await;
    sinker.signal("TERM");
    sinker.wait_exit(WAIT).await;
    let logs = sinker.logs();
    assert!(logs.contains(&role), "the logs do show the connection's user");
    assert!(!logs.contains(&password), "the password reached the logs");

    // A failing run: a wrong password and a bad URL are reported without the secret.
    let wrong = url.replace(&password, "Wrong-Secret-123");
    let mut failing = env.sinker_with_env(&["--database-url", &wrong], &[("RUST_LOG", "debug")]);
    crate::helpers::eventually(WAIT, "the refused login is logged", || async {
        failing.logs().contains("password authentication failed").then_some(())
    })
    .await;
    failing.kill9();
    assert!(!failing.logs().contains("Wrong-Secret-123"));
    let mut bad = env.sinker_with_env(&["--database-url", "postgres://u:Bad-Secret-456@host:notaport/db"], &[]);
    bad.wait_exit(WAIT).await;
    assert!(!bad.logs().contains("Bad-Secret-456"), "{}", bad.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_keys_and_unexpected_headers_do_not_stop_anything() {
    use rdkafka::{
        message::{Header, OwnedHeaders},
        producer::FutureRecord,
    };
    let env = TestEnv::new(1).await;
    let producer = env.producer();
    let big_key = "k".repeat(500_000);
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (i, id) in ids.iter().enumerate() {
        let value = event(*id, "odd");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "x-unexpected", value: Some("\u{1F600} anything".as_bytes()) })
            .insert(Header { key: "sluice-dlq-reason", value: Some("spoofed") })
            .insert(Header { key: "empty", value: None::<&[u8]> });
        let key = if i == 0 { big_key.as_str() } else { "small" };
        producer
            .send(FutureRecord::to(&env.topic).key(key).payload(&value).headers(headers), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let _sinker = env.sinker(&[]);
    env.wait_rows(3, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    let keys: Vec<Option<String>> =
        sqlx::query_scalar("SELECT key FROM events").fetch_all(&env.pool).await.expect("keys");
    assert!(keys.iter().all(Option::is_none), "the record key is never the table's key");
    assert!(env.dlq_records().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_range_resets_to_the_earliest_offset_and_says_so() {
    use rdkafka::{
        admin::{AdminClient, AdminOptions},
        client::DefaultClientContext,
        ClientConfig, Offset, TopicPartitionList,
    };
    let env = TestEnv::new(1).await;
    let first: Vec<Vec<u8>> = (0..50).map(|_| event(Uuid::now_v7(), "kept")).collect();
    produce(&env, &first).await;
    let mut sinker = env.sinker(&[]);
    env.wait_rows(50, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    sinker.signal("TERM");
    assert!(sinker.wait_exit(WAIT).await.success());

    // 50 more records, of which retention (here: DeleteRecords) takes 30 before any sinker
    // reads them: the stored position 50 now lies below the log start 80.
    let second: Vec<Vec<u8>> = (0..50).map(|_| event(Uuid::now_v7(), "late")).collect();
    produce(&env, &second).await;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &env.brokers).create().expect("admin");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&env.topic, 0, Offset::Offset(80)).expect("offset");
    admin.delete_records(&tpl, &AdminOptions::new()).await.expect("delete records");

    let sinker = env.sinker(&[]);
    env.wait_rows(70, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.row_count().await, 70, "20 late records survived the deletion; nothing else");
    assert_eq!(
        sinker.metric("sinker_rows_inserted_total", &[]).await,
        Some(20.0),
        "the new process wrote the 20 survivors and read nothing already written"
    );
    assert_eq!(sinker.metric("sinker_duplicates_skipped_total", &[]).await, Some(0.0));
    assert!(sinker.metric("sinker_offset_resets_total", &[]).await.unwrap_or(0.0) >= 1.0, "the reset is counted");
    assert!(sinker.logs().contains("auto.offset.reset"), "the reset is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_catches_up_after_a_crash_between_the_commits_of_the_last_batch() {
    let env = TestEnv::new(1).await;
    let values: Vec<Vec<u8>> = (0..100).map(|_| event(Uuid::now_v7(), "last")).collect();
    produce(&env, &values).await;
    // Ten batches of ten: the process dies after the database commit of the tenth, before its
    // Kafka commit. The database has everything; Kafka's copy is behind.
    let mut doomed = env.sinker_with_env(
        &["--batch-size", "10", "--batch-timeout", "5s"],
        &[("SLUICE_FAILPOINT", "sinker.after_db_commit:10")],
    );
    assert!(!doomed.wait_exit(WAIT).await.success());
    assert_eq!(env.row_count().await, 100);
    assert_eq!(env.sink_offsets().await.get(&0), Some(&100));
    let behind = env.committed().get(&0).copied().unwrap_or(0);
    assert!(behind < 100, "the crash left Kafka's copy behind (async commits in flight are lost): {behind}");

    // With nothing left to write, the new owner still brings Kafka's copy up to the database's.
    let _sinker = env.sinker(&["--batch-size", "10"]);
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.row_count().await, 100);
}
