//! `gateway --routes`: the real binary and a real broker. Events that match no route, or fail a
//! `type` or `required = true` their routes declare, are refused with exact error bodies, all or
//! nothing per request; the topic holds exactly the events answered 202.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use rdkafka::Message;
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{bin_dir, free_port, random_name, Proc, TestEnv};

const WAIT: Duration = Duration::from_secs(30);

/// A route declaring every type the issue names and a required column, and a second route that
/// `order.paid` also takes (an event is checked against every route it matches).
pub const ROUTES: &str = r#"
[[route]]
name = "orders"
types = ["order.*"]
table = "shop.orders"
[route.columns]
qty = { path = "data.qty", type = "integer" }
amount = { path = "data.amount", type = "numeric" }
ref = { path = "data.ref", type = "uuid" }
placed_at = { path = "data.placed_at", type = "timestamptz" }
paid = { path = "data.paid", type = "boolean" }
tags = { path = "data.tags", type = "text[]" }
customer = { path = "data.customer.id", type = "text", required = true }
note = "data.note"

[[route]]
name = "payments"
types = ["order.paid"]
table = "shop.payments"
mode = "upsert"
key = ["order_ref"]
[route.columns]
order_ref = { path = "key", type = "text" }
"#;

/// Writes a routes file where the gateway can read it.
pub fn routes_file(text: &str) -> PathBuf {
    let dir = bin_dir().join("e2e-routes");
    std::fs::create_dir_all(&dir).expect("routes dir");
    let path = dir.join(format!("{}.toml", random_name("routes")));
    std::fs::write(&path, text).expect("write the routes file");
    path
}

async fn post(gateway: &Proc, content_type: &str, body: String) -> (StatusCode, Value) {
    let r = Client::new()
        .post(gateway.url("/v1/events"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    (r.status(), r.json().await.expect("a JSON answer"))
}

fn ids_of(accepted: &Value) -> Vec<String> {
    accepted["ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("an id").to_owned()).collect()
}

/// An `order.created` whose every declared column holds a good value, with `change` applied.
fn order(change: impl FnOnce(&mut Value)) -> Value {
    let mut event = json!({
        "type": "order.created",
        "data": {
            "qty": 3,
            "amount": "12.50",
            "ref": "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b",
            "placed_at": "2026-01-31T12:00:00Z",
            "paid": false,
            "tags": ["gift", "express"],
            "customer": {"id": "c-17"},
            "note": 5
        }
    });
    change(&mut event);
    event
}

fn set(path: &'static str, value: Value) -> impl FnOnce(&mut Value) {
    move |event| event["data"][path] = value
}

const INTEGER: &str = "expected integer (a JSON integer in -2147483648..2147483647 or a string holding one)";
const NUMERIC: &str = "expected numeric (a JSON number or a string holding a decimal number)";
const UUID: &str = "expected uuid (a string in the hyphenated form 0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b)";
const TIMESTAMPTZ: &str = "expected timestamp with time zone (an RFC 3339 string such as 2026-01-31T12:00:00Z, \
    between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in UTC)";
const BOOLEAN: &str = "expected boolean (true or false)";
const TEXT_ARRAY: &str = "expected text[] (a JSON array whose items are each text (a string))";

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_refuses_what_the_routes_would_dead_letter() {
    let env = TestEnv::new(2).await;
    let routes = routes_file(ROUTES);
    let routes_arg = routes.to_str().expect("a UTF-8 path");
    let mut gateway = env.gateway(&["--routes", routes_arg]);
    gateway.wait_ready("/readyz", WAIT).await;
    let mut accepted: Vec<String> = Vec::new();

    // Events passing every declared type: numbers as strings, nulls and missing optional paths,
    // undeclared columns with anything in them.
    let good = [
        order(|_| {}),
        order(set("qty", json!("-7"))),
        order(|e| {
            let data = e["data"].as_object_mut().expect("data");
            for optional in ["qty", "amount", "ref", "placed_at", "paid", "tags"] {
                data.remove(optional);
            }
            data.insert("note".into(), json!({"anything": [1, "x"]}));
        }),
        order(|e| {
            for optional in ["qty", "amount", "ref", "placed_at", "paid", "tags"] {
                e["data"][optional] = Value::Null;
            }
        }),
        order(|e| {
            e["type"] = json!("order.paid");
            e["key"] = json!("o-1");
        }),
    ];
    for event in good {
        let (status, body) = post(&gateway, "application/json", event.to_string()).await;
        assert_eq!(status, 202, "{event}: {body}");
        accepted.extend(ids_of(&body));
    }

    // One refusal per declared type, and the required column missing or null.
    let invalid = |column: &str, path: &str, problem: String| {
        json!({"error": {
            "code": "invalid_event",
            "message": format!("event 0: route orders: column {column} (path {path}): {problem}"),
            "index": 0,
            "route": "orders",
            "column": column,
            "path": path,
        }})
    };
    let cases = [
        (order(set("qty", json!(1.5))), invalid("qty", "data.qty", format!("{INTEGER}, found a number (1.5)"))),
        (
            order(set("amount", json!("abc"))),
            invalid("amount", "data.amount", format!("{NUMERIC}, found a string (\"abc\")")),
        ),
        (
            order(set("ref", json!("0190b7a4-6b1e-7c4e"))),
            invalid("ref", "data.ref", format!("{UUID}, found a string (\"0190b7a4-6b1e-7c4e\")")),
        ),
        (
            order(set("placed_at", json!("2026-01-31 12:00:00"))),
            invalid("placed_at", "data.placed_at", format!("{TIMESTAMPTZ}, found a string (\"2026-01-31 12:00:00\")")),
        ),
        (
            order(set("paid", json!("true"))),
            invalid("paid", "data.paid", format!("{BOOLEAN}, found a string (\"true\")")),
        ),
        (
            order(set("tags", json!(["gift", 1]))),
            invalid("tags", "data.tags", format!("{TEXT_ARRAY}, found a number (1) at index 1")),
        ),
        (
            order(|e| {
                e["data"].as_object_mut().expect("data").remove("customer");
            }),
            invalid("customer", "data.customer.id", "missing, and the routes file says required = true".to_owned()),
        ),
        (
            order(set("customer", json!({"id": null}))),
            invalid("customer", "data.customer.id", "null, and the routes file says required = true".to_owned()),
        ),
        (
            // order.paid passes the orders route, and fails the payments route's key.
            order(|e| e["type"] = json!("order.paid")),
            json!({"error": {
                "code": "invalid_event",
                "message": "event 0: route payments: column order_ref (path key): missing, and it is a key \
                    column: every row needs its key",
                "index": 0,
                "route": "payments",
                "column": "order_ref",
                "path": "key",
            }}),
        ),
        (
            json!({"type": "user.created", "data": {}}),
            json!({"error": {
                "code": "no_route",
                "message": "event 0: no route takes event type \"user.created\": add a route for it, or one with \
                    types = [\"*\"]",
                "index": 0,
            }}),
        ),
    ];
    let refused = cases.len();
    for (event, expected) in cases {
        let (status, body) = post(&gateway, "application/json", event.to_string()).await;
        assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &expected), "{event}");
    }

    // A batch with one bad event among good ones: refused whole, the bad one named.
    let batch = json!([order(|_| {}), order(|_| {}), order(set("qty", json!(1.5))), order(|_| {})]);
    let (status, body) = post(&gateway, "application/json", batch.to_string()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {
                "code": "invalid_event",
                "message": format!("event 2: route orders: column qty (path data.qty): {INTEGER}, found a number (1.5)"),
                "index": 2,
                "route": "orders",
                "column": "qty",
                "path": "data.qty",
            }})
        )
    );
    let ndjson =
        [order(|_| {}), order(|_| {}), json!({"type": "nobody.routes.this"})].map(|e| e.to_string()).join("\n");
    let (status, body) = post(&gateway, "application/x-ndjson", ndjson).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {
                "code": "no_route",
                "message": "line 3: no route takes event type \"nobody.routes.this\": add a route for it, or one \
                    with types = [\"*\"]",
                "line": 3,
            }})
        )
    );
    // The same batch, all good, goes through whole.
    let batch = json!([order(|_| {}), order(|_| {}), order(set("qty", json!(2))), order(|_| {})]);
    let (status, body) = post(&gateway, "application/json", batch.to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 4);
    accepted.extend(ids_of(&body));

    // Without --routes the gateway is as before: any type is taken.
    let mut plain = env.gateway(&[]);
    plain.wait_ready("/readyz", WAIT).await;
    let (status, body) = post(&plain, "application/json", json!({"type": "user.created"}).to_string()).await;
    assert_eq!(status, 202, "{body}");
    accepted.extend(ids_of(&body));

    // The topic holds exactly the accepted events.
    let on_topic: BTreeSet<String> = env
        .topic_records()
        .iter()
        .map(|m| {
            let value: Value = serde_json::from_slice(m.payload().expect("a value")).expect("JSON");
            value["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    assert_eq!(accepted.len(), 10);
    assert_eq!(on_topic, accepted.into_iter().collect::<BTreeSet<_>>());

    // Refusals are counted by code.
    let errors = "gateway_request_errors_total";
    assert_eq!(gateway.metric(errors, &[("code", "invalid_event")]).await, Some(refused as f64));
    assert_eq!(gateway.metric(errors, &[("code", "no_route")]).await, Some(2.0));
    assert_eq!(gateway.metric("gateway_requests_total", &[("status", "400")]).await, Some((refused + 2) as f64));
    assert_eq!(plain.metric(errors, &[("code", "no_route")]).await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_routes_file_stops_the_gateway_at_start() {
    let bad = routes_file(
        r#"
[[route]]
name = "orders"
types = ["order.*"]
table = "shop.orders"
[route.columns]
qty = { path = "data.qty", type = "intger" }
"#,
    );
    let missing = bin_dir().join("e2e-routes").join(format!("{}.toml", random_name("absent")));
    for (file, says) in [
        (&bad, "has 1 problem:\n- route orders, columns.qty.type: unknown or unsupported type \"intger\""),
        (&missing, "cannot read the routes file"),
    ] {
        let listen = format!("127.0.0.1:{}", free_port());
        // Through the environment, GATEWAY_ROUTES.
        let env = [("GATEWAY_ROUTES", file.to_str().expect("a UTF-8 path")), ("KAFKA_BROKERS", "127.0.0.1:1")];
        let mut gateway = Proc::spawn("bad-routes-gateway", "gateway", &["--listen", &listen], &env);
        let status = gateway.wait_exit(WAIT).await;
        let logs = gateway.logs();
        assert_eq!(status.code(), Some(2), "{logs}");
        assert!(logs.contains("invalid configuration") && logs.contains(says), "{says:?} in:\n{logs}");
        assert!(logs.contains(&file.display().to_string()), "the file is named:\n{logs}");
    }
}
