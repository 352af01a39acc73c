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
    /// Overrides sluice's defaults, except the settings the delivery guarantee rests on
    /// (acks, idempotence and delivery timeout in the gateway; auto-commit, offset store,
    /// isolation level and offset reset in the sinker): setting one of those to another value
    /// is refused at start.
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

/// A librdkafka setting that sluice's delivery guarantee rests on. It is applied after the
/// user's `--kafka-option`s, and a `--kafka-option` that sets it (or one of its aliases) to
/// another value is refused at start rather than silently overridden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guarantee {
    pub key: &'static str,
    pub value: String,
    /// What breaks if it changes; part of the start-up error.
    pub why: &'static str,
}

impl Guarantee {
    pub fn new(key: &'static str, value: impl Into<String>, why: &'static str) -> Self {
        Self { key, value: value.into(), why }
    }

    /// Whether a user option names this setting (librdkafka aliases included).
    fn is_named_by(&self, option: &KafkaOption) -> bool {
        let key = option.key.trim().to_ascii_lowercase();
        key == self.key || aliases(self.key).contains(&key.as_str())
    }

    /// Whether a user's value means the same as the guaranteed one.
    fn agrees_with(&self, value: &str) -> bool {
        normalize(self.key, value) == normalize(self.key, &self.value)
    }
}

/// librdkafka's other names for the guarded settings (CONFIGURATION.md).
fn aliases(key: &str) -> &'static [&'static str] {
    match key {
        "acks" => &["request.required.acks"],
        "message.timeout.ms" => &["delivery.timeout.ms"],
        "enable.auto.commit" => &["auto.commit.enable"],
        _ => &[],
    }
}

fn normalize(key: &str, value: &str) -> String {
    let value = value.trim().to_ascii_lowercase();
    match (key, value.as_str()) {
        ("acks", "-1") => "all".to_owned(),
        _ => value,
    }
}

/// A `--kafka-option` that would switch off part of the delivery guarantee.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--kafka-option {option}={value} is refused: sluice needs {key}={required} because {why}; remove the option")]
pub struct GuaranteeOverride {
    pub option: String,
    pub value: String,
    pub key: &'static str,
    pub required: String,
    pub why: &'static str,
}

impl KafkaArgs {
    /// A client config with the brokers, then `defaults`, then the user's `--kafka-option`s
    /// (which may override defaults), then the `guaranteed` settings, which nobody overrides.
    /// Fails when a user option sets a guaranteed setting to another value.
    pub fn client_config(
        &self,
        defaults: &[(&str, &str)],
        guaranteed: &[Guarantee],
    ) -> Result<ClientConfig, GuaranteeOverride> {
        self.check_guarantees(guaranteed)?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for option in &self.kafka_options {
            config.set(&option.key, &option.value);
        }
        for guarantee in guaranteed {
            config.set(guarantee.key, &guarantee.value);
        }
        Ok(config)
    }

    /// Refuses user options that would change a guaranteed setting (checked at start, before
    /// any client exists, so the error is the first thing an operator sees).
    pub fn check_guarantees(&self, guaranteed: &[Guarantee]) -> Result<(), GuaranteeOverride> {
        for guarantee in guaranteed {
            for option in self.kafka_options.iter().filter(|o| guarantee.is_named_by(o)) {
                if !guarantee.agrees_with(&option.value) {
                    return Err(GuaranteeOverride {
                        option: option.key.clone(),
                        // Guarded settings are never secrets, but keep the rule in one place.
                        value: if option.is_secret() { "<redacted>".to_owned() } else { option.value.clone() },
                        key: guarantee.key,
                        required: guarantee.value.clone(),
                        why: guarantee.why,
                    });
                }
            }
        }
        Ok(())
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
        let config = args.client_config(&[("linger.ms", "5"), ("acks", "all")], &[]).expect("no guarantee touched");
        assert_eq!(config.get("linger.ms"), Some("9"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
    }

    fn args_with(options: &[(&str, &str)]) -> KafkaArgs {
        KafkaArgs {
            brokers: "b:1".into(),
            topic: "t".into(),
            kafka_options: options.iter().map(|(k, v)| KafkaOption { key: (*k).into(), value: (*v).into() }).collect(),
        }
    }

    #[test]
    fn user_options_cannot_switch_off_a_guarantee() {
        let guaranteed = [
            Guarantee::new("acks", "all", "a 202 means every in-sync replica has the event"),
            Guarantee::new("enable.auto.commit", "false", "offsets are committed after the database commit"),
        ];
        let err = args_with(&[("linger.ms", "1"), ("acks", "1")])
            .client_config(&[], &guaranteed)
            .expect_err("acks=1 refused");
        assert_eq!(err.key, "acks");
        assert_eq!(
            err.to_string(),
            "--kafka-option acks=1 is refused: sluice needs acks=all because a 202 means every in-sync replica has the event; remove the option"
        );
        // Aliases and spelling variants are the same setting.
        let alias =
            args_with(&[("request.required.acks", "0")]).client_config(&[], &guaranteed).expect_err("alias refused");
        assert_eq!(alias.option, "request.required.acks");
        let auto =
            args_with(&[("auto.commit.enable", "TRUE")]).check_guarantees(&guaranteed).expect_err("alias refused");
        assert_eq!(auto.key, "enable.auto.commit");
        // Restating the required value is allowed, and the guaranteed value always wins.
        let same =
            args_with(&[("acks", "-1"), ("ENABLE.AUTO.COMMIT", "False")]).client_config(&[("acks", "1")], &guaranteed);
        let config = same.expect("same values are fine");
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
    }
}
