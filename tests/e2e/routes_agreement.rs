//! The gateway and the sinker agree (issue 12): a gateway with `--routes` in front of a sinker
//! with the same file and a real catalog. Every event the gateway answers 202 becomes its row,
//! with each value stored exactly (none dead-lettered); every event it refuses names the route,
//! column and path. The values sit at the edges: integers at their range limits, numeric
//! strings, timestamps in years 1 and 9999, upper-case uuids, arrays holding quotes,
//! backslashes, NULL and nothing, text with unicode.

use std::{collections::BTreeMap, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    gateway_routes::routes_file,
    helpers::{header, Proc},
    routes::DRAIN,
};

const WAIT: Duration = Duration::from_secs(30);

const TABLE: &str = "
CREATE SCHEMA agree;
CREATE TABLE agree.typed (
    event_id uuid PRIMARY KEY,
    small    smallint,
    whole    integer,
    big      bigint NOT NULL,
    amount   numeric,
    ratio    double precision,
    at       timestamptz,
    local_at timestamp,
    day      date,
    ref      uuid,
    flag     boolean,
    label    text NOT NULL,
    tags     text[],
    counts   bigint[],
    doc      jsonb
);
";

/// Every column declares its type; the NOT NULL ones are required.
const ROUTES: &str = r#"
[[route]]
name = "typed"
types = ["typed"]
table = "agree.typed"
key = ["event_id"]
[route.columns]
event_id = { path = "id", type = "uuid", required = true }
small = { path = "data.small", type = "smallint" }
whole = { path = "data.whole", type = "integer" }
big = { path = "data.big", type = "bigint", required = true }
amount = { path = "data.amount", type = "numeric" }
ratio = { path = "data.ratio", type = "double precision" }
at = { path = "data.at", type = "timestamptz" }
local_at = { path = "data.local_at", type = "timestamp" }
day = { path = "data.day", type = "date" }
ref = { path = "data.ref", type = "uuid" }
flag = { path = "data.flag", type = "boolean" }
label = { path = "data.label", type = "text", required = true }
tags = { path = "data.tags", type = "text[]" }
counts = { path = "data.counts", type = "bigint[]" }
doc = { path = "data", type = "jsonb" }
"#;

/// A stored row as JSON: scalars as PostgreSQL prints them (timestamptz in UTC), arrays as
/// JSON arrays (the jsonb column is compared in SQL: its numbers may not fit an f64).
const STORED: &str = "SELECT event_id, jsonb_build_object(
    'small', small::text, 'whole', whole::text, 'big', big::text, 'amount', amount::text,
    'ratio', ratio::text, 'at', (at AT TIME ZONE 'UTC')::text, 'local_at', local_at::text, 'day', day::text,
    'ref', ref::text, 'flag', flag::text, 'label', label, 'tags', to_jsonb(tags), 'counts', to_jsonb(counts))
    FROM agree.typed";

const REF: &str = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";

/// A good event's data and the row it becomes.
fn base() -> (Value, Value) {
    let data = json!({
        "small": 1, "whole": 2, "big": 3, "amount": "4.50", "ratio": 0.25, "at": "2026-01-31T12:00:00Z",
        "local_at": "2026-01-31T12:00:00", "day": "2026-01-31", "ref": REF, "flag": true, "label": "x",
        "tags": ["a"], "counts": [1]
    });
    let row = json!({
        "small": "1", "whole": "2", "big": "3", "amount": "4.50", "ratio": "0.25", "at": "2026-01-31 12:00:00",
        "local_at": "2026-01-31 12:00:00", "day": "2026-01-31", "ref": REF, "flag": "true", "label": "x",
        "tags": ["a"], "counts": [1]
    });
    (data, row)
}

/// What the gateway must do with an event.
enum Expect {
    /// 202, and the row holds these columns (the others as in [`base`]).
    Stored(Value),
    /// 400 naming this column (its path is `data.<column>`).
    Refused(&'static str),
}

/// (what changes in the base event's data (a null removes the field), what to expect).
#[allow(clippy::too_many_lines)] // one line per case
fn cases() -> Vec<(Value, Expect)> {
    use Expect::{Refused, Stored};
    let unicode = "ünïcødé ✓ 😀 \"quoted\" back\\slash\nnew line\ttab";
    vec![
        (json!({}), Stored(json!({}))),
        // Integers at their range limits, as numbers and as strings.
        (json!({"big": 9_223_372_036_854_775_807_i64}), Stored(json!({"big": "9223372036854775807"}))),
        (json!({"big": i64::MIN}), Stored(json!({"big": "-9223372036854775808"}))),
        (json!({"big": "-9223372036854775808"}), Stored(json!({"big": "-9223372036854775808"}))),
        (json!({"big": 9_223_372_036_854_775_808_u64}), Refused("big")),
        (json!({"big": "9223372036854775808"}), Refused("big")),
        (json!({"small": 32767, "whole": "-2147483648"}), Stored(json!({"small": "32767", "whole": "-2147483648"}))),
        (json!({"small": "-32768", "whole": 2_147_483_647}), Stored(json!({"small": "-32768", "whole": "2147483647"}))),
        (json!({"small": 32768}), Refused("small")),
        (json!({"whole": "2147483648"}), Refused("whole")),
        (json!({"whole": "+7"}), Stored(json!({"whole": "7"}))),
        (json!({"whole": 1.0}), Refused("whole")),
        // Numeric strings: exact, whatever their length.
        (
            json!({"amount": "-12345678901234567890.123456789012345678"}),
            Stored(json!({"amount": "-12345678901234567890.123456789012345678"})),
        ),
        (json!({"amount": ".5"}), Stored(json!({"amount": "0.5"}))),
        (json!({"amount": "1e3"}), Stored(json!({"amount": "1000"}))),
        (json!({"amount": "1.5e-20"}), Stored(json!({"amount": "0.000000000000000000015"}))),
        (json!({"amount": 12.25}), Stored(json!({"amount": "12.25"}))),
        (json!({"amount": "NaN"}), Refused("amount")),
        (json!({"amount": "1,5"}), Refused("amount")),
        // Floats at their limits.
        (json!({"ratio": f64::MAX}), Stored(json!({"ratio": "1.7976931348623157e+308"}))),
        (json!({"ratio": "-1e-300"}), Stored(json!({"ratio": "-1e-300"}))),
        (json!({"ratio": "1e309"}), Refused("ratio")),
        (json!({"amount": "1e999999"}), Refused("amount")),
        (json!({"amount": "-1e-20000"}), Refused("amount")),
        // Timestamps in years 1 and 9999, offsets, digits past the microsecond.
        (json!({"at": "0001-01-01T00:00:00Z"}), Stored(json!({"at": "0001-01-01 00:00:00"}))),
        (json!({"at": "9999-12-31T23:59:59.999999Z"}), Stored(json!({"at": "9999-12-31 23:59:59.999999"}))),
        (json!({"at": "2026-03-01T12:00:00.1234567+02:00"}), Stored(json!({"at": "2026-03-01 10:00:00.123456"}))),
        (json!({"at": "0001-01-01T00:30:00+01:00"}), Refused("at")),
        (json!({"at": "2026-01-31 12:00:00"}), Refused("at")),
        (
            json!({"local_at": "0001-01-01T00:00:00", "day": "0001-01-01"}),
            Stored(json!({"local_at": "0001-01-01 00:00:00", "day": "0001-01-01"})),
        ),
        (
            json!({"local_at": "9999-12-31T23:59:59.999999", "day": "9999-12-31"}),
            Stored(json!({"local_at": "9999-12-31 23:59:59.999999", "day": "9999-12-31"})),
        ),
        (json!({"local_at": "2026-01-31T12:00:00+02:00"}), Stored(json!({"local_at": "2026-01-31 10:00:00"}))),
        (json!({"day": "2026-02-30"}), Refused("day")),
        // Uuids in upper case are taken (stored lower case); other forms are not.
        (json!({"ref": REF.to_uppercase()}), Stored(json!({"ref": REF}))),
        (json!({"ref": format!("{{{REF}}}")}), Refused("ref")),
        (json!({"flag": false}), Stored(json!({"flag": "false"}))),
        (json!({"flag": "true"}), Refused("flag")),
        // Arrays with quotes, backslashes, NULL, the word NULL, braces and commas; empty arrays.
        (
            json!({"tags": ["quo\"te", "back\\slash", null, "NULL", "", "a,b{c}", unicode], "counts": [i64::MAX, i64::MIN, null]}),
            Stored(
                json!({"tags": ["quo\"te", "back\\slash", null, "NULL", "", "a,b{c}", unicode], "counts": [i64::MAX, i64::MIN, null]}),
            ),
        ),
        (json!({"tags": [], "counts": []}), Stored(json!({"tags": [], "counts": []}))),
        (json!({"tags": [["nested"]]}), Refused("tags")),
        (json!({"counts": [1, 1.5]}), Refused("counts")),
        // Text with unicode, quotes and control characters; required columns.
        (json!({"label": unicode}), Stored(json!({"label": unicode}))),
        (json!({"label": 5}), Refused("label")),
        (json!({"label": null}), Refused("label")),
        (json!({"big": null}), Refused("big")),
        // Optional columns missing: NULL.
        (
            json!({"small": null, "amount": null, "at": null, "tags": null}),
            Stored(json!({"small": null, "amount": null, "at": null, "tags": null})),
        ),
    ]
}

/// The base data with `change` applied: a null removes the field.
fn with(mut data: Value, change: &Value) -> Value {
    let fields = data.as_object_mut().expect("an object");
    for (name, value) in change.as_object().expect("an object") {
        if value.is_null() {
            fields.remove(name);
        } else {
            fields.insert(name.clone(), value.clone());
        }
    }
    data
}

async fn post(gateway: &Proc, event: &Value) -> (StatusCode, Value) {
    let r = Client::new().post(gateway.url("/v1/events")).json(event).send().await.expect("post");
    (r.status(), r.json().await.expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_the_gateway_accepts_becomes_its_row_exactly() {
    let env = crate::helpers::TestEnv::new(2).await;
    env.migrate();
    sqlx::raw_sql(TABLE).execute(&env.pool).await.expect("the table");
    let routes = routes_file(ROUTES);
    let routes = routes.to_str().expect("a UTF-8 path");
    let mut gateway = env.gateway(&["--routes", routes]);
    gateway.wait_ready("/readyz", WAIT).await;
    let _sinker = env.sinker(&["--routes", routes]);

    let (data, row) = base();
    let mut expected: BTreeMap<Uuid, (Value, Value)> = BTreeMap::new();
    for (change, expect) in cases() {
        let data = with(data.clone(), &change);
        let event = json!({"type": "typed", "data": data});
        let (status, body) = post(&gateway, &event).await;
        match expect {
            Expect::Stored(columns) => {
                assert_eq!(status, StatusCode::ACCEPTED, "{event}: {body}");
                let id: Uuid = body["ids"][0].as_str().and_then(|s| s.parse().ok()).expect("an id");
                let mut stored = row.clone();
                for (name, value) in columns.as_object().expect("an object") {
                    stored[name] = value.clone();
                }
                expected.insert(id, (stored, data));
            }
            Expect::Refused(column) => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{event}: {body}");
                let error = &body["error"];
                let path = format!("data.{column}");
                assert_eq!(
                    (&error["code"], &error["route"], &error["column"], &error["path"]),
                    (&json!("invalid_event"), &json!("typed"), &json!(column), &json!(path)),
                    "{event}: {body}"
                );
                let named = format!("event 0: route typed: column {column} (path {path}): ");
                assert!(error["message"].as_str().is_some_and(|m| m.starts_with(&named)), "{event}: {body}");
            }
        }
    }

    env.wait_offsets_at_high_watermarks(DRAIN).await;
    let stored: BTreeMap<Uuid, Value> =
        sqlx::query_as::<_, (Uuid, Value)>(STORED).fetch_all(&env.pool).await.expect("rows").into_iter().collect();
    let letters: Vec<Option<String>> = env.dlq_records().iter().map(|m| header(m, "sluice-dlq-detail")).collect();
    assert!(letters.is_empty(), "a 202 is never dead-lettered: {letters:?}");
    for (id, (want, data)) in &expected {
        assert_eq!(stored.get(id), Some(want), "row of event {id}");
        let (same, doc): (bool, String) =
            sqlx::query_as("SELECT doc = $2::jsonb, doc::text FROM agree.typed WHERE event_id = $1")
                .bind(id)
                .bind(data.to_string())
                .fetch_one(&env.pool)
                .await
                .expect("doc");
        assert!(same, "doc of event {id}: stored {doc}, sent {data}");
    }
    assert_eq!(stored.len(), expected.len(), "one row per accepted event, no other");
}
