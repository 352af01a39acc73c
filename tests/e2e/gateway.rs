//! The gateway's HTTP API against a real broker: every success and error path, and proof
//! (by reading the topic) that a refused request produced nothing.

use std::{io::Write, time::Duration};

use flate2::{write::GzEncoder, Compression};
use rdkafka::Message;
use reqwest::{header, Client, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Proc, TestEnv};

async fn ready_gateway(env: &TestEnv, extra: &[&str]) -> Proc {
    let mut gateway = env.gateway(extra);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    gateway
}

async fn post(gateway: &Proc, content_type: &str, body: impl Into<reqwest::Body>) -> Response {
    Client::new()
        .post(gateway.url("/v1/events"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("post")
}

async fn error_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    (status, body["error"].clone())
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_events_are_on_the_topic_as_documented() {
    let env = TestEnv::new(3).await;
    let gateway = ready_gateway(&env, &[]).await;
    let client_id = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";

    // One object with every field.
    let r = post(
        &gateway,
        "application/json",
        json!({"id": client_id, "type": "signup", "key": "u1", "ts": "2026-01-02T03:04:05Z", "data": {"plan": "pro"}})
            .to_string(),
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"accepted": 1, "ids": [client_id]}));

    // An array, server-assigned ids.
    let r = post(&gateway, "application/json", json!([{"type": "a"}, {"type": "b"}]).to_string()).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["accepted"], 2);
    let ids: Vec<uuid::Uuid> =
        body["ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("str").parse().expect("uuid")).collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "server ids are UUIDv7: {ids:?}");

    // NDJSON, gzip-compressed.
    let ndjson = b"{\"type\":\"c\"}\n{\"type\":\"d\",\"data\":{\"n\":1}}\n";
    let r = Client::new()
        .post(gateway.url("/v1/events"))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(gzip(ndjson))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.expect("json")["accepted"], 2);

    let records = env.topic_records();
    assert_eq!(records.len(), 5);
    let signup = records.iter().find(|m| m.key() == Some(b"u1".as_slice())).expect("keyed record");
    let value: Value = serde_json::from_slice(signup.payload().expect("value")).expect("json value");
    assert_eq!(value["id"], client_id);
    assert_eq!(value["type"], "signup");
    assert_eq!(value["key"], "u1");
    assert_eq!(value["ts"], "2026-01-02T03:04:05.000000Z");
    assert_eq!(value["data"], json!({"plan": "pro"}));
    assert!(value["received_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    // Without a key, the record key is the id.
    for m in &records {
        let v: Value = serde_json::from_slice(m.payload().expect("value")).expect("json");
        if v.get("key").is_none() {
            assert_eq!(m.key(), Some(v["id"].as_str().expect("id").as_bytes()));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_key_lands_in_one_partition_in_order() {
    let env = TestEnv::new(6).await;
    let gateway = ready_gateway(&env, &[]).await;
    for n in 0..20 {
        let r = post(
            &gateway,
            "application/json",
            json!({"type": "step", "key": "session-42", "data": {"n": n}}).to_string(),
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    let records = env.topic_records();
    assert_eq!(records.len(), 20);
    let partitions: std::collections::HashSet<i32> = records.iter().map(|m| m.partition()).collect();
    assert_eq!(partitions.len(), 1, "same key, same partition");
    let mut in_order: Vec<_> = records.iter().collect();
    in_order.sort_by_key(|m| m.offset());
    let ns: Vec<i64> = in_order
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(m.payload().expect("value")).expect("json")["data"]["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_writes_nothing() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--max-batch-events", "5", "--max-body-bytes", "1048576"]).await;
    let deep = format!("{{\"type\":\"t\",\"data\":{}1{}}}", "{\"a\":".repeat(200), "}".repeat(200));
    let big_event = json!({"type": "t", "data": {"blob": "x".repeat(1_000_001)}}).to_string();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed json", "application/json", b"{\"type\": }".to_vec(), 400, "invalid_json"),
        ("truncated body", "application/json", b"[{\"type\":\"a\"},{\"ty".to_vec(), 400, "invalid_json"),
        ("invalid utf-8", "application/json", b"{\"type\":\"\xff\xfe\"}".to_vec(), 400, "invalid_json"),
        ("number for a string", "application/json", br#"{"type": 42}"#.to_vec(), 400, "invalid_event"),
        ("missing type", "application/json", br#"{"data": {}}"#.to_vec(), 400, "invalid_event"),
        ("invalid uuid", "application/json", br#"{"id": "not-a-uuid", "type": "t"}"#.to_vec(), 400, "invalid_event"),
        ("unknown field", "application/json", br#"{"type": "t", "colour": "red"}"#.to_vec(), 400, "invalid_event"),
        ("data not an object", "application/json", br#"{"type": "t", "data": "x"}"#.to_vec(), 400, "invalid_event"),
        ("deeply nested data", "application/json", deep.into_bytes(), 400, "invalid_json"),
        ("empty array", "application/json", b"[]".to_vec(), 400, "empty_batch"),
        (
            "over the batch limit",
            "application/json",
            json!([{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}])
                .to_string()
                .into_bytes(),
            413,
            "batch_too_large",
        ),
        (
            "ndjson with one bad line",
            "application/x-ndjson",
            b"{\"type\":\"a\"}\n{\"type\":\n{\"type\":\"c\"}\n".to_vec(),
            400,
            "invalid_json",
        ),
        ("wrong content type", "text/csv", br#"{"type": "t"}"#.to_vec(), 415, "unsupported_media_type"),
        ("body over the limit", "application/json", vec![b' '; 2 * 1048576], 413, "body_too_large"),
        ("event over the limit", "application/json", big_event.into_bytes(), 413, "event_too_large"),
    ];
    for (what, content_type, body, status, code) in cases {
        let (got_status, error) = error_of(post(&gateway, content_type, body).await).await;
        assert_eq!((got_status.as_u16(), error["code"].as_str()), (status, Some(code)), "{what}: {error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && m.chars().next().is_some_and(|c| !c.is_uppercase())),
            "{what}: message is lowercase: {error}"
        );
    }

    // Where there is an offending event, the error says which.
    let (_, error) =
        error_of(post(&gateway, "application/json", json!([{"type":"a"},{"type":"b"},{"type": 3}]).to_string()).await)
            .await;
    assert_eq!(error["index"], 2);
    assert_eq!(error["message"], "event 2: `type` must be a string, got a number");
    let (_, error) =
        error_of(post(&gateway, "application/x-ndjson", "{\"type\":\"a\"}\n{\"type\":\"b\",\"id\":\"x\"}\n").await)
            .await;
    assert_eq!(error["line"], 2);

    // A missing content type.
    let r = Client::new().post(gateway.url("/v1/events")).body("{}").send().await.expect("post");
    assert_eq!(r.status(), 415);

    // A gzip bomb: 64 MiB of zeros in about 64 KiB.
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    let r = Client::new()
        .post(gateway.url("/v1/events"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(bomb)
        .send()
        .await
        .expect("post");
    let (status, error) = error_of(r).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (413, Some("body_too_large")));

    // A 100 MB body against the default-sized gateway. Its Content-Length is over the limit, so
    // the 413 comes before the body is read; the gateway then discards what the client still
    // sends (within --body-read-timeout), so the client reads the answer instead of a reset.
    let default_gateway = ready_gateway(&env, &[]).await;
    let (status, error) =
        error_of(post(&default_gateway, "application/json", vec![b'['; 100 * 1024 * 1024]).await).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (413, Some("body_too_large")));

    // An event over --max-event-bytes (with a body limit that lets it through).
    let small_events = ready_gateway(&env, &["--max-event-bytes", "1000"]).await;
    let (status, error) = error_of(
        post(
            &small_events,
            "application/json",
            json!([{"type":"ok"},{"type": "t", "data": {"blob": "x".repeat(2000)}}]).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!((status.as_u16(), error["code"].as_str(), &error["index"]), (413, Some("event_too_large"), &json!(1)));

    // Still healthy, and nothing reached the topic.
    for g in [&gateway, &default_gateway, &small_events] {
        assert_eq!(reqwest::get(g.url("/healthz")).await.expect("healthz").status(), 200);
    }
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0, "refused requests produced nothing");
    assert_eq!(post(&gateway, "application/json", r#"{"type":"after"}"#).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_guard_writes_only() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--api-keys", "alpha-key-123,beta-key-456"]).await;
    let send = |auth: Option<&'static str>| {
        let mut req = Client::new()
            .post(gateway.url("/v1/events"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(r#"{"type":"t"}"#);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.send()
    };
    for auth in [None, Some("Bearer wrong"), Some("alpha-key-123"), Some("Basic alpha-key-123")] {
        let (status, error) = error_of(send(auth).await.expect("post")).await;
        assert_eq!((status.as_u16(), error["code"].as_str()), (401, Some("unauthorized")), "{auth:?}");
    }
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0);
    assert_eq!(send(Some("Bearer beta-key-456")).await.expect("post").status(), 202);

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let r = reqwest::get(gateway.url(path)).await.expect("get");
        assert_eq!(r.status(), 200, "{path} is open");
        let text = r.text().await.expect("text");
        assert!(!text.contains("alpha-key-123") && !text.contains("beta-key-456"), "{path} reveals a key");
    }
    assert!(!gateway.logs().contains("alpha-key-123"), "a key reached the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_metrics_and_unknown_routes() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let spec: Value = reqwest::get(gateway.url("/openapi.json")).await.expect("get").json().await.expect("json");
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in ["/v1/events", "/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(spec["paths"].get(path).is_some(), "openapi describes {path}");
    }
    let responses = &spec["paths"]["/v1/events"]["post"]["responses"];
    for status in ["202", "400", "401", "413", "415", "429", "503"] {
        assert!(responses.get(status).is_some(), "openapi describes {status}");
    }

    assert_eq!(post(&gateway, "application/json", r#"{"type":"t"}"#).await.status(), 202);
    assert_eq!(post(&gateway, "application/json", r#"{"type":1}"#).await.status(), 400);
    let text = reqwest::get(gateway.url("/metrics")).await.expect("get").text().await.expect("text");
    for name in [
        "gateway_events_accepted_total 1",
        "gateway_requests_total{status=\"202\"} 1",
        "gateway_requests_total{status=\"400\"} 1",
        "gateway_request_duration_seconds_bucket",
        "gateway_producer_queue_messages",
        "gateway_delivery_failures_total",
    ] {
        assert!(text.contains(name), "metrics have {name}:\n{text}");
    }
    let r = reqwest::get(gateway.url("/nope")).await.expect("get");
    let (status, error) = error_of(r).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_and_exits_zero() {
    let env = TestEnv::new(1).await;
    let mut gateway = ready_gateway(&env, &[]).await;
    assert_eq!(post(&gateway, "application/json", r#"{"type":"t"}"#).await.status(), 202);
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_is_not_ready_and_writes_answer_503() {
    let env = TestEnv::new(1).await;
    let mut gateway = env.gateway(&["--topic", "no_such_topic_here"]);
    gateway.wait_ready("/healthz", Duration::from_secs(30)).await;
    crate::helpers::eventually(Duration::from_secs(30), "readyz reports the missing topic", || async {
        let r = reqwest::get(gateway.url("/readyz")).await.ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let r = post(&gateway, "application/json", r#"{"type":"t"}"#).await;
    assert!(r.headers().get(header::RETRY_AFTER).is_some());
    let (status, error) = error_of(r).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (503, Some("kafka_unavailable")));
    assert!(started.elapsed() < Duration::from_secs(2), "answered quickly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_broker_gets_503_and_the_gateway_recovers_by_itself() {
    let stack = crate::helpers::PrivateStack::start();
    let env = TestEnv::with_stack(2, &stack.brokers(), &stack.admin_database_url()).await;
    let gateway =
        ready_gateway(&env, &["--request-timeout", "6s", "--produce-timeout", "3s", "--lag-stale-after", "2s"]).await;
    assert_eq!(post(&gateway, "application/json", r#"{"type":"before"}"#).await.status(), 202);

    stack.run(&["kafka-stop"]);
    let started = std::time::Instant::now();
    let r = post(&gateway, "application/json", json!([{"type": "during"}, {"type": "during"}]).to_string()).await;
    let elapsed = started.elapsed();
    assert!(r.headers().get(header::RETRY_AFTER).is_some());
    let (status, error) = error_of(r).await;
    assert_eq!(status.as_u16(), 503, "{error}");
    assert!(["kafka_unavailable", "not_confirmed"].contains(&error["code"].as_str().unwrap_or("")), "{error}");
    assert!(elapsed < Duration::from_secs(7), "no hang: answered in {elapsed:?}");
    crate::helpers::eventually(Duration::from_secs(30), "readyz fails while the broker is down", || async {
        let r = reqwest::get(gateway.url("/readyz")).await.ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    let r = post(&gateway, "application/json", r#"{"type":"during"}"#).await;
    assert_eq!(r.status(), 503);
    // A prolonged unknown lag shows in the metrics, and /readyz explains it.
    crate::helpers::eventually(Duration::from_secs(30), "lag reported unknown", || async {
        let known = gateway.metric("gateway_consumer_lag_known", &[]).await?;
        let body: Value = reqwest::get(gateway.url("/readyz")).await.ok()?.json().await.ok()?;
        let explained = body["lag"].as_str().is_some_and(|s| s.contains("unknown"));
        (known == 0.0 && explained).then_some(())
    })
    .await;

    stack.run(&["kafka-start"]);
    crate::helpers::eventually(Duration::from_secs(60), "writes succeed again without a restart", || async {
        let r = post(&gateway, "application/json", r#"{"type":"after"}"#).await;
        (r.status() == 202).then_some(())
    })
    .await;
    assert_eq!(reqwest::get(gateway.url("/readyz")).await.expect("readyz").status(), 200);
    let types: Vec<String> = env
        .topic_records()
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(m.payload().expect("value")).expect("json")["type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    assert!(types.contains(&"before".to_owned()) && types.contains(&"after".to_owned()), "{types:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_key_rate_limit_holds_one_client_back_but_not_another() {
    let env = TestEnv::new(1).await;
    let gateway =
        ready_gateway(&env, &["--api-keys", "noisy-key,quiet-key", "--rate-limit", "5", "--rate-limit-burst", "10"])
            .await;
    let send = |key: &'static str, events: usize| {
        let batch: Vec<Value> = (0..events).map(|_| json!({"type": "rl"})).collect();
        Client::new()
            .post(gateway.url("/v1/events"))
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .json(&batch)
            .send()
    };
    assert_eq!(send("noisy-key", 10).await.expect("post").status(), 202, "a full bucket takes the burst");
    let r = send("noisy-key", 5).await.expect("post");
    let retry: u64 = r.headers()[header::RETRY_AFTER].to_str().expect("ascii").parse().expect("seconds");
    let (status, error) = error_of(r).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (429, Some("rate_limited")));
    assert!((1..=2).contains(&retry), "5 events at 5/s: about a second, got {retry}");
    assert_eq!(send("quiet-key", 10).await.expect("post").status(), 202, "another key has its own budget");
    assert_eq!(gateway.metric("gateway_throttled_requests_total", &[("reason", "rate_limit")]).await, Some(1.0));
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 20, "the refused request produced nothing");
}
