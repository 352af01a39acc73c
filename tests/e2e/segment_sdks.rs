//! Segment's own SDKs, unmodified, pointed at the gateway with their host option: every call
//! becomes exactly one row, with the documented mapping, and the same messages sent twice
//! (fixed messageIds, a second process) are still one row each.
//!
//! The clients are installed by the test itself, with npm and pip, into the git-ignored state
//! directory (`$SLUICE_STATE_DIR`, default `<repo>/.stack`), once: a later run finds them there.
//! Versions are pinned so that a run is repeatable.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Proc, TestEnv};

const NODE_SDK: &str = "@segment/analytics-node@3.1.0";
const PYTHON_SDK: &str = "segment-analytics-python==2.4.0";
const WRITE_KEY: &str = "sdk-write-key-1";
const WAIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the clients are installed: under the stack's state directory, which git ignores.
fn clients_dir() -> PathBuf {
    let state = std::env::var_os("SLUICE_STATE_DIR").map_or_else(|| repo().join(".stack"), PathBuf::from);
    state.join("sdk-clients")
}

fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Installs into `dir` with `install` unless a finished install is there (its marker file is
/// written last, so an interrupted install is redone from scratch). One install at a time:
/// tests run in parallel, and two of them installing into one folder break each other.
fn installed(dir: &Path, install: impl FnOnce(&Path)) -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let marker = dir.join("installed");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("clients dir");
        install(dir);
        std::fs::write(&marker, b"").expect("marker");
    }
    dir.to_path_buf()
}

fn node_client() -> PathBuf {
    let dir = clients_dir().join("node-analytics-3.1.0");
    installed(&dir, |dir| {
        run(
            "npm install",
            Command::new("npm").args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(dir).arg(NODE_SDK),
        );
    })
}

fn python_client() -> PathBuf {
    let dir = clients_dir().join("python-analytics-2.4.0");
    installed(&dir, |dir| {
        run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(dir.join("venv")));
        run("pip install", Command::new(dir.join("venv/bin/python")).args(["-m", "pip", "install", "-q", PYTHON_SDK]));
    })
}

/// What a client script printed: its failures and every request body it sent.
struct Sent {
    failures: Vec<String>,
    /// (message as sent, the batch's sentAt)
    messages: Vec<(Value, String)>,
    ids: Value,
}

fn parse(output: &str) -> Sent {
    let line = output.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("client output {output:?}: {e}"));
    let failures = report["failures"].as_array().into_iter().flatten().map(|f| f.to_string()).collect();
    let mut messages = Vec::new();
    for batch in report["batches"].as_array().into_iter().flatten() {
        let sent_at = batch["sentAt"].as_str().expect("sentAt").to_owned();
        for message in batch["batch"].as_array().expect("batch") {
            messages.push((message.clone(), sent_at.clone()));
        }
    }
    Sent { failures, messages, ids: report["ids"].clone() }
}

fn time(s: &str) -> DateTime<Utc> {
    let t = DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc);
    sluice_core::event::to_micros(t)
}

type Row = (Uuid, String, Option<String>, DateTime<Utc>, DateTime<Utc>, Value);

async fn rows(env: &TestEnv) -> Vec<Row> {
    sqlx::query_as("SELECT id, type, key, ts, received_at, data FROM events").fetch_all(&env.pool).await.expect("rows")
}

async fn gateway_and_sinker(env: &TestEnv) -> (Proc, Proc) {
    env.migrate();
    let mut gateway = env.gateway(&["--api-keys", &format!("other-key,{WRITE_KEY}")]);
    gateway.wait_ready("/readyz", WAIT).await;
    let sinker = env.sinker(&[]);
    (gateway, sinker)
}

/// Sends the script's six calls twice (two processes), then checks there is exactly one row per
/// call, mapped as documented: `expected_id` gives a messageId's event id.
async fn six_calls_twice_are_six_rows(
    env: &TestEnv,
    send: impl Fn() -> String,
    expected_id: impl Fn(&str, &Sent) -> Uuid,
) {
    let first = parse(&send());
    let second = parse(&send());
    for sent in [&first, &second] {
        assert!(sent.failures.is_empty(), "the client reported failures: {:?}", sent.failures);
        assert_eq!(sent.messages.len(), 6, "six messages sent");
    }
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.high_watermarks().values().sum::<i64>(), 12, "twelve records: each call twice");
    let rows = rows(env).await;
    assert_eq!(rows.len(), 6, "one row per call, however often it was sent: {rows:#?}");

    for (id, event_type, key, ts, received_at, data) in &rows {
        let message_id = data["messageId"].as_str().expect("data is the message, with its messageId");
        let (message, sent_at) = first
            .messages
            .iter()
            .chain(&second.messages)
            .find(|(m, _)| m == data)
            .unwrap_or_else(|| panic!("row data {data} is a message as sent"));
        assert_eq!(*id, expected_id(message_id, &first), "{message_id}: id");
        let kind = message["type"].as_str().expect("type");
        let expected_type = if kind == "track" { message["event"].as_str().expect("event") } else { kind };
        assert_eq!(event_type, expected_type, "{message_id}: type");
        let expected_key = message["userId"].as_str().or_else(|| message["anonymousId"].as_str());
        assert_eq!(key.as_deref(), expected_key, "{message_id}: key");
        // ts = timestamp + (received_at - sentAt), to the microsecond.
        let timestamp = time(message["timestamp"].as_str().expect("the SDKs always set timestamp"));
        let skew = *received_at - time(sent_at);
        assert_eq!(*ts, timestamp + skew, "{message_id}: ts = timestamp + (received_at - sentAt)");
        assert!(
            skew >= chrono::TimeDelta::zero() && skew < chrono::TimeDelta::seconds(30),
            "{message_id}: skew {skew}"
        );
    }
    let mut types: Vec<&str> = rows.iter().map(|r| r.5["type"].as_str().unwrap_or("")).collect();
    types.sort_unstable();
    assert_eq!(types, ["alias", "group", "identify", "page", "screen", "track"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_node_calls_become_one_row_each() {
    let client = node_client();
    let env = TestEnv::new(3).await;
    let (gateway, _sinker) = gateway_and_sinker(&env).await;
    let script = repo().join("tests/e2e/sdk/segment_node.js");
    let host = gateway.url("");
    let send = || {
        run(
            "node segment_node.js",
            Command::new("node").arg(&script).arg(&host).arg(WRITE_KEY).env("NODE_PATH", client.join("node_modules")),
        )
    };
    six_calls_twice_are_six_rows(&env, send, |message_id, _| {
        Uuid::parse_str(message_id).unwrap_or_else(|_| {
            let by_python = Command::new("python3")
                .args(["-c", "import sys,uuid;print(uuid.uuid5(uuid.UUID(sys.argv[1]),sys.argv[2]))"])
                .arg("167b82ba-c7dd-46be-a6d1-43e7838f763c")
                .arg(message_id)
                .output()
                .expect("python3 uuid5");
            String::from_utf8_lossy(&by_python.stdout).trim().parse().expect("a uuid")
        })
    })
    .await;
}

/// The README's Node snippet ("### SDKs"), as written there but for its key and host, runs
/// with node and its call is one row.
#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_node_snippet_runs_as_written() {
    let client = node_client();
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme.split("### SDKs").nth(1).expect("the README has an SDKs section");
    let snippet = section.split("```js\n").nth(1).and_then(|s| s.split("```").next()).expect("a js block");
    for (placeholder, what) in [("'my-key'", "key"), ("'http://localhost:8080'", "host")] {
        assert!(snippet.contains(placeholder), "the snippet's {what} is {placeholder} as the test expects: {snippet}");
    }
    let env = TestEnv::new(1).await;
    let (gateway, _sinker) = gateway_and_sinker(&env).await;
    let snippet = snippet
        .replace("'my-key'", &format!("'{WRITE_KEY}'"))
        .replace("'http://localhost:8080'", &format!("'{}'", gateway.url("")));
    let file = clients_dir().join(format!("readme-snippet-{}.js", std::process::id()));
    std::fs::write(&file, snippet).expect("write the snippet");
    let output = Command::new("node").arg(&file).env("NODE_PATH", client.join("node_modules")).output().expect("node");
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "node: {}\n{stderr}", output.status);
    env.wait_rows(1, WAIT).await;
    let rows = rows(&env).await;
    assert_eq!(rows.len(), 1);
    let (_, event_type, key, _, _, data) = &rows[0];
    assert_eq!((event_type.as_str(), key.as_deref()), ("Order Completed", Some("u-1")));
    assert_eq!(data["properties"]["total"], 42.5);
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_python_calls_become_one_row_each() {
    let client = python_client();
    let env = TestEnv::new(3).await;
    let (gateway, _sinker) = gateway_and_sinker(&env).await;
    let script = repo().join("tests/e2e/sdk/segment_python.py");
    let host = gateway.url("");
    let send = || {
        run(
            "python segment_python.py",
            Command::new(client.join("venv/bin/python")).arg(&script).arg(&host).arg(WRITE_KEY),
        )
    };
    six_calls_twice_are_six_rows(&env, send, |message_id, sent| {
        Uuid::parse_str(message_id)
            .unwrap_or_else(|_| sent.ids[message_id].as_str().expect("python's uuid5").parse().expect("a uuid"))
    })
    .await;
}
