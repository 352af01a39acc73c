//! The load: clients posting events with ids they chose, keeping a ledger of what the gateway
//! answered for every id. Requests that got 503, 429 or no answer are retried with the same
//! ids; a share of requests resend ids already accepted; a share are bad requests from the
//! gateway's bad-input catalogue.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use reqwest::{header, Client};
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    orders::{OrderBook, Outcome},
    routes_load::{OrderOp, RoutesWorker},
};

/// What the gateway said about each id.
#[derive(Default)]
pub struct Ledger {
    /// Got a 202 at least once.
    pub accepted: HashSet<Uuid>,
    /// Sent only in requests answered 4xx: must never become rows.
    pub refused: HashSet<Uuid>,
    /// Sent, answered 503/429 or not at all, never 202 (yet).
    pub uncertain: HashSet<Uuid>,
    /// Requests by outcome ("202", "400", "503", "connect", ...).
    pub statuses: HashMap<String, u64>,
    pub requests: u64,
    pub retries: u64,
    pub duplicate_resends: u64,
    /// Set by the harness while two of the three brokers are down (below min.insync.replicas).
    pub below_min_isr: bool,
    /// Requests sent and answered while `below_min_isr`, by outcome: none may be a 202.
    pub below_min_isr_statuses: HashMap<String, u64>,
    /// The routes workload: the ids sent as `page.viewed` (whatever the answer).
    pub views: HashSet<Uuid>,
    /// The routes workload: per page view id, how many requests carrying it were answered 202
    /// and how many got no answer (503, 429, none): its rows in the keyless table lie between.
    pub view_answers: HashMap<Uuid, (u32, u32)>,
    /// The routes workload: every order's books, by order id.
    pub orders: HashMap<i64, OrderBook>,
}

/// A request to (re)send: its body and the ids in it.
#[derive(Clone)]
pub(crate) struct Request {
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    pub(crate) ids: Vec<Uuid>,
    /// Expected to be refused (from the bad-input catalogue).
    pub(crate) bad: bool,
    /// The routes workload: the order upserts and deletes in it.
    pub(crate) orders: Vec<OrderOp>,
}

pub struct Load {
    pub url: String,
    pub workers: usize,
    /// Pause between two requests of one worker.
    pub pace: Duration,
    pub ledger: Arc<Mutex<Ledger>>,
    /// Post the routes workload (`routes.rs`) instead of events of type `chaos`.
    pub routes: bool,
}

impl Load {
    /// Runs until `until`, then retries what is still unconfirmed until `settle_by`.
    pub async fn run(&self, seed: u64, until: Instant, settle_by: Instant) {
        let client = Client::builder().timeout(Duration::from_secs(15)).build().unwrap_or_default();
        let mut tasks = Vec::new();
        for w in 0..self.workers {
            let (client, url, ledger, pace) = (client.clone(), self.url.clone(), self.ledger.clone(), self.pace);
            let mut routes = self.routes.then(|| RoutesWorker::new(w));
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w as u64 * 7919));
                let mut retry: Vec<Request> = Vec::new();
                while Instant::now() < until {
                    let request = match retry.pop() {
                        Some(r) => {
                            ledger.lock().map(|mut l| l.retries += 1).ok();
                            r
                        }
                        None => match routes.as_mut() {
                            Some(routes) => routes.next_request(&mut rng, &ledger),
                            None => next_request(&mut rng, &ledger),
                        },
                    };
                    if let Some(wait) = send(&client, &url, &request, &ledger).await {
                        retry.insert(0, request);
                        tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                    }
                    tokio::time::sleep(pace).await;
                }
                // Settle: resend what never got an answer until every request is confirmed.
                while let Some(request) = retry.pop() {
                    if Instant::now() >= settle_by {
                        break;
                    }
                    ledger.lock().map(|mut l| l.retries += 1).ok();
                    if let Some(wait) = send(&client, &url, &request, &ledger).await {
                        retry.insert(0, request);
                        tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Sends once and books the answer. Returns how long to wait before a retry, if one is needed.
async fn send(client: &Client, url: &str, request: &Request, ledger: &Mutex<Ledger>) -> Option<Duration> {
    send_booked(client, url, request, ledger).await.1
}

/// Sends once and books the answer. Returns the outcome ("202", "503", "timeout", ...) and how
/// long to wait before a retry, if one is needed.
async fn send_booked(
    client: &Client,
    url: &str,
    request: &Request,
    ledger: &Mutex<Ledger>,
) -> (String, Option<Duration>) {
    let below_min_isr_at_send = ledger.lock().is_ok_and(|l| l.below_min_isr);
    let result =
        client.post(url).header(header::CONTENT_TYPE, request.content_type).body(request.body.clone()).send().await;
    let (status, retry_after) = match &result {
        Ok(r) => {
            let after = r
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs);
            (r.status().as_u16().to_string(), after)
        }
        Err(e) if e.is_timeout() => ("timeout".to_owned(), None),
        Err(_) => ("connect".to_owned(), None),
    };
    let Ok(mut l) = ledger.lock() else {
        return (status, None);
    };
    l.requests += 1;
    *l.statuses.entry(status.clone()).or_default() += 1;
    if below_min_isr_at_send && l.below_min_isr {
        *l.below_min_isr_statuses.entry(status.clone()).or_default() += 1;
    }
    match status.as_str() {
        "202" => {
            for id in &request.ids {
                l.accepted.insert(*id);
                l.uncertain.remove(id);
            }
            book_orders(&mut l, request, Outcome::Accepted);
            if request.bad {
                // A catalogue entry the gateway accepted: book it as a discrepancy upstream.
                *l.statuses.entry("bad_request_accepted".to_owned()).or_default() += 1;
            }
            (status.clone(), None)
        }
        s if s.starts_with('4') && s != "429" => {
            for id in &request.ids {
                if !l.accepted.contains(id) && !l.uncertain.contains(id) {
                    l.refused.insert(*id);
                }
            }
            book_orders(&mut l, request, Outcome::Refused);
            if !request.bad {
                *l.statuses.entry("good_request_refused".to_owned()).or_default() += 1;
            }
            (status.clone(), None)
        }
        _ => {
            for id in &request.ids {
                if !l.accepted.contains(id) {
                    l.uncertain.insert(*id);
                }
            }
            book_orders(&mut l, request, Outcome::Uncertain);
            (status.clone(), Some(retry_after.unwrap_or(Duration::from_millis(500))))
        }
    }
}

/// Books the answer to a request's page views and order upserts and deletes (the routes
/// workload).
fn book_orders(ledger: &mut Ledger, request: &Request, outcome: Outcome) {
    if outcome != Outcome::Refused {
        for id in &request.ids {
            if ledger.views.contains(id) {
                let answers = ledger.view_answers.entry(*id).or_default();
                if outcome == Outcome::Accepted {
                    answers.0 += 1;
                } else {
                    answers.1 += 1;
                }
            }
        }
    }
    for op in &request.orders {
        let book = ledger.orders.entry(op.order_id()).or_default();
        match *op {
            OrderOp::Upsert { version, .. } => book.book_upsert(version, outcome),
            OrderOp::Delete { .. } => book.book_delete(outcome),
        }
    }
}

/// Sends one request of fresh ids, books it like the load does, and returns the outcome
/// ("202", "503", "timeout", ...). The harness uses it to see when the gateway accepts again.
pub async fn probe(client: &Client, url: &str, ledger: &Mutex<Ledger>) -> String {
    probe_batch(client, url, ledger, 1).await
}

/// Like `probe`, with `n` events in the request.
pub async fn probe_batch(client: &Client, url: &str, ledger: &Mutex<Ledger>, n: usize) -> String {
    let mut rng = StdRng::seed_from_u64(rand::random());
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let request = Request {
        content_type: "application/json",
        body: Value::Array(ids.iter().map(|id| event(&mut rng, *id)).collect()).to_string().into_bytes(),
        ids,
        bad: false,
        orders: Vec::new(),
    };
    send_booked(client, url, &request, ledger).await.0
}

fn event(rng: &mut StdRng, id: Uuid) -> Value {
    json!({"id": id, "type": "chaos", "key": format!("k{}", rng.random_range(0..64)), "data": {"n": rng.random_range(0..1_000_000)}})
}

pub(crate) fn next_request(rng: &mut StdRng, ledger: &Mutex<Ledger>) -> Request {
    let roll: f64 = rng.random();
    if roll < 0.05 {
        // Duplicates: resend ids already accepted.
        let old: Vec<Uuid> =
            ledger.lock().map(|l| l.accepted.iter().take(200).copied().collect::<Vec<_>>()).unwrap_or_default();
        let ids: Vec<Uuid> = old.choose_multiple(rng, 5).copied().collect();
        if !ids.is_empty() {
            ledger.lock().map(|mut l| l.duplicate_resends += ids.len() as u64).ok();
            let events: Vec<Value> = ids.iter().map(|id| event(rng, *id)).collect();
            return Request {
                content_type: "application/json",
                body: Value::Array(events).to_string().into_bytes(),
                ids,
                bad: false,
                orders: Vec::new(),
            };
        }
    }
    if roll > 0.92 {
        return bad_request(rng);
    }
    let n = rng.random_range(1..=10);
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    if rng.random_bool(0.2) {
        let body: String = ids.iter().map(|id| format!("{}\n", event(rng, *id))).collect();
        return Request {
            content_type: "application/x-ndjson",
            body: body.into_bytes(),
            ids,
            bad: false,
            orders: Vec::new(),
        };
    }
    let events: Vec<Value> = ids.iter().map(|id| event(rng, *id)).collect();
    Request {
        content_type: "application/json",
        body: Value::Array(events).to_string().into_bytes(),
        ids,
        bad: false,
        orders: Vec::new(),
    }
}

/// One entry of the gateway's bad-input catalogue. Ids inside must never become rows.
pub(crate) fn bad_request(rng: &mut StdRng) -> Request {
    let good = Uuid::now_v7();
    let other = Uuid::now_v7();
    let (content_type, body): (&'static str, String) = match rng.random_range(0..8) {
        0 => ("application/json", format!(r#"[{{"id":"{good}","type":"ok"}},{{"id":"{other}"}}]"#)),
        1 => ("application/json", format!(r#"[{{"id":"{good}","type":"ok"}},{{"id":"{other}","type":5}}]"#)),
        2 => ("application/json", format!(r#"[{{"id":"{good}","type":"ok"}},{{"id":"not-a-uuid","type":"x"}}]"#)),
        3 => {
            ("application/json", format!(r#"[{{"id":"{good}","type":"ok"}},{{"id":"{other}","type":"x","extra":1}}]"#))
        }
        4 => ("application/json", format!(r#"[{{"id":"{good}","type":"ok"}},{{"id":"{other}","type":"x"#)),
        5 => ("text/csv", format!(r#"{{"id":"{good}","type":"ok"}}"#)),
        6 => ("application/x-ndjson", format!("{{\"id\":\"{good}\",\"type\":\"ok\"}}\n{{\"id\":\"{other}\",\n")),
        _ => ("application/json", format!(r#"{{"id":"{good}","type":"ok","data":[1]}}"#)),
    };
    Request { content_type, body: body.into_bytes(), ids: vec![good, other], bad: true, orders: Vec::new() }
}
