//! loadgen: posts events to `POST /v1/events` (sluice's gateway or anything speaking the same
//! API) in an open or a closed loop, and reports throughput, status mix and latency.

mod client;
mod closed_loop;
mod collector;
mod config;
mod open_loop;
mod payload;
mod report;
mod run;

use std::{process::ExitCode, time::SystemTime};

use anyhow::Context as _;
use clap::Parser;
use tokio::time::Instant;

use crate::{
    client::Target,
    config::{Config, Mode},
    payload::{Generator, PayloadSpec},
    report::{Report, Timing},
    run::{Plan, Stop},
};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(message) = config.validate() {
        eprintln!("loadgen: invalid configuration: {message}");
        return ExitCode::from(2);
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let seed = config.seed.unwrap_or_else(rand::random);
    let target = Target::new(config.url.clone(), &config.headers, config.timeout)?;
    // Open the output files first: a bad path should fail before the load, not after.
    let ids_out = match &config.ids_out {
        Some(path) => Some(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?),
        None => None,
    };
    if let Some(path) = &config.json_out {
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    let generator = Generator::new(PayloadSpec::from_config(&config), seed);
    let headers: Vec<String> = config.headers.iter().map(|header| header.name.to_string()).collect();
    eprintln!(
        "loadgen: {} mode against {} for {} (warmup {}), seed {seed}{}",
        config.mode.as_str(),
        config.url,
        humantime::format_duration(config.duration),
        humantime::format_duration(config.warmup),
        if headers.is_empty() { String::new() } else { format!(", headers {}", headers.join(", ")) },
    );

    if cfg!(debug_assertions) {
        eprintln!(
            "loadgen: this is a debug build, which falls behind at a few hundred requests/s; \
             benchmark with `cargo build --release -p loadgen`"
        );
    }

    let (tx, collector) = collector::spawn(ids_out);
    let stop = Stop::on_signals();
    let started_at = SystemTime::now();
    let start = Instant::now();
    let warmup_end = start + config.warmup;
    let plan = Plan { start, warmup_end, end: warmup_end + config.duration, requests: config.requests };
    let (send_end, stopped_by) = match config.mode {
        Mode::Open => {
            let rate = config.rate.context("open mode needs --rate")?;
            open_loop::run(plan, rate, config.max_in_flight, target, generator, tx, stop).await
        }
        Mode::Closed => {
            let workers = config.concurrency.context("closed mode needs --concurrency")?;
            closed_loop::run(plan, workers, target, generator, tx, stop).await
        }
    };
    // The collector ends when the last request in flight has reported.
    let stats = collector.await.context("the collector failed")??;
    let measured_end = stats.last_finished.map_or(send_end, |last| last.max(send_end));
    let timing = Timing {
        started_at,
        duration_s: measured_end.saturating_duration_since(warmup_end).as_secs_f64(),
        send_duration_s: send_end.saturating_duration_since(warmup_end).as_secs_f64(),
        stopped_by,
    };
    let report = Report::new(&config, seed, &stats, timing);
    eprint!("{}", report.summary());
    if let Some(path) = &config.json_out {
        report.write_json(path)?;
        eprintln!("  report written to {}", path.display());
    }
    if let Some(path) = &config.ids_out {
        eprintln!("  {} ids written to {}", stats.ids_written, path.display());
    }
    Ok(())
}
