//! Time per record of the routes' decoder (`pruned::decode_pruned`, one pass) against the tree
//! decoder (`wire::decode`), interleaved in one process (each round times every decoder once,
//! in a rotating order; medians over the rounds):
//! `cargo run --release -p sluice-core --example decode_timing [rounds] [decoder]` (a decoder's
//! name, e.g. `nested`, times that one alone: for `perf record`; `VERBOSE=1` prints each round).
//!
//! The records are the gateway's (`wire::encode`), with 256 bytes of `data` in eight top-level
//! fields, two of them nested (scenario 8's six, and a customer object and a flag):
//! - "2 of 8": routes read `data.user` and `data.amount`; the rest is walked, not built;
//! - "all 8": routes read every top-level field whole (nothing can be skipped);
//! - "nested": routes read `data.customer.id` and `data.attrs.tags[1]`.

use std::{hint::black_box, time::Instant};

use chrono::Utc;
use sluice_core::{
    data_paths::{DataPaths, Step},
    pruned::decode_pruned,
    wire,
};

#[path = "../tests/support/decode_records.rs"]
mod decode_records;

use decode_records::{paths, records};

const RECORDS: usize = 1000;
/// Passes over the records per timing: short timings, many rounds, so that a neighbour's load
/// falls on every decoder alike (and the medians leave it out).
const PASSES: usize = 4;

/// A decoder: whether it decoded the record.
type Decoder<'a> = Box<dyn Fn(&[u8]) -> bool + 'a>;

/// Nanoseconds per record of one decoder over every record, `PASSES` times.
fn time(records: &[Vec<u8>], decode: &dyn Fn(&[u8]) -> bool) -> f64 {
    let started = Instant::now();
    for _ in 0..PASSES {
        for record in records {
            assert!(black_box(decode(black_box(record))));
        }
    }
    started.elapsed().as_nanos() as f64 / (PASSES * records.len()) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[allow(clippy::print_stdout)]
fn main() {
    use Step::{Field as F, Index as I};
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(61);
    let records = records(RECORDS);
    let data_bytes = {
        let event = wire::decode(Some(&records[0]), None, Utc::now(), 1 << 20).unwrap_or_else(|r| panic!("{r:?}"));
        serde_json::to_string(&event.data).map_or(0, |s| s.len())
    };
    let now = Utc::now();
    let cases: [(&str, DataPaths); 3] = [
        ("2 of 8", paths(&[&[F("user")], &[F("amount")]])),
        (
            "all 8",
            paths(&[
                &[F("user")],
                &[F("n")],
                &[F("amount")],
                &[F("label")],
                &[F("at")],
                &[F("attrs")],
                &[F("customer")],
                &[F("ok")],
            ]),
        ),
        ("nested", paths(&[&[F("customer"), F("id")], &[F("attrs"), F("tags"), I(1)]])),
    ];
    // Every decoder agrees on these records before anything is timed.
    for record in &records {
        let tree = wire::decode(Some(record), None, now, 1 << 20);
        for (_, paths) in &cases {
            let mut expected = tree.clone();
            if let Ok(event) = &mut expected {
                paths.prune(&mut event.data);
            }
            assert_eq!(decode_pruned(Some(record), None, now, 1 << 20, paths), expected);
        }
    }
    println!(
        "{} records of {} bytes ({data_bytes} bytes of data), {PASSES} passes per timing, {rounds} rounds",
        records.len(),
        records[0].len()
    );
    let tree = |r: &[u8]| wire::decode(Some(r), None, now, 1 << 20).is_ok();
    let mut decoders: Vec<(&str, Decoder<'_>)> = vec![("tree", Box::new(tree))];
    for (name, paths) in &cases {
        decoders.push((name, Box::new(move |r: &[u8]| decode_pruned(Some(r), None, now, 1 << 20, paths).is_ok())));
    }
    if let Some(only) = std::env::args().nth(2) {
        decoders.retain(|(name, _)| *name == only);
    }
    let verbose = std::env::var_os("VERBOSE").is_some();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); decoders.len()];
    for round in 0..rounds {
        for k in 0..decoders.len() {
            let at = (round + k) % decoders.len();
            ns[at].push(time(&records, &*decoders[at].1));
        }
        if verbose {
            let line: Vec<String> =
                decoders.iter().zip(&ns).map(|((name, _), ns)| format!("{name} {:.0}", ns[round])).collect();
            println!("round {round}: ns per record: {}", line.join(", "));
        }
    }
    if decoders[0].0 != "tree" {
        // One decoder alone (for a profile): its median only.
        println!("median over {rounds} rounds: {} {:.0} ns per record", decoders[0].0, median(ns[0].clone()));
        return;
    }
    let tree_median = median(ns[0].clone());
    let fastest = |ns: &[f64]| ns.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "ns per record over {rounds} rounds: median (its ratio to the tree's; the median of the rounds' \
         ratios, and their range), fastest round (its ratio to the tree's fastest)"
    );
    println!("  tree (wire::decode): {tree_median:.0}, fastest {:.0}", fastest(&ns[0]));
    for (k, (name, _)) in decoders.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = ns[k].iter().zip(&ns[0]).map(|(a, tree)| a / tree).collect();
        println!(
            "  one pass, {name}: {:.0} ({:.2}x; rounds {:.2}x, {:.2}x to {:.2}x), fastest {:.0} ({:.2}x)",
            median(ns[k].clone()),
            median(ns[k].clone()) / tree_median,
            median(ratios.clone()),
            fastest(&ratios),
            ratios.iter().copied().fold(0.0, f64::max),
            fastest(&ns[k]),
            fastest(&ns[k]) / fastest(&ns[0]),
        );
    }
}
