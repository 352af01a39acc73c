//! PostgreSQL: the `events` table, the `sink_offsets` fence, and error classification.
//!
//! Architecture invariant: a batch's rows and its partition's `next_offset` are written in one
//! transaction, and `next_offset` moves only from the exact value the writer read (an exact
//! compare-and-set). Everything below `next_offset` is in `events` or in the dead-letter topic.
//! The fence is keyed by (consumer group, topic, partition): each sinker group keeps its own
//! progress, and no statement here reads or moves another group's.

use std::{collections::HashMap, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use sluice_core::{Event, RawEvent};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgConnection, PgPool,
};
use uuid::Uuid;

use crate::binary::CopyBuffer;

/// Embedded migrations from the repository's `migrations/` folder.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

/// Session settings for the sinker's connections.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub pool_size: u32,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Store {
    /// Builds the pool. Connections are opened lazily, so a database that is down at start
    /// delays the first write instead of killing the process.
    pub fn connect_lazy(url: &str, settings: SessionSettings) -> Result<Self, sqlx::Error> {
        let lock = format!("{}ms", settings.lock_timeout.as_millis());
        let statement = format!("{}ms", settings.statement_timeout.as_millis());
        let options = PgConnectOptions::from_str(url)?
            .application_name("sluice-sinker")
            .options([("lock_timeout", lock.as_str()), ("statement_timeout", statement.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    /// The group's stored next offsets of these partitions (absent: never written by it).
    pub async fn load_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>, sqlx::Error> {
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT partition, next_offset FROM sink_offsets
              WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)",
        )
        .bind(group)
        .bind(topic)
        .bind(partitions)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}

/// The outcome of moving a partition's fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// The stored offset was exactly `expected`; it is now `to` (in this transaction).
    Advanced,
    /// The stored offset is not what this writer expected. Above the writer's position:
    /// another owner wrote further (this writer is stale for that range). Below it: the
    /// database went back in time (a restore, a lagging replica) and must be filled again
    /// from `stored`.
    Conflict { stored: i64 },
}

/// Exact compare-and-set of `sink_offsets`: moves the group's next offset of the partition from
/// `expected` to `to`, and succeeds only if the stored next offset is exactly `expected` (or the
/// group has no row for the partition yet). Other groups' rows are neither read nor touched. `expected` is the batch's start, except when a partition's log
/// started over (a recreated topic), where it is the stale offset being replaced and `to`
/// is below it. Run it first in the transaction: it takes the row lock that serializes
/// writers of the same partition.
pub async fn advance_offset(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    expected: i64,
    to: i64,
) -> Result<Fence, sqlx::Error> {
    let advanced: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO sink_offsets AS s (consumer_group, topic, partition, next_offset, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE
            SET next_offset = EXCLUDED.next_offset, updated_at = now()
          WHERE s.next_offset = $5
         RETURNING next_offset",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(to)
    .bind(expected)
    .fetch_optional(&mut *conn)
    .await?;
    if advanced.is_some() {
        return Ok(Fence::Advanced);
    }
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT next_offset FROM sink_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Fence::Conflict { stored })
}

/// One row of `events`, borrowed from a decoded record: `data` is its JSON text.
#[derive(Debug, Clone)]
pub struct EventRow<'a> {
    pub id: Uuid,
    pub event_type: &'a str,
    pub key: Option<&'a str>,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub data: std::borrow::Cow<'a, str>,
}

impl<'a> EventRow<'a> {
    /// The row of an event decoded without a tree; `value` is its record value.
    pub fn raw(event: &'a RawEvent, value: &'a [u8]) -> Self {
        Self {
            id: event.id,
            event_type: &event.event_type,
            key: event.key.as_deref(),
            ts: event.ts,
            received_at: event.received_at,
            data: std::borrow::Cow::Borrowed(event.data(value)),
        }
    }
}

impl<'a> From<&'a Event> for EventRow<'a> {
    fn from(e: &'a Event) -> Self {
        Self {
            id: e.id,
            event_type: &e.event_type,
            key: e.key.as_deref(),
            ts: e.ts,
            received_at: e.received_at,
            data: std::borrow::Cow::Owned(serde_json::to_string(&e.data).unwrap_or_else(|_| "{}".to_owned())),
        }
    }
}

/// Inserts events in one statement, whatever their number (one array per column, so no
/// parameter limit). Existing ids are skipped. Returns how many rows were inserted.
pub async fn insert_events(conn: &mut PgConnection, events: &[EventRow<'_>]) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut ids: Vec<Uuid> = Vec::with_capacity(events.len());
    let mut types: Vec<&str> = Vec::with_capacity(events.len());
    let mut keys: Vec<Option<&str>> = Vec::with_capacity(events.len());
    let mut ts: Vec<DateTime<Utc>> = Vec::with_capacity(events.len());
    let mut received: Vec<DateTime<Utc>> = Vec::with_capacity(events.len());
    // `data` goes as JSON text, cast to jsonb by PostgreSQL.
    let mut data: Vec<&str> = Vec::with_capacity(events.len());
    for e in events {
        ids.push(e.id);
        types.push(e.event_type);
        keys.push(e.key);
        ts.push(e.ts);
        received.push(e.received_at);
        data.push(&e.data);
    }
    let result = sqlx::query(
        "INSERT INTO events (id, type, key, ts, received_at, data)
         SELECT id, type, key, ts, received_at, data::jsonb
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[])
             AS u(id, type, key, ts, received_at, data)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&keys)
    .bind(&ts)
    .bind(&received)
    .bind(&data)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// How a batch goes into `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InsertMethod {
    /// `COPY events FROM STDIN (FORMAT binary)` straight into the table, encoded by sluice, under
    /// a savepoint; a batch holding an id already there (a replay) is rolled back to the
    /// savepoint and written again with the UNNEST statement, which skips it.
    BinaryCopy,
    /// One `INSERT ... SELECT FROM UNNEST($1::uuid[], ...)` statement: one array per column.
    Unnest,
    /// `COPY` (CSV) into a per-session temporary staging table, then one `INSERT ... SELECT`.
    Copy,
}

/// How a batch went in with [`InsertMethod::BinaryCopy`], per `sinker_copy_batches_total{path}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyPath {
    /// COPY took the whole batch.
    Copy,
    /// COPY met a row it could not take (an id already there, or a refused value): the
    /// batch went through the conflict-aware statement instead.
    Fallback,
}

impl CopyPath {
    pub const ALL: [CopyPath; 2] = [Self::Copy, Self::Fallback];

    pub fn label(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Fallback => "fallback",
        }
    }
}

/// What writing a batch into `events` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub rows: u64,
    /// With [`InsertMethod::BinaryCopy`]: which path the batch took.
    pub copy: Option<CopyPath>,
}

/// Inserts a batch with the chosen method; existing ids are skipped. `savepoint_taken`: the
/// transaction took [`COPY_SAVEPOINT`] and wrote nothing since (binary COPY then needs no
/// savepoint of its own).
pub async fn insert_batch(
    conn: &mut PgConnection,
    events: &[EventRow<'_>],
    method: InsertMethod,
    savepoint_taken: bool,
) -> Result<Inserted, sqlx::Error> {
    match method {
        InsertMethod::BinaryCopy => {
            if events.is_empty() {
                return Ok(Inserted { rows: 0, copy: None });
            }
            insert_encoded(conn, events, &encode_events(events), savepoint_taken).await
        }
        InsertMethod::Unnest => Ok(Inserted { rows: insert_events(conn, events).await?, copy: None }),
        InsertMethod::Copy => Ok(Inserted { rows: insert_events_copy(conn, events).await?, copy: None }),
    }
}

/// [`insert_batch`] by binary COPY, with the rows' COPY stream already encoded
/// ([`encode_events`] of `events`, possibly ahead of time: see lookahead.rs).
pub async fn insert_encoded(
    conn: &mut PgConnection,
    events: &[EventRow<'_>],
    stream: &[u8],
    savepoint_taken: bool,
) -> Result<Inserted, sqlx::Error> {
    match try_copy(conn, EVENTS_COPY, stream, savepoint_taken).await? {
        Some(rows) => Ok(Inserted { rows, copy: Some(CopyPath::Copy) }),
        None => Ok(Inserted { rows: insert_events(conn, events).await?, copy: Some(CopyPath::Fallback) }),
    }
}

/// The binary COPY stream of these rows, in the column order of [`EVENTS_COPY`].
pub fn encode_events(events: &[EventRow<'_>]) -> Vec<u8> {
    let mut c = CopyBuffer::with_capacity(
        19 + events.iter().map(|e| 90 + e.event_type.len() + e.key.map_or(0, str::len) + e.data.len()).sum::<usize>(),
    );
    for e in events {
        c.row(6);
        c.uuid(&e.id);
        c.text(e.event_type);
        c.opt_text(e.key);
        c.timestamptz(e.ts);
        c.timestamptz(e.received_at);
        c.jsonb(&e.data);
    }
    c.finish()
}

/// The savepoint a COPY rolls back to when PostgreSQL refuses a row of it.
pub const COPY_SAVEPOINT: &str = "sluice_copy";

/// The `route` label of the built-in route (every event into `events`).
pub const EVENTS_ROUTE: &str = "events";

/// The COPY statement [`encode_events`] feeds.
pub const EVENTS_COPY: &str = "COPY events (id, type, key, ts, received_at, data) FROM STDIN (FORMAT binary)";

/// COPYs a binary `stream` with the `copy` statement under a savepoint, inside the caller's
/// transaction (after the fence). Returns the rows copied, or None when PostgreSQL refused a
/// row (a duplicate key, 23505, or any other class 21/22/23/54 error): the transaction is then
/// rolled back to the savepoint, as before the COPY, and the caller writes the batch through
/// its conflict-aware statements (which skip duplicates, or raise the refusal for isolation).
/// Any other error is returned as it is.
///
/// `savepoint_taken`: [`COPY_SAVEPOINT`] was taken with nothing written since (the batch's
/// transaction opened with it); otherwise it is taken here.
pub async fn try_copy(
    conn: &mut PgConnection,
    copy: &str,
    stream: &[u8],
    savepoint_taken: bool,
) -> Result<Option<u64>, sqlx::Error> {
    if !savepoint_taken {
        sqlx::query("SAVEPOINT sluice_copy").execute(&mut *conn).await?;
    }
    let mut copying = conn.copy_in_raw(copy).await?;
    copying.send(stream).await?;
    match copying.finish().await {
        Ok(rows) => Ok(Some(rows)),
        Err(error) if classify(&error) == ErrorKind::Rejected => {
            sqlx::query("ROLLBACK TO SAVEPOINT sluice_copy").execute(&mut *conn).await?;
            tracing::debug!(error = %database_message(&error), "COPY refused the batch; writing it with the conflict-aware statement");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// COPY (CSV) into a temporary staging table that empties itself at commit, then moves the
/// rows over with the same conflict rule as the UNNEST path.
pub async fn insert_events_copy(conn: &mut PgConnection, events: &[EventRow<'_>]) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS events_staging
            (id uuid, type text, key text, ts timestamptz, received_at timestamptz, data jsonb)
            ON COMMIT DELETE ROWS",
    )
    .execute(&mut *conn)
    .await?;
    let mut csv = Vec::with_capacity(events.len() * 256);
    for e in events {
        csv_row(&mut csv, e);
    }
    let mut copy =
        conn.copy_in_raw("COPY events_staging (id, type, key, ts, received_at, data) FROM STDIN (FORMAT csv)").await?;
    copy.send(csv).await?;
    copy.finish().await?;
    let result = sqlx::query(
        "INSERT INTO events (id, type, key, ts, received_at, data)
         SELECT id, type, key, ts, received_at, data FROM events_staging
         ON CONFLICT (id) DO NOTHING",
    )
    .execute(&mut *conn)
    .await?;
    // The staging rows go at commit; clear them now too, in case the batch is retried in the
    // same transaction (savepoint isolation).
    sqlx::query("TRUNCATE events_staging").execute(&mut *conn).await?;
    Ok(result.rows_affected())
}

fn csv_field(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for b in value.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn csv_row(out: &mut Vec<u8>, e: &EventRow<'_>) {
    use std::io::Write as _;
    let _ = write!(out, "{},", e.id);
    csv_field(out, e.event_type);
    out.push(b',');
    // An unquoted empty field is NULL in CSV; a quoted one is the empty string.
    if let Some(key) = e.key {
        csv_field(out, key);
    }
    // Microseconds, truncated, as the binary protocol of the UNNEST path stores them.
    let micros = |t: &chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let _ = write!(out, ",{},{},", micros(&e.ts), micros(&e.received_at));
    csv_field(out, &e.data);
    out.push(b'\n');
}

/// A batch that can be written in parts: [`write_isolating`] writes `range`s of its units
/// (events, or records with their routes' operations), in order, under savepoints.
pub trait Chunks {
    /// What writing a part reports (rows inserted, counts per route).
    type Written;
    /// The number of units.
    fn count(&self) -> usize;
    /// Writes units `range` in this transaction. A class 21/22/23/54 error ([`ErrorKind::Rejected`])
    /// refuses the part; any other error aborts the attempt.
    fn write(
        &self,
        conn: &mut PgConnection,
        range: std::ops::Range<usize>,
    ) -> impl std::future::Future<Output = Result<Self::Written, sqlx::Error>> + Send;
}

/// Writes a batch's units, isolating the ones PostgreSQL refuses for a permanent reason: each
/// part runs under a savepoint; a refused part is halved until the refused units stand alone.
/// Parts are written in unit order, so what is kept is written in offset order. Returns what
/// each written part reported and the refused units' indexes with the database's reason. A
/// transient error aborts the whole attempt.
pub async fn write_isolating<C: Chunks + Sync>(
    conn: &mut PgConnection,
    chunks: &C,
) -> Result<(Vec<C::Written>, Vec<(usize, String)>), sqlx::Error> {
    let mut written = Vec::new();
    let mut refused = Vec::new();
    // Ranges still to try, last one on top; pushed in reverse so units go in order.
    let mut todo = vec![(0, chunks.count())];
    while let Some((start, end)) = todo.pop() {
        if start == end {
            continue;
        }
        sqlx::query("SAVEPOINT chunk").execute(&mut *conn).await?;
        match chunks.write(conn, start..end).await {
            Ok(part) => {
                sqlx::query("RELEASE SAVEPOINT chunk").execute(&mut *conn).await?;
                written.push(part);
            }
            Err(error) if classify(&error) == ErrorKind::Rejected => {
                sqlx::query("ROLLBACK TO SAVEPOINT chunk").execute(&mut *conn).await?;
                sqlx::query("RELEASE SAVEPOINT chunk").execute(&mut *conn).await?;
                if end - start == 1 {
                    refused.push((start, database_message(&error)));
                } else {
                    let mid = start + (end - start) / 2;
                    todo.push((mid, end));
                    todo.push((start, mid));
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok((written, refused))
}

/// Events as [`Chunks`]: parts go into `events` with the UNNEST statement.
struct EventChunks<'a, 'e>(&'a [EventRow<'e>]);

impl Chunks for EventChunks<'_, '_> {
    type Written = u64;

    fn count(&self) -> usize {
        self.0.len()
    }

    async fn write(&self, conn: &mut PgConnection, range: std::ops::Range<usize>) -> Result<u64, sqlx::Error> {
        insert_events(conn, &self.0[range]).await
    }
}

/// Inserts events, isolating the ones PostgreSQL refuses ([`write_isolating`]). Returns the
/// inserted count and the refused events' indexes with the database's reason.
pub async fn insert_isolating(
    conn: &mut PgConnection,
    events: &[EventRow<'_>],
) -> Result<(u64, Vec<(usize, String)>), sqlx::Error> {
    let (written, refused) = write_isolating(conn, &EventChunks(events)).await?;
    Ok((written.into_iter().sum(), refused))
}

/// What a database error means for the sinker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The connection or server is gone or restarting: retry the same batch later.
    Connection,
    /// Lock timeout, deadlock, serialization failure: retry, and make batches smaller.
    Contention,
    /// Statement timeout or cancellation: retry.
    Timeout,
    /// The data itself is refused (class 21 cardinality: one statement touching a row twice,
    /// 22 data exception, 23 integrity, 54 limits): isolate the offending rows and dead-letter
    /// them.
    Rejected,
    /// The schema or permissions are wrong (class 42, 28, 3D, ...), the server reports an
    /// internal error or corruption (class XX), or a trigger raised an exception with the
    /// default code (class P0: `RAISE EXCEPTION` without `USING ERRCODE`): nothing a retry of
    /// the data fixes. The partition is stuck until an operator fixes the database: it keeps
    /// retrying with capped backoff and shows in `/readyz`, `sinker_partitions_stuck` and the
    /// `SluiceSinkerStuck` alert. (A trigger that refuses single rows should raise a class 22
    /// or 23 code, which dead-letters those rows instead.)
    Fatal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [Self::Connection, Self::Contention, Self::Timeout, Self::Rejected, Self::Fatal];

    pub fn label(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Contention => "contention",
            Self::Timeout => "timeout",
            Self::Rejected => "rejected",
            Self::Fatal => "fatal",
        }
    }
}

/// Classifies by SQLSTATE; errors without one (I/O, TLS, pool) are connection errors.
pub fn classify(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(db) => classify_sqlstate(db.code().as_deref().unwrap_or("")),
        sqlx::Error::Configuration(_) | sqlx::Error::Migrate(_) => ErrorKind::Fatal,
        _ => ErrorKind::Connection,
    }
}

pub fn classify_sqlstate(code: &str) -> ErrorKind {
    match code {
        "40001" | "40P01" | "55P03" => ErrorKind::Contention,
        "57014" => ErrorKind::Timeout,
        // 21000: a statement touched one row twice (an upsert whose keys the database finds equal
        // and write-combining did not): the rows that did it are isolated like a refused row.
        c if c.starts_with("21") || c.starts_with("22") || c.starts_with("23") || c.starts_with("54") => {
            ErrorKind::Rejected
        }
        c if c.starts_with("08") || c.starts_with("57") || c.starts_with("53") || c.starts_with("58") => {
            ErrorKind::Connection
        }
        c if c.starts_with("40") || c.starts_with("55") => ErrorKind::Contention,
        _ => ErrorKind::Fatal,
    }
}

pub fn database_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => format!("{} (sqlstate {})", db.message(), db.code().unwrap_or_default()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        let cases = [
            ("08006", ErrorKind::Connection),
            ("57P01", ErrorKind::Connection),
            ("53300", ErrorKind::Connection),
            ("40P01", ErrorKind::Contention),
            ("40001", ErrorKind::Contention),
            ("55P03", ErrorKind::Contention),
            ("57014", ErrorKind::Timeout),
            ("21000", ErrorKind::Rejected),
            ("22P05", ErrorKind::Rejected),
            ("22008", ErrorKind::Rejected),
            ("23514", ErrorKind::Rejected),
            ("54000", ErrorKind::Rejected),
            ("42P01", ErrorKind::Fatal),
            ("42501", ErrorKind::Fatal),
            ("28P01", ErrorKind::Fatal),
            ("XX000", ErrorKind::Fatal),
            ("XX001", ErrorKind::Fatal),
            ("P0001", ErrorKind::Fatal),
        ];
        for (code, kind) in cases {
            assert_eq!(classify_sqlstate(code), kind, "{code}");
        }
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), ErrorKind::Connection);
    }
}
