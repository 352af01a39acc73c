//! Browsers' side of the gateway over real HTTP and a real broker: preflights, CORS headers on
//! every answer to an allowed origin (errors included), refusals of other origins that produce
//! nothing, text/plain bodies, `?api_key=`, and keys with their own origins and rate limits.
//! (A real browser: gateway_browser.rs.)

use std::{collections::HashSet, time::Duration};

use rdkafka::Message;
use reqwest::{header, Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{random_name, Proc, TestEnv};

const SHOP: &str = "http://shop.example";
const BLOG: &str = "https://blog.example:8443";
const EVIL: &str = "https://evil.example";

async fn ready_gateway(env: &TestEnv, extra: &[&str]) -> Proc {
    let mut gateway = env.gateway(extra);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    gateway
}

/// A POST to /v1/events with these headers (name, value) and body.
async fn post(gateway: &Proc, query: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> Response {
    let mut request = Client::new().post(gateway.url(&format!("/v1/events{query}"))).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("post")
}

async fn preflight(gateway: &Proc, origin: Option<&str>) -> Response {
    let mut request = Client::new()
        .request(Method::OPTIONS, gateway.url("/v1/events"))
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,content-encoding,authorization");
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.send().await.expect("options")
}

fn header_of(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().expect("ascii header").to_owned())
}

/// The CORS headers of an answer to an allowed origin, else none at all.
fn assert_cors(response: &Response, origin: Option<&str>, what: &str) {
    match origin {
        Some(origin) => {
            assert_eq!(header_of(response, "access-control-allow-origin").as_deref(), Some(origin), "{what}");
            assert_eq!(header_of(response, "access-control-expose-headers").as_deref(), Some("retry-after"), "{what}");
            assert_eq!(header_of(response, "vary").as_deref(), Some("origin"), "{what}");
        }
        None => {
            let cors: Vec<_> =
                response.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
            assert!(cors.is_empty(), "{what}: no CORS headers, got {cors:?}");
        }
    }
}

async fn error_code(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is JSON");
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

fn event(id: Uuid) -> String {
    json!({"id": id, "type": "page_view"}).to_string()
}

/// The ids of every record on the topic.
fn topic_ids(env: &TestEnv) -> HashSet<Uuid> {
    env.topic_records()
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(m.payload().expect("value")).expect("json");
            v["id"].as_str().expect("id").parse().expect("uuid")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_origins_get_cors_headers_on_every_answer_and_others_are_refused_with_nothing_produced() {
    let env = TestEnv::new(1).await;
    let origins = format!("{SHOP},{BLOG}/");
    let gateway = ready_gateway(
        &env,
        &[
            "--cors-allow-origins",
            &origins,
            "--api-keys",
            "cors-key-1",
            "--rate-limit",
            "0.01",
            "--rate-limit-burst",
            "3",
            "--max-body-bytes",
            "2000",
            "--max-batch-events",
            "5",
        ],
    )
    .await;
    let auth = ("authorization", "Bearer cors-key-1");
    let json = ("content-type", "application/json");

    // The preflight of an allowed origin: 204 with what the browser needs.
    let r = preflight(&gateway, Some(SHOP)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_of(&r, "access-control-allow-origin").as_deref(), Some(SHOP));
    assert_eq!(header_of(&r, "access-control-allow-methods").as_deref(), Some("POST"));
    assert_eq!(
        header_of(&r, "access-control-allow-headers").as_deref(),
        Some("content-type, content-encoding, authorization")
    );
    assert_eq!(header_of(&r, "access-control-max-age").as_deref(), Some("86400"));
    assert_eq!(header_of(&r, "vary").as_deref(), Some("origin"));
    // Origins match as browsers send them: the configured trailing slash is gone, the port kept.
    assert_eq!(header_of(&preflight(&gateway, Some(BLOG)).await, "access-control-allow-origin").as_deref(), Some(BLOG));

    // Disallowed origins: 403 on the preflight, without CORS headers.
    for origin in [EVIL, "http://shop.example:8080", "https://shop.example", "null"] {
        let r = preflight(&gateway, Some(origin)).await;
        assert_cors(&r, None, origin);
        assert_eq!(error_code(r).await, (403, "origin_not_allowed".to_owned()), "{origin}");
    }

    // Successes and every kind of error carry the CORS headers for an allowed origin.
    let accepted = Uuid::now_v7();
    let r = post(&gateway, "", &[json, auth, ("origin", SHOP)], event(accepted)).await;
    assert_cors(&r, Some(SHOP), "202");
    assert_eq!(r.status(), 202);
    type Case<'a> = (&'a [(&'a str, &'a str)], String, u16, &'a str);
    let cases: [Case<'_>; 5] = [
        (&[json, ("origin", BLOG)], event(Uuid::now_v7()), 401, "unauthorized"),
        (&[json, auth, ("origin", BLOG)], "{oops".to_owned(), 400, "invalid_json"),
        (&[json, auth, ("origin", SHOP)], "x".repeat(3000), 413, "body_too_large"),
        (
            &[("content-type", "text/html"), auth, ("origin", SHOP)],
            event(Uuid::now_v7()),
            415,
            "unsupported_media_type",
        ),
        (
            &[json, auth, ("origin", SHOP)],
            serde_json::to_string(&vec![json!({"type": "a"}); 6]).expect("json"),
            413,
            "batch_too_large",
        ),
    ];
    for (headers, body, status, code) in cases {
        let origin = headers.iter().find(|(n, _)| *n == "origin").map(|(_, v)| *v);
        let r = post(&gateway, "", headers, body).await;
        assert_cors(&r, origin, code);
        assert_eq!(error_code(r).await, (status, code.to_owned()));
    }
    // A 429 exposes its Retry-After to the page: burst 3, one taken above, two here, then none.
    let second = Uuid::now_v7();
    let third = Uuid::now_v7();
    let r = post(
        &gateway,
        "",
        &[json, auth, ("origin", BLOG)],
        json!([{"id": second, "type": "a"}, {"id": third, "type": "a"}]).to_string(),
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = post(&gateway, "", &[json, auth, ("origin", BLOG)], event(Uuid::now_v7())).await;
    assert_cors(&r, Some(BLOG), "429");
    assert!(header_of(&r, "retry-after").is_some());
    assert_eq!(error_code(r).await, (429, "rate_limited".to_owned()));

    // Any request from a disallowed origin is refused before anything else is looked at: a
    // simple text/plain post, a valid JSON one with a valid key, one without a key.
    let refused_ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let bodies = [
        (vec![("content-type", "text/plain;charset=UTF-8"), ("origin", EVIL)], &refused_ids[0]),
        (vec![json, auth, ("origin", EVIL)], &refused_ids[1]),
        (vec![json, ("origin", "null")], &refused_ids[2]),
    ];
    for (headers, id) in bodies {
        let r = post(&gateway, "", &headers, event(*id)).await;
        assert_cors(&r, None, "refused");
        assert_eq!(error_code(r).await, (403, "origin_not_allowed".to_owned()));
    }

    // Without Origin (a server): unaffected, no CORS headers, but Vary: origin.
    let r = post(&gateway, "", &[json, ("authorization", "Bearer cors-key-1")], event(Uuid::now_v7())).await;
    assert_eq!(r.status(), 429, "the same key's bucket, still empty");
    assert!(header_of(&r, "access-control-allow-origin").is_none());
    assert_eq!(header_of(&r, "vary").as_deref(), Some("origin"));
    // The other routes know nothing of CORS.
    let r = Client::new().get(gateway.url("/healthz")).header("origin", SHOP).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert!(header_of(&r, "access-control-allow-origin").is_none());

    assert_eq!(topic_ids(&env), HashSet::from([accepted, second, third]), "only the accepted requests produced");
    let refusals = gateway.metric("gateway_request_errors_total", &[("code", "origin_not_allowed")]).await;
    assert_eq!(refusals, Some(7.0), "4 preflights and 3 posts refused");
    assert_eq!(gateway.metric("gateway_requests_total", &[("status", "403")]).await, Some(7.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cors_allow_origins_the_gateway_answers_as_before_and_refuses_simple_requests_from_pages() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &[]).await;
    // As before CORS existed: a preflight is a 405 without CORS headers (the browser then
    // refuses to send the JSON post).
    let r = preflight(&gateway, Some(SHOP)).await;
    assert_cors(&r, None, "preflight");
    assert_eq!(error_code(r).await, (405, "method_not_allowed".to_owned()));
    // A simple request any page could send without asking: refused, nothing produced.
    for content_type in ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded"] {
        let r = post(&gateway, "", &[("content-type", content_type), ("origin", SHOP)], event(Uuid::now_v7())).await;
        assert_cors(&r, None, content_type);
        assert_eq!(error_code(r).await, (403, "origin_not_allowed".to_owned()), "{content_type}");
    }
    // A JSON post that carries an Origin (a same-origin page, a proxy forwarding it) is served
    // as before, without CORS headers.
    let from_page = Uuid::now_v7();
    let r = post(&gateway, "", &[("content-type", "application/json"), ("origin", SHOP)], event(from_page)).await;
    assert_eq!(r.status(), 202);
    assert_cors(&r, None, "json post with an origin");

    // No Origin: no CORS headers and no Vary; OPTIONS that is no preflight is a 405.
    let id = Uuid::now_v7();
    let r = post(&gateway, "", &[("content-type", "application/json")], event(id)).await;
    assert_eq!(r.status(), 202);
    assert_cors(&r, None, "server");
    assert!(header_of(&r, "vary").is_none());
    let r = post(&gateway, "", &[("content-type", "text/plain")], event(Uuid::now_v7())).await;
    assert_eq!(r.status(), 202, "text/plain without an Origin is not a page's");
    let r = Client::new().request(Method::OPTIONS, gateway.url("/v1/events")).send().await.expect("options");
    assert_eq!(error_code(r).await, (405, "method_not_allowed".to_owned()));
    assert_eq!(topic_ids(&env).len(), 3);
    assert!(topic_ids(&env).is_superset(&HashSet::from([id, from_page])));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_plain_bodies_are_read_as_json_gzip_included() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--cors-allow-origins", "*"]).await;
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let plain = ("content-type", "text/plain;charset=UTF-8");
    let r = post(&gateway, "", &[plain, ("origin", "https://any.example")], event(ids[0])).await;
    assert_cors(&r, Some("https://any.example"), "* echoes the origin");
    assert_eq!(r.status(), 202);
    let array = json!([{"id": ids[1], "type": "a"}, {"id": ids[2], "type": "b"}]).to_string();
    assert_eq!(post(&gateway, "", &[("content-type", "text/plain")], array).await.status(), 202);
    let gzipped = crate::gateway::gzip(event(ids[3]).as_bytes());
    let r = post(&gateway, "", &[plain, ("content-encoding", "gzip"), ("origin", "null")], gzipped).await;
    assert_cors(&r, Some("null"), "* allows null");
    assert_eq!(r.status(), 202);

    // The same rules as JSON: all or nothing, one bad event refuses the request.
    let bad = json!([{"type": "ok"}, {"type": 7}]).to_string();
    let r = post(&gateway, "", &[plain], bad).await;
    assert_eq!(error_code(r).await, (400, "invalid_event".to_owned()));
    assert_eq!(error_code(post(&gateway, "", &[plain], "not json").await).await, (400, "invalid_json".to_owned()));
    let r = post(&gateway, "", &[("content-type", "text/plain; charset=iso-8859-1")], event(Uuid::now_v7())).await;
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".to_owned()));
    let r = post(&gateway, "", &[("content-type", "application/x-www-form-urlencoded")], "type=a").await;
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".to_owned()));
    assert_eq!(topic_ids(&env), ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_in_the_query_string_works_and_never_reaches_the_debug_log() {
    let env = TestEnv::new(1).await;
    let key = "query-key-5f2a9c";
    let wrong = "wrong-key-77e1d0";
    let gateway = ready_gateway(
        &env,
        &["--api-keys", key, "--cors-allow-origins", SHOP, "--log-filter", "debug", "--log-format", "json"],
    )
    .await;
    let json = ("content-type", "application/json");
    let id = Uuid::now_v7();
    let r = post(&gateway, &format!("?api_key={key}"), &[json, ("origin", SHOP)], event(id)).await;
    assert_cors(&r, Some(SHOP), "202");
    assert_eq!(r.status(), 202);
    for (query, headers, status, code) in [
        (format!("?api_key={wrong}"), vec![json], 401, "unauthorized"),
        (format!("?x=1&api_key={key}"), vec![json, ("origin", EVIL)], 403, "origin_not_allowed"),
        (format!("?api_key={key}"), vec![("content-type", "text/csv")], 415, "unsupported_media_type"),
        (format!("?api_key={key}&other={wrong}"), vec![json], 400, "invalid_json"),
        (format!("/nope?api_key={key}"), vec![json], 404, "not_found"),
    ] {
        let body = if code == "invalid_json" { "{".to_owned() } else { event(Uuid::now_v7()) };
        let r = post(&gateway, &query, &headers, body).await;
        assert_eq!(error_code(r).await, (status, code.to_owned()), "{query}");
    }
    // A bearer token wins over the query parameter.
    let r = post(
        &gateway,
        &format!("?api_key={key}"),
        &[json, ("authorization", &format!("Bearer {wrong}"))],
        event(Uuid::now_v7()),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(topic_ids(&env), HashSet::from([id]));

    let logs = gateway.logs();
    assert!(logs.contains("\"level\":\"DEBUG\""), "the gateway logged at debug level:\n{logs}");
    assert!(logs.contains("request refused"), "refusals were logged:\n{logs}");
    for secret in [key, wrong, "/v1/events?", "other="] {
        assert!(!logs.contains(secret), "{secret:?} reached the log:\n{logs}");
    }
}

fn keys_file(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.toml", random_name("sluice-keys")));
    std::fs::write(&path, text).expect("write the keys file");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keys_file_key_is_accepted_only_from_its_origins_at_its_own_rate() {
    let env = TestEnv::new(1).await;
    let file = keys_file(&format!(
        r#"
        [[key]]
        name = "website"
        key = "pk-web-3b1c"
        allowed_origins = ["{SHOP}"]
        rate_limit = 0.01
        rate_limit_burst = 2

        [[key]]
        name = "backend"
        key = "sk-backend-9d8e"
        rate_limit = 0
        "#
    ));
    let file_arg = file.to_str().expect("utf-8 path");
    let gateway = ready_gateway(
        &env,
        &[
            "--api-keys-file",
            file_arg,
            "--api-keys",
            "plain-key-4c4c",
            "--cors-allow-origins",
            &format!("{SHOP},{BLOG}"),
            "--rate-limit",
            "0.01",
            "--rate-limit-burst",
            "1",
        ],
    )
    .await;
    let plain = ("content-type", "text/plain");
    let mut accepted = HashSet::new();
    let mut send = |query: &'static str, origin: Option<&'static str>, status: u16| {
        let id = Uuid::now_v7();
        let gateway = &gateway;
        let headers: Vec<(&str, &str)> = origin.map(|o| vec![plain, ("origin", o)]).unwrap_or(vec![plain]);
        if status == 202 {
            accepted.insert(id);
        }
        async move {
            let r = post(gateway, query, &headers, event(id)).await;
            assert_eq!(r.status().as_u16(), status, "{query} from {origin:?}");
            if origin.is_some() {
                // Every answer to an origin --cors-allow-origins allows has the CORS headers.
                assert_eq!(header_of(&r, "access-control-allow-origin").as_deref(), origin);
            }
            let body: Value = r.json().await.expect("json");
            body["error"]["code"].as_str().map(str::to_owned)
        }
    };
    // The website key: from its origin and from servers; another allowed origin is refused,
    // and so is a disallowed one (by --cors-allow-origins first).
    assert_eq!(send("?api_key=pk-web-3b1c", Some(SHOP), 202).await, None);
    assert_eq!(send("?api_key=pk-web-3b1c", Some(BLOG), 403).await.as_deref(), Some("origin_not_allowed"));
    assert_eq!(send("?api_key=pk-web-3b1c", None, 202).await, None);
    // Its own bucket (burst 2) is now empty, whatever the gateway's default.
    assert_eq!(send("?api_key=pk-web-3b1c", Some(SHOP), 429).await.as_deref(), Some("rate_limited"));
    // The backend key has no limit (rate_limit = 0) and no origins: any allowed origin.
    for _ in 0..5 {
        assert_eq!(send("?api_key=sk-backend-9d8e", Some(BLOG), 202).await, None);
    }
    // The --api-keys key: the gateway's --rate-limit (burst 1), any allowed origin.
    assert_eq!(send("?api_key=plain-key-4c4c", Some(BLOG), 202).await, None);
    assert_eq!(send("?api_key=plain-key-4c4c", Some(SHOP), 429).await.as_deref(), Some("rate_limited"));
    assert_eq!(send("?api_key=nope", Some(SHOP), 401).await.as_deref(), Some("unauthorized"));
    assert_eq!(topic_ids(&env), accepted);
    let logs = gateway.logs();
    assert!(logs.contains("website") && logs.contains("backend"), "the key names are logged at start:\n{logs}");
    for secret in ["pk-web-3b1c", "sk-backend-9d8e", "plain-key-4c4c"] {
        assert!(!logs.contains(secret), "{secret} reached the log");
    }
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_keys_file_or_origin_list_stops_the_gateway_at_start_with_what_to_fix() {
    let env = TestEnv::new(1).await;
    let broken = keys_file("[[key]]\nname = \"web\"\nallowed_origins = [\"shop.example\"]\nrate = 3\n");
    let no_key = keys_file("[[key]]\nname = \"web\"\nallowed_origins = [\"shop.example\"]\n");
    let outside = keys_file(&format!("[[key]]\nname = \"web\"\nkey = \"k\"\nallowed_origins = [\"{EVIL}\"]\n"));
    let path = |p: &std::path::PathBuf| p.to_str().expect("utf-8").to_owned();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (vec!["--api-keys-file".into(), path(&broken)], vec!["unknown field `rate`"]),
        (
            vec!["--api-keys-file".into(), path(&no_key)],
            vec!["key \"web\": has no key", "origin \"shop.example\" is not an origin"],
        ),
        (
            vec!["--api-keys-file".into(), path(&outside), "--cors-allow-origins".into(), SHOP.into()],
            vec!["allows https://evil.example, which --cors-allow-origins does not"],
        ),
        (vec!["--api-keys-file".into(), "/no/such/keys.toml".into()], vec!["/no/such/keys.toml: cannot be read"]),
        (vec!["--cors-allow-origins".into(), format!("*,{SHOP}")], vec!["`*` allows every origin"]),
        (vec!["--cors-allow-origins".into(), "shop.example".into()], vec!["write scheme://host[:port]"]),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut gateway = env.gateway(&args);
        let status = gateway.wait_exit(Duration::from_secs(20)).await;
        assert_eq!(status.code(), Some(2), "{args:?}");
        let logs = gateway.logs();
        for text in says {
            assert!(logs.contains(text), "{args:?}: the log says {text:?}:\n{logs}");
        }
        assert!(!logs.contains("\"k\""), "no secret in the error");
    }
    for file in [broken, no_key, outside] {
        let _ = std::fs::remove_file(file);
    }
}

/// The Segment endpoints sit behind the same layer: a page (analytics.js posts `text/plain` to
/// skip the preflight) from an allowed origin writes through `/v1/batch` with CORS headers on
/// the answer; another origin is refused and produces nothing.
#[tokio::test(flavor = "multi_thread")]
async fn segment_endpoints_answer_preflights_and_take_text_plain_from_allowed_origins_only() {
    let env = TestEnv::new(1).await;
    let gateway = ready_gateway(&env, &["--cors-allow-origins", SHOP, "--api-keys", "wk"]).await;
    for path in ["/v1/batch", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"] {
        let r = Client::new()
            .request(Method::OPTIONS, gateway.url(path))
            .header("access-control-request-method", "POST")
            .header(header::ORIGIN, SHOP)
            .send()
            .await
            .expect("options");
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(header_of(&r, "access-control-allow-origin").as_deref(), Some(SHOP), "{path}");
    }
    let message_id = Uuid::now_v7();
    let body = json!({"batch": [{"type": "track", "event": "Viewed", "messageId": message_id, "anonymousId": "a1"}],
        "writeKey": "wk"})
    .to_string();
    let send = |origin: &'static str| {
        Client::new()
            .post(gateway.url("/v1/batch"))
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::ORIGIN, origin)
            .body(body.clone())
            .send()
    };
    let r = send(EVIL).await.expect("post");
    assert_cors(&r, None, "another origin");
    assert_eq!(error_code(r).await, (403, "origin_not_allowed".to_owned()));
    assert!(topic_ids(&env).is_empty(), "nothing produced for another origin");
    let r = send(SHOP).await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    assert_cors(&r, Some(SHOP), "allowed origin");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"success": true}));
    assert_eq!(topic_ids(&env), HashSet::from([message_id]));
}
