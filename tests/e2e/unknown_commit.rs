//! A COMMIT that reaches PostgreSQL but whose answer never comes back (the connection breaks
//! in between): the sinker cannot know the outcome. The retry must neither lose nor duplicate
//! the batch, must not take its own earlier commit for another owner's write, and the log must
//! say what happened in words an operator understands.

use std::{net::SocketAddr, time::Duration};

use chaos::proxy::Proxy;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

fn events(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| json!({"id": Uuid::now_v7(), "type": "commit-cut", "data": {"n": 1}}).to_string().into_bytes())
        .collect()
}

async fn produce(env: &TestEnv, values: &[Vec<u8>]) {
    let records: Vec<(Option<&str>, Option<&[u8]>)> = values.iter().map(|v| (Some("k"), Some(v.as_slice()))).collect();
    env.produce_raw(&records).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_answer_is_lost_is_written_once_and_logged_as_such() {
    let env = TestEnv::new(1).await;
    env.migrate();
    // The sinker reaches PostgreSQL through a proxy that can withhold an answer and cut.
    // The url is postgres://user:password@host:port/database.
    let (head, tail) = env.database_url.split_once('@').expect("url with credentials");
    let (host_port, database) = tail.split_once('/').expect("url with a database");
    let pg: SocketAddr = host_port.parse().expect("host:port of the test database");
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("address"), pg).await.expect("proxy");
    // In clear text, so the proxy sees the COMMIT go by.
    let through_proxy = format!("{head}@{}/{database}?sslmode=disable", proxy.listen);
    let sinker = env.sinker(&["--database-url", &through_proxy, "--batch-size", "10", "--batch-timeout", "5s"]);

    produce(&env, &events(10)).await;
    env.wait_rows(10, WAIT).await;

    // The next COMMIT goes through; its answer is held and the connection cut.
    proxy.cut_after(b"COMMIT", Duration::from_millis(300));
    produce(&env, &events(10)).await;
    eventually(WAIT, "the commit of the second batch was cut", || async { (!proxy.cut_after_armed()).then_some(()) })
        .await;
    produce(&env, &events(10)).await;

    env.wait_rows(30, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.row_count().await, 30, "every record once");
    assert_eq!(proxy.cut_connections(), 1, "one connection cut");
    let logs = sinker.logs();
    assert!(logs.contains("outcome is unknown"), "the cut commit is logged as a commit of unknown outcome:\n{logs}");
    assert!(logs.contains("already written"), "the retry says the batch turned out to be written:\n{logs}");
    assert!(!logs.contains("another owner"), "its own commit is not taken for another owner's write:\n{logs}");
    assert_eq!(
        sinker.metric("sinker_offset_conflicts_total", &[]).await,
        Some(0.0),
        "no other owner wrote: no fence conflict"
    );
}
