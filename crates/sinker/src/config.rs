//! The sinker's command line and environment.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use sluice_core::{kafka::KafkaArgs, secret::redact_url, telemetry::LogArgs};

use crate::store::InsertMethod;

/// sluice sinker: consumes events from Kafka in a consumer group and writes them into
/// PostgreSQL in batches, exactly once per event id. Offsets are stored in the same database
/// transaction as the rows (compare-and-set), and committed to Kafka only after it.
#[derive(Parser, Clone)]
#[command(name = "sinker", version, about, long_about = None)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Consumer group; run more sinkers with the same group to share the partitions.
    #[arg(long, env = "SINKER_GROUP", default_value = "sinker")]
    pub group: String,

    /// A routes file (TOML): which event types go into which of your tables, and how (insert,
    /// upsert, delete). Without it every event goes into the `events` table. With it the file
    /// decides everything: list a route into `events` to keep the raw table too. See the
    /// README's "Routes" section; check a file with `sinker routes check --routes FILE`.
    #[arg(long, env = "SINKER_ROUTES", global = true)]
    pub routes: Option<PathBuf>,

    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/db?sslmode=require.
    /// The password is never logged.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Most rows in one batch (one INSERT, one transaction).
    #[arg(long, env = "SINKER_BATCH_SIZE", default_value_t = 2000)]
    pub batch_size: usize,

    /// Batch commits slower than this shrink the batch target (halved); faster ones grow it
    /// (one --batch-grow-step) back toward --batch-size.
    #[arg(long, env = "SINKER_BATCH_TARGET_LATENCY", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub batch_target_latency: Duration,

    /// Smallest batch target the adaptive sizing goes down to (at most --batch-size).
    #[arg(long, env = "SINKER_BATCH_MIN_SIZE", default_value_t = 10)]
    pub batch_min_size: usize,

    /// Rows added to the batch target after each fast commit. Default: a tenth of --batch-size.
    #[arg(long, env = "SINKER_BATCH_GROW_STEP")]
    pub batch_grow_step: Option<usize>,

    /// How batches go into `events`: binary-copy (binary COPY straight into the table under a
    /// savepoint, and a batch holding an id already there written again with the UNNEST
    /// statement), unnest (one INSERT with one array per column) or copy (CSV COPY into a
    /// temporary staging table, then INSERT ... SELECT). See BENCHMARKS.md.
    #[arg(long, env = "SINKER_INSERT_METHOD", value_enum, default_value = "binary-copy")]
    pub insert_method: InsertMethod,

    /// Most record bytes in one batch.
    #[arg(long, env = "SINKER_BATCH_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub batch_bytes: usize,

    /// Longest a record waits for its batch to fill (humantime: 200ms, 1s).
    #[arg(long, env = "SINKER_BATCH_TIMEOUT", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub batch_timeout: Duration,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "SINKER_METRICS_LISTEN", default_value = "127.0.0.1:9091")]
    pub metrics_listen: SocketAddr,

    /// Topic for records that cannot become rows. Default: <topic>.dlq. Created when missing.
    #[arg(long, env = "SINKER_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,

    /// Largest record value accepted, in bytes; larger ones go to the dead-letter topic.
    #[arg(long, env = "SINKER_MAX_EVENT_BYTES", default_value_t = 1_000_000)]
    pub max_event_bytes: usize,

    /// Records buffered per partition before the partition is paused (bounds memory while
    /// the database is slow or down); it resumes at half. Too small a buffer pauses a partition
    /// that is merely busy, and every resume fetches again (see BENCHMARKS.md).
    #[arg(long, env = "SINKER_MAX_BUFFERED_RECORDS", default_value_t = 20000)]
    pub max_buffered_records: usize,

    /// Payload and key bytes the whole process holds, read from Kafka and not yet written, over
    /// all partitions. A partition that receives a record while the budget is used up is paused
    /// (and the record fetched again later); paused partitions resume, least-holding first, when
    /// the total falls to half. librdkafka's own prefetch queue is sized at an eighth of it.
    #[arg(long, env = "SINKER_MAX_BUFFERED_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_buffered_bytes: usize,

    /// Read, decode and encode a partition's next batch while its current batch is being
    /// written (at most one batch ahead per partition; order kept). Off by default: on this
    /// project's 2-core benchmark machine it moved no drain faster and cost about a tenth more
    /// CPU per row and 15-35 MB more memory (BENCHMARKS.md, "Overlap"); worth trying where the
    /// sinker's decoding, not the database or the fetch, bounds a partition.
    #[arg(long, env = "SINKER_READ_AHEAD", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub read_ahead: bool,

    /// Database connections in the pool (partitions are written in parallel, up to this many).
    #[arg(long, env = "SINKER_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// PostgreSQL lock_timeout for the sinker's sessions: a batch waiting longer for a lock
    /// fails, is retried, and counts as contention.
    #[arg(long, env = "SINKER_DB_LOCK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_lock_timeout: Duration,

    /// PostgreSQL statement_timeout for the sinker's sessions.
    #[arg(long, env = "SINKER_DB_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,

    /// On revoke or shutdown, how long to keep trying to write what is buffered before leaving
    /// it to the next owner (nothing is lost: it was not committed).
    #[arg(long, env = "SINKER_DRAIN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Apply the database migrations and exit (the sinker also applies them at start).
    Migrate,
    /// Work with a routes file (--routes).
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutesCommand {
    /// Check --routes against the live schema (needs DATABASE_URL only, no Kafka): print each
    /// route's resolved columns and the SQL it runs and exit 0, or print every problem and
    /// exit 1. Nothing is written (run `sinker migrate` first if a route writes `events`).
    Check,
}

/// librdkafka's default max.poll.interval.ms.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// What a revocation may block the poll thread for beyond --drain-timeout: the callback waits
/// for the dispatcher up to --drain-timeout + 10 s (run.rs), then commits.
pub const REVOKE_MARGIN: Duration = Duration::from_secs(10);

impl Config {
    pub fn batch_min_size(&self) -> usize {
        self.batch_min_size.min(self.batch_size)
    }

    pub fn batch_grow_step(&self) -> usize {
        self.batch_grow_step.unwrap_or(self.batch_size / 10).max(1)
    }

    pub fn dlq_topic(&self) -> String {
        self.dlq_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.kafka.topic))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.group.trim().is_empty() {
            // '' in sink_offsets means "written before groups were recorded" (adopt.rs).
            return Err("--group must not be empty: name the sinker group (default: sinker)".to_owned());
        }
        if self.batch_size == 0 {
            return Err("--batch-size must be at least 1".to_owned());
        }
        if self.batch_min_size == 0 {
            return Err("--batch-min-size must be at least 1".to_owned());
        }
        if self.batch_bytes < self.max_event_bytes {
            return Err(
                "--batch-bytes must be at least --max-event-bytes, or a large event could never be written".to_owned()
            );
        }
        if self.max_buffered_records < self.batch_size {
            return Err("--max-buffered-records must be at least --batch-size".to_owned());
        }
        if self.dlq_topic() == self.kafka.topic {
            return Err("--dlq-topic must differ from --topic".to_owned());
        }
        if self.max_buffered_bytes < self.batch_bytes {
            return Err(
                "--max-buffered-bytes must be at least --batch-bytes, or a full batch could never be held".to_owned()
            );
        }
        let poll_interval = self.max_poll_interval()?;
        if self.drain_timeout + REVOKE_MARGIN >= poll_interval {
            return Err(format!(
                "--drain-timeout ({}) plus {}s must be below max.poll.interval.ms ({} ms): a revocation blocks the consumer's poll for up to that long and the group would evict this sinker; lower --drain-timeout or raise max.poll.interval.ms with --kafka-option",
                humantime::format_duration(self.drain_timeout),
                REVOKE_MARGIN.as_secs(),
                poll_interval.as_millis(),
            ));
        }
        Ok(())
    }

    /// librdkafka's max.poll.interval.ms as it will apply: the last --kafka-option that sets
    /// it, or librdkafka's default.
    pub fn max_poll_interval(&self) -> Result<Duration, String> {
        match self.kafka.kafka_options.iter().rev().find(|o| o.key == "max.poll.interval.ms") {
            None => Ok(DEFAULT_MAX_POLL_INTERVAL),
            Some(o) => o.value.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| {
                format!("--kafka-option max.poll.interval.ms={} is not a number of milliseconds", o.value)
            }),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("kafka", &self.kafka)
            .field("group", &self.group)
            .field("routes", &self.routes)
            .field("database_url", &redact_url(&self.database_url))
            .field("batch_size", &self.batch_size)
            .field("batch_bytes", &self.batch_bytes)
            .field("batch_timeout", &self.batch_timeout)
            .field("insert_method", &self.insert_method)
            .field("metrics_listen", &self.metrics_listen)
            .field("dlq_topic", &self.dlq_topic())
            .field("max_event_bytes", &self.max_event_bytes)
            .field("max_buffered_records", &self.max_buffered_records)
            .field("read_ahead", &self.read_ahead)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("drain_timeout", &self.drain_timeout)
            .field("db_pool_size", &self.db_pool_size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Config;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["sinker", "--database-url", "postgres://u@h/d", "--topic", "events"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("parses")
    }

    #[test]
    fn the_drain_timeout_must_fit_in_the_poll_interval() {
        assert_eq!(parse(&[]).validate(), Ok(()), "15 s + 10 s is well below librdkafka's 300 s");
        assert_eq!(parse(&["--drain-timeout", "289s"]).validate(), Ok(()));
        let too_long = parse(&["--drain-timeout", "290s"]).validate().expect_err("290 s + 10 s is not below 300 s");
        assert!(
            too_long.contains("--drain-timeout (4m 50s) plus 10s must be below max.poll.interval.ms (300000 ms)"),
            "{too_long}"
        );
        let option = parse(&["--kafka-option", "max.poll.interval.ms=20000"])
            .validate()
            .expect_err("15 s + 10 s is not below 20 s");
        assert!(
            option.contains("(20000 ms)") && option.contains("raise max.poll.interval.ms with --kafka-option"),
            "{option}"
        );
        assert_eq!(
            parse(&["--kafka-option", "max.poll.interval.ms=20000", "--drain-timeout", "5s"]).validate(),
            Ok(())
        );
        let last_wins = [
            "--kafka-option",
            "max.poll.interval.ms=20000",
            "--kafka-option",
            "max.poll.interval.ms=600000",
            "--drain-timeout",
            "60s",
        ];
        assert_eq!(parse(&last_wins).validate(), Ok(()), "the last one wins, as in librdkafka");
        let bad = parse(&["--kafka-option", "max.poll.interval.ms=soon"]).validate().expect_err("not a number");
        assert!(bad.contains("is not a number of milliseconds"), "{bad}");
    }

    #[test]
    fn routes_check_takes_the_routes_file_after_the_subcommand() {
        let config = Config::try_parse_from([
            "sinker",
            "--database-url",
            "postgres://u@h/d",
            "routes",
            "check",
            "--routes",
            "r.toml",
        ])
        .expect("parses");
        assert_eq!(config.command, Some(super::Command::Routes { command: super::RoutesCommand::Check }));
        assert_eq!(config.routes.as_deref(), Some(std::path::Path::new("r.toml")));
        assert_eq!(parse(&[]).routes, None, "without --routes: the built-in route into events");
    }

    #[test]
    fn a_group_is_named() {
        let empty = parse(&["--group", " "]).validate().expect_err("an empty group");
        assert!(empty.contains("--group must not be empty"), "{empty}");
    }

    #[test]
    fn the_byte_budget_holds_at_least_a_batch() {
        assert_eq!(parse(&["--max-buffered-bytes", "4194304"]).validate(), Ok(()));
        let small = parse(&["--max-buffered-bytes", "4194303"]).validate().expect_err("smaller than --batch-bytes");
        assert!(small.contains("--max-buffered-bytes must be at least --batch-bytes"), "{small}");
    }
}
