//! The offset fence against a real PostgreSQL: a stale owner cannot write.
//!
//! Needs DATABASE_URL (an account that may create databases), as `make test` provides.

mod support;

use serde_json::json;
use sinker::store::{self, EventRow, Fence, Store};
use support::{events, fresh_store, wait_for_lock_waiters};

#[tokio::test]
async fn a_stale_owner_is_refused_and_writes_no_rows() {
    let store = fresh_store().await;
    let batch = events(10);
    let refs: Vec<EventRow<'_>> = batch.iter().map(EventRow::from).collect();

    // The new owner writes offsets [0, 10).
    let mut tx = store.pool().begin().await.expect("begin");
    assert_eq!(store::advance_offset(&mut tx, "g", "t", 0, 0, 10).await.expect("fence"), Fence::Advanced);
    assert_eq!(store::insert_events(&mut tx, &refs).await.expect("insert"), 10);
    tx.commit().await.expect("commit");

    // The old owner, still holding [0, 5) from before the rebalance, tries to write it.
    let mut tx = store.pool().begin().await.expect("begin");
    assert_eq!(store::advance_offset(&mut tx, "g", "t", 0, 0, 5).await.expect("fence"), Fence::Conflict { stored: 10 });
    tx.rollback().await.expect("rollback");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.expect("count");
    assert_eq!(rows, 10);
    let stored = store.load_offsets("g", "t", &[0, 1]).await.expect("offsets");
    assert_eq!(stored.get(&0), Some(&10), "the offset never moves back");
    assert_eq!(stored.get(&1), None);

    // The fence is exact: a batch that starts past the stored offset is refused (the database
    // went back, or records were skipped), and says where the database is.
    let mut tx = store.pool().begin().await.expect("begin");
    assert_eq!(
        store::advance_offset(&mut tx, "g", "t", 0, 12, 20).await.expect("fence"),
        Fence::Conflict { stored: 10 }
    );
    tx.rollback().await.expect("rollback");

    // The rightful owner continues from 10; its batch covers a gap (compaction) from 10 on.
    let mut tx = store.pool().begin().await.expect("begin");
    assert_eq!(store::advance_offset(&mut tx, "g", "t", 0, 10, 20).await.expect("fence"), Fence::Advanced);
    tx.commit().await.expect("commit");
    assert_eq!(store.load_offsets("g", "t", &[0]).await.expect("offsets").get(&0), Some(&20));

    // A recreated topic starts over below the stored offset: the reset names the stale value.
    let mut tx = store.pool().begin().await.expect("begin");
    assert_eq!(store::advance_offset(&mut tx, "g", "t", 0, 20, 5).await.expect("fence"), Fence::Advanced);
    tx.commit().await.expect("commit");
    assert_eq!(store.load_offsets("g", "t", &[0]).await.expect("offsets").get(&0), Some(&5));
}

#[tokio::test]
async fn two_writers_racing_for_one_range_commit_once() {
    let store = fresh_store().await;
    let batch = events(50);
    let refs: Vec<EventRow<'_>> = batch.iter().map(EventRow::from).collect();
    let mut a = store.pool().begin().await.expect("begin");
    let mut b = store.pool().begin().await.expect("begin");
    assert_eq!(store::advance_offset(&mut a, "g", "t", 3, 0, 50).await.expect("fence"), Fence::Advanced);
    store::insert_events(&mut a, &refs).await.expect("insert");
    // b blocks on a's row lock until a commits, then sees a's offset and is refused.
    let b_fence = tokio::spawn(async move {
        let fence = store::advance_offset(&mut b, "g", "t", 3, 0, 50).await.expect("fence");
        (fence, b)
    });
    // Wait until b really waits on the row lock.
    wait_for_lock_waiters(&store, 1).await;
    a.commit().await.expect("commit");
    let (fence, b) = b_fence.await.expect("join");
    assert_eq!(fence, Fence::Conflict { stored: 50 });
    b.rollback().await.expect("rollback");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.expect("count");
    assert_eq!(rows, 50);
}

#[tokio::test]
async fn refused_rows_are_isolated_and_the_rest_is_written() {
    let store = fresh_store().await;
    sqlx::query("ALTER TABLE events ADD CONSTRAINT no_bad CHECK (type <> 'bad')")
        .execute(store.pool())
        .await
        .expect("constraint");
    let mut batch = events(20);
    for i in [3, 4, 17] {
        batch[i].event_type = "bad".into();
    }
    let refs: Vec<EventRow<'_>> = batch.iter().map(EventRow::from).collect();
    let mut tx = store.pool().begin().await.expect("begin");
    let (inserted, refused) = store::insert_isolating(&mut tx, &refs).await.expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(inserted, 17);
    assert_eq!(refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3, 4, 17]);
    assert!(refused[0].1.contains("no_bad") && refused[0].1.contains("23514"), "{}", refused[0].1);
}

#[tokio::test]
async fn copy_and_unnest_store_the_same_rows() {
    let unnest = fresh_store().await;
    let copy = fresh_store().await;
    let mut batch = events(6);
    batch[0].key = Some(String::new());
    batch[1].key = Some("quote \" comma , newline \n tab \t backslash \\ done".into());
    batch[2].event_type = "t\"y,p\ne".into();
    batch[3].data =
        serde_json::from_value(json!({"s": "a \"quoted\"\nline", "n": [1, 2.5, null], "u": "é😀"})).expect("object");
    batch[5].ts = chrono::DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("ts").to_utc();
    batch[5].received_at = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z").expect("ts").to_utc();
    let mut refs: Vec<EventRow<'_>> = batch.iter().map(EventRow::from).collect();
    refs.push(EventRow::from(&batch[4])); // a duplicate inside the batch
    let binary = fresh_store().await;
    for (store, method) in [
        (&unnest, store::InsertMethod::Unnest),
        (&copy, store::InsertMethod::Copy),
        (&binary, store::InsertMethod::BinaryCopy),
    ] {
        let mut tx = store.pool().begin().await.expect("begin");
        // Without the duplicate, binary COPY takes the batch as it is.
        let first = store::insert_batch(&mut tx, &refs[..3], method, false).await.expect("insert");
        assert_eq!(first.rows, 3, "{method:?}");
        let rest = store::insert_batch(&mut tx, &refs, method, false).await.expect("insert");
        assert_eq!(rest.rows, 3, "{method:?}: the three already there are skipped");
        assert_eq!(
            store::insert_batch(&mut tx, &refs, method, false).await.expect("insert").rows,
            0,
            "{method:?}: replays skip"
        );
        tx.commit().await.expect("commit");
        if method == store::InsertMethod::BinaryCopy {
            use store::CopyPath::{Copy, Fallback};
            assert_eq!((first.copy, rest.copy), (Some(Copy), Some(Fallback)), "a duplicate key falls back");
        }
    }
    let dump = |store: &Store| {
        let pool = store.pool().clone();
        async move {
            let rows: Vec<(String, String, Option<String>, String, String, String)> = sqlx::query_as(
                "SELECT id::text, type, key, ts::text, received_at::text, data::text FROM events ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .expect("rows");
            rows
        }
    };
    let (a, b, c) = (dump(&unnest).await, dump(&copy).await, dump(&binary).await);
    assert_eq!(a.len(), 6);
    assert_eq!(a, b);
    assert_eq!(a, c, "binary COPY stores what UNNEST stores");
    assert!(a.iter().any(|r| r.2.as_deref() == Some("")), "an empty key is not NULL");
    assert!(a.iter().filter(|r| r.2.is_none()).count() == 4, "absent keys are NULL");
}

#[tokio::test]
async fn a_fenced_begin_moves_the_fence_in_one_round_trip_and_leaves_no_transaction_open_on_conflict() {
    use sinker::batch_tx::{BatchTx, Opened};
    let store = fresh_store().await;
    let batch = events(4);
    let rows: Vec<EventRow<'_>> = batch.iter().map(EventRow::from).collect();
    // A group name that needs quoting in a literal.
    let group = "g'\\1";
    let Opened::Advanced(mut tx) =
        BatchTx::begin_fenced(store.pool(), group, "t", 0, (0, 4), Some(store::COPY_SAVEPOINT)).await.expect("begin")
    else {
        panic!("the first fence moves");
    };
    let inserted = store::insert_batch(&mut tx, &rows, store::InsertMethod::BinaryCopy, true).await.expect("insert");
    assert_eq!((inserted.rows, inserted.copy), (4, Some(store::CopyPath::Copy)));
    tx.commit().await.expect("commit");

    // A stale writer: refused with the stored offset; nothing stays open on its connection.
    for _ in 0..20 {
        match BatchTx::begin_fenced(store.pool(), group, "t", 0, (0, 2), None).await.expect("begin") {
            Opened::Conflict { stored } => assert_eq!(stored, 4),
            Opened::Advanced(_) => panic!("a stale fence must not move"),
        }
    }
    // Replaying the same rows after the fence: COPY meets the keys, rolls back to the savepoint
    // taken with the fence, and the conflict-aware statement skips them.
    let Opened::Advanced(mut tx) =
        BatchTx::begin_fenced(store.pool(), group, "t", 0, (4, 8), Some(store::COPY_SAVEPOINT)).await.expect("begin")
    else {
        panic!("the fence moves from where it stands");
    };
    let again = store::insert_batch(&mut tx, &rows, store::InsertMethod::BinaryCopy, true).await.expect("insert");
    assert_eq!((again.rows, again.copy), (0, Some(store::CopyPath::Fallback)));
    tx.commit().await.expect("commit");
    // An attempt dropped while open (cancelled) rolls back: its fence did not move.
    let Opened::Advanced(tx) = BatchTx::begin_fenced(store.pool(), group, "t", 0, (8, 9), None).await.expect("begin")
    else {
        panic!("the fence moves");
    };
    drop(tx);
    let stored = store.load_offsets(group, "t", &[0]).await.expect("offsets");
    assert_eq!(stored.get(&0), Some(&8));
    // The pool sends a dropped transaction's ROLLBACK when it takes the connection back, in the
    // background: wait (bounded) for no session to be left inside a transaction.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let open = loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(store.pool())
        .await
        .expect("sessions");
        if open == 0 || std::time::Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(open, 0, "no pooled session is left inside a transaction");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.expect("count");
    assert_eq!(rows, 4);
}
