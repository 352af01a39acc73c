#!/usr/bin/env python3
"""Memory benchmark for the sinker's byte budget (--max-buffered-bytes), issue 10 item 11.

Fills a topic of many partitions with lag (valid ~1 KiB events produced straight to Kafka by
the `fill_lag` example, no gateway), locks the events table, starts the release sinker with a
byte budget, samples its VmRSS every 200 ms and its sinker_buffered_bytes gauge, then releases
the lock and keeps sampling until every event is written. Prints peak RSS against the budget.

    cargo build --release -p sinker --bins --example fill_lag
    eval "$(deploy/local/stack.sh env)"; export DATABASE_URL KAFKA_BROKERS
    python3 bench/memory_budget.py [--partitions 256] [--events 300000] [--budget-mib 64]

Not a test: it asserts nothing and its numbers depend on the machine (BENCHMARKS.md).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BENCH_BIN_DIR", REPO / "target" / "release"))


def log(msg):
    print(f"memory_budget: {msg}", file=sys.stderr, flush=True)


def stack_env():
    if os.environ.get("DATABASE_URL") and os.environ.get("KAFKA_BROKERS"):
        return os.environ["DATABASE_URL"], os.environ["KAFKA_BROKERS"]
    out = subprocess.run(["bash", str(REPO / "deploy" / "local" / "stack.sh"), "env"], check=True,
                         capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)
    return env["DATABASE_URL"], env["KAFKA_BROKERS"]


def psql(url, sql):
    subprocess.run(["psql", "-X", "-q", "-At", url, "-c", sql], check=True, capture_output=True, text=True)


def scalar(url, sql):
    return subprocess.run(["psql", "-X", "-q", "-At", url, "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class Sampler(threading.Thread):
    """VmRSS every 200 ms, the gauge every second, until stopped."""

    def __init__(self, pid, port):
        super().__init__(daemon=True)
        self.pid, self.port = pid, port
        self.rss_kib, self.gauge, self.halt = [], [], threading.Event()

    def run(self):
        n = 0
        while not self.halt.is_set():
            try:
                self.rss_kib.append(status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            if n % 5 == 0:
                g = metric(self.port, "sinker_buffered_bytes")
                if g is not None:
                    self.gauge.append(g)
            n += 1
            time.sleep(0.2)

    def peak_mib(self, since=0):
        values = [v for v in self.rss_kib[since:] if v]
        return max(values) / 1024 if values else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=256)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--data-bytes", type=int, default=1000, help="padding per event (the record is about 1.1 KiB)")
    ap.add_argument("--budget-mib", type=int, default=64)
    ap.add_argument("--locked-seconds", type=int, default=60)
    ap.add_argument("--drain-timeout-seconds", type=int, default=900)
    args = ap.parse_args()

    admin_url, brokers = stack_env()
    name = f"membench_{uuid.uuid4().hex[:8]}"
    topic = f"events_{name}"
    psql(admin_url, f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    subprocess.run([str(BIN / "sinker"), "migrate"], check=True, env={**os.environ, "DATABASE_URL": url},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    log(f"filling {topic}: {args.partitions} partitions, {args.events} events of ~{args.data_bytes + 100} B")
    subprocess.run([str(BIN / "examples" / "fill_lag"), brokers, topic, str(args.partitions), str(args.events),
                    str(args.data_bytes)], check=True)

    # The table stays locked by this session until we write ROLLBACK.
    lock = subprocess.Popen(["psql", "-X", "-q", url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lock.stdin.write("BEGIN;\nLOCK TABLE events IN ACCESS EXCLUSIVE MODE;\n")
    lock.stdin.flush()
    time.sleep(1)

    budget = args.budget_mib * 1024 * 1024
    port = free_port()
    logfile = open(REPO / "target" / f"memory_budget_{name}.log", "w")
    sinker = subprocess.Popen(
        [str(BIN / "sinker"), "--brokers", brokers, "--topic", topic, "--group", f"sinker_{name}",
         "--database-url", url, "--metrics-listen", f"127.0.0.1:{port}", "--max-buffered-bytes", str(budget),
         "--db-lock-timeout", "2s"],
        stdout=subprocess.DEVNULL, stderr=logfile)
    sampler = Sampler(sinker.pid, port)
    sampler.start()
    log(f"sinker {sinker.pid} started with a {args.budget_mib} MiB budget; table locked for {args.locked_seconds} s")
    time.sleep(args.locked_seconds)
    locked_samples = len(sampler.rss_kib)
    locked_peak = sampler.peak_mib()
    locked_gauge = max(sampler.gauge or [0])

    lock.stdin.write("ROLLBACK;\n\\q\n")
    lock.stdin.flush()
    lock.wait(30)
    log("lock released; draining")
    started = time.time()
    rows = 0
    while time.time() - started < args.drain_timeout_seconds:
        rows = int(scalar(url, "SELECT count(*) FROM events"))
        if rows >= args.events:
            break
        time.sleep(2)
    drain_seconds = time.time() - started
    sampler.halt.set()
    sampler.join()
    hwm_kib = status_kib(sinker.pid, "VmHWM")
    sinker.terminate()
    sinker.wait(60)
    psql(admin_url, f"DROP DATABASE IF EXISTS {name}")

    result = {
        "partitions": args.partitions, "events": args.events, "record_bytes_approx": args.data_bytes + 100,
        "budget_mib": args.budget_mib,
        "locked_seconds": args.locked_seconds, "locked_peak_rss_mib": round(locked_peak, 1),
        "locked_peak_buffered_mib": round(locked_gauge / 1048576, 1),
        "drain_peak_rss_mib": round(sampler.peak_mib(locked_samples), 1),
        "vm_hwm_mib": round(hwm_kib / 1024, 1) if hwm_kib else None,
        "peak_buffered_mib": round(max(sampler.gauge or [0]) / 1048576, 1),
        "rows": rows, "drain_seconds": round(drain_seconds, 1),
    }
    print(json.dumps(result, indent=2))
    log(f"peak RSS {max(result['locked_peak_rss_mib'], result['drain_peak_rss_mib']):.0f} MiB (VmHWM {result['vm_hwm_mib']} MiB) "
        f"with a {args.budget_mib} MiB budget; peak buffered {result['peak_buffered_mib']} MiB; "
        f"{rows}/{args.events} rows in {drain_seconds:.0f} s after the lock")


if __name__ == "__main__":
    main()
