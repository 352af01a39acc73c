//! The SQL each resolved route runs. Every statement takes one `text[]` parameter per column
//! (one element per row, so any number of rows and no parameter limit) and casts in SQL to the
//! column's type; identifiers are always double-quoted.
//!
//! - insert: `INSERT INTO "s"."t" ("a", "b") SELECT u."a"::integer, u."b"::text
//!   FROM UNNEST($1::text[], $2::text[]) AS u("a", "b")`, then `ON CONFLICT ("k") DO NOTHING`
//!   when the route has a key (rows affected: inserted; the rest were skipped);
//! - upsert: `INSERT INTO "s"."t" AS t (...) SELECT ... ON CONFLICT ("k") DO UPDATE SET "b" =
//!   EXCLUDED."b", ...` for every mapped non-key column (a key of every mapped column:
//!   `DO NOTHING`); with a `version`, `WHERE t."v" IS NULL OR EXCLUDED."v" >= t."v"` (text
//!   versions `COLLATE "C"` on both sides, as write-combining compares them; equal
//!   versions replace, so replaying an event is idempotent; a stored null is older than any
//!   version; an incoming null replaces only a stored null). It ends with
//!   `RETURNING (t.xmax = 0) AS inserted`: one row per inserted (true) or updated (false) row;
//!   rows sent and not returned were skipped (an older version, or `DO NOTHING`). A
//!   partitioned table cannot return `xmax`: its upsert first reads which keys exist (`WITH pre
//!   AS MATERIALIZED (SELECT keys FROM t WHERE keys IN (the rows' keys))`) and returns `NOT
//!   EXISTS` a match there. It reads the statement's snapshot: a row another transaction
//!   commits meanwhile is updated and counted as inserted (the counts are metrics only);
//! - delete: `DELETE FROM "s"."t" AS t USING UNNEST($1::text[]) AS u("k") WHERE
//!   t."k" = u."k"::integer` (every key column; rows affected: deleted).
//!
//! Columns in a row's `missing` set are left out of the insert's column list, so the table's
//! default applies (and `EXCLUDED` holds it for the update). A row whose every column is
//! missing inserts a row of defaults: `INSERT INTO "t" SELECT FROM UNNEST($1::text[]) AS u`,
//! whose one parameter only counts the rows.

use std::fmt::Write as _;

use crate::{
    file::{quote_identifier, Mode},
    mapping::ResolvedRoute,
    ops::{Action, Op},
    types::Scalar,
};

/// The statement kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Insert,
    Upsert,
    Delete,
}

impl StatementKind {
    pub fn of(action: &Action) -> Self {
        match action {
            Action::Insert => Self::Insert,
            Action::Upsert | Action::VersionedUpsert(_) => Self::Upsert,
            Action::Delete => Self::Delete,
        }
    }
}

/// A statement and what to bind to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// Parameter `$n` is the `text[]` of `row.values[columns[n - 1]]` over the rows. Empty
    /// for a row of defaults: then `$1` is any `text[]` with one element per row.
    pub columns: Vec<usize>,
}

impl Statement {
    /// The parameters for these operations' rows, in order.
    pub fn bind<'o>(&self, ops: &[&'o Op]) -> Vec<Vec<Option<&'o str>>> {
        if self.columns.is_empty() {
            return vec![vec![None; ops.len()]];
        }
        self.columns.iter().map(|&c| ops.iter().map(|op| op.row.values[c].as_deref()).collect()).collect()
    }
}

/// The statement for `kind` on `route`, leaving out the `missing` columns (insert and upsert).
pub fn statement(route: &ResolvedRoute, kind: StatementKind, missing: &[usize]) -> Statement {
    match kind {
        StatementKind::Insert => insert(route, missing),
        StatementKind::Upsert => upsert(route, missing),
        StatementKind::Delete => delete(route),
    }
}

/// The route's insert, without the `missing` columns.
pub fn insert(route: &ResolvedRoute, missing: &[usize]) -> Statement {
    let (mut sql, columns) = insert_select(route, missing, false);
    if !route.key.is_empty() {
        let _ = write!(sql, " ON CONFLICT ({}) DO NOTHING", key_list(route));
    }
    Statement { sql, columns }
}

/// The route's upsert, without the `missing` columns (never a key or the version column).
pub fn upsert(route: &ResolvedRoute, missing: &[usize]) -> Statement {
    let (mut sql, columns) = insert_select(route, missing, true);
    let set: Vec<String> = route
        .column_names()
        .enumerate()
        .filter(|(i, _)| !route.key.contains(i))
        .map(|(_, name)| format!("{q} = EXCLUDED.{q}", q = quote_identifier(name)))
        .collect();
    let _ = write!(sql, " ON CONFLICT ({})", key_list(route));
    if set.is_empty() {
        sql.push_str(" DO NOTHING");
    } else {
        let _ = write!(sql, " DO UPDATE SET {}", set.join(", "));
        if let Some(v) = route.version {
            // Text versions compare by bytes, as write-combining compares them (`compare.rs`),
            // whatever the column's collation.
            let collate = if route.columns[v].info.ty.scalar() == Scalar::Text { " COLLATE \"C\"" } else { "" };
            let v = quote_identifier(&route.columns[v].spec.name);
            let _ = write!(sql, " WHERE t.{v} IS NULL OR EXCLUDED.{v}{collate} >= t.{v}{collate}");
        }
    }
    if route.route.partitioned {
        // A partitioned table cannot return the system column xmax (0A000): the rows whose
        // key existed before the statement are the updated ones.
        let keys: Vec<String> = route.key.iter().map(|&i| quote_identifier(&route.columns[i].spec.name)).collect();
        let params: Vec<String> = route
            .key
            .iter()
            .map(|k| format!("${}::text[]", columns.iter().position(|c| c == k).map_or(0, |p| p + 1)))
            .collect();
        let casts: Vec<String> = route
            .key
            .iter()
            .zip(&keys)
            .map(|(&i, name)| format!("u.{name}::{}", route.columns[i].info.ty.sql_name()))
            .collect();
        let stored: Vec<String> = keys.iter().map(|k| format!("p.{k}")).collect();
        let same: Vec<String> = keys.iter().map(|k| format!("p.{k} = t.{k}")).collect();
        sql = format!(
            "WITH pre AS MATERIALIZED (SELECT {stored} FROM {table} AS p WHERE ({stored}) IN (SELECT {casts} FROM \
             UNNEST({params}) AS u({keys}))) {sql} RETURNING NOT EXISTS (SELECT FROM pre AS p WHERE {same}) AS \
             inserted",
            stored = stored.join(", "),
            table = route.route.table.quoted(),
            casts = casts.join(", "),
            params = params.join(", "),
            keys = keys.join(", "),
            same = same.join(" AND "),
        );
    } else {
        sql.push_str(" RETURNING (t.xmax = 0) AS inserted");
    }
    Statement { sql, columns }
}

/// The route's delete by key. Its parameters are the key values in `key` order (a delete
/// row's values).
pub fn delete(route: &ResolvedRoute) -> Statement {
    let names: Vec<String> = route.key.iter().map(|&i| quote_identifier(&route.columns[i].spec.name)).collect();
    let arrays: Vec<String> = (1..=names.len()).map(|n| format!("${n}::text[]")).collect();
    let matches: Vec<String> = route
        .key
        .iter()
        .zip(&names)
        .map(|(&i, name)| format!("t.{name} = u.{name}::{}", route.columns[i].info.ty.sql_name()))
        .collect();
    let sql = format!(
        "DELETE FROM {} AS t USING UNNEST({}) AS u({}) WHERE {}",
        route.route.table.quoted(),
        arrays.join(", "),
        names.join(", "),
        matches.join(" AND ")
    );
    Statement { sql, columns: (0..names.len()).collect() }
}

/// `INSERT INTO ... SELECT ... FROM UNNEST(...)` over the columns not `missing`.
fn insert_select(route: &ResolvedRoute, missing: &[usize], aliased: bool) -> (String, Vec<usize>) {
    let table = route.route.table.quoted();
    let alias = if aliased { " AS t" } else { "" };
    let columns: Vec<usize> = (0..route.columns.len()).filter(|i| !missing.contains(i)).collect();
    if columns.is_empty() {
        return (format!("INSERT INTO {table}{alias} SELECT FROM UNNEST($1::text[]) AS u"), columns);
    }
    let names: Vec<String> = columns.iter().map(|&i| quote_identifier(&route.columns[i].spec.name)).collect();
    let casts: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(&i, name)| format!("u.{name}::{}", route.columns[i].info.ty.sql_name()))
        .collect();
    let arrays: Vec<String> = (1..=columns.len()).map(|n| format!("${n}::text[]")).collect();
    let names = names.join(", ");
    let sql = format!(
        "INSERT INTO {table}{alias} ({names}) SELECT {} FROM UNNEST({}) AS u({names})",
        casts.join(", "),
        arrays.join(", ")
    );
    (sql, columns)
}

fn key_list(route: &ResolvedRoute) -> String {
    route.key.iter().map(|&i| quote_identifier(&route.columns[i].spec.name)).collect::<Vec<_>>().join(", ")
}

/// The operations of one round that go into one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'o> {
    pub route: usize,
    pub kind: StatementKind,
    /// The rows' `missing` set (empty for deletes).
    pub missing: &'o [usize],
    /// In offset order.
    pub ops: Vec<&'o Op>,
}

/// Splits a round into statements: one per route, kind and `missing` set, in the order of
/// their first operation. Within a round, statements touch disjoint rows (see `combine.rs`),
/// so their order does not matter.
pub fn groups<'o>(round: impl IntoIterator<Item = &'o Op>) -> Vec<Group<'o>> {
    let mut groups: Vec<Group<'o>> = Vec::new();
    for op in round {
        let kind = StatementKind::of(&op.action);
        let missing = op.row.missing.as_slice();
        match groups.iter_mut().find(|g| g.route == op.route && g.kind == kind && g.missing == missing) {
            Some(group) => group.ops.push(op),
            None => groups.push(Group { route: op.route, kind, missing, ops: vec![op] }),
        }
    }
    groups
}

/// Every statement a route may run with all columns present, for `sinker routes check`:
/// `(kind, sql)` pairs (an insert route with a `tombstone_key` deletes too).
pub fn describe(route: &ResolvedRoute) -> Vec<(StatementKind, String)> {
    let main = match route.mode() {
        Mode::Insert => StatementKind::Insert,
        Mode::Upsert => StatementKind::Upsert,
        Mode::Delete => StatementKind::Delete,
    };
    let mut out = vec![(main, statement(route, main, &[]).sql)];
    if main != StatementKind::Delete && route.route.tombstone_key.is_some() {
        out.push((StatementKind::Delete, delete(route).sql));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        file::RoutesFile,
        mapping::{ColumnInfo, Row},
        ops::RowKey,
        types::ColumnType,
    };

    fn resolved(text: &str, types: &[&str]) -> ResolvedRoute {
        let file = RoutesFile::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let route = file.routes.into_iter().next().expect("a route");
        let info = types
            .iter()
            .map(|t| ColumnInfo {
                ty: ColumnType::parse_declared(t).unwrap_or_else(|e| panic!("{e}")),
                nullable: true,
                has_default: true,
                modifier: crate::types::Modifier::None,
            })
            .collect();
        ResolvedRoute::new(route, info).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn orders() -> ResolvedRoute {
        resolved(
            r#"
[[route]]
name = "orders"
types = ["order.*"]
table = "shop.orders"
mode = "upsert"
key = ["order_id"]
version = "updated_at"
tombstone_key = "order_id"
[route.columns]
order_id = "data.order_id"
amount = "data.total"
updated_at = "ts"
raw = "data"
"#,
            &["bigint", "numeric", "timestamptz", "jsonb"],
        )
    }

    #[test]
    fn insert_without_a_key_is_a_plain_insert() {
        let route = resolved(
            "[[route]]\nname = \"e\"\ntypes = [\"*\"]\ntable = \"events\"\n[route.columns]\nid = \"id\"\ntags = \
             \"data.tags\"\n",
            &["uuid", "text[]"],
        );
        assert_eq!(
            insert(&route, &[]),
            Statement {
                sql: "INSERT INTO \"events\" (\"id\", \"tags\") SELECT u.\"id\"::uuid, u.\"tags\"::text[] FROM \
                      UNNEST($1::text[], $2::text[]) AS u(\"id\", \"tags\")"
                    .into(),
                columns: vec![0, 1],
            }
        );
        assert_eq!(
            insert(&route, &[0]).sql,
            "INSERT INTO \"events\" (\"tags\") SELECT u.\"tags\"::text[] FROM UNNEST($1::text[]) AS u(\"tags\")"
        );
        assert_eq!(insert(&route, &[0]).columns, [1]);
        assert_eq!(
            insert(&route, &[0, 1]),
            Statement { sql: "INSERT INTO \"events\" SELECT FROM UNNEST($1::text[]) AS u".into(), columns: vec![] }
        );
    }

    #[test]
    fn insert_with_a_key_does_nothing_on_conflict() {
        let route = resolved(
            "[[route]]\nname = \"e\"\ntypes = [\"*\"]\ntable = \"s.e\"\nkey = [\"a\", \"b\"]\n[route.columns]\na = \
             \"id\"\nb = \"type\"\nwhen = \"ts\"\n",
            &["uuid", "varchar", "timestamp"],
        );
        assert_eq!(
            insert(&route, &[]).sql,
            "INSERT INTO \"s\".\"e\" (\"a\", \"b\", \"when\") SELECT u.\"a\"::uuid, u.\"b\"::text, \
             u.\"when\"::timestamp without time zone FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(\"a\", \
             \"b\", \"when\") ON CONFLICT (\"a\", \"b\") DO NOTHING"
        );
    }

    #[test]
    fn upsert_updates_every_non_key_column_when_the_version_is_not_older() {
        let route = orders();
        assert_eq!(
            upsert(&route, &[]).sql,
            "INSERT INTO \"shop\".\"orders\" AS t (\"order_id\", \"amount\", \"updated_at\", \"raw\") SELECT \
             u.\"order_id\"::bigint, u.\"amount\"::numeric, u.\"updated_at\"::timestamp with time zone, \
             u.\"raw\"::jsonb FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(\"order_id\", \
             \"amount\", \"updated_at\", \"raw\") ON CONFLICT (\"order_id\") DO UPDATE SET \"amount\" = \
             EXCLUDED.\"amount\", \"updated_at\" = EXCLUDED.\"updated_at\", \"raw\" = EXCLUDED.\"raw\" WHERE \
             t.\"updated_at\" IS NULL OR EXCLUDED.\"updated_at\" >= t.\"updated_at\" RETURNING (t.xmax = 0) AS \
             inserted"
        );
        // A missing column leaves the insert's list but stays in SET: EXCLUDED holds its default.
        let without_raw = upsert(&route, &[3]);
        assert!(without_raw.sql.contains("(\"order_id\", \"amount\", \"updated_at\") SELECT"), "{}", without_raw.sql);
        assert!(without_raw.sql.contains("\"raw\" = EXCLUDED.\"raw\""), "{}", without_raw.sql);
        assert_eq!(without_raw.columns, [0, 1, 2]);
    }

    #[test]
    fn upsert_without_version_or_non_key_columns() {
        let plain = resolved(
            "[[route]]\nname = \"c\"\ntypes = [\"*\"]\ntable = \"counters\"\nmode = \"upsert\"\nkey = [\"k\"]\n\
             [route.columns]\nk = \"key\"\nn = \"data.n\"\n",
            &["text", "integer"],
        );
        assert_eq!(
            upsert(&plain, &[]).sql,
            "INSERT INTO \"counters\" AS t (\"k\", \"n\") SELECT u.\"k\"::text, u.\"n\"::integer FROM \
             UNNEST($1::text[], $2::text[]) AS u(\"k\", \"n\") ON CONFLICT (\"k\") DO UPDATE SET \"n\" = \
             EXCLUDED.\"n\" RETURNING (t.xmax = 0) AS inserted"
        );
        let all_key = resolved(
            "[[route]]\nname = \"s\"\ntypes = [\"*\"]\ntable = \"seen\"\nmode = \"upsert\"\nkey = [\"k\"]\n\
             [route.columns]\nk = \"key\"\n",
            &["text"],
        );
        assert_eq!(
            upsert(&all_key, &[]).sql,
            "INSERT INTO \"seen\" AS t (\"k\") SELECT u.\"k\"::text FROM UNNEST($1::text[]) AS u(\"k\") ON CONFLICT \
             (\"k\") DO NOTHING RETURNING (t.xmax = 0) AS inserted"
        );
    }

    #[test]
    fn delete_matches_every_key_column() {
        let one = orders();
        assert_eq!(
            delete(&one),
            Statement {
                sql: "DELETE FROM \"shop\".\"orders\" AS t USING UNNEST($1::text[]) AS u(\"order_id\") WHERE \
                      t.\"order_id\" = u.\"order_id\"::bigint"
                    .into(),
                columns: vec![0],
            }
        );
        let two = resolved(
            "[[route]]\nname = \"d\"\ntypes = [\"*\"]\ntable = \"lines\"\nmode = \"delete\"\nkey = [\"line\", \
             \"order\"]\n[route.columns]\norder = \"data.o\"\nline = \"data.l\"\n",
            &["bigint", "smallint"],
        );
        assert_eq!(
            delete(&two).sql,
            "DELETE FROM \"lines\" AS t USING UNNEST($1::text[], $2::text[]) AS u(\"line\", \"order\") WHERE \
             t.\"line\" = u.\"line\"::smallint AND t.\"order\" = u.\"order\"::bigint"
        );
        assert_eq!(
            describe(&one),
            [(StatementKind::Upsert, upsert(&one, &[]).sql), (StatementKind::Delete, delete(&one).sql)]
        );
    }

    #[test]
    fn identifiers_are_quoted_with_quotes_doubled() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_identifier("Ünïcode$1"), "\"Ünïcode$1\"");
    }

    #[test]
    fn rounds_split_into_statements_and_bind_text_arrays() {
        let row = |values: &[Option<&str>], missing: &[usize]| Row {
            values: values.iter().map(|v| v.map(str::to_owned)).collect(),
            missing: missing.to_vec(),
        };
        let op = |offset, route, action, row| Op {
            offset,
            route,
            key: Some(RowKey { table_id: 0, values: vec![offset.to_string()] }),
            action,
            row,
        };
        let round = vec![
            op(1, 0, Action::Upsert, row(&[Some("1"), Some("a")], &[])),
            op(2, 0, Action::Upsert, row(&[Some("2"), None], &[1])),
            op(3, 1, Action::Delete, row(&[Some("3")], &[])),
            op(4, 0, Action::Upsert, row(&[Some("4"), None], &[])),
        ];
        let groups = groups(&round);
        let summary: Vec<(usize, StatementKind, &[usize], Vec<i64>)> =
            groups.iter().map(|g| (g.route, g.kind, g.missing, g.ops.iter().map(|o| o.offset).collect())).collect();
        assert_eq!(
            summary,
            [
                (0, StatementKind::Upsert, &[][..], vec![1, 4]),
                (0, StatementKind::Upsert, &[1][..], vec![2]),
                (1, StatementKind::Delete, &[][..], vec![3]),
            ]
        );
        let statement = Statement { sql: String::new(), columns: vec![0, 1] };
        assert_eq!(statement.bind(&groups[0].ops), [vec![Some("1"), Some("4")], vec![Some("a"), None]]);
        let defaults = Statement { sql: String::new(), columns: vec![] };
        assert_eq!(defaults.bind(&groups[0].ops), [vec![None, None]]);
    }

    #[test]
    fn text_versions_compare_in_the_c_collation() {
        let route = resolved(
            "[[route]]\nname = \"r\"\ntypes = [\"*\"]\ntable = \"t\"\nmode = \"upsert\"\nkey = [\"k\"]\nversion = \
             \"v\"\n[route.columns]\nk = \"key\"\nv = \"data.v\"\n",
            &["bigint", "varchar"],
        );
        assert!(
            upsert(&route, &[])
                .sql
                .contains(" WHERE t.\"v\" IS NULL OR EXCLUDED.\"v\" COLLATE \"C\" >= t.\"v\" COLLATE \"C\" RETURNING"),
            "{}",
            upsert(&route, &[]).sql
        );
    }

    #[test]
    fn a_partitioned_upsert_counts_updates_by_the_keys_that_existed() {
        let mut route = resolved(
            "[[route]]\nname = \"r\"\ntypes = [\"*\"]\ntable = \"s.p\"\nmode = \"upsert\"\nkey = [\"b\", \"a\"]\n\
             [route.columns]\nx = \"data.x\"\na = \"key\"\nb = \"id\"\n",
            &["text", "bigint", "uuid"],
        );
        route.route.partitioned = true;
        assert_eq!(
            upsert(&route, &[0]).sql,
            "WITH pre AS MATERIALIZED (SELECT p.\"b\", p.\"a\" FROM \"s\".\"p\" AS p WHERE (p.\"b\", p.\"a\") IN \
             (SELECT u.\"b\"::uuid, u.\"a\"::bigint FROM UNNEST($2::text[], $1::text[]) AS u(\"b\", \"a\"))) INSERT INTO \
             \"s\".\"p\" AS t (\"a\", \"b\") SELECT u.\"a\"::bigint, u.\"b\"::uuid FROM UNNEST($1::text[], $2::text[]) \
             AS u(\"a\", \"b\") ON CONFLICT (\"b\", \"a\") DO UPDATE SET \"x\" = EXCLUDED.\"x\" RETURNING NOT EXISTS \
             (SELECT FROM pre AS p WHERE p.\"b\" = t.\"b\" AND p.\"a\" = t.\"a\") AS inserted"
        );
    }
}
