//! No task of the sinker dies quietly: a partition worker that panics, or a metrics server that
//! cannot serve, takes the process down with an error (the group then moves the partitions to
//! a healthy sinker), instead of leaving a process that looks alive and writes nothing.

use std::{net::TcpListener, time::Duration};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Proc, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_partition_worker_ends_the_process_and_nothing_is_lost() {
    let env = TestEnv::new(2).await;
    env.migrate();
    let values: Vec<String> = (0..40).map(|_| json!({"id": Uuid::now_v7(), "type": "p"}).to_string()).collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&str>, Option<&[u8]>)> =
        keys.iter().zip(&values).map(|(k, v)| (Some(k.as_str()), Some(v.as_bytes()))).collect();
    env.produce_raw(&records).await;

    let mut broken = env.sinker_with_env(&[], &[("SLUICE_FAILPOINT", "sinker.panic_in_worker")]);
    let status = broken.wait_exit(WAIT).await;
    assert!(!status.success(), "a sinker with a dead worker must not stay up; log:\n{}", broken.logs());
    let logs = broken.logs();
    assert!(
        logs.contains("stopped unexpectedly (panicked: failpoint sinker.panic_in_worker reached)"),
        "the error says which worker died and how; log:\n{logs}"
    );

    // The next sinker writes everything, once.
    let _sinker = env.sinker(&[]);
    env.wait_rows(40, WAIT).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sinker_whose_metrics_port_is_taken_exits_with_an_error() {
    let env = TestEnv::new(1).await;
    env.migrate();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let group = env.group.clone();
    let mut sinker = Proc::spawn(
        &format!("{}-sinker", env.name),
        "sinker",
        &["--metrics-listen", &listen],
        &[
            ("DATABASE_URL", env.database_url.as_str()),
            ("KAFKA_BROKERS", env.brokers.as_str()),
            ("KAFKA_TOPIC", env.topic.as_str()),
            ("SINKER_GROUP", group.as_str()),
        ],
    );
    let status = sinker.wait_exit(WAIT).await;
    assert!(!status.success(), "a sinker without its metrics server must not stay up; log:\n{}", sinker.logs());
    let logs = sinker.logs();
    assert!(
        logs.contains(&format!("the metrics server on {listen} failed")),
        "the error names the address; log:\n{logs}"
    );
}
