//! The routes file: TOML, one `[[route]]` table per route.
//!
//! ```toml
//! [[route]]
//! name = "orders"                          # unique, not empty
//! types = ["order.created", "order.paid"]  # exact types, "*", or trailing "prefix.*"
//! table = "shop.orders"                    # "table" or "schema.table"
//! mode = "upsert"                          # "insert" (default), "upsert" or "delete"
//! key = ["order_id"]                       # needed by upsert and delete
//! version = "updated_at"                   # optional, upsert only
//! tombstone_key = "order_id"               # optional: a tombstone deletes the row with this key
//!
//! [route.columns]
//! order_id = "data.order_id"
//! amount = { path = "data.total", type = "numeric", required = true }
//! status = { path = "data.status", default = "new" }
//! ```
//!
//! Everything that needs no database is checked here, every problem reported at once, each
//! naming the route and the field ([`RouteProblem`]):
//! - names are unique and not empty; `types` has at least one valid pattern;
//! - `table` and column names are plain identifiers (a letter or `_`, then letters, digits, `_`
//!   or `$`, at most 63 bytes). They are used exactly as written, double-quoted in SQL: write
//!   them as the catalog stores them (lowercase, unless the table was created with quoted
//!   capitals);
//! - every route maps at least one column; paths and declared types parse; a `default` is a TOML
//!   value that converts to JSON (datetimes become their RFC 3339 text) and, when the column
//!   declares a `type`, converts to it; `required = true` and a `default` exclude each other;
//! - upsert and delete routes have a `key`; every key column of every route is mapped, once; a
//!   delete route maps its key columns and nothing else;
//! - `version` belongs to upsert routes only, is a mapped column and not a key column, and (if
//!   declared) has an orderable type; key columns (if declared) are not json, jsonb or arrays;
//! - `tombstone_key` is the route's only key column: a tombstone carries one value, the record
//!   key, and deletes the row whose key it is (on any route with that key, whatever its mode);
//! - routes into one table declare the same key (as a set of columns), or none of them does; a
//!   table upserted by a route with a `version` is upserted by no other route. Both keep
//!   write-combining exact (see `combine.rs`).

use std::{collections::HashMap, fmt, path::PathBuf};

use serde::{de, Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::{
    convert::convert,
    matcher::{Matcher, Matching, TypePattern},
    path::{Extracted, Path},
    types::ColumnType,
};

/// A validated routes file.
#[derive(Debug, Clone)]
pub struct RoutesFile {
    /// In file order. Route indexes (in [`Matching`], ops, metrics) are positions in this list.
    pub routes: Vec<Route>,
    matcher: Matcher,
}

/// One validated `[[route]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub types: Vec<TypePattern>,
    /// As written; after [`RoutesFile::resolve_tables`], schema-qualified as the catalog found
    /// it, so statements do not depend on the session's `search_path`.
    pub table: TableName,
    /// The same for every route writing one table: the index of the first of them. From the
    /// spelling of `table` when parsed; from the table's identity (its oid) after
    /// [`RoutesFile::resolve_tables`], so `orders` and `public.orders` are one table.
    pub table_id: usize,
    /// The table is partitioned (set by [`RoutesFile::resolve_tables`]): its upsert cannot
    /// return the system column `xmax`, see `sql.rs`.
    pub partitioned: bool,
    pub mode: Mode,
    /// Column names, as written (may be empty for insert routes).
    pub key: Vec<String>,
    pub version: Option<String>,
    pub tombstone_key: Option<String>,
    /// In file order.
    pub columns: Vec<ColumnSpec>,
}

/// One entry of `[route.columns]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub path: Path,
    /// Used when the path is missing from an event (not when it holds null).
    pub default: Option<Json>,
    /// `type = "..."`: the gateway validates events against it; the sinker checks that the
    /// catalog agrees.
    pub declared: Option<ColumnType>,
    /// `required = true`: the gateway refuses events where the path is missing or null.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Insert,
    Upsert,
    Delete,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Upsert => "upsert",
            Self::Delete => "delete",
        }
    }
}

/// `table` or `schema.table`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: String| format!("{text:?} is not a valid table name: {why}");
        let parts: Vec<&str> = text.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [schema, name] => (Some(*schema), *name),
            _ => return Err(invalid("write table or schema.table".to_owned())),
        };
        for part in schema.iter().chain([&name]) {
            check_identifier(part).map_err(invalid)?;
        }
        Ok(Self { schema: schema.map(str::to_owned), name: name.to_owned() })
    }

    /// `"schema"."table"` or `"table"`, for SQL.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_identifier(schema), quote_identifier(&self.name)),
            None => quote_identifier(&self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// An identifier in double quotes, embedded quotes doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

fn check_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
        return Err(format!(
            "{name:?} is not a plain identifier: use letters, digits, _ and $, starting with a letter or _"
        ));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!("{name:?} is longer than {MAX_IDENTIFIER_BYTES} bytes, which PostgreSQL truncates"));
    }
    Ok(())
}

impl Route {
    /// The position of a mapped column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The positions of the key columns in [`Route::columns`], in `key` order.
    pub fn key_indexes(&self) -> Vec<usize> {
        self.key.iter().filter_map(|k| self.column_index(k)).collect()
    }

    /// The position of the version column.
    pub fn version_index(&self) -> Option<usize> {
        self.version.as_deref().and_then(|v| self.column_index(v))
    }
}

/// Why a routes file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot read the routes file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid: {message}", describe(file))]
    Syntax { file: Option<PathBuf>, message: String },
    #[error("{} has {} problem{}:\n{}", describe(file), problems.len(), if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { file: Option<PathBuf>, problems: Vec<RouteProblem> },
}

fn describe(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!("the routes file {}", path.display()),
        None => "the routes file".to_owned(),
    }
}

/// One thing wrong with one route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route}, {field}: {message}")]
pub struct RouteProblem {
    /// The route's name, or `#n` (1-based) when it has none.
    pub route: String,
    /// `name`, `types`, `key`, `columns.amount.default`, ...
    pub field: String,
    pub message: String,
}

impl RoutesFile {
    /// Reads and validates a routes file.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, RoutesError> {
        let path = path.into();
        let text = std::fs::read_to_string(&path).map_err(|source| RoutesError::Read { path: path.clone(), source })?;
        Self::parse(&text).map_err(|error| match error {
            RoutesError::Syntax { message, .. } => RoutesError::Syntax { file: Some(path), message },
            RoutesError::Invalid { problems, .. } => RoutesError::Invalid { file: Some(path), problems },
            read @ RoutesError::Read { .. } => read,
        })
    }

    /// Parses and validates the text of a routes file.
    pub fn parse(text: &str) -> Result<Self, RoutesError> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| RoutesError::Syntax { file: None, message: e.to_string() })?;
        if raw.route.is_empty() {
            return Err(RoutesError::Syntax {
                file: None,
                message: "it has no [[route]]: a routes file needs at least one route".to_owned(),
            });
        }
        let mut problems = Vec::new();
        let names: Vec<String> = raw.route.iter().map(|r| r.name.clone()).collect();
        let labels: Vec<String> = raw
            .route
            .iter()
            .enumerate()
            .map(|(i, r)| if r.name.is_empty() { format!("#{}", i + 1) } else { r.name.clone() })
            .collect();
        let mut routes = Vec::with_capacity(raw.route.len());
        for (i, raw_route) in raw.route.into_iter().enumerate() {
            let mut problem = |field: &str, message: String| {
                problems.push(RouteProblem { route: labels[i].clone(), field: field.to_owned(), message });
            };
            if let Some(route) = validate_route(raw_route, i, &mut problem) {
                routes.push(route);
            }
        }
        check_names(&names, &labels, &mut problems);
        if problems.is_empty() {
            let tables: Vec<TableName> = routes.iter().map(|r| r.table.clone()).collect();
            assign_table_ids(&mut routes, &tables);
            check_tables(&routes, &mut problems);
        }
        if !problems.is_empty() {
            return Err(RoutesError::Invalid { file: None, problems });
        }
        let matcher = Matcher::new(routes.iter().map(|r| r.types.as_slice()));
        Ok(Self { routes, matcher })
    }

    /// Replaces each route's table by what the catalog found (`tables[i]` for route i): the
    /// schema-qualified name, its identity and whether it is partitioned. Routes naming one
    /// table in two spellings (`orders` through the `search_path`, and `public.orders`) then
    /// share a `table_id`, and the rules for routes into one table are checked again: every
    /// problem is returned.
    pub fn resolve_tables(&mut self, tables: &[ResolvedTable]) -> Result<(), Vec<RouteProblem>> {
        if tables.len() != self.routes.len() {
            let message = format!("{} routes but {} resolved tables", self.routes.len(), tables.len());
            return Err(vec![problem("*", "table", message)]);
        }
        for (route, table) in self.routes.iter_mut().zip(tables) {
            route.table = table.name.clone();
            route.partitioned = table.partitioned;
        }
        let ids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
        assign_table_ids(&mut self.routes, &ids);
        let mut problems = Vec::new();
        check_tables(&self.routes, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The indexes of the routes that take this event type, in file order, each once.
    pub fn matching<'m>(&'m self, event_type: &'m str) -> Matching<'m> {
        self.matcher.matching(event_type)
    }

    /// The indexes of the routes a tombstone (a record with a key and no value) deletes through:
    /// those with a `tombstone_key`.
    pub fn tombstone_routes(&self) -> impl Iterator<Item = usize> + '_ {
        self.routes.iter().enumerate().filter(|(_, r)| r.tombstone_key.is_some()).map(|(i, _)| i)
    }
}

fn check_names(names: &[String], labels: &[String], problems: &mut Vec<RouteProblem>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, (name, label)) in names.iter().zip(labels).enumerate() {
        if name.is_empty() {
            problems.push(problem(label, "name", "must not be empty: it labels metrics and error messages".into()));
        } else if let Some(first) = seen.insert(name, i) {
            problems.push(problem(
                label,
                "name",
                format!("routes #{} and #{} are both named {label:?}: give each route its own name", first + 1, i + 1),
            ));
        }
    }
}

fn problem(route: &str, field: &str, message: String) -> RouteProblem {
    RouteProblem { route: route.to_owned(), field: field.to_owned(), message }
}

/// Checks one route; None when something is too broken to build it (the problems say what).
fn validate_route(raw: RawRoute, index: usize, problem: &mut dyn FnMut(&str, String)) -> Option<Route> {
    let before = std::cell::Cell::new(0usize);
    let mut report = |field: &str, message: String| {
        before.set(before.get() + 1);
        problem(field, message);
    };

    if raw.types.is_empty() {
        report("types", "must list at least one event type (\"*\" takes every type)".into());
    }
    let mut types = Vec::new();
    for pattern in &raw.types {
        match TypePattern::parse(pattern) {
            Ok(p) => types.push(p),
            Err(message) => report("types", message),
        }
    }
    let table = TableName::parse(&raw.table).map_err(|m| report("table", m)).ok();

    let listed_columns = raw.columns.0.len();
    let mut columns = Vec::with_capacity(listed_columns);
    for (name, raw_column) in raw.columns.0 {
        let field = format!("columns.{name}");
        if let Err(m) = check_identifier(&name) {
            report(&field, format!("{m} (a column name)"));
        }
        if let Some(column) = validate_column(name, raw_column, &field, &mut report) {
            columns.push(column);
        }
    }
    let mapped = |name: &str| columns.iter().any(|c| c.name == name);
    let declared = |name: &str| columns.iter().find(|c| c.name == name).and_then(|c| c.declared);

    let mode = raw.mode;
    match mode {
        Mode::Insert | Mode::Upsert if listed_columns == 0 => {
            report("columns", "must map at least one column: add a [route.columns] table".into());
        }
        _ => {}
    }
    if mode != Mode::Insert && raw.key.is_empty() {
        report(
            "key",
            format!("mode {} needs a key: list the columns of a unique index or the primary key", mode.as_str()),
        );
    }
    for (i, k) in raw.key.iter().enumerate() {
        if raw.key[..i].contains(k) {
            report("key", format!("column {k} is listed twice"));
        } else if !mapped(k) {
            report("key", format!("column {k} is not mapped: add it to [route.columns]"));
        } else if let Some(ty) = declared(k).filter(|ty| !ty.can_be_key()) {
            report("key", format!("column {k} is declared {ty}: key columns cannot be json, jsonb or arrays"));
        }
    }
    if mode == Mode::Delete {
        for c in columns.iter().filter(|c| !raw.key.contains(&c.name)) {
            report(
                &format!("columns.{}", c.name),
                "a delete route maps its key columns only: remove this column or add it to key".into(),
            );
        }
    }
    if let Some(version) = &raw.version {
        if mode != Mode::Upsert {
            report("version", format!("only upsert routes have a version; this route's mode is {}", mode.as_str()));
        } else if !mapped(version) {
            report("version", format!("column {version} is not mapped: add it to [route.columns]"));
        } else if raw.key.contains(version) {
            report("version", format!("column {version} is a key column: a version must be another column"));
        } else if let Some(ty) = declared(version).filter(|ty| !ty.is_orderable()) {
            report("version", format!("column {version} is declared {ty}, which has no order to compare versions by"));
        }
    }
    if let Some(tombstone_key) = &raw.tombstone_key {
        if raw.key.as_slice() != [tombstone_key.clone()] {
            report(
                "tombstone_key",
                format!(
                    "must be the route's only key column (key = [{tombstone_key:?}]): a tombstone carries one value, \
                     the record key, and deletes the row with that key"
                ),
            );
        }
    }
    if before.get() > 0 {
        return None;
    }
    Some(Route {
        name: raw.name,
        types,
        table: table?,
        table_id: index,
        partitioned: false,
        mode,
        key: raw.key,
        version: raw.version,
        tombstone_key: raw.tombstone_key,
        columns,
    })
}

fn validate_column(
    name: String,
    raw: RawColumn,
    field: &str,
    report: &mut dyn FnMut(&str, String),
) -> Option<ColumnSpec> {
    let (path, default, declared, required) = match raw {
        RawColumn::Path(path) => (path, None, None, false),
        RawColumn::Table(t) => (t.path, t.default, t.declared, t.required),
    };
    let path = Path::parse(&path).map_err(|e| report(&format!("{field}.path"), e.to_string())).ok();
    let declared = declared
        .and_then(|t| ColumnType::parse_declared(&t).map_err(|e| report(&format!("{field}.type"), e.to_string())).ok());
    let default = default.and_then(|d| toml_to_json(d).map_err(|m| report(&format!("{field}.default"), m)).ok());
    if let (Some(default), Some(ty)) = (&default, declared) {
        if let Err(e) = convert(Extracted::Json(default), ty) {
            report(&format!("{field}.default"), format!("does not convert to the declared type: {e}"));
        }
    }
    if required && default.is_some() {
        report(field, "required = true and a default exclude each other: a required path is never missing".into());
    }
    Some(ColumnSpec { name, path: path?, default, declared, required })
}

/// A route's table as the catalog resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTable {
    /// Schema-qualified.
    pub name: TableName,
    /// `pg_class.oid`: one table, one identity, however it is spelled.
    pub oid: u32,
    /// `relkind` `p`.
    pub partitioned: bool,
}

/// Sets each route's `table_id` to the index of the first route with the same table identity
/// (`identities[i]` for route i).
fn assign_table_ids<T: std::hash::Hash + Eq>(routes: &mut [Route], identities: &[T]) {
    let mut first_of_table: HashMap<&T, usize> = HashMap::new();
    for (i, (route, identity)) in routes.iter_mut().zip(identities).enumerate() {
        route.table_id = *first_of_table.entry(identity).or_insert(i);
    }
}

/// Route-to-route rules, per table (`table_id`).
fn check_tables(routes: &[Route], problems: &mut Vec<RouteProblem>) {
    let sorted = |key: &[String]| {
        let mut k = key.to_vec();
        k.sort();
        k
    };
    for i in 0..routes.len() {
        let route = &routes[i];
        let earlier = &routes[..i];
        if let Some(other) =
            earlier.iter().find(|o| o.table_id == route.table_id && sorted(&o.key) != sorted(&route.key))
        {
            problems.push(problem(
                &route.name,
                "key",
                format!(
                    "routes {} and {} both write {} with different keys ({:?} and {:?}): routes into one table \
                     declare the same key, or none",
                    other.name, route.name, route.table, other.key, route.key
                ),
            ));
        }
        if route.mode == Mode::Upsert {
            if let Some(other) = earlier.iter().find(|o| {
                o.table_id == route.table_id
                    && o.mode == Mode::Upsert
                    && (o.version.is_some() || route.version.is_some())
            }) {
                let versioned = if other.version.is_some() { &other.name } else { &route.name };
                problems.push(problem(
                    &route.name,
                    "mode",
                    format!(
                        "routes {} and {} both upsert {}, and {versioned} has a version: a table upserted with a \
                         version takes no other upsert route (merge them into one route)",
                        other.name, route.name, route.table
                    ),
                ));
            }
        }
    }
}

/// TOML to JSON: datetimes become their RFC 3339 text; NaN and infinities have no JSON form.
pub fn toml_to_json(value: toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s),
        toml::Value::Integer(i) => Json::from(i),
        toml::Value::Float(f) => Json::Number(
            serde_json::Number::from_f64(f).ok_or_else(|| format!("{f} has no JSON form: use a finite number"))?,
        ),
        toml::Value::Boolean(b) => Json::Bool(b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.into_iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => {
            Json::Object(table.into_iter().map(|(k, v)| toml_to_json(v).map(|v| (k, v))).collect::<Result<_, _>>()?)
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    types: Vec<String>,
    table: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    key: Vec<String>,
    version: Option<String>,
    tombstone_key: Option<String>,
    #[serde(default)]
    columns: RawColumns,
}

/// `[route.columns]` in file order.
#[derive(Default)]
struct RawColumns(Vec<(String, RawColumn)>);

impl<'de> Deserialize<'de> for RawColumns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RawColumns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of column = path")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawColumns, A::Error> {
                let mut columns = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    columns.push(entry);
                }
                Ok(RawColumns(columns))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A column: a path string, or a table.
enum RawColumn {
    Path(String),
    Table(RawColumnTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumnTable {
    path: String,
    default: Option<toml::Value>,
    #[serde(rename = "type")]
    declared: Option<String>,
    #[serde(default)]
    required: bool,
}

impl<'de> Deserialize<'de> for RawColumn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RawColumn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a path string or a table { path = \"...\", default = ..., type = \"...\", required = ... }",
                )
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<RawColumn, E> {
                Ok(RawColumn::Path(path.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawColumn, A::Error> {
                RawColumnTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawColumn::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUE_EXAMPLE: &str = r#"
[[route]]
name = "orders"                          # unique; used in metrics labels and error messages
types = ["order.created", "order.paid"]  # event types this route takes
table = "shop.orders"                    # an existing table
mode = "upsert"                          # "insert" (default), "upsert" or "delete"
key = ["order_id"]                       # columns of a unique index or the primary key
version = "updated_at"                   # optional, upsert only

[route.columns]                          # column = path into the event
order_id   = "data.order_id"
customer   = "data.customer.id"
amount     = "data.total"
status     = "data.status"
updated_at = "ts"
raw        = "data"
"#;

    fn problems(text: &str) -> Vec<String> {
        match RoutesFile::parse(text) {
            Err(RoutesError::Invalid { problems, .. }) => problems.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("expected validation problems, got {other}"),
            Ok(_) => panic!("expected validation problems, the file was accepted"),
        }
    }

    fn syntax(text: &str) -> String {
        match RoutesFile::parse(text) {
            Err(e @ RoutesError::Syntax { .. }) => e.to_string(),
            Err(other) => panic!("expected a syntax error, got {other}"),
            Ok(_) => panic!("expected a syntax error, the file was accepted"),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let file = RoutesFile::parse(ISSUE_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        let [route] = file.routes.as_slice() else { panic!("one route") };
        assert_eq!(route.name, "orders");
        assert_eq!(route.types, [TypePattern::Exact("order.created".into()), TypePattern::Exact("order.paid".into())]);
        assert_eq!(route.table, TableName { schema: Some("shop".into()), name: "orders".into() });
        assert_eq!(route.table.quoted(), "\"shop\".\"orders\"");
        assert_eq!(route.mode, Mode::Upsert);
        assert_eq!(route.key, ["order_id"]);
        assert_eq!(route.version.as_deref(), Some("updated_at"));
        assert_eq!(route.tombstone_key, None);
        let names: Vec<&str> = route.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["order_id", "customer", "amount", "status", "updated_at", "raw"], "file order is kept");
        let paths: Vec<String> = route.columns.iter().map(|c| c.path.to_string()).collect();
        assert_eq!(paths, ["data.order_id", "data.customer.id", "data.total", "data.status", "ts", "data"]);
        assert_eq!(route.key_indexes(), [0]);
        assert_eq!(route.version_index(), Some(4));
        assert_eq!(file.matching("order.paid").collect::<Vec<_>>(), [0]);
        assert_eq!(file.matching("order.shipped").count(), 0);
        assert_eq!(file.tombstone_routes().count(), 0);
    }

    #[test]
    fn column_tables_carry_defaults_types_and_required() {
        let file = RoutesFile::parse(
            r#"
[[route]]
name = "r"
types = ["*"]
table = "t"
tombstone_key = "id"
key = ["id"]
[route.columns]
id = { path = "id", type = "uuid", required = true }
n = { path = "data.n", default = 5, type = "bigint" }
when = { path = "data.when", default = 2026-01-31T12:00:00Z }
day = { path = "data.day", default = 2026-01-31 }
tags = { path = "data.tags", default = ["a", "b"], type = "text[]" }
meta = { path = "data.meta", default = { a = 1.5, b = true } }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let route = &file.routes[0];
        assert_eq!(route.mode, Mode::Insert);
        let col = |name: &str| route.columns.iter().find(|c| c.name == name).expect("column");
        assert_eq!(col("id").declared, Some(ColumnType::parse_declared("uuid").expect("type")));
        assert!(col("id").required);
        assert_eq!(col("n").default, Some(json!(5)));
        assert_eq!(col("when").default, Some(json!("2026-01-31T12:00:00Z")));
        assert_eq!(col("day").default, Some(json!("2026-01-31")));
        assert_eq!(col("tags").default, Some(json!(["a", "b"])));
        assert_eq!(col("meta").default, Some(json!({"a": 1.5, "b": true})));
        assert_eq!(file.tombstone_routes().collect::<Vec<_>>(), [0]);
        assert_eq!(route.table.quoted(), "\"t\"");
    }

    #[test]
    fn unknown_fields_and_bad_toml_are_syntax_errors() {
        let unknown = syntax("[[route]]\nname = \"a\"\ntypes = [\"*\"]\ntable = \"t\"\ncolour = \"red\"\n");
        assert!(unknown.starts_with("the routes file is not valid: "), "{unknown}");
        assert!(unknown.contains("unknown field `colour`"), "{unknown}");
        let unknown_column_field =
            syntax("[[route]]\nname = \"a\"\ntypes = [\"*\"]\ntable = \"t\"\n[route.columns]\nx = { path = \"id\", nullable = true }\n");
        assert!(unknown_column_field.contains("unknown field `nullable`"), "{unknown_column_field}");
        let bad_mode = syntax("[[route]]\nname = \"a\"\ntypes = [\"*\"]\ntable = \"t\"\nmode = \"merge\"\n");
        assert!(bad_mode.contains("unknown variant `merge`"), "{bad_mode}");
        let missing = syntax("[[route]]\nname = \"a\"\ntable = \"t\"\n");
        assert!(missing.contains("missing field `types`"), "{missing}");
        let top_level = syntax("routes = []\n");
        assert!(top_level.contains("unknown field `routes`"), "{top_level}");
        let column_number = syntax("[[route]]\nname = \"a\"\ntypes = [\"*\"]\ntable = \"t\"\n[route.columns]\nx = 5\n");
        assert!(column_number.contains("a path string or a table"), "{column_number}");
        assert_eq!(
            syntax("# nothing\n"),
            "the routes file is not valid: it has no [[route]]: a routes file needs at least one route"
        );
        assert!(syntax("[[route]\n").starts_with("the routes file is not valid: "));
    }

    #[test]
    fn route_problems_name_the_route_and_the_field() {
        let text = r#"
[[route]]
name = ""
types = []
table = "shop.orders.x"
[[route]]
name = "b"
types = ["order*", "ok"]
table = "1bad"
mode = "upsert"
[route.columns]
"bad col" = "data.x"
amount = { path = "data..total" }
n = { path = "data.n", type = "intger" }
m = { path = "data.m", type = "integer", default = "abc" }
r = { path = "data.r", default = 1, required = true }
nan = { path = "data.nan", default = nan }
[[route]]
name = "b"
types = ["*"]
table = "t"
[route.columns]
x = "id"
"#;
        assert_eq!(
            problems(text),
            [
                "route #1, types: must list at least one event type (\"*\" takes every type)",
                "route #1, table: \"shop.orders.x\" is not a valid table name: write table or schema.table",
                "route #1, columns: must map at least one column: add a [route.columns] table",
                "route b, types: \"order*\" is not a valid type pattern: use an exact type, \"*\", or \"prefix.*\"",
                "route b, table: \"1bad\" is not a valid table name: \"1bad\" is not a plain identifier: use letters, \
                 digits, _ and $, starting with a letter or _",
                "route b, columns.bad col: \"bad col\" is not a plain identifier: use letters, digits, _ and $, \
                 starting with a letter or _ (a column name)",
                "route b, columns.amount.path: \"data..total\" is not a valid path: empty field name after a dot",
                "route b, columns.n.type: unknown or unsupported type \"intger\": routes write text, varchar, char, \
                 uuid, smallint, integer, bigint, numeric, real, double precision, boolean, timestamptz, timestamp, \
                 date, json, jsonb, and one-dimensional arrays of these (e.g. integer[])",
                "route b, columns.m.default: does not convert to the declared type: expected integer (a JSON integer \
                 in -2147483648..2147483647 or a string holding one), found a string (\"abc\")",
                "route b, columns.r: required = true and a default exclude each other: a required path is never \
                 missing",
                "route b, columns.nan.default: NaN has no JSON form: use a finite number",
                "route b, key: mode upsert needs a key: list the columns of a unique index or the primary key",
                "route #1, name: must not be empty: it labels metrics and error messages",
                "route b, name: routes #2 and #3 are both named \"b\": give each route its own name",
            ]
        );
    }

    #[test]
    fn modes_keys_versions_and_tombstones_are_checked() {
        let route = |body: &str| format!("[[route]]\nname = \"r\"\ntypes = [\"*\"]\ntable = \"t\"\n{body}");
        let cases = [
            ("", "route r, columns: must map at least one column: add a [route.columns] table"),
            (
                "mode = \"delete\"\n",
                "route r, key: mode delete needs a key: list the columns of a unique index or the primary key",
            ),
            (
                "mode = \"upsert\"\nkey = [\"id\"]\n[route.columns]\nx = \"id\"\n",
                "route r, key: column id is not mapped: add it to [route.columns]",
            ),
            (
                "key = [\"id\", \"id\"]\n[route.columns]\nid = \"id\"\n",
                "route r, key: column id is listed twice",
            ),
            (
                "key = [\"j\"]\n[route.columns]\nj = { path = \"data\", type = \"jsonb\" }\n",
                "route r, key: column j is declared jsonb: key columns cannot be json, jsonb or arrays",
            ),
            (
                "mode = \"delete\"\nkey = [\"id\"]\n[route.columns]\nid = \"id\"\nx = \"data.x\"\n",
                "route r, columns.x: a delete route maps its key columns only: remove this column or add it to key",
            ),
            (
                "version = \"v\"\n[route.columns]\nv = \"ts\"\n",
                "route r, version: only upsert routes have a version; this route's mode is insert",
            ),
            (
                "mode = \"upsert\"\nkey = [\"id\"]\nversion = \"v\"\n[route.columns]\nid = \"id\"\n",
                "route r, version: column v is not mapped: add it to [route.columns]",
            ),
            (
                "mode = \"upsert\"\nkey = [\"id\"]\nversion = \"id\"\n[route.columns]\nid = \"id\"\n",
                "route r, version: column id is a key column: a version must be another column",
            ),
            (
                "mode = \"upsert\"\nkey = [\"id\"]\nversion = \"v\"\n[route.columns]\nid = \"id\"\nv = { path = \"data\", type = \"json\" }\n",
                "route r, version: column v is declared json, which has no order to compare versions by",
            ),
            (
                "tombstone_key = \"id\"\n[route.columns]\nid = \"id\"\n",
                "route r, tombstone_key: must be the route's only key column (key = [\"id\"]): a tombstone carries \
                 one value, the record key, and deletes the row with that key",
            ),
            (
                "mode = \"upsert\"\nkey = [\"a\", \"b\"]\ntombstone_key = \"a\"\n[route.columns]\na = \"id\"\nb = \"key\"\n",
                "route r, tombstone_key: must be the route's only key column (key = [\"a\"]): a tombstone carries \
                 one value, the record key, and deletes the row with that key",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(problems(&route(body)), [message], "{body}");
        }
        // Valid forms of each mode.
        for body in [
            "[route.columns]\nx = \"id\"\n",
            "key = [\"id\"]\n[route.columns]\nid = \"id\"\n",
            "mode = \"delete\"\nkey = [\"id\"]\ntombstone_key = \"id\"\n[route.columns]\nid = \"data.id\"\n",
            "mode = \"upsert\"\nkey = [\"id\"]\nversion = \"v\"\ntombstone_key = \"id\"\n[route.columns]\nid = \"key\"\nv = \"ts\"\n",
        ] {
            assert!(RoutesFile::parse(&route(body)).is_ok(), "{body}");
        }
    }

    #[test]
    fn routes_into_one_table_agree_on_key_and_version() {
        let two = |a: &str, b: &str| {
            format!(
                "[[route]]\nname = \"a\"\ntypes = [\"x\"]\ntable = \"s.t\"\n{a}\n[[route]]\nname = \"b\"\ntypes = \
                 [\"y\"]\ntable = \"s.t\"\n{b}"
            )
        };
        let upsert = |key: &str, version: &str| {
            format!(
                "mode = \"upsert\"\nkey = [{key}]\n{version}[route.columns]\nk1 = \"id\"\nk2 = \"key\"\nv = \"ts\"\n"
            )
        };
        assert_eq!(
            problems(&two(&upsert("\"k1\"", ""), &upsert("\"k2\"", ""))),
            ["route b, key: routes a and b both write s.t with different keys ([\"k1\"] and [\"k2\"]): routes into \
              one table declare the same key, or none"]
        );
        assert_eq!(
            problems(&two(&upsert("\"k1\"", ""), "[route.columns]\nx = \"id\"\n")),
            ["route b, key: routes a and b both write s.t with different keys ([\"k1\"] and []): routes into one \
              table declare the same key, or none"]
        );
        assert_eq!(
            problems(&two(&upsert("\"k1\"", "version = \"v\"\n"), &upsert("\"k1\"", ""))),
            ["route b, mode: routes a and b both upsert s.t, and a has a version: a table upserted with a version \
              takes no other upsert route (merge them into one route)"]
        );
        // The same key in another order, several unversioned upsert routes, a versioned one with
        // a delete route: all fine, and the routes share a table id.
        let ok = RoutesFile::parse(&two(&upsert("\"k1\", \"k2\"", ""), &upsert("\"k2\", \"k1\"", "")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.routes.iter().map(|r| r.table_id).collect::<Vec<_>>(), [0, 0]);
        let delete = "mode = \"delete\"\nkey = [\"k1\"]\n[route.columns]\nk1 = \"key\"\n";
        assert!(RoutesFile::parse(&two(&upsert("\"k1\"", "version = \"v\"\n"), delete)).is_ok());
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-routes-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("routes.toml");
        std::fs::write(&path, ISSUE_EXAMPLE).expect("write");
        assert!(RoutesFile::load(&path).is_ok());
        std::fs::write(&path, "[[route]]\nname = \"a\"\ntypes = []\ntable = \"t\"\n[route.columns]\nx = \"id\"\n")
            .expect("write");
        let err = RoutesFile::load(&path).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            format!(
                "the routes file {} has 1 problem:\n- route a, types: must list at least one event type (\"*\" takes \
                 every type)",
                path.display()
            )
        );
        let missing = RoutesFile::load(dir.join("nope.toml")).expect_err("missing");
        assert!(missing.to_string().starts_with("cannot read the routes file "), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn tables_resolved_by_the_catalog_are_one_table_however_spelled() {
        let text = "[[route]]\nname = \"a\"\ntypes = [\"x\"]\ntable = \"orders\"\nmode = \"upsert\"\nkey = [\"id\"]\n\
                    version = \"v\"\n[route.columns]\nid = \"id\"\nv = \"ts\"\n\
                    [[route]]\nname = \"b\"\ntypes = [\"y\"]\ntable = \"public.orders\"\nmode = \"upsert\"\nkey = [\"n\"]\n\
                    [route.columns]\nn = \"key\"\n";
        let mut file = RoutesFile::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.routes.iter().map(|r| r.table_id).collect::<Vec<_>>(), [0, 1], "two spellings");
        let orders = ResolvedTable {
            name: TableName { schema: Some("public".into()), name: "orders".into() },
            oid: 16384,
            partitioned: true,
        };
        let problems = file.resolve_tables(&[orders.clone(), orders]).expect_err("one table");
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "route b, key: routes a and b both write public.orders with different keys ([\"id\"] and [\"n\"]): \
                 routes into one table declare the same key, or none",
                "route b, mode: routes a and b both upsert public.orders, and a has a version: a table upserted with \
                 a version takes no other upsert route (merge them into one route)",
            ]
        );
        assert_eq!(file.routes.iter().map(|r| r.table_id).collect::<Vec<_>>(), [0, 0]);
        assert!(file.routes.iter().all(|r| r.partitioned && r.table.quoted() == "\"public\".\"orders\""));
    }
}
