//! The gateway's command line and environment.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use sluice_core::{kafka::KafkaArgs, telemetry::LogArgs};
use sluice_routes::RoutesFile;

use crate::{
    keys::{self, Keys},
    origin::AllowedOrigins,
    producer,
    rate_limit::Limit,
};

/// sluice gateway: validates events posted over HTTP and produces them to Kafka, answering
/// 202 only after the broker acknowledged every event of the request (acks=all).
#[derive(Parser, Debug, Clone)]
#[command(name = "gateway", version, about, long_about = None)]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// API keys allowed to post events, comma-separated: bearer tokens (or `?api_key=`), and on
    /// the Segment endpoints also write keys (HTTP Basic username, body `writeKey`). Unset (and
    /// no --api-keys-file): no authentication. Keys are compared in constant time and never logged.
    #[arg(long, env = "GATEWAY_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<ApiKey>,

    /// A TOML file of named API keys (`[[key]]` tables: `name`, `key`, optional
    /// `allowed_origins`, `rate_limit`, `rate_limit_burst`; README, "Browsers"). May be combined
    /// with --api-keys: the keys are their union.
    #[arg(long, env = "GATEWAY_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Web origins whose pages may post events (scheme://host[:port], comma-separated), or `*`
    /// for any. Unset: no CORS headers, and any request carrying an `Origin` header (a
    /// browser's) is refused with 403 `origin_not_allowed`.
    #[arg(long, env = "GATEWAY_CORS_ALLOW_ORIGINS", value_delimiter = ',')]
    pub cors_allow_origins: Vec<String>,

    /// Largest request body, in bytes, before and after gzip decompression (413 above it).
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most events in one request (413 above it).
    #[arg(long, env = "GATEWAY_MAX_BATCH_EVENTS", default_value_t = 1000)]
    pub max_batch_events: usize,

    /// Largest single event as written to Kafka (record key + JSON value), in bytes; 413 above
    /// it. The producer's own message.max.bytes is set to this plus room for the record
    /// framing; the broker's and the topic's limits (message.max.bytes, max.message.bytes)
    /// must also allow it plus about 1 KiB.
    #[arg(long, env = "GATEWAY_MAX_EVENT_BYTES", default_value_t = 1_000_000)]
    pub max_event_bytes: usize,

    /// How long a request may take once its body has been read (validation, producing and the
    /// broker's acknowledgements); past it the client gets a 503 listing the ids the broker did
    /// not confirm. Upload time is bounded by --body-read-timeout instead.
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How long the producer keeps trying to deliver an event (librdkafka message.timeout.ms).
    /// Must be shorter than --request-timeout, so every answer is a real one.
    #[arg(long, env = "GATEWAY_PRODUCE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub produce_timeout: Duration,

    /// Cap on the bytes of events produced but not yet acknowledged; requests past it get a
    /// 503 at once instead of growing memory while the broker is slow.
    #[arg(long, env = "GATEWAY_MAX_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// Longest a client may take to send a request's headers (counted from when the connection
    /// is accepted, or from the previous response on a kept-alive connection); past it the
    /// connection is closed. Also how long an idle kept-alive connection stays open.
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Longest a client may take to send a request's body, in all; past it the request gets a
    /// 408 `request_timeout` and nothing is produced.
    #[arg(long, env = "GATEWAY_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Most connections served at once. Connections past it wait in the listen backlog (the
    /// kernel holds them; nothing is read from them) until one closes.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// The sinkers' consumer group, whose lag drives backpressure.
    #[arg(long, env = "SINKER_GROUP", default_value = "sinker")]
    pub sinker_group: String,

    /// How often to measure the sinker group's lag.
    #[arg(long, env = "GATEWAY_LAG_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub lag_interval: Duration,

    /// Total lag (records) at which writes are refused with 429; 0 turns throttling off.
    #[arg(long, env = "GATEWAY_LAG_THROTTLE", default_value_t = 50_000)]
    pub lag_throttle: u64,

    /// Lag at or below which writes are accepted again (0: once the sinkers caught up
    /// completely). Default: 80% of --lag-throttle.
    #[arg(long, env = "GATEWAY_LAG_RESUME")]
    pub lag_resume: Option<u64>,

    /// How long a lag measurement stays valid; past it an unknown lag stops throttling and
    /// /readyz says so.
    #[arg(long, env = "GATEWAY_LAG_STALE_AFTER", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lag_stale_after: Duration,

    /// Events per second each API key may post (token bucket); 0 turns the limit off. Without
    /// API keys, all clients share one bucket.
    #[arg(long, env = "GATEWAY_RATE_LIMIT", default_value_t = 0.0)]
    pub rate_limit: f64,

    /// Bucket size of --rate-limit, in events. Default: one second's worth.
    #[arg(long, env = "GATEWAY_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<f64>,

    /// A routes file (the sinker's `--routes`, same TOML). With it, every event must match a
    /// route (else 400 `no_route`) and pass the `type` and `required = true` its routes declare
    /// (else 400 `invalid_event` naming route, column and path). No database is read.
    #[arg(long, env = "GATEWAY_ROUTES")]
    pub routes: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn lag_resume(&self) -> u64 {
        self.lag_resume.unwrap_or(self.lag_throttle / 5 * 4)
    }

    /// The most bytes one request's records can take as written to Kafka (what it holds of
    /// --max-inflight-bytes): its body plus each event's record overhead. Numbers that
    /// re-encode longer (`1e9`) can exceed it; such a rare request is refused with 413.
    pub fn largest_request_bytes(&self) -> usize {
        self.max_body_bytes.saturating_add(self.max_batch_events.saturating_mul(producer::RECORD_OVERHEAD))
    }

    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.produce_timeout >= self.request_timeout {
            return Err(format!(
                "--produce-timeout ({:?}) must be shorter than --request-timeout ({:?}); lower the first or raise the second",
                self.produce_timeout, self.request_timeout
            ));
        }
        if self.produce_timeout < Duration::from_millis(1) {
            return Err(format!(
                "--produce-timeout ({:?}) must be at least 1ms: librdkafka counts message.timeout.ms in whole milliseconds and 0 means no timeout",
                self.produce_timeout
            ));
        }
        if self.lag_interval.is_zero() {
            return Err("--lag-interval must be longer than 0s; 1s is a good value".to_owned());
        }
        if self.max_event_bytes > self.max_inflight_bytes {
            return Err("--max-event-bytes must not exceed --max-inflight-bytes: such an event could never be produced; raise the second or lower the first".to_owned());
        }
        let largest_request = self.largest_request_bytes();
        if largest_request > self.max_inflight_bytes {
            return Err(format!(
                "--max-inflight-bytes ({}) is smaller than the largest request allowed: --max-body-bytes ({}) plus about {} bytes of record overhead for each of --max-batch-events ({}), {largest_request} in all; such a request could never be produced: raise --max-inflight-bytes or lower the others",
                self.max_inflight_bytes, self.max_body_bytes, producer::RECORD_OVERHEAD, self.max_batch_events
            ));
        }
        if self.lag_throttle > 0 && self.lag_resume() > self.lag_throttle {
            return Err("--lag-resume must not exceed --lag-throttle".to_owned());
        }
        if self.rate_limit < 0.0 || !self.rate_limit.is_finite() {
            return Err("--rate-limit must be a non-negative number of events per second".to_owned());
        }
        let day = Duration::from_secs(24 * 3600);
        for (flag, value) in
            [("--header-read-timeout", self.header_read_timeout), ("--body-read-timeout", self.body_read_timeout)]
        {
            if value.is_zero() || value > day {
                return Err(format!("{flag} must be longer than 0s and at most 24h, got {value:?}"));
            }
        }
        if self.max_connections == 0 || self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err("--max-connections must be at least 1".to_owned());
        }
        if self.max_event_bytes == 0 || self.max_event_bytes > crate::producer::MAX_EVENT_BYTES {
            return Err(format!(
                "--max-event-bytes must be between 1 and {} (librdkafka's message.max.bytes cap, less the record framing)",
                crate::producer::MAX_EVENT_BYTES
            ));
        }
        if self.max_batch_events == 0 {
            return Err("--max-batch-events must be at least 1".to_owned());
        }
        Ok(())
    }
}

impl Config {
    /// `--cors-allow-origins`, parsed (`None`: unset).
    pub fn cors(&self) -> Result<Option<AllowedOrigins>, String> {
        if self.cors_allow_origins.is_empty() {
            return Ok(None);
        }
        AllowedOrigins::parse(&self.cors_allow_origins, "--cors-allow-origins").map(Some)
    }

    /// The key table from --api-keys and --api-keys-file, checked against `cors` (every key's
    /// origins must be allowed by it). Errors name the file and every problem in it.
    pub fn load_keys(&self, cors: Option<&AllowedOrigins>) -> Result<Keys, String> {
        let file = keys::load(self.api_keys_file.as_ref())?;
        let default =
            Limit::new(self.rate_limit, self.rate_limit_burst).map_err(|e| format!("--{}", e.replace('_', "-")))?;
        let keys = Keys::new(&self.api_keys, file, default)?;
        keys.check_origins(cors)?;
        Ok(keys)
    }

    /// Loads `--routes`, if given. The error names the file and lists every problem in it, for
    /// the gateway to refuse to start with (exit 2, like [`Config::validate`]'s errors).
    pub fn load_routes(&self) -> Result<Option<RoutesFile>, String> {
        let Some(path) = &self.routes else { return Ok(None) };
        RoutesFile::load(path).map(Some).map_err(|e| format!("--routes: {e}"))
    }
}

/// A bearer token. Never printed.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::str::FromStr for ApiKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim();
        if key.is_empty() {
            return Err("an API key must not be empty".to_owned());
        }
        Ok(Self(key.to_owned()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
