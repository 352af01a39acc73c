//! Binary COPY against a real PostgreSQL: every type routes write, encoded by sluice from the
//! literal `convert` produced, stores exactly what the statements' `text[]` cast stores.
//!
//! Needs DATABASE_URL (an account that may create databases), as `make test` provides.

mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use sinker::{binary::CopyBuffer, routed_copy::encode_literal};
use sluice_routes::{convert, ColumnType, Extracted, Scalar};
use support::fresh_store;

/// (column, declared SQL type, the scalar routes read it as).
const COLUMNS: [(&str, &str, Scalar); 16] = [
    ("t", "text", Scalar::Text),
    ("vc", "varchar(200)", Scalar::Text),
    ("u", "uuid", Scalar::Uuid),
    ("i2", "smallint", Scalar::Int2),
    ("i4", "integer", Scalar::Int4),
    ("i8", "bigint", Scalar::Int8),
    ("n", "numeric", Scalar::Numeric),
    ("n2", "numeric(14,2)", Scalar::Numeric),
    ("f4", "real", Scalar::Float4),
    ("f8", "double precision", Scalar::Float8),
    ("b", "boolean", Scalar::Bool),
    ("tz", "timestamptz", Scalar::Timestamptz),
    ("ts", "timestamp", Scalar::Timestamp),
    ("d", "date", Scalar::Date),
    ("j", "json", Scalar::Json),
    ("jb", "jsonb", Scalar::Jsonb),
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0001-01-01T00:00:00Z".to_owned()),
        Just("9999-12-31T23:59:59.999999Z".to_owned()),
        Just("2024-02-29T23:59:60.5+01:00".to_owned()),
        Just("1999-12-31T23:59:59.999999-00:30".to_owned()),
        Just("2000-01-01T00:00:00Z".to_owned()),
        (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| {
            chrono::DateTime::from_timestamp(s, n)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        }),
    ]
}

/// A value for each column, as a route's `data` would hold it (some refused by `convert`).
fn value(scalar: Scalar) -> BoxedStrategy<Value> {
    match scalar {
        Scalar::Text => {
            prop_oneof![Just(json!("")), Just(json!("é😀\t\n\\\"")), "\\PC{0,40}".prop_map(|s| json!(s))].boxed()
        }
        Scalar::Uuid => any::<[u8; 16]>().prop_map(|b| json!(uuid::Uuid::from_bytes(b).to_string())).boxed(),
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => prop_oneof![
            any::<i16>().prop_map(|n| json!(n)),
            any::<i32>().prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n.to_string())),
            Just(json!(i64::MIN)),
            Just(json!(-0)),
        ]
        .boxed(),
        Scalar::Numeric => prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "[+-]?[0-9]{0,30}(\\.[0-9]{0,24})?([eE][+-]?[0-9]{1,3})?".prop_map(|s| json!(s)),
            Just(json!("NaN")),
            Just(json!("1.005")),
            Just(json!("-0.000")),
            Just(json!("99999999999.995")),
            Just(json!(".5e-3")),
        ]
        .boxed(),
        Scalar::Float4 | Scalar::Float8 => prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            any::<f32>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            Just(json!(1e-45)),
            Just(json!(5e-324)),
            Just(json!(f64::MAX)),
            Just(json!("NaN")),
            Just(json!("-1.5e-7")),
        ]
        .boxed(),
        Scalar::Bool => any::<bool>().prop_map(|b| json!(b)).boxed(),
        Scalar::Timestamptz => timestamp().prop_map(|s| json!(s)).boxed(),
        Scalar::Timestamp => prop_oneof![
            timestamp().prop_map(|s| json!(s)),
            Just(json!("2026-03-29T02:30:00.123456789")),
            Just(json!("0001-01-01T00:00:00")),
        ]
        .boxed(),
        Scalar::Date => prop_oneof![
            Just(json!("0001-01-01")),
            Just(json!("9999-12-31")),
            Just(json!("2000-02-29")),
            (1i32..9999, 1u32..13, 1u32..29).prop_map(|(y, m, d)| json!(format!("{y:04}-{m:02}-{d:02}"))),
        ]
        .boxed(),
        Scalar::Json | Scalar::Jsonb => json_value().boxed(),
    }
}

fn row() -> impl Strategy<Value = Vec<Value>> {
    COLUMNS.iter().map(|(_, _, scalar)| value(*scalar)).collect::<Vec<_>>()
}

/// The literal each value converts to (None: SQL NULL, also for what `convert` refuses).
fn literals(values: &[Value]) -> Vec<Option<String>> {
    values
        .iter()
        .zip(COLUMNS)
        .map(|(v, (_, _, scalar))| convert(Extracted::Json(v), ColumnType::Scalar(scalar)).ok().flatten())
        .collect()
}

fn code(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.code().unwrap_or_default().into_owned(),
        other => panic!("not a database error: {other}"),
    }
}

async fn round_trip(rows: Vec<Vec<Value>>) {
    let store = fresh_store().await;
    let pool = store.pool();
    let ddl: Vec<String> = COLUMNS.iter().map(|(name, ty, _)| format!("{name} {ty}")).collect();
    for table in ["by_copy", "by_cast"] {
        sqlx::query(&format!("CREATE TABLE {table} (id integer PRIMARY KEY, {})", ddl.join(", ")))
            .execute(pool)
            .await
            .expect("create");
    }
    let literal_rows: Vec<Vec<Option<String>>> = rows.iter().map(|r| literals(r)).collect();

    // The statements' way: text[] per column, cast in SQL (as sluice_routes::sql builds it).
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _, _)| *name).collect();
    let casts: Vec<String> = COLUMNS
        .iter()
        .map(|(name, _, scalar)| format!("u.{name}::{}", ColumnType::Scalar(*scalar).sql_name()))
        .collect();
    let arrays: Vec<String> = (2..=COLUMNS.len() + 1).map(|n| format!("${n}::text[]")).collect();
    let sql = format!(
        "INSERT INTO by_cast (id, {names}) SELECT u.id, {casts} FROM UNNEST($1::integer[], {arrays}) AS u(id, {names})",
        names = names.join(", "),
        casts = casts.join(", "),
        arrays = arrays.join(", ")
    );
    let copy_sql = format!("COPY by_copy (id, {}) FROM STDIN (FORMAT binary)", names.join(", "));
    let mut conn = pool.acquire().await.expect("conn");
    // Row by row: a value the column refuses (numeric(14,2) overflow) must be refused by both.
    for (id, literals) in literal_rows.iter().enumerate() {
        let mut query = sqlx::query(&sql).bind(vec![id as i32]);
        for literal in literals {
            query = query.bind(vec![literal.clone()]);
        }
        let by_cast = query.execute(&mut *conn).await.map(|_| ()).map_err(|e| code(&e));

        // Binary COPY, encoded by sluice from the same literals.
        let mut stream = CopyBuffer::default();
        stream.row(COLUMNS.len() as i16 + 1);
        stream.int4(id as i32);
        for (literal, (name, _, scalar)) in literals.iter().zip(COLUMNS) {
            match literal {
                None => stream.null(),
                Some(text) => encode_literal(&mut stream, scalar, text)
                    .unwrap_or_else(|| panic!("{name}: a converted literal encodes ({text:?})")),
            }
        }
        let mut copy = conn.copy_in_raw(&copy_sql).await.expect("copy");
        copy.send(stream.finish()).await.expect("send");
        let by_copy = copy.finish().await.map(|_| ()).map_err(|e| code(&e));
        assert_eq!(by_cast, by_copy, "row {id}: the same outcome ({literals:?})");
    }

    let dump = |table: &str| {
        let sql = format!(
            "SELECT id, {} FROM {table} ORDER BY id",
            names.iter().map(|n| format!("{n}::text")).collect::<Vec<_>>().join(", ")
        );
        let pool = pool.clone();
        async move {
            let rows = sqlx::query(&sql).fetch_all(&pool).await.expect("dump");
            rows.iter()
                .map(|r| {
                    use sqlx::Row as _;
                    (1..=COLUMNS.len()).map(|i| r.get::<Option<String>, _>(i)).collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        }
    };
    let (by_cast, by_copy) = (dump("by_cast").await, dump("by_copy").await);
    for (i, (a, b)) in by_cast.iter().zip(&by_copy).enumerate() {
        for (c, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x, y, "row {i}, column {} (literal {:?})", COLUMNS[c].0, literal_rows[i][c]);
        }
    }
    assert_eq!(by_cast.len(), by_copy.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn binary_copy_stores_what_the_text_cast_stores(rows in prop::collection::vec(row(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(round_trip(rows));
    }
}

#[test]
fn refused_values_are_not_encoded() {
    let mut c = CopyBuffer::default();
    for (scalar, literal) in [
        (Scalar::Numeric, "NaN"),
        (Scalar::Numeric, "Infinity"),
        (Scalar::Float8, "NaN"),
        (Scalar::Float4, "inf"),
        (Scalar::Float4, "1e39"),
        (Scalar::Bool, "t"),
        (Scalar::Int2, "40000"),
        (Scalar::Uuid, "nope"),
        (Scalar::Date, "2026-02-30"),
    ] {
        assert_eq!(encode_literal(&mut c, scalar, literal), None, "{scalar:?} {literal}");
    }
}
