//! The gateway's check: each event against the declared `type` and `required` of the routes
//! it matches, without a database.
//!
//! For each matched route, each column that declares a `type` or `required = true`:
//! - a missing path: refused when `required`, or when the column is a key column of a route
//!   with a key and has no file default (the sinker refuses those too); otherwise fine (the
//!   file default or the table's default applies);
//! - a JSON `null`: refused when `required` or a key column; otherwise fine;
//! - a value: converted to the declared type ([`convert`](mod@crate::convert)); refused when it
//!   does not convert.
//!
//! So a 202 means the event passes every declared type of every route it matches. Columns
//! without a declared type are not checked: only the sinker knows their type (from the
//! catalog), and it dead-letters what does not convert.

use sluice_core::Event;

use crate::{
    convert::convert,
    file::{Route, RoutesFile},
    mapping::{MappingError, MappingProblem},
    path::Extracted,
};

/// Why the gateway refuses an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400 `no_route`.
    #[error("no route takes event type {event_type:?}: add a route for it, or one with types = [\"*\"]")]
    NoRoute { event_type: String },
    /// 400 `invalid_event`.
    #[error(transparent)]
    Invalid(MappingError),
}

impl RoutesFile {
    /// Checks an event against every route it matches; the first problem found.
    pub fn check_event(&self, event: &Event) -> Result<(), Refusal> {
        let mut matched = false;
        for index in self.matching(&event.event_type) {
            matched = true;
            validate_declared(&self.routes[index], event).map_err(Refusal::Invalid)?;
        }
        if matched {
            Ok(())
        } else {
            Err(Refusal::NoRoute { event_type: event.event_type.clone() })
        }
    }
}

/// Checks an event against one route's declared types and required paths.
pub fn validate_declared(route: &Route, event: &Event) -> Result<(), MappingError> {
    for column in &route.columns {
        let is_key = route.key.contains(&column.name);
        if column.declared.is_none() && !column.required {
            continue;
        }
        let fail = |problem| MappingError {
            route: route.name.clone(),
            column: column.name.clone(),
            path: column.path.to_string(),
            problem,
        };
        let found = column.path.extract(event);
        let problem = match found {
            Extracted::Missing if column.required => Some(MappingProblem::RequiredMissing),
            Extracted::Missing if is_key && column.default.is_none() => Some(MappingProblem::MissingKey),
            Extracted::Missing => None,
            found if found.is_null() && column.required => Some(MappingProblem::RequiredNull),
            found => match column.declared {
                Some(ty) => match convert(found, ty) {
                    Err(e) => Some(MappingProblem::Convert(e)),
                    Ok(None) if is_key => Some(MappingProblem::NullKey),
                    Ok(_) => None,
                },
                None => None,
            },
        };
        if let Some(problem) = problem {
            return Err(fail(problem));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::typed_event;
    use serde_json::json;

    fn file() -> RoutesFile {
        RoutesFile::parse(
            r#"
[[route]]
name = "orders"
types = ["order.*"]
table = "shop.orders"
mode = "upsert"
key = ["order_id"]
[route.columns]
order_id = { path = "data.order_id", type = "bigint" }
amount = { path = "data.total", type = "numeric", required = true }
note = "data.note"
placed = { path = "data.placed", type = "timestamptz" }

[[route]]
name = "audit"
types = ["order.paid"]
table = "audit"
[route.columns]
who = { path = "data.who", type = "text", required = true }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn events_passing_every_declared_type_are_accepted() {
        let f = file();
        let ok = typed_event("order.created", json!({"order_id": 1, "total": "9.50", "note": 5}), None);
        assert_eq!(f.check_event(&ok), Ok(()), "undeclared columns are the sinker's business");
        let with_null = typed_event("order.created", json!({"order_id": "2", "total": 1, "placed": null}), None);
        assert_eq!(f.check_event(&with_null), Ok(()));
        let paid = typed_event("order.paid", json!({"order_id": 1, "total": 1, "who": "ann"}), None);
        assert_eq!(f.check_event(&paid), Ok(()));
    }

    #[test]
    fn refusals_name_route_column_and_path() {
        let f = file();
        let cases = [
            (
                "order.created",
                json!({"order_id": 1.5, "total": 1}),
                "route orders: column order_id (path data.order_id): expected bigint (a JSON integer in \
                 -9223372036854775808..9223372036854775807 or a string holding one), found a number (1.5)",
            ),
            (
                "order.created",
                json!({"total": 1}),
                "route orders: column order_id (path data.order_id): missing, and it is a key column: every row \
                 needs its key",
            ),
            (
                "order.created",
                json!({"order_id": null, "total": 1}),
                "route orders: column order_id (path data.order_id): null, and it is a key column: every row needs \
                 its key",
            ),
            (
                "order.created",
                json!({"order_id": 1}),
                "route orders: column amount (path data.total): missing, and the routes file says required = true",
            ),
            (
                "order.created",
                json!({"order_id": 1, "total": null}),
                "route orders: column amount (path data.total): null, and the routes file says required = true",
            ),
            (
                "order.created",
                json!({"order_id": 1, "total": 1, "placed": "yesterday"}),
                "route orders: column placed (path data.placed): expected timestamp with time zone (an RFC 3339 \
                 string such as 2026-01-31T12:00:00Z, between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z \
                 in UTC), found a string (\"yesterday\")",
            ),
            (
                "order.paid",
                json!({"order_id": 1, "total": 1}),
                "route audit: column who (path data.who): missing, and the routes file says required = true",
            ),
            (
                "user.created",
                json!({}),
                "no route takes event type \"user.created\": add a route for it, or one with types = [\"*\"]",
            ),
        ];
        for (event_type, data, message) in cases {
            let err = f.check_event(&typed_event(event_type, data.clone(), None)).expect_err("refused");
            assert_eq!(err.to_string(), message, "{event_type} {data}");
        }
        assert_eq!(
            f.check_event(&typed_event("user.created", json!({}), None)),
            Err(Refusal::NoRoute { event_type: "user.created".into() })
        );
    }
}
