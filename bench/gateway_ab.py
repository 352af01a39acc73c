#!/usr/bin/env python3
"""Two gateway builds against each other, alone (no sinker, no throttle), interleaved.

    python3 bench/gateway_ab.py A_BIN_DIR B_BIN_DIR [--rounds 3] [--secs 5]

Each bin dir holds a `gateway` and a `loadgen` (release builds). Per round and build: a fresh
6-partition topic, the gateway with its defaults, loadgen's closed loop (256-byte `data`) with
100-event requests at 64 connections, then single events at 256 connections. Prints events/s
and the gateway's CPU time per event (user + system, from /proc) for each, and the medians.
CPU per event is the figure that tells the builds apart on a machine the broker shares.
"""

import argparse
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the bench driver: stack, topics, processes)


def measure(bin_dir, raw, tag, secs):
    topic = f"bench_ab_{uuid.uuid4().hex[:6]}"
    run.topic_create(topic, 6)
    port = run.free_port()
    gw = run.Proc(f"gateway-{tag}", [str(bin_dir / "gateway"), "--listen", f"127.0.0.1:{port}", "--brokers", run.BROKERS,
                                     "--topic", topic, "--sinker-group", f"ab_{tag}", "--lag-throttle", "0"], logdir=raw)
    run.wait_http(f"http://127.0.0.1:{port}/readyz")
    out = {}
    for label, batch, c in (("batch100_c64", 100, 64), ("single_c256", 1, 256)):
        cpu0 = gw.cpu_seconds()
        js = raw / f"loadgen-{tag}-{label}.json"
        subprocess.run([str(bin_dir / "loadgen"), "--url", f"http://127.0.0.1:{port}/v1/events", "--json-out", str(js),
                        "--keys", "uniform", "--payload-bytes", "256", "--mode", "closed", "--concurrency", str(c),
                        "--batch", str(batch), "--duration", f"{secs}s", "--timeout", "60s"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = json.loads(js.read_text())
        cpu = gw.cpu_seconds() - cpu0
        events = r["events_2xx"]
        out[label] = {"events_per_s": r["events_2xx_per_s"], "cpu_us_per_event": cpu / events * 1e6 if events else None,
                      "non_2xx": r["requests_sent"] - r["requests_2xx"]}
    out["rss_mb"] = gw.rss_mb()
    gw.stop()
    run.topic_delete(topic)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    args = ap.parse_args()
    raw = Path("/tmp") / f"gateway-ab-{uuid.uuid4().hex[:6]}"
    raw.mkdir()
    results = {"a": [], "b": []}
    for n in range(args.rounds):
        for name, bin_dir in (("a", args.a), ("b", args.b)):
            r = measure(bin_dir, raw, f"{name}{n}", args.secs)
            results[name].append(r)
            print(f"round {n} {name}: " + "; ".join(
                f"{k} {v['events_per_s']:.0f}/s {v['cpu_us_per_event']:.2f} us/event" for k, v in r.items() if isinstance(v, dict))
                + f"; rss {r['rss_mb']:.0f} MB", flush=True)
    for label in ("batch100_c64", "single_c256"):
        med = {k: (statistics.median(x[label]["events_per_s"] for x in v), statistics.median(x[label]["cpu_us_per_event"] for x in v))
               for k, v in results.items()}
        print(f"median {label}: a {med['a'][0]:.0f}/s {med['a'][1]:.2f} us/event, b {med['b'][0]:.0f}/s {med['b'][1]:.2f} us/event: "
              f"b/a throughput {med['b'][0] / med['a'][0]:.2f}x, CPU per event {med['b'][1] / med['a'][1]:.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
