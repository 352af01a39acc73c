//! Write-combining: a partition's batch of operations, reduced so that each statement touches
//! each row once, with the same end state as running the operations one by one in offset order.
//!
//! Per row ([`RowKey`]: table and key), operations before the row's last delete are dropped
//! (the delete wins over them); after it:
//! - an insert (`ON CONFLICT DO NOTHING`) is kept only if it is the first operation: after
//!   any other operation the row exists and the insert does nothing;
//! - per upsert route, one upsert survives: the last one, or with a `version`, the one with
//!   the highest version (a null version is the lowest), ties going to the later offset. This
//!   equals running them all: each runs only if its version is at least the stored one (see
//!   `sql.rs`), so after the highest one none of the others changes anything.
//!
//! The survivors of one row stay in offset order and are spread over rounds: round n holds
//! each row's n-th survivor. The caller runs the rounds in order, and in each round one
//! statement per route and kind (and `missing` set, see `mapping.rs`): a statement never names
//! one key twice (no "ON CONFLICT DO UPDATE command cannot affect row a second time"), and
//! each row sees its operations in order. A batch where each table has one route and no
//! deletes follow upserts has one round. Keyless operations (inserts of routes without a key)
//! are never combined and all go in round 0.
//!
//! Combining works on references: the caller keeps its operations (a batch is retried and
//! isolated in parts without copying a row), and the rounds point into them.
//!
//! Exactness rests on the routes file's rules (see `file.rs`): routes into one table share
//! one key, and a table upserted with a version has one upsert route. Several upsert routes
//! without a version may write one table: each writes its own columns, the later survivor
//! overwrites the columns both map, as running them all would.

use std::collections::{BTreeMap, HashMap};

use crate::ops::{Action, Op, RowKey};

/// The operations that remain, in rounds, and how many were folded into them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Combined<'o> {
    /// Round n: each row's n-th surviving operation, in offset order. Never empty rounds.
    pub rounds: Vec<Vec<&'o Op>>,
    /// Per route index: operations dropped because another one makes them moot
    /// (`sinker_rows_combined_total{route}`). Routes that folded nothing are absent.
    pub folded: BTreeMap<usize, u64>,
}

impl Combined<'_> {
    /// The number of operations that remain.
    pub fn len(&self) -> usize {
        self.rounds.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }
}

/// What is kept for one row so far (positions in the input).
#[derive(Default)]
struct RowState {
    delete: Option<usize>,
    /// An insert that came first after the delete (or the batch start).
    insert: Option<usize>,
    /// Something was kept after the delete (or the batch start).
    touched: bool,
    /// Per route: its surviving upsert.
    upserts: Vec<(usize, usize)>,
}

impl RowState {
    fn survivors(&self) -> Vec<usize> {
        let mut all: Vec<usize> =
            self.delete.into_iter().chain(self.insert).chain(self.upserts.iter().map(|u| u.1)).collect();
        all.sort_unstable();
        all
    }
}

/// Combines a partition's operations. `ops` must be in offset order (several operations may
/// share an offset: one event, several routes); their position breaks ties.
pub fn combine<'o>(ops: impl IntoIterator<Item = &'o Op>) -> Combined<'o> {
    let ops: Vec<&'o Op> = ops.into_iter().collect();
    debug_assert!(ops.windows(2).all(|w| w[0].offset <= w[1].offset), "operations must be in offset order");
    let mut keep = vec![false; ops.len()];
    let mut rows: HashMap<&RowKey, RowState> = HashMap::new();
    let mut keyless = Vec::new();
    for (i, &op) in ops.iter().enumerate() {
        let Some(key) = &op.key else {
            keyless.push(i);
            keep[i] = true;
            continue;
        };
        let row = rows.entry(key).or_default();
        match &op.action {
            Action::Delete => {
                for dropped in row.survivors() {
                    keep[dropped] = false;
                }
                *row = RowState { delete: Some(i), ..RowState::default() };
                keep[i] = true;
            }
            Action::Insert => {
                if !row.touched {
                    row.insert = Some(i);
                    row.touched = true;
                    keep[i] = true;
                }
            }
            Action::Upsert | Action::VersionedUpsert(_) => {
                row.touched = true;
                match row.upserts.iter_mut().find(|(route, _)| *route == op.route) {
                    Some((_, kept)) => {
                        if supersedes(&op.action, &ops[*kept].action) {
                            keep[*kept] = false;
                            *kept = i;
                            keep[i] = true;
                        }
                    }
                    None => {
                        row.upserts.push((op.route, i));
                        keep[i] = true;
                    }
                }
            }
        }
    }
    let mut round_of = vec![None; ops.len()];
    for &i in &keyless {
        round_of[i] = Some(0);
    }
    for row in rows.values() {
        for (round, i) in row.survivors().into_iter().enumerate() {
            round_of[i] = Some(round);
        }
    }
    let mut combined = Combined::default();
    for (i, op) in ops.into_iter().enumerate() {
        match round_of[i].filter(|_| keep[i]) {
            Some(round) => {
                if combined.rounds.len() <= round {
                    combined.rounds.resize_with(round + 1, Vec::new);
                }
                combined.rounds[round].push(op);
            }
            None => *combined.folded.entry(op.route).or_default() += 1,
        }
    }
    combined
}

/// Whether a later upsert of the same route and row replaces the kept one.
fn supersedes(later: &Action, kept: &Action) -> bool {
    match (later, kept) {
        // Ties go to the later one: `>=` in the database.
        (Action::VersionedUpsert(later), Action::VersionedUpsert(kept)) => later >= kept,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compare::Version, mapping::Row};
    use proptest::prelude::*;

    fn op(offset: i64, route: usize, key: Option<&str>, action: Action) -> Op {
        Op {
            offset,
            route,
            key: key.map(|k| RowKey { table_id: 0, values: vec![k.to_owned()] }),
            action,
            row: Row { values: vec![Some(offset.to_string())], missing: vec![] },
        }
    }

    fn v(n: i64) -> Action {
        Action::VersionedUpsert(Some(Version::Int(n)))
    }

    fn offsets(round: &[&Op]) -> Vec<i64> {
        round.iter().map(|o| o.offset).collect()
    }

    #[test]
    fn a_hundred_updates_of_one_key_are_one_write() {
        let ops: Vec<Op> = (0..100).map(|i| op(i, 0, Some("hot"), Action::Upsert)).collect();
        let combined = combine(&ops);
        assert_eq!(combined.rounds.len(), 1);
        assert_eq!(offsets(&combined.rounds[0]), [99]);
        assert_eq!(combined.folded, BTreeMap::from([(0, 99)]));
    }

    #[test]
    fn the_highest_version_wins_and_ties_go_to_the_later_offset() {
        let ops = vec![
            op(1, 0, Some("k"), v(5)),
            op(2, 0, Some("k"), v(7)),
            op(3, 0, Some("k"), v(6)),
            op(4, 0, Some("k"), v(7)),
            op(5, 0, Some("k"), Action::VersionedUpsert(None)),
        ];
        let combined = combine(&ops);
        assert_eq!(offsets(&combined.rounds[0]), [4]);
        assert_eq!(combined.folded[&0], 4);
        let null_first_ops = vec![op(1, 0, Some("k"), Action::VersionedUpsert(None)), op(2, 0, Some("k"), v(-1))];
        let null_first = combine(&null_first_ops);
        assert_eq!(offsets(&null_first.rounds[0]), [2]);
    }

    #[test]
    fn delete_after_upsert_is_a_delete_and_upsert_after_delete_an_upsert() {
        let delete_last_ops = vec![
            op(1, 0, Some("k"), Action::Upsert),
            op(2, 0, Some("k"), Action::Upsert),
            op(3, 1, Some("k"), Action::Delete),
        ];
        let delete_last = combine(&delete_last_ops);
        assert_eq!(delete_last.rounds.len(), 1);
        assert_eq!(offsets(&delete_last.rounds[0]), [3]);
        assert_eq!(delete_last.folded, BTreeMap::from([(0, 2)]));

        let upsert_last_ops = vec![
            op(1, 0, Some("k"), Action::Upsert),
            op(2, 1, Some("k"), Action::Delete),
            op(3, 0, Some("k"), Action::Upsert),
            op(4, 0, Some("k"), Action::Upsert),
        ];
        let upsert_last = combine(&upsert_last_ops);
        assert_eq!(upsert_last.rounds.len(), 2);
        assert_eq!(offsets(&upsert_last.rounds[0]), [2]);
        assert_eq!(offsets(&upsert_last.rounds[1]), [4]);
        assert_eq!(upsert_last.folded, BTreeMap::from([(0, 2)]));
    }

    #[test]
    fn inserts_after_the_first_operation_do_nothing() {
        let ops = vec![
            op(1, 0, Some("k"), Action::Insert),
            op(2, 0, Some("k"), Action::Insert),
            op(3, 0, Some("j"), Action::Insert),
            op(4, 1, Some("j"), Action::Delete),
            op(5, 0, Some("j"), Action::Insert),
            op(6, 0, None, Action::Insert),
            op(7, 0, None, Action::Insert),
        ];
        let combined = combine(&ops);
        assert_eq!(offsets(&combined.rounds[0]), [1, 4, 6, 7]);
        assert_eq!(offsets(&combined.rounds[1]), [5]);
        assert_eq!(combined.folded, BTreeMap::from([(0, 2)]));
        assert_eq!(combined.len(), 5);
    }

    #[test]
    fn upsert_routes_of_one_table_keep_one_survivor_each_in_offset_order() {
        let ops = vec![
            op(1, 0, Some("k"), Action::Upsert),
            op(2, 1, Some("k"), Action::Upsert),
            op(3, 0, Some("k"), Action::Upsert),
            op(4, 0, Some("j"), Action::Upsert),
        ];
        let combined = combine(&ops);
        assert_eq!(offsets(&combined.rounds[0]), [2, 4]);
        assert_eq!(offsets(&combined.rounds[1]), [3]);
        assert_eq!(combined.folded, BTreeMap::from([(0, 1)]));
        assert!(combine(&[]).is_empty());
    }

    /// A table in the model: each route writes some of four columns.
    #[derive(Debug, Clone)]
    struct ModelRoute {
        kind: Kind,
        columns: Vec<usize>,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        Insert,
        Upsert,
        Versioned,
        Delete,
    }

    /// A stored row: which operation wrote each column (None: the default), and its version.
    #[derive(Debug, Clone, PartialEq)]
    struct Stored {
        columns: [Option<i64>; 4],
        version: Option<i64>,
    }

    type Db = BTreeMap<String, Stored>;

    /// What running one operation does: the SQL of `sql.rs`, one row at a time.
    fn apply(db: &mut Db, op: &Op, routes: &[ModelRoute]) {
        let Some(key) = &op.key else { return };
        let key = key.values[0].clone();
        let route = &routes[op.route];
        let write = |stored: &mut Stored| {
            for &c in &route.columns {
                stored.columns[c] = Some(op.offset);
            }
        };
        let version = match &op.action {
            Action::VersionedUpsert(Some(Version::Int(n))) => Some(*n),
            _ => None,
        };
        match (&op.action, db.get_mut(&key)) {
            (Action::Delete, _) => {
                db.remove(&key);
            }
            (_, None) => {
                let mut stored = Stored { columns: [None; 4], version };
                write(&mut stored);
                db.insert(key, stored);
            }
            (Action::Insert, Some(_)) => {}
            (Action::Upsert, Some(stored)) => write(stored),
            (Action::VersionedUpsert(_), Some(stored)) => {
                // WHERE t.v IS NULL OR EXCLUDED.v >= t.v
                if stored.version.is_none() || version.is_some_and(|v| Some(v) >= stored.version) {
                    write(stored);
                    stored.version = version;
                }
            }
        }
    }

    fn model_routes() -> impl Strategy<Value = Vec<ModelRoute>> {
        let columns = proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4);
        // One table: either one versioned upsert route, or any number of plain upsert routes
        // (the routes file's rule); inserts and deletes alongside.
        (any::<bool>(), proptest::collection::vec((0..3u8, columns), 1..5)).prop_map(|(versioned, routes)| {
            let mut out: Vec<ModelRoute> = routes
                .into_iter()
                .map(|(kind, columns)| ModelRoute {
                    kind: match kind {
                        0 => Kind::Insert,
                        1 => Kind::Upsert,
                        _ => Kind::Delete,
                    },
                    columns,
                })
                .collect();
            if versioned {
                out.retain(|r| r.kind != Kind::Upsert);
                out.push(ModelRoute { kind: Kind::Versioned, columns: vec![0, 2] });
            }
            out
        })
    }

    fn scenario() -> impl Strategy<Value = (Vec<ModelRoute>, Vec<Op>, Db)> {
        model_routes().prop_flat_map(|routes| {
            let n = routes.len();
            let step = (0..n, prop_oneof![Just(None), (0..3u8).prop_map(Some)], proptest::option::of(0..4i64), 0..3u8);
            let initial = proptest::collection::btree_map(
                (0..3u8).prop_map(|k| format!("k{k}")),
                (proptest::option::of(0..4i64), any::<bool>()),
                0..3,
            );
            (Just(routes), proptest::collection::vec(step, 0..40), initial).prop_map(|(routes, steps, initial)| {
                let mut ops = Vec::new();
                let mut offset = 0;
                for (route, key, version, advance) in steps {
                    offset += i64::from(advance.min(1));
                    let r = &routes[route];
                    // Keyless ops exist only for inserts.
                    let key = match (key, r.kind) {
                        (None, Kind::Insert) => None,
                        (k, _) => Some(format!("k{}", k.unwrap_or(0))),
                    };
                    let action = match r.kind {
                        Kind::Insert => Action::Insert,
                        Kind::Upsert => Action::Upsert,
                        Kind::Versioned => Action::VersionedUpsert(version.map(Version::Int)),
                        Kind::Delete => Action::Delete,
                    };
                    ops.push(Op {
                        offset,
                        route,
                        key: key.map(|k| RowKey { table_id: 0, values: vec![k] }),
                        action,
                        row: Row { values: vec![], missing: vec![] },
                    });
                }
                let db: Db = initial
                    .into_iter()
                    .map(|(k, (version, _))| (k, Stored { columns: [Some(-1); 4], version }))
                    .collect();
                (routes, ops, db)
            })
        })
    }

    proptest! {
        #[test]
        fn combining_ends_where_running_every_operation_ends((routes, ops, initial) in scenario()) {
            let mut sequential = initial.clone();
            for op in &ops {
                apply(&mut sequential, op, &routes);
            }
            let total = ops.len();
            let combined = combine(&ops);
            let mut rounds = initial;
            for round in &combined.rounds {
                prop_assert!(!round.is_empty());
                let keys: Vec<&RowKey> = round.iter().filter_map(|o| o.key.as_ref()).collect();
                let mut distinct = keys.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), keys.len(), "a round names a row twice");
                prop_assert!(round.windows(2).all(|w| w[0].offset <= w[1].offset));
                for op in round {
                    apply(&mut rounds, op, &routes);
                }
            }
            prop_assert_eq!(&rounds, &sequential);
            let folded: u64 = combined.folded.values().sum();
            prop_assert_eq!(combined.len() + folded as usize, total);
        }
    }
}
