//! Time per event of the two ways `/v1/events` makes records (the scan and the tree path), on
//! loadgen's events (an id, a key, 256 bytes of `data`), interleaved in one process, and the
//! share of both that splits the body into events:
//! `cargo run --release -p gateway --example record_timing`.

use std::time::Instant;

use chrono::Utc;
use gateway::{
    body::{self, Format},
    event_record,
    producer::Outgoing,
};
use sluice_core::Event;

/// As the gateway's binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let events: Vec<String> = (0..100)
        .map(|n| {
            let pad = "x".repeat(256 - 17 - n.to_string().len());
            format!(
                r#"{{"id":"{}","type":"bench","key":"k{n}","data":{{"seq":{n},"pad":"{pad}"}}}}"#,
                uuid::Uuid::now_v7()
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));
    let received_at = Utc::now();
    let rounds = 2000;
    for round in 0..3 {
        let started = Instant::now();
        for _ in 0..rounds {
            let raws = body::events(Format::Json, body.as_bytes(), 1000).unwrap_or_default();
            let n: usize = raws
                .into_iter()
                .filter_map(|(at, raw)| event_record::record(1 << 20, None, raw, at, received_at).ok())
                .map(|r| r.size())
                .sum();
            std::hint::black_box(n);
        }
        let scan = started.elapsed().as_secs_f64() * 1e9 / (rounds * 100) as f64;
        let started = Instant::now();
        for _ in 0..rounds {
            let raws = body::events(Format::Json, body.as_bytes(), 1000).unwrap_or_default();
            let n: usize = raws
                .into_iter()
                .filter_map(|(at, raw)| {
                    let value = body::value(raw, at, 1 << 20).ok()?;
                    Some(Outgoing::new(&Event::from_api(value, received_at).ok()?).size())
                })
                .sum();
            std::hint::black_box(n);
        }
        let tree = started.elapsed().as_secs_f64() * 1e9 / (rounds * 100) as f64;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(body::events(Format::Json, body.as_bytes(), 1000).map(|raws| raws.len()).ok());
        }
        let split = started.elapsed().as_secs_f64() * 1e9 / (rounds * 100) as f64;
        eprintln!(
            "round {round}: ns per event: scan {scan:.0}, tree {tree:.0}, of which the body split (both) {split:.0}"
        );
    }
}
