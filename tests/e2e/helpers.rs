//! The test harness: real binaries, the real local stack, isolated by random names.
//!
//! Every test gets its own topic (and dead-letter topic), consumer group and database, so tests
//! run in parallel and re-run without cleanup. Processes are killed when their handle drops;
//! their logs are kept under target/e2e-logs/ for post-mortems.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs::File,
    future::Future,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use rand::{distr::Alphanumeric, Rng};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
    ClientConfig, Message, Offset, TopicPartitionList,
};
use sqlx::{postgres::PgPoolOptions, Connection, PgConnection, PgPool};

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://sluice:sluice@127.0.0.1:5432/sluice".to_owned())
}

pub fn random_name(prefix: &str) -> String {
    let suffix: String = rand::rng().sample_iter(&Alphanumeric).take(10).map(char::from).collect();
    format!("{prefix}_{}", suffix.to_lowercase())
}

/// The folder holding the workspace's binaries (target/debug), found from this test binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/e2e-<hash> -> target/debug
    exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` (make test does)", path.display());
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A topic, its dead-letter topic, a group and a database, all fresh.
pub struct TestEnv {
    pub name: String,
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub database_url: String,
    pub pool: PgPool,
}

impl TestEnv {
    pub async fn new(partitions: i32) -> Self {
        Self::with_stack(partitions, &brokers(), &admin_database_url()).await
    }

    pub async fn with_stack(partitions: i32, brokers: &str, admin_url: &str) -> Self {
        let name = random_name("t");
        let topic = format!("events_{name}");
        let dlq_topic = format!("{topic}.dlq");
        create_topic(brokers, &topic, partitions).await;
        let database = format!("sluice_{name}");
        let mut admin = PgConnection::connect(admin_url).await.expect("connect to the admin database");
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.expect("create database");
        let database_url = replace_database(admin_url, &database);
        let pool =
            PgPoolOptions::new().max_connections(4).connect(&database_url).await.expect("connect to the test database");
        Self {
            group: format!("sinker_{name}"),
            name,
            brokers: brokers.to_owned(),
            topic,
            dlq_topic,
            database_url,
            pool,
        }
    }

    /// Applies the migrations the way a user does, with `sinker migrate`.
    pub fn migrate(&self) {
        let status = Command::new(bin("sinker"))
            .arg("migrate")
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_TOPIC", &self.topic)
            .status()
            .expect("run sinker migrate");
        assert!(status.success(), "sinker migrate failed: {status}");
    }

    pub fn gateway(&self, extra: &[&str]) -> Proc {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--listen", &listen];
        args.extend_from_slice(extra);
        // Brokers and topic through the environment, so a test's own flags override them.
        let env = [("KAFKA_TOPIC", self.topic.as_str()), ("KAFKA_BROKERS", self.brokers.as_str())];
        let mut proc = Proc::spawn(&format!("{}-gateway", self.name), "gateway", &args, &env);
        proc.port = port;
        proc
    }

    pub fn sinker(&self, extra: &[&str]) -> Proc {
        self.sinker_with_env(extra, &[])
    }

    pub fn sinker_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "--metrics-listen",
            &listen,
            // A killed sinker's partitions move after 6 s instead of the default 10 s.
            "--kafka-option",
            "session.timeout.ms=6000",
            "--kafka-option",
            "heartbeat.interval.ms=1000",
        ];
        args.extend_from_slice(extra);
        // Connection settings and batch timeout through the environment, so a test's flags
        // override them.
        let mut env = env.to_vec();
        env.extend([
            ("DATABASE_URL", self.database_url.as_str()),
            ("KAFKA_BROKERS", self.brokers.as_str()),
            ("KAFKA_TOPIC", self.topic.as_str()),
            ("SINKER_GROUP", self.group.as_str()),
        ]);
        if !extra.contains(&"--batch-timeout") {
            env.push(("SINKER_BATCH_TIMEOUT", "50ms"));
        }
        let mut proc = Proc::spawn(&format!("{}-sinker", self.name), "sinker", &args, &env);
        proc.port = port;
        proc
    }

    pub async fn row_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&self.pool).await.unwrap_or(-1)
    }

    pub async fn wait_rows(&self, expected: i64, timeout: Duration) {
        let what = format!("{expected} rows in events");
        eventually(timeout, &what, || async {
            let n = self.row_count().await;
            assert!(n <= expected, "more rows than expected: {n} > {expected}");
            (n == expected).then_some(())
        })
        .await;
    }

    pub async fn wait_rows_at_least(&self, expected: i64, timeout: Duration) {
        let what = format!("at least {expected} rows in events");
        eventually(timeout, &what, || async { (self.row_count().await >= expected).then_some(()) }).await;
    }

    /// The test's sinker group's stored next offsets.
    pub async fn sink_offsets(&self) -> HashMap<i32, i64> {
        self.sink_offsets_of(&self.group).await
    }

    /// One sinker group's stored next offsets of the test's topic.
    pub async fn sink_offsets_of(&self, group: &str) -> HashMap<i32, i64> {
        let rows: Vec<(i32, i64)> =
            sqlx::query_as("SELECT partition, next_offset FROM sink_offsets WHERE consumer_group = $1 AND topic = $2")
                .bind(group)
                .bind(&self.topic)
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        rows.into_iter().collect()
    }

    pub fn high_watermarks(&self) -> HashMap<i32, i64> {
        high_watermarks(&self.brokers, &self.topic)
    }

    pub fn committed(&self) -> HashMap<i32, i64> {
        committed_offsets(&self.brokers, &self.group, &self.topic)
    }

    /// Waits until the database's and Kafka's offsets both equal the high watermarks
    /// (partitions never written to count as 0).
    pub async fn wait_offsets_at_high_watermarks(&self, timeout: Duration) {
        self.wait_group_at_high_watermarks(&self.group, timeout).await;
    }

    /// Waits until one sinker group's offsets, in the database and in Kafka, both equal the high
    /// watermarks (partitions never written to count as 0).
    pub async fn wait_group_at_high_watermarks(&self, group: &str, timeout: Duration) {
        let high = self.high_watermarks();
        let expected: HashMap<i32, i64> = high.into_iter().filter(|(_, h)| *h > 0).collect();
        let what = format!("sink_offsets and kafka commits of {group} at the high watermarks");
        let committed = || committed_offsets(&self.brokers, group, &self.topic);
        eventually(timeout, &what, || async {
            let stored = self.sink_offsets_of(group).await;
            let committed = committed();
            let stored_ok = expected.iter().all(|(p, h)| stored.get(p) == Some(h));
            let committed_ok = expected.iter().all(|(p, h)| committed.get(p) == Some(h));
            (stored_ok && committed_ok).then_some(())
        })
        .await;
        let positive =
            |offsets: HashMap<i32, i64>| offsets.into_iter().filter(|(_, o)| *o > 0).collect::<HashMap<_, _>>();
        assert_eq!(positive(self.sink_offsets_of(group).await), expected, "{group}'s stored offsets");
        assert_eq!(positive(committed()), expected, "{group}'s kafka commits");
    }

    pub fn producer(&self) -> FutureProducer {
        producer(&self.brokers)
    }

    /// Produces raw records (key, value) straight to the topic, as another producer would.
    pub async fn produce_raw(&self, records: &[(Option<&str>, Option<&[u8]>)]) {
        let producer = self.producer();
        for (key, value) in records {
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
        }
    }

    pub fn topic_records(&self) -> Vec<OwnedMessage> {
        read_all(&self.brokers, &self.topic)
    }

    pub fn dlq_records(&self) -> Vec<OwnedMessage> {
        read_all(&self.brokers, &self.dlq_topic)
    }
}

pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics([&new], &AdminOptions::new()).await.expect("create topic");
    for r in results {
        r.expect("topic created");
    }
    // Wait until every partition has a leader, so the first produce does not race creation.
    let consumer = base_consumer(brokers, None);
    let start = Instant::now();
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            if md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            }) {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "topic {topic} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn base_consumer(brokers: &str, group: Option<&str>) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("enable.auto.commit", "false").set("enable.partition.eof", "false");
    config.set("group.id", group.unwrap_or("sluice-tests-reader"));
    config.create().expect("consumer")
}

pub fn partitions_of(brokers: &str, topic: &str) -> Vec<i32> {
    let consumer = base_consumer(brokers, None);
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect()
}

pub fn high_watermarks(brokers: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer = base_consumer(brokers, None);
    partitions_of(brokers, topic)
        .into_iter()
        .map(|p| (p, consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1))
        .collect()
}

pub fn committed_offsets(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer = base_consumer(brokers, Some(group));
    let mut tpl = TopicPartitionList::new();
    for p in partitions_of(brokers, topic) {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Every record of a topic, read from the start up to the current high watermarks.
pub fn read_all(brokers: &str, topic: &str) -> Vec<OwnedMessage> {
    let high = high_watermarks(brokers, topic);
    let consumer = base_consumer(brokers, None);
    let mut tpl = TopicPartitionList::new();
    for p in high.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let total: i64 = high.values().sum();
    let mut out = Vec::new();
    let mut done: HashMap<i32, bool> = high.iter().map(|(p, h)| (*p, *h == 0)).collect();
    let start = Instant::now();
    while done.values().any(|d| !d) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "reading {topic}: got {} of about {total} records",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let p = m.partition();
            if m.offset() + 1 >= high[&p] {
                done.insert(p, true);
            }
            out.push(m.detach());
        }
    }
    out
}

pub fn header(msg: &OwnedMessage, name: &str) -> Option<String> {
    let headers = msg.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// A running binary. Killed (SIGKILL) on drop unless it already exited.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, binary: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = bin_dir().join("e2e-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{name}-{}.log", random_name("p")));
        let file = File::create(&log).expect("log file");
        let mut cmd = Command::new(bin(binary));
        cmd.args(args).stdout(Stdio::null()).stderr(file).env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        Self { name: name.to_owned(), child, port: 0, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until GET `path` answers 200.
    pub async fn wait_ready(&mut self, path: &str, timeout: Duration) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited early with {status}; log:\n{}", self.name, self.logs());
            }
            if let Ok(r) = client.get(self.url(path)).timeout(Duration::from_secs(2)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "{} not ready on {path} after {timeout:?}; log:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < timeout, "{} did not exit within {timeout:?}; log:\n{}", self.name, self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads one metric's value (summed over label sets matching `labels`) from /metrics.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics")).await.ok()?.text().await.ok()?;
        metric_value(&text, name, labels)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sums the samples of `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// A private stack (its own Kafka and PostgreSQL on other ports, its own state dir), for tests
/// that stop or restart a service. The chaos harness's, torn down on drop.
pub struct PrivateStack(chaos::cluster::Stack);

impl PrivateStack {
    pub fn start() -> Self {
        let state_dir = std::env::temp_dir().join(random_name("sluice-stack"));
        Self(
            chaos::cluster::Stack::start(&PathBuf::from(env!("CARGO_MANIFEST_DIR")), state_dir)
                .expect("private stack up"),
        )
    }

    pub fn brokers(&self) -> String {
        self.0.brokers()
    }

    pub fn admin_database_url(&self) -> String {
        self.0.admin_url()
    }

    pub fn run(&self, args: &[&str]) {
        self.0.run(args).unwrap_or_else(|e| panic!("{e:#}"));
    }
}
