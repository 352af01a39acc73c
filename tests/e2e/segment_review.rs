//! Review of the Segment-compatible API (issue 14) from the outside: what Segment's own SDKs
//! and Segment's HTTP API documentation send, and what the gateway's guarantees promise.
//!
//! Each test began as the reproduction of a finding of the review (failing on ddca0ad) and now
//! holds the fix, or, where the behaviour is a decision (messageId not scoped to the write
//! key), the documented behaviour.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use flate2::{write::GzEncoder, Compression};
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use sluice_core::wire::MAX_DATA_DEPTH;

use crate::helpers::{Proc, TestEnv};

const KEY: &str = "review-key-1";

async fn ready_gateway(env: &TestEnv, extra: &[&str]) -> Proc {
    let mut gateway = env.gateway(extra);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    gateway
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn records(env: &TestEnv) -> Vec<Value> {
    use rdkafka::Message;
    env.topic_records()
        .iter()
        .map(|m| serde_json::from_slice(m.payload().expect("value")).expect("record is JSON"))
        .collect()
}

fn produced(env: &TestEnv) -> i64 {
    env.high_watermarks().values().sum()
}

/// Status and error body of an answer.
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

async fn post_json(gateway: &Proc, path: &str, body: String) -> (StatusCode, Value) {
    let response = Client::new()
        .post(gateway.url(path))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    answer(response).await
}

/// `[[...1...]]`: a value `levels` deep.
fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// analytics-kotlin, analytics-react-native and analytics.js with `deliveryStrategy:
/// batching` post their batches to `<apiHost>/b` (apiHost defaults to `api.segment.io/v1`)
/// with `Content-Type: text/plain` and the write key in the body; analytics.js's standard
/// delivery posts each call to `/v1/t`, `/v1/i`, `/v1/p`, ... the same way. Pointed at the
/// gateway unmodified, every one of those requests is a 404 or a 415.
#[tokio::test(flavor = "multi_thread")]
async fn segment_mobile_and_browser_sdks_requests_are_accepted() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--api-keys", KEY]).await;
    let now = Utc::now().to_rfc3339();
    // What analytics-kotlin sends (gzip, text/plain, Basic auth) to https://<apiHost>/b.
    let kotlin = json!({"batch": [{"type": "track", "messageId": "kt-1", "anonymousId": "a1", "event": "Opened",
        "timestamp": now}], "sentAt": now, "writeKey": KEY});
    let response = Client::new()
        .post(gateway.url("/v1/b"))
        .basic_auth(KEY, Some(""))
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(gzip(kotlin.to_string().as_bytes()))
        .send()
        .await
        .expect("post");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "analytics-kotlin / analytics-react-native batch to /v1/b: {body}");
    // What analytics.js (standard delivery) sends for a track call: /v1/t, text/plain, no header.
    let ajs = json!({"type": "track", "messageId": "ajs-next-1", "anonymousId": "a1", "event": "Clicked",
        "timestamp": now, "sentAt": now, "writeKey": KEY, "context": {"library": {"name": "analytics.js"}}});
    let response = Client::new()
        .post(gateway.url("/v1/t"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(ajs.to_string())
        .send()
        .await
        .expect("post");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "analytics.js track to /v1/t: {body}");
    // Every other call's short path, as analytics.js posts it (type in the message).
    for (path, kind, extra) in [
        ("/v1/i", "identify", json!({"traits": {"plan": "pro"}})),
        ("/v1/p", "page", json!({"name": "Home"})),
        ("/v1/s", "screen", json!({"name": "Settings"})),
        ("/v1/g", "group", json!({"groupId": "g1"})),
        ("/v1/a", "alias", json!({"previousId": "a0"})),
    ] {
        let mut message = json!({"type": kind, "messageId": format!("ajs-{kind}"), "anonymousId": "a1",
            "sentAt": now, "writeKey": KEY});
        message.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        let response = Client::new()
            .post(gateway.url(path))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(message.to_string())
            .send()
            .await
            .expect("post");
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::OK, "analytics.js {kind} to {path}: {body}");
    }
    // A short path is its endpoint: a track message to /v1/p is refused as on /v1/page.
    let response = Client::new()
        .post(gateway.url("/v1/p"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(json!({"type": "track", "messageId": "x", "userId": "u", "event": "e", "writeKey": KEY}).to_string())
        .send()
        .await
        .expect("post");
    let (status, body) = answer(response).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_event")), "{body}");
    // Without a key, the 401 says where a Segment client puts it.
    let response = Client::new()
        .post(gateway.url("/v1/b"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(json!({"batch": [{"type": "page", "messageId": "nokey", "userId": "u"}]}).to_string())
        .send()
        .await
        .expect("post");
    let (status, body) = answer(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("HTTP Basic username") && message.contains("`writeKey`"), "{message}");
    let kinds: Vec<String> = records(&env).iter().map(|r| r["type"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(kinds, ["Opened", "Clicked", "identify", "page", "screen", "group", "alias"]);
}

/// Segment's limit is 32 KB per message, and the gateway documents that the 32 KiB limit
/// applies to each message. The batch's `context` is copied into every message after the
/// limit was checked, so a 500 KB request makes messages of any size up to --max-event-bytes,
/// and N copies of them: measured on ddca0ad, a 451 KB request (400 KB context, 1000 tiny
/// messages) took the gateway from 45 MB to 958 MB resident and 8.6 s of CPU before it was
/// answered 413 "request body is larger than 67108864 bytes".
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_context_cannot_grow_messages_past_the_message_limit() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let messages: Vec<Value> =
        (0..20).map(|i| json!({"type": "page", "messageId": format!("ctx-{i}"), "userId": "u"})).collect();
    let body = json!({"context": {"blob": "x".repeat(40 * 1024)}, "batch": messages});
    let response = Client::new()
        .post(gateway.url("/v1/batch"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let (status, body) = answer(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!((body["error"]["code"].as_str(), body["error"]["index"].as_i64()), (Some("message_too_large"), Some(0)));
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("batch `context`"), "{body}");
    assert_eq!(produced(&env), 0, "a refused request produced nothing");

    // Within the limit once merged, it is stored with the context.
    let messages: Vec<Value> =
        (0..3).map(|i| json!({"type": "page", "messageId": format!("small-{i}"), "userId": "u"})).collect();
    let body = json!({"context": {"blob": "x".repeat(30 * 1024)}, "batch": messages}).to_string();
    let (status, answer_body) = post_json(&gateway, "/v1/batch", body).await;
    assert_eq!(status, StatusCode::OK, "{answer_body}");
    let stored = records(&env);
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|r| r["data"]["context"]["blob"].as_str().is_some_and(|b| b.len() == 30 * 1024)));

    // Each message under the limit, but the context copied into many of them: the request may
    // produce twice its body limit plus 1280 bytes per message (1,177,600 here); 120 messages of
    // 20 KiB are about 2.5 MB.
    let messages: Vec<Value> =
        (0..120).map(|i| json!({"type": "page", "messageId": format!("many-{i}"), "userId": "u"})).collect();
    let body = json!({"context": {"blob": "x".repeat(20 * 1024)}, "batch": messages}).to_string();
    let (status, answer_body) = post_json(&gateway, "/v1/batch", body).await;
    assert_eq!(
        (status, answer_body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let message = answer_body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("more than 1177600 bytes") && message.contains("batch `context`"), "{message}");
    assert_eq!(produced(&env), 3, "the refused request produced nothing");
}

/// Same defect, measured as memory: the gateway's peak resident set must stay bounded by its
/// limits, not by (batch context x messages). A 400 KB context and 300 tiny messages: about
/// 120 MB of records (each re-encoded, plus its parsed copy) before the 64 MiB in-flight cap
/// refuses them.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_context_does_not_multiply_the_gateways_memory() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let messages: Vec<Value> =
        (0..300).map(|i| json!({"type": "page", "messageId": format!("m{i}"), "userId": "u"})).collect();
    let body = json!({"context": {"blob": "x".repeat(400_000)}, "batch": messages}).to_string();
    assert!(body.len() < 500 * 1024, "within Segment's batch limit");
    let started = Instant::now();
    let response = Client::new()
        .post(gateway.url("/v1/batch"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let (status, body) = answer(response).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("message_too_large")));
    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", gateway.child.id()))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>()))
        .expect("VmHWM")
        .expect("number");
    assert!(
        peak_kib < 150 * 1024,
        "a {} KiB request took the gateway to {} MiB resident ({status} after {:?})",
        400,
        peak_kib / 1024,
        started.elapsed()
    );
}

/// The sinker reads a record with serde_json's recursion limit; the record wraps the message in
/// `data`, one level deeper. Found on ddca0ad: a message nested 127 deep was answered 200 and
/// dead-lettered as `not_json`. Now a message may nest `MAX_DATA_DEPTH` (126) levels, the
/// message object counting one, and one more is a 400 `invalid_event` naming the limit, on
/// every Segment path; `/v1/events` has no gap either (its `data` at the limit is stored, one
/// level past is already invalid JSON to the gateway).
#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_message_decodes_as_the_sinker_decodes_it() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    // `properties` holds all the levels but the message's own.
    let message = |id: &str, levels: usize| {
        format!(r#"{{"type":"track","messageId":"{id}","userId":"u","event":"e","properties":{}}}"#, nested(levels - 1))
    };
    let (status, body) = post_json(&gateway, "/v1/track", message("at-limit", MAX_DATA_DEPTH)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        post_json(&gateway, "/v1/batch", format!(r#"{{"batch":[{}]}}"#, message("at-limit-b", MAX_DATA_DEPTH))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (path, body) in [
        ("/v1/track", message("past", MAX_DATA_DEPTH + 1)),
        ("/v1/batch", format!(r#"{{"batch":[{}]}}"#, message("past-b", MAX_DATA_DEPTH + 1))),
        // A batch context that is fine in the envelope but one level too deep once merged.
        (
            "/v1/batch",
            format!(r#"{{"context":{{"deep":{}}},"batch":[{}]}}"#, nested(MAX_DATA_DEPTH - 1), message("past-ctx", 1)),
        ),
    ] {
        let (status, body) = post_json(&gateway, path, body).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_event")),
            "{path}: {body}"
        );
        assert_eq!(body["error"]["index"], 0, "{body}");
        let text = body["error"]["message"].as_str().unwrap_or("");
        assert!(text.contains("nested 127 levels deep") && text.contains("the limit is 126"), "{text}");
    }
    // /v1/events: `data` at the limit (the record is as deep as the body), then one past.
    let event = |levels: usize| format!(r#"{{"type":"deep-event","data":{{"a":{}}}}}"#, nested(levels - 1));
    let (status, body) = post_json(&gateway, "/v1/events", event(MAX_DATA_DEPTH)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = post_json(&gateway, "/v1/events", event(MAX_DATA_DEPTH + 1)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")), "{body}");

    use rdkafka::Message;
    let stored = env.topic_records();
    assert_eq!(stored.len(), 3, "the three requests at the limit, nothing of the refused ones");
    for record in stored {
        let decoded = sluice_core::wire::decode(record.payload(), None, Utc::now(), 1_000_000);
        let event = decoded.unwrap_or_else(|e| panic!("acknowledged but the sinker cannot decode it: {e:?}"));
        assert_eq!(sluice_core::wire::map_depth(&event.data), MAX_DATA_DEPTH);
    }
}

/// RudderStack's SDKs (whose API the README says is the same) send `originalTimestamp`, not
/// `timestamp` (rudder-sdk-node: `lMessage.originalTimestamp = new Date()`, body
/// `{batch, timestamp, sentAt}`); Segment's spec computes `timestamp = receivedAt - (sentAt -
/// originalTimestamp)`. The gateway ignores `originalTimestamp`: every such event's `ts` is the
/// receive time, so events queued by the SDK (offline, retried, flushed late) lose their time.
#[tokio::test(flavor = "multi_thread")]
async fn original_timestamp_is_the_event_time_when_timestamp_is_absent() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    let sent = Utc::now();
    let happened = sent - TimeDelta::hours(1);
    let body = json!({"batch": [{"type": "track", "messageId": "rs-1", "userId": "u", "event": "Queued",
        "originalTimestamp": happened.to_rfc3339(), "channel": "server"}],
        "timestamp": sent.to_rfc3339(), "sentAt": sent.to_rfc3339()});
    let response = Client::new()
        .post(gateway.url("/v1/batch"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    let record = records(&env).pop().expect("one record");
    let ts: DateTime<Utc> = record["ts"].as_str().expect("ts").parse().expect("rfc 3339");
    assert!(
        ts < sent - TimeDelta::minutes(59),
        "ts is {ts}, the message happened at {happened} (originalTimestamp) and was sent at {sent}"
    );
}

/// Segment's HTTP Tracking API documentation's examples carry no `messageId` ("automatically
/// added to all payloads coming into Segment"); pasted as documented they are all 400 here.
#[tokio::test(flavor = "multi_thread")]
async fn segments_http_api_examples_work_as_pasted() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--api-keys", KEY]).await;
    let identify = json!({"userId": "019mr8mf4r", "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons",
        "industry": "Technology"}, "context": {"ip": "24.5.68.47"}, "timestamp": "2012-12-02T00:30:08.276Z"});
    let response = Client::new()
        .post(gateway.url("/v1/identify"))
        .basic_auth(KEY, Some(""))
        .header(header::CONTENT_TYPE, "application/json")
        .body(identify.to_string())
        .send()
        .await
        .expect("post");
    let (status, body) = answer(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The batch example, sent twice: without messageIds every message is a new event.
    let batch = json!({"batch": [
        {"type": "identify", "userId": "019mr8mf4r", "traits": {"email": "pgibbons@example.com"}},
        {"type": "track", "userId": "019mr8mf4r", "event": "Item Purchased", "properties": {"revenue": 39.95}}
    ]});
    for _ in 0..2 {
        let response = Client::new()
            .post(gateway.url("/v1/batch"))
            .basic_auth(KEY, Some(""))
            .header(header::CONTENT_TYPE, "application/json")
            .body(batch.to_string())
            .send()
            .await
            .expect("post");
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let stored = records(&env);
    assert_eq!(stored.len(), 5);
    let ids: std::collections::HashSet<uuid::Uuid> =
        stored.iter().map(|r| r["id"].as_str().expect("id").parse().expect("uuid")).collect();
    assert_eq!(ids.len(), 5, "a fresh id each: retries without messageId are not idempotent");
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "UUIDv7 ids: {ids:?}");
    assert!(stored.iter().all(|r| r["data"].get("messageId").is_none()), "the message is stored as sent");
}

/// Segment scopes `messageId` to its source (write key); sluice does not (a decision, as the
/// issue specifies: the id is the UUIDv5 of the messageId alone, and the README says so). Two
/// sources that send the same `messageId` get one event id, so the sinker stores the first only.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_id_from_two_write_keys_is_one_event_as_documented() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--api-keys", "source-a,source-b"]).await;
    for (key, user) in [("source-a", "alice"), ("source-b", "bob")] {
        let response = Client::new()
            .post(gateway.url("/v1/track"))
            .basic_auth(key, Some(""))
            .header(header::CONTENT_TYPE, "application/json")
            .body(json!({"messageId": "1", "userId": user, "event": "Signed Up"}).to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let ids: Vec<String> = records(&env).iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "one id: the README's 'messageId is not scoped to the write key'");
}
