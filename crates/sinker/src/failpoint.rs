//! Crash points for tests: `SLUICE_FAILPOINT=<name>[:<n>]` aborts the process (as abruptly as
//! kill -9: no flush, no commit) the n-th time (default 1st) execution reaches `<name>`.
//!
//! Points: `sinker.before_db_commit`, `sinker.after_db_commit` (after the database commit,
//! before the Kafka commit). `sinker.panic_in_worker` panics a partition worker instead (a bug
//! stand-in), to test that no task of the sinker dies quietly.

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

fn turn_has_come(name: &str) -> bool {
    armed().is_some_and(|armed| armed.name == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at)
}

/// Aborts the process if this point is armed and its turn has come.
pub fn hit(name: &str) {
    if turn_has_come(name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting the process");
        std::process::abort();
    }
}

/// Panics the calling task if this point is armed and its turn has come.
pub fn panic_here(name: &str) {
    if turn_has_come(name) {
        #[allow(clippy::panic, reason = "a failpoint that stands in for a bug")]
        {
            panic!("failpoint {name} reached");
        }
    }
}
