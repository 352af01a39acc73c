//! The walking skeleton: one event posted to the gateway becomes one row.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::TestEnv;

#[tokio::test(flavor = "multi_thread")]
async fn one_posted_event_becomes_one_row() {
    let env = TestEnv::new(3).await;
    let mut gateway = env.gateway(&[]);
    let mut sinker = env.sinker(&[]);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    sinker.wait_ready("/readyz", Duration::from_secs(30)).await;

    let response = reqwest::Client::new()
        .post(gateway.url("/v1/events"))
        .json(&json!({"type": "page_view", "key": "user-7", "data": {"path": "/pricing"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["accepted"], 1);
    let id = body["ids"][0].as_str().expect("an id").to_owned();

    env.wait_rows(1, Duration::from_secs(30)).await;
    let (row_id, kind, key, path): (String, String, Option<String>, String) =
        sqlx::query_as("SELECT id::text, type, key, data->>'path' FROM events")
            .fetch_one(&env.pool)
            .await
            .expect("row");
    assert_eq!(
        (row_id.as_str(), kind.as_str(), key.as_deref(), path.as_str()),
        (id.as_str(), "page_view", Some("user-7"), "/pricing")
    );
    env.wait_offsets_at_high_watermarks(Duration::from_secs(30)).await;
}
