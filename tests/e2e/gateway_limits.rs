//! What a request may cost and what it may hold (issue 10, items 2, 5, 6 and 7): peak memory
//! bounded by the limits, the event size limit agreeing with the producer's, timestamps the
//! sinker can store, and the smaller protocol answers (405, charsets, an over-limit upload).

use std::{io::Write, time::Duration};

use flate2::{write::GzEncoder, Compression};
use rdkafka::Message;
use reqwest::{header, Client, Response, StatusCode};
use serde_json::{json, Map, Value};
use sluice_core::Event;

use crate::{
    helpers::{Proc, TestEnv},
    raw_http::{read_answer, send},
};

async fn ready_gateway(env: &TestEnv, extra: &[&str]) -> Proc {
    let mut gateway = env.gateway(extra);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    gateway
}

async fn post(gateway: &Proc, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Response {
    let mut request = Client::new().post(gateway.url("/v1/events")).header(header::CONTENT_TYPE, content_type);
    if let Some(encoding) = encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    request.body(body).send().await.expect("post")
}

async fn error_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    (status, body["error"].clone())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss(gateway: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.child.id())).expect("read /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kb * 1024
}

/// Repeats `unit` to exactly `total` bytes inside `open` .. `close`.
fn filled(open: &str, unit: &str, close: &str, total: usize) -> Vec<u8> {
    let mut out = open.as_bytes().to_vec();
    while out.len() + unit.len() + close.len() <= total {
        out.extend_from_slice(unit.as_bytes());
    }
    if out.ends_with(b",") && close.starts_with(']') {
        out.pop();
    }
    out.extend_from_slice(close.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_cost_memory_bounded_by_the_limits() {
    const MIB: usize = 1024 * 1024;
    let env = TestEnv::new(1).await;
    // Default limits: 10 MiB bodies, 1000 events, 1 MB events.
    let gateway = ready_gateway(&env, &[]).await;
    assert_eq!(post(&gateway, "application/json", None, br#"{"type":"warm-up"}"#.to_vec()).await.status(), 202);
    let before = peak_rss(&gateway);

    // About 10 KB of gzip each, 10 MiB once inflated.
    let bodies: [(&str, &str, Vec<u8>, u16, &str); 4] = [
        ("array of zeros", "application/json", filled("[", "0,", "]", 10 * MIB), 413, "batch_too_large"),
        ("ndjson of zeros", "application/x-ndjson", filled("", "0\n", "", 10 * MIB), 413, "batch_too_large"),
        ("array of tiny objects", "application/json", filled("[", "{},", "]", 10 * MIB), 413, "batch_too_large"),
        (
            "one huge event",
            "application/json",
            filled(r#"[{"type":"t","data":{"a":["#, "0,", "]}}]", 10 * MIB),
            413,
            "event_too_large",
        ),
    ];
    for (what, content_type, body, status, code) in bodies {
        let compressed = gzip(&body);
        assert!(compressed.len() < 64 * 1024, "{what}: {} bytes of gzip", compressed.len());
        let (got, error) = error_of(post(&gateway, content_type, Some("gzip"), compressed).await).await;
        assert_eq!((got.as_u16(), error["code"].as_str()), (status, Some(code)), "{what}: {error}");
    }
    let after = peak_rss(&gateway);
    let grown = after.saturating_sub(before);
    // The bound, 4 x --max-body-bytes: the received body and the inflated body (10 MiB each
    // at most; here the received one is small), plus one event's parsed values (at most 1 MB of
    // JSON text, up to ~16 bytes of values per byte of text). Measured: ~16 MiB after the fix;
    // 422 MiB before it, when the whole array became values.
    eprintln!("peak RSS before {before} bytes, after {after} bytes, grew {grown} bytes");
    assert!(
        grown < 40 * MIB as u64,
        "peak RSS grew by {} MiB (from {} to {} MiB)",
        grown / MIB as u64,
        before / MIB as u64,
        after / MIB as u64
    );
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 1, "only the warm-up was produced");
}

/// An event whose record (key + value, as the gateway writes it) is exactly `size` bytes.
fn event_of_record_size(size: usize) -> Value {
    let id = uuid::Uuid::now_v7();
    let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").expect("ts").to_utc();
    let record_size = |n: usize| {
        let mut data = Map::new();
        data.insert("blob".into(), json!("x".repeat(n)));
        // received_at is the gateway's clock, always 27 characters in this century.
        let event = Event { id, event_type: "big".into(), key: None, ts, received_at: ts, data };
        let (key, value) = sluice_core::wire::encode(&event);
        key.len() + value.len()
    };
    let n = size - record_size(0);
    assert_eq!(record_size(n), size);
    json!({"id": id, "type": "big", "ts": "2026-01-02T03:04:05Z", "data": {"blob": "x".repeat(n)}})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_exactly_at_the_size_limit_is_produced_and_one_byte_more_is_refused() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let at_limit = event_of_record_size(1_000_000);
    let r = post(&gateway, "application/json", None, at_limit.to_string().into_bytes()).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let over = event_of_record_size(1_000_001);
    let (status, error) = error_of(post(&gateway, "application/json", None, over.to_string().into_bytes()).await).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (413, Some("event_too_large")), "{error}");
    let records = env.topic_records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.key().map_or(0, <[u8]>::len) + record.payload().map_or(0, <[u8]>::len), 1_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_are_accepted_only_where_the_sinker_can_store_them() {
    let env = TestEnv::new(1).await;
    env.migrate();
    let gateway = ready_gateway(&env, &[]).await;
    for ts in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+01:00", "0000-12-31T23:59:59Z"] {
        let (status, error) = error_of(
            post(&gateway, "application/json", None, json!({"type": "t", "ts": ts}).to_string().into_bytes()).await,
        )
        .await;
        assert_eq!((status.as_u16(), error["code"].as_str()), (400, Some("invalid_event")), "{ts}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("0001-01-01T00:00:00Z") && message.contains("9999-12-31T23:59:59.999999Z"),
            "{ts}: {message}"
        );
    }
    let edges = [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("9999-12-31T23:59:59.9999999Z", "9999-12-31T23:59:59.999999Z"),
        ("0001-01-01T23:59:00+23:59", "0001-01-01T00:00:00.000000Z"),
        ("9999-12-31T00:00:00-23:59", "9999-12-31T23:59:00.000000Z"),
        ("2024-02-29T12:00:00.1234567+01:00", "2024-02-29T11:00:00.123456Z"),
    ];
    for (ts, _) in edges {
        let r =
            post(&gateway, "application/json", None, json!({"type": "edge", "ts": ts}).to_string().into_bytes()).await;
        assert_eq!(r.status(), 202, "{ts}: {:?}", r.text().await);
    }
    let _sinker = env.sinker(&[]);
    env.wait_rows(edges.len() as i64, Duration::from_secs(60)).await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM events ORDER BY ts",
    )
    .fetch_all(&env.pool)
    .await
    .expect("rows");
    let mut expected: Vec<String> = edges.iter().map(|(_, row)| (*row).to_owned()).collect();
    expected.sort();
    assert_eq!(stored, expected);
    assert!(env.dlq_records().is_empty(), "nothing the gateway accepted was dead-lettered");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_methods_and_charsets_get_the_error_body() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let r = reqwest::get(gateway.url("/v1/events")).await.expect("get");
    assert_eq!(
        r.headers().get(header::ALLOW).map(|v| v.to_str().unwrap_or_default().to_owned()),
        Some("POST".to_owned())
    );
    let (status, error) = error_of(r).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (405, Some("method_not_allowed")), "{error}");

    let utf16: Vec<u8> = r#"{"type":"t"}"#.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let (status, error) = error_of(post(&gateway, "application/json; charset=utf-16", None, utf16).await).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (415, Some("unsupported_media_type")), "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("utf-16")), "{error}");
    for charset in ["utf-8", "UTF-8", "\"utf-8\"", "us-ascii"] {
        let r =
            post(&gateway, &format!("application/json; charset={charset}"), None, br#"{"type":"t"}"#.to_vec()).await;
        assert_eq!(r.status(), 202, "charset={charset}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_limit_chunked_upload_reads_its_413() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--max-body-bytes", "1048576"]).await;
    let stream = crate::raw_http::connect(gateway.port).await;
    let (mut reader, mut writer) = stream.into_split();
    let head = "POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let upload = tokio::spawn(async move {
        if !send(&mut writer, head.as_bytes()).await {
            return;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        for _ in 0..(20 * 16) {
            if !send(&mut writer, chunk.as_bytes()).await {
                return;
            }
        }
        send(&mut writer, b"0\r\n\r\n").await;
    });
    let answer = read_answer(&mut reader, Duration::from_secs(60)).await;
    assert_eq!(answer.status, Some(413), "{answer:?}");
    assert_eq!(answer.body.map(|b| b["error"]["code"].clone()), Some(json!("body_too_large")));
    upload.await.expect("upload task");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_limit_upload_with_a_declared_length_reads_its_413_every_time() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--max-body-bytes", "1048576"]).await;
    // reqwest declares the Content-Length and stops reading the answer if a write fails, so
    // any reset before the upload ends shows up as an error here.
    for attempt in 0..10 {
        let r = Client::new()
            .post(gateway.url("/v1/events"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(vec![b'['; 32 * 1024 * 1024])
            .send()
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        let (status, error) = error_of(r).await;
        assert_eq!((status.as_u16(), error["code"].as_str()), (413, Some("body_too_large")), "attempt {attempt}");
    }
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_decided_from_the_headers_are_read_by_a_client_still_uploading() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--api-keys", "secret-key"]).await;
    // 401 (no key) and 415 (wrong type) are decided before the body is read; the client must
    // still read them, not a reset (the 429 of backpressure takes the same path).
    for attempt in 0..6 {
        let (key, content_type, expected) = if attempt % 2 == 0 {
            ("wrong-key", "application/json", (401, "unauthorized"))
        } else {
            ("secret-key", "text/csv", (415, "unsupported_media_type"))
        };
        let r = Client::new()
            .post(gateway.url("/v1/events"))
            .bearer_auth(key)
            .header(header::CONTENT_TYPE, content_type)
            .body(vec![b'['; 8 * 1024 * 1024])
            .send()
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        let (status, error) = error_of(r).await;
        assert_eq!((status.as_u16(), error["code"].as_str()), (expected.0, Some(expected.1)), "attempt {attempt}");
    }
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0);
}
