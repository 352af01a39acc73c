//! The Segment-compatible endpoints against a real broker: the mapping as it lands on the
//! topic (the same wire format, byte for byte, as the same events posted to /v1/events), the
//! three places a write key may be, and the bad-input catalogue, with proof (the topic's high
//! watermarks) that a refused request produced nothing.

use std::{collections::HashMap, io::Write, time::Duration};

use chrono::{DateTime, Utc};
use flate2::{write::GzEncoder, Compression};
use rdkafka::Message;
use reqwest::{header, Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Proc, TestEnv};

const KEY: &str = "segment-key-1";

/// UUIDv5(167b82ba-c7dd-46be-a6d1-43e7838f763c, messageId), computed with Python's uuid module.
const V5_IDS: [(&str, &str); 8] = [
    ("b-track", "43fdc08b-aeb7-5b23-8edb-e4aa486fdf7c"),
    ("b-identify", "5189af46-2c46-5d4f-b481-6b010aab9180"),
    ("b-screen", "ca334b9d-25b3-5386-b31b-57ebf582ba1a"),
    ("b-group", "3899da63-2b66-549b-83f4-4a88e61d24ea"),
    ("b-alias", "95f084e4-9b36-5996-974f-e43f7f395e53"),
    ("s-track", "1cc33d2e-c32c-5c50-b348-234ba7f7e91c"),
    ("s-identify", "7c549185-29ea-5bce-b94d-2c8d830e8264"),
    ("s-page", "5ef6d473-4414-5a58-b704-a3b97d1f7296"),
];

async fn ready_gateway(env: &TestEnv, extra: &[&str]) -> Proc {
    let mut gateway = env.gateway(extra);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    gateway
}

fn post(gateway: &Proc, path: &str) -> RequestBuilder {
    Client::new().post(gateway.url(path)).header(header::CONTENT_TYPE, "application/json")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

async fn error_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    (status, body["error"].clone())
}

fn time(s: &str) -> DateTime<Utc> {
    sluice_core::event::to_micros(DateTime::parse_from_rfc3339(s).expect("rfc 3339").with_timezone(&Utc))
}

fn records_by_id(env: &TestEnv) -> HashMap<String, Vec<(Vec<u8>, Value)>> {
    let mut by_id: HashMap<String, Vec<(Vec<u8>, Value)>> = HashMap::new();
    for m in env.topic_records() {
        let value: Value = serde_json::from_slice(m.payload().expect("value")).expect("json");
        let id = value["id"].as_str().expect("id").to_owned();
        by_id.entry(id).or_default().push((m.key().expect("key").to_vec(), value));
    }
    by_id
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_messages_land_as_documented_and_as_v1_events_would_write_them() {
    let env = TestEnv::new(3).await;
    let gateway = ready_gateway(&env, &["--api-keys", &format!("another,{KEY}")]).await;
    let batch = json!({
        "batch": [
            {"type": "track", "messageId": "b-track", "userId": "u1", "event": "Order Completed",
                "properties": {"total": 42.5}, "timestamp": "2026-01-31T12:00:00.250Z"},
            {"type": "identify", "messageId": "b-identify", "userId": "u1", "traits": {"plan": "pro"},
                "timestamp": "2026-01-31T13:00:00+01:00", "context": {"ip": "own"}},
            {"type": "page", "messageId": "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b", "anonymousId": "a1", "name": "Home"},
            {"type": "screen", "messageId": "b-screen", "userId": "u1", "name": "Settings",
                "timestamp": "2024-02-29T23:59:59.999999999Z"},
            {"type": "group", "messageId": "b-group", "userId": "u1", "groupId": "g1",
                "timestamp": "2025-12-31T23:59:59.5-05:00"},
            {"type": "alias", "messageId": "b-alias", "userId": "u1", "previousId": "a1",
                "timestamp": "2026-01-31T12:00:02Z"},
        ],
        "sentAt": "2026-01-31T12:00:05Z",
        // Not checked: the Basic key came first.
        "writeKey": "not-the-key",
        "context": {"ip": "192.0.2.1"},
    });
    let r = post(&gateway, "/v1/batch").basic_auth(KEY, Some("")).body(batch.to_string()).send().await.expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"success": true}));

    // One message each: the key in the query, in the body (gzip), as a bearer token.
    let track = json!({"messageId": "s-track", "anonymousId": "a2", "event": "Clicked",
        "timestamp": "2026-01-31T12:00:00Z", "sentAt": "2026-01-31T11:00:00Z"});
    let r = post(&gateway, &format!("/v1/track?api_key={KEY}")).body(track.to_string()).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let identify = json!({"type": "identify", "messageId": "s-identify", "userId": 42, "writeKey": KEY});
    let r = post(&gateway, "/v1/identify")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(gzip(identify.to_string().as_bytes()))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let page = json!({"type": "page", "messageId": "s-page", "userId": "u3", "timestamp": "2026-01-31T12:00:00Z"});
    let r = post(&gateway, "/v1/page").bearer_auth(KEY).body(page.to_string()).send().await.expect("post");
    assert_eq!(r.status(), 200);

    let records = records_by_id(&env);
    assert_eq!(records.len(), 9);
    let id_of = |message_id: &str| {
        V5_IDS.iter().find(|(m, _)| *m == message_id).map_or(message_id.to_owned(), |(_, id)| (*id).to_owned())
    };
    let mut messages: Vec<(Value, Option<&str>)> =
        batch["batch"].as_array().expect("batch").iter().map(|m| (m.clone(), Some("2026-01-31T12:00:05Z"))).collect();
    messages.push((track.clone(), Some("2026-01-31T11:00:00Z")));
    messages.push((identify.clone(), None));
    messages.push((page.clone(), None));
    for (message, sent_at) in messages {
        let message_id = message["messageId"].as_str().expect("messageId");
        let [(record_key, value)] = records[&id_of(message_id)].as_slice() else { panic!("{message_id}: one record") };
        let kind = message["type"].as_str().unwrap_or("track");
        let expected_type = if kind == "track" { message["event"].as_str().expect("event") } else { kind };
        assert_eq!(value["type"], expected_type, "{message_id}");
        let key =
            message["userId"].as_str().map(str::to_owned).or_else(|| message["userId"].as_i64().map(|n| n.to_string()));
        let key = key.or_else(|| message["anonymousId"].as_str().map(str::to_owned)).expect("a key");
        assert_eq!(
            (value["key"].as_str(), record_key.as_slice()),
            (Some(key.as_str()), key.as_bytes()),
            "{message_id}"
        );
        let received_at = time(value["received_at"].as_str().expect("received_at"));
        let expected_ts = match (message["timestamp"].as_str(), sent_at.or(message["sentAt"].as_str())) {
            (Some(t), Some(s)) => time(t) + (received_at - time(s)),
            (Some(t), None) => time(t),
            (None, _) => received_at,
        };
        assert_eq!(time(value["ts"].as_str().expect("ts")), expected_ts, "{message_id}: ts");
        // data: the message as sent, with the batch's context keys it lacks, its type from the
        // endpoint, and no writeKey.
        let mut expected = message.clone();
        if sent_at == Some("2026-01-31T12:00:05Z") {
            let context = expected.as_object_mut().expect("object").entry("context").or_insert(json!({}));
            context.as_object_mut().expect("context").entry("ip").or_insert(json!("192.0.2.1"));
        }
        expected["type"] = json!(kind);
        expected.as_object_mut().expect("object").remove("writeKey");
        assert_eq!(value["data"], expected, "{message_id}: data");
    }
    assert_eq!(records[&id_of("b-identify")][0].1["data"]["context"], json!({"ip": "own"}), "the message's own wins");

    // The same events posted to /v1/events are the same records, byte for byte, but for
    // received_at.
    let events: Vec<Value> = records
        .values()
        .map(|r| {
            let v = &r[0].1;
            json!({"id": v["id"], "type": v["type"], "key": v["key"], "ts": v["ts"], "data": v["data"]})
        })
        .collect();
    let r = post(&gateway, "/v1/events").bearer_auth(KEY).json(&events).send().await.expect("post");
    assert_eq!(r.status(), 202);
    for (id, pair) in records_by_id(&env) {
        let [(segment_key, _), (events_key, _)] = pair.as_slice() else { panic!("{id}: two records") };
        assert_eq!(segment_key, events_key, "{id}: record key");
    }
    let raw: Vec<_> = env.topic_records();
    let mut values: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for m in &raw {
        let v: Value = serde_json::from_slice(m.payload().expect("value")).expect("json");
        let received_at = v["received_at"].as_str().expect("received_at").to_owned();
        let field = format!(r#""received_at":"{received_at}""#);
        let text = String::from_utf8(m.payload().expect("value").to_vec()).expect("utf-8").replace(&field, "");
        values.entry(v["id"].as_str().expect("id").to_owned()).or_default().push(text.into_bytes());
    }
    assert!(!gateway.logs().contains(KEY), "a write key (one came in a query string) reached the logs");
    for (id, pair) in values {
        assert_eq!(pair.len(), 2, "{id}: two records");
        assert_eq!(String::from_utf8_lossy(&pair[0]), String::from_utf8_lossy(&pair[1]), "{id}: the record bytes");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_bad_input_is_refused_and_writes_nothing() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--api-keys", KEY]).await;
    let ok = |m: Value| -> Value {
        let mut message = json!({"type": "track", "messageId": "m", "userId": "u", "event": "e"});
        for (k, v) in m.as_object().expect("object") {
            message[k] = v.clone();
        }
        message
    };
    let batch = |messages: Vec<Value>| json!({"batch": messages, "writeKey": KEY}).to_string().into_bytes();
    let big = ok(json!({"properties": {"blob": "x".repeat(33 * 1024)}}));
    let many: Vec<Value> = (0..20).map(|_| ok(json!({"properties": {"blob": "y".repeat(30 * 1024)}}))).collect();
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    let no_key = json!({"batch": [ok(json!({}))]}).to_string().into_bytes();
    let wrong_in_body = json!({"batch": [ok(json!({}))], "writeKey": "wrong"}).to_string().into_bytes();
    // (what, path, authorization, content type, content encoding, body, status, code, index)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
        Option<usize>,
    );
    let cases: Vec<Case> = vec![
        ("no key anywhere", "/v1/batch", None, "application/json", None, no_key.clone(), 401, "unauthorized", None),
        (
            "a wrong key in the body",
            "/v1/batch",
            None,
            "application/json",
            None,
            wrong_in_body,
            401,
            "unauthorized",
            None,
        ),
        (
            "a wrong basic key, a right one in the body",
            "/v1/batch",
            Some("Basic d3Jvbmc6"),
            "application/json",
            None,
            batch(vec![ok(json!({}))]),
            401,
            "unauthorized",
            None,
        ),
        (
            "a wrong key in the query",
            "/v1/track?api_key=wrong",
            None,
            "application/json",
            None,
            ok(json!({})).to_string().into_bytes(),
            401,
            "unauthorized",
            None,
        ),
        (
            "an unknown type",
            "/v1/batch",
            None,
            "application/json",
            None,
            batch(vec![ok(json!({})), ok(json!({"type": "purchase"}))]),
            400,
            "invalid_event",
            Some(1),
        ),
        (
            "a message without a type",
            "/v1/batch",
            None,
            "application/json",
            None,
            batch(vec![json!({"messageId": "m", "userId": "u"})]),
            400,
            "invalid_event",
            Some(0),
        ),
        (
            "a track without event",
            "/v1/batch",
            None,
            "application/json",
            None,
            batch(vec![ok(json!({})), ok(json!({})), ok(json!({"event": null}))]),
            400,
            "invalid_event",
            Some(2),
        ),
        (
            "an empty messageId (leaving it out is allowed)",
            "/v1/batch",
            None,
            "application/json",
            None,
            batch(vec![ok(json!({"messageId": ""}))]),
            400,
            "invalid_event",
            Some(0),
        ),
        (
            "neither userId nor anonymousId",
            "/v1/batch",
            None,
            "application/json",
            None,
            batch(vec![ok(json!({"userId": null}))]),
            400,
            "invalid_event",
            Some(0),
        ),
        (
            "a type the path disagrees with",
            "/v1/identify",
            Some("Bearer segment-key-1"),
            "application/json",
            None,
            ok(json!({})).to_string().into_bytes(),
            400,
            "invalid_event",
            Some(0),
        ),
        (
            "a message over 32 KiB",
            "/v1/batch",
            None,
            "application/json",
            None,
            batch(vec![ok(json!({})), big.clone()]),
            413,
            "message_too_large",
            Some(1),
        ),
        (
            "a single message over 32 KiB",
            "/v1/track",
            Some("Bearer segment-key-1"),
            "application/json",
            None,
            big.to_string().into_bytes(),
            413,
            "message_too_large",
            Some(0),
        ),
        ("a batch over 500 KiB", "/v1/batch", None, "application/json", None, batch(many), 413, "body_too_large", None),
        (
            "invalid JSON",
            "/v1/batch",
            Some("Bearer segment-key-1"),
            "application/json",
            None,
            b"{\"batch\": [{\"type\":".to_vec(),
            400,
            "invalid_json",
            None,
        ),
        (
            "a message that is not JSON text",
            "/v1/page",
            Some("Bearer segment-key-1"),
            "application/json",
            None,
            b"{\"type\": page}".to_vec(),
            400,
            "invalid_json",
            None,
        ),
        (
            "no batch array",
            "/v1/batch",
            Some("Bearer segment-key-1"),
            "application/json",
            None,
            br#"{"batch": {"type": "page"}}"#.to_vec(),
            400,
            "invalid_batch",
            None,
        ),
        (
            "an empty batch",
            "/v1/batch",
            Some("Bearer segment-key-1"),
            "application/json",
            None,
            br#"{"batch": []}"#.to_vec(),
            400,
            "empty_batch",
            None,
        ),
        (
            "a bad sentAt",
            "/v1/batch",
            None,
            "application/json",
            None,
            json!({"batch": [ok(json!({}))], "sentAt": "now", "writeKey": KEY}).to_string().into_bytes(),
            400,
            "invalid_batch",
            None,
        ),
        (
            "text/csv",
            "/v1/batch",
            Some("Bearer segment-key-1"),
            "text/csv",
            None,
            batch(vec![ok(json!({}))]),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "ndjson",
            "/v1/batch",
            Some("Bearer segment-key-1"),
            "application/x-ndjson",
            None,
            batch(vec![ok(json!({}))]),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "a gzip bomb",
            "/v1/batch",
            Some("Bearer segment-key-1"),
            "application/json",
            Some("gzip"),
            bomb,
            413,
            "body_too_large",
            None,
        ),
    ];
    for (what, path, auth, content_type, encoding, body, status, code, index) in cases {
        let mut request = Client::new().post(gateway.url(path)).header(header::CONTENT_TYPE, content_type).body(body);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        if let Some(encoding) = encoding {
            request = request.header(header::CONTENT_ENCODING, encoding);
        }
        let (got_status, error) = error_of(request.send().await.expect("post")).await;
        assert_eq!((got_status.as_u16(), error["code"].as_str()), (status, Some(code)), "{what}: {error}");
        assert_eq!(error["index"].as_u64(), index.map(|i| i as u64), "{what}: index in {error}");
        let message = error["message"].as_str().unwrap_or("");
        assert!(message.chars().next().is_some_and(|c| !c.is_uppercase()), "{what}: lowercase message: {error}");
        if code == "message_too_large" {
            assert!(message.contains("32768 bytes per message"), "{what}: names the limit: {message}");
        }
        if what == "a batch over 500 KiB" {
            assert!(message.contains("512000 bytes"), "{what}: names the limit: {message}");
        }
    }
    let (_, error) = error_of(
        post(&gateway, "/v1/batch").body(batch(vec![ok(json!({"type": "Track"}))])).send().await.expect("post"),
    )
    .await;
    assert_eq!(
        error["message"],
        "message 0: unknown message type \"Track\" in `type`; use track, identify, page, screen, group or alias"
    );
    let r = Client::new().get(gateway.url("/v1/batch")).send().await.expect("get");
    assert_eq!(r.status(), 405);

    assert_eq!(reqwest::get(gateway.url("/healthz")).await.expect("healthz").status(), 200);
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0, "refused requests produced nothing");
    let r = post(&gateway, "/v1/batch").body(batch(vec![ok(json!({})), ok(json!({"messageId": "n"}))])).send().await;
    assert_eq!(r.expect("post").status(), 200);
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 2);

    // The key's rate limit applies to messages as to events: 429 with Retry-After.
    let limited = ready_gateway(&env, &["--api-keys", KEY, "--rate-limit", "5", "--rate-limit-burst", "10"]).await;
    let ten: Vec<Value> = (0..10).map(|i| ok(json!({"messageId": format!("rl-{i}")}))).collect();
    assert_eq!(post(&limited, "/v1/batch").body(batch(ten.clone())).send().await.expect("post").status(), 200);
    let r = post(&limited, "/v1/batch").body(batch(ten)).send().await.expect("post");
    assert!(r.headers().get(header::RETRY_AFTER).is_some(), "a 429 says when to retry");
    let (status, error) = error_of(r).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (429, Some("rate_limited")));
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 12, "the limited request produced nothing");
}
