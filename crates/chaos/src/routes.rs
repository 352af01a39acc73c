//! The routes profile's workload (`--profile routes`, `routes-short`): three event types routed
//! into two user tables next to the raw `events` table, through the gateway and the sinkers
//! both running with `--routes`.
//!
//! - `page.viewed`: inserted into `chaos_views`, keyed by the event id, and into
//!   `chaos_view_log`, a table without a key (a plain insert: exactly once per record because
//!   the partition's offset is fenced in the same transaction);
//! - `order.updated`: upserted into `chaos_orders`, keyed by `order_id`, guarded by `version`
//!   (each order's versions increase in the order the load sends them);
//! - `order.deleted`: deletes the order's row from `chaos_orders`;
//! - every event of those types also goes into `events` (the route `raw`).
//!
//! Order events carry the record key `order-<id>`, so all of an order's events are in one
//! partition in the order they were accepted: a delete the load sends after its order's last
//! upsert was answered 202 is written after it. The harness creates the tables (DDL below)
//! before the first sinker starts and writes the routes file into the run's log directory.

use serde_json::{json, Value};
use uuid::Uuid;

/// The user tables, created by the harness (sluice never creates them).
pub const DDL: &str = "
CREATE TABLE chaos_views (
    view_id   uuid        PRIMARY KEY,
    user_id   bigint      NOT NULL,
    path      text        NOT NULL,
    viewed_at timestamptz NOT NULL
);
CREATE TABLE chaos_view_log (
    view_id   uuid        NOT NULL,
    user_id   bigint      NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE chaos_orders (
    order_id   bigint        PRIMARY KEY,
    version    bigint        NOT NULL,
    total      numeric(14,2) NOT NULL,
    status     text          NOT NULL,
    updated_at timestamptz   NOT NULL
);
";

/// The tables a `LockTable` fault takes its lock on in this profile (user tables, not `events`).
pub const USER_TABLES: [&str; 2] = ["chaos_views", "chaos_orders"];

/// The routes file both the gateway and the sinkers load. The declared types make the gateway
/// refuse (400) what the sinker would dead-letter as `mapping_failed`.
pub const ROUTES_TOML: &str = r#"
[[route]]
name = "raw"
types = ["page.*", "order.*"]
table = "events"
key = ["id"]
[route.columns]
id = "id"
type = "type"
key = "key"
ts = "ts"
received_at = "received_at"
data = "data"

[[route]]
name = "views"
types = ["page.viewed"]
table = "chaos_views"
key = ["view_id"]
[route.columns]
view_id = "id"
user_id = { path = "data.user_id", type = "bigint", required = true }
path = { path = "data.path", type = "text", required = true }
viewed_at = "ts"

[[route]]
name = "view_log"
types = ["page.viewed"]
table = "chaos_view_log"
[route.columns]
view_id = "id"
user_id = "data.user_id"

[[route]]
name = "orders"
types = ["order.updated"]
table = "chaos_orders"
mode = "upsert"
key = ["order_id"]
version = "version"
[route.columns]
order_id = { path = "data.order_id", type = "bigint", required = true }
version = { path = "data.version", type = "bigint", required = true }
total = { path = "data.total", type = "numeric", required = true }
status = { path = "data.status", type = "text", required = true }
updated_at = "ts"

[[route]]
name = "orders_deleted"
types = ["order.deleted"]
table = "chaos_orders"
mode = "delete"
key = ["order_id"]
[route.columns]
order_id = { path = "data.order_id", type = "bigint", required = true }
"#;

/// Order ids of poison records: above every id the load uses, so a row with one is a stranger.
pub const POISON_ORDER_ID: i64 = 9_000_000_000;

/// The `total` an order's row holds at `version` (as PostgreSQL prints numeric(14,2)): a row's
/// columns must all come from the one event whose version it holds.
pub fn total(order_id: i64, version: i64) -> String {
    format!("{version}.{:02}", order_id.rem_euclid(100))
}

/// The `status` an order's row holds at `version`.
pub fn status(version: i64) -> String {
    format!("v{version}")
}

pub fn page_view(id: Uuid, user_id: i64) -> Value {
    json!({"id": id, "type": "page.viewed", "key": format!("u{user_id}"),
           "data": {"user_id": user_id, "path": format!("/p/{}", user_id % 17)}})
}

pub fn order_updated(id: Uuid, order_id: i64, version: i64) -> Value {
    json!({"id": id, "type": "order.updated", "key": order_key(order_id),
           "data": {"order_id": order_id, "version": version, "total": total(order_id, version), "status": status(version)}})
}

pub fn order_deleted(id: Uuid, order_id: i64) -> Value {
    json!({"id": id, "type": "order.deleted", "key": order_key(order_id), "data": {"order_id": order_id}})
}

fn order_key(order_id: i64) -> String {
    format!("order-{order_id}")
}

/// Poison records of the routes profile, produced straight to the topic (the gateway would
/// refuse them): a version that is not a number (`mapping_failed`) and a type no route takes
/// (`no_route`). Returns the record's value and the dead-letter reason it must get.
pub fn poison(kind: usize, marker: &str) -> (String, &'static str) {
    let id = Uuid::now_v7();
    if kind % 2 == 0 {
        let value = json!({"id": id, "type": "order.updated", "key": order_key(POISON_ORDER_ID),
            "data": {"order_id": POISON_ORDER_ID, "version": "not-a-number", "total": "1", "status": "x", "marker": marker}});
        (value.to_string(), "mapping_failed")
    } else {
        (json!({"id": id, "type": "cart.cleared", "data": {"marker": marker}}).to_string(), "no_route")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_file_parses_and_routes_each_type() {
        let file = sluice_routes::RoutesFile::parse(ROUTES_TOML).expect("the chaos routes file parses");
        let routed = |t: &str| file.matching(t).map(|i| file.routes[i].name.clone()).collect::<Vec<_>>();
        assert_eq!(routed("page.viewed"), ["raw", "views", "view_log"]);
        assert_eq!(routed("order.updated"), ["raw", "orders"]);
        assert_eq!(routed("order.deleted"), ["raw", "orders_deleted"]);
        assert!(routed("cart.cleared").is_empty(), "the no_route poison matches no route");
    }

    #[test]
    fn the_load_s_events_pass_the_gateway_s_checks() {
        let file = sluice_routes::RoutesFile::parse(ROUTES_TOML).expect("parses");
        for value in
            [page_view(Uuid::now_v7(), 5), order_updated(Uuid::now_v7(), 42, 3), order_deleted(Uuid::now_v7(), 42)]
        {
            let event = sluice_core::Event::from_api(value.clone(), chrono::Utc::now()).expect("a valid event");
            assert!(file.check_event(&event).is_ok(), "{value}");
        }
        let (bad, reason) = poison(0, "m");
        let event = sluice_core::Event::from_api(serde_json::from_str(&bad).expect("json"), chrono::Utc::now())
            .expect("a valid event");
        assert!(file.check_event(&event).is_err(), "the mapping_failed poison is refused by the declared types");
        assert_eq!(reason, "mapping_failed");
        assert_eq!(total(1234, 7), "7.34");
    }
}
