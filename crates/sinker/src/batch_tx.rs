//! A batch's transaction, opened together with its offset fence in one round trip.
//!
//! `BEGIN`, the fence's compare-and-set (see [`crate::store::advance_offset`]) and, for a batch
//! written by COPY, the savepoint COPY falls back to, go to PostgreSQL as one simple query
//! (several statements in one message, the fence's values written into it as literals), instead
//! of three or four round trips. The fence's `RETURNING` row says whether it moved; only a
//! refused fence costs more (reading the stored offset, then `ROLLBACK`).
//!
//! Invariants:
//! - the fence is the transaction's first write, as in [`crate::store::advance_offset`] (its row lock
//!   serializes the writers of a partition), and moves only from exactly `expected`;
//! - a [`BatchTx`] is committed or rolled back explicitly; dropped while open (a cancelled
//!   attempt), its connection is closed instead of returned to the pool, so no pooled
//!   connection is ever left inside a transaction.

use std::ops::{Deref, DerefMut};

use sqlx::{pool::PoolConnection, Executor as _, PgConnection, PgPool, Postgres, Row as _};

/// An open transaction on a pooled connection.
pub struct BatchTx {
    conn: Option<PoolConnection<Postgres>>,
}

/// What opening a fenced transaction found.
pub enum Opened {
    /// The fence moved; the transaction is open (with the savepoint, if asked).
    Advanced(BatchTx),
    /// The fence refused: nothing is open.
    Conflict { stored: i64 },
}

/// A string as an SQL literal that means the same whatever `standard_conforming_strings` is.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The simple query that opens a fenced transaction: `BEGIN`, the fence, and the savepoint when
/// `savepoint` is given.
pub fn begin_fenced_sql(
    group: &str,
    topic: &str,
    partition: i32,
    expected: i64,
    to: i64,
    savepoint: Option<&str>,
) -> String {
    let (group, topic) = (literal(group), literal(topic));
    let mut sql = format!(
        "BEGIN; INSERT INTO sink_offsets AS s (consumer_group, topic, partition, next_offset, updated_at) \
         VALUES ({group}, {topic}, {partition}, {to}, now()) \
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE \
         SET next_offset = EXCLUDED.next_offset, updated_at = now() WHERE s.next_offset = {expected} \
         RETURNING next_offset"
    );
    if let Some(name) = savepoint {
        sql.push_str("; SAVEPOINT ");
        sql.push_str(name);
    }
    sql
}

impl BatchTx {
    /// Opens a transaction and moves the partition's fence from `expected` to `to` in one
    /// round trip; with `savepoint`, also takes that savepoint after the fence.
    pub async fn begin_fenced(
        pool: &PgPool,
        group: &str,
        topic: &str,
        partition: i32,
        (expected, to): (i64, i64),
        savepoint: Option<&str>,
    ) -> Result<Opened, sqlx::Error> {
        let mut tx = Self { conn: Some(pool.acquire().await?) };
        let sql = begin_fenced_sql(group, topic, partition, expected, to, savepoint);
        let rows = match tx.fetch_all(sql.as_str()).await {
            Ok(rows) => rows,
            Err(error) => {
                // A lock or statement timeout leaves a healthy connection: give it back rolled
                // back rather than close it (a broken one is closed by the drop).
                let _ = tx.rollback().await;
                return Err(error);
            }
        };
        if rows.iter().any(|row| row.try_get::<i64, _>(0).is_ok()) {
            return Ok(Opened::Advanced(tx));
        }
        let stored: i64 = sqlx::query_scalar(
            "SELECT next_offset FROM sink_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok(Opened::Conflict { stored })
    }

    /// Opens a plain transaction (`BEGIN`), for the fence written as its own statement.
    pub async fn begin(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let mut tx = Self { conn: Some(pool.acquire().await?) };
        tx.execute("BEGIN").await?;
        Ok(tx)
    }

    /// `COMMIT`. An error is returned as it is (a connection error means the outcome is unknown).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let result = self.execute("COMMIT").await.map(|_| ());
        if result.is_ok() {
            // Committed: the connection goes back to the pool.
            drop(self.conn.take());
        }
        result
    }

    /// `ROLLBACK`; the connection goes back to the pool when it answered.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let result = self.execute("ROLLBACK").await.map(|_| ());
        if result.is_ok() {
            drop(self.conn.take());
        }
        result
    }
}

impl Deref for BatchTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("a BatchTx holds its connection until it ends")
    }
}

impl DerefMut for BatchTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect("a BatchTx holds its connection until it ends")
    }
}

impl Drop for BatchTx {
    fn drop(&mut self) {
        // Still open (an error or a cancelled attempt): close the connection, the server rolls
        // the transaction back.
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_keep_quotes_and_backslashes() {
        assert_eq!(literal("a'b\\c"), "E'a''b\\\\c'");
        let sql = begin_fenced_sql("g'1", "t", 3, 10, 20, Some("sluice_copy"));
        assert!(sql.starts_with("BEGIN; INSERT INTO sink_offsets"), "{sql}");
        assert!(sql.contains("VALUES (E'g''1', E't', 3, 20, now())"), "{sql}");
        assert!(sql.contains("WHERE s.next_offset = 10 RETURNING next_offset; SAVEPOINT sluice_copy"), "{sql}");
    }
}
