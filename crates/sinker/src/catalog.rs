//! Routes resolved against PostgreSQL's catalog, at start and in `sinker routes check`.
//!
//! For each route of the file, in file order:
//! - its table exists (schema-qualified, or found through the session's `search_path`; names
//!   are exact) and is a table (`relkind` `r` or `p`). From then on the route names it
//!   schema-qualified as found, and routes are one table by its oid, however spelled
//!   ([`RoutesFile::resolve_tables`] checks the rules for routes into one table again);
//! - every mapped column exists, has a type routes write (`pg_type.typname`; a domain's base
//!   type), and is not generated (`GENERATED ALWAYS AS (...)` or `GENERATED ALWAYS AS
//!   IDENTITY`: the database assigns those);
//! - nullability is `NOT attnotnull` (and not a NOT NULL domain), a default is `atthasdef`, an
//!   identity `BY DEFAULT`, or a domain default;
//! - a column's type modifier (`atttypmod`, a domain's `typtypmod`) becomes its
//!   [`Modifier`]: keys and versions are compared as stored (numeric scale, timestamp
//!   precision, char(n) blanks);
//! - a `key` is exactly the column set of the primary key or of a unique index that ON
//!   CONFLICT can use as its arbiter: valid, not deferrable, not partial, no expressions; its
//!   columns and that index use deterministic collations (a nondeterministic one makes keys
//!   equal that write-combining cannot know are: `cannot affect row a second time`);
//! - insert and upsert routes map every NOT NULL column without a default (and not generated):
//!   a row without it could never be written. Reported once the route has no other problem,
//!   so a route being written is not buried under its table's columns;
//! - a keyless insert route into a table with a primary key or unique index is a warning: a
//!   duplicate event (a client's retry) is refused by the index (23505) and dead-lettered as
//!   `database_rejected`, where a `key` would skip it;
//! - then [`ResolvedRoute::new`]: declared types agree with the catalog, versions are
//!   orderable, keys comparable, file defaults convert.
//!
//! Every problem of every route is collected ([`Problem`]), so one run lists them all. Nothing
//! here writes: user tables are never created or altered.

use std::{collections::HashMap, fmt};

use sluice_routes::{
    ColumnInfo, ColumnType, Mode, Modifier, ResolvedRoute, ResolvedRoutes, ResolvedTable, Route, RoutesFile, TableName,
};
use sqlx::PgPool;

/// One way a route and the database disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub route: String,
    pub table: String,
    /// None when the problem is the table's.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {}, table {}", self.route, self.table)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
struct CatalogColumn {
    /// `pg_type.typname` of the column's type, or of a domain's base type.
    typname: String,
    /// The name to show (`format_type`).
    shown: String,
    nullable: bool,
    has_default: bool,
    /// Why the column cannot be written at all (generated, identity always).
    unwritable: Option<&'static str>,
    /// `atttypmod`, or a domain's `typtypmod` (-1: none).
    typmod: i32,
    /// The column's collation, when it is nondeterministic (`collisdeterministic` false).
    nondeterministic: Option<String>,
}

/// A unique index ON CONFLICT can use.
struct UniqueKey {
    /// Its key columns, sorted.
    columns: Vec<String>,
    /// A nondeterministic collation among its columns' (`indcollation`), if any.
    nondeterministic: Option<String>,
}

/// A route's catalog facts.
struct RouteFacts {
    table: ResolvedTable,
    info: Vec<ColumnInfo>,
    /// NOT NULL columns without a default that the route does not map.
    unmapped: Vec<Problem>,
    warnings: Vec<Problem>,
}

/// The routes of a file resolved against the catalog, and what deserves a warning.
pub struct Resolved {
    pub routes: ResolvedRoutes,
    /// Allowed but probably unwanted (a keyless insert route into a table with a unique index).
    pub warnings: Vec<Problem>,
}

/// Resolves every route of `file` against the database. The outer error is the database's
/// (retry); the inner one lists every problem of the file (fix the file or the tables).
/// Warnings are logged.
pub async fn resolve(pool: &PgPool, file: RoutesFile) -> Result<Result<ResolvedRoutes, Vec<Problem>>, sqlx::Error> {
    Ok(resolve_with_warnings(pool, file).await?.map(|resolved| {
        for warning in &resolved.warnings {
            tracing::warn!(route = %warning.route, table = %warning.table, "{warning}");
        }
        resolved.routes
    }))
}

/// [`resolve`], with the warnings returned instead of logged.
pub async fn resolve_with_warnings(
    pool: &PgPool,
    mut file: RoutesFile,
) -> Result<Result<Resolved, Vec<Problem>>, sqlx::Error> {
    let mut problems = Vec::new();
    let mut tables = Vec::with_capacity(file.routes.len());
    let mut infos = Vec::with_capacity(file.routes.len());
    let mut warnings = Vec::new();
    for route in &file.routes {
        match route_info(pool, route).await? {
            Ok(facts) => {
                match ResolvedRoute::new(route.clone(), facts.info.clone()) {
                    Ok(_) => problems.extend(facts.unmapped),
                    Err(errors) => problems.extend(errors.into_iter().map(|e| Problem {
                        route: e.route,
                        table: e.table,
                        column: Some(e.column).filter(|c| c != "*"),
                        message: e.message,
                    })),
                }
                tables.push(facts.table);
                infos.push(facts.info);
                warnings.extend(facts.warnings);
            }
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    if let Err(found) = file.resolve_tables(&tables) {
        let table_of =
            |route: &str| file.routes.iter().find(|r| r.name == route).map(|r| r.table.to_string()).unwrap_or_default();
        return Ok(Err(found
            .into_iter()
            .map(|p| Problem { table: table_of(&p.route), route: p.route, column: None, message: p.message })
            .collect()));
    }
    Ok(ResolvedRoutes::resolve(file, infos).map(|routes| Resolved { routes, warnings }).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| Problem { route: e.route, table: e.table, column: Some(e.column), message: e.message })
            .collect()
    }))
}

/// The catalog facts of one route's columns, or what is wrong with them.
async fn route_info(pool: &PgPool, route: &Route) -> Result<Result<RouteFacts, Vec<Problem>>, sqlx::Error> {
    let table = route.table.to_string();
    let problem = |column: Option<&str>, message: String| Problem {
        route: route.name.clone(),
        table: table.clone(),
        column: column.map(str::to_owned),
        message,
    };
    let found: Option<(i64, String, String)> = sqlx::query_as(
        "SELECT c.oid::int8, c.relkind::text, n.nspname::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = to_regclass($1)",
    )
    .bind(route.table.quoted())
    .fetch_optional(pool)
    .await?;
    let Some((oid, relkind, schema)) = found else {
        let hint = if route.table.schema.is_none() && route.table.name == "events" {
            " (the sinker creates events when it applies its migrations: run `sinker migrate`)"
        } else {
            ""
        };
        return Ok(Err(vec![problem(
            None,
            format!(
                "the table does not exist{hint}: create it (sluice never creates or alters your tables), or fix \
                 `table` (names are exact and case-sensitive; without a schema the search_path is used)"
            ),
        )]));
    };
    if relkind != "r" && relkind != "p" {
        return Ok(Err(vec![problem(
            None,
            format!("it is not a table (relkind {relkind:?}): routes write into tables only"),
        )]));
    }
    let table = ResolvedTable {
        name: TableName { schema: Some(schema), name: route.table.name.clone() },
        oid: u32::try_from(oid).unwrap_or_default(),
        partitioned: relkind == "p",
    };
    let ordered = columns(pool, oid).await?;
    let columns: HashMap<&str, &CatalogColumn> = ordered.iter().map(|(name, c)| (name.as_str(), c)).collect();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut info = Vec::with_capacity(route.columns.len());
    for spec in &route.columns {
        let Some(column) = columns.get(spec.name.as_str()) else {
            problems.push(problem(
                Some(&spec.name),
                "the table has no such column: add it to the table, or remove it from [route.columns] (names are \
                 exact and case-sensitive)"
                    .to_owned(),
            ));
            continue;
        };
        if let Some(why) = column.unwritable {
            problems.push(problem(Some(&spec.name), format!("{why}: remove it from [route.columns]")));
            continue;
        }
        match ColumnType::from_pg_type_name(&column.typname) {
            Ok(ty) => {
                let modifier = match ty {
                    ColumnType::Scalar(_) => Modifier::from_catalog(&column.typname, column.typmod),
                    ColumnType::Array(_) => Modifier::None,
                };
                info.push(ColumnInfo { ty, nullable: column.nullable, has_default: column.has_default, modifier });
            }
            Err(e) => problems.push(problem(
                Some(&spec.name),
                format!("its type {} is not one routes write ({e}): change the column or remove it", column.shown),
            )),
        }
    }
    let mut unmapped = Vec::new();
    if route.mode != Mode::Delete {
        for (name, column) in &ordered {
            let mapped = route.columns.iter().any(|c| &c.name == name);
            if !mapped && !column.nullable && !column.has_default && column.unwritable.is_none() {
                unmapped.push(problem(
                    Some(name),
                    format!(
                        "it is NOT NULL without a default and the route does not map it, so every {} would fail: \
                         map it in [route.columns], or give it a default in the table",
                        route.mode.as_str()
                    ),
                ));
            }
        }
    }
    for key in &route.key {
        if let Some(collation) = columns.get(key.as_str()).and_then(|c| c.nondeterministic.as_ref()) {
            problems.push(problem(
                Some(key),
                format!(
                    "it is a key column with the nondeterministic collation {collation}, which makes keys equal that \
                     write-combining cannot tell are: use a deterministic collation for the column (e.g. \
                     COLLATE \"C\"), or another key"
                ),
            ));
        }
    }
    if route.key.is_empty() && route.mode == Mode::Insert {
        let keys = unique_keys(pool, oid).await?;
        if let Some(unique) = keys.first() {
            warnings.push(problem(
                None,
                format!(
                    "the route has no key but the table has a unique index on ({}): a duplicate event (a client's \
                     retry) is refused by it and dead-lettered as database_rejected; set key = [{}] to skip \
                     duplicates instead",
                    unique.columns.join(", "),
                    unique.columns.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", "),
                ),
            ));
        }
    }
    if !route.key.is_empty() {
        let keys = unique_keys(pool, oid).await?;
        let mut wanted = route.key.clone();
        wanted.sort();
        let matching: Vec<&UniqueKey> = keys.iter().filter(|k| k.columns == wanted).collect();
        if let Some(collation) = matching.iter().find_map(|k| k.nondeterministic.as_ref()) {
            problems.push(problem(
                Some(&route.key.join(", ")),
                format!(
                    "the unique index on key ({}) uses the nondeterministic collation {collation}, which makes keys \
                     equal that write-combining cannot tell are: index the key with deterministic collations",
                    route.key.join(", ")
                ),
            ));
        }
        if matching.is_empty() {
            let known = if keys.is_empty() {
                "the table has none".to_owned()
            } else {
                let listed: Vec<String> = keys.iter().map(|k| format!("({})", k.columns.join(", "))).collect();
                format!("the table has {}", listed.join(", "))
            };
            problems.push(problem(
                Some(&route.key.join(", ")),
                format!(
                    "key ({}) is not the column set of the primary key or of a unique index ({known}); ON CONFLICT \
                     needs one that is not partial, not deferrable and without expressions: create it (CREATE \
                     UNIQUE INDEX ON {} ({})) or fix `key`",
                    route.key.join(", "),
                    route.table.quoted(),
                    route.key.iter().map(|k| sluice_routes::file::quote_identifier(k)).collect::<Vec<_>>().join(", "),
                ),
            ));
        }
    }
    Ok(if problems.is_empty() { Ok(RouteFacts { table, info, unmapped, warnings }) } else { Err(problems) })
}

/// The table's columns in `attnum` order.
async fn columns(pool: &PgPool, oid: i64) -> Result<Vec<(String, CatalogColumn)>, sqlx::Error> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, String, String, bool, bool, String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT a.attname::text,
                COALESCE(bt.typname, t.typname)::text,
                format_type(a.atttypid, a.atttypmod),
                a.attnotnull OR COALESCE(t.typnotnull, false),
                a.atthasdef OR t.typdefault IS NOT NULL,
                a.attidentity::text,
                a.attgenerated::text,
                CASE WHEN t.typtype = 'd' AND a.atttypmod = -1 THEN t.typtypmod ELSE a.atttypmod END,
                (SELECT co.collname::text FROM pg_collation co
                  WHERE co.oid = a.attcollation AND NOT co.collisdeterministic)
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
          WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, typname, shown, not_null, has_def, identity, generated, typmod, nondeterministic)| {
            let unwritable = if !generated.is_empty() {
                Some("it is a generated column (GENERATED ALWAYS AS ...): the database computes it")
            } else if identity == "a" {
                Some("it is GENERATED ALWAYS AS IDENTITY: the database assigns it")
            } else {
                None
            };
            let column = CatalogColumn {
                typname,
                shown,
                nullable: !not_null,
                has_default: has_def || identity == "d",
                unwritable,
                typmod,
                nondeterministic,
            };
            (name, column)
        })
        .collect())
}

/// The unique indexes ON CONFLICT can use as arbiters, the primary key first.
async fn unique_keys(pool: &PgPool, oid: i64) -> Result<Vec<UniqueKey>, sqlx::Error> {
    let rows: Vec<(Vec<String>, Option<String>)> = sqlx::query_as(
        "SELECT (SELECT array_agg(a.attname::text)
                   FROM generate_series(0, i.indnkeyatts - 1) AS s(k)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[s.k]),
                (SELECT min(co.collname::text)
                   FROM unnest(i.indcollation::oid[]) AS ic(coll)
                   JOIN pg_collation co ON co.oid = ic.coll AND NOT co.collisdeterministic)
           FROM pg_index i
          WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid AND i.indimmediate
            AND i.indpred IS NULL AND i.indexprs IS NULL
          ORDER BY i.indisprimary DESC, i.indexrelid",
    )
    .bind(oid)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(mut columns, nondeterministic)| {
            columns.sort();
            UniqueKey { columns, nondeterministic }
        })
        .collect())
}
