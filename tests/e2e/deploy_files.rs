//! The operator's kit in deploy/ is valid: alert rules pass promtool's checks and unit tests,
//! the Prometheus config loads, manifests and the dashboard parse.

use std::{path::PathBuf, process::Command};

use serde::Deserialize;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .expect("promtool is installed (make test installs Debian's prometheus package)");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "config", "prometheus-compose.yml"]);
}

#[test]
fn every_alert_has_a_unit_test() {
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(repo().join("deploy/prometheus/alerts_test.yml")).expect("alerts_test.yml");
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert!(tests.contains(&format!("alertname: {name}\n")), "alert {name} has no promtool unit test");
    }
}

#[test]
fn manifests_compose_and_dashboard_parse() {
    let mut yaml_files = vec![repo().join("deploy/docker-compose.yml")];
    for entry in std::fs::read_dir(repo().join("deploy/kubernetes")).expect("deploy/kubernetes") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            yaml_files.push(path);
        }
    }
    assert!(yaml_files.len() >= 6, "{yaml_files:?}");
    for path in &yaml_files {
        let text = std::fs::read_to_string(path).expect("read");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if path.starts_with(repo().join("deploy/kubernetes")) && !path.ends_with("kustomization.yaml") {
                assert!(
                    value.get("apiVersion").is_some() && value.get("kind").is_some(),
                    "{}: apiVersion and kind",
                    path.display()
                );
            }
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/sluice.json")).expect("dashboard"))
            .expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let text = dashboard.to_string();
    for metric in [
        "gateway_consumer_lag",
        "sinker_consumer_lag_seconds",
        "sinker_batch_target_rows",
        "sinker_dlq_messages_total",
        "gateway_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(metric), "the dashboard shows {metric}");
    }
    assert!(panels.len() >= 10);
}
