//! A real browser posts events: headless Chromium loads a page from another origin than the
//! gateway's (pages/browser.html, served by `page_server`), which sends events with `fetch`
//! (JSON with a bearer token, preflighted; and gzipped in the page with CompressionStream) and
//! with `navigator.sendBeacon` on `pagehide` (text/plain, key in the query string). The rows
//! are read from PostgreSQL, written by a running sinker. The same page from an origin the
//! gateway does not allow, with the same valid key, gets nothing in.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    chromium::{self, Chromium},
    helpers::{eventually, random_name, Proc, TestEnv},
    page_server::PageServer,
};

const PAGE: &str = include_str!("pages/browser.html");
const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "pk-browser-test-6d1f";

/// The ids one page load sends: one JSON fetch, two gzipped, one beacon.
struct PageIds {
    json: Uuid,
    gzip1: Uuid,
    gzip2: Uuid,
    beacon: Uuid,
}

impl PageIds {
    fn new() -> Self {
        Self { json: Uuid::now_v7(), gzip1: Uuid::now_v7(), gzip2: Uuid::now_v7(), beacon: Uuid::now_v7() }
    }

    fn all(&self) -> BTreeSet<Uuid> {
        [self.json, self.gzip1, self.gzip2, self.beacon].into()
    }

    fn page(&self, gateway: &Proc) -> String {
        let ids = json!({"json": self.json, "gzip1": self.gzip1, "gzip2": self.gzip2, "beacon": self.beacon});
        PAGE.replace("{{GATEWAY}}", &gateway.url("")).replace("{{KEY}}", KEY).replace("{{IDS}}", &ids.to_string())
    }
}

async fn rows_among(env: &TestEnv, ids: &BTreeSet<Uuid>) -> BTreeSet<Uuid> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let rows: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM events WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&env.pool)
        .await
        .expect("query events");
    rows.into_iter().collect()
}

/// Loads the page in Chromium and waits for its report and for it to leave (which will fire
/// `pagehide` once the next page commits). Returns the report, and the browser: closing it
/// could cancel a beacon still on its way, so the caller keeps it until the gateway saw it.
async fn load(server: &PageServer) -> (Value, Chromium) {
    let browser = Chromium::open(&format!("{}/page", server.origin()));
    let visit = async {
        let report = server.wait_for("POST", "/report", WAIT).await;
        server.wait_for("GET", "/bye", WAIT).await;
        report
    };
    // Bounded below the waits' own bound, so a stuck page says what Chromium logged.
    let report = tokio::time::timeout(WAIT - Duration::from_secs(5), visit)
        .await
        .unwrap_or_else(|_| panic!("the page never reported and left; chromium's log:\n{}", browser.logs()));
    let report = serde_json::from_str(&report).unwrap_or_else(|e| panic!("the page's report is JSON ({e}): {report}"));
    (report, browser)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_in_chromium_gets_its_fetches_and_its_beacon_in_and_a_disallowed_origin_gets_nothing() {
    tokio::task::spawn_blocking(chromium::binary).await.expect("chromium is installed");
    let env = TestEnv::new(2).await;
    env.migrate();
    let allowed_ids = PageIds::new();
    let blocked_ids = PageIds::new();

    // Ports first (the gateway's list of origins needs them), pages once the gateway's port is known.
    let allowed = PageServer::start().await;
    let blocked = PageServer::start().await;
    let keys = std::env::temp_dir().join(format!("{}.toml", random_name("sluice-browser-keys")));
    let file = format!("[[key]]\nname = \"website\"\nkey = \"{KEY}\"\nallowed_origins = [\"{}\"]\n", allowed.origin());
    std::fs::write(&keys, file).expect("write the keys file");
    let keys_arg = keys.to_str().expect("utf-8 path").to_owned();
    let origin = allowed.origin();
    let mut gateway =
        env.gateway(&["--api-keys-file", &keys_arg, "--cors-allow-origins", &origin, "--log-filter", "debug"]);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    let mut sinker = env.sinker(&[]);
    sinker.wait_ready("/readyz", Duration::from_secs(30)).await;
    allowed.set_page(allowed_ids.page(&gateway));
    blocked.set_page(blocked_ids.page(&gateway));

    // The disallowed origin first: both fetches fail in the page (their preflights are refused),
    // and the beacon, which needs no preflight, is refused at the gateway.
    let (report, browser) = load(&blocked).await;
    for name in ["json", "gzip"] {
        assert!(
            report[name]["error"].as_str().is_some_and(|e| e.contains("TypeError")),
            "{name} failed in the page: {report}"
        );
    }
    eventually(WAIT, "the gateway refused the blocked page's 2 preflights and its beacon", || async {
        let refused = gateway.metric("gateway_request_errors_total", &[("code", "origin_not_allowed")]).await?;
        (refused >= 3.0).then_some(())
    })
    .await;
    drop(browser);

    // The allowed origin: both fetches answered 202, and the page could read the answers (a
    // browser hides the status and body of a cross-origin answer without CORS headers).
    let (report, browser) = load(&allowed).await;
    assert_eq!(report["json"]["status"], 202, "{report}");
    assert_eq!(report["json"]["body"]["ids"], json!([allowed_ids.json]));
    assert_eq!(report["gzip"]["status"], 202, "{report}");
    assert_eq!(report["gzip"]["body"]["ids"], json!([allowed_ids.gzip1, allowed_ids.gzip2]));

    // Every event of the allowed page, the beacon's included, is a row; then (that was the
    // barrier) none of the blocked page's.
    let expected = allowed_ids.all();
    eventually(WAIT, "the allowed page's 4 rows in events", || async {
        (rows_among(&env, &expected).await == expected).then_some(())
    })
    .await;
    drop(browser);
    env.wait_offsets_at_high_watermarks(WAIT).await;
    assert_eq!(env.row_count().await, 4, "exactly the allowed page's rows");
    assert!(rows_among(&env, &blocked_ids.all()).await.is_empty(), "the blocked page got nothing in");
    let beacon: (String, Value) = sqlx::query_as("SELECT type, data FROM events WHERE id = $1")
        .bind(allowed_ids.beacon)
        .fetch_one(&env.pool)
        .await
        .expect("the beacon's row");
    assert_eq!(beacon, ("page_hide".to_owned(), json!({"via": "sendBeacon"})));
    let refused = gateway.metric("gateway_request_errors_total", &[("code", "origin_not_allowed")]).await;
    assert_eq!(refused, Some(3.0), "2 preflights and 1 beacon of the blocked page, nothing else");
    assert!(!gateway.logs().contains(KEY), "the key (in the beacon's query string) reached the debug log");
    let _ = std::fs::remove_file(keys);
}

/// Where the README's snippet posts to; the test puts the gateway's address there.
const README_GATEWAY: &str = "const GATEWAY = \"https://events.example.com/v1/events\";";

/// The page snippet of the README's "Browsers" section, as written there, and its key.
fn readme_snippet() -> (String, String) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme.split("### Browsers").nth(1).expect("the README has a Browsers section");
    let start = section.find("```html\n").expect("an html snippet in the Browsers section") + "```html\n".len();
    let snippet = &section[start..];
    let snippet = &snippet[..snippet.find("```").expect("the snippet ends")];
    assert!(snippet.contains(README_GATEWAY), "the snippet sets GATEWAY as the test expects: {snippet}");
    let key_line = snippet.lines().find(|l| l.contains("const KEY = \"")).expect("the snippet sets KEY");
    let key = key_line.split('"').nth(1).expect("a quoted key").to_owned();
    (snippet.to_owned(), key)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_page_snippet_gets_its_fetch_and_its_beacon_in() {
    tokio::task::spawn_blocking(chromium::binary).await.expect("chromium is installed");
    let env = TestEnv::new(1).await;
    env.migrate();
    let server = PageServer::start().await;
    let origin = server.origin();
    let (snippet, key) = readme_snippet();
    // The README's key, restricted to the page's origin as the README advises.
    let keys = std::env::temp_dir().join(format!("{}.toml", random_name("sluice-readme-keys")));
    let file = format!("[[key]]\nname = \"shop-website\"\nkey = \"{key}\"\nallowed_origins = [\"{origin}\"]\n");
    std::fs::write(&keys, file).expect("write the keys file");
    let keys_arg = keys.to_str().expect("utf-8 path").to_owned();
    let mut gateway = env.gateway(&["--cors-allow-origins", &origin, "--api-keys-file", &keys_arg]);
    gateway.wait_ready("/readyz", Duration::from_secs(30)).await;
    let mut sinker = env.sinker(&[]);
    sinker.wait_ready("/readyz", Duration::from_secs(30)).await;

    // The snippet as written, plus what a page would do: one more event and a flush (by fetch),
    // then one event left in the queue as the page goes (for the beacon).
    let snippet = snippet.replace(README_GATEWAY, &format!("const GATEWAY = \"{}\";", gateway.url("/v1/events")));
    let driver = r#"<script>
  track("click", { n: 1 });
  flush().then(() => {
    track("leave", {});
    fetch("/report", { method: "POST", body: JSON.stringify("flushed") }).then(() => { location.href = "/bye"; });
  });
</script>"#;
    server.set_page(format!("<!doctype html>\n<meta charset=\"utf-8\">\n{snippet}{driver}\n"));

    let (report, browser) = load(&server).await;
    assert_eq!(report, json!("flushed"));
    env.wait_rows(3, WAIT).await;
    drop(browser);
    env.wait_offsets_at_high_watermarks(WAIT).await;
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT type, data FROM events ORDER BY type").fetch_all(&env.pool).await.expect("rows");
    let expected = [("click", json!({"n": 1})), ("leave", json!({})), ("page_view", json!({"path": "/page"}))];
    assert_eq!(rows, expected.map(|(t, d)| (t.to_owned(), d)));
    let _ = std::fs::remove_file(keys);
}
