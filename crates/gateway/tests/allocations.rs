//! Heap allocations per event on `/v1/events`' validation and encoding path, counted by dhat's
//! heap profiler (the only test in this binary: the counts are process-wide).
//!
//! What is counted: splitting a 100-event body into raw events (`body::events`) and turning each
//! into its record (`event_record::record`), as `ingest` does, against the tree path it replaced
//! (parse into values, `Event::from_api`, serialize). The events are loadgen's: an id, a key, 256
//! bytes of `data`.

use chrono::Utc;
use gateway::{
    body::{self, Format},
    error::Position,
    event_record,
    producer::Outgoing,
};
use sluice_core::Event;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const EVENTS: usize = 100;
const ROUNDS: usize = 50;

fn body() -> String {
    let events: Vec<String> = (0..EVENTS)
        .map(|n| {
            let pad = "x".repeat(256 - 17 - n.to_string().len());
            format!(
                r#"{{"id":"{}","type":"bench","key":"k{n}","data":{{"seq":{n},"pad":"{pad}"}}}}"#,
                uuid::Uuid::now_v7()
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// Allocations (blocks) per event over `ROUNDS` requests of `body`, for one way of making the
/// records.
fn blocks_per_event(body: &str, make: impl Fn(&serde_json::value::RawValue, Position) -> Outgoing) -> f64 {
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..ROUNDS {
        let raws = body::events(Format::Json, body.as_bytes(), 1000).expect("a valid body");
        let records: Vec<Outgoing> = raws.into_iter().map(|(at, raw)| make(raw, at)).collect();
        assert_eq!(records.len(), EVENTS);
    }
    (dhat::HeapStats::get().total_blocks - before) as f64 / (ROUNDS * EVENTS) as f64
}

#[test]
fn records_cost_a_bounded_number_of_allocations_per_event() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let body = body();
    let received_at = Utc::now();
    let scanned =
        blocks_per_event(&body, |raw, at| event_record::record(1 << 20, None, raw, at, received_at).expect("accepted"));
    let tree = blocks_per_event(&body, |raw, at| {
        let value = body::value(raw, at, 1 << 20).expect("parses");
        Outgoing::new(&Event::from_api(value, received_at).expect("valid"))
    });
    eprintln!("allocations per event: scan {scanned:.2}, tree {tree:.2}");
    // Two per event (the record's key and value) and a share of the request's two vectors;
    // measured 2.09 against the tree path's 20.09.
    assert!(scanned <= 2.5, "{scanned} allocations per event");
    assert!(scanned * 4.0 <= tree, "scan {scanned} vs tree {tree}");
}
