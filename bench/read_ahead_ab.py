#!/usr/bin/env python3
"""`--read-ahead` on and off, one sinker, drains of the same prefilled topics back to back.

Usage: bench/read_ahead_ab.py [ROUNDS] [-- EXTRA SINKER FLAGS]

Prefills a 1-partition topic (300k events) and a 6-partition one (1M events, issue 13's
configuration) through the gateway, then drains each with one sinker (release build, or
BENCH_BIN_DIR), `--read-ahead` and without, alternating which goes first, ROUNDS times (3).
Prints each drain (rows/s, sinker CPU per row, peak RSS, records decoded and batches encoded
ahead) and the ratio of the medians, on/off, per topic. Writes nothing into BENCHMARKS.md.
"""

import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("bench_run", HERE / "run.py")
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


def main():
    args = sys.argv[1:]
    extra = ()
    if "--" in args:
        extra = tuple(args[args.index("--") + 1:])
        args = args[:args.index("--")]
    rounds = int(args[0]) if args else 3
    b = run.Bench(False, tag="read-ahead-ab")
    topics = {p: b.prefill(p, n) for p, n in [(1, 300_000), (6, 1_000_000)]}
    rates = {}
    try:
        for r in range(rounds):
            for p, (topic, n) in topics.items():
                order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
                for mode in order:
                    flags = extra + (("--read-ahead",) if mode == "on" else ())
                    d = b.drain(topic, n, 1, extra=flags, metrics=True)
                    run.drop_db(d["url"])
                    m = d["metrics"] or {}
                    rates.setdefault((p, mode), []).append(d["rows_per_s"])
                    print(f"round {r} partitions {p} read-ahead {mode:3}: {d['rows_per_s']:7.0f} rows/s, "
                          f"sinker CPU {1e6 * d['sinker_cpu_seconds'] / n:.2f} us/row, peak RSS {d['peak_rss_mb']:.0f} MB, "
                          f"load before {d['load_before']}, database {m.get('sinker_batch_commit_seconds_sum', 0):.1f} s, "
                          f"batches {m.get('sinker_batch_rows_count', 0):.0f}, decoded ahead "
                          f"{m.get('sinker_records_decoded_ahead_total', 0):.0f} records, encoded ahead "
                          f"{m.get('sinker_batches_encoded_ahead_total', 0):.0f} batches", flush=True)
    finally:
        for topic, _ in topics.values():
            subprocess.run(["bash", str(run.STACK), "topic-delete", topic],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for p in topics:
        on, off = statistics.median(rates[(p, "on")]), statistics.median(rates[(p, "off")])
        print(f"partitions {p}: read-ahead on {on:.0f} rows/s, off {off:.0f} rows/s (medians of {rounds}): "
              f"{on / off:.3f}x")


if __name__ == "__main__":
    os.chdir(run.REPO)
    main()
