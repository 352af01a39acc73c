//! Slow and stalled clients (issue 10, items 3 and 4): header and body read timeouts, the
//! connection cap, shutdown with a stalled client, and a request deadline that starts once the
//! body has been read.

use std::time::Duration;

use reqwest::{header, Client};
use serde_json::{json, Value};

use crate::{
    helpers::{free_port, Proc, TestEnv},
    raw_http::{connect, post_head, read_answer, send},
};

/// Generous: a loaded 2-core machine; the timeouts under test are a few seconds.
const BOUND: Duration = Duration::from_secs(45);

/// A gateway configured through the environment (`GATEWAY_*`), as a deployment would.
async fn ready_gateway(env: &TestEnv, vars: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![("KAFKA_TOPIC", env.topic.as_str()), ("KAFKA_BROKERS", env.brokers.as_str())];
    all.extend_from_slice(vars);
    let mut gateway = Proc::spawn(&format!("{}-gateway", env.name), "gateway", &["--listen", &listen], &all);
    gateway.port = port;
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    gateway
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[("GATEWAY_HEADER_READ_TIMEOUT", "2s")]).await;
    let mut stalled = connect(gateway.port).await;
    assert!(send(&mut stalled, b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Type: appl").await);
    let answer = read_answer(&mut stalled, BOUND).await;
    // hyper closes the connection (it may say 408 first); it never gets to the handler.
    assert!(matches!(answer.status, None | Some(408)), "{answer:?}");
    assert_eq!(reqwest::get(gateway.url("/healthz")).await.expect("healthz").status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_body_gets_408_and_produces_nothing() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[("GATEWAY_BODY_READ_TIMEOUT", "2s")]).await;
    let body = json!([{"type": "slow"}, {"type": "slow"}]).to_string();
    let mut slow = connect(gateway.port).await;
    assert!(send(&mut slow, post_head(body.len()).as_bytes()).await);
    // A byte now and then: the connection is never idle, but the body never ends in time.
    let trickle = async {
        for byte in body.as_bytes()[..body.len() - 1].iter() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !send(&mut slow, std::slice::from_ref(byte)).await {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle).await.ok();
    let answer = read_answer(&mut slow, BOUND).await;
    assert_eq!(answer.status, Some(408), "{answer:?}");
    assert_eq!(answer.body.as_ref().map(|b| b["error"]["code"].clone()), Some(json!("request_timeout")), "{answer:?}");
    assert_eq!(gateway.metric("gateway_requests_total", &[("status", "408")]).await, Some(1.0));
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0, "a timed-out request produced nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_gone_mid_body_is_a_read_error_not_a_413() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let mut gone = connect(gateway.port).await;
    assert!(send(&mut gone, post_head(1000).as_bytes()).await);
    assert!(send(&mut gone, b"[{\"type\":\"half").await);
    drop(gone);
    crate::helpers::eventually(BOUND, "the broken request is counted as a 400", || async {
        (gateway.metric("gateway_requests_total", &[("status", "400")]).await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(gateway.metric("gateway_requests_total", &[("status", "413")]).await, None);
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_stalled_clients_still_exits_zero() {
    let env = TestEnv::new(1).await;
    // Default timeouts (tens of seconds): the shutdown must not wait for them.
    let mut gateway = ready_gateway(&env, &[]).await;
    let mut stalled = connect(gateway.port).await;
    assert!(send(&mut stalled, b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\n").await);
    let mut idle = connect(gateway.port).await;
    let request = json!({"type": "before-shutdown"}).to_string();
    assert!(send(&mut idle, format!("{}{request}", post_head(request.len())).as_bytes()).await);
    assert_eq!(read_answer(&mut idle, BOUND).await.status, Some(202));
    let mut silent = connect(gateway.port).await;
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    for conn in [&mut stalled, &mut idle, &mut silent] {
        assert_eq!(read_answer(conn, Duration::from_secs(5)).await.status, None, "closed by the shutdown");
    }
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let env = TestEnv::new(1).await;
    let gateway =
        ready_gateway(&env, &[("GATEWAY_MAX_CONNECTIONS", "2"), ("GATEWAY_HEADER_READ_TIMEOUT", "60s")]).await;
    // Wait until both slots are taken by idle connections (the readiness probe's may linger).
    let mut held = vec![connect(gateway.port).await, connect(gateway.port).await];
    let url = gateway.url("/healthz");
    let waiting = tokio::spawn(async move { Client::new().get(url).send().await.map(|r| r.status().as_u16()) });
    let mut waiting = std::pin::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut waiting).await.is_err(),
        "a third connection was served while two were open"
    );
    held.pop();
    let status = tokio::time::timeout(BOUND, waiting).await.expect("served once a slot is free").expect("join");
    assert_eq!(status.expect("get"), 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_within_the_body_timeout_is_not_cut_short() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(
        &env,
        &[("GATEWAY_REQUEST_TIMEOUT", "2s"), ("GATEWAY_PRODUCE_TIMEOUT", "1s"), ("GATEWAY_BODY_READ_TIMEOUT", "30s")],
    )
    .await;
    let id = uuid::Uuid::now_v7();
    let body = json!({"id": id, "type": "slow-upload"}).to_string();
    let mut conn = connect(gateway.port).await;
    assert!(send(&mut conn, post_head(body.len()).as_bytes()).await);
    // The upload takes longer than --request-timeout (four pieces, one a second).
    for piece in body.as_bytes().chunks(body.len().div_ceil(4)) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(send(&mut conn, piece).await);
    }
    let answer = read_answer(&mut conn, BOUND).await;
    assert_eq!(answer.status, Some(202), "{answer:?}");
    assert_eq!(answer.body.expect("body")["ids"], json!([id]));
    let records = env.topic_records();
    assert_eq!(records.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_never_handed_to_the_producer_after_the_deadline() {
    let env = TestEnv::new(1).await;
    // A deadline far shorter than it takes to parse, validate and encode ~9 MiB of events in
    // a debug build (librdkafka wants message.timeout.ms above linger.ms, 5 ms).
    let gateway =
        ready_gateway(&env, &[("GATEWAY_REQUEST_TIMEOUT", "20ms"), ("GATEWAY_PRODUCE_TIMEOUT", "10ms")]).await;
    let batch: Vec<Value> =
        (0..1000).map(|i| json!({"type": "late", "data": {"n": i, "pad": "x".repeat(9000)}})).collect();
    let r = Client::new()
        .post(gateway.url("/v1/events"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&batch).expect("json"))
        .send()
        .await
        .expect("post");
    assert!(r.headers().get(header::RETRY_AFTER).is_some());
    let status = r.status().as_u16();
    let error: Value = r.json().await.expect("json");
    assert_eq!((status, error["error"]["code"].as_str()), (503, Some("deadline_exceeded")), "{error}");
    // Nothing was handed to the producer: flush anything it might hold by stopping it cleanly.
    let mut gateway = gateway;
    gateway.signal("TERM");
    assert!(gateway.wait_exit(BOUND).await.success());
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0, "a 503 deadline_exceeded produced nothing");
}
