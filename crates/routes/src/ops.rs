//! From records to row operations: what each event (or tombstone) asks of each route it
//! matches, before write-combining (`combine.rs`) and the SQL (`sql.rs`).

use std::sync::Arc;

use sluice_core::{
    data_paths::{DataPaths, Step},
    Event,
};

use crate::{
    compare::Version,
    file::{Mode, RoutesFile},
    mapping::{ColumnInfo, MappingError, ResolveError, ResolvedRoute, Row},
    path::{Path, Segment},
    sql::{Statement, StatementKind},
    statements::Statements,
};

/// Which database row an operation touches: the table (its routes' shared
/// [`Route::table_id`](crate::file::Route::table_id)) and the key's canonical values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    pub table_id: usize,
    pub values: Vec<String>,
}

/// What an operation does to its row.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `INSERT ... ON CONFLICT (key) DO NOTHING`, or a plain insert for a keyless route.
    Insert,
    /// `INSERT ... ON CONFLICT (key) DO UPDATE`.
    Upsert,
    /// An upsert that replaces a stored row only when its version is at least the stored one
    /// (`None`: a null version, older than any).
    VersionedUpsert(Option<Version>),
    /// `DELETE` the row with this key.
    Delete,
}

/// One route's operation for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub offset: i64,
    /// The route's index in the routes file.
    pub route: usize,
    /// None for keyless insert routes: such rows are never combined.
    pub key: Option<RowKey>,
    pub action: Action,
    /// Insert and upsert: the mapped row (one value per route column). Delete: the key values
    /// in the route's `key` order, `missing` empty.
    pub row: Row,
}

/// Why a record becomes no operation at all: it goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no route takes event type {event_type:?}: add a route for it, or one with types = [\"*\"]")]
    NoRoute { event_type: String },
    /// Every route that could not map the event (at least one).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Mapping(Vec<MappingError>),
    #[error("record has no value (a tombstone), and no route has a tombstone_key to delete by")]
    NoTombstoneRoute,
}

impl RecordError {
    /// The dead-letter reason code: `no_route`, `mapping_failed`, or, for a tombstone no route
    /// takes, `no_route` too (without routes the sinker calls a tombstone `not_json`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } | Self::NoTombstoneRoute => "no_route",
            Self::Mapping(_) => "mapping_failed",
        }
    }
}

/// A routes file with every route resolved: what the sinker writes with.
#[derive(Debug, Clone)]
pub struct ResolvedRoutes {
    pub file: RoutesFile,
    /// `routes[i]` resolves `file.routes[i]`.
    pub routes: Vec<ResolvedRoute>,
    /// The paths into `data` the routes' columns read: all the sinker's decoder builds of an
    /// event's `data` (`sluice_core::pruned`); [`Self::ops_for_event`] gives the same
    /// operations for the pruned event as for the whole one.
    pub data_paths: DataPaths,
    /// Each statement built once (see `statements.rs`).
    statements: Statements,
}

impl ResolvedRoutes {
    /// Resolves every route: `info[i][j]` describes column j of route i (see
    /// [`ResolvedRoute::new`]). All problems are reported.
    pub fn resolve(file: RoutesFile, info: Vec<Vec<ColumnInfo>>) -> Result<Self, Vec<ResolveError>> {
        if info.len() != file.routes.len() {
            return Err(vec![ResolveError {
                route: "*".into(),
                table: "*".into(),
                column: "*".into(),
                message: format!("{} routes but column facts for {}", file.routes.len(), info.len()),
            }]);
        }
        let mut routes = Vec::with_capacity(info.len());
        let mut errors = Vec::new();
        for (route, info) in file.routes.iter().zip(info) {
            match ResolvedRoute::new(route.clone(), info) {
                Ok(r) => routes.push(r),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            let statements = Statements::new(routes.len());
            let data_paths = data_paths(&file);
            Ok(Self { file, routes, data_paths, statements })
        } else {
            Err(errors)
        }
    }

    /// [`sql::statement`](crate::sql::statement) for route `index`, `kind` and `missing`,
    /// built on first use and kept.
    pub fn statement(&self, index: usize, kind: StatementKind, missing: &[usize]) -> Arc<Statement> {
        self.statements.get(index, &self.routes[index], kind, missing)
    }

    /// The operations an event asks for: one per matching route, in route order. All or
    /// nothing: an event that one of its routes cannot map is refused for all of them (its
    /// dead letter can be replayed whole).
    pub fn ops_for_event(&self, offset: i64, event: &Event) -> Result<Vec<Op>, RecordError> {
        let mut ops = Vec::new();
        let mut errors = Vec::new();
        let mut matched = false;
        for index in self.file.matching(&event.event_type) {
            matched = true;
            match self.routes[index].map(event) {
                Ok(row) => ops.push(self.op(index, offset, row)),
                Err(e) => errors.push(e),
            }
        }
        if !matched {
            return Err(RecordError::NoRoute { event_type: event.event_type.clone() });
        }
        if !errors.is_empty() {
            return Err(RecordError::Mapping(errors));
        }
        Ok(ops)
    }

    /// The deletes a tombstone (a record with this key and no value) asks for: one per route
    /// with a `tombstone_key`, whatever its mode. All or nothing, as for events.
    pub fn ops_for_tombstone(&self, offset: i64, record_key: &str) -> Result<Vec<Op>, RecordError> {
        let mut ops = Vec::new();
        let mut errors = Vec::new();
        for index in self.file.tombstone_routes() {
            let route = &self.routes[index];
            match route.map_tombstone(record_key) {
                Some(Ok(key_values)) => ops.push(Op {
                    offset,
                    route: index,
                    key: route
                        .delete_identity(&key_values)
                        .map(|values| RowKey { table_id: route.route.table_id, values }),
                    action: Action::Delete,
                    row: key_values,
                }),
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
        if !errors.is_empty() {
            return Err(RecordError::Mapping(errors));
        }
        if ops.is_empty() {
            return Err(RecordError::NoTombstoneRoute);
        }
        Ok(ops)
    }

    /// The operation of a mapped row.
    pub fn op(&self, index: usize, offset: i64, row: Row) -> Op {
        let route = &self.routes[index];
        let key_of =
            |values: Option<Vec<String>>| values.map(|values| RowKey { table_id: route.route.table_id, values });
        match route.mode() {
            Mode::Insert => {
                Op { offset, route: index, key: key_of(route.row_identity(&row)), action: Action::Insert, row }
            }
            Mode::Upsert => {
                let action = match route.version_of(&row) {
                    Some(version) => Action::VersionedUpsert(version),
                    None => Action::Upsert,
                };
                Op { offset, route: index, key: key_of(route.row_identity(&row)), action, row }
            }
            Mode::Delete => {
                let key_values = route.key_values(&row);
                Op {
                    offset,
                    route: index,
                    key: key_of(route.delete_identity(&key_values)),
                    action: Action::Delete,
                    row: key_values,
                }
            }
        }
    }
}

/// The paths into `data` some route's column reads (a column's default reads nothing).
fn data_paths(file: &RoutesFile) -> DataPaths {
    let mut paths = DataPaths::new();
    for column in file.routes.iter().flat_map(|route| &route.columns) {
        if let Path::Data(segments) = &column.path {
            paths.add(segments.iter().map(|segment| match segment {
                Segment::Field(name) => Step::Field(name),
                Segment::Index(i) => Step::Index(*i),
            }));
        }
    }
    paths
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{testutil::typed_event, types::ColumnType};
    use proptest::prelude::*;
    use serde_json::json;

    fn info(ty: &str) -> ColumnInfo {
        ColumnInfo {
            ty: ColumnType::parse_declared(ty).unwrap_or_else(|e| panic!("{e}")),
            nullable: true,
            has_default: false,
            modifier: crate::types::Modifier::None,
        }
    }

    pub(crate) fn shop() -> ResolvedRoutes {
        let file = RoutesFile::parse(
            r#"
[[route]]
name = "events"
types = ["*"]
table = "events"
[route.columns]
id = "id"
type = "type"

[[route]]
name = "orders"
types = ["order.created", "order.paid"]
table = "shop.orders"
mode = "upsert"
key = ["order_id"]
version = "v"
tombstone_key = "order_id"
[route.columns]
status = "data.status"
order_id = "data.order_id"
v = "data.v"

[[route]]
name = "cancel"
types = ["order.cancelled"]
table = "shop.orders"
mode = "delete"
key = ["order_id"]
[route.columns]
order_id = "data.order_id"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        ResolvedRoutes::resolve(
            file,
            vec![
                vec![info("uuid"), info("text")],
                vec![info("text"), info("bigint"), info("integer")],
                vec![info("bigint")],
            ],
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Routes with one jsonb column per path (so a row shows exactly what each path found),
    /// for every type.
    fn reading(paths: &[String]) -> ResolvedRoutes {
        let columns: String =
            paths.iter().enumerate().map(|(i, path)| format!("c{i} = {}\n", toml_string(path))).collect();
        let file = RoutesFile::parse(&format!(
            "[[route]]\nname = \"r\"\ntypes = [\"*\"]\ntable = \"t\"\n[route.columns]\nid = \"id\"\n{columns}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let info = std::iter::once(info("uuid")).chain(paths.iter().map(|_| info("jsonb"))).collect();
        ResolvedRoutes::resolve(file, vec![info]).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn toml_string(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn pruned(routes: &ResolvedRoutes, data: serde_json::Value) -> serde_json::Value {
        let mut event = typed_event("t", data, None);
        routes.data_paths.prune(&mut event.data);
        serde_json::Value::Object(event.data)
    }

    #[test]
    fn the_decoder_builds_only_what_routes_read() {
        let data = json!({"order_id": 1, "status": "paid", "v": 2, "note": "x", "lines": [1, 2]});
        assert_eq!(pruned(&shop(), data), json!({"order_id": 1, "status": "paid", "v": 2}));
        let routes =
            reading(&["data.items[1].sku".into(), "data.\"odd key\".x".into(), "type".into(), "data.items[0]".into()]);
        assert!(!routes.data_paths.whole());
        let data =
            json!({"items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}, {}], "odd key": {"x": 1, "y": 2}, "z": 3});
        assert_eq!(pruned(&routes, data), json!({"items": [{"sku": "a", "n": 1}, {"sku": "b"}], "odd key": {"x": 1}}));
        assert!(reading(&["data.n".into(), "data".into()]).data_paths.whole());
    }

    fn data_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(|b| json!(b)),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,3}".prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("odd key")], inner, 0..3)
                    .prop_map(|m| json!(m)),
            ]
        })
    }

    fn data_path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just(".a".to_owned()),
            Just(".b".to_owned()),
            Just(".\"odd key\"".to_owned()),
            (0usize..3).prop_map(|i| format!("[{i}]")),
        ];
        prop_oneof![
            20 => (prop_oneof![Just(".a"), Just(".b"), Just(".\"odd key\"")], prop::collection::vec(segment, 0..3))
                .prop_map(|(first, rest)| format!("data{first}{}", rest.concat())),
            1 => Just("data".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The routes' operations for an event whose `data` is pruned to their paths are those
        /// for the whole event.
        #[test]
        fn pruned_events_map_as_whole_ones(
            data in prop::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("odd key"), Just("c")], data_value(), 0..4),
            paths in prop::collection::vec(data_path(), 1..5),
        ) {
            let routes = reading(&paths);
            let whole = typed_event("t", json!(data), None);
            let mut pruned = whole.clone();
            routes.data_paths.prune(&mut pruned.data);
            prop_assert_eq!(routes.ops_for_event(1, &pruned), routes.ops_for_event(1, &whole));
        }
    }

    fn values(row: &Row) -> Vec<Option<&str>> {
        row.values.iter().map(Option::as_deref).collect()
    }

    #[test]
    fn an_event_becomes_one_op_per_matching_route() {
        let routes = shop();
        let ops = routes
            .ops_for_event(7, &typed_event("order.paid", json!({"order_id": "0042", "status": "paid", "v": 3}), None))
            .expect("maps");
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].route, &ops[0].action, &ops[0].key), (0, &Action::Insert, &None));
        assert_eq!(ops[1].route, 1);
        assert_eq!(ops[1].offset, 7);
        assert_eq!(ops[1].key, Some(RowKey { table_id: 1, values: vec!["42".into()] }));
        assert_eq!(ops[1].action, Action::VersionedUpsert(Some(Version::Int(3))));
        assert_eq!(values(&ops[1].row), [Some("paid"), Some("42"), Some("3")]);

        let cancel =
            routes.ops_for_event(8, &typed_event("order.cancelled", json!({"order_id": 42}), None)).expect("maps");
        assert_eq!(cancel[1].action, Action::Delete);
        assert_eq!(cancel[1].key, ops[1].key, "one table, one key: the same row");
        assert_eq!(values(&cancel[1].row), [Some("42")]);
    }

    #[test]
    fn a_record_no_route_can_take_is_refused_whole() {
        let file =
            RoutesFile::parse("[[route]]\nname = \"a\"\ntypes = [\"a\"]\ntable = \"t\"\n[route.columns]\nx = \"id\"\n")
                .expect("valid");
        let routes = ResolvedRoutes::resolve(file, vec![vec![info("uuid")]]).expect("resolves");
        let err = routes.ops_for_event(1, &typed_event("b", json!({}), None)).expect_err("no route");
        assert_eq!(err, RecordError::NoRoute { event_type: "b".into() });
        assert_eq!(err.code(), "no_route");
        assert_eq!(routes.ops_for_tombstone(1, "k"), Err(RecordError::NoTombstoneRoute));
        assert_eq!(RecordError::NoTombstoneRoute.code(), "no_route");

        let shop = shop();
        let err = shop
            .ops_for_event(1, &typed_event("order.created", json!({"order_id": "x", "v": 1.5}), None))
            .expect_err("does not map");
        assert_eq!(err.code(), "mapping_failed");
        assert_eq!(
            err.to_string(),
            "route orders: column order_id (path data.order_id): expected bigint (a JSON integer in \
             -9223372036854775808..9223372036854775807 or a string holding one), found a string (\"x\")"
        );
    }

    #[test]
    fn tombstones_delete_through_routes_with_a_tombstone_key() {
        let routes = shop();
        let ops = routes.ops_for_tombstone(9, "42").expect("a tombstone route");
        assert_eq!(ops.len(), 1);
        assert_eq!((ops[0].route, &ops[0].action), (1, &Action::Delete));
        assert_eq!(ops[0].key, Some(RowKey { table_id: 1, values: vec!["42".into()] }));
        assert_eq!(values(&ops[0].row), [Some("42")]);
        let err = routes.ops_for_tombstone(9, "forty-two").expect_err("not an integer");
        assert_eq!(err.code(), "mapping_failed");
    }

    #[test]
    fn resolving_needs_facts_for_every_route() {
        let file = shop().file;
        let err = ResolvedRoutes::resolve(file, vec![]).expect_err("no facts");
        assert_eq!(err[0].message, "3 routes but column facts for 0");
    }
}
