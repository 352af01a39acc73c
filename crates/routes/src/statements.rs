//! The statements of a resolved routes file, built once per (route, kind, `missing` set) and
//! kept for as long as the [`ResolvedRoutes`](crate::ResolvedRoutes) (in the sinker: the
//! process), so a batch does not rebuild its SQL text.
//!
//! Invariants:
//! - an entry equals [`sql::statement`] for its route, kind and `missing` set: resolved routes
//!   never change, so an entry never goes stale;
//! - entries are bounded by the routes file: per route, three kinds and at most 2^k `missing`
//!   sets (k columns that may be left to the table's default); only the sets that occur are
//!   built.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use crate::{
    mapping::ResolvedRoute,
    sql::{self, Statement, StatementKind},
};

type PerMissing = HashMap<Box<[usize]>, Arc<Statement>>;

/// The cache: per route, per kind (insert, upsert, delete), per `missing` set.
#[derive(Default)]
pub struct Statements {
    per_route: Vec<[RwLock<PerMissing>; 3]>,
}

impl Statements {
    /// An empty cache for `routes` routes.
    pub fn new(routes: usize) -> Self {
        Self { per_route: (0..routes).map(|_| Default::default()).collect() }
    }

    /// [`sql::statement`]`(route, kind, missing)` for the route at `index`, built on first use.
    ///
    /// # Panics
    /// When `index` is not below the number of routes the cache was made for.
    pub fn get(&self, index: usize, route: &ResolvedRoute, kind: StatementKind, missing: &[usize]) -> Arc<Statement> {
        let slot = &self.per_route[index][kind_slot(kind)];
        if let Some(found) = slot.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(missing) {
            return Arc::clone(found);
        }
        let mut entries = slot.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(entries.entry(missing.into()).or_insert_with(|| Arc::new(sql::statement(route, kind, missing))))
    }

    /// The number of statements built so far.
    pub fn len(&self) -> usize {
        self.per_route
            .iter()
            .flatten()
            .map(|slot| slot.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn kind_slot(kind: StatementKind) -> usize {
    match kind {
        StatementKind::Insert => 0,
        StatementKind::Upsert => 1,
        StatementKind::Delete => 2,
    }
}

/// A clone starts empty: entries are rebuilt on use, equal to the original's.
impl Clone for Statements {
    fn clone(&self) -> Self {
        Self::new(self.per_route.len())
    }
}

impl fmt::Debug for Statements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statements").field("built", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests::shop;

    #[test]
    fn a_statement_is_built_once_and_equals_a_fresh_one() {
        let routes = shop();
        let statements = Statements::new(routes.routes.len());
        let orders = &routes.routes[1];
        let first = statements.get(1, orders, StatementKind::Upsert, &[]);
        let again = statements.get(1, orders, StatementKind::Upsert, &[]);
        assert!(Arc::ptr_eq(&first, &again), "built once");
        assert_eq!(*first, sql::statement(orders, StatementKind::Upsert, &[]));
        let without_status = statements.get(1, orders, StatementKind::Upsert, &[0]);
        assert_eq!(*without_status, sql::statement(orders, StatementKind::Upsert, &[0]));
        let delete = statements.get(1, orders, StatementKind::Delete, &[]);
        assert_eq!(*delete, sql::statement(orders, StatementKind::Delete, &[]));
        assert_eq!(statements.len(), 3);
        assert!(statements.clone().is_empty(), "a clone starts empty");
    }
}
