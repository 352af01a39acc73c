//! The sinker's flow control against a real broker and a real PostgreSQL: paused partitions
//! across rebalances, and the process-wide byte budget.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::{producer::FutureRecord, Message};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

/// Produces `count` valid events straight to the topic, with `pad` bytes of data each, spread
/// over the partitions by key, many in flight at once.
async fn produce_events(env: &TestEnv, count: usize, pad: usize) {
    let producer = env.producer();
    let values: Vec<(String, String)> = (0..count)
        .map(|i| {
            (
                format!("k{i}"),
                json!({"id": Uuid::now_v7(), "type": "flow", "data": {"pad": "x".repeat(pad)}}).to_string(),
            )
        })
        .collect();
    for chunk in values.chunks(2000) {
        let sends = chunk
            .iter()
            .map(|(k, v)| producer.send(FutureRecord::to(&env.topic).key(k).payload(v), Duration::from_secs(30)));
        for result in join_all(sends).await {
            result.map_err(|(e, _)| e).expect("produce");
        }
    }
}

/// Locks the events table until the returned connection's transaction is rolled back.
async fn lock_events(env: &TestEnv) -> PgConnection {
    let mut conn = PgConnection::connect(&env.database_url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut conn).await.expect("begin");
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut conn).await.expect("lock");
    conn
}

async fn unlock(mut conn: PgConnection) {
    sqlx::query("ROLLBACK").execute(&mut conn).await.expect("release the lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_partition_revoked_and_assigned_back_resumes() {
    let env = TestEnv::new(4).await;
    env.migrate();
    let lock = lock_events(&env).await;
    let total = 8000;
    produce_events(&env, total, 0).await;

    let flags =
        ["--batch-size", "50", "--max-buffered-records", "100", "--drain-timeout", "2s", "--db-lock-timeout", "1s"];
    let first = env.sinker(&flags);
    eventually(WAIT, "every partition of the first sinker paused", || async {
        (first.metric("sinker_partitions_paused", &[]).await? == 4.0).then_some(())
    })
    .await;

    // A second sinker joins (taking some of the paused partitions) and leaves: they come back.
    let mut second = env.sinker(&flags);
    eventually(WAIT, "the second sinker owns partitions", || async {
        (second.metric("sinker_partitions_assigned", &[]).await? >= 1.0).then_some(())
    })
    .await;
    eventually(WAIT, "the first sinker gave partitions away", || async {
        (first.metric("sinker_partitions_assigned", &[]).await? < 4.0).then_some(())
    })
    .await;
    second.signal("TERM");
    assert!(second.wait_exit(WAIT).await.success(), "log:\n{}", second.logs());
    eventually(WAIT, "the first sinker owns every partition again", || async {
        (first.metric("sinker_partitions_assigned", &[]).await? == 4.0).then_some(())
    })
    .await;

    unlock(lock).await;
    env.wait_rows(total as i64, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(first.metric("sinker_partitions_paused", &[]).await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_byte_budget_bounds_what_the_sinker_holds_and_nothing_is_lost() {
    let env = TestEnv::new(4).await;
    env.migrate();
    let lock = lock_events(&env).await;
    let total = 3000;
    produce_events(&env, total, 1000).await;
    let largest = env
        .topic_records()
        .iter()
        .map(|m| m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len))
        .max()
        .expect("records");
    let budget: usize = 256 * 1024;

    let budget_flag = budget.to_string();
    let sinker = env.sinker(&[
        "--max-buffered-bytes",
        &budget_flag,
        "--batch-bytes",
        "65536",
        "--max-event-bytes",
        "65536",
        "--db-lock-timeout",
        "1s",
    ]);
    // The table is locked: the sinker reads until the budget is used up, then pauses.
    let held = || async { sinker.metric("sinker_buffered_bytes", &[]).await.map(|v| v as usize) };
    let mut highest = 0;
    eventually(WAIT, "the budget used up and partitions paused", || async {
        let bytes = held().await?;
        let paused = sinker.metric("sinker_partitions_paused", &[]).await?;
        (bytes >= budget && paused >= 1.0).then_some(())
    })
    .await;
    // Sample the gauge for a while: the total never exceeds the budget by more than a record.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if let Some(bytes) = held().await {
            highest = highest.max(bytes);
            assert!(bytes <= budget + largest, "{bytes} bytes held, over the budget {budget} + one record {largest}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(highest >= budget, "the budget was reached: {highest}");

    unlock(lock).await;
    env.wait_rows(total as i64, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    eventually(WAIT, "every held byte released", || async { (held().await? == 0).then_some(()) }).await;
    assert_eq!(sinker.metric("sinker_partitions_paused", &[]).await, Some(0.0));
    assert_eq!(
        sinker.metric("sinker_duplicates_skipped_total", &[]).await,
        Some(0.0),
        "records sought back were not written twice"
    );
    // A seek back for the budget is not mistaken for a log that started over (recreated topic).
    assert_eq!(
        sinker.metric("sinker_offset_resets_total", &[]).await.unwrap_or(0.0),
        0.0,
        "budget seeks are not offset resets"
    );
    assert_eq!(sinker.metric("sinker_kafka_ahead_of_database_total", &[]).await.unwrap_or(0.0), 0.0);
}

/// Partitions paused and resumed over and over by a small `--max-buffered-records`, into
/// a table without a key: exactly once rests on the sinker receiving each record once (or
/// recognising a record received again). A record delivered again after a resume, taken for a
/// log that started over, would be written twice here.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_paused_and_resumed_over_and_over_write_a_keyless_table_exactly_once() {
    let env = TestEnv::new(4).await;
    env.migrate();
    sqlx::query("CREATE TABLE pause_log (event_id uuid NOT NULL, pad text NOT NULL)")
        .execute(&env.pool)
        .await
        .expect("a table without a key");
    let routes = std::env::temp_dir().join(format!("{}-pause-log.toml", env.name));
    std::fs::write(
        &routes,
        "[[route]]\nname = \"log\"\ntypes = [\"*\"]\ntable = \"pause_log\"\n\n[route.columns]\nevent_id = \"id\"\npad = \"data.pad\"\n",
    )
    .expect("write the routes file");
    let total = 40_000;
    produce_events(&env, total, 16).await;

    let routes = routes.display().to_string();
    let sinker = env.sinker(&["--routes", &routes, "--batch-size", "10", "--max-buffered-records", "20"]);
    env.wait_offsets_at_high_watermarks(WAIT * 2).await;

    let (rows, ids): (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM pause_log")
        .fetch_one(&env.pool)
        .await
        .expect("count the log");
    let pauses = sinker.logs().matches("partition paused: its buffer is full").count();
    assert_eq!((rows, ids), (total as i64, total as i64), "each record once after {pauses} pauses");
    assert!(pauses >= 20, "the partitions were paused often: {pauses}");
    let again = sinker.metric("sinker_records_redelivered_total", &[]).await.expect("the metric is exported");
    eprintln!("{pauses} pauses, {again} records delivered again and dropped");
    let restarts = sinker.metric("sinker_offset_resets_total", &[("reason", "beyond_log_end")]).await;
    assert_eq!(restarts, Some(0.0), "no log restart was seen:\n{}", sinker.logs());
}
