//! Binary COPY for insert routes: a statement group of inserts is encoded from its rows'
//! literals (what `sluice_routes::convert` produced for the `text[]` statements) into
//! PostgreSQL's binary COPY format, and COPYed straight into the route's table.
//!
//! Invariants:
//! - a value is encoded only when its literal parses back exactly as the column's type reads it
//!   (the same value the statement's `u."c"::type` cast would store); anything else (array
//!   columns, a literal this encoder does not read) leaves the whole group to the statement;
//! - the group's columns are the statement's (`Statement::columns`: the rows' `missing`
//!   columns are left out, so the table's defaults apply, as in the statement).

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use sluice_routes::{file::quote_identifier, ColumnType, Op, ResolvedRoute, Scalar, Statement};

use crate::binary::{self, CopyBuffer};

/// `COPY "s"."t" ("a", "b") FROM STDIN (FORMAT binary)` for these columns of the route.
pub fn copy_sql(route: &ResolvedRoute, columns: &[usize]) -> String {
    let names: Vec<String> = columns.iter().map(|&c| quote_identifier(&route.columns[c].spec.name)).collect();
    format!("COPY {} ({}) FROM STDIN (FORMAT binary)", route.route.table.quoted(), names.join(", "))
}

/// Whether the route's columns can all go by binary COPY (no array column).
pub fn copyable(route: &ResolvedRoute) -> bool {
    route.columns.iter().all(|c| matches!(c.info.ty, ColumnType::Scalar(_)))
}

/// The binary COPY stream of an insert group, or None when a value cannot be encoded here.
pub fn encode_group(route: &ResolvedRoute, statement: &Statement, ops: &[&Op]) -> Option<Vec<u8>> {
    if statement.columns.is_empty() {
        return None;
    }
    let fields = i16::try_from(statement.columns.len()).ok()?;
    let width: usize = ops.iter().map(|op| op.row.values.iter().flatten().map(|v| v.len() + 8).sum::<usize>()).sum();
    let mut c = CopyBuffer::with_capacity(19 + width + ops.len() * 2);
    for op in ops {
        c.row(fields);
        for &column in &statement.columns {
            let ColumnType::Scalar(scalar) = route.columns[column].info.ty else { return None };
            match op.row.values.get(column)? {
                None => c.null(),
                Some(literal) => encode_literal(&mut c, scalar, literal)?,
            }
        }
    }
    Some(c.finish())
}

/// One value from its literal (as `convert` writes it for `scalar`), or None when the literal
/// is not one this encoder reads exactly.
pub fn encode_literal(c: &mut CopyBuffer, scalar: Scalar, literal: &str) -> Option<()> {
    match scalar {
        Scalar::Text | Scalar::Json => c.text(literal),
        Scalar::Jsonb => c.jsonb(literal),
        Scalar::Uuid => c.uuid(&uuid::Uuid::parse_str(literal).ok()?),
        Scalar::Int2 => c.int2(literal.parse().ok()?),
        Scalar::Int4 => c.int4(literal.parse().ok()?),
        Scalar::Int8 => c.int8(literal.parse().ok()?),
        Scalar::Numeric => c.bytes(&binary::numeric(literal)?),
        Scalar::Float4 => c.float4(finite(literal.parse::<f32>().ok()?)?),
        Scalar::Float8 => c.float8(finite(literal.parse::<f64>().ok()?)?),
        Scalar::Bool => c.bool(match literal {
            "true" => true,
            "false" => false,
            _ => return None,
        }),
        Scalar::Timestamptz => c.timestamptz(DateTime::parse_from_rfc3339(literal).ok()?.to_utc()),
        Scalar::Timestamp => c.timestamp(NaiveDateTime::parse_from_str(literal, "%Y-%m-%dT%H:%M:%S%.f").ok()?),
        Scalar::Date => c.date(NaiveDate::parse_from_str(literal, "%Y-%m-%d").ok()?),
    }
    Some(())
}

fn finite<F: Into<f64> + Copy>(f: F) -> Option<F> {
    f.into().is_finite().then_some(f)
}
