//! Heap allocations per record of the routes' decoder (`pruned::decode_pruned`, one pass)
//! against the tree decoder (`wire::decode`), counted by dhat's heap profiler (the only test
//! in this binary: the counts are process-wide). Each decoded event is dropped, as the sinker
//! drops it once its operations are built.
//!
//! The records are `support/decode_records.rs`'s, shared with `examples/decode_timing.rs`.

use chrono::Utc;
use sluice_core::{data_paths::Step, pruned::decode_pruned, wire};

#[path = "support/decode_records.rs"]
mod decode_records;

use decode_records::{paths, records};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const RECORDS: usize = 200;

/// Allocations (blocks) per record of one decoder.
fn blocks_per_record(records: &[Vec<u8>], decode: impl Fn(&[u8]) -> bool) -> f64 {
    let before = dhat::HeapStats::get().total_blocks;
    for record in records {
        assert!(decode(record));
    }
    (dhat::HeapStats::get().total_blocks - before) as f64 / records.len() as f64
}

#[test]
fn the_one_pass_allocates_only_what_routes_read() {
    use Step::{Field as F, Index as I};
    let _profiler = dhat::Profiler::builder().testing().build();
    let records = records(RECORDS);
    let now = Utc::now();
    let tree = blocks_per_record(&records, |r| wire::decode(Some(r), None, now, 1 << 20).is_ok());
    let all = ["user", "n", "amount", "label", "at", "attrs", "customer", "ok"].map(|name| [F(name)]);
    let cases = [
        ("2 of 8", paths(&[&[F("user")], &[F("amount")]])),
        ("all 8", paths(&all.iter().map(|p| &p[..]).collect::<Vec<_>>())),
        ("nested", paths(&[&[F("customer"), F("id")], &[F("attrs"), F("tags"), I(1)]])),
    ];
    let mut counts = Vec::new();
    for (name, paths) in &cases {
        let blocks = blocks_per_record(&records, |r| decode_pruned(Some(r), None, now, 1 << 20, paths).is_ok());
        counts.push((name, blocks));
        assert!(blocks < tree, "{name}: {blocks} allocations per record, the tree {tree}");
    }
    let line: Vec<String> = counts.iter().map(|(name, blocks)| format!("{name} {blocks:.1}")).collect();
    eprintln!("allocations per record: tree {tree:.1}, one pass {}", line.join(", "));
    // Measured: the tree 37; the one pass 7 reading 2 of 8 fields (type, key, `data`'s map, the
    // two names and values), 27 reading all 8, 11 reading two nested paths.
    assert!(counts[0].1 * 4.0 <= tree, "{line:?} vs the tree's {tree}");
}
