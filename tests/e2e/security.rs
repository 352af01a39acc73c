//! The security basics: Kafka over SASL/SCRAM through --kafka-option, PostgreSQL over TLS
//! through the URL's sslmode. (API keys: gateway.rs; secrets in logs: sinker.rs.)

use std::time::Duration;

use reqwest::Client;
use serde_json::json;

use crate::helpers::{eventually, TestEnv};

/// The local stack's SASL_PLAINTEXT listener with the SCRAM user created at format time.
fn sasl_brokers() -> String {
    std::env::var("KAFKA_SASL_BROKERS").unwrap_or_else(|_| "127.0.0.1:9094".to_owned())
}

const SCRAM: [&str; 8] = [
    "--kafka-option",
    "security.protocol=SASL_PLAINTEXT",
    "--kafka-option",
    "sasl.mechanism=SCRAM-SHA-256",
    "--kafka-option",
    "sasl.username=sluice",
    "--kafka-option",
    "sasl.password=sluice-secret",
];

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_kafka_and_tls_postgres_carry_an_event_end_to_end() {
    let env = TestEnv::new(2).await;
    let sasl = sasl_brokers();
    let tls_url = format!("{}?sslmode=require", env.database_url);

    let mut args: Vec<&str> = vec!["--brokers", &sasl];
    args.extend_from_slice(&SCRAM);
    let mut gateway = env.gateway(&args);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    let mut sinker_args = args.clone();
    sinker_args.extend_from_slice(&["--database-url", &tls_url]);
    let mut sinker = env.sinker(&sinker_args);
    sinker.wait_ready("/readyz", Duration::from_secs(30)).await;

    let r = Client::new().post(gateway.url("/v1/events")).json(&json!({"type": "secure"})).send().await.expect("post");
    assert_eq!(r.status(), 202);
    env.wait_rows(1, Duration::from_secs(30)).await;

    // The sinker's sessions really are encrypted.
    let ssl: bool = sqlx::query_scalar(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'sluice-sinker' AND a.datname = current_database()",
    )
    .fetch_one(&env.pool)
    .await
    .expect("pg_stat_ssl");
    assert!(ssl, "sinker connections use TLS");
    for p in [&gateway, &sinker] {
        assert!(!p.logs().contains("sluice-secret"), "{}: the SASL password reached the logs", p.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_scram_password_is_refused_and_nothing_is_accepted() {
    let env = TestEnv::new(1).await;
    let sasl = sasl_brokers();
    let mut args: Vec<&str> = vec!["--brokers", &sasl];
    args.extend_from_slice(&SCRAM[..6]);
    args.extend_from_slice(&["--kafka-option", "sasl.password=not-the-password"]);
    let mut gateway = env.gateway(&args);
    gateway.wait_ready("/healthz", Duration::from_secs(30)).await;
    // Readiness starts as "not checked yet" (503 too): wait for the broker check's own verdict.
    let reason = eventually(Duration::from_secs(30), "readiness reports the failed broker check", || async {
        let r = reqwest::get(gateway.url("/readyz")).await.ok()?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.ok()?;
        let reason = body["reason"].as_str()?.to_owned();
        (status == 503 && reason.starts_with("broker unreachable")).then_some(reason)
    })
    .await;
    assert!(!reason.contains("not-the-password"), "the password reached /readyz: {reason}");
    eventually(Duration::from_secs(30), "writes refused with 503", || async {
        let r = Client::new().post(gateway.url("/v1/events")).json(&json!({"type": "x"})).send().await.ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 0);
    assert!(!gateway.logs().contains("not-the-password"));
}
