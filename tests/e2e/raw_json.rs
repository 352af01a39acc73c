//! `data` as raw JSON end to end (issue 13): the gateway validates it by a scan and writes it as
//! sent; the sinker hands it to PostgreSQL as text. Numbers keep their digits, and what
//! PostgreSQL cannot store as written is still stored (as the tree writes it), never refused
//! by the database after a 202.

use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use sqlx::Row as _;
use uuid::Uuid;

use crate::helpers::TestEnv;

/// Numbers serde_json reads (as 0 or 1) and PostgreSQL 15 answered `value overflows numeric
/// format` for, with what each event's `n` must hold as a row; then numbers kept digit for digit.
fn cases() -> Vec<(String, &'static str)> {
    vec![
        ("1e-16384".to_owned(), "0"),
        ("0e-16384".to_owned(), "0"),
        ("0e1073741823".to_owned(), "0"),
        (format!("1.{}", "0".repeat(16384)), "1"),
        (format!("0.{}1", "0".repeat(16383)), "0"),
        ("123456789012345678901234567890".to_owned(), "123456789012345678901234567890"),
        ("-0.000000000000000000000000000000000000000001".to_owned(), "-0.000000000000000000000000000000000000000001"),
        ("1E2".to_owned(), "100"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_in_data_are_stored_as_written_or_as_the_tree_writes_them_never_refused_after_a_202() {
    let env = TestEnv::new(1).await;
    env.migrate();
    let mut gateway = env.gateway(&[]);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    let _sinker = env.sinker(&[]);

    let cases = cases();
    let ids: Vec<Uuid> = cases.iter().map(|_| Uuid::now_v7()).collect();
    for ((number, _), id) in cases.iter().zip(&ids) {
        // Pretty-printed, as a client might send it: whitespace must change nothing.
        let body = format!("{{ \"id\": \"{id}\", \"type\": \"num\",\n  \"data\": {{ \"n\" : {number} }} }}");
        let response = Client::new()
            .post(gateway.url("/v1/events"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{}", &number[..number.len().min(30)]);
    }
    // The same numbers from another producer, straight to the topic.
    let foreign: Vec<(Uuid, Vec<u8>, &str)> = cases[..5]
        .iter()
        .map(|(number, want)| {
            let id = Uuid::now_v7();
            (id, format!(r#"{{"id":"{id}","type":"num","data":{{"n":{number}}}}}"#).into_bytes(), *want)
        })
        .collect();
    let records: Vec<(Option<&str>, Option<&[u8]>)> =
        foreign.iter().map(|(_, value, _)| (None, Some(value.as_slice()))).collect();
    env.produce_raw(&records).await;

    let total = (cases.len() + foreign.len()) as i64;
    env.wait_rows(total, Duration::from_secs(60)).await;
    env.wait_offsets_at_high_watermarks(Duration::from_secs(30)).await;
    assert!(env.dlq_records().is_empty(), "no event may be refused by the database after a 202");

    let expected = cases
        .iter()
        .zip(&ids)
        .map(|((_, want), id)| (*id, *want))
        .chain(foreign.iter().map(|(id, _, want)| (*id, *want)));
    for (n, (id, want)) in expected.enumerate() {
        let row =
            sqlx::query("SELECT (data->'n')::numeric = $2::numeric AS same, data->>'n' AS n FROM events WHERE id = $1")
                .bind(id)
                .bind(want)
                .fetch_one(&env.pool)
                .await
                .expect("the row");
        let stored: String = row.get("n");
        assert!(row.get::<bool, _>("same"), "event {n}: stored {}, want {want}", &stored[..stored.len().min(40)]);
    }
    // Digits kept: the big integer is not rounded through a double.
    let big: String = sqlx::query_scalar("SELECT data->>'n' FROM events WHERE id = $1")
        .bind(ids[5])
        .fetch_one(&env.pool)
        .await
        .expect("the row");
    assert_eq!(big, "123456789012345678901234567890");
}
