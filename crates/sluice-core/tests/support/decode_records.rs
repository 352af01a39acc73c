//! The records and path sets the routes' decoder is measured on, shared by
//! `examples/decode_timing.rs` (time per record) and `tests/pruned_allocations.rs` (heap
//! allocations per record): the gateway's records (`wire::encode`), with 256 bytes of `data` in
//! eight top-level fields, two of them nested.

use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_core::{
    data_paths::{DataPaths, Step},
    wire, Event,
};

/// `count` records as the gateway writes them.
pub fn records(count: usize) -> Vec<Vec<u8>> {
    let received_at =
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00.000002Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
    (0..count)
        .map(|n| {
            let mut data = json!({
                "user": uuid::Uuid::new_v4(),
                "n": n,
                "amount": format!("{}.{:02}", n % 100_000, n % 100),
                "label": format!("label {}", n % 1000),
                "at": "2026-01-01T00:00:00Z",
                "attrs": {"n": n % 7, "tags": ["a", "b"], "pad": ""},
                "customer": {"id": n * 7, "tier": "gold"},
                "ok": n % 2 == 0,
            });
            let len = serde_json::to_string(&data).map_or(0, |s| s.len());
            data["attrs"]["pad"] = json!("p".repeat(256usize.saturating_sub(len)));
            let event =
                Event::from_api(json!({"type": "bench.order", "key": format!("u{n}"), "data": data}), received_at)
                    .unwrap_or_else(|e| panic!("{e}"));
            wire::encode(&event).1
        })
        .collect()
}

/// The trie of these paths.
pub fn paths(list: &[&[Step<'_>]]) -> DataPaths {
    let mut paths = DataPaths::new();
    for steps in list {
        paths.add(steps.iter().copied());
    }
    paths
}
