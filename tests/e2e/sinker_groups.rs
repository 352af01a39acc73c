//! Progress is per sink, not per topic: sinker groups on the same topic and database each keep
//! their own fence in `sink_offsets`, and a database from before groups were recorded is taken
//! over by the first group that starts.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use rdkafka::Message;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{eventually, random_name, Proc, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

/// The migration that keyed `sink_offsets` by consumer group.
const GROUPS_MIGRATION: &str = "20261204000001";

fn event(id: Uuid) -> Vec<u8> {
    json!({"id": id, "type": "groups", "ts": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:01Z", "data": {}})
        .to_string()
        .into_bytes()
}

/// Produces one event per id, keyed by position so that they spread over the partitions.
async fn produce(env: &TestEnv, ids: &[Uuid]) {
    let keys: Vec<String> = (0..ids.len()).map(|i| format!("k{i}")).collect();
    let values: Vec<Vec<u8>> = ids.iter().map(|id| event(*id)).collect();
    let records: Vec<(Option<&str>, Option<&[u8]>)> =
        keys.iter().zip(&values).map(|(k, v)| (Some(k.as_str()), Some(v.as_slice()))).collect();
    env.produce_raw(&records).await;
}

fn new_ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

async fn stored_ids(env: &TestEnv) -> HashSet<Uuid> {
    sqlx::query_scalar("SELECT id FROM events").fetch_all(&env.pool).await.expect("ids").into_iter().collect()
}

/// (rows inserted, duplicates skipped) as the sinker counted them.
async fn written(sinker: &Proc) -> (f64, f64) {
    let inserted = sinker.metric("sinker_rows_inserted_total", &[]).await.unwrap_or(-1.0);
    let skipped = sinker.metric("sinker_duplicates_skipped_total", &[]).await.unwrap_or(-1.0);
    (inserted, skipped)
}

/// Applies the migrations from before `sink_offsets` recorded the group, as an upgraded
/// database had them (the sinker applies the rest when it starts).
async fn migrate_to_before_groups(env: &TestEnv) {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let older = std::env::temp_dir().join(random_name("migrations_before_groups"));
    std::fs::create_dir_all(&older).expect("temporary migrations folder");
    for entry in std::fs::read_dir(&all).expect("migrations folder") {
        let path = entry.expect("migration").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("file name").to_owned();
        if name.as_str() < GROUPS_MIGRATION {
            std::fs::copy(&path, older.join(&name)).expect("copy migration");
        }
    }
    let migrator = sqlx::migrate::Migrator::new(older.as_path()).await.expect("read migrations");
    assert!(migrator.iter().count() > 0, "no migration older than {GROUPS_MIGRATION}");
    migrator.run(&env.pool).await.expect("apply the migrations from before groups");
    std::fs::remove_dir_all(&older).expect("remove the temporary migrations folder");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sinker_groups_on_one_topic_and_database_each_write_every_record() {
    let env = TestEnv::new(3).await;
    let first = new_ids(150);
    produce(&env, &first).await;
    let a = env.sinker(&[]);
    env.wait_offsets_at_high_watermarks(WAIT).await;
    env.wait_rows(150, WAIT).await;

    // A second group (other routes, say) on the same topic and database: group a's progress is
    // not its own, so it reads every record. Every id is a row already: each insert is skipped.
    let projection = format!("{}_projection", env.group);
    let b = env.sinker(&["--group", &projection]);
    env.wait_group_at_high_watermarks(&projection, WAIT).await;
    eventually(WAIT, "group b counted every record as a skipped duplicate", || async {
        (written(&b).await == (0.0, 150.0)).then_some(())
    })
    .await;
    assert_eq!(env.row_count().await, 150);
    assert_eq!(written(&a).await, (150.0, 0.0), "group a wrote each record once and read none again");

    // Both running: each group writes every new record, and each row is there once.
    let second = new_ids(90);
    produce(&env, &second).await;
    env.wait_offsets_at_high_watermarks(WAIT).await;
    env.wait_group_at_high_watermarks(&projection, WAIT).await;
    env.wait_rows(240, WAIT).await;
    let expected: HashSet<Uuid> = first.iter().chain(&second).copied().collect();
    assert_eq!(stored_ids(&env).await, expected);
    let (wa, wb) = eventually(WAIT, "both groups counted all 240 records", || async {
        let (wa, wb) = (written(&a).await, written(&b).await);
        (wa.0 + wa.1 == 240.0 && wb.0 + wb.1 == 240.0).then_some((wa, wb))
    })
    .await;
    assert_eq!(wa.0 + wb.0, 240.0, "each row inserted by exactly one group: a {wa:?}, b {wb:?}");

    // Two fences, one per group, each at the high watermarks; no row of another group.
    let groups: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT consumer_group FROM sink_offsets ORDER BY consumer_group")
            .fetch_all(&env.pool)
            .await
            .expect("groups");
    assert_eq!(groups, vec![env.group.clone(), projection]);
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_stored_before_groups_were_recorded_are_adopted_and_resumed_from() {
    let env = TestEnv::new(3).await;
    migrate_to_before_groups(&env).await;
    let ids = new_ids(240);
    produce(&env, &ids).await;
    let high = env.high_watermarks();
    assert!(high.values().all(|h| *h > 1), "every partition holds records: {high:?}");

    // The sinker of before the upgrade had written each partition up to its middle (its rows
    // are not in `events`, so any record rewritten below that point would show as a row).
    let from: HashMap<i32, i64> = high.iter().map(|(p, h)| (*p, h / 2)).collect();
    for (partition, next_offset) in &from {
        sqlx::query("INSERT INTO sink_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)")
            .bind(&env.topic)
            .bind(partition)
            .bind(next_offset)
            .execute(&env.pool)
            .await
            .expect("a fence row from before the upgrade");
    }

    // The upgraded sinker migrates, adopts those rows and resumes from them.
    let sinker = env.sinker(&[]);
    env.wait_offsets_at_high_watermarks(WAIT).await;
    let expected: HashSet<Uuid> = env
        .topic_records()
        .iter()
        .filter(|m| m.offset() >= from[&m.partition()])
        .map(|m| {
            let value: serde_json::Value = serde_json::from_slice(m.payload().expect("value")).expect("json");
            value["id"].as_str().expect("id").parse().expect("uuid")
        })
        .collect();
    assert!(expected.len() < ids.len(), "some records lie below the adopted offsets");
    env.wait_rows(expected.len() as i64, WAIT).await;
    assert_eq!(stored_ids(&env).await, expected, "exactly the records from the adopted offsets on");
    eventually(WAIT, "the sinker counted what it wrote", || async {
        (written(&sinker).await == (expected.len() as f64, 0.0)).then_some(())
    })
    .await;

    // The rows are the group's now; none is left to another group.
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT consumer_group, partition, next_offset FROM sink_offsets ORDER BY partition")
            .fetch_all(&env.pool)
            .await
            .expect("sink_offsets");
    let mut at_high: Vec<(String, i32, i64)> = high.iter().map(|(p, h)| (env.group.clone(), *p, *h)).collect();
    at_high.sort_by_key(|r| r.1);
    assert_eq!(rows, at_high);
    let logs = sinker.logs();
    assert!(
        logs.lines().any(|l| l.contains("adopted the stored offsets") && l.contains("partitions=3")),
        "the adoption is logged with its count; log:\n{logs}"
    );
}
