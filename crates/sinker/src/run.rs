//! Wiring: database, dead-letter topic, metrics server, consumer, poll thread, dispatcher.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use rdkafka::consumer::Consumer;
use sluice_core::{kafka::Guarantee, secret::redact_url};
use sluice_routes::{ResolvedRoutes, RoutesFile};
use tokio::{runtime::Handle, sync::mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    adaptive::{SharedSizer, SizerConfig},
    adopt,
    backoff::Backoff,
    batch::BatchPolicy,
    catalog,
    commits::CommitLog,
    config::Config,
    consumer::{poll_loop, SinkConsumer, SinkContext},
    dlq::DeadLetters,
    flow::{prefetch_kbytes, Flow},
    http::{self, Health},
    metrics::Metrics,
    partition::Shared,
    sink::Dispatcher,
    store::{SessionSettings, Store},
    stuck::StuckPartitions,
};

pub fn store(config: &Config) -> anyhow::Result<Store> {
    Store::connect_lazy(
        &config.database_url,
        SessionSettings {
            pool_size: config.db_pool_size,
            lock_timeout: config.db_lock_timeout,
            statement_timeout: config.db_statement_timeout,
        },
    )
    .with_context(|| format!("invalid --database-url {}", redact_url(&config.database_url)))
}

/// Why the database could not be prepared at start (each is retried).
#[derive(Debug, thiserror::Error)]
enum PrepareError {
    #[error("could not connect: {0}")]
    Connect(sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("adopting the offsets stored before groups were recorded: {0}")]
    Adopt(sqlx::Error),
}

/// Applies the migrations, then adopts the offsets stored before `sink_offsets` recorded the
/// group ([`adopt`]). Returns the rows adopted. On one connection: a second one opened at start
/// would stay in the pool, idle, for nothing.
async fn prepare_database(store: &Store, group: &str, topic: &str) -> Result<u64, PrepareError> {
    let mut conn = store.pool().acquire().await.map_err(PrepareError::Connect)?;
    crate::store::MIGRATOR.run(&mut *conn).await?;
    adopt::adopt_unrecorded_offsets(&mut *conn, group, topic).await.map_err(PrepareError::Adopt)
}

/// Retries `op` with backoff until it succeeds or shutdown is requested.
async fn until_ok<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "{what} failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// Resolves the routes file against the catalog; retries while the database is unreachable,
/// refuses to start (listing every problem) when the file and the tables disagree.
async fn resolve_routes(
    store: &Store,
    file: RoutesFile,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<ResolvedRoutes>> {
    let resolving = until_ok("reading the routes' tables from the catalog", shutdown, || {
        catalog::resolve(store.pool(), file.clone())
    });
    let Some(resolved) = resolving.await else {
        return Ok(None);
    };
    match resolved {
        Ok(routes) => Ok(Some(routes)),
        Err(problems) => Err(anyhow::anyhow!(
            "the routes file does not match the database ({} problem{}); fix the tables or the routes file, \
             `sinker routes check --routes FILE` lists the same problems:\n{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
        )),
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(config = ?config, "sinker starting");
    // A bad routes file fails fast, before any connection.
    let routes_file = config.routes.as_ref().map(RoutesFile::load).transpose()?;
    let store = store(&config)?;
    // Before the consumer subscribes: the first assignment reads the group's offsets.
    let (group, topic) = (config.group.as_str(), config.kafka.topic.as_str());
    let preparing = until_ok("preparing the database", &shutdown, || prepare_database(&store, group, topic));
    let Some(adopted) = preparing.await else {
        return Ok(());
    };
    if adopted > 0 {
        tracing::info!(group, topic, partitions = adopted, "adopted the stored offsets written before sink_offsets recorded the consumer group; this group resumes from them");
    }
    let metrics = Metrics::new();
    let routes = match routes_file {
        None => None,
        Some(file) => {
            let Some(routes) = resolve_routes(&store, file, &shutdown).await? else {
                return Ok(());
            };
            metrics.init_routes(&routes);
            let names: Vec<&str> = routes.file.routes.iter().map(|r| r.name.as_str()).collect();
            tracing::info!(routes = ?names, "writing through the routes file");
            Some(Arc::new(routes))
        }
    };
    let sizer = SharedSizer::new(
        SizerConfig {
            min_rows: config.batch_min_size(),
            max_rows: config.batch_size,
            target_latency: config.batch_target_latency,
            grow_step: config.batch_grow_step(),
        },
        metrics.batch_target_rows.clone(),
    );
    let stuck = Arc::new(StuckPartitions::new(metrics.partitions_stuck.clone()));
    let health = Arc::new(Health::new(stuck.clone()));
    let mut server = tokio::spawn(http::serve(
        config.metrics_listen,
        http::router(metrics.clone(), health.clone()),
        shutdown.clone(),
    ));

    let dlq = DeadLetters::new(&config.kafka, config.dlq_topic())?;
    if until_ok("creating the dead-letter topic", &shutdown, || dlq.ensure_topic(&config.kafka)).await.is_none() {
        return Ok(());
    }
    let mut db_watcher = tokio::spawn(watch_database(store.clone(), health.clone(), shutdown.clone()));

    let (events_tx, events_rx) = mpsc::channel(4096);
    let context = SinkContext {
        group: config.group.clone(),
        topic: config.kafka.topic.clone(),
        events: events_tx,
        store: store.clone(),
        runtime: Handle::current(),
        metrics: metrics.clone(),
        watermarks: Default::default(),
        revoke_wait: config.drain_timeout + crate::config::REVOKE_MARGIN,
        closing: AtomicBool::new(false),
        flow: Flow::new(
            config.kafka.topic.clone(),
            config.max_buffered_bytes,
            metrics.buffered_bytes.clone(),
            metrics.partitions_paused.clone(),
        ),
        commits: CommitLog::default(),
    };
    let prefetch = prefetch_kbytes(config.max_buffered_bytes).to_string();
    let watermarks = context.watermarks.clone();
    let consumer: SinkConsumer = config
        .kafka
        .client_config(
            &[
                ("client.id", "sluice-sinker"),
                ("partition.assignment.strategy", "cooperative-sticky"),
                // A dead sinker's partitions move after 10 s (librdkafka's default is 45 s).
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "2000"),
                ("statistics.interval.ms", "1000"),
                // librdkafka's prefetch: for a subscribed consumer this bounds its one queue, whatever
                // the partition count (fetch.max.bytes follows it); --max-buffered-bytes bounds the rest.
                ("queued.max.messages.kbytes", &prefetch),
            ],
            &consumer_guarantees(&config.group),
        )?
        .create_with_context(context)
        .context("could not create the kafka consumer; check --brokers and --kafka-option")?;
    consumer.subscribe(&[&config.kafka.topic]).context("could not subscribe to the topic")?;
    health.consuming.store(true, Ordering::SeqCst);
    let consumer = Arc::new(consumer);
    let stop = Arc::new(AtomicBool::new(false));
    let (seeks, seek_requests) = std::sync::mpsc::channel();
    let poller = {
        let (consumer, stop) = (consumer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || poll_loop(consumer, stop, &seek_requests))?
    };

    let shared = Arc::new(Shared {
        group: config.group.clone(),
        topic: config.kafka.topic.clone(),
        store,
        dlq,
        consumer: consumer.clone(),
        metrics,
        policy: BatchPolicy {
            max_rows: config.batch_size,
            max_bytes: config.batch_bytes,
            max_age: config.batch_timeout,
        },
        sizer,
        insert_method: config.insert_method,
        routes,
        max_event_bytes: config.max_event_bytes,
        read_ahead: config.read_ahead,
        seeks,
        stuck,
    });
    let dispatcher = Dispatcher::new(shared, watermarks, config.max_buffered_records, config.drain_timeout);
    tracing::info!(topic = %config.kafka.topic, group = %config.group, "consuming");
    // No task dies quietly: if the metrics server or the database watcher ends before
    // shutdown, the dispatcher drains (as on SIGTERM) and the process exits non-zero.
    let dispatching = dispatcher.run(events_rx, shutdown.clone());
    tokio::pin!(dispatching);
    let mut server_result = None;
    // Ok: the dispatcher ended first, with its outcome; Err: a background task ended first.
    let first = tokio::select! {
        outcome = &mut dispatching => Ok(outcome),
        served = &mut server, if !shutdown.is_cancelled() => {
            server_result = Some(());
            Err(match served {
                Ok(Ok(())) => anyhow::anyhow!("the metrics server stopped"),
                Ok(Err(error)) => anyhow::Error::new(error).context(format!("the metrics server on {} failed", config.metrics_listen)),
                Err(error) => anyhow::anyhow!("the metrics server task failed: {error}"),
            })
        }
        watched = &mut db_watcher, if !shutdown.is_cancelled() => {
            Err(anyhow::anyhow!("the database watcher stopped ({})", watched.err().map_or("returned".to_owned(), |e| e.to_string())))
        }
    };
    let mut failure = match first {
        Ok(outcome) => outcome.err(),
        // Stopped by the shutdown itself (the select saw it before the dispatcher ended).
        Err(_) if shutdown.is_cancelled() => dispatching.await.err(),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "shutting down: a background task stopped");
            shutdown.cancel();
            dispatching.await.err().or(Some(error))
        }
    };

    // Leave the group from the poll thread, which also closes the consumer.
    health.consuming.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    drop(consumer);
    tokio::task::spawn_blocking(move || poller.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the poll thread panicked"))?;
    shutdown.cancel();
    if server_result.is_none() {
        if let Err(error) = server.await.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from)) {
            failure.get_or_insert(error);
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    tracing::info!("sinker stopped cleanly");
    Ok(())
}

/// The consumer settings exactly-once rests on; `--kafka-option` cannot change them.
pub fn consumer_guarantees(group: &str) -> Vec<Guarantee> {
    vec![
        Guarantee::new("group.id", group, "the group is the sinker's identity; set it with --group"),
        // We manage offsets ourselves: the database holds them, Kafka gets a copy after.
        Guarantee::new("enable.auto.commit", "false", "kafka offsets may only be committed after the database commit"),
        Guarantee::new(
            "enable.auto.offset.store",
            "false",
            "kafka offsets may only be committed after the database commit",
        ),
        Guarantee::new("isolation.level", "read_committed", "records of aborted transactions must never become rows"),
        Guarantee::new(
            "auto.offset.reset",
            "earliest",
            "a partition with no stored offset must be read from its first record, or events are skipped",
        ),
    ]
}

async fn watch_database(store: Store, health: Arc<Health>, shutdown: CancellationToken) {
    let mut last = None;
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(2), store.ping()).await.is_ok_and(|r| r.is_ok());
        health.database_ok.store(ok, Ordering::SeqCst);
        if last != Some(ok) {
            if ok {
                tracing::info!("database reachable");
            } else {
                tracing::warn!("database unreachable; writes are retried and partitions pause as buffers fill");
            }
            last = Some(ok);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
