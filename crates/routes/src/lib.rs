//! Routes: which events go into which user tables, and how. Pure: no database and no Kafka, so
//! the gateway uses it without a database and every rule is unit-tested.
//!
//! # Files
//! - [`file`](mod@file): the TOML routes file, parsed and validated ([`RoutesFile::load`],
//!   [`RoutesFile::parse`]); every problem named by route and field.
//! - [`matcher`]: event type patterns (`order.created`, `*`, `order.*`) and the precomputed
//!   [`Matcher`] behind [`RoutesFile::matching`].
//! - [`path`]: paths into an event (`data.items[0].sku`) and what they find ([`Extracted`]).
//! - [`types`]: the column types routes write ([`ColumnType`]) and their names in the file, the
//!   catalog and SQL casts.
//! - [`convert`](mod@convert): strict conversion of a found value to a column type's PostgreSQL literal; its
//!   doc holds the conversion table.
//! - [`mapping`]: routes resolved against the catalog ([`ResolvedRoute`]) and events mapped to
//!   rows ([`Row`]), with the rules for missing paths, NOT NULL and keys.
//! - [`declared`]: the gateway's check of declared `type` and `required` ([`RoutesFile::check_event`]).
//! - [`ops`]: the operations a record asks of its routes ([`ResolvedRoutes::ops_for_event`],
//!   [`ResolvedRoutes::ops_for_tombstone`]).
//! - [`compare`]: how the database orders versions and compares keys, for combining.
//! - [`combine`](mod@combine): write-combining of a partition's batch into rounds ([`combine()`]).
//! - [`sql`]: the statements each route runs, grouped per round ([`sql::groups`]), and their
//!   `text[]` parameters ([`Statement::bind`]).
//!
//! # The sinker
//! At start:
//! 1. `let file = RoutesFile::load(path)?` (exit with the error's `Display`: it lists every
//!    problem).
//! 2. For each `file.routes[i]`: look up `route.table` (schema given or `search_path`; names
//!    are exact, see [`file`](mod@file)) and, for each `route.columns[j]`, its `pg_attribute` row:
//!    [`ColumnType::from_pg_type_name`] of its type's `typname` (a domain: its base type),
//!    `nullable = !attnotnull`, `has_default = atthasdef || attidentity != ''` (identity and
//!    generated-by-default columns). Refuse to start, naming route, table and column, when the
//!    table or a column is missing, a type is unsupported ([`UnknownType`]), a column is
//!    generated always, or `route.key` (when not empty) is not exactly the columns of a unique
//!    index or the primary key.
//! 3. `let routes = ResolvedRoutes::resolve(file, info)?` (refuses declared types that disagree
//!    with the catalog, unorderable versions, json/array keys, defaults that do not convert).
//!
//! Per batch of a partition, in offset order:
//! 1. Each record: a tombstone (a key, no value) gives `routes.ops_for_tombstone(offset, key)`,
//!    an event `routes.ops_for_event(offset, &event)`. An `Err(RecordError)` is a dead letter
//!    with reason [`RecordError::code`] (`no_route`, also for a tombstone no route takes;
//!    `mapping_failed`) and detail `error.to_string()`; the rest of the batch goes on.
//! 2. `let combined = combine(ops)`; add `combined.folded[route]` to
//!    `sinker_rows_combined_total{route = routes.file.routes[route].name}`.
//! 3. In the batch's transaction (after the offset fence): for each round in order, for each
//!    `group` of `sql::groups(&round)`: `let st = sql::statement(&routes.routes[group.route],
//!    group.kind, group.missing)` (cacheable per `(route, kind, missing)`), bind
//!    `st.bind(&group.ops)` as `text[]` parameters in order, and run it. Count
//!    `sinker_rows_written_total{route, op}`: an insert's rows affected are `inserted`, the rest
//!    of its rows `skipped`; an upsert returns one boolean per written row (`true` inserted,
//!    `false` updated), the rest `skipped`; a delete's rows affected are `deleted`.
//!    A class 22/23 error isolates rows as today (halving a group), dead-lettered as
//!    `database_rejected`.
//!
//! `sinker routes check` prints, per resolved route, its columns (`ResolvedRoute::columns`:
//! name, path, `info.ty`, nullability, defaults) and [`sql::describe`].
//!
//! # The gateway
//! `let file = RoutesFile::load(path)?` at start; per event (after [`sluice_core::Event`]
//! validation) `file.check_event(&event)`: [`Refusal::NoRoute`] is a 400 `no_route`,
//! [`Refusal::Invalid`] a 400 `invalid_event` whose message names route, column and path.
//!
//! # Decisions
//! - A missing path: the file default, else the table default (the column is left out of the
//!   insert, and an upsert's update sets it to the default too), else NULL if nullable, else
//!   `mapping_failed`. Key columns must always be present and not null; a version column with
//!   a table default must be present (combining must know it).
//! - An event is all or nothing across its routes: if one route cannot map it, it is
//!   dead-lettered and no route writes it.
//! - Conversions are strict (see [`convert`](mod@convert)): text takes strings only, booleans `true` and
//!   `false` only, integers never `1.0`, numeric refuses NaN and infinities; an explicit JSON
//!   `null` is JSON `null` in json/jsonb and SQL NULL elsewhere.
//! - `tombstone_key` must be the route's only key column, on a route of any mode.
//! - Routes into one table declare the same key or none; a versioned upsert route is the only
//!   upsert route of its table. A delete route maps only its key columns.
//! - Names of tables and columns are used exactly as written (double-quoted).
//! - Text versions compare by bytes (the C collation) in combining.

pub mod combine;
pub mod compare;
pub mod convert;
pub mod declared;
pub mod file;
pub mod mapping;
pub mod matcher;
pub mod ops;
pub mod path;
pub mod sql;
pub mod types;

#[cfg(test)]
mod testutil;

pub use combine::{combine, Combined};
pub use compare::Version;
pub use convert::{convert, ConvertError};
pub use declared::{validate_declared, Refusal};
pub use file::{ColumnSpec, Mode, Route, RouteProblem, RoutesError, RoutesFile, TableName};
pub use mapping::{ColumnInfo, MappingError, MappingProblem, ResolveError, ResolvedColumn, ResolvedRoute, Row};
pub use matcher::{Matcher, TypePattern};
pub use ops::{Action, Op, RecordError, ResolvedRoutes, RowKey};
pub use path::{Extracted, Path, PathError};
pub use sql::{Group, Statement, StatementKind};
pub use types::{ColumnType, Scalar, UnknownType};
