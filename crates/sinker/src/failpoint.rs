//! Crash points for tests: `SLUICE_FAILPOINT=<name>[:<n>]` aborts the process (as abruptly as
//! kill -9: no flush, no commit) the n-th time (default 1st) execution reaches `<name>`.
//!
//! Points: `sinker.before_db_commit`, `sinker.after_db_commit` (after the database commit,
//! before the Kafka commit).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    OnceLock,
};

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let raw = std::env::var("SLUICE_FAILPOINT").ok()?;
            let (name, at) = match raw.split_once(':') {
                Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
                None => (raw, 1),
            };
            Some(Armed { name, at, hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Aborts the process if this point is armed and its turn has come.
pub fn hit(name: &str) {
    if let Some(armed) = armed() {
        if armed.name == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
            tracing::error!(failpoint = name, "failpoint reached: aborting the process");
            std::process::abort();
        }
    }
}
