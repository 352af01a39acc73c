//! The short chaos run: every fault once under load, then exact accounting (crates/chaos).
//! `make chaos` runs the long schedule with the same code.

use std::path::PathBuf;

use chaos::{schedule::Profile, Options};

use crate::helpers::bin_dir;

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout, reason = "the seed, which the test harness shows when the test fails")]
async fn a_short_chaos_run_loses_nothing_and_duplicates_nothing() {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("chaos seed {seed} (replay: CHAOS_SEED={seed} cargo test --test e2e chaos)");
    let options = Options {
        profile: Profile::Short,
        seed,
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        bin_dir: bin_dir(),
        log_dir: bin_dir().join("chaos-logs"),
        partitions: 6,
    };
    let report = chaos::run(options).await.expect("the chaos run completes");
    assert!(report.discrepancies.is_empty(), "seed {seed}: {:#?}\n{}", report.discrepancies, report.lines.join("\n"));
}
