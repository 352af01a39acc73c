# sluice: the two commands a newcomer needs are `make run` and `make test`.
# Everything the tests need is installed and started from here (deploy/local/stack.sh).

SHELL        := /bin/bash
STACK        := deploy/local/stack.sh
CARGO        ?= cargo
TOPIC        ?= events
PARTITIONS   ?= 6
GATEWAY_LISTEN ?= 127.0.0.1:8080
SINKER_METRICS_LISTEN ?= 127.0.0.1:9091
# End-to-end tests start processes and brokers; a few at a time suits a 2-core machine.
E2E_THREADS  ?= 3

.PHONY: help up up-cluster down status build run test lint test-unit test-e2e promtool chromium chaos soak bench

help:
	@echo "make run     stack up, migrations applied, gateway + sinker in the foreground"
	@echo "make test    fmt and clippy checks, stack up, then the whole test suite (unit + end-to-end)"
	@echo "make lint    cargo fmt --check and cargo clippy -D warnings only"
	@echo "make chaos   the long fault-injection run with exact accounting (PROFILE=cluster: three brokers;"
	@echo "             PROFILE=routes: gateway and sinkers on a routes file, user tables upserted and deleted)"
	@echo "make soak    30 minutes of steady load with faults, memory and lag followed (SOAK_DURATION=3m)"
	@echo "make bench   the benchmark suite; writes bench/results/<date>/ and BENCHMARKS.md"
	@echo "             (BENCH_ARGS='--quick --only routes,upsert': the routes scenarios at 50k events)"
	@echo "make up | down | status   the local Kafka + PostgreSQL stack"
	@echo "make up-cluster           three Kafka brokers (RF 3, min ISR 2) + PostgreSQL; make down stops it"

up:
	@$(STACK) up

# Three KRaft brokers (each also a controller) on 29092-29094, replication factor 3,
# min.insync.replicas=2; next to the single node, which keeps its ports. `make down` stops both.
up-cluster:
	@$(STACK) up-cluster

down:
	@$(STACK) down

status:
	@$(STACK) status

build:
	$(CARGO) build --workspace --bins

# Starts the stack, creates the topic, applies migrations, then runs gateway and sinker in the
# foreground until Ctrl-C (both are stopped with SIGTERM, which drains and commits).
run: up build
	@$(STACK) topic-create $(TOPIC) $(PARTITIONS) >/dev/null
	@eval "$$($(STACK) env)"; export DATABASE_URL KAFKA_BROKERS; \
	target/debug/sinker migrate && \
	echo "" && \
	echo "gateway on http://$(GATEWAY_LISTEN), sinker metrics on http://$(SINKER_METRICS_LISTEN)/metrics" && \
	echo "try:  curl -XPOST $(GATEWAY_LISTEN)/v1/events -H 'content-type: application/json' -d '{\"type\":\"page_view\",\"data\":{}}'" && \
	echo "then: psql \"$$DATABASE_URL\" -c 'select id, type, ts from events order by inserted_at desc limit 5'" && \
	echo "" && \
	pm=; if command -v prometheus >/dev/null; then \
	  mkdir -p .stack/prometheus; \
	  prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=.stack/prometheus \
	    --web.listen-address=127.0.0.1:9090 >.stack/prometheus/prometheus.log 2>&1 & pm=$$!; \
	  echo "prometheus on http://127.0.0.1:9090 (try: gateway_consumer_lag, sinker_consumer_lag)"; fi; \
	trap 'kill -TERM $$gw $$sk $$pm 2>/dev/null; wait $$gw $$sk $$pm' INT TERM EXIT; \
	KAFKA_TOPIC=$(TOPIC) GATEWAY_LISTEN=$(GATEWAY_LISTEN) target/debug/gateway & gw=$$!; \
	KAFKA_TOPIC=$(TOPIC) SINKER_METRICS_LISTEN=$(SINKER_METRICS_LISTEN) target/debug/sinker & sk=$$!; \
	wait -n $$gw $$sk

# promtool (Debian's prometheus package) checks and unit-tests the alert rules.
promtool:
	@command -v promtool >/dev/null || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# Headless Chromium (Debian's chromium package) for the browser end-to-end test.
chromium:
	@$(STACK) chromium >/dev/null

# Formatting and lints first (rustfmt.toml, clippy.toml): a failure there stops before the tests.
test: lint up build promtool chromium
	@eval "$$($(STACK) env)"; export DATABASE_URL KAFKA_BROKERS; \
	$(CARGO) test --workspace -- --test-threads=$(E2E_THREADS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The long chaos run (about 12 minutes): faults over and over under load, then exact accounting.
# It starts its own private Kafka and PostgreSQL; CHAOS_SEED=<n> replays a run.
# PROFILE=cluster: on a private three-broker cluster, with leader kills, two brokers down,
# paused processes, cut commits and network faults (about 11 minutes); PROFILE=cluster-short
# runs every cluster fault once (about 5 minutes). PROFILE=short is the one inside make test.
# PROFILE=routes: the long faults with the gateway and the sinkers on a routes file (page views
# inserted, orders upserted with a version and deleted, all into events too), every table
# audited; PROFILE=routes-short is its one-round variant inside make test.
PROFILE ?= long
chaos: build
	target/debug/chaos --profile $(PROFILE) --repo . $${CHAOS_SEED:+--seed $$CHAOS_SEED}

# The soak: SOAK_DURATION (default 30m) of steady load well below capacity on a private stack,
# a fault every three minutes (broker restart, PostgreSQL restart, table lock, sessions
# terminated, poison), the RSS of the gateway and the sinker every 10 s with its slope, the
# catch-up time after each fault, a 429 asked for at the end, then the exact audit.
SOAK_DURATION ?= 30m
soak: build
	target/debug/chaos --profile soak --duration $(SOAK_DURATION) --repo . $${CHAOS_SEED:+--seed $$CHAOS_SEED}

# The benchmark suite (bench/run.py): release builds, the local stack, every figure against a
# baseline measured in the same run. Writes bench/results/<date>/ and refreshes BENCHMARKS.md.
BENCH_VENV := .stack/bench-venv
bench: up
	$(CARGO) build --release -p gateway -p sinker -p loadgen -p sync-baseline
	$(CARGO) build --release -p sinker --example fill_typed
	@test -x $(BENCH_VENV)/bin/python && $(BENCH_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || { \
	  python3 -m venv $(BENCH_VENV) && $(BENCH_VENV)/bin/pip install -q matplotlib; }
	$(BENCH_VENV)/bin/python bench/run.py $(BENCH_ARGS)

test-unit:
	$(CARGO) test --workspace --lib

test-e2e: up build promtool chromium
	@eval "$$($(STACK) env)"; export DATABASE_URL KAFKA_BROKERS; \
	$(CARGO) test --test e2e -- --test-threads=$(E2E_THREADS)
