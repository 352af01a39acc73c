//! The short chaos runs: every fault once under load, then exact accounting (crates/chaos).
//! `make chaos` runs the long schedule with the same code (`PROFILE=routes`: with routes).

use std::path::PathBuf;

use chaos::{schedule::Profile, Options};

use crate::helpers::bin_dir;

#[allow(clippy::print_stdout, reason = "the seed, which the test harness shows when the test fails")]
async fn short_run(profile: Profile, replay: &str) {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("chaos seed {seed} (replay: CHAOS_SEED={seed} cargo test --test e2e {replay})");
    let options = Options {
        profile,
        seed,
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        bin_dir: bin_dir(),
        log_dir: bin_dir().join("chaos-logs"),
        partitions: 6,
    };
    let report = chaos::run(options).await.expect("the chaos run completes");
    assert!(report.discrepancies.is_empty(), "seed {seed}: {:#?}\n{}", report.discrepancies, report.lines.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_chaos_run_loses_nothing_and_duplicates_nothing() {
    short_run(Profile::Short, "a_short_chaos_run").await;
}

/// Gateway and sinkers with `--routes`: page views inserted, orders upserted with a version
/// and deleted, everything into `events` too, under the same faults; every table checked
/// against the books (crates/chaos/src/routes_audit.rs).
#[tokio::test(flavor = "multi_thread")]
async fn a_short_chaos_run_with_routes_leaves_exact_rows_in_every_table() {
    short_run(Profile::RoutesShort, "a_short_chaos_run_with_routes").await;
}
