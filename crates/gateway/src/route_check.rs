//! `--routes`: the gateway refuses what the sinker would dead-letter.
//!
//! Per event, after `Event::from_api`: [`RoutesFile::check_event`] (the routes crate's
//! precomputed matcher, then each matched route's declared `type` and `required = true`, with
//! the same conversion code the sinker writes rows with). Its refusal becomes:
//! - no matching route: 400 `no_route`;
//! - a declared type or required path failed: 400 `invalid_event`, the message naming route,
//!   column, path and what was found, and the body's `route`, `column` and `path` fields.
//!
//! Invariant: with routes whose declared types are the columns' types (and `required = true`
//! exactly on the NOT NULL columns without a default), an event the gateway accepts is one the
//! sinker maps to a row for every route it matches (tested below).

use sluice_routes::Refusal;

use crate::error::{ApiError, Position, RouteColumn};

/// The answer for an event at `at` that `routes.check_event` refused.
pub fn refused(refusal: Refusal, at: Position) -> ApiError {
    match refusal {
        Refusal::NoRoute { .. } => ApiError::NoRoute { message: at.prefix(&refusal.to_string()), at },
        Refusal::Invalid(error) => ApiError::InvalidEvent {
            message: at.prefix(&error.to_string()),
            at,
            column: Some(Box::new(RouteColumn { route: error.route, column: error.column, path: error.path })),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};
    use sluice_core::Event;
    use sluice_routes::{ColumnInfo, ColumnType, MappingProblem, RecordError, ResolvedRoutes};
    use uuid::Uuid;

    use sluice_routes::RoutesFile;

    use super::*;

    /// Every column declares its type; `required = true` exactly where the table's column
    /// would be NOT NULL without a default.
    const FILE: &str = r#"
[[route]]
name = "typed"
types = ["t.*"]
table = "typed"
[route.columns]
n = { path = "data.n", type = "integer" }
amount = { path = "data.amount", type = "numeric" }
ref = { path = "data.ref", type = "uuid" }
at = { path = "data.at", type = "timestamptz" }
flag = { path = "data.flag", type = "boolean" }
tags = { path = "data.tags", type = "text[]" }
who = { path = "data.who", type = "text", required = true }

[[route]]
name = "counters"
types = ["t.count"]
table = "counters"
mode = "upsert"
key = ["id"]
[route.columns]
id = { path = "data.id", type = "bigint" }
n = { path = "data.n", type = "integer" }
"#;

    fn file() -> RoutesFile {
        RoutesFile::parse(FILE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The sinker's routes for tables whose column types are the declared ones.
    fn sinker_routes() -> ResolvedRoutes {
        let file = file();
        let info = file
            .routes
            .iter()
            .map(|route| {
                route
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        ty: c.declared.unwrap_or(ColumnType::TEXT),
                        nullable: !c.required && !route.key.contains(&c.name),
                        has_default: false,
                        modifier: sluice_routes::Modifier::None,
                    })
                    .collect()
            })
            .collect();
        ResolvedRoutes::resolve(file, info).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn event(event_type: &str, data: Map<String, Value>) -> Event {
        let at: DateTime<Utc> = "2026-01-31T12:00:00Z".parse().expect("a time");
        Event { id: Uuid::nil(), event_type: event_type.to_owned(), key: None, ts: at, received_at: at, data }
    }

    #[test]
    fn refusals_become_no_route_and_invalid_event_with_route_column_and_path() {
        let f = file();
        let no_route = f.check_event(&event("other", Map::new())).expect_err("no route");
        let err = refused(no_route, Position::Line(4));
        assert_eq!(err.code(), "no_route");
        assert_eq!(
            err.body(),
            json!({"error": {"code": "no_route", "line": 4, "message": "line 4: no route takes event type \"other\": \
                add a route for it, or one with types = [\"*\"]"}})
        );
        let Value::Object(data) = json!({"n": 1.5, "who": "ann"}) else { unreachable!() };
        let invalid = f.check_event(&event("t.x", data)).expect_err("1.5 is no integer");
        let err = refused(invalid, Position::Index(2));
        assert_eq!(
            err.body(),
            json!({"error": {"code": "invalid_event", "index": 2, "route": "typed", "column": "n", "path": "data.n",
                "message": "event 2: route typed: column n (path data.n): expected integer (a JSON integer in \
                -2147483648..2147483647 or a string holding one), found a number (1.5)"}})
        );
    }

    /// Values for one field: good and bad for each declared type, null, and missing (None).
    fn value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            any::<i32>().prop_map(|n| Some(json!(n))),
            any::<i64>().prop_map(|n| Some(json!(n))),
            any::<i64>().prop_map(|n| Some(json!(n.to_string()))),
            Just(Some(json!(1.5))),
            Just(Some(json!(2.0))),
            Just(Some(json!("abc"))),
            Just(Some(json!("12.50"))),
            Just(Some(json!("1e400"))),
            Just(Some(json!("0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b"))),
            Just(Some(json!("0190b7a4-6b1e-7c4e-9f3a"))),
            Just(Some(json!("2026-01-31T12:00:00Z"))),
            Just(Some(json!("2026-01-31 12:00:00"))),
            Just(Some(json!(true))),
            Just(Some(json!("true"))),
            Just(Some(json!(["a", "b"]))),
            Just(Some(json!(["a", 1]))),
            Just(Some(json!([null]))),
            Just(Some(json!({"a": 1}))),
            "[a-z]{0,4}".prop_map(|s| Some(json!(s))),
        ]
    }

    /// Values that fit the column named `name` (or leave it out): most events should pass.
    fn fitting(name: &str) -> BoxedStrategy<Option<Value>> {
        let fit: BoxedStrategy<Value> = match name {
            "n" => prop_oneof![any::<i32>().prop_map(|n| json!(n)), any::<i32>().prop_map(|n| json!(n.to_string()))]
                .boxed(),
            "amount" => prop_oneof![
                any::<i64>().prop_map(|n| json!(n)),
                (any::<i32>(), 0..100u8).prop_map(|(a, b)| json!(format!("{a}.{b:02}"))),
                Just(json!(1.5)),
            ]
            .boxed(),
            "ref" => any::<u128>().prop_map(|n| json!(Uuid::from_u128(n).to_string())).boxed(),
            "at" => (0..4_000_000_000i64)
                .prop_map(|s| json!(DateTime::from_timestamp(s, 0).expect("in range").to_rfc3339()))
                .boxed(),
            "flag" => any::<bool>().prop_map(|b| json!(b)).boxed(),
            "tags" => proptest::collection::vec("[a-z]{0,3}", 0..3).prop_map(|v| json!(v)).boxed(),
            "who" => "[a-z ]{0,6}".prop_map(|s| json!(s)).boxed(),
            _ => any::<i64>().prop_map(|n| json!(n)).boxed(),
        };
        prop_oneof![6 => fit.prop_map(Some), 1 => Just(None), 1 => Just(Some(Value::Null)), 1 => value()].boxed()
    }

    fn event_data() -> impl Strategy<Value = Map<String, Value>> {
        let names = ["n", "amount", "ref", "at", "flag", "tags", "who", "id"];
        names.map(fitting).prop_map(move |values| {
            names.iter().zip(values).filter_map(|(name, v)| v.map(|v| ((*name).to_owned(), v))).collect()
        })
    }

    proptest! {
        /// The gateway accepts exactly what the sinker maps; when both refuse, the gateway's
        /// answer names the route, column and path of the sinker's first mapping error.
        #[test]
        fn the_gateway_accepts_what_the_sinker_maps(data in event_data(), counter in any::<bool>()) {
            let event = event(if counter { "t.count" } else { "t.other" }, data);
            let gateway = file().check_event(&event);
            let sinker = sinker_routes().ops_for_event(0, &event);
            match (&gateway, &sinker) {
                (Ok(()), Ok(ops)) => prop_assert_eq!(ops.len(), if counter { 2 } else { 1 }),
                (Err(Refusal::Invalid(refusal)), Err(RecordError::Mapping(errors))) => {
                    // The problem's wording differs for `required` (the file) and NOT NULL (the table).
                    let first = &errors[0];
                    prop_assert_eq!(
                        (&refusal.route, &refusal.column, &refusal.path),
                        (&first.route, &first.column, &first.path)
                    );
                    if matches!(refusal.problem, MappingProblem::Convert(_)) {
                        prop_assert_eq!(refusal, first, "one conversion, one message");
                    }
                }
                _ => prop_assert!(false, "gateway {:?}, sinker {:?}", gateway, sinker),
            }
        }
    }
}
