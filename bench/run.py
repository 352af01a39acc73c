#!/usr/bin/env python3
"""sluice benchmark suite: every figure is measured in the same run as its baseline.

Driven by `make bench`, which brings the local stack up and builds release binaries first.
Writes bench/results/<date>/report.md, results.json and PNG plots, and refreshes the latest
table in BENCHMARKS.md. See BENCHMARKS.md for what each scenario measures and why.

Usage: bench/run.py [--quick] [--only routes,upsert]
  --quick: smaller sizes, for trying the tooling
  --only:  run only these scenarios (ingest, stress, drain, debezium, freshness, batch, routes,
           upsert); the report then holds only their sections and BENCHMARKS.md is left alone
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BENCH_BIN_DIR", REPO / "target" / "release"))
STACK = REPO / "deploy" / "local" / "stack.sh"
PSQL = "psql"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def stack_env():
    out = subprocess.run(["bash", str(STACK), "env"], check=True, capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)
    return env["DATABASE_URL"], env["KAFKA_BROKERS"]


ADMIN_URL, BROKERS = stack_env()


def db_url(name):
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def psql(url, sql, timeout=600):
    r = subprocess.run([PSQL, "-X", "-q", "-At", url, "-c", sql], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"psql failed: {r.stderr.strip()} ({sql[:80]})")
    return r.stdout.strip()


def fresh_db(tag):
    name = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    psql(ADMIN_URL, f"CREATE DATABASE {name}")
    url = db_url(name)
    # The same migrations the sinker applies.
    subprocess.run([str(BIN / "sinker"), "migrate"], check=True, env={**os.environ, "DATABASE_URL": url},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return url


CHECKPOINT_REFUSED = []


def checkpoint(url):
    """Flushes dirty buffers so a timed run does not pay for the previous one's checkpoint
    (needs a superuser or pg_checkpoint; without it the run measures anyway, and says so once)."""
    if CHECKPOINT_REFUSED:
        return
    try:
        psql(url, "CHECKPOINT")
    except RuntimeError as e:
        CHECKPOINT_REFUSED.append(str(e))
        log(f"  (no CHECKPOINT before the timed parts: {e})")


def drop_db(url):
    name = url.rsplit("/", 1)[1]
    try:
        psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except RuntimeError as e:
        log(f"  (could not drop {name}: {e})")


def topic_create(name, partitions):
    subprocess.run(["bash", str(STACK), "topic-create", name, str(partitions)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def topic_delete(name):
    subprocess.run(["bash", str(STACK), "topic-delete", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def topic_bytes(name):
    """Bytes of the topic's log segments on the broker's disk (what its records take there, as
    the producer compressed them), or None when the log directory is not found."""
    state = Path(os.environ.get("SLUICE_STATE_DIR", REPO / ".stack"))
    try:
        props = (state / "kafka" / "server.properties").read_text()
        dirs = next(l.split("=", 1)[1].strip() for l in props.splitlines() if l.startswith("log.dirs="))
    except (OSError, StopIteration):
        return None
    return sum(f.stat().st_size for d in dirs.split(",") for f in Path(d).glob(f"{name}-*/*.log")) or None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def metric(port, name):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def scrape(ports):
    """Every sample of the given sinkers' /metrics, summed over the processes: {'name{labels}': value}."""
    import urllib.request
    out = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    series, value = line.rsplit(" ", 1)
                    out[series] = out.get(series, 0.0) + float(value)
    return out


def labels(series):
    """The labels of a scraped series name: {'route': 'events', ...}."""
    return dict(re.findall(r'(\w+)="([^"]*)"', series.partition("{")[2]))


def sample(scraped, name, **labels):
    """The value of `name` with exactly these labels in a scrape (0 when absent)."""
    want = dict(labels)
    for series, value in scraped.items():
        base, _, rest = series.partition("{")
        if base != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if got == want:
            return value
    return 0.0


def peak_rss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Proc:
    """A background process whose peak RSS we can read before stopping it."""

    def __init__(self, name, args, env=None, logdir=None):
        self.name = name
        self.log = open(logdir / f"{name}.log", "w") if logdir else subprocess.DEVNULL
        self.p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=self.log)

    def rss_mb(self):
        return peak_rss_mb(self.p.pid)

    def cpu_seconds(self):
        """User + system CPU time so far (None once gone)."""
        try:
            fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Bench:
    def __init__(self, quick, tag=None):
        self.quick = quick
        self.date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
        self.out = REPO / "bench" / "results" / (self.date + (f"-{tag}" if tag else ""))
        self.out.mkdir(parents=True, exist_ok=True)
        self.raw = self.out / "raw"
        self.raw.mkdir(exist_ok=True)
        self.results = {"date": self.date, "quick": quick, "machine": machine()}

    # ---------- processes ----------

    def gateway(self, topic, group, extra=()):
        port = free_port()
        p = Proc(f"gateway-{port}", [str(BIN / "gateway"), "--listen", f"127.0.0.1:{port}", "--brokers", BROKERS,
                                     "--topic", topic, "--sinker-group", group, "--lag-throttle", "0", *extra],
                 logdir=self.raw)
        wait_http(f"http://127.0.0.1:{port}/readyz")
        p.port = port
        return p

    def sinker(self, topic, group, url, extra=()):
        port = free_port()
        p = Proc(f"sinker-{port}", [str(BIN / "sinker"), "--brokers", BROKERS, "--topic", topic, "--group", group,
                                    "--database-url", url, "--metrics-listen", f"127.0.0.1:{port}", *extra],
                 logdir=self.raw)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        p.port = port
        return p

    def sync_service(self, url):
        port = free_port()
        p = Proc(f"sync-{port}", [str(BIN / "sync-baseline"), "--listen", f"127.0.0.1:{port}", "--database-url", url],
                 logdir=self.raw)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        p.port = port
        return p

    def loadgen(self, name, port, *args):
        out = self.raw / f"loadgen-{name}.json"
        cmd = [str(BIN / "loadgen"), "--url", f"http://127.0.0.1:{port}/v1/events", "--json-out", str(out),
               "--keys", "uniform", "--payload-bytes", "256", *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=open(self.raw / f"loadgen-{name}.log", "w"))
        return json.loads(out.read_text())

    # ---------- scenario 1: ingest capacity ----------

    def wrk(self, name, port, batch, connections, secs):
        """The external load generator (Debian's wrk), closed loop like loadgen: one static body of
        `batch` events (no id, no key: each event gets a fresh id, its partition by id), the same
        256-byte `data` shape as loadgen's. None when wrk is missing and cannot be installed."""
        if not ensure_wrk():
            return None
        pad = uuid.uuid4().hex * 8
        events = [f'{{"type":"bench","data":{{"seq":{n},"pad":"{pad[:256 - 17 - len(str(n))]}"}}}}' for n in range(batch)]
        body = events[0] if batch == 1 else "[" + ",".join(events) + "]"
        script = self.raw / f"wrk-{name}.lua"
        script.write_text(WRK_SCRIPT.replace("BODY", body))
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{secs}", "--timeout", "60s", "-s", str(script),
                              f"http://127.0.0.1:{port}/v1/events"], capture_output=True, text=True, check=True).stdout
        (self.raw / f"wrk-{name}.txt").write_text(out)
        r = json.loads(out.strip().splitlines()[-1])
        ok = r["requests"] - r["non_2xx"]
        secs_run = r["duration_us"] / 1e6
        return {"tool": "wrk", "batch": batch, "concurrency": connections, "events_per_s": ok * batch / secs_run,
                "requests_per_s": ok / secs_run, "non_2xx": r["non_2xx"], "socket_errors": r["socket_errors"],
                "latency_ms": {"p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000}}

    def ingest(self):
        log("1/9 ingest capacity: gateway vs synchronous INSERT per event, concurrency sweep (loadgen, then wrk)")
        concurrencies = [16, 64, 256] if self.quick else [16, 64, 256, 512]
        secs = "5s" if self.quick else "10s"
        rows = []
        topic, group = f"bench_ingest_{uuid.uuid4().hex[:6]}", f"bench_ingest_{uuid.uuid4().hex[:6]}"
        topic_create(topic, 6)
        gw_db = fresh_db("ingest_gw")
        gw = self.gateway(topic, group)
        sk = self.sinker(topic, group, gw_db)
        sync_db = fresh_db("ingest_sync")
        sync = self.sync_service(sync_db)
        for batch in ([1, 100]):
            for c in (concurrencies if batch == 1 else concurrencies[:2]):
                for system, port in (("sluice", gw.port), ("sync", sync.port)):
                    r = self.loadgen(f"ingest-{system}-b{batch}-c{c}", port, "--mode", "closed", "--concurrency", str(c),
                                     "--batch", str(batch), "--duration", secs, "--warmup", "2s", "--timeout", "60s")
                    rows.append({"system": system, "batch": batch, "concurrency": c, "events_per_s": r["events_2xx_per_s"],
                                 "requests_per_s": r["requests_2xx_per_s"], "non_2xx": r["requests_sent"] - r["requests_2xx"],
                                 "latency_ms": r["latency_ms"]})
                    log(f"  {system:6} batch {batch:3} c={c:3}: {r['events_2xx_per_s']:9.0f} events/s, p99 {r['latency_ms']['p99']} ms")

        def best(system, batch):
            return max((r for r in rows if r["system"] == system and r["batch"] == batch), key=lambda r: r["events_per_s"])
        self.results["ingest_best"] = {f"{s}_b{b}": best(s, b) for s in ("sluice", "sync") for b in (1, 100)}
        # The same targets through an external load generator: the synchronous service at its best
        # loadgen concurrency, sluice at its best for 100-event requests and at 256 connections for
        # single events (the issue 13 target).
        external = []
        plan = [("sync", sync.port, 1, best("sync", 1)["concurrency"]), ("sluice", gw.port, 1, 256),
                ("sync", sync.port, 100, best("sync", 100)["concurrency"]),
                ("sluice", gw.port, 100, best("sluice", 100)["concurrency"])]
        for system, port, batch, c in plan:
            r = self.wrk(f"ingest-{system}-b{batch}-c{c}", port, batch, c, secs)
            if r is None:
                break
            r["system"] = system
            external.append(r)
            log(f"  wrk {system:6} batch {batch:3} c={c:3}: {r['events_per_s']:9.0f} events/s, p99 {r['latency_ms']['p99']} ms")
        self.results["ingest_external"] = external if external else {"error": "wrk is not installed and could not be installed"}
        self.results["gateway_rss_mb_saturated"] = gw.rss_mb()
        for p in (gw, sk, sync):
            p.stop()
        self.results["ingest"] = rows
        return rows

    # ---------- the gateway's producer settings, by measurement (issue 13) ----------

    # One change from the gateway's defaults (linger.ms 5, lz4, librdkafka's batch.size) per row;
    # the defaults run first and last, so the spread between those two is the run's noise.
    PRODUCER_SETTINGS = [("defaults (linger.ms=5, lz4)", []), ("linger.ms=0", ["linger.ms=0"]),
                         ("linger.ms=1", ["linger.ms=1"]), ("linger.ms=20", ["linger.ms=20"]),
                         ("compression none", ["compression.type=none"]), ("compression gzip", ["compression.type=gzip"]),
                         ("batch.size=128 KiB", ["batch.size=131072"]),
                         ("linger.ms=1, compression none", ["linger.ms=1", "compression.type=none"]),
                         ("defaults, again", [])]

    def producer(self):
        log("producer settings: the gateway alone (no sinker, no throttle), one setting changed per row")
        secs = "5s" if self.quick else "10s"
        rows = []
        for name, options in self.PRODUCER_SETTINGS:
            topic = f"bench_producer_{uuid.uuid4().hex[:6]}"
            topic_create(topic, 6)
            extra = [a for o in options for a in ("--kafka-option", o)]
            row = {"setting": name}
            try:
                gw = self.gateway(topic, f"bench_producer_{uuid.uuid4().hex[:6]}", extra)
            except Exception as e:  # noqa: BLE001 - a setting the build lacks is a row saying so
                row["error"] = f"{type(e).__name__}: {e}"
                rows.append(row)
                log(f"  {name:28} failed: {row['error']}")
                topic_delete(topic)
                continue
            for label, batch, c in (("single_c16", 1, 16), ("single_c256", 1, 256), ("batch100_c64", 100, 64)):
                r = self.loadgen(f"producer-{len(rows)}-{label}", gw.port, "--mode", "closed", "--concurrency", str(c),
                                 "--batch", str(batch), "--duration", secs, "--warmup", "2s", "--timeout", "60s")
                row[label] = {"events_per_s": r["events_2xx_per_s"], "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                              "non_2xx": r["requests_sent"] - r["requests_2xx"]}
                row["events"] = row.get("events", 0) + r["events_2xx"] + r.get("warmup_events_sent", 0)
            row["gateway_cpu_s"] = gw.cpu_seconds()
            gw.stop()
            size = topic_bytes(topic)
            row["log_bytes_per_event"] = size / row["events"] if size and row["events"] else None
            topic_delete(topic)
            rows.append(row)
            log(f"  {name:28} single c=16 {row['single_c16']['events_per_s']:6.0f}/s p99 {row['single_c16']['p99_ms']} ms; "
                f"single c=256 {row['single_c256']['events_per_s']:8.0f}/s p99 {row['single_c256']['p99_ms']} ms; "
                f"100-event c=64 {row['batch100_c64']['events_per_s']:8.0f}/s p99 {row['batch100_c64']['p99_ms']} ms")
        self.results["producer"] = rows

    def report_producer(self):
        rows = self.results.get("producer")
        if not rows:
            return []
        lines = ["## Producer settings (issue 13)", "",
                 "The gateway alone on a 6-partition topic (acks=all, no sinker, no throttle), loadgen closed loop, "
                 "one setting changed from the defaults per row; the defaults ran first and last.", "",
                 "| setting | single events, c=16, events/s | p50 ms | single events, c=256, events/s | p99 ms | 100-event requests, c=64, events/s | p99 ms | non-2xx | broker log bytes per event |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['setting']} | not measured: {r['error']} | | | | | | | |")
                continue
            low, a, b = r["single_c16"], r["single_c256"], r["batch100_c64"]
            per_event = r.get("log_bytes_per_event")
            lines.append(f"| {r['setting']} | {low['events_per_s']:.0f} | {low['p50_ms']} | {a['events_per_s']:.0f} | {a['p99_ms']} | "
                         f"{b['events_per_s']:.0f} | {b['p99_ms']} | {low['non_2xx'] + a['non_2xx'] + b['non_2xx']} | "
                         f"{f'{per_event:.0f}' if per_event else '?'} |")
        return lines + [""]

    def report_ingest(self):
        """Section 1 of the report."""
        R = self.results
        b = R["ingest_best"]
        lines = ["## 1. Ingest vs the synchronous-write design", "",
                 "Closed loop, 256-byte `data`; the gateway (acks=all) with one sinker behind it on 6 partitions.", "",
                 "| system | events/request | best events/s | at concurrency | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
        for key in ("sluice_b1", "sync_b1", "sluice_b100", "sync_b100"):
            r = b[key]
            lines.append(f"| {r['system']} | {r['batch']} | {r['events_per_s']:.0f} | {r['concurrency']} | {r['latency_ms']['p50']} | {r['latency_ms']['p99']} |")
        at256 = next((r for r in R["ingest"] if r["system"] == "sluice" and r["batch"] == 1 and r["concurrency"] == 256), b["sluice_b1"])
        r1 = at256["events_per_s"] / b["sync_b1"]["events_per_s"]
        r100 = b["sluice_b100"]["events_per_s"] / b["sync_b100"]["events_per_s"]
        R.setdefault("ratios", {}).update({"ingest_single_c256": r1, "ingest_batch100": r100})
        lines += ["", f"loadgen: single events at 256 connections **{r1:.1f}x** the synchronous service's best (target 3x); "
                  f"100-event requests **{r100:.1f}x** (target 20x).", ""]
        ext = R.get("ingest_external")
        if isinstance(ext, dict):
            lines.append(f"External load generator: not measured ({ext['error']}).")
        elif ext:
            lines += ["wrk (Debian's 4.1, 2 threads, one static body per run, events without id or key):", "",
                      "| system | events/request | connections | events/s | p50 ms | p99 ms | non-2xx |", "|---|---|---|---|---|---|---|"]
            for r in ext:
                lines.append(f"| {r['system']} | {r['batch']} | {r['concurrency']} | {r['events_per_s']:.0f} | "
                             f"{r['latency_ms']['p50']:.1f} | {r['latency_ms']['p99']:.1f} | {r['non_2xx']} |")
            by = {(r["system"], r["batch"]): r["events_per_s"] for r in ext}
            if len(by) == 4:
                w1, w100 = by[("sluice", 1)] / by[("sync", 1)], by[("sluice", 100)] / by[("sync", 100)]
                R["ratios"].update({"ingest_single_c256_wrk": w1, "ingest_batch100_wrk": w100})
                lines += ["", f"wrk: single events at 256 connections **{w1:.1f}x** (target 3x); 100-event requests **{w100:.1f}x** (target 20x)."]
        lines += ["", f"Gateway peak RSS after the saturation sweep: **{R['gateway_rss_mb_saturated']:.0f} MB** (target under 100 MB).", ""]
        return lines

    # ---------- scenario 2: decoupling under database stress ----------

    def stress(self):
        sync_best = self.results["ingest_best"]["sync_b1"]["requests_per_s"]
        rate = max(10, round(sync_best / 2))
        log(f"2/9 decoupling under database stress: open loop at {rate} req/s (half the synchronous service's best)")
        secs = "10s" if self.quick else "30s"
        rows = []
        for system in ("sluice", "sync"):
            for stress in ("none", "lock", "writes"):
                topic, group = f"bench_stress_{uuid.uuid4().hex[:6]}", f"bench_stress_{uuid.uuid4().hex[:6]}"
                url = fresh_db(f"stress_{system}")
                procs = []
                if system == "sluice":
                    topic_create(topic, 6)
                    gw = self.gateway(topic, group)
                    procs += [gw, self.sinker(topic, group, url)]
                    port = gw.port
                else:
                    s = self.sync_service(url)
                    procs.append(s)
                    port = s.port
                stop = threading.Event()
                stressor = threading.Thread(target=stress_db, args=(url, stress, stop), daemon=True)
                stressor.start()
                r = self.loadgen(f"stress-{system}-{stress}", port, "--mode", "open", "--rate", str(rate),
                                 "--duration", secs, "--warmup", "2s", "--timeout", "30s")
                stop.set()
                stressor.join()
                for p in procs:
                    p.stop()
                rows.append({"system": system, "stress": stress, "rate": rate, "latency_ms": r["latency_ms"],
                             "non_2xx": r["requests_sent"] - r["requests_2xx"], "statuses": r["statuses"]})
                lat = r["latency_ms"]
                log(f"  {system:6} {stress:6}: p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms, non-2xx {rows[-1]['non_2xx']}")
        self.results["stress"] = rows

    # ---------- scenario 3 and 7: drain vs COPY, memory with 1M lag ----------

    def prefill(self, partitions, events):
        topic = f"bench_drain_p{partitions}_{uuid.uuid4().hex[:6]}"
        topic_create(topic, partitions)
        gw = self.gateway(topic, "nobody")
        batch = 500
        requests = events // batch
        r = self.loadgen(f"prefill-{topic}", gw.port, "--mode", "closed", "--concurrency", "8", "--batch", str(batch),
                         "--requests", str(requests), "--duration", "600s", "--timeout", "60s")
        gw.stop()
        # Every accepted event is one record (idempotent producer, no transactions): the sum of the
        # high watermarks of a fresh topic.
        accepted = r.get("events_2xx", requests * batch)
        if accepted != requests * batch:
            log(f"  prefill of {topic}: {accepted} of {requests * batch} events accepted")
        return topic, accepted

    def drain(self, topic, events, sinkers, extra=(), sample=False, url=None, tables=("events",), expect_rows=None,
              metrics=False):
        """Times a sinker group from start to the topic's end. `tables` are counted at the end and
        must hold `expect_rows` rows (default: one per event); `metrics`: the sinkers' /metrics
        once every batch is counted."""
        url = url or fresh_db("drain")
        group = f"bench_drain_{uuid.uuid4().hex[:6]}"
        checkpoint(url)
        load_before = os.getloadavg()[0]
        start = time.time()
        procs = [self.sinker(topic, group, url, extra) for _ in range(sinkers)]
        series, peak = [], 0.0
        while True:
            # Progress from the sinker's own fence rows: cheap, unlike count(*) on a growing table,
            # which would steal CPU from the run it measures. Prefilled topics start at offset 0.
            n = int(psql(url, "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets"
                             f" WHERE consumer_group = '{group}' AND topic = '{topic}'"))
            series.append((time.time() - start, n))
            peak = max([peak] + [p.rss_mb() or 0 for p in procs])
            if n >= events:
                break
            if time.time() - start > 900:
                raise RuntimeError(f"drain of {topic} stuck at {n}/{events}")
            time.sleep(0.25)
        seconds = time.time() - start
        cpu = sum(p.cpu_seconds() or 0 for p in procs)
        scraped = None
        if metrics:
            # The counters move right after each COMMIT: wait until every record's batch is counted.
            deadline = time.time() + 30
            while True:
                scraped = scrape([p.port for p in procs])
                if scraped.get("sinker_batch_rows_sum", 0) >= events or time.time() > deadline:
                    break
                time.sleep(0.2)
        for p in procs:
            p.stop()
        rows = sum(int(psql(url, f"SELECT count(*) FROM {t}")) for t in tables)
        expected = events if expect_rows is None else expect_rows
        if rows != expected:
            raise RuntimeError(f"drain of {topic}: {rows} rows in {', '.join(tables)} for {expected} expected")
        return {"seconds": seconds, "rows_per_s": events / seconds, "peak_rss_mb": peak, "series": series if sample else None,
                "url": url, "metrics": scraped, "load_before": round(load_before, 2), "sinker_cpu_seconds": cpu}

    def copy_baseline(self, url, events):
        """The physical limit: COPY the same rows into an identical table (same primary key)."""
        dump = Path(tempfile.mkdtemp()) / "rows.csv"
        psql(url, f"\\copy (SELECT id, type, key, ts, received_at, data FROM events) TO '{dump}' WITH (FORMAT csv)")
        psql(url, "CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        checkpoint(url)
        start = time.time()
        psql(url, f"\\copy events_copy (id, type, key, ts, received_at, data) FROM '{dump}' WITH (FORMAT csv)")
        seconds = time.time() - start
        dump.unlink()
        return {"seconds": seconds, "rows_per_s": events / seconds}

    def drains(self):
        events = 100_000 if self.quick else 1_000_000
        log(f"3/9 drain vs COPY: {events} events prefilled, sinker group from start to lag 0")
        rows = []
        topics = {}
        for partitions in (1, 6, 12):
            topics[partitions] = self.prefill(partitions, events)
        for partitions, sinkers in ((1, 1), (6, 1), (12, 1), (12, 2), (12, 4)):
            topic, n = topics[partitions]
            d = self.drain(topic, n, sinkers, sample=(partitions == 12))
            c = self.copy_baseline(d["url"], n)
            rows.append({"partitions": partitions, "sinkers": sinkers, "events": n, "sluice_rows_per_s": d["rows_per_s"],
                         "copy_rows_per_s": c["rows_per_s"], "ratio": d["rows_per_s"] / c["rows_per_s"],
                         "sinker_peak_rss_mb": d["peak_rss_mb"], "series": d["series"]})
            log(f"  p={partitions:2} sinkers={sinkers}: sluice {d['rows_per_s']:8.0f} rows/s, COPY {c['rows_per_s']:8.0f} rows/s "
                f"({100 * d['rows_per_s'] / c['rows_per_s']:.0f}%), sinker peak RSS {d['peak_rss_mb']:.0f} MB")
        self.results["drain"] = rows
        self.results["drain_topics"] = {str(k): v[0] for k, v in topics.items()}
        self.results["drain_events"] = events

    # ---------- the issue-13 target: one sinker, 6 partitions vs COPY ----------

    def target(self):
        """One sinker on 6 partitions drains 1M events (256-byte `data`) from its process start to
        its fence rows at the high watermarks, against a text-CSV COPY of the same rows (rendered
        before the clock starts) into an identical table with the same primary key, on one
        connection. The figure is the ratio of the two rates (target 0.8x)."""
        events = 100_000 if self.quick else 1_000_000
        log(f"target: one sinker, 6 partitions, {events} events of 256-byte data vs COPY of the same rows")
        topic, n = self.prefill(6, events)
        d = self.drain(topic, n, 1, sample=True, metrics=True)
        c = self.copy_baseline(d["url"], n)
        ratio = d["rows_per_s"] / c["rows_per_s"]
        m = self.scraped_copy_metrics(d)
        # Two tables of 1M rows and a topic of 1M records: gigabytes a shared machine needs back.
        drop_db(d["url"])
        subprocess.run(["bash", str(STACK), "topic-delete", topic], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.results["target"] = {"events": n, "partitions": 6, "sinkers": 1, "sluice_rows_per_s": d["rows_per_s"],
                                  "sluice_seconds": d["seconds"], "copy_rows_per_s": c["rows_per_s"],
                                  "copy_seconds": c["seconds"], "ratio": ratio, "sinker_peak_rss_mb": d["peak_rss_mb"],
                                  "load_before": d["load_before"], "sinker_cpu_seconds": d["sinker_cpu_seconds"],
                                  "metrics": m}
        log(f"  sluice {d['rows_per_s']:8.0f} rows/s ({d['seconds']:.1f} s), COPY {c['rows_per_s']:8.0f} rows/s "
            f"({c['seconds']:.1f} s): {ratio:.2f}x (target 0.8x), sinker peak RSS {d['peak_rss_mb']:.0f} MB, "
            f"sinker CPU {d['sinker_cpu_seconds']:.1f} s ({1e6 * d['sinker_cpu_seconds'] / n:.1f} us/row), "
            f"load before {d['load_before']}, metrics {m}")

    @staticmethod
    def scraped_copy_metrics(d):
        """The batch and COPY-path counters of a drain's sinkers, when they were scraped."""
        return {k: v for k, v in (d.get("metrics") or {}).items()
                if k.startswith("sinker_copy_batches_total") or k in ("sinker_batch_rows_count", "sinker_batch_rows_sum")}

    def report_target(self):
        R = self.results
        if "target" not in R:
            return []
        lines = ["## Target: one sinker, 6 partitions vs COPY (issue 13)", ""]
        t = R["target"]
        if "error" in t:
            return lines + [f"Not measured: {t['error']}", ""]
        lines += [f"{t['events']} events with 256-byte `data`, 6 partitions, one sinker with default settings, timed from "
                  "the sinker's process start to its committed offsets at the high watermarks; the baseline is a text CSV "
                  "`\\copy` of the same rows (rendered before the clock starts) into an identical table with the same "
                  "primary key, on one connection" + (" (no CHECKPOINT before either: the account may not)" if CHECKPOINT_REFUSED
                                                      else ", each after a CHECKPOINT") + ".", "",
                  "| system | seconds | rows/s |", "|---|---|---|",
                  f"| sluice sinker | {t['sluice_seconds']:.1f} | {t['sluice_rows_per_s']:.0f} |",
                  f"| COPY (psql \\copy, CSV) | {t['copy_seconds']:.1f} | {t['copy_rows_per_s']:.0f} |", "",
                  f"Ratio: **{t['ratio']:.2f}x** (target 0.8x: {'met' if t['ratio'] >= 0.8 else 'missed'}). "
                  f"Sinker peak RSS {t['sinker_peak_rss_mb']:.0f} MB (budget: `--max-buffered-bytes`, 256 MiB by default); "
                  f"sinker CPU {t['sinker_cpu_seconds']:.1f} s ({1e6 * t['sinker_cpu_seconds'] / t['events']:.1f} us per row). "
                  f"Batches: {t['metrics'].get('sinker_batch_rows_count', 0):.0f}; COPY paths: "
                  + (", ".join(f"{labels(k).get('path')} {v:.0f}"
                               for k, v in t["metrics"].items() if k.startswith("sinker_copy_batches_total") and v)
                     or "none") + ". "
                  f"Load average before the drain: {t['load_before']}.", ""]
        return lines

    # ---------- scenario 4: Debezium JDBC sink ----------

    def debezium(self):
        script = REPO / "bench" / "debezium" / "run.sh"
        events = 50_000 if self.quick else 200_000
        log(f"4/9 drain vs Kafka Connect + Debezium JDBC sink: {events} events, 6 partitions")
        if not script.exists():
            self.results["debezium"] = {"error": "bench/debezium/run.sh is missing"}
            return
        r = subprocess.run(["bash", str(script), "--brokers", BROKERS, "--database-url", ADMIN_URL, "--events", str(events),
                            "--partitions", "6", "--batch-size", "500"], capture_output=True, text=True, timeout=1800)
        (self.raw / "debezium.log").write_text(r.stderr)
        try:
            dbz = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            why = next((l.split("FAILED:", 1)[1].strip() for l in reversed(r.stderr.splitlines()) if "FAILED:" in l),
                       (r.stderr.strip().splitlines() or ["no output"])[-1])
            self.results["debezium"] = {"error": f"debezium run failed (exit {r.returncode}): {why}; see raw/debezium.log"}
            log(f"  debezium run failed: {r.stderr.strip().splitlines()[-1:]}")
            return
        # sluice on the same number of events and partitions, measured now.
        topic, n = self.prefill(6, events)
        d = self.drain(topic, n, 1)
        self.results["debezium"] = {"debezium": dbz, "sluice_rows_per_s": d["rows_per_s"], "events": n,
                                    "ratio": d["rows_per_s"] / dbz["rows_per_second"]}
        log(f"  debezium {dbz['rows_per_second']:.0f} rows/s, sluice {d['rows_per_s']:.0f} rows/s "
            f"({d['rows_per_s'] / dbz['rows_per_second']:.1f}x)")

    # ---------- scenario 5: freshness ----------

    def freshness(self):
        best = self.results["ingest_best"]["sluice_b1"]["requests_per_s"]
        rate = max(10, round(best / 2))
        log(f"5/9 end-to-end freshness at {rate} req/s (50% of the gateway's measured single-event capacity)")
        topic, group = f"bench_fresh_{uuid.uuid4().hex[:6]}", f"bench_fresh_{uuid.uuid4().hex[:6]}"
        topic_create(topic, 6)
        url = fresh_db("fresh")
        gw = self.gateway(topic, group)
        sk = self.sinker(topic, group, url)
        r = self.loadgen("freshness", gw.port, "--mode", "open", "--rate", str(rate), "--duration", "10s" if self.quick else "30s",
                         "--timeout", "30s")
        time.sleep(3)
        gw.stop()
        sk.stop()
        q = psql(url, "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM inserted_at - received_at)), "
                      "max(extract(epoch FROM inserted_at - received_at)), count(*) FROM events")
        m = re.match(r"\{([^,]+),([^}]+)\}\|([^|]+)\|(\d+)", q)
        p50, p99, mx, n = float(m.group(1)), float(m.group(2)), float(m.group(3)), int(m.group(4))
        self.results["freshness"] = {"rate": rate, "rows": n, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "max_ms": mx * 1000,
                                     "accepted": r["events_2xx"]}
        log(f"  freshness p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over {n} rows")

    # ---------- scenario 6: batch size and insert method ----------

    def batch_sweep(self):
        events = 50_000 if self.quick else 200_000
        log(f"6/9 batch-size sweep x insert method: drain of {events} events, 6 partitions, 1 sinker")
        topic, n = self.prefill(6, events)
        rows = []
        for method in ("unnest", "copy"):
            for size in (50, 200, 500, 2000, 5000):
                d = self.drain(topic, n, 1, extra=("--batch-size", str(size), "--insert-method", method,
                                                    "--max-buffered-records", str(max(5000, 2 * size)),
                                                    "--batch-timeout", "500ms"))
                rows.append({"method": method, "batch_size": size, "rows_per_s": d["rows_per_s"]})
                log(f"  {method:6} batch {size:5}: {d['rows_per_s']:8.0f} rows/s")
        self.results["batch_sweep"] = rows

    # ---------- scenarios 8 and 9: routes (issue 12) ----------

    def fill_typed(self, workload, partitions, events):
        topic = f"bench_{workload}_p{partitions}_{uuid.uuid4().hex[:6]}"
        out = subprocess.run([str(BIN / "examples" / "fill_typed"), BROKERS, topic, str(partitions), str(events), workload],
                             check=True, capture_output=True, text=True).stdout
        return topic, json.loads(out.strip().splitlines()[-1])

    def routes_db(self, ddl):
        url = fresh_db("routes")
        psql(url, ddl)
        return url

    def routes_file(self, name, text):
        path = self.raw / f"{name}.toml"
        path.write_text(text)
        return path

    def routes(self):
        """Typed tables vs the events table: the same prefilled events, same partitions and sinkers
        as the headline drain of scenario 3."""
        events = 50_000 if self.quick else 1_000_000
        partitions, sinkers = ROUTES_PARTITIONS, ROUTES_SINKERS
        log(f"8/9 routes: drain of {events} events of three types into three typed tables vs into events, "
            f"{partitions} partitions, {sinkers} sinker(s)")
        topic, _ = self.fill_typed("typed", partitions, events)
        plain = self.drain(topic, events, sinkers)
        routes = self.routes_file("typed-routes", TYPED_ROUTES)
        typed = self.drain(topic, events, sinkers, extra=("--routes", str(routes)), url=self.routes_db(TYPED_DDL),
                           tables=[t for _, t in TYPED_TABLES], metrics=True)
        ratio = typed["rows_per_s"] / plain["rows_per_s"]
        self.results["routes"] = {"events": events, "partitions": partitions, "sinkers": sinkers,
                                  "events_rows_per_s": plain["rows_per_s"], "typed_rows_per_s": typed["rows_per_s"],
                                  "ratio": ratio, "typed_peak_rss_mb": typed["peak_rss_mb"],
                                  "events_peak_rss_mb": plain["peak_rss_mb"]}
        log(f"  events table {plain['rows_per_s']:8.0f} rows/s, three typed tables {typed['rows_per_s']:8.0f} rows/s: "
            f"{ratio:.2f}x (target 0.8x)")

    def upsert(self):
        """Versioned upsert of a hot-key workload vs the insert-mode drain of the same events."""
        events = 50_000 if self.quick else 1_000_000
        partitions, sinkers = ROUTES_PARTITIONS, ROUTES_SINKERS
        log(f"9/9 upsert: {events} events, 1% of the keys take half of them; versioned upsert vs insert, "
            f"{partitions} partitions, {sinkers} sinker(s)")
        topic, fill = self.fill_typed("hot", partitions, events)
        ins = self.drain(topic, events, sinkers, extra=("--routes", str(self.routes_file("insert-routes", INSERT_ROUTES))),
                         url=self.routes_db(UPSERT_DDL), tables=["bench_counter_events"], metrics=True)
        ups = self.drain(topic, events, sinkers, extra=("--routes", str(self.routes_file("upsert-routes", UPSERT_ROUTES))),
                         url=self.routes_db(UPSERT_DDL), tables=["bench_counters"], expect_rows=fill["keys"], metrics=True)
        m = ups["metrics"]
        written = {op: sample(m, "sinker_rows_written_total", op=op, route="counters")
                   for op in ("inserted", "updated", "deleted", "skipped")}
        combined = sample(m, "sinker_rows_combined_total", route="counters")
        batches = sample(m, "sinker_batch_rows_count")
        records = sample(m, "sinker_batch_rows_sum")
        writes = sum(written.values())
        distinct = records - combined
        ratio = ups["rows_per_s"] / ins["rows_per_s"]
        self.results["upsert"] = {
            "events": events, "keys": fill["keys"], "hot_keys": fill["hot_keys"], "partitions": partitions, "sinkers": sinkers,
            "insert_events_per_s": ins["rows_per_s"], "upsert_events_per_s": ups["rows_per_s"], "ratio": ratio,
            "written": written, "combined": combined, "batches": batches, "records": records,
            "insert_batches": sample(ins["metrics"], "sinker_batch_rows_count"),
            "row_writes_per_batch": writes / max(batches, 1), "distinct_keys_per_batch": distinct / max(batches, 1),
            "events_per_batch": records / max(batches, 1), "writes_equal_distinct_keys": writes == distinct,
            # Records the sinkers wrote beyond the topic's (a record delivered twice and written again).
            "records_written_again": {"insert": sample(ins["metrics"], "sinker_batch_rows_sum") - events,
                                      "upsert": records - events}}
        log(f"  insert {ins['rows_per_s']:8.0f} events/s, versioned upsert {ups['rows_per_s']:8.0f} events/s: {ratio:.2f}x "
            f"(target 0.7x); per batch: {records / max(batches, 1):.0f} events, {distinct / max(batches, 1):.1f} distinct keys, "
            f"{writes / max(batches, 1):.1f} row writes ({int(writes)} writes = {int(records)} events - {int(combined)} combined: "
            f"{writes == distinct})")

    def report_routes(self):
        """Sections 8 and 9 of the report, for the scenarios that ran."""
        R, lines = self.results, []
        for name, title in (("routes", "8. Routes"), ("upsert", "9. Upsert")):
            if "error" in R.get(name, {}):
                lines += [f"## {title}", "", f"Not measured: the scenario failed: {R[name]['error']}", ""]
        if "routes" in R and "error" not in R["routes"]:
            r = R["routes"]
            lines += ["## 8. Routes: three typed tables vs the events table", "",
                      f"The same {r['events']} prefilled events (three types in turn, straight into Kafka), {r['partitions']} "
                      f"partitions, {r['sinkers']} sinker(s), default batch settings.", "",
                      "| sink | rows/s | sinker peak RSS MB |", "|---|---|---|",
                      f"| `events` table (no --routes) | {r['events_rows_per_s']:.0f} | {r['events_peak_rss_mb']:.0f} |",
                      f"| three typed tables, one route each (uuid, bigint, numeric, text, timestamptz, jsonb) | "
                      f"{r['typed_rows_per_s']:.0f} | {r['typed_peak_rss_mb']:.0f} |", "",
                      f"Ratio: **{r['ratio']:.2f}x** (target 0.8x: {'met' if r['ratio'] >= 0.8 else 'missed'}).", ""]
        if "upsert" in R and "error" not in R["upsert"]:
            u = R["upsert"]
            w = u["written"]
            lines += ["## 9. Upsert with write-combining vs insert", "",
                      f"{u['events']} events over {u['keys']} keys, the hot {u['hot_keys']} (1%) taking half of them, record key "
                      f"= row key; {u['partitions']} partitions, {u['sinkers']} sinker(s). Versioned upsert into one row per key "
                      "vs insert mode into a table keyed by event id, same events.", "",
                      "| route | events/s | batches |", "|---|---|---|",
                      f"| insert (one row per event) | {u['insert_events_per_s']:.0f} | {u['insert_batches']:.0f} |",
                      f"| versioned upsert (one row per key) | {u['upsert_events_per_s']:.0f} | {u['batches']:.0f} |", "",
                      f"Ratio: **{u['ratio']:.2f}x** (target 0.7x: {'met' if u['ratio'] >= 0.7 else 'missed'}).", "",
                      f"Per upsert batch: {u['events_per_batch']:.1f} events, **{u['distinct_keys_per_batch']:.1f} distinct keys** "
                      f"(events - `sinker_rows_combined_total`), **{u['row_writes_per_batch']:.1f} row writes** "
                      f"(`sinker_rows_written_total`: inserted {w['inserted']:.0f}, updated {w['updated']:.0f}, "
                      f"skipped {w['skipped']:.0f}; combined away {u['combined']:.0f}); row writes equal distinct keys: "
                      f"**{'yes' if u['writes_equal_distinct_keys'] else 'no'}**.", "",
                      f"Records in written batches beyond the {u['events']} in the topic (a record delivered twice and "
                      f"written again): insert {u['records_written_again']['insert']:.0f}, upsert "
                      f"{u['records_written_again']['upsert']:.0f}.", ""]
        return lines

    # ---------- report ----------

    def plots(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # Throughput vs offered load (concurrency).
        fig, ax = plt.subplots(figsize=(7, 4))
        for system in ("sluice", "sync"):
            pts = [(r["concurrency"], r["events_per_s"]) for r in self.results["ingest"] if r["system"] == system and r["batch"] == 1]
            ax.plot(*zip(*pts), marker="o", label=f"{system} (1 event/request)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("events/s accepted")
        ax.set_title("Ingest throughput vs offered load")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.out / "throughput.png", dpi=110)
        plt.close(fig)

        # Latency percentiles under stress.
        fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
        for ax, stress in zip(axes, ("none", "lock", "writes")):
            for system in ("sluice", "sync"):
                r = next(x for x in self.results["stress"] if x["system"] == system and x["stress"] == stress)
                lat = r["latency_ms"]
                ax.plot(["p50", "p90", "p99", "p99.9", "max"], [lat["p50"], lat["p90"], lat["p99"], lat["p999"], lat["max"]],
                        marker="o", label=system)
            ax.set_yscale("log")
            ax.set_title(f"stress: {stress}")
            ax.set_xlabel("percentile")
        axes[0].set_ylabel("latency (ms, log)")
        axes[0].legend()
        fig.suptitle("Accept latency at the same offered rate")
        fig.tight_layout()
        fig.savefig(self.out / "latency.png", dpi=110)
        plt.close(fig)

        # Drain progress over time.
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in self.results["drain"]:
            if r["series"]:
                t, n = zip(*r["series"])
                ax.plot(t, n, label=f"{r['sinkers']} sinker(s), {r['partitions']} partitions")
        ax.set_xlabel("seconds since the sinkers started")
        ax.set_ylabel("rows written")
        ax.set_title(f"Drain of {self.results['drain_events']} prefilled events")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.out / "drain.png", dpi=110)
        plt.close(fig)

    def report(self):
        R = self.results
        lines = [f"# sluice benchmark report, {R['date']}" + (" (quick mode)" if R["quick"] else ""), "",
                 f"Machine: {R['machine']}", "",
                 "All figures come from one run of `make bench`; every comparison is against a baseline measured in the same run.", ""]
        R.setdefault("ratios", {})
        # A scenario that failed, or whose inputs are missing, says why in its section; the others still report.
        for title, scenario, section in (("1. Ingest vs the synchronous-write design", "ingest", self.section_ingest),
                                         ("2. Decoupling under database stress", "stress", self.section_stress),
                                         ("3. Drain vs the physical limit (COPY into an identical table)", "drain",
                                          self.section_drain),
                                         ("4. Drain vs Kafka Connect + Debezium JDBC sink", "debezium", self.section_debezium),
                                         ("5. End-to-end freshness", "freshness", self.section_freshness),
                                         ("6. Batch size and insert method", "batch_sweep", self.section_batch),
                                         ("7. Memory", "drain", self.section_memory)):
            lines += [f"## {title}", ""]
            failed = R.get("failed", {}).get(scenario)
            if failed:
                lines += [f"Not measured: the scenario failed: {failed}", ""]
                continue
            try:
                lines += section()
            except Exception as e:  # noqa: BLE001 - a report section must not hide the others
                lines += [f"Not reported: {type(e).__name__}: {e}", ""]
        lines += self.report_producer()
        lines += self.report_target()
        lines += self.report_routes()
        (self.out / "report.md").write_text("\n".join(lines) + "\n")
        (self.out / "results.json").write_text(json.dumps(R, indent=1, default=str))
        return "\n".join(lines)

    def section_ingest(self):
        return self.report_ingest()[2:] + ["![throughput](throughput.png)", ""]

    def section_stress(self):
        R = self.results
        lines = [f"Open loop at {R['stress'][0]['rate']} requests/s for both (half the synchronous service's best).", "",
                 "| system | stress | p50 ms | p99 ms | max ms | non-2xx |", "|---|---|---|---|---|---|"]
        for r in R["stress"]:
            lat = r["latency_ms"]
            lines.append(f"| {r['system']} | {r['stress']} | {lat['p50']} | {lat['p99']} | {lat['max']} | {r['non_2xx']} |")

        def p99(system, stress):
            return next(x for x in R["stress"] if x["system"] == system and x["stress"] == stress)["latency_ms"]["p99"]
        for stress in ("lock", "writes"):
            own = p99("sluice", stress) / p99("sluice", "none")
            vs = p99("sync", stress) / p99("sluice", stress)
            R["ratios"][f"stress_{stress}_self"] = own
            R["ratios"][f"stress_{stress}_vs_sync"] = vs
            lines.append(f"\nUnder `{stress}`: gateway p99 is **{own:.2f}x** its unstressed p99 (target at most 2x) and "
                         f"**{vs:.0f}x** below the synchronous service's p99 (target at least 50x).")
        return lines + ["", "![latency](latency.png)", ""]

    def section_drain(self):
        R = self.results
        lines = ["| partitions | sinkers | events | sluice rows/s | COPY rows/s | sluice / COPY | sinker peak RSS MB |", "|---|---|---|---|---|---|---|"]
        for r in R["drain"]:
            lines.append(f"| {r['partitions']} | {r['sinkers']} | {r['events']} | {r['sluice_rows_per_s']:.0f} | {r['copy_rows_per_s']:.0f} | "
                         f"{100 * r['ratio']:.0f}% | {r['sinker_peak_rss_mb']:.0f} |")
        return lines + ["", "Target: sinker drain at least 60% of the raw COPY rate.", "", "![drain](drain.png)", ""]

    def section_debezium(self):
        d = self.results["debezium"]
        if "error" in d:
            return [f"Not measured: {d['error']}.", ""]
        return [f"{d['events']} events, 6 partitions, batch size 500 for both.", "",
                "| system | rows/s |", "|---|---|",
                f"| sluice sinker (1 process) | {d['sluice_rows_per_s']:.0f} |",
                f"| Debezium JDBC sink (Connect standalone) | {d['debezium']['rows_per_second']:.0f} |", "",
                f"Ratio: **{d['ratio']:.1f}x** (target 3x). Table-shape differences: bench/debezium/README.md.", ""]

    def section_freshness(self):
        f = self.results["freshness"]
        return [f"At {f['rate']} events/s (50% of the measured single-event capacity): inserted_at - received_at "
                f"p50 **{f['p50_ms']:.0f} ms**, p99 **{f['p99_ms']:.0f} ms**, max {f['max_ms']:.0f} ms over {f['rows']} rows "
                "(inserted_at is the sinker transaction's start, a few ms before its commit).", ""]

    def section_batch(self):
        R = self.results
        lines = ["| batch size | UNNEST rows/s | COPY rows/s |", "|---|---|---|"]
        for size in (50, 200, 500, 2000, 5000):
            u = next(x for x in R["batch_sweep"] if x["method"] == "unnest" and x["batch_size"] == size)["rows_per_s"]
            c = next(x for x in R["batch_sweep"] if x["method"] == "copy" and x["batch_size"] == size)["rows_per_s"]
            lines.append(f"| {size} | {u:.0f} | {c:.0f} |")
        return lines + [""]

    def section_memory(self):
        R = self.results
        lines = []
        if "gateway_rss_mb_saturated" in R:
            lines.append(f"- Gateway peak RSS after the saturation sweep: **{R['gateway_rss_mb_saturated']:.0f} MB** (target under 100 MB).")
        sinker_rss = max(r["sinker_peak_rss_mb"] for r in R["drain"])
        lines.append(f"- Sinker peak RSS while draining {R['drain_events']} events of lag: **{sinker_rss:.0f} MB** (target under 250 MB).")
        return lines + [""]


# Scenarios 8 and 9 drain like the headline drain of scenario 3 (12 partitions, one sinker).
ROUTES_PARTITIONS, ROUTES_SINKERS = 12, 1

TYPED_TABLES = (("bench.view", "bench_views"), ("bench.order", "bench_orders"), ("bench.payment", "bench_payments"))
TYPED_DDL = "".join(
    f"CREATE TABLE {t} (event_id uuid PRIMARY KEY, user_id uuid NOT NULL, n bigint NOT NULL, amount numeric(14,2) NOT NULL, "
    "label text NOT NULL, at timestamptz NOT NULL, attrs jsonb NOT NULL);" for _, t in TYPED_TABLES)
TYPED_ROUTES = "".join(f"""
[[route]]
name = "{t}"
types = ["{ty}"]
table = "{t}"
key = ["event_id"]
[route.columns]
event_id = "id"
user_id = "data.user"
n = "data.n"
amount = "data.amount"
label = "data.label"
at = "data.at"
attrs = "data.attrs"
""" for ty, t in TYPED_TABLES)

UPSERT_DDL = (
    "CREATE TABLE bench_counters (row_id bigint PRIMARY KEY, version bigint NOT NULL, amount numeric(14,2) NOT NULL, "
    "label text NOT NULL, at timestamptz NOT NULL, attrs jsonb NOT NULL);"
    "CREATE TABLE bench_counter_events (event_id uuid PRIMARY KEY, row_id bigint NOT NULL, version bigint NOT NULL, "
    "amount numeric(14,2) NOT NULL, label text NOT NULL, at timestamptz NOT NULL, attrs jsonb NOT NULL);")
COUNTER_COLUMNS = """row_id = "data.row"
version = "data.version"
amount = "data.amount"
label = "data.label"
at = "data.at"
attrs = "data.attrs"
"""
UPSERT_ROUTES = f"""
[[route]]
name = "counters"
types = ["bench.counter"]
table = "bench_counters"
mode = "upsert"
key = ["row_id"]
version = "version"
[route.columns]
{COUNTER_COLUMNS}"""
INSERT_ROUTES = f"""
[[route]]
name = "counter_events"
types = ["bench.counter"]
table = "bench_counter_events"
key = ["event_id"]
[route.columns]
event_id = "id"
{COUNTER_COLUMNS}"""


def stress_db(url, kind, stop):
    """The database stress schedules of scenario 2."""
    if kind == "lock":
        while not stop.is_set():
            stop.wait(8)
            if stop.is_set():
                break
            subprocess.run([PSQL, "-X", "-q", url, "-c",
                            "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;"],
                           capture_output=True)
    elif kind == "writes":
        psql(url, "CREATE TABLE IF NOT EXISTS stress (id bigserial PRIMARY KEY, payload text, at timestamptz DEFAULT now())")
        script = Path(tempfile.mkdtemp()) / "stress.sql"
        script.write_text("INSERT INTO stress (payload) SELECT md5(random()::text) FROM generate_series(1, 50);\n")
        p = subprocess.Popen([PGBENCH, "-n", "-c", "16", "-j", "2", "-T", "3600", "-f", str(script), url],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop.wait()
        p.terminate()
        p.wait()
    else:
        stop.wait()


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[BODY]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def ensure_wrk():
    """wrk on PATH, installed from Debian's packages when missing and running as root."""
    import shutil
    if shutil.which("wrk"):
        return True
    if os.geteuid() != 0:
        log("wrk not found and not root: install it with 'sudo apt-get install -y wrk'; the external figures are skipped")
        return False
    log("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends", "wrk"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            log(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
            return False
    return shutil.which("wrk") is not None


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.platform()}"


def update_benchmarks_md(report_text, out):
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- latest:begin -->", "<!-- latest:end -->"
    body = report_text.replace("](", f"]({out.relative_to(REPO)}/")
    body = re.sub(r"^# .*\n", "", body, count=1)
    block = f"{begin}\nLatest run: `{out.relative_to(REPO)}/report.md`\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


SCENARIOS = {"ingest": "ingest", "stress": "stress", "drain": "drains", "target": "target", "debezium": "debezium",
             "freshness": "freshness", "batch": "batch_sweep", "routes": "routes", "upsert": "upsert",
             "producer": "producer"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--tag", help="write into bench/results/<date>-<tag>/ (keeps another run of the day)")
    args = ap.parse_args()
    only = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}: choose among {', '.join(SCENARIOS)}")
    started = time.time()
    b = Bench(args.quick, args.tag)
    for name in only:
        # A failing scenario says why in the report; the run goes on with the next one.
        try:
            getattr(b, SCENARIOS[name])()
        except Exception as e:  # noqa: BLE001
            why = f"{type(e).__name__}: {e}".strip()
            log(f"  scenario {name} failed: {why}")
            b.results.setdefault("failed", {})[SCENARIOS[name] if name != "drain" else "drain"] = why
            b.results.setdefault(name, {"error": why}) if name in ("target", "debezium", "routes", "upsert") else None
    b.results["wall_seconds"] = time.time() - started
    if args.only:
        lines = [f"# sluice benchmark report, {b.date} (only {args.only}" + (", quick mode)" if args.quick else ")"), "",
                 f"Machine: {b.results['machine']}", ""] + (b.report_ingest() if "ingest_best" in b.results else []) + b.report_producer() + b.report_target() + b.report_routes()
        for name, why in b.results.get("failed", {}).items():
            if name not in ("target", "routes", "upsert"):
                lines += [f"Scenario `{name}` failed: {why}", ""]
        (b.out / "report-only.md").write_text("\n".join(lines) + "\n")
        (b.out / "results-only.json").write_text(json.dumps(b.results, indent=1, default=str))
        log(f"done in {time.time() - started:.0f}s: {b.out / 'report-only.md'}")
        return
    try:
        b.plots()
    except Exception as e:  # noqa: BLE001 - a missing scenario leaves its plot out
        log(f"  plots incomplete: {type(e).__name__}: {e}")
    text = b.report()
    if not args.quick:
        update_benchmarks_md(text, b.out)
    log(f"done in {time.time() - started:.0f}s: {b.out / 'report.md'}")


if __name__ == "__main__":
    main()
