//! Progress per sinker group against a real PostgreSQL: a group moves only its own fence, and
//! the rows written before `sink_offsets` recorded the group go to exactly one group.
//!
//! Needs DATABASE_URL (an account that may create databases), as `make test` provides.

mod support;

use std::{collections::HashMap, time::Duration};

use sinker::{
    adopt::adopt_unrecorded_offsets,
    store::{self, Fence, Store},
};
use support::{fresh_store, wait_for_lock_waiters};

async fn advance(store: &Store, group: &str, topic: &str, partition: i32, expected: i64, to: i64) -> Fence {
    let mut tx = store.pool().begin().await.expect("begin");
    let fence = store::advance_offset(&mut tx, group, topic, partition, expected, to).await.expect("fence");
    tx.commit().await.expect("commit");
    fence
}

async fn offsets(store: &Store, group: &str, topic: &str) -> HashMap<i32, i64> {
    store.load_offsets(group, topic, &[0, 1, 2, 3, 4, 5]).await.expect("offsets")
}

/// Every row of the table: (group, topic, partition, next offset).
async fn table(store: &Store) -> Vec<(String, String, i32, i64)> {
    sqlx::query_as(
        "SELECT consumer_group, topic, partition, next_offset FROM sink_offsets ORDER BY consumer_group, topic, partition",
    )
    .fetch_all(store.pool())
    .await
    .expect("sink_offsets")
}

/// A row as the sinker wrote it before groups were recorded: without the column, which the
/// migration's default fills with ''.
async fn insert_unrecorded(store: &Store, topic: &str, partition: i32, next_offset: i64) {
    sqlx::query("INSERT INTO sink_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)")
        .bind(topic)
        .bind(partition)
        .bind(next_offset)
        .execute(store.pool())
        .await
        .expect("insert a row from before groups were recorded");
}

fn row(group: &str, topic: &str, partition: i32, next_offset: i64) -> (String, String, i32, i64) {
    (group.to_owned(), topic.to_owned(), partition, next_offset)
}

#[tokio::test]
async fn a_group_only_ever_moves_its_own_fence() {
    let store = fresh_store().await;
    // Group a writes offsets [0, 10) of t/0.
    assert_eq!(advance(&store, "a", "t", 0, 0, 10).await, Fence::Advanced);
    // Group b (other routes, same topic, same database) writes the same records from the start:
    // a's progress is not b's.
    assert_eq!(advance(&store, "b", "t", 0, 0, 4).await, Fence::Advanced);
    // Each fence is exact for its own group and names its own stored offset when it refuses.
    assert_eq!(advance(&store, "b", "t", 0, 10, 20).await, Fence::Conflict { stored: 4 });
    assert_eq!(advance(&store, "a", "t", 0, 4, 8).await, Fence::Conflict { stored: 10 });
    // A step back of a's (a recreated topic) leaves b's where it is.
    assert_eq!(advance(&store, "a", "t", 0, 10, 2).await, Fence::Advanced);
    // The same group on another topic is another fence.
    assert_eq!(advance(&store, "a", "u", 0, 0, 7).await, Fence::Advanced);
    assert_eq!(offsets(&store, "a", "t").await, HashMap::from([(0, 2)]));
    assert_eq!(offsets(&store, "b", "t").await, HashMap::from([(0, 4)]));
    assert_eq!(offsets(&store, "c", "t").await, HashMap::new(), "a group that never wrote has no offsets");
    assert_eq!(table(&store).await, vec![row("a", "t", 0, 2), row("a", "u", 0, 7), row("b", "t", 0, 4)]);

    // Two groups never wait on each other: a's open transaction holds a's row lock only.
    let mut a = store.pool().begin().await.expect("begin");
    assert_eq!(store::advance_offset(&mut a, "a", "t", 0, 2, 30).await.expect("fence"), Fence::Advanced);
    let b = tokio::time::timeout(Duration::from_secs(10), advance(&store, "b", "t", 0, 4, 30))
        .await
        .expect("b's fence does not wait for a's transaction");
    assert_eq!(b, Fence::Advanced);
    a.commit().await.expect("commit");
    assert_eq!(table(&store).await, vec![row("a", "t", 0, 30), row("a", "u", 0, 7), row("b", "t", 0, 30)]);
}

#[tokio::test]
async fn offsets_from_before_groups_go_to_the_first_group_without_its_own() {
    let store = fresh_store().await;
    insert_unrecorded(&store, "t", 0, 7).await;
    insert_unrecorded(&store, "t", 1, 9).await;
    insert_unrecorded(&store, "u", 0, 3).await;

    // Group a starts on t: it takes t's rows, and only t's.
    assert_eq!(adopt_unrecorded_offsets(store.pool(), "a", "t").await.expect("adopt"), 2);
    assert_eq!(offsets(&store, "a", "t").await, HashMap::from([(0, 7), (1, 9)]));
    // Again (a restart, another sinker of a): nothing left to adopt, nothing changes.
    assert_eq!(adopt_unrecorded_offsets(store.pool(), "a", "t").await.expect("adopt"), 0);
    // A second group on t finds nothing: a's progress stays a's, b reads t from its own start.
    assert_eq!(adopt_unrecorded_offsets(store.pool(), "b", "t").await.expect("adopt"), 0);
    assert_eq!(offsets(&store, "b", "t").await, HashMap::new());

    // A group that already has rows of its own for a topic adopts nothing there.
    assert_eq!(advance(&store, "c", "u", 1, 0, 5).await, Fence::Advanced);
    assert_eq!(adopt_unrecorded_offsets(store.pool(), "c", "u").await.expect("adopt"), 0);
    assert_eq!(
        table(&store).await,
        vec![row("", "u", 0, 3), row("a", "t", 0, 7), row("a", "t", 1, 9), row("c", "u", 1, 5)]
    );
    // One that has none does.
    assert_eq!(adopt_unrecorded_offsets(store.pool(), "b", "u").await.expect("adopt"), 1);
    assert_eq!(offsets(&store, "b", "u").await, HashMap::from([(0, 3)]));
}

/// Six sinkers of two groups start at once, all waiting on the rows a first sinker (of group a)
/// is adopting in a transaction still open; it then commits or rolls back. Returns each of the
/// six's (group, rows adopted).
async fn adopt_all_at_once(store: &Store, topic: &str, commit_first: bool) -> Vec<(&'static str, u64)> {
    let mut first = store.pool().begin().await.expect("begin");
    assert_eq!(adopt_unrecorded_offsets(&mut *first, "a", topic).await.expect("adopt"), 6);
    let mut starting = Vec::new();
    for group in ["a", "b", "a", "b", "a", "b"] {
        let (pool, topic) = (store.pool().clone(), topic.to_owned());
        starting.push(tokio::spawn(async move {
            (group, adopt_unrecorded_offsets(&pool, group, &topic).await.expect("adopt"))
        }));
    }
    wait_for_lock_waiters(store, 6).await;
    if commit_first {
        first.commit().await.expect("commit");
    } else {
        first.rollback().await.expect("rollback");
    }
    let mut adopted = Vec::new();
    for s in starting {
        adopted.push(s.await.expect("join"));
    }
    adopted
}

#[tokio::test]
async fn sinkers_starting_at_once_adopt_the_rows_once_and_all_together() {
    let store = fresh_store().await;
    for partition in 0..6 {
        insert_unrecorded(&store, "t", partition, 100 + i64::from(partition)).await;
        insert_unrecorded(&store, "u", partition, 200 + i64::from(partition)).await;
    }
    let expected = |base: i64| (0..6).map(|p| (p, base + i64::from(p))).collect::<HashMap<_, _>>();

    // The first adopter commits: the others re-read the rows, find them taken, adopt nothing.
    let adopted = adopt_all_at_once(&store, "t", true).await;
    assert!(adopted.iter().all(|(_, n)| *n == 0), "{adopted:?}");
    assert_eq!(offsets(&store, "a", "t").await, expected(100));
    assert_eq!(offsets(&store, "b", "t").await, HashMap::new());

    // The first adopter rolls back: one of the waiting sinkers takes every row, none is split.
    let adopted = adopt_all_at_once(&store, "u", false).await;
    let winners: Vec<_> = adopted.iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(winners.len(), 1, "exactly one adopter: {adopted:?}");
    let (winner, n) = *winners[0];
    assert_eq!(n, 6, "all of the topic's rows in one statement: {adopted:?}");
    assert_eq!(offsets(&store, winner, "u").await, expected(200));
    let loser = if winner == "a" { "b" } else { "a" };
    assert_eq!(offsets(&store, loser, "u").await, HashMap::new());
    let unrecorded: i64 = sqlx::query_scalar("SELECT count(*) FROM sink_offsets WHERE consumer_group = ''")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(unrecorded, 0);
}
