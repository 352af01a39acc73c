//! Kafka client settings shared by the gateway and the sinker.

use std::fmt;

use clap::Args;
use rdkafka::ClientConfig;

/// How to reach Kafka. Flattened into each binary's `Config`.
#[derive(Args, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,

    /// The topic events travel on.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "events")]
    pub topic: String,

    /// Extra librdkafka setting as key=value, repeatable (e.g. security.protocol=SASL_SSL,
    /// sasl.mechanism=SCRAM-SHA-256, sasl.username=..., sasl.password=..., ssl.ca.location=...).
    /// Applied last, so it overrides sluice's own defaults.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_kafka_option)]
    pub kafka_options: Vec<KafkaOption>,
}

/// One `key=value` librdkafka setting. Its `Debug` hides values of secret-looking keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOption {
    pub key: String,
    pub value: String,
}

impl KafkaOption {
    /// Whether the value must never be printed (passwords, keys, JAAS configs, tokens).
    pub fn is_secret(&self) -> bool {
        let key = self.key.to_ascii_lowercase();
        ["password", "secret", "jaas", "token", "key.pem", "private"].iter().any(|word| key.contains(word))
    }
}

impl fmt::Debug for KafkaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_secret() {
            write!(f, "{}=<redacted>", self.key)
        } else {
            write!(f, "{}={}", self.key, self.value)
        }
    }
}

fn parse_kafka_option(raw: &str) -> Result<KafkaOption, String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok(KafkaOption { key: key.trim().to_owned(), value: value.to_owned() })
        }
        _ => Err(format!("expected key=value (a librdkafka setting), got {raw:?}")),
    }
}

impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("kafka_options", &self.kafka_options)
            .finish()
    }
}

impl KafkaArgs {
    /// A client config with the brokers, then `defaults`, then the user's `--kafka-option`s.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for option in &self.kafka_options {
            config.set(&option.key, &option.value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_hide_secrets() {
        let opt = parse_kafka_option("sasl.password=hunter2=x").expect("parses");
        assert_eq!(opt.value, "hunter2=x");
        assert_eq!(format!("{opt:?}"), "sasl.password=<redacted>");
        let plain = parse_kafka_option("linger.ms=5").expect("parses");
        assert_eq!(format!("{plain:?}"), "linger.ms=5");
        assert!(parse_kafka_option("novalue").is_err());
        assert!(parse_kafka_option("=x").is_err());
    }

    #[test]
    fn user_options_override_defaults() {
        let args = KafkaArgs {
            brokers: "b:1".into(),
            topic: "t".into(),
            kafka_options: vec![KafkaOption { key: "linger.ms".into(), value: "9".into() }],
        };
        let config = args.client_config(&[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(config.get("linger.ms"), Some("9"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
    }
}
