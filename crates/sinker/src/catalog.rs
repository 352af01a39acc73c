//! Routes resolved against PostgreSQL's catalog, at start and in `sinker routes check`.
//!
//! For each route of the file, in file order:
//! - its table exists (schema-qualified, or found through the session's `search_path`; names
//!   are exact) and is a table (`relkind` `r` or `p`);
//! - every mapped column exists, has a type routes write (`pg_type.typname`; a domain's base
//!   type), and is not generated (`GENERATED ALWAYS AS (...)` or `GENERATED ALWAYS AS
//!   IDENTITY`: the database assigns those);
//! - nullability is `NOT attnotnull` (and not a NOT NULL domain), a default is `atthasdef`, an
//!   identity `BY DEFAULT`, or a domain default;
//! - a `key` is exactly the column set of the primary key or of a unique index that ON
//!   CONFLICT can use as its arbiter: valid, not deferrable, not partial, no expressions;
//! - then [`ResolvedRoute::new`]: declared types agree with the catalog, versions are
//!   orderable, keys comparable, file defaults convert.
//!
//! Every problem of every route is collected ([`Problem`]), so one run lists them all. Nothing
//! here writes: user tables are never created or altered.

use std::{collections::HashMap, fmt};

use sluice_routes::{ColumnInfo, ColumnType, ResolvedRoute, ResolvedRoutes, Route, RoutesFile};
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
}

/// A unique index ON CONFLICT can use: its key columns.
type UniqueKey = Vec<String>;

/// Resolves every route of `file` against the database. The outer error is the database's
/// (retry); the inner one lists every problem of the file (fix the file or the tables).
pub async fn resolve(pool: &PgPool, file: RoutesFile) -> Result<Result<ResolvedRoutes, Vec<Problem>>, sqlx::Error> {
    let mut problems = Vec::new();
    let mut infos = Vec::with_capacity(file.routes.len());
    for route in &file.routes {
        match route_info(pool, route).await? {
            Ok(info) => {
                if let Err(errors) = ResolvedRoute::new(route.clone(), info.clone()) {
                    problems.extend(errors.into_iter().map(|e| Problem {
                        route: e.route,
                        table: e.table,
                        column: Some(e.column).filter(|c| c != "*"),
                        message: e.message,
                    }));
                }
                infos.push(info);
            }
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    Ok(ResolvedRoutes::resolve(file, infos).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| Problem { route: e.route, table: e.table, column: Some(e.column), message: e.message })
            .collect()
    }))
}

/// The catalog facts of one route's columns, or what is wrong with them.
async fn route_info(pool: &PgPool, route: &Route) -> Result<Result<Vec<ColumnInfo>, Vec<Problem>>, sqlx::Error> {
    let table = route.table.to_string();
    let problem = |column: Option<&str>, message: String| Problem {
        route: route.name.clone(),
        table: table.clone(),
        column: column.map(str::to_owned),
        message,
    };
    let found: Option<(i64, String)> =
        sqlx::query_as("SELECT c.oid::int8, c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)")
            .bind(route.table.quoted())
            .fetch_optional(pool)
            .await?;
    let Some((oid, relkind)) = found else {
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
    let columns = columns(pool, oid).await?;
    let mut problems = Vec::new();
    let mut info = Vec::with_capacity(route.columns.len());
    for spec in &route.columns {
        let Some(column) = columns.get(&spec.name) else {
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
            Ok(ty) => info.push(ColumnInfo { ty, nullable: column.nullable, has_default: column.has_default }),
            Err(e) => problems.push(problem(
                Some(&spec.name),
                format!("its type {} is not one routes write ({e}): change the column or remove it", column.shown),
            )),
        }
    }
    if !route.key.is_empty() {
        let keys = unique_keys(pool, oid).await?;
        let mut wanted = route.key.clone();
        wanted.sort();
        if !keys.contains(&wanted) {
            let known = if keys.is_empty() {
                "the table has none".to_owned()
            } else {
                let listed: Vec<String> = keys.iter().map(|k| format!("({})", k.join(", "))).collect();
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
    Ok(if problems.is_empty() { Ok(info) } else { Err(problems) })
}

async fn columns(pool: &PgPool, oid: i64) -> Result<HashMap<String, CatalogColumn>, sqlx::Error> {
    let rows: Vec<(String, String, String, bool, bool, String, String)> = sqlx::query_as(
        "SELECT a.attname::text,
                COALESCE(bt.typname, t.typname)::text,
                format_type(a.atttypid, a.atttypmod),
                a.attnotnull OR COALESCE(t.typnotnull, false),
                a.atthasdef OR t.typdefault IS NOT NULL,
                a.attidentity::text,
                a.attgenerated::text
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
          WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(oid)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, typname, shown, not_null, has_def, identity, generated)| {
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
            };
            (name, column)
        })
        .collect())
}

/// The key column sets (sorted) of the unique indexes ON CONFLICT can use as arbiters.
async fn unique_keys(pool: &PgPool, oid: i64) -> Result<Vec<UniqueKey>, sqlx::Error> {
    let rows: Vec<(Vec<String>,)> = sqlx::query_as(
        "SELECT (SELECT array_agg(a.attname::text)
                   FROM generate_series(0, i.indnkeyatts - 1) AS s(k)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[s.k])
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
        .map(|(mut k,)| {
            k.sort();
            k
        })
        .collect())
}
