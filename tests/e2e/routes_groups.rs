//! Two sinker groups with different routes files on one topic and one database (issue 12):
//! each group writes every record through its own routes, into its own tables, with its own
//! progress in `sink_offsets`; neither skips a record because the other wrote it.

use std::collections::BTreeSet;

use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::TestEnv,
    routes::{
        event, example_routes, metric, orders, page_views, produce, rfc3339, shop, start, t, write_file, Record, DRAIN,
    },
};

/// The second group's routes: every event into a table of ids, and each order's last status.
const PROJECTION_ROUTES: &str = r#"
[[route]]
name = "seen"
types = ["*"]
table = "projection.seen"
key = ["event_id"]
[route.columns]
event_id = "id"
type = "type"

[[route]]
name = "order_status"
types = ["order.*"]
table = "projection.order_status"
mode = "upsert"
key = ["order_id"]
[route.columns]
order_id = "data.order_id"
status = "data.status"
"#;

const PROJECTION_TABLES: &str = "
CREATE SCHEMA projection;
CREATE TABLE projection.seen (event_id uuid PRIMARY KEY, type text NOT NULL);
CREATE TABLE projection.order_status (order_id bigint PRIMARY KEY, status text NOT NULL);
";

/// `n` orders paid `versions` times each (versions rising with offsets) and a page view after
/// each, starting at version `from`: (records, every event's (id, type)).
fn records(customer: Uuid, n: i64, from: i64, versions: i64) -> (Vec<Record>, Vec<(Uuid, String)>) {
    let mut records = Vec::new();
    let mut ids = Vec::new();
    for v in from..from + versions {
        for o in 0..n {
            let id = Uuid::now_v7();
            let data = json!({"order_id": o, "customer": customer, "status": format!("v{v}"), "total": v, "updated_at": rfc3339(t(v))});
            records.push((o.to_string(), Some(event(id, "order.paid", None, t(v), data))));
            ids.push((id, "order.paid".to_owned()));
            let view = Uuid::now_v7();
            records.push((
                view.to_string(),
                Some(event(view, "page.viewed", None, t(v), json!({"user_id": o, "path": "/"}))),
            ));
            ids.push((view, "page.viewed".to_owned()));
        }
    }
    (records, ids)
}

async fn ids_in(env: &TestEnv, sql: &str) -> BTreeSet<(Uuid, String)> {
    sqlx::query_as::<_, (Uuid, String)>(sql).fetch_all(&env.pool).await.expect(sql).into_iter().collect()
}

#[tokio::test]
async fn two_groups_with_different_routes_each_write_every_record_through_their_own() {
    let env = shop(3).await;
    sqlx::raw_sql(PROJECTION_TABLES).execute(&env.pool).await.expect("the projection's tables");
    let projection_routes = write_file(&env, PROJECTION_ROUTES);
    let projection = format!("{}_projection", env.group);
    let customer = Uuid::now_v7();
    let n = 10_i64;
    let (first, mut all) = records(customer, n, 0, 6);
    produce(&env, &first).await;

    // The shop group drains first; the projection group then starts from offset 0 and the
    // second half arrives while both run.
    let shop_sinker = start(&env, &example_routes(), &["--batch-size", "16"]);
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    let projection_sinker = start(&env, &projection_routes, &["--group", &projection, "--batch-size", "16"]);
    let (second, more) = records(customer, n, 6, 6);
    produce(&env, &second).await;
    all.extend(more);
    env.wait_offsets_at_high_watermarks(DRAIN).await;
    env.wait_group_at_high_watermarks(&projection, DRAIN).await;

    let all: BTreeSet<(Uuid, String)> = all.into_iter().collect();
    let total = all.len();
    assert_eq!(total, first.len() + second.len());
    assert_eq!(ids_in(&env, "SELECT id, type FROM events").await, all, "the shop group's raw route");
    assert_eq!(ids_in(&env, "SELECT event_id, type FROM projection.seen").await, all, "the projection's route");
    let views: BTreeSet<Uuid> = all.iter().filter(|(_, ty)| ty == "page.viewed").map(|(id, _)| *id).collect();
    assert_eq!(page_views(&env).await.into_iter().map(|v| v.0).collect::<BTreeSet<_>>(), views);
    let last = 11;
    let expected: Vec<_> =
        (0..n).map(|o| (o, customer, format!("v{last}"), format!("{last}.00"), false, None, t(last))).collect();
    assert_eq!(orders(&env).await, expected, "the shop group's orders");
    let statuses: Vec<(i64, String)> =
        sqlx::query_as("SELECT order_id, status FROM projection.order_status ORDER BY order_id")
            .fetch_all(&env.pool)
            .await
            .expect("order status");
    assert_eq!(statuses, (0..n).map(|o| (o, format!("v{last}"))).collect::<Vec<_>>(), "the projection's statuses");

    // Each group counted every record as written by itself, through its own routes only.
    let inserted = |route| [("route", route), ("op", "inserted")];
    assert_eq!(metric(&shop_sinker, "sinker_rows_written_total", &inserted("raw")).await, total as f64);
    assert_eq!(metric(&projection_sinker, "sinker_rows_written_total", &inserted("seen")).await, total as f64);
    assert_eq!(shop_sinker.metric("sinker_rows_written_total", &inserted("seen")).await, None);
    assert_eq!(projection_sinker.metric("sinker_rows_written_total", &inserted("raw")).await, None);
    let groups: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT consumer_group FROM sink_offsets WHERE topic = $1 ORDER BY 1")
            .bind(&env.topic)
            .fetch_all(&env.pool)
            .await
            .expect("groups");
    assert_eq!(groups, vec![env.group.clone(), projection], "one fence per group");
    assert!(env.dlq_records().is_empty(), "nothing dead-lettered");
}
