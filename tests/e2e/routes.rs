//! Routes (issue 12): the sinker writing into the user's own tables (deploy/examples/), against
//! the real broker and PostgreSQL. Every test compares exact rows.

use std::{path::PathBuf, process::Command, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use rdkafka::Message;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{bin, eventually, header, random_name, Proc, TestEnv};

const DRAIN: Duration = Duration::from_secs(90);

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/examples").join(name)
}

fn example_routes() -> String {
    example("routes.toml").display().to_string()
}

/// A fresh environment with the sinker's migrations and the example's tables.
async fn shop(partitions: i32) -> TestEnv {
    let env = TestEnv::new(partitions).await;
    env.migrate();
    let sql = std::fs::read_to_string(example("shop.sql")).expect("shop.sql");
    sqlx::raw_sql(&sql).execute(&env.pool).await.expect("create the example's tables");
    env
}

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + seconds, 0).single().expect("a valid time")
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A record value as the gateway writes it.
#[allow(clippy::needless_pass_by_value)] // json!(...) at every call
fn event(id: Uuid, kind: &str, key: Option<&str>, ts: DateTime<Utc>, data: Value) -> Vec<u8> {
    let mut value = json!({"id": id, "type": kind, "ts": rfc3339(ts), "received_at": rfc3339(ts), "data": data});
    if let Some(key) = key {
        value["key"] = json!(key);
    }
    value.to_string().into_bytes()
}

/// Produces `(record key, value)` records in order (a None value is a tombstone).
async fn produce(env: &TestEnv, records: &[(String, Option<Vec<u8>>)]) {
    let raw: Vec<(Option<&str>, Option<&[u8]>)> =
        records.iter().map(|(k, v)| (Some(k.as_str()), v.as_deref())).collect();
    env.produce_raw(&raw).await;
}

fn start(env: &TestEnv, routes: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--routes", routes];
    args.extend_from_slice(extra);
    env.sinker(&args)
}

async fn events_count(env: &TestEnv) -> i64 {
    env.row_count().await
}

async fn metric(proc: &Proc, name: &str, labels: &[(&str, &str)]) -> f64 {
    proc.metric(name, labels).await.unwrap_or_else(|| panic!("{name}{labels:?} is exported"))
}

type PageView = (Uuid, i64, String, Option<String>, i32, Option<Vec<String>>, DateTime<Utc>, String);
type Order = (i64, Uuid, String, String, bool, Option<Value>, DateTime<Utc>);
type Cart = (String, i64, i32, f64, Option<String>, DateTime<Utc>);

async fn page_views(env: &TestEnv) -> Vec<PageView> {
    sqlx::query_as(
        "SELECT event_id, user_id, path, referrer, duration_ms, tags, viewed_at, source FROM shop.page_views ORDER BY \
         viewed_at",
    )
    .fetch_all(&env.pool)
    .await
    .expect("page views")
}

async fn orders(env: &TestEnv) -> Vec<Order> {
    sqlx::query_as(
        "SELECT order_id, customer, status, total::text, paid, items, updated_at FROM shop.orders ORDER BY order_id",
    )
    .fetch_all(&env.pool)
    .await
    .expect("orders")
}

async fn carts(env: &TestEnv) -> Vec<Cart> {
    sqlx::query_as("SELECT cart_id, user_id, items, value, last_sku, updated_at FROM shop.carts ORDER BY cart_id")
        .fetch_all(&env.pool)
        .await
        .expect("carts")
}

#[tokio::test]
async fn the_example_writes_three_event_types_into_three_tables_with_typed_values() {
    let env = shop(3).await;
    let (v1, v2, v3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let records = vec![
        (
            "u1".to_owned(),
            Some(event(
                v1,
                "page.viewed",
                Some("u1"),
                t(1),
                json!({"user_id": 1, "path": "/", "referrer": "https://example.com/", "duration_ms": 1200, "tags": ["home", "ad"]}),
            )),
        ),
        // Strings holding integers are integers; a missing duration takes the file default, a
        // missing referrer and tags are NULL.
        ("u2".to_owned(), Some(event(v2, "page.viewed", None, t(2), json!({"user_id": "2", "path": "/cart"})))),
        (
            "u1".to_owned(),
            Some(event(
                v3,
                "page.viewed",
                Some("u1"),
                t(3),
                json!({"user_id": 1, "path": "/p/1", "duration_ms": "15", "tags": []}),
            )),
        ),
        (
            "1001".to_owned(),
            Some(event(
                Uuid::now_v7(),
                "order.placed",
                Some("1001"),
                t(4),
                json!({"order_id": 1001, "customer": alice, "status": "placed", "total": 25.5, "items": [{"sku": "A", "qty": 2}], "updated_at": rfc3339(t(4))}),
            )),
        ),
        (
            "1002".to_owned(),
            Some(event(
                Uuid::now_v7(),
                "order.placed",
                Some("1002"),
                t(5),
                json!({"order_id": "1002", "customer": bob.to_string().to_uppercase(), "status": "placed", "total": "7", "updated_at": "2026-01-01T01:00:05+01:00"}),
            )),
        ),
        (
            "1001".to_owned(),
            Some(event(
                Uuid::now_v7(),
                "order.paid",
                Some("1001"),
                t(6),
                json!({"order_id": 1001, "customer": alice, "status": "paid", "total": "25.50", "paid": true, "updated_at": rfc3339(t(6))}),
            )),
        ),
        (
            "c1".to_owned(),
            Some(event(
                Uuid::now_v7(),
                "cart.updated",
                Some("c1"),
                t(7),
                json!({"user_id": 1, "items": 3, "value": 19.99, "lines": [{"sku": "A"}, {"sku": "B"}]}),
            )),
        ),
        (
            "c2".to_owned(),
            Some(event(
                Uuid::now_v7(),
                "cart.updated",
                Some("c2"),
                t(8),
                json!({"user_id": 2, "items": 0, "value": 0}),
            )),
        ),
    ];
    produce(&env, &records).await;
    let _sinker = start(&env, &example_routes(), &[]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;

    let s = |text: &str| text.to_owned();
    assert_eq!(
        page_views(&env).await,
        vec![
            (v1, 1, s("/"), Some(s("https://example.com/")), 1200, Some(vec![s("home"), s("ad")]), t(1), s("sluice")),
            (v2, 2, s("/cart"), None, 0, None, t(2), s("sluice")),
            (v3, 1, s("/p/1"), None, 15, Some(vec![]), t(3), s("sluice")),
        ]
    );
    assert_eq!(
        orders(&env).await,
        vec![
            (1001, alice, s("paid"), s("25.50"), true, None, t(6)),
            (1002, bob, s("placed"), s("7.00"), false, None, t(5)),
        ],
        "the paid event replaced the whole row (items was not in it: NULL), a later version"
    );
    assert_eq!(carts(&env).await, vec![(s("c1"), 1, 3, 19.99, Some(s("A")), t(7)), (s("c2"), 2, 0, 0.0, None, t(8))]);
    assert_eq!(events_count(&env).await, records.len() as i64, "the raw route writes every event into events");
    type Raw = (Uuid, String, Option<String>, DateTime<Utc>, Value);
    let raw: Vec<Raw> = sqlx::query_as("SELECT id, type, key, ts, data FROM events WHERE id = $1")
        .bind(v2)
        .fetch_all(&env.pool)
        .await
        .expect("raw row");
    assert_eq!(raw, vec![(v2, s("page.viewed"), None, t(2), json!({"user_id": "2", "path": "/cart"}))]);
    assert!(env.dlq_records().is_empty(), "nothing dead-lettered");
}

#[tokio::test]
async fn upserts_combine_in_a_batch_never_regress_and_deletes_and_tombstones_delete() {
    let env = shop(1).await;
    let customer = Uuid::now_v7();
    let order = |i: i64, status: &str| {
        let data =
            json!({"order_id": 7, "customer": customer, "status": status, "total": i, "updated_at": rfc3339(t(i))});
        ("7".to_owned(), Some(event(Uuid::now_v7(), "order.paid", Some("7"), t(i), data)))
    };
    // 100 updates of one row, produced before the sinker starts: one batch of exactly 100.
    let updates: Vec<_> = (0..100).map(|i| order(i, &format!("s{i}"))).collect();
    produce(&env, &updates).await;
    let sinker = start(&env, &example_routes(), &["--batch-size", "100", "--batch-timeout", "5s"]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    assert_eq!(orders(&env).await, vec![(7, customer, "s99".to_owned(), "99.00".to_owned(), false, None, t(99))]);
    let combined = metric(&sinker, "sinker_rows_combined_total", &[("route", "orders")]).await;
    assert_eq!(combined, 99.0, "99 of the 100 upserts folded into the last one");
    assert_eq!(metric(&sinker, "sinker_rows_written_total", &[("route", "orders"), ("op", "inserted")]).await, 1.0);
    assert_eq!(metric(&sinker, "sinker_rows_written_total", &[("route", "raw"), ("op", "inserted")]).await, 100.0);
    assert_eq!(metric(&sinker, "sinker_db_errors_total", &[("kind", "rejected")]).await, 0.0, "no error");

    // Older versions at later offsets: the row does not go back.
    let stale: Vec<_> = (0..10).map(|i| order(i * 5, "stale")).collect();
    produce(&env, &stale).await;
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    assert_eq!(orders(&env).await, vec![(7, customer, "s99".to_owned(), "99.00".to_owned(), false, None, t(99))]);
    let skipped = metric(&sinker, "sinker_rows_written_total", &[("route", "orders"), ("op", "skipped")]).await;
    let folded = metric(&sinker, "sinker_rows_combined_total", &[("route", "orders")]).await - 99.0;
    assert_eq!(skipped + folded, 10.0, "every stale upsert was folded or skipped by the version guard");
    assert_eq!(metric(&sinker, "sinker_rows_written_total", &[("route", "orders"), ("op", "updated")]).await, 0.0);

    // Deletes: an event through the delete route, and a tombstone through tombstone_key.
    let cart = |id: &str, items: i64| {
        let data = json!({"user_id": 1, "items": items, "value": 1.5});
        (id.to_owned(), Some(event(Uuid::now_v7(), "cart.updated", Some(id), t(items), data)))
    };
    produce(&env, &[cart("c1", 1), cart("c2", 2), cart("c3", 3)]).await;
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    assert_eq!(carts(&env).await.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["c1", "c2", "c3"]);
    let emptied = event(Uuid::now_v7(), "cart.emptied", Some("c1"), t(10), json!({}));
    produce(&env, &[("c1".to_owned(), Some(emptied)), ("c2".to_owned(), None)]).await;
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    assert_eq!(carts(&env).await, vec![("c3".to_owned(), 1, 3, 1.5, None, t(3))]);
    let deleted = metric(&sinker, "sinker_rows_written_total", &[("op", "deleted")]).await;
    assert_eq!(deleted, 2.0, "one delete event, one tombstone");
    // An upsert and a delete of one row in one batch: the delete wins; upsert after delete is
    // an upsert. The tombstone and the raw route: a tombstone is not an event, so no raw row.
    produce(&env, &[cart("c4", 4), ("c4".to_owned(), None), ("c3".to_owned(), None), cart("c3", 5)]).await;
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    assert_eq!(carts(&env).await, vec![("c3".to_owned(), 1, 5, 1.5, None, t(5))]);
    assert_eq!(events_count(&env).await, 100 + 10 + 3 + 1 + 2);
    assert!(env.dlq_records().is_empty(), "nothing dead-lettered");
}

#[tokio::test]
async fn values_that_do_not_convert_are_dead_lettered_and_the_rest_of_the_batch_is_written() {
    let env = shop(1).await;
    let customer = Uuid::now_v7();
    let good_view = Uuid::now_v7();
    let good_order =
        json!({"order_id": 1, "customer": customer, "status": "placed", "total": "3.10", "updated_at": rfc3339(t(1))});
    let mut bad_total = good_order.clone();
    bad_total["order_id"] = json!(2);
    bad_total["total"] = json!("abc");
    let mut bad_customer = good_order.clone();
    bad_customer["order_id"] = json!(3);
    bad_customer["customer"] = json!("not-a-uuid");
    let mut negative = good_order.clone();
    negative["order_id"] = json!(4);
    negative["total"] = json!(-1);
    let records = vec![
        (
            "a".to_owned(),
            Some(event(
                Uuid::now_v7(),
                "page.viewed",
                None,
                t(1),
                json!({"user_id": 1, "path": "/", "duration_ms": 1.5}),
            )),
        ),
        ("b".to_owned(), Some(event(good_view, "page.viewed", None, t(2), json!({"user_id": 1, "path": "/ok"})))),
        ("2".to_owned(), Some(event(Uuid::now_v7(), "order.placed", None, t(3), bad_total))),
        ("1".to_owned(), Some(event(Uuid::now_v7(), "order.placed", None, t(4), good_order))),
        ("3".to_owned(), Some(event(Uuid::now_v7(), "order.placed", None, t(5), bad_customer))),
        // value is NOT NULL without a default.
        (
            "c9".to_owned(),
            Some(event(Uuid::now_v7(), "cart.updated", Some("c9"), t(6), json!({"user_id": 1, "items": 1}))),
        ),
        // Maps, but the table's CHECK refuses it: isolated by halving, dead-lettered as
        // database_rejected, and written to none of its routes (not to events either).
        ("4".to_owned(), Some(event(Uuid::now_v7(), "order.placed", None, t(7), negative))),
    ];
    produce(&env, &records).await;
    let sinker = start(&env, &example_routes(), &["--batch-size", "7", "--batch-timeout", "5s"]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;

    let mut letters: Vec<(i64, String, String)> = env
        .dlq_records()
        .iter()
        .map(|m| {
            let offset = header(m, "sluice-source-offset").expect("offset header").parse().expect("an offset");
            (offset, header(m, "sluice-dlq-reason").expect("reason"), header(m, "sluice-dlq-detail").expect("detail"))
        })
        .collect();
    letters.sort();
    let expected = [
        (
            0,
            "route page_views: column duration_ms (path data.duration_ms): expected integer (a JSON integer in \
             -2147483648..2147483647 or a string holding one), found a number (1.5)",
        ),
        (
            2,
            "route orders: column total (path data.total): expected numeric (a JSON number or a string holding a \
             decimal number), found a string (\"abc\")",
        ),
        (
            4,
            "route orders: column customer (path data.customer): expected uuid (a string in the hyphenated form \
             0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b), found a string (\"not-a-uuid\")",
        ),
        (
            5,
            "route carts: column value (path data.value): missing, and the column is NOT NULL without a default: \
             send the field, or give the column a default in the routes file",
        ),
    ];
    let expected: Vec<(i64, String, String)> =
        expected.iter().map(|(o, d)| (*o, "mapping_failed".to_owned(), (*d).to_owned())).collect();
    assert_eq!(letters[..4], expected);
    assert_eq!((letters[4].0, letters[4].1.as_str()), (6, "database_rejected"));
    assert!(letters[4].2.contains("violates check constraint \"orders_total_check\""), "{}", letters[4].2);
    assert_eq!(letters.len(), 5);
    // The same dead letter keeps the original record.
    let first = env.dlq_records().into_iter().find(|m| header(m, "sluice-source-offset").as_deref() == Some("0"));
    assert_eq!(first.and_then(|m| m.key().map(<[u8]>::to_vec)), Some(b"a".to_vec()));

    let views = page_views(&env).await;
    assert_eq!(views.iter().map(|v| (v.0, v.2.as_str(), v.4)).collect::<Vec<_>>(), [(good_view, "/ok", 0)]);
    assert_eq!(orders(&env).await, vec![(1, customer, "placed".to_owned(), "3.10".to_owned(), false, None, t(1))]);
    assert_eq!(carts(&env).await, vec![]);
    assert_eq!(events_count(&env).await, 2, "all or nothing: a dead-lettered event is not in events either");
    assert_eq!(metric(&sinker, "sinker_dlq_messages_total", &[("reason", "mapping_failed")]).await, 4.0);
    assert_eq!(metric(&sinker, "sinker_dlq_messages_total", &[("reason", "database_rejected")]).await, 1.0);
}

#[tokio::test]
async fn events_and_tombstones_no_route_takes_are_dead_lettered_as_no_route() {
    let env = shop(1).await;
    let example = std::fs::read_to_string(example("routes.toml")).expect("routes.toml");
    // Only the page_views route: no catch-all, no tombstone_key.
    let start_at = example.find("[[route]]\nname = \"page_views\"").expect("the page_views route");
    let end_at = example.find("# Upsert with a version").expect("the orders route");
    let routes = write_file(&env, &example[start_at..end_at]);
    let view = Uuid::now_v7();
    let records = vec![
        ("a".to_owned(), Some(event(Uuid::now_v7(), "order.placed", None, t(1), json!({"order_id": 1})))),
        ("b".to_owned(), Some(event(view, "page.viewed", None, t(2), json!({"user_id": 1, "path": "/"})))),
        ("c".to_owned(), None),
    ];
    produce(&env, &records).await;
    let _sinker = start(&env, &routes, &[]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    let mut letters: Vec<(String, String, String)> = env
        .dlq_records()
        .iter()
        .map(|m| {
            let get = |name| header(m, name).unwrap_or_else(|| panic!("{name}"));
            (get("sluice-source-offset"), get("sluice-dlq-reason"), get("sluice-dlq-detail"))
        })
        .collect();
    letters.sort();
    assert_eq!(
        letters,
        [
            (
                "0".to_owned(),
                "no_route".to_owned(),
                "no route takes event type \"order.placed\": add a route for it, or one with types = [\"*\"]"
                    .to_owned()
            ),
            (
                "2".to_owned(),
                "no_route".to_owned(),
                "record has no value (a tombstone), and no route has a tombstone_key to delete by".to_owned()
            ),
        ]
    );
    assert_eq!(page_views(&env).await.iter().map(|v| v.0).collect::<Vec<_>>(), [view]);
    assert_eq!(events_count(&env).await, 0, "no raw route: the routes file decides everything");
}

/// A routes file with one problem per route.
const BAD_ROUTES: &str = r#"
[[route]]
name = "missing_table"
types = ["a"]
table = "shop.nope"
[route.columns]
id = "id"

[[route]]
name = "missing_column"
types = ["b"]
table = "shop.carts"
[route.columns]
cart_id = "key"
colour = "data.colour"

[[route]]
name = "no_unique_key"
types = ["c"]
table = "shop.page_views"
key = ["user_id"]
[route.columns]
event_id = "id"
user_id = "data.user_id"

[[route]]
name = "json_version"
types = ["d"]
table = "shop.orders"
mode = "upsert"
key = ["order_id"]
version = "items"
[route.columns]
order_id = "data.order_id"
items = "data.items"
"#;

const BAD_ROUTE_LINES: [&str; 4] = [
    "- route missing_table, table shop.nope: the table does not exist",
    "- route missing_column, table shop.carts, column colour: the table has no such column",
    "- route no_unique_key, table shop.page_views, column user_id: key (user_id) is not the column set of the primary \
     key or of a unique index (the table has (event_id))",
    "- route json_version, table shop.orders, column items: it is the version, but its type jsonb has no order",
];

fn write_file(env: &TestEnv, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}-{}.toml", env.name, random_name("routes")));
    std::fs::write(&path, text).expect("write the routes file");
    path.display().to_string()
}

fn routes_check(env: &TestEnv, routes: &str) -> (i32, String) {
    let output = Command::new(bin("sinker"))
        .args(["routes", "check", "--routes", routes])
        .env("DATABASE_URL", &env.database_url)
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKA_TOPIC")
        .output()
        .expect("run sinker routes check");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn routes_check_prints_the_sql_or_every_problem() {
    let env = shop(1).await;
    let (code, out) = routes_check(&env, &example_routes());
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("the routes file is good: 5 routes\n"), "{out}");
    assert!(out.contains("route orders (upsert) into shop.orders, types order.placed, order.paid\n"), "{out}");
    assert!(out.contains("    total = data.total (numeric, not null)\n"), "{out}");
    assert!(
        out.contains(
            "ON CONFLICT (\"order_id\") DO UPDATE SET \"customer\" = EXCLUDED.\"customer\", \"status\" = \
             EXCLUDED.\"status\", \"total\" = EXCLUDED.\"total\", \"paid\" = EXCLUDED.\"paid\", \"items\" = \
             EXCLUDED.\"items\", \"updated_at\" = EXCLUDED.\"updated_at\" WHERE t.\"updated_at\" IS NULL OR \
             EXCLUDED.\"updated_at\" >= t.\"updated_at\" RETURNING (t.xmax = 0) AS inserted\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  delete: DELETE FROM \"shop\".\"carts\" AS t USING UNNEST($1::text[]) AS u(\"cart_id\") WHERE \
             t.\"cart_id\" = u.\"cart_id\"::text\n"
        ),
        "{out}"
    );

    let (code, out) = routes_check(&env, &write_file(&env, BAD_ROUTES));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match the database (4 problems):\n"), "{out}");
    for line in BAD_ROUTE_LINES {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[tokio::test]
async fn the_sinker_refuses_to_start_on_a_bad_routes_file() {
    let env = shop(1).await;
    let mut sinker = start(&env, &write_file(&env, BAD_ROUTES), &[]);
    let status = sinker.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(1), "{}", sinker.logs());
    let logs = sinker.logs();
    assert!(logs.contains("the routes file does not match the database (4 problems)"), "{logs}");
    for line in BAD_ROUTE_LINES {
        assert!(logs.contains(line), "missing {line:?} in:\n{logs}");
    }

    // A file that is not valid at all: refused before any connection, naming route and field.
    let invalid = "[[route]]\nname = \"x\"\ntypes = [\"a\"]\ntable = \"shop.orders\"\nmode = \"merge\"\n";
    let mut sinker = start(&env, &write_file(&env, invalid), &[]);
    let status = sinker.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(1), "{}", sinker.logs());
    assert!(sinker.logs().contains("is not valid"), "{}", sinker.logs());
    assert_eq!(events_count(&env).await, 0);
}

/// The example plus a keyless insert route: exactly once per record rests on the fence alone.
fn routes_with_log() -> String {
    let example = std::fs::read_to_string(example("routes.toml")).expect("routes.toml");
    format!(
        "{example}\n[[route]]\nname = \"page_log\"\ntypes = [\"page.viewed\"]\ntable = \"shop.page_log\"\n\
         [route.columns]\nevent_id = \"id\"\npath = \"data.path\"\n"
    )
}

#[tokio::test]
async fn kill_9_and_a_rebalance_during_multi_table_writes_leave_exact_rows() {
    let env = shop(3).await;
    sqlx::query("CREATE TABLE shop.page_log (event_id uuid NOT NULL, path text NOT NULL)")
        .execute(&env.pool)
        .await
        .expect("a table without a key");
    let routes = write_file(&env, &routes_with_log());
    let customer = Uuid::now_v7();
    let (orders_n, per_order) = (30_i64, 40_i64);
    let mut views = Vec::new();
    let mut records = Vec::new();
    for round in 0..per_order {
        for o in 0..orders_n {
            let version = round;
            let data = json!({"order_id": o, "customer": customer, "status": format!("v{version}"), "total": version, "updated_at": rfc3339(t(version))});
            records.push((o.to_string(), Some(event(Uuid::now_v7(), "order.paid", None, t(version), data))));
            let view = Uuid::now_v7();
            views.push(view);
            let data = json!({"user_id": o, "path": format!("/{round}/{o}")});
            records.push((view.to_string(), Some(event(view, "page.viewed", None, t(round), data))));
        }
    }
    let total = records.len() as i64;
    let (first, second) = records.split_at(records.len() / 2);
    produce(&env, first).await;

    // Crashes inside a batch's transaction, after every table's statement and before COMMIT;
    // then after COMMIT, before the Kafka commit; then a kill -9 mid-stream.
    for failpoint in ["sinker.before_db_commit:4", "sinker.after_db_commit:4"] {
        let mut doomed =
            env.sinker_with_env(&["--routes", &routes, "--batch-size", "20"], &[("SLUICE_FAILPOINT", failpoint)]);
        let status = doomed.wait_exit(DRAIN).await;
        assert!(!status.success(), "{failpoint}: the failpoint aborts the process");
    }
    let written_before_kill = events_count(&env).await;
    assert!(written_before_kill < first.len() as i64, "crashed mid-stream ({written_before_kill})");
    let mut a = start(&env, &routes, &["--batch-size", "20"]);
    eventually(DRAIN, "more written", || async { (events_count(&env).await > written_before_kill).then_some(()) })
        .await;
    a.kill9();
    let written_at_kill = events_count(&env).await;
    produce(&env, second).await;
    let _a = start(&env, &routes, &["--batch-size", "20"]);
    eventually(DRAIN, "more written after the restart", || async {
        (events_count(&env).await > written_at_kill).then_some(())
    })
    .await;
    let _b = start(&env, &routes, &["--batch-size", "20"]);
    env.wait_offsets_at_high_watermarks(DRAIN * 2).await;

    assert_eq!(events_count(&env).await, total, "each event once in events");
    let (log_rows, log_ids): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM shop.page_log")
            .fetch_one(&env.pool)
            .await
            .expect("page log");
    assert_eq!((log_rows, log_ids), (views.len() as i64, views.len() as i64), "each view once in the keyless table");
    let mut stored: Vec<Uuid> = page_views(&env).await.into_iter().map(|v| v.0).collect();
    stored.sort();
    views.sort();
    assert_eq!(stored, views, "each view once in page_views");
    let last = per_order - 1;
    let expected: Vec<Order> =
        (0..orders_n).map(|o| (o, customer, format!("v{last}"), format!("{last}.00"), false, None, t(last))).collect();
    assert_eq!(orders(&env).await, expected, "every order at its last version");
    assert!(env.dlq_records().is_empty(), "nothing dead-lettered");
}
