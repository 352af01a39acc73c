//! The gateway's backpressure and accounting over a long life (issue 10, items 1 and 7): the
//! lag watcher survives quiet periods, in-flight bytes are counted until librdkafka lets go of
//! them, every API key has its own rate-limit bucket, and refused requests cost no tokens.

use std::time::Duration;

use reqwest::{header, Client, Response};
use serde_json::{json, Value};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    ClientConfig,
};
use uuid::Uuid;

use crate::{
    gateway_routes::routes_file,
    helpers::{create_topic, eventually, Proc, TestEnv},
};

const WAIT: Duration = Duration::from_secs(90);

async fn post_batch(gateway: &Proc, events: usize, auth: Option<&str>) -> Response {
    let batch: Vec<Value> = (0..events).map(|_| json!({"type": "bp"})).collect();
    let mut req = Client::new().post(gateway.url("/v1/events")).json(&batch);
    if let Some(key) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    req.send().await.expect("post")
}

async fn error_code(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is JSON");
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// Busy, then idle for hundreds of lag measurements (the drain-rate average decays toward
/// zero), then the sinkers stop: writes must still get 429 once lag passes the threshold.
/// Before the fix the watcher panicked in `Duration::from_secs_f64` after about 150 idle
/// measurements, and the gateway never throttled again.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_still_works_after_a_quiet_period() {
    let env = TestEnv::new(2).await;
    env.migrate();
    let mut gateway = env.gateway(&[
        "--sinker-group",
        &env.group,
        "--lag-interval",
        "10ms",
        "--lag-throttle",
        "50",
        "--lag-resume",
        "10",
    ]);
    gateway.wait_ready("/readyz", WAIT).await;
    let mut sinker = env.sinker(&[]);

    // Busy: the sinker drains what is posted, so the drain rate is well above zero (lag stays
    // under the threshold: each batch is written before the next is posted).
    for i in 1..=10 {
        assert_eq!(post_batch(&gateway, 20, None).await.status(), 202);
        env.wait_rows(20 * i, WAIT).await;
    }
    // The watcher saw the group's offsets advance by 200 (so it measured a drain rate above 0),
    // and lag back at 0.
    eventually(WAIT, "the gateway sees the group caught up", || async {
        let committed = gateway.metric("gateway_consumer_committed_offset_sum", &[]).await?;
        let lag = gateway.metric("gateway_consumer_lag", &[]).await?;
        (committed == 200.0 && lag == 0.0).then_some(())
    })
    .await;

    // Idle: hundreds of measurements, during which the average decays to nothing.
    let before = gateway.metric("gateway_lag_measure_seconds_count", &[]).await.expect("count");
    eventually(WAIT, "500 more lag measurements while idle", || async {
        let now = gateway.metric("gateway_lag_measure_seconds_count", &[]).await?;
        (now >= before + 500.0).then_some(())
    })
    .await;
    assert_eq!(gateway.metric("gateway_drain_rate", &[]).await, Some(0.0), "the average decayed to zero");
    assert_eq!(gateway.metric("gateway_consumer_lag_known", &[]).await, Some(1.0));

    // The sinkers stop; lag grows past the threshold and writes are refused.
    sinker.kill9();
    let (status, code, retry_after) = eventually(WAIT, "a 429 once lag passes --lag-throttle", || async {
        let r = post_batch(&gateway, 20, None).await;
        if r.status() == 202 {
            return None;
        }
        let retry: u64 = r.headers().get(header::RETRY_AFTER)?.to_str().ok()?.parse().ok()?;
        let (status, code) = error_code(r).await;
        Some((status, code, retry))
    })
    .await;
    assert_eq!((status, code.as_str()), (429, "throttled"));
    assert_eq!(retry_after, 60, "nothing drains: the longest Retry-After");
    assert_eq!(gateway.metric("gateway_backpressure_active", &[]).await, Some(1.0));
    assert!(gateway.metric("gateway_consumer_lag", &[]).await.expect("lag") >= 50.0);
    assert!(gateway.is_running());
}

/// A client that gives up while its events are still in librdkafka's hands: the in-flight
/// gauge and the in-flight cap keep counting those bytes until the broker answered, then
/// return to zero.
#[tokio::test(flavor = "multi_thread")]
async fn in_flight_bytes_are_held_until_delivery_even_when_the_client_leaves() {
    let env = TestEnv::new(1).await;
    // linger.ms holds every record in the producer for 10 s: a slow broker, deterministically.
    // Each event's key is 800 bytes, and the record carries it twice: about 1.75 KB a record,
    // 35 KB for a request of 20, more than half of the 44 KB cap.
    let mut gateway = env.gateway(&[
        "--kafka-option",
        "linger.ms=10000",
        "--produce-timeout",
        "20s",
        "--request-timeout",
        "30s",
        "--max-inflight-bytes",
        "44000",
        "--max-body-bytes",
        "16500",
        "--max-batch-events",
        "20",
        "--max-event-bytes",
        "4000",
    ]);
    gateway.wait_ready("/readyz", WAIT).await;
    let batch: Vec<Value> = (0..20).map(|_| json!({"type": "g", "key": "\u{1F600}".repeat(200)})).collect();

    let r = Client::new().post(gateway.url("/v1/events")).json(&batch).timeout(Duration::from_secs(3)).send().await;
    assert!(r.is_err(), "the client gave up before the broker answered: {r:?}");
    let held = eventually(WAIT, "the abandoned request's bytes in the gauge", || async {
        let v = gateway.metric("gateway_inflight_bytes", &[]).await?;
        (v > 0.0).then_some(v)
    })
    .await;
    assert!(held > 30_000.0, "{held}");

    // While librdkafka holds those records, the same request again would pass the cap.
    let r = Client::new().post(gateway.url("/v1/events")).json(&batch).send().await.expect("post");
    assert_eq!(error_code(r).await, (503, "overloaded".to_owned()), "the permit is still held");

    // Once the broker confirmed them, the gauge is back to exactly zero and the cap is free.
    eventually(WAIT, "gateway_inflight_bytes back to 0", || async {
        (gateway.metric("gateway_inflight_bytes", &[]).await? == 0.0).then_some(())
    })
    .await;
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 20, "the abandoned events were delivered");
    let r = Client::new().post(gateway.url("/v1/events")).json(&batch).send().await.expect("post");
    assert_eq!(r.status(), 202, "the cap is free again");
}

/// Every API key has its own bucket, the 17th as much as the 1st.
#[tokio::test(flavor = "multi_thread")]
async fn every_api_key_has_its_own_rate_limit_bucket() {
    let env = TestEnv::new(1).await;
    let keys: Vec<String> = (0..20).map(|i| format!("key-number-{i:02}")).collect();
    let joined = keys.join(",");
    let mut gateway = env.gateway(&["--api-keys", &joined, "--rate-limit", "0.01", "--rate-limit-burst", "5"]);
    gateway.wait_ready("/readyz", WAIT).await;
    for key in &keys[14..] {
        assert_eq!(post_batch(&gateway, 5, Some(key)).await.status(), 202, "{key} takes its own full burst");
    }
    assert_eq!(error_code(post_batch(&gateway, 5, Some(&keys[16])).await).await, (429, "rate_limited".to_owned()));
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 30);
}

/// A request refused with 503 (nothing produced) costs its client no tokens.
#[tokio::test(flavor = "multi_thread")]
async fn requests_refused_with_503_cost_no_rate_limit_tokens() {
    let env = TestEnv::new(1).await;
    let topic = format!("{}_late", env.topic);
    let mut gateway = env.gateway(&["--topic", &topic, "--rate-limit", "0.01", "--rate-limit-burst", "5"]);
    gateway.wait_ready("/healthz", WAIT).await;
    eventually(WAIT, "readyz reports the missing topic", || async {
        (reqwest::get(gateway.url("/readyz")).await.ok()?.status() == 503).then_some(())
    })
    .await;
    for _ in 0..3 {
        assert_eq!(error_code(post_batch(&gateway, 5, None).await).await, (503, "kafka_unavailable".to_owned()));
    }
    create_topic(&env.brokers, &topic, 1).await;
    gateway.wait_ready("/readyz", WAIT).await;
    assert_eq!(post_batch(&gateway, 5, None).await.status(), 202, "the bucket is still full");
    assert_eq!(error_code(post_batch(&gateway, 1, None).await).await, (429, "rate_limited".to_owned()));
}

/// `--lag-resume 0` means "resume when the sinkers have caught up completely".
#[tokio::test(flavor = "multi_thread")]
async fn lag_resume_zero_resumes_once_lag_is_zero() {
    let env = TestEnv::new(1).await;
    env.migrate();
    let mut gateway = env.gateway(&[
        "--sinker-group",
        &env.group,
        "--lag-interval",
        "100ms",
        "--lag-throttle",
        "20",
        "--lag-resume",
        "0",
    ]);
    gateway.wait_ready("/readyz", WAIT).await;
    assert_eq!(post_batch(&gateway, 30, None).await.status(), 202);
    // Polled by hand: the 1-event posts accepted before the throttle engages are counted.
    let mut accepted = 30;
    let start = std::time::Instant::now();
    loop {
        match post_batch(&gateway, 1, None).await.status().as_u16() {
            202 => accepted += 1,
            429 => break,
            other => panic!("unexpected status {other}"),
        }
        assert!(start.elapsed() < WAIT, "never throttled at lag {accepted}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _sinker = env.sinker(&[]);
    env.wait_rows(accepted, WAIT).await;
    eventually(WAIT, "writes accepted again at lag 0", || async {
        (post_batch(&gateway, 1, None).await.status() == 202).then_some(())
    })
    .await;
    assert_eq!(gateway.metric("gateway_backpressure_active", &[]).await, Some(0.0));
}

/// Settings that could never work are refused at start with a message naming the flag.
#[tokio::test(flavor = "multi_thread")]
async fn impossible_settings_are_refused_at_start() {
    let env = TestEnv::new(1).await;
    let cases: [(&[&str], &str); 3] = [
        (&["--lag-interval", "0s"], "--lag-interval"),
        (&["--produce-timeout", "500us"], "--produce-timeout"),
        (
            &["--max-body-bytes", "2000000", "--max-inflight-bytes", "1000000", "--max-event-bytes", "1000"],
            "--max-inflight-bytes",
        ),
    ];
    for (args, flag) in cases {
        let mut gateway = env.gateway(args);
        let status = gateway.wait_exit(WAIT).await;
        assert_eq!(status.code(), Some(2), "{args:?} exits 2");
        let logs = gateway.logs();
        assert!(logs.contains("invalid configuration") && logs.contains(flag), "{args:?}: {logs}");
    }
}

/// Every event of a request refused by the broker: one warning line for the request, with the
/// count, and repeated warnings within 10 s are folded into the next line's count.
#[tokio::test(flavor = "multi_thread")]
async fn refused_events_log_one_line_per_request_not_per_event() {
    let env = TestEnv::new(1).await;
    // A topic whose records may be at most 1000 bytes: the broker refuses every batch we send.
    let topic = format!("{}_small", env.topic);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &env.brokers).create().expect("admin client");
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "1000");
    for r in admin.create_topics([&new], &AdminOptions::new()).await.expect("create topic") {
        r.expect("topic created");
    }
    let mut gateway = env.gateway(&["--topic", &topic]);
    gateway.wait_ready("/readyz", WAIT).await;
    // Incompressible enough: each event alone is over the topic's limit once compressed.
    let pad = || (0..60).map(|_| Uuid::new_v4().simple().to_string()).collect::<String>();
    let batch: Vec<Value> = (0..30).map(|_| json!({"type": "big", "data": {"pad": pad()}})).collect();
    for _ in 0..2 {
        let r = Client::new().post(gateway.url("/v1/events")).json(&batch).send().await.expect("post");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        assert_eq!((status, body["error"]["code"].as_str()), (503, Some("not_confirmed")), "{body}");
        assert_eq!(body["error"]["ids"].as_array().map(Vec::len), Some(30));
    }
    assert_eq!(gateway.metric("gateway_delivery_failures_total", &[("reason", "delivery_error")]).await, Some(60.0));
    let logs = gateway.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("kafka did not confirm")).collect();
    // One line per request at most (two if the requests were 10 s apart on a slow machine;
    // the folding of repeated lines is unit-tested in log_limit.rs), each with the count.
    assert!((1..=2).contains(&lines.len()), "{} lines for two requests of 30 refused events:\n{logs}", lines.len());
    assert!(lines.iter().all(|l| l.contains("events=30")), "{lines:?}");
}

/// The document served by the running binary parses, lists every route, and documents every
/// status and code the gateway really answers with.
#[tokio::test(flavor = "multi_thread")]
async fn the_served_openapi_document_describes_the_real_answers() {
    let env = TestEnv::new(1).await;
    // With routes, so that `no_route` and an `invalid_event` naming a route are answered too.
    let routes = routes_file(
        r#"
[[route]]
name = "known"
types = ["ok", "a", "b", "c"]
table = "t"
[route.columns]
n = { path = "data.n", type = "integer" }
"#,
    );
    let routes = routes.to_str().expect("a UTF-8 path");
    let mut gateway = env.gateway(&[
        "--max-batch-events",
        "2",
        "--rate-limit",
        "0.01",
        "--rate-limit-burst",
        "1",
        "--routes",
        routes,
    ]);
    gateway.wait_ready("/readyz", WAIT).await;
    let r = reqwest::get(gateway.url("/openapi.json")).await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    let spec: Value = r.json().await.expect("the document is JSON");
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", spec["openapi"]);
    let mut paths: Vec<&str> = spec["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/v1/a",
            "/v1/alias",
            "/v1/b",
            "/v1/batch",
            "/v1/events",
            "/v1/g",
            "/v1/group",
            "/v1/i",
            "/v1/identify",
            "/v1/p",
            "/v1/page",
            "/v1/s",
            "/v1/screen",
            "/v1/t",
            "/v1/track"
        ]
    );
    let responses = &spec["paths"]["/v1/events"]["post"]["responses"];
    // The error body's `code` enum, found by following the 400 answer's schema.
    let body = resolve(&spec, &responses["400"]["content"]["application/json"]["schema"]);
    let detail = resolve(&spec, &body["properties"]["error"]);
    let codes = detail["properties"]["code"]["enum"].as_array().expect("the documented error codes");

    let client = Client::new();
    let post = |content_type: &'static str, body: &'static str| {
        client.post(gateway.url("/v1/events")).header(header::CONTENT_TYPE, content_type).body(body).send()
    };
    let answers = [
        post("application/json", r#"{"type":"ok"}"#).await.expect("post"),
        post("application/json", "{").await.expect("post"),
        post("application/json", "[]").await.expect("post"),
        post("application/json", r#"{"type":1}"#).await.expect("post"),
        post("application/json", r#"[{"type":"a"},{"type":"b"},{"type":"c"}]"#).await.expect("post"),
        post("text/csv", "x").await.expect("post"),
        post("application/json", r#"{"type":"unrouted"}"#).await.expect("post"),
        post("application/json", r#"{"type":"ok","data":{"n":"x"}}"#).await.expect("post"),
        post("application/json", r#"{"type":"ok"}"#).await.expect("post"),
        // A browser's request, and no --cors-allow-origins.
        client
            .post(gateway.url("/v1/events"))
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::ORIGIN, "https://page.example")
            .body(r#"{"type":"ok"}"#)
            .send()
            .await
            .expect("post"),
    ];
    let fields = detail["properties"].as_object().expect("the documented error fields");
    let mut seen = Vec::new();
    for r in answers {
        let status = r.status().as_u16().to_string();
        assert!(responses.get(&status).is_some(), "POST /v1/events answered {status}, which is not documented");
        if status != "202" {
            let body: Value = r.json().await.expect("error body is JSON");
            let error = body["error"].as_object().expect("an error object");
            for key in error.keys() {
                assert!(fields.contains_key(key), "error field `{key}` is documented: {body}");
            }
            let code = error["code"].as_str().expect("a code").to_owned();
            assert!(codes.contains(&Value::from(code.as_str())), "{code} is not in the document");
            let description = responses[&status]["description"].as_str().unwrap_or("");
            assert!(description.contains(&code), "{status} documents {code}");
            seen.push(code);
        }
    }
    assert_eq!(
        seen,
        [
            "invalid_json",
            "empty_batch",
            "invalid_event",
            "batch_too_large",
            "unsupported_media_type",
            "no_route",
            "invalid_event",
            "rate_limited",
            "origin_not_allowed"
        ]
    );
    let (status, code) = error_code(reqwest::get(gateway.url("/nope")).await.expect("get")).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(codes.contains(&Value::from("not_found")));
    let ready: Value = reqwest::get(gateway.url("/readyz")).await.expect("get").json().await.expect("json");
    let ready_schema =
        resolve(&spec, &spec["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]);
    let documented = ready_schema["properties"].as_object().expect("/readyz properties");
    for key in ready.as_object().expect("object").keys() {
        assert!(documented.contains_key(key), "/readyz field `{key}` is documented");
    }
}

/// Follows a `$ref` to a component schema (or returns the inline schema).
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        Some(name) => &spec["components"]["schemas"][name],
        None => schema,
    }
}
