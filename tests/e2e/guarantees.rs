//! `--kafka-option` may tune the clients but never switch off what the delivery guarantee rests
//! on: such an option stops the binary at start with an error naming the setting and why.

use std::time::Duration;

use crate::helpers::TestEnv;

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_refuses_options_that_weaken_acks_idempotence_or_the_delivery_timeout() {
    let env = TestEnv::new(1).await;
    for (option, key) in [
        ("acks=1", "acks"),
        ("request.required.acks=0", "acks"),
        ("enable.idempotence=false", "enable.idempotence"),
        ("message.timeout.ms=300000", "message.timeout.ms"),
        ("message.max.bytes=1000", "message.max.bytes"),
    ] {
        let mut gateway = env.gateway(&["--kafka-option", option]);
        let status = gateway.wait_exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "gateway started with --kafka-option {option}");
        let logs = gateway.logs();
        assert!(
            logs.contains(&format!("--kafka-option {option} is refused: sluice needs {key}=")),
            "the error names the option and the setting; log:\n{logs}"
        );
    }
    // Restating a guaranteed value and tuning anything else is fine.
    let mut gateway = env.gateway(&["--kafka-option", "acks=all", "--kafka-option", "linger.ms=1"]);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sinker_refuses_options_that_would_commit_before_the_database() {
    let env = TestEnv::new(1).await;
    env.migrate();
    for (option, key) in [
        ("enable.auto.commit=true", "enable.auto.commit"),
        ("enable.auto.offset.store=true", "enable.auto.offset.store"),
        ("isolation.level=read_uncommitted", "isolation.level"),
        ("auto.offset.reset=latest", "auto.offset.reset"),
        ("group.id=someone-else", "group.id"),
        ("acks=1", "acks"),
    ] {
        let mut sinker = env.sinker(&["--kafka-option", option]);
        let status = sinker.wait_exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "sinker started with --kafka-option {option}");
        let logs = sinker.logs();
        assert!(
            logs.contains(&format!("--kafka-option {option} is refused: sluice needs {key}=")),
            "the error names the option and the setting; log:\n{logs}"
        );
    }
    let mut sinker = env.sinker(&["--kafka-option", "enable.auto.commit=false"]);
    sinker.wait_ready("/readyz", Duration::from_secs(60)).await;
}
