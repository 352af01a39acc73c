//! The write path with routes (`--routes`): records become operations on the routes' tables,
//! write-combined per (table, key), one statement per route, kind and missing-column set, all
//! in the batch's transaction (partition.rs runs the offset fence first and COMMIT last).
//!
//! Invariants:
//! - a record's operations are computed once per batch ([`record_ops`]); a record that cannot
//!   be mapped becomes one dead letter and no operation (all or nothing across its routes);
//!   attempts and isolation parts combine references to them, never copies, and each
//!   statement's SQL is built once per process ([`ResolvedRoutes::statement`]);
//! - rounds run in order and each statement touches a row at most once (see
//!   `sluice_routes::combine`), so the tables end as if every operation ran in offset order;
//! - isolation ([`Units`] through `store::write_isolating`) splits the batch by record, never
//!   a record's operations, so a refused record is written to none of its routes.

use std::{collections::BTreeMap, ops::Range};

use chrono::{DateTime, Utc};
use rdkafka::{message::OwnedMessage, Message};
use sluice_core::{pruned::decode_pruned, RejectReason, Rejection};
use sluice_routes::{combine, sql, Mode, Op, RecordError, ResolvedRoutes, StatementKind};
use sqlx::{PgConnection, Row as _};

use crate::{
    routed_copy,
    store::{self, Chunks, CopyPath},
};

/// What a route's statements did, per `sinker_rows_written_total{op}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Sent and not written: an insert's conflict, an upsert's older version (or `DO
    /// NOTHING`), a delete's key not found.
    pub skipped: u64,
}

impl RouteCounts {
    fn add(&mut self, other: Self) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.skipped += other.skipped;
    }
}

/// What writing operations did: counts per route index, and operations folded away by
/// write-combining per route index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutedWritten {
    pub routes: BTreeMap<usize, RouteCounts>,
    pub folded: BTreeMap<usize, u64>,
    /// Insert groups written by binary COPY, per route index and path.
    pub copies: BTreeMap<(usize, CopyPath), u64>,
}

impl RoutedWritten {
    pub fn add(&mut self, other: Self) {
        for (route, counts) in other.routes {
            self.routes.entry(route).or_default().add(counts);
        }
        for (route, n) in other.folded {
            *self.folded.entry(route).or_default() += n;
        }
        for (key, n) in other.copies {
            *self.copies.entry(key).or_default() += n;
        }
    }

    /// Rows inserted over every route (inserts and upserts that inserted).
    pub fn inserted(&self) -> u64 {
        self.routes.values().map(|c| c.inserted).sum()
    }

    /// Rows skipped over every route.
    pub fn skipped(&self) -> u64 {
        self.routes.values().map(|c| c.skipped).sum()
    }
}

/// A record's operations, or its dead letter: a tombstone with a key deletes through the
/// routes with a `tombstone_key`; anything else must decode to an event some route takes.
pub fn record_ops(
    routes: &ResolvedRoutes,
    msg: &OwnedMessage,
    record_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_event_bytes: usize,
) -> Result<Vec<Op>, Rejection> {
    let offset = msg.offset();
    let ops = match (msg.payload(), msg.key()) {
        (None, Some(key)) => {
            let Ok(key) = std::str::from_utf8(key) else {
                return Err(Rejection::new(
                    RejectReason::MappingFailed,
                    "a tombstone whose record key is not UTF-8: no tombstone_key column can take it",
                ));
            };
            routes.ops_for_tombstone(offset, key)
        }
        (payload, _) => {
            // `data` built only where the routes' paths read it, in one pass (refused as
            // `wire::decode` refuses; the same operations as for the whole event).
            let event = decode_pruned(payload, record_time, now, max_event_bytes, &routes.data_paths)?;
            routes.ops_for_event(offset, &event)
        }
    };
    ops.map_err(|error| Rejection::new(reason(&error), error.to_string()))
}

fn reason(error: &RecordError) -> RejectReason {
    match error {
        RecordError::NoRoute { .. } | RecordError::NoTombstoneRoute => RejectReason::NoRoute,
        RecordError::Mapping(_) => RejectReason::MappingFailed,
    }
}

/// Writes operations (in offset order): combines them, then runs each round's statements.
pub async fn write_ops(
    conn: &mut PgConnection,
    routes: &ResolvedRoutes,
    ops: Vec<Op>,
) -> Result<RoutedWritten, sqlx::Error> {
    write_op_refs(conn, routes, &ops, false).await
}

/// [`write_ops`] over borrowed operations (in offset order).
///
/// With `copy` (the caller took `store::COPY_SAVEPOINT` and wrote nothing since), an insert
/// route's groups go by binary COPY (`routed_copy.rs`); when PostgreSQL refuses a row of one (a
/// key already there, a refused value), everything written here is rolled back to the savepoint
/// and the batch is written again through the statements alone (which skip what is there, or
/// raise the refusal for isolation).
pub async fn write_op_refs<'o>(
    conn: &mut PgConnection,
    routes: &ResolvedRoutes,
    ops: impl IntoIterator<Item = &'o Op>,
    copy: bool,
) -> Result<RoutedWritten, sqlx::Error> {
    let combined = combine(ops);
    let mut refused_copy = None;
    'pass: for copying in [copy, false] {
        let mut written = RoutedWritten { folded: combined.folded.clone(), ..RoutedWritten::default() };
        if let Some(route) = refused_copy {
            written.copies.insert((route, CopyPath::Fallback), 1);
        }
        for round in &combined.rounds {
            for group in sql::groups(round.iter().copied()) {
                let statement = routes.statement(group.route, group.kind, group.missing);
                let sent = group.ops.len() as u64;
                let route = &routes.routes[group.route];
                let stream = (copying
                    && group.kind == StatementKind::Insert
                    && route.mode() == Mode::Insert
                    && routed_copy::copyable(route))
                .then(|| routed_copy::encode_group(route, &statement, &group.ops))
                .flatten();
                if let Some(stream) = stream {
                    let sql = routed_copy::copy_sql(route, &statement.columns);
                    let Some(inserted) = store::try_copy(conn, &sql, &stream, true).await? else {
                        // Rolled back to the batch's savepoint: write it all again by statements.
                        refused_copy = Some(group.route);
                        continue 'pass;
                    };
                    *written.copies.entry((group.route, CopyPath::Copy)).or_default() += 1;
                    let counts =
                        RouteCounts { inserted, skipped: sent.saturating_sub(inserted), ..RouteCounts::default() };
                    written.routes.entry(group.route).or_default().add(counts);
                    continue;
                }
                let mut query = sqlx::query(&statement.sql);
                for array in statement.bind(&group.ops) {
                    query = query.bind(array);
                }
                let counts = match group.kind {
                    StatementKind::Insert => {
                        let inserted = query.execute(&mut *conn).await?.rows_affected();
                        RouteCounts { inserted, skipped: sent.saturating_sub(inserted), ..RouteCounts::default() }
                    }
                    StatementKind::Upsert => {
                        let rows = query.fetch_all(&mut *conn).await?;
                        let mut counts = RouteCounts::default();
                        for row in &rows {
                            if row.try_get::<bool, _>(0)? {
                                counts.inserted += 1;
                            } else {
                                counts.updated += 1;
                            }
                        }
                        counts.skipped = sent.saturating_sub(rows.len() as u64);
                        counts
                    }
                    StatementKind::Delete => {
                        let deleted = query.execute(&mut *conn).await?.rows_affected();
                        RouteCounts { deleted, skipped: sent.saturating_sub(deleted), ..RouteCounts::default() }
                    }
                };
                written.routes.entry(group.route).or_default().add(counts);
            }
        }
        return Ok(written);
    }
    unreachable!("the statements pass always returns")
}

/// Whether a batch through these routes may go by COPY (an insert route whose columns COPY takes).
pub fn copies(routes: &ResolvedRoutes) -> bool {
    routes.routes.iter().any(|r| r.mode() == Mode::Insert && routed_copy::copyable(r))
}

/// A batch's records with their operations (in offset order), written in parts by
/// `store::write_isolating` when PostgreSQL refuses a row.
pub struct Units<'a> {
    pub routes: &'a ResolvedRoutes,
    /// (record index in the batch, its operations).
    pub units: &'a [(usize, Vec<Op>)],
}

impl<'a> Units<'a> {
    /// Every operation of these units, in offset order.
    pub fn ops(&self, range: Range<usize>) -> impl Iterator<Item = &'a Op> {
        self.units[range].iter().flat_map(|(_, ops)| ops.iter())
    }
}

impl Chunks for Units<'_> {
    type Written = RoutedWritten;

    fn count(&self) -> usize {
        self.units.len()
    }

    async fn write(&self, conn: &mut PgConnection, range: Range<usize>) -> Result<RoutedWritten, sqlx::Error> {
        // Isolation halves what PostgreSQL refused: the statements say which rows.
        write_op_refs(conn, self.routes, self.ops(range), false).await
    }
}
