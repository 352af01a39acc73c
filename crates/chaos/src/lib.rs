//! The chaos harness: the real gateway and sinkers against a private Kafka + PostgreSQL, a load
//! of client-chosen ids, faults injected on a seeded schedule, then exact accounting:
//!
//! - every id that got a 202 is in `events` exactly once;
//! - no id that only ever got a 4xx is there, and no row has an id nobody sent;
//! - ids that got 503 or no answer (and were retried) are there at most once;
//! - every poison record produced straight to the topic is in the dead-letter topic;
//! - `sink_offsets` and Kafka's committed offsets equal the high watermarks;
//! - no process exited except those the harness killed or stopped.
//!
//! The routes profiles (`routes`, `routes-short`; `routes.rs`) run the gateway and the sinkers
//! with `--routes`: page views inserted into `chaos_views`, orders upserted with a version into
//! and deleted from `chaos_orders`, everything into `events` too; the books extend to both
//! tables (`routes_audit`) and to the dead-letter reasons `mapping_failed` and `no_route`.
//!
//! On the three-broker cluster (profiles `cluster`, `cluster-short`; `cluster_faults`) also: no
//! 202 while two brokers are down, the gateway accepting again by itself, every leader kill
//! survived, woken sinkers rejoining. The soak (`soak`) adds memory, catch-up and a final 429.

pub mod audit;
pub mod cluster;
pub mod cluster_faults;
pub mod load;
pub mod observe;
pub mod orders;
pub mod progress;
pub mod proxy;
pub mod routes;
mod routes_audit;
mod routes_load;
pub mod schedule;
pub mod soak;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use sqlx::{postgres::PgPoolOptions, Connection};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    cluster::{free_port, Proc, Stack},
    cluster_faults::Tally,
    load::{Ledger, Load},
    progress::ProgressMonitor,
    proxy::Proxy,
    schedule::{Fault, Profile},
};

pub struct Options {
    pub profile: Profile,
    pub seed: u64,
    /// The repository (for deploy/local/stack.sh).
    pub repo: PathBuf,
    /// Where the gateway and sinker binaries are.
    pub bin_dir: PathBuf,
    /// Where process logs go.
    pub log_dir: PathBuf,
    pub partitions: i32,
}

/// What happened and what did not add up.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub discrepancies: Vec<String>,
}

impl Report {
    pub(crate) fn say(&mut self, line: String) {
        eprintln!("chaos: {line}");
        self.lines.push(line);
    }

    pub(crate) fn check(&mut self, ok: bool, what: String) {
        if ok {
            self.say(format!("ok: {what}"));
        } else {
            self.say(format!("DISCREPANCY: {what}"));
            self.discrepancies.push(what);
        }
    }
}

/// The soak's gateway refuses writes with 429 past this lag.
const SOAK_LAG_THROTTLE: &str = "3000";

pub(crate) struct System<'a> {
    opts: &'a Options,
    pub(crate) stack: &'a Stack,
    pub(crate) topic: String,
    group: String,
    database_url: String,
    /// The test database without the proxy (what the harness itself uses).
    pub(crate) admin_database_url: String,
    /// What the sinkers are given: on the cluster, through the proxies.
    sinker_brokers: String,
    pub(crate) gateway_port: u16,
    pub(crate) gateway: Option<Proc>,
    pub(crate) sinkers: Vec<Proc>,
    /// Processes that were stopped or killed, kept to check how they ended.
    retired: Vec<Proc>,
    spawned: usize,
    /// Between the sinkers and PostgreSQL (cluster profiles).
    pub(crate) pg_proxy: Option<Proxy>,
    /// Between the sinkers and each broker (cluster profiles).
    pub(crate) kafka_proxies: Vec<Proxy>,
    /// The routes file the gateway and the sinkers load (routes profiles).
    routes_file: Option<PathBuf>,
}

impl System<'_> {
    pub(crate) fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.gateway_port)
    }

    fn spawn_gateway(&mut self) -> anyhow::Result<Proc> {
        self.spawned += 1;
        let args = [
            "--listen",
            &format!("127.0.0.1:{}", self.gateway_port),
            "--brokers",
            &self.stack.brokers(),
            "--topic",
            &self.topic,
            "--sinker-group",
            &self.group,
            "--lag-throttle",
            // the soak checks at its end that the backpressure loop still answers 429
            if matches!(self.opts.profile, Profile::Soak(_)) { SOAK_LAG_THROTTLE } else { "0" },
            "--request-timeout",
            "8s",
            "--produce-timeout",
            "4s",
        ];
        Proc::spawn(
            &self.opts.bin_dir,
            &self.opts.log_dir,
            &format!("gateway-{}", self.spawned),
            "gateway",
            &self.with_routes(owned(&args)),
        )
    }

    pub(crate) fn spawn_sinker(&mut self) -> anyhow::Result<()> {
        self.spawned += 1;
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let args = [
            "--brokers",
            &self.sinker_brokers,
            "--topic",
            &self.topic,
            "--group",
            &self.group,
            "--database-url",
            &self.database_url,
            "--metrics-listen",
            &metrics,
            "--batch-size",
            "100",
            "--batch-timeout",
            "100ms",
            "--drain-timeout",
            "5s",
            "--db-lock-timeout",
            "1s",
            "--kafka-option",
            "session.timeout.ms=6000",
            "--kafka-option",
            "heartbeat.interval.ms=1000",
        ];
        let mut proc = Proc::spawn(
            &self.opts.bin_dir,
            &self.opts.log_dir,
            &format!("sinker-{}", self.spawned),
            "sinker",
            &self.with_routes(owned(&args)),
        )?;
        proc.metrics_url = Some(format!("http://{metrics}/metrics"));
        self.sinkers.push(proc);
        Ok(())
    }
}

impl System<'_> {
    /// `args` with `--routes FILE` in the routes profiles.
    fn with_routes(&self, mut args: Vec<String>) -> Vec<String> {
        if let Some(file) = &self.routes_file {
            args.push("--routes".to_owned());
            args.push(file.display().to_string());
        }
        args
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs the whole scenario. `Ok` carries the report; its `discrepancies` must be empty.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let mut report = Report::default();
    report.say(format!("seed {} profile {:?} (replay with --seed {})", opts.seed, opts.profile, opts.seed));
    std::fs::create_dir_all(&opts.log_dir)?;
    let state_dir = std::env::temp_dir().join(format!("sluice-chaos-{}", Uuid::new_v4().simple()));
    let cluster = opts.profile.is_cluster();
    let soak = matches!(opts.profile, Profile::Soak(_));
    let stack = if cluster { Stack::start_cluster(&opts.repo, state_dir) } else { Stack::start(&opts.repo, state_dir) }
        .context("start the private stack")?;
    let name = format!("chaos_{}", &Uuid::new_v4().simple().to_string()[..10]);
    let topic = format!("events_{name}");

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", stack.brokers()).create()?;
    let new_topic = if cluster {
        NewTopic::new(&topic, opts.partitions, TopicReplication::Fixed(3)).set("min.insync.replicas", "2")
    } else {
        NewTopic::new(&topic, opts.partitions, TopicReplication::Fixed(1))
    };
    for r in admin.create_topics([&new_topic], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e:?}"))?;
    }
    let mut admin_db = sqlx::PgConnection::connect(&stack.admin_url()).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin_db).await?;
    let database_url = format!("postgres://sluice:sluice@127.0.0.1:{}/{name}", stack.pg_port);
    // The routes profiles: the user tables exist before the first sinker resolves its routes.
    let routes_file = if opts.profile.is_routes() {
        let mut db = sqlx::PgConnection::connect(&database_url).await?;
        sqlx::raw_sql(routes::DDL).execute(&mut db).await.context("create the routes profile's tables")?;
        let path = opts.log_dir.join(format!("{name}.routes.toml"));
        std::fs::write(&path, routes::ROUTES_TOML).with_context(|| format!("write {}", path.display()))?;
        report.say(format!("routes file {}", path.display()));
        Some(path)
    } else {
        None
    };
    // On the cluster the sinkers reach PostgreSQL and the brokers through proxies the harness
    // controls (the brokers advertise the proxies on their PROXIED listener).
    let (pg_proxy, kafka_proxies, sinker_database_url, sinker_brokers) = if cluster {
        let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let pg = Proxy::start(local(0), local(stack.pg_port)).await?;
        let mut kafka = Vec::new();
        for n in 1..=3 {
            let (listener, advertised) = stack.proxied_ports(n).context("the cluster has proxied listeners")?;
            kafka.push(Proxy::start(local(advertised), local(listener)).await?);
        }
        // In clear text, so the proxy can see a COMMIT go by (CutCommit).
        let url = format!("postgres://sluice:sluice@127.0.0.1:{}/{name}?sslmode=disable", pg.listen.port());
        let brokers = kafka.iter().map(|p| p.listen.to_string()).collect::<Vec<_>>().join(",");
        (Some(pg), kafka, url, brokers)
    } else {
        (None, Vec::new(), database_url.clone(), stack.brokers())
    };

    let mut sys = System {
        opts: &opts,
        stack: &stack,
        topic: topic.clone(),
        group: format!("sinker_{name}"),
        database_url: sinker_database_url,
        admin_database_url: database_url.clone(),
        sinker_brokers,
        gateway_port: free_port()?,
        gateway: None,
        sinkers: Vec::new(),
        retired: Vec::new(),
        spawned: 0,
        pg_proxy,
        kafka_proxies,
        routes_file,
    };
    sys.gateway = Some(sys.spawn_gateway()?);
    sys.spawn_sinker()?;
    wait_http(&format!("http://127.0.0.1:{}/readyz", sys.gateway_port), Duration::from_secs(60)).await?;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load = Load {
        url: format!("http://127.0.0.1:{}/v1/events", sys.gateway_port),
        // the soak runs well below capacity
        workers: if soak { 2 } else { 6 },
        pace: Duration::from_millis(if soak { 150 } else { 40 }),
        ledger: ledger.clone(),
        routes: opts.profile.is_routes(),
    };
    let start = Instant::now();
    let load_end = start + opts.profile.load_duration();
    let settle_by = load_end + Duration::from_secs(60);
    let load_task = {
        let seed = opts.seed;
        tokio::spawn(async move { load.run(seed, load_end, settle_by).await })
    };

    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5eed);
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", stack.brokers()).set("message.timeout.ms", "30000").create()?;
    // Poison markers, with the dead-letter reason they must get when it is known.
    let mut markers: HashMap<String, Option<&'static str>> = HashMap::new();
    let mut tally = Tally::default();
    let monitor_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{database_url}?application_name=chaos-harness"))
        .await?;
    let progress =
        ProgressMonitor::start(stack.brokers(), sys.group.clone(), topic.clone(), monitor_pool.clone(), start);
    let memory = soak.then(|| {
        soak::MemorySampler::start(
            sys.gateway.iter().chain(sys.sinkers.iter()).map(|p| (p.name.clone(), p.pid())).collect(),
        )
    });
    let mut catch_up: Vec<(String, Option<Duration>)> = Vec::new();
    for (at, fault) in schedule::schedule(opts.profile, opts.seed) {
        tokio::time::sleep_until(start + at).await;
        let line = if is_cluster_fault(&fault) {
            cluster_faults::inject(&mut sys, &fault, &mut rng, &ledger, &mut tally).await.unwrap_or_else(|e| {
                tally.problems.push(format!("{fault:?} failed: {e:#}"));
                format!("fault failed: {e:#}")
            })
        } else {
            inject(&mut sys, &fault, &mut rng, &producer, &mut markers).await
        };
        report.say(format!("{:>6.1}s {fault:?}: {line}", start.elapsed().as_secs_f64()));
        if soak {
            let took =
                soak::caught_up(&stack.brokers(), &sys.group, &topic, &monitor_pool, Duration::from_secs(120)).await;
            report.say(format!("        sinkers caught up after {took:.1?}"));
            catch_up.push((format!("{fault:?}"), took));
        }
    }
    load_task.await?;
    let throttled = if soak { Some(ask_for_429(&sys, &ledger).await) } else { None };
    report.say(format!("load done after {:.1}s", start.elapsed().as_secs_f64()));

    // Let the sinkers drain, then check the books.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{database_url}?application_name=chaos-harness"))
        .await?;
    let drained = wait_drained(&stack.brokers(), &sys.group, &topic, &pool, Duration::from_secs(90)).await;
    report.check(
        drained.is_ok(),
        format!(
            "sink_offsets and kafka commits reach the high watermarks ({})",
            drained.as_ref().err().map_or("in time".into(), |e| e.to_string())
        ),
    );

    // The load is over: the books are final.
    let ledger = std::mem::take(&mut *ledger.lock().map_err(|_| anyhow::anyhow!("ledger poisoned"))?);
    let (rows, stored) = audit::stored_ids(&pool).await?;
    report.say(format!(
        "requests {} (retries {}), statuses {:?}; ids accepted {}, refused {}, uncertain {}, duplicate resends {}; rows {}",
        ledger.requests, ledger.retries, sorted(&ledger.statuses), ledger.accepted.len(), ledger.refused.len(), ledger.uncertain.len(), ledger.duplicate_resends, rows
    ));
    let missing = ledger.accepted.difference(&stored).count();
    report
        .check(missing == 0, format!("every id answered 202 is a row: {missing} missing of {}", ledger.accepted.len()));
    report.check(
        rows == stored.len() as i64,
        format!("no id is stored twice: {rows} rows, {} distinct ids", stored.len()),
    );
    let refused_present = ledger.refused.intersection(&stored).count();
    report.check(refused_present == 0, format!("no id that only got a 4xx is a row: {refused_present} found"));
    let uncertain_present = ledger.uncertain.intersection(&stored).count();
    report.say(format!(
        "ids never confirmed: {} ({} of them were written anyway, at most once each)",
        ledger.uncertain.len(),
        uncertain_present
    ));
    let strangers = stored.iter().filter(|id| !ledger.accepted.contains(id) && !ledger.uncertain.contains(id)).count();
    report.check(strangers == 0, format!("no row has an id nobody sent: {strangers} found"));
    let odd = ledger.statuses.get("bad_request_accepted").copied().unwrap_or(0)
        + ledger.statuses.get("good_request_refused").copied().unwrap_or(0);
    report.check(odd == 0, format!("bad requests refused and good ones never refused with 4xx: {odd} exceptions"));

    let marker_set: HashSet<String> = markers.keys().cloned().collect();
    let found = audit::dead_letter_markers(&stack.brokers(), &format!("{topic}.dlq"), &marker_set)?;
    report.check(
        found.len() == markers.len(),
        format!("every poison record is a dead letter: {} of {}", found.len(), markers.len()),
    );
    if opts.profile.is_routes() {
        routes_audit::check(&mut report, &pool, &ledger, &markers, &found).await?;
    }

    for p in sys.sinkers.iter_mut().chain(sys.gateway.iter_mut()).chain(sys.retired.iter_mut()) {
        if !p.stopped_by_harness {
            let exit = p.exited();
            report.check(
                exit.is_none(),
                format!("{} still running ({})", p.name, exit.unwrap_or_else(|| "alive".into())),
            );
        }
    }
    let stopped_cleanly = sys.retired.iter().filter(|p| p.name.ends_with(":clean")).count();
    report.say(format!("{} sinkers stopped with SIGTERM exited 0", stopped_cleanly));
    let stall = progress.longest();
    report.say(format!(
        "longest time a partition went without progress: {:.1}s (partition {}, until {:.0}s into the run; sampled every second, an upper bound)",
        stall.longest.as_secs_f64(),
        stall.partition,
        stall.ended_at.as_secs_f64()
    ));
    if cluster {
        cluster_books(&mut report, &tally, &ledger);
    } else if soak {
        report.say(format!(
            "sinker database sessions terminated: {}, {} of them during COMMIT",
            tally.backends_terminated, tally.commits_cut
        ));
        for problem in &tally.problems {
            report.check(false, problem.clone());
        }
    }
    if let Some(memory) = &memory {
        for line in memory.summary() {
            report.say(line);
        }
        for (fault, took) in &catch_up {
            report.check(took.is_some(), format!("lag back to zero within 120 s after {fault}: {took:.1?}"));
        }
    }
    if let Some(throttled) = throttled {
        report.check(
            throttled.is_some(),
            format!("the backpressure loop still answers 429 at the end of the soak: after {throttled:.1?}"),
        );
    }
    report.say(format!("{} discrepancies", report.discrepancies.len()));
    Ok(report)
}

/// With the sinkers stopped, posts batches until the lag passes the throttle and the gateway
/// answers 429 (bounded); then lets the sinkers go on. Returns how long it took.
async fn ask_for_429(sys: &System<'_>, ledger: &Arc<Mutex<Ledger>>) -> Option<Duration> {
    for s in &sys.sinkers {
        s.signal("STOP").ok();
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().ok();
    let start = Instant::now();
    let mut took = None;
    if let Some(client) = client {
        while start.elapsed() < Duration::from_secs(90) {
            if load::probe_batch(&client, &sys.ingest_url(), ledger, 200).await == "429" {
                took = Some(start.elapsed());
                break;
            }
        }
    }
    for s in &sys.sinkers {
        s.signal("CONT").ok();
    }
    took
}

/// Faults injected by `cluster_faults` (all but KillDbConnections need the cluster).
fn is_cluster_fault(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::KillLeader { .. }
            | Fault::TwoBrokersDown { .. }
            | Fault::PauseSinker { .. }
            | Fault::PauseGateway { .. }
            | Fault::KillDbConnections { .. }
            | Fault::CutCommit { .. }
            | Fault::Network { .. }
    )
}

/// The cluster faults' figures and checks.
fn cluster_books(report: &mut Report, tally: &Tally, ledger: &Ledger) {
    report.say(format!(
        "leader failovers survived: {} of {} (longest election {:.1?})",
        tally.leader_failovers_survived, tally.leader_failovers, tally.longest_election
    ));
    let accepted_below = ledger.below_min_isr_statuses.get("202").copied().unwrap_or(0);
    report.check(
        accepted_below == 0,
        format!("no 202 while two brokers were down: answers {:?}", sorted(&ledger.below_min_isr_statuses)),
    );
    report.say(format!(
        "two brokers down: the gateway recovered by itself {} of {} times (longest {:.1?})",
        tally.below_min_isr_recoveries, tally.below_min_isr_runs, tally.longest_recovery
    ));
    report.say(format!(
        "sinkers stopped past their session: {}; on waking they revoked {} partition sets as lost, and {} stale batches were refused by the fence (zombie writes refused); gateway paused {} times",
        tally.sinker_pauses, tally.lost_revocations, tally.zombie_writes_refused, tally.gateway_pauses
    ));
    report.say(format!(
        "commits with unknown outcome: {} COMMITs whose answer the proxy cut, {} sessions terminated during COMMIT (of {} sinker sessions terminated)",
        tally.commits_answer_cut, tally.commits_cut, tally.backends_terminated
    ));
    report.say(format!(
        "connections cut by the proxies after a stall: postgres {}, kafka {}",
        tally.pg_connections_cut, tally.kafka_connections_cut
    ));
    for problem in &tally.problems {
        report.check(false, problem.clone());
    }
}

pub(crate) fn sorted(map: &std::collections::HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort();
    v
}

async fn inject(
    sys: &mut System<'_>,
    fault: &Fault,
    rng: &mut StdRng,
    producer: &FutureProducer,
    markers: &mut HashMap<String, Option<&'static str>>,
) -> String {
    let result: anyhow::Result<String> = async {
        match fault {
            Fault::KillSinker => {
                if sys.sinkers.is_empty() {
                    sys.spawn_sinker()?;
                }
                let i = rng.random_range(0..sys.sinkers.len());
                let mut victim = sys.sinkers.remove(i);
                victim.kill9();
                let name = victim.name.clone();
                sys.retired.push(victim);
                sys.spawn_sinker()?;
                Ok(format!("killed {name}, started a replacement"))
            }
            Fault::ScaleSinkers(n) => {
                let before = sys.sinkers.len();
                while sys.sinkers.len() < *n {
                    sys.spawn_sinker()?;
                }
                while sys.sinkers.len() > *n {
                    let mut p = sys.sinkers.remove(0);
                    let clean = p.terminate(Duration::from_secs(20)).await;
                    anyhow::ensure!(clean, "{} did not exit 0 on SIGTERM", p.name);
                    p.name.push_str(":clean");
                    sys.retired.push(p);
                }
                Ok(format!("{before} -> {n} sinkers"))
            }
            Fault::RestartPostgres { down } => {
                sys.stack.run(&["pg-stop", "--immediate"])?;
                tokio::time::sleep(*down).await;
                sys.stack.run(&["pg-start"])?;
                Ok("postgres restarted (immediate shutdown)".into())
            }
            Fault::RestartKafka { down } => {
                sys.stack.run(&["kafka-stop"])?;
                tokio::time::sleep(*down).await;
                sys.stack.run(&["kafka-start"])?;
                Ok("kafka broker restarted".into())
            }
            Fault::KillGateway { down } => {
                if let Some(mut old) = sys.gateway.take() {
                    old.kill9();
                    sys.retired.push(old);
                }
                tokio::time::sleep(*down).await;
                sys.gateway = Some(sys.spawn_gateway()?);
                Ok("gateway killed and restarted".into())
            }
            Fault::LockTable { hold } => {
                // The routes profiles lock one of the user tables the routes write.
                let table = if sys.routes_file.is_some() {
                    *routes::USER_TABLES.choose(rng).unwrap_or(&"events")
                } else {
                    "events"
                };
                let mut conn = sqlx::PgConnection::connect(&sys.database_url).await?;
                let mut tx = conn.begin().await?;
                sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).execute(&mut *tx).await?;
                tokio::time::sleep(*hold).await;
                tx.rollback().await?;
                Ok(format!("{table} locked for {hold:?}"))
            }
            Fault::Poison(n) => {
                for i in 0..*n {
                    let marker = format!("poison-{}", Uuid::new_v4().simple());
                    // The routes profiles alternate the generic poison with records only routes
                    // refuse (mapping_failed, no_route).
                    let routed = sys.routes_file.is_some() && rng.random_bool(0.5);
                    let (value, reason) = match i % 3 {
                        _ if routed => {
                            let (value, reason) = routes::poison(rng.random_range(0..2), &marker);
                            (value, Some(reason))
                        }
                        0 => (format!("{marker} is not json"), None),
                        1 => (format!(r#"{{"type":"x","marker":"{marker}"}}"#), None),
                        _ => (format!(r#"{{"id":7,"type":"x","marker":"{marker}"}}"#), None),
                    };
                    producer
                        .send(FutureRecord::to(&sys.topic).key(&marker).payload(&value), Duration::from_secs(30))
                        .await
                        .map_err(|(e, _)| anyhow::anyhow!("produce poison: {e}"))?;
                    markers.insert(marker, reason);
                }
                Ok(format!("{n} poison records produced"))
            }
            other => anyhow::bail!("{other:?} is a cluster fault (cluster_faults::inject)"),
        }
    }
    .await;
    result.unwrap_or_else(|e| format!("fault failed: {e:#}"))
}

async fn wait_http(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{url} not ready within {timeout:?}")
}

async fn wait_drained(
    brokers: &str,
    group: &str,
    topic: &str,
    pool: &sqlx::PgPool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (b, g, t) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
        let kafka = tokio::task::spawn_blocking(move || audit::kafka_offsets(&b, &g, &t)).await??;
        let stored = audit::sink_offsets(pool, group, topic).await.unwrap_or_default();
        let behind: Vec<String> = kafka
            .iter()
            .filter(|(p, (high, committed))| *high > 0 && (stored.get(p) != Some(high) || *committed != Some(*high)))
            .map(|(p, (high, committed))| {
                format!("p{p}: high {high}, stored {:?}, committed {committed:?}", stored.get(p))
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("still behind: {}", behind.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
