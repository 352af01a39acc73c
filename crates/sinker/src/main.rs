use std::process::ExitCode;

use clap::Parser;
use sinker::config::{Command, Config, RoutesCommand};
use tokio_util::sync::CancellationToken;

// The sinker keeps glibc's allocator: mimalloc made no measurable difference to its drain rate
// and raised its peak RSS past the 250 MB budget with 1M events of lag (BENCHMARKS.md).
#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    sluice_core::telemetry::init(&config.log);
    if let Err(message) = config.validate() {
        tracing::error!(%message, "invalid configuration");
        return ExitCode::from(2);
    }
    let result = match config.command {
        Some(Command::Migrate) => migrate(&config).await,
        Some(Command::Routes { command: RoutesCommand::Check }) => {
            return match sinker::check::run(&config).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "routes check failed");
                    ExitCode::FAILURE
                }
            };
        }
        None => {
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                let signal = sluice_core::shutdown::signal().await;
                tracing::info!(signal, "shutting down: writing what is buffered, then leaving the group");
                trigger.cancel();
            });
            sinker::run::run(config, shutdown).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "sinker stopped");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = sinker::run::store(config)?;
    store.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}
