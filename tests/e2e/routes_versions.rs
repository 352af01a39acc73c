//! Routes with a version (issue 12) when versions do not rise with offsets: records of one
//! order carry its versions shuffled, so only the version guard (`EXCLUDED.v >= t.v`) keeps
//! older states out. Real replays of older offsets (the same group reset to offset 0, and a
//! second group reading from the start) and crashes (failpoints around COMMIT, kill -9) must
//! end with every order at its highest version, and no update ever moves a row back.

use std::collections::BTreeMap;

use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{eventually, TestEnv},
    routes::{
        event, events_count, example_routes, metric, orders, page_views, produce, rfc3339, shop, start, t, write_file,
        Order, Record, DRAIN,
    },
};

/// Every update of `shop.orders` logged: its version before and after, and whether the row
/// changed at all.
const LOG_ORDER_UPDATES: &str = r"
CREATE TABLE shop.order_updates (
    order_id bigint      NOT NULL,
    old_at   timestamptz NOT NULL,
    new_at   timestamptz NOT NULL,
    changed  boolean     NOT NULL
);
CREATE FUNCTION shop.log_order_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shop.order_updates VALUES (OLD.order_id, OLD.updated_at, NEW.updated_at, OLD IS DISTINCT FROM NEW);
    RETURN NEW;
END $$;
CREATE TRIGGER log_order_update AFTER UPDATE ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.log_order_update();
";

/// (updates that moved a row to an older version, updates that changed a row).
async fn order_updates(env: &TestEnv) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE new_at < old_at), count(*) FILTER (WHERE changed) FROM shop.order_updates",
    )
    .fetch_one(&env.pool)
    .await
    .expect("order updates")
}

/// The records: `orders` orders with `versions` versions each, in an order where versions do
/// not rise with offsets (version `(round * 7 + order) % versions`: `versions` must not be a
/// multiple of 7), each followed by a page view. Records of one order share its key, so they
/// stay in one partition in this order. Returns the records and the view ids.
fn shuffled(customer: Uuid, orders: i64, versions: i64) -> (Vec<Record>, Vec<Uuid>) {
    assert_ne!(versions % 7, 0, "a permutation of the versions per order");
    let mut records = Vec::new();
    let mut views = Vec::new();
    for round in 0..versions {
        for o in 0..orders {
            let v = (round * 7 + o) % versions;
            let data = json!({"order_id": o, "customer": customer, "status": format!("v{v}"), "total": v, "updated_at": rfc3339(t(v))});
            records.push((o.to_string(), Some(event(Uuid::now_v7(), "order.paid", None, t(v), data))));
            let view = Uuid::now_v7();
            views.push(view);
            let data = json!({"user_id": o, "path": format!("/{round}/{o}")});
            records.push((view.to_string(), Some(event(view, "page.viewed", None, t(round), data))));
        }
    }
    (records, views)
}

/// Every order at its highest version.
fn highest(customer: Uuid, orders: i64, versions: i64) -> Vec<Order> {
    let last = versions - 1;
    (0..orders).map(|o| (o, customer, format!("v{last}"), format!("{last}.00"), false, None, t(last))).collect()
}

/// Page view ids as stored, sorted.
async fn stored_views(env: &TestEnv) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = page_views(env).await.into_iter().map(|v| v.0).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn replaying_older_offsets_never_moves_a_versioned_row_back() {
    let env = shop(2).await;
    sqlx::raw_sql(LOG_ORDER_UPDATES).execute(&env.pool).await.expect("log order updates");
    let customer = Uuid::now_v7();
    let (orders_n, versions) = (12_i64, 15_i64);
    let (records, mut views) = shuffled(customer, orders_n, versions);
    views.sort();
    let total = records.len() as i64;
    produce(&env, &records).await;

    // The first pass.
    let mut first = start(&env, &example_routes(), &["--batch-size", "8"]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    let expected = highest(customer, orders_n, versions);
    assert_eq!(orders(&env).await, expected, "every order at its highest version");
    let after_first_views = page_views(&env).await;
    assert_eq!(stored_views(&env).await, views);
    assert_eq!(events_count(&env).await, total);
    let (regressed, changed_in_first) = order_updates(&env).await;
    assert_eq!(regressed, 0, "no update moved an order back");
    assert!(changed_in_first > 0, "later versions came after earlier ones: the orders were updated");
    first.signal("TERM");
    assert!(first.wait_exit(DRAIN).await.success(), "{}", first.logs());

    // A real replay by the same group: its database progress goes back to offset 0 (as after
    // restoring a backup; the database's offset wins over Kafka's). One record per batch, so
    // no older version is folded away before it reaches the database: the guard refuses it.
    let reset = sqlx::query("UPDATE sink_offsets SET next_offset = 0 WHERE consumer_group = $1 AND topic = $2")
        .bind(&env.group)
        .bind(&env.topic)
        .execute(&env.pool)
        .await
        .expect("reset the group's progress")
        .rows_affected();
    assert_eq!(reset, 2, "one row per partition");
    let replay = start(&env, &example_routes(), &["--batch-size", "1"]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    let order_count = orders_n * versions;
    let written = |op: &'static str| {
        let replay = &replay;
        async move { metric(replay, "sinker_rows_written_total", &[("route", "orders"), ("op", op)]).await }
    };
    assert_eq!(written("inserted").await, 0.0);
    assert_eq!(written("updated").await, orders_n as f64, "only each order's highest version (a tie) is applied");
    let folded = metric(&replay, "sinker_rows_combined_total", &[("route", "orders")]).await;
    assert_eq!(written("skipped").await + folded, (order_count - orders_n) as f64, "every older version refused");
    let raw_skipped = metric(&replay, "sinker_rows_written_total", &[("route", "raw"), ("op", "skipped")]).await;
    assert_eq!(raw_skipped, total as f64, "every raw row already there");
    assert_eq!(orders(&env).await, expected);
    assert_eq!(page_views(&env).await, after_first_views, "page views as after the first pass");
    assert_eq!(events_count(&env).await, total);
    assert_eq!(order_updates(&env).await, (0, changed_in_first), "the replay moved no order back, nor changed one");

    // A second group on the same topic and tables reads every record from offset 0.
    let second = format!("{}_second", env.group);
    let _second = start(&env, &example_routes(), &["--group", &second, "--batch-size", "4"]);
    env.wait_group_at_high_watermarks(&second, DRAIN).await;
    assert_eq!(orders(&env).await, expected);
    assert_eq!(page_views(&env).await, after_first_views);
    assert_eq!(events_count(&env).await, total);
    assert_eq!(order_updates(&env).await, (0, changed_in_first), "the second group moved no order back");
    assert!(env.dlq_records().is_empty(), "nothing dead-lettered");
}

/// The example plus a keyless insert route: exactly once per record rests on the fence alone.
fn routes_with_log() -> String {
    let example = std::fs::read_to_string(crate::routes::example("routes.toml")).expect("routes.toml");
    format!(
        "{example}\n[[route]]\nname = \"page_log\"\ntypes = [\"page.viewed\"]\ntable = \"shop.page_log\"\n\
         [route.columns]\nevent_id = \"id\"\npath = \"data.path\"\n"
    )
}

#[tokio::test]
async fn kill_9_with_versions_out_of_offset_order_leaves_each_order_at_its_highest_version() {
    let env = shop(3).await;
    sqlx::raw_sql(LOG_ORDER_UPDATES).execute(&env.pool).await.expect("log order updates");
    sqlx::query("CREATE TABLE shop.page_log (event_id uuid NOT NULL, path text NOT NULL)")
        .execute(&env.pool)
        .await
        .expect("a table without a key");
    let routes = write_file(&env, &routes_with_log());
    let customer = Uuid::now_v7();
    let (orders_n, versions) = (24_i64, 30_i64);
    let (records, mut views) = shuffled(customer, orders_n, versions);
    views.sort();
    let total = records.len() as i64;
    let (first, second) = records.split_at(records.len() / 2);
    produce(&env, first).await;

    // Crashes inside a batch's transaction after every table's statement, and after COMMIT
    // before the Kafka commit; then a kill -9 mid-stream, a restart, and a second sinker.
    for failpoint in ["sinker.before_db_commit:3", "sinker.after_db_commit:3"] {
        let mut doomed =
            env.sinker_with_env(&["--routes", &routes, "--batch-size", "16"], &[("SLUICE_FAILPOINT", failpoint)]);
        let status = doomed.wait_exit(DRAIN).await;
        assert!(!status.success(), "{failpoint}: the failpoint aborts the process");
    }
    let written_before_kill = events_count(&env).await;
    assert!(written_before_kill < first.len() as i64, "crashed mid-stream ({written_before_kill})");
    let mut a = start(&env, &routes, &["--batch-size", "16"]);
    eventually(DRAIN, "more written", || async { (events_count(&env).await > written_before_kill).then_some(()) })
        .await;
    a.kill9();
    let written_at_kill = events_count(&env).await;
    produce(&env, second).await;
    let _a = start(&env, &routes, &["--batch-size", "16"]);
    eventually(DRAIN, "more written after the restart", || async {
        (events_count(&env).await > written_at_kill).then_some(())
    })
    .await;
    let _b = start(&env, &routes, &["--batch-size", "16"]);
    env.wait_offsets_at_high_watermarks(DRAIN * 2).await;

    assert_eq!(orders(&env).await, highest(customer, orders_n, versions), "every order at its highest version");
    let (regressed, _) = order_updates(&env).await;
    assert_eq!(regressed, 0, "no update moved an order back, crashes and replays included");
    assert_eq!(events_count(&env).await, total, "each event once in events");
    let log: BTreeMap<Uuid, i64> =
        sqlx::query_as::<_, (Uuid, i64)>("SELECT event_id, count(*) FROM shop.page_log GROUP BY event_id")
            .fetch_all(&env.pool)
            .await
            .expect("page log")
            .into_iter()
            .collect();
    assert_eq!(log, views.iter().map(|v| (*v, 1)).collect::<BTreeMap<_, _>>(), "each view once in the keyless table");
    assert_eq!(stored_views(&env).await, views, "each view once in page_views");
    assert!(env.dlq_records().is_empty(), "nothing dead-lettered");
}
