//! loadgen's command line and environment.

use std::{fmt, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use reqwest::header::{HeaderName, HeaderValue};

/// loadgen: posts events to a sluice-style `POST /v1/events` endpoint and reports throughput,
/// the status mix and latency percentiles. Open loop (`--mode open --rate R`) sends on a fixed
/// schedule and measures each request from its scheduled time, so a stalled server shows up as
/// latency instead of fewer requests (no coordinated omission); closed loop
/// (`--mode closed --concurrency C`) runs C workers that each send as soon as the previous
/// request was answered.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Config {
    /// Endpoint to post events to (plain http).
    #[arg(long, env = "LOADGEN_URL", default_value = "http://127.0.0.1:8080/v1/events")]
    pub url: reqwest::Url,

    /// open: fixed arrival rate (--rate); closed: fixed number of workers (--concurrency).
    #[arg(long, env = "LOADGEN_MODE", value_enum, default_value_t = Mode::Open)]
    pub mode: Mode,

    /// Requests per second (open mode; required there).
    #[arg(long, env = "LOADGEN_RATE")]
    pub rate: Option<f64>,

    /// Workers, each with one request in flight (closed mode; required there).
    #[arg(long, env = "LOADGEN_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// How long to measure, after the warmup (humantime: 30s, 2m).
    #[arg(long, env = "LOADGEN_DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Stop after this many measured requests (open mode: scheduled, dropped ones included),
    /// or at the end of --duration, whichever comes first.
    #[arg(long, env = "LOADGEN_REQUESTS")]
    pub requests: Option<u64>,

    /// Load sent before the measurement starts; its results are discarded (its ids still go
    /// to --ids-out).
    #[arg(long, env = "LOADGEN_WARMUP", default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Open mode: most requests in flight at once; a request due past it is dropped (not
    /// sent) and counted as such.
    #[arg(long, env = "LOADGEN_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,

    /// Events per request: 1 sends a single JSON object, more send a JSON array.
    #[arg(long, env = "LOADGEN_BATCH", default_value_t = 1)]
    pub batch: usize,

    /// Approximate size in bytes of each event's `data` object as serialized (a `seq` number
    /// and a `pad` string of random letters and digits).
    #[arg(long, env = "LOADGEN_PAYLOAD_BYTES", default_value_t = 256)]
    pub payload_bytes: usize,

    /// How event keys are chosen among --key-space keys: uniform, hot (--hot-ratio of the
    /// events on 1% of the keys), or none (no key: the server partitions by id).
    #[arg(long, env = "LOADGEN_KEYS", value_enum, default_value_t = KeyDist::Uniform)]
    pub keys: KeyDist,

    /// Number of distinct keys (key-0 .. key-<K-1>).
    #[arg(long, env = "LOADGEN_KEY_SPACE", default_value_t = 1000)]
    pub key_space: u32,

    /// With --keys hot: share of the events that go to the hot 1% of the keys.
    #[arg(long, env = "LOADGEN_HOT_RATIO", default_value_t = 0.8)]
    pub hot_ratio: f64,

    /// Share of the events that reuse the id (and key and data) of an event sent earlier in
    /// this run, picked at random among the last 10000: they exercise idempotency.
    #[arg(long, env = "LOADGEN_DUPLICATE_RATIO", default_value_t = 0.0)]
    pub duplicate_ratio: f64,

    /// The events' `type`.
    #[arg(long = "type", value_name = "TYPE", env = "LOADGEN_TYPE", default_value = "bench")]
    pub event_type: String,

    /// Extra request header `Name: value`, repeatable (e.g. `Authorization: Bearer k`). In the
    /// environment, one header per line. Values are never printed.
    #[arg(
        long = "header",
        value_name = "NAME: VALUE",
        env = "LOADGEN_HEADERS",
        value_delimiter = '\n',
        hide_env_values = true
    )]
    pub headers: Vec<Header>,

    /// Longest one request may take, from sending to the end of the answer; past it the
    /// request counts with status `timeout`.
    #[arg(long, env = "LOADGEN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Write the JSON report to this file.
    #[arg(long, env = "LOADGEN_JSON_OUT")]
    pub json_out: Option<PathBuf>,

    /// Write one line `<id> <status>` per event sent (warmup included) to this file.
    #[arg(long, env = "LOADGEN_IDS_OUT")]
    pub ids_out: Option<PathBuf>,

    /// Seed of the payload generator (keys, duplicates, padding). Default: random; the report
    /// prints it. Event ids are fresh UUIDv7s whatever the seed.
    #[arg(long, env = "LOADGEN_SEED")]
    pub seed: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Closed,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Closed => "closed",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDist {
    Uniform,
    Hot,
    None,
}

impl KeyDist {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyDist::Uniform => "uniform",
            KeyDist::Hot => "hot",
            KeyDist::None => "none",
        }
    }
}

impl Config {
    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.scheme() != "http" {
            return Err(format!(
                "--url must be plain http (got {}://); loadgen is built without tls",
                self.url.scheme()
            ));
        }
        match self.mode {
            Mode::Open => {
                match self.rate {
                    None => return Err("--mode open needs --rate (requests per second)".to_owned()),
                    Some(rate) if !(rate.is_finite() && rate > 0.0) => {
                        return Err("--rate must be a positive number of requests per second".to_owned())
                    }
                    Some(_) => {}
                }
                if self.concurrency.is_some() {
                    return Err(
                        "--concurrency applies to --mode closed only; open mode uses --rate and --max-in-flight"
                            .to_owned(),
                    );
                }
                if self.max_in_flight == 0 {
                    return Err("--max-in-flight must be at least 1".to_owned());
                }
            }
            Mode::Closed => {
                match self.concurrency {
                    None => return Err("--mode closed needs --concurrency (number of workers)".to_owned()),
                    Some(0) => return Err("--concurrency must be at least 1".to_owned()),
                    Some(_) => {}
                }
                if self.rate.is_some() {
                    return Err("--rate applies to --mode open only; closed mode uses --concurrency".to_owned());
                }
            }
        }
        if self.duration.is_zero() {
            return Err("--duration must be longer than 0s".to_owned());
        }
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".to_owned());
        }
        if self.batch == 0 {
            return Err("--batch must be at least 1".to_owned());
        }
        if self.key_space == 0 {
            return Err("--key-space must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.hot_ratio) {
            return Err("--hot-ratio must be between 0 and 1".to_owned());
        }
        if !(0.0..1.0).contains(&self.duplicate_ratio) {
            return Err("--duplicate-ratio must be at least 0 and below 1".to_owned());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be longer than 0s".to_owned());
        }
        Ok(())
    }
}

/// One `--header Name: value`. The value is never printed.
#[derive(Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl std::str::FromStr for Header {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s.split_once(':').ok_or_else(|| "a header must look like `Name: value`".to_owned())?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name `{}`", name.trim()))?;
        let mut value =
            HeaderValue::from_str(value.trim()).map_err(|_| format!("invalid value for header `{name}`"))?;
        value.set_sensitive(true);
        Ok(Self { name, value })
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["loadgen"];
        all.extend_from_slice(args);
        match Config::try_parse_from(all) {
            Ok(config) => config,
            Err(error) => panic!("parse failed: {error}"),
        }
    }

    #[test]
    fn open_mode_needs_a_rate_and_refuses_a_concurrency() {
        assert!(parse(&["--mode", "open"]).validate().is_err());
        assert!(parse(&["--mode", "open", "--rate", "0"]).validate().is_err());
        assert!(parse(&["--mode", "open", "--rate", "200"]).validate().is_ok());
        assert!(parse(&["--rate", "200", "--concurrency", "4"]).validate().is_err());
    }

    #[test]
    fn closed_mode_needs_a_concurrency_and_refuses_a_rate() {
        assert!(parse(&["--mode", "closed"]).validate().is_err());
        assert!(parse(&["--mode", "closed", "--concurrency", "0"]).validate().is_err());
        assert!(parse(&["--mode", "closed", "--concurrency", "8"]).validate().is_ok());
        assert!(parse(&["--mode", "closed", "--concurrency", "8", "--rate", "5"]).validate().is_err());
    }

    #[test]
    fn ratios_and_urls_are_checked() {
        assert!(parse(&["--rate", "1", "--duplicate-ratio", "1"]).validate().is_err());
        assert!(parse(&["--rate", "1", "--hot-ratio", "1.5"]).validate().is_err());
        assert!(parse(&["--rate", "1", "--url", "https://example.com/v1/events"]).validate().is_err());
        let config = parse(&["--rate", "1", "--duration", "5s", "--warmup", "1s", "--timeout", "250ms"]);
        assert_eq!(config.duration, Duration::from_secs(5));
        assert_eq!(config.warmup, Duration::from_secs(1));
        assert_eq!(config.timeout, Duration::from_millis(250));
    }

    #[test]
    fn headers_parse_and_hide_their_values() {
        let config = parse(&["--rate", "1", "--header", "Authorization: Bearer secret", "--header", "x-a:b"]);
        assert_eq!(config.headers.len(), 2);
        assert_eq!(config.headers[0].name, "authorization");
        assert_eq!(config.headers[0].value, "Bearer secret");
        assert_eq!(config.headers[1].value, "b");
        assert!(!format!("{config:?}").contains("secret"));
        assert!("no colon".parse::<Header>().is_err());
        assert!("bad name: x".parse::<Header>().is_err());
    }
}
