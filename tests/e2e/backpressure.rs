//! Lag as the signal that closes the loop: the gateway's own lag measurement, 429s while the
//! sinkers are behind, and the sinker's batch size following a struggling database.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use reqwest::{header, Client};
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn lagging_sinkers_throttle_writes_until_they_catch_up() {
    let env = TestEnv::new(3).await;
    let mut gateway = env.gateway(&[
        "--sinker-group",
        &env.group,
        "--lag-throttle",
        "100",
        "--lag-resume",
        "50",
        "--lag-interval",
        "200ms",
    ]);
    gateway.wait_ready("/readyz", WAIT).await;
    let client = Client::new();
    let mut accepted: HashSet<String> = HashSet::new();

    // No sinker runs: lag grows with every accepted event until the gateway refuses.
    let start = Instant::now();
    let (retry_after, error) = loop {
        assert!(start.elapsed() < WAIT, "never throttled; accepted {}", accepted.len());
        let batch: Vec<Value> = (0..20).map(|_| json!({"type": "burst"})).collect();
        let r = client.post(gateway.url("/v1/events")).json(&batch).send().await.expect("post");
        match r.status().as_u16() {
            202 => {
                let body: Value = r.json().await.expect("json");
                accepted
                    .extend(body["ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_owned()));
            }
            429 => {
                let retry: u64 = r.headers()[header::RETRY_AFTER].to_str().expect("ascii").parse().expect("seconds");
                let body: Value = r.json().await.expect("json");
                break (retry, body["error"].clone());
            }
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(accepted.len() >= 100, "throttled only once lag reached the threshold: {} accepted", accepted.len());
    assert_eq!(error["code"], "throttled");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(gateway.metric("gateway_backpressure_active", &[]).await, Some(1.0));
    assert!(gateway.metric("gateway_throttled_requests_total", &[("reason", "lag")]).await.unwrap_or(0.0) >= 1.0);
    // Health and metrics are never throttled.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(reqwest::get(gateway.url(path)).await.expect("get").status(), 200, "{path}");
    }

    // Sinkers start: lag drains and writes are accepted again.
    let _sinker = env.sinker(&[]);
    let id = eventually(WAIT, "writes accepted again", || async {
        let r = client.post(gateway.url("/v1/events")).json(&json!({"type": "after"})).send().await.ok()?;
        if r.status() == 202 {
            let body: Value = r.json().await.ok()?;
            return Some(body["ids"][0].as_str()?.to_owned());
        }
        None
    })
    .await;
    accepted.insert(id);
    env.wait_rows(accepted.len() as i64, WAIT).await;
    let ids: HashSet<String> = sqlx::query_scalar::<_, String>("SELECT id::text FROM events")
        .fetch_all(&env.pool)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    assert_eq!(ids, accepted, "every accepted event was written, nothing else");
    assert_eq!(gateway.metric("gateway_backpressure_active", &[]).await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout, reason = "a measurement for the test output (cargo test -- --nocapture)")]
async fn the_gateway_measures_lag_exactly_over_many_partitions() {
    let env = TestEnv::new(128).await;
    let mut gateway = env.gateway(&["--sinker-group", &env.group, "--lag-interval", "200ms"]);
    gateway.wait_ready("/readyz", WAIT).await;
    let values: Vec<String> = (0..137).map(|_| json!({"id": Uuid::now_v7(), "type": "lag"}).to_string()).collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("key-{i}")).collect();
    let records: Vec<(Option<&str>, Option<&[u8]>)> =
        keys.iter().zip(&values).map(|(k, v)| (Some(k.as_str()), Some(v.as_bytes()))).collect();
    env.produce_raw(&records).await;

    eventually(WAIT, "gateway_consumer_lag = 137", || async {
        (gateway.metric("gateway_consumer_lag", &[]).await? == 137.0).then_some(())
    })
    .await;
    let per_partition = gateway.metric("gateway_consumer_lag_partition", &[]).await;
    assert_eq!(per_partition, Some(137.0), "per-partition lag sums to the total");

    let _sinker = env.sinker(&[]);
    env.wait_rows(137, WAIT).await;
    eventually(WAIT, "gateway_consumer_lag = 0", || async {
        (gateway.metric("gateway_consumer_lag", &[]).await? == 0.0).then_some(())
    })
    .await;

    let sum = gateway.metric("gateway_lag_measure_seconds_sum", &[]).await.expect("sum");
    let count = gateway.metric("gateway_lag_measure_seconds_count", &[]).await.expect("count");
    println!(
        "lag measurement over 128 partitions: {:.1} ms on average over {count} measurements",
        1000.0 * sum / count
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_table_shrinks_batches_which_grow_back_and_nothing_is_lost() {
    let env = TestEnv::new(2).await;
    env.migrate();
    // The latency goal is generous so that ordinary commits on a loaded 2-core machine count
    // as fast; the lock is what must shrink the target (lock timeouts are contention).
    let sinker = env.sinker(&[
        "--batch-size",
        "200",
        "--batch-min-size",
        "5",
        "--batch-grow-step",
        "20",
        "--db-lock-timeout",
        "300ms",
        "--batch-target-latency",
        "2s",
    ]);
    let target = || async { sinker.metric("sinker_batch_target_rows", &[]).await };
    eventually(WAIT, "the target starts at --batch-size", || async { (target().await? == 200.0).then_some(()) }).await;

    // Records keep flowing until the target has grown back (growth needs commits), bounded
    // in count so a sinker that never recovers fails the test instead of hanging it.
    let recovered = AtomicBool::new(false);
    let produced = AtomicUsize::new(0);
    let stream = async {
        for chunk in 0..1200 {
            if recovered.load(Ordering::SeqCst) {
                break;
            }
            let values: Vec<String> =
                (0..50).map(|_| json!({"id": Uuid::now_v7(), "type": "stream"}).to_string()).collect();
            let keys: Vec<String> = (0..values.len()).map(|i| format!("{chunk}-{i}")).collect();
            let records: Vec<(Option<&str>, Option<&[u8]>)> =
                keys.iter().zip(&values).map(|(k, v)| (Some(k.as_str()), Some(v.as_bytes()))).collect();
            env.produce_raw(&records).await;
            produced.fetch_add(records.len(), Ordering::SeqCst);
            // Pacing only: what the test waits for is polled below.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let squeeze = async {
        env.wait_rows_at_least(1, WAIT).await;
        let mut conn = sqlx::PgConnection::connect(&env.database_url).await.expect("connect");
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.expect("lock");
        let lowest = eventually(WAIT, "the batch target falls while the table is locked", || async {
            let t = target().await?;
            (t < 50.0).then_some(t)
        })
        .await;
        tx.rollback().await.expect("release the lock");
        eventually(Duration::from_secs(120), "the batch target grows back to --batch-size", || async {
            (target().await? == 200.0).then_some(())
        })
        .await;
        recovered.store(true, Ordering::SeqCst);
        lowest
    };
    let ((), lowest) = tokio::join!(stream, squeeze);
    assert!(lowest < 50.0);
    assert!(recovered.load(Ordering::SeqCst));
    env.wait_rows(produced.load(Ordering::SeqCst) as i64, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert!(sinker.metric("sinker_db_errors_total", &[("kind", "contention")]).await.unwrap_or(0.0) >= 1.0);
}
