use std::{path::PathBuf, process::ExitCode};

use chaos::{schedule::Profile, Options};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    Short,
    Long,
    /// The three-broker cluster, every cluster fault once (about four minutes).
    ClusterShort,
    /// The three-broker cluster, three rounds (about ten minutes).
    Cluster,
    /// The short profile with the routes workload: gateway and sinkers with --routes, three
    /// event types into two user tables (insert, versioned upsert, delete) and `events`.
    RoutesShort,
    /// The long profile (ten minutes) with the routes workload.
    Routes,
    /// Steady load for --duration with a fault every few minutes; memory and lag followed.
    Soak,
}

/// sluice chaos harness: runs the real gateway and sinkers against a private Kafka and
/// PostgreSQL, injects faults on a seeded schedule while posting events, and checks that every
/// accepted event is stored exactly once.
#[derive(Parser)]
#[command(name = "chaos", version, about)]
struct Args {
    /// short: about a minute, every fault once; long: ten minutes, faults over and over;
    /// cluster-short / cluster: on three brokers, with leader kills, two brokers down, paused
    /// processes, killed database sessions and network stalls; routes / routes-short: the long /
    /// short faults with gateway and sinkers on a routes file (user tables, upserts, deletes).
    #[arg(long, value_enum, default_value = "long")]
    profile: ProfileArg,
    /// How long the soak's load runs (humantime: 30m, 3m).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Seed of the fault schedule and the load; printed, so a failing run can be replayed.
    #[arg(long)]
    seed: Option<u64>,
    /// Partitions of the test topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Where the gateway and sinker binaries are. Default: next to this binary.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The repository root (for deploy/local/stack.sh). Default: the current directory.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let bin_dir = args.bin_dir.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("target/debug"))
    });
    let options = Options {
        profile: match args.profile {
            ProfileArg::Short => Profile::Short,
            ProfileArg::Long => Profile::Long,
            ProfileArg::ClusterShort => Profile::ClusterShort,
            ProfileArg::Cluster => Profile::Cluster,
            ProfileArg::RoutesShort => Profile::RoutesShort,
            ProfileArg::Routes => Profile::Routes,
            ProfileArg::Soak => Profile::Soak(args.duration),
        },
        seed: args.seed.unwrap_or_else(rand::random),
        log_dir: bin_dir.join("chaos-logs"),
        bin_dir,
        repo: args.repo,
        partitions: args.partitions,
    };
    match chaos::run(options).await {
        Ok(report) if report.discrepancies.is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!("chaos: {} discrepancies: {:#?}", report.discrepancies.len(), report.discrepancies);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("chaos: the run could not complete: {error:#}");
            ExitCode::from(2)
        }
    }
}
