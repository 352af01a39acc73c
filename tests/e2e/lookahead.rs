//! With `--read-ahead`, the sinker decodes (and encodes) a partition's next batch while the
//! database writes the current one (crates/sinker/src/lookahead.rs), at most one batch ahead, and acts on those
//! records in offset order once the write is done: exact rows, dead letters and offsets, as
//! without it.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::{producer::FutureRecord, Message};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{eventually, header, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn the_next_batch_is_decoded_while_the_current_one_waits_on_the_database() {
    let env = TestEnv::new(1).await;
    env.migrate();
    // Three full batches of 100; the one at offset 150 is not an event.
    let bad_offset = 150;
    let values: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            if i == bad_offset {
                b"{\"type\": \"lookahead\", \"data\": not json".to_vec()
            } else {
                json!({"id": Uuid::now_v7(), "type": "lookahead", "data": {"n": i}}).to_string().into_bytes()
            }
        })
        .collect();
    let total_bytes: usize = values.iter().map(Vec::len).sum();
    let producer = env.producer();
    for result in
        join_all(values.iter().map(|v| {
            producer.send(FutureRecord::<(), _>::to(&env.topic).payload(v).partition(0), Duration::from_secs(30))
        }))
        .await
    {
        result.map_err(|(e, _)| e).expect("produce");
    }

    // The first batch's COPY waits on this lock until it is released.
    let mut lock = PgConnection::connect(&env.database_url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut lock).await.expect("begin");
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut lock).await.expect("lock");

    // Batches close on 100 rows only (no timeout, no shrinking target) so the batches are
    // exactly 0..100, 100..200 and 200..300.
    let sinker = env.sinker(&[
        "--read-ahead",
        "--batch-size",
        "100",
        "--batch-timeout",
        "10min",
        "--batch-target-latency",
        "10min",
        "--db-lock-timeout",
        "10min",
    ]);
    // Every record read from Kafka and handed to the worker (the budget counts them until
    // written); the worker is writing 0..100, and has read and decoded exactly one batch more.
    eventually(WAIT, "all 300 records held by the sinker", || async {
        let held = sinker.metric("sinker_buffered_bytes", &[]).await?;
        (held as usize == total_bytes).then_some(())
    })
    .await;
    eventually(WAIT, "one batch read ahead", || async {
        let ahead = sinker.metric("sinker_records_read_ahead", &[]).await?;
        (ahead == 100.0).then_some(())
    })
    .await;
    // Read through the lock's own session (any other waits on the lock).
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut lock).await.expect("count");
    assert_eq!(rows, 0, "nothing is written while the table is locked");
    assert_eq!(
        sinker.metric("sinker_records_read_ahead", &[]).await,
        Some(100.0),
        "at most one batch is read ahead: records 200..300 stay in the inbox"
    );
    assert_eq!(sinker.metric("sinker_records_decoded_ahead_total", &[]).await, Some(0.0));

    sqlx::query("ROLLBACK").execute(&mut lock).await.expect("release the lock");
    env.wait_rows(299, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.sink_offsets().await.get(&0), Some(&300));
    assert_eq!(env.row_count().await, 299, "every event once, the bad record not");

    let letters = env.dlq_records();
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(letters[0].payload(), Some(values[bad_offset].as_slice()), "the record as it was");
    assert_eq!(header(&letters[0], "sluice-dlq-reason").as_deref(), Some("not_json"));
    assert_eq!(header(&letters[0], "sluice-source-offset").as_deref(), Some("150"));

    // Records 100..200 were decoded during the first write; 200..300 during the second, as far
    // as the worker read them before the database answered.
    let decoded_ahead = sinker.metric("sinker_records_decoded_ahead_total", &[]).await.expect("metric");
    assert!((100.0..=200.0).contains(&decoded_ahead), "{decoded_ahead} records decoded ahead");
    // Records 100..200 were a whole batch ahead: their COPY stream was encoded during the first
    // write too (and the rows above show it held exactly the valid ones).
    let encoded_ahead = sinker.metric("sinker_batches_encoded_ahead_total", &[]).await.expect("metric");
    assert!((1.0..=2.0).contains(&encoded_ahead), "{encoded_ahead} batches encoded ahead");
    assert_eq!(sinker.metric("sinker_records_read_ahead", &[]).await, Some(0.0), "nothing left ahead");
    assert_eq!(sinker.metric("sinker_buffered_bytes", &[]).await, Some(0.0));
    // Each record's row, once: the rows carry the numbers their records were produced with.
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT (data->>'n')::bigint FROM events").fetch_all(&mut lock).await.expect("rows");
    let expected: Vec<i64> = (0..300).filter(|&i| i != bad_offset as i64).collect();
    let mut sorted = numbers;
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
}
