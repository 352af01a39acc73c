use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use gateway::{
    app::{self, AppState},
    backpressure::{self, Backpressure, Throttle},
    config::Config,
    health::{self, Readiness},
    keys::Keys,
    lag::LagReader,
    metrics::Metrics,
    origin::AllowedOrigins,
    producer,
    rate_limit::RateLimiter,
    serve,
    tasks::Background,
};
use sluice_routes::RoutesFile;
use tokio::sync::Semaphore;

/// mimalloc: the request and batch paths allocate and free many small objects; glibc's
/// malloc took about a fifth of the CPU in profiles (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    sluice_core::telemetry::init(&config.log);
    if let Err(message) = config.validate() {
        tracing::error!(%message, "invalid configuration");
        return ExitCode::from(2);
    }
    let loaded = config.load_routes().and_then(|routes| {
        let cors = config.cors()?;
        let keys = config.load_keys(cors.as_ref())?;
        Ok(Loaded { routes, keys, cors })
    });
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(message) => {
            tracing::error!(%message, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    match run(config, loaded).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gateway stopped");
            ExitCode::FAILURE
        }
    }
}

/// What the configuration names and the gateway reads before it starts.
struct Loaded {
    routes: Option<RoutesFile>,
    keys: Keys,
    cors: Option<AllowedOrigins>,
}

async fn run(config: Config, loaded: Loaded) -> anyhow::Result<()> {
    let Loaded { routes, keys, cors } = loaded;
    let key_names: Vec<&str> = keys.entries().iter().map(|k| k.name.as_str()).collect();
    let cors_origins = match &cors {
        None => "none".to_owned(),
        Some(AllowedOrigins::Any) => "*".to_owned(),
        Some(AllowedOrigins::List(list)) => list.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(","),
    };
    tracing::info!(listen = %config.listen, brokers = %config.kafka.brokers, topic = %config.kafka.topic,
        api_keys = keys.len(), ?key_names, %cors_origins, kafka_options = ?config.kafka.kafka_options,
        routes = routes.as_ref().map_or(0, |r| r.routes.len()), "gateway starting");
    let producer =
        producer::build(&config.kafka, config.produce_timeout, config.max_inflight_bytes, config.max_event_bytes)?;
    let metrics = Metrics::new();
    let readiness = Readiness::new_unchecked();
    let backpressure = Backpressure::new(config.lag_stale_after);
    let lag_reader = LagReader::new(
        &config.kafka,
        &config.sinker_group,
        config.lag_interval.max(std::time::Duration::from_secs(1)) * 2,
    )?;
    let mut background = Background::default();
    background.spawn(
        "lag watcher",
        backpressure::watch(
            lag_reader,
            Throttle::new(config.lag_throttle, config.lag_resume()),
            backpressure.clone(),
            metrics.clone(),
            config.lag_interval,
        ),
    );
    let state = AppState {
        config: Arc::new(config.clone()),
        producer: producer.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        inflight: Arc::new(Semaphore::new(config.max_inflight_bytes.min(Semaphore::MAX_PERMITS))),
        backpressure,
        keys: Arc::new(keys),
        rate_limiter: Arc::new(RateLimiter::default()),
        cors: cors.map(Arc::new),
        routes: routes.map(Arc::new),
    };
    background.spawn(
        "readiness watcher",
        health::watch(producer.clone(), config.kafka.topic.clone(), readiness, metrics, Duration::from_secs(1)),
    );

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let limits = serve::Limits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        shutdown_grace: config.body_read_timeout + config.request_timeout,
    };
    // A background task that ends takes the process down with it (see `tasks`): never half
    // alive. It shuts the server down like a signal does, then the process exits non-zero.
    let mut failure = None;
    let stop = async {
        tokio::select! {
            signal = sluice_core::shutdown::signal() => {
                tracing::info!(signal, "shutting down: finishing requests in flight");
            }
            error = background.first_exit() => {
                tracing::error!(error = format!("{error:#}"), "shutting down: a background task stopped");
                failure = Some(error);
            }
        }
    };
    serve::serve(listener, app::router(state), limits, stop).await;
    background.abort_all();
    let flush = tokio::task::spawn_blocking(move || producer::flush(&producer, Duration::from_secs(10)));
    flush.await?;
    if let Some(error) = failure {
        return Err(error);
    }
    tracing::info!("gateway stopped cleanly");
    Ok(())
}
