#!/usr/bin/env bash
# Local infrastructure for sluice, without Docker:
#   - Kafka 4.x (KRaft, single node) from Maven Central jars, run with plain java
#   - PostgreSQL from Debian's package, as a private cluster
#
# Usage: deploy/local/stack.sh COMMAND
#   up                         start both (if needed) and wait until they really answer
#   down                       stop both, leave no process behind
#   status                     running/stopped per service; exit 0 if both up, 3 otherwise
#   env                        print DATABASE_URL=... and KAFKA_BROKERS=... (for eval)
#   kafka-start | kafka-stop | kafka-kill
#   pg-start | pg-stop [--immediate]
#   topic-create NAME PARTITIONS | topic-delete NAME
#   chromium                   install Debian's chromium when missing (the browser e2e test
#                              drives it headless); prints the binary's path
#
# The three-broker cluster (next to the single node, on its own ports and state):
#   up-cluster                 three KRaft nodes (broker+controller each) and postgres; waits
#                              until all three brokers are in sync and an acks=all produce/consume
#                              round trip works
#   down-cluster               stop the three brokers (down stops them too)
#   env-cluster                DATABASE_URL=... and KAFKA_BROKERS=<the three addresses>
#   broker-stop N | broker-kill N | broker-start N    (N = 1, 2, 3; kill is kill -9)
#   broker-pid N               print the pid of broker N (exit 1 if it is not running)
#   cluster-topic-create NAME PARTITIONS     replication factor 3, min.insync.replicas 2
#
# Environment (all optional):
#   SLUICE_STATE_DIR       where all state lives (default <repo>/.stack)
#   KAFKA_PORT             PLAINTEXT listener (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener (default 9093)
#   KAFKA_SASL_PORT        SASL_PLAINTEXT/SCRAM-SHA-256 listener (default 9094)
#   PG_PORT                PostgreSQL (default 5432)
#   KAFKA_CLUSTER_PORT     first cluster port (default 29092): broker N listens on
#                          KAFKA_CLUSTER_PORT+N-1, its controller on KAFKA_CLUSTER_PORT+100+N-1,
#                          a PROXIED listener on +200+N-1 that advertises +300+N-1 (where the
#                          chaos harness runs a TCP proxy to it)
#   SLUICE_WAIT_SECS       bound for every wait (default 90)
# The ports are recorded in the state dir on first use, so later commands on the
# same state dir need only SLUICE_STATE_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STATE=${SLUICE_STATE_DIR:-$REPO/.stack}
case $STATE in /*) ;; *) STATE=$PWD/$STATE ;; esac
STATE=${STATE%/}
WAIT_SECS=${SLUICE_WAIT_SECS:-90}

# Fixed credentials (tests and docs rely on them).
PG_USER=sluice PG_PASSWORD=sluice PG_DB=sluice
SCRAM_USER=sluice SCRAM_PASSWORD=sluice-secret
PROBE_TOPIC=sluice-probe

log() { echo "stack: $*" >&2; }
die() { log "$*"; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# ---------------------------------------------------------------------------
# ports: env var > value recorded in the state dir > default
# ---------------------------------------------------------------------------
PORTS_FILE=$STATE/ports.env
declare -A DEFAULT_PORT=([KAFKA_PORT]=9092 [KAFKA_CONTROLLER_PORT]=9093 [KAFKA_SASL_PORT]=9094 [PG_PORT]=5432 [KAFKA_CLUSTER_PORT]=29092)
PORT_NAMES=(KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_SASL_PORT PG_PORT KAFKA_CLUSTER_PORT)

load_ports() {
  declare -A recorded=()
  local name value
  if [ -f "$PORTS_FILE" ]; then
    while IFS='=' read -r name value; do
      [ -n "${DEFAULT_PORT[$name]:-}" ] && recorded[$name]=$value
    done <"$PORTS_FILE"
  fi
  for name in "${PORT_NAMES[@]}"; do
    value=${!name:-}
    if [ -n "$value" ] && [ -n "${recorded[$name]:-}" ] && [ "$value" != "${recorded[$name]}" ]; then
      die "$STATE was set up with $name=${recorded[$name]} but the environment says $name=$value; use the same ports, or 'down' and remove the state dir"
    fi
    value=${value:-${recorded[$name]:-${DEFAULT_PORT[$name]}}}
    [[ $value =~ ^[0-9]+$ ]] || die "$name must be a port number, got '$value'"
    printf -v "$name" '%s' "$value"
  done
}

# Records every port not recorded yet (a state dir made before a port existed gets it added).
record_ports() {
  local name
  for name in "${PORT_NAMES[@]}"; do
    grep -q "^$name=" "$PORTS_FILE" 2>/dev/null || echo "$name=${!name}" >>"$PORTS_FILE"
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fail early and clearly if a port we need is taken by someone else.
ensure_ports_free() {
  local what=$1 port
  shift
  for port in "$@"; do
    if port_open "$port"; then
      die "cannot start $what: port 127.0.0.1:$port is already in use by another process"
    fi
  done
}

# ---------------------------------------------------------------------------
# locking: one mutating stack.sh per state dir at a time
# ---------------------------------------------------------------------------
take_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w $((WAIT_SECS * 3)) 9 || die "another stack.sh is busy with $STATE (lock $STATE/.lock)"
  record_ports
}

# Whether the process whose pid is in file $1 still lives (not a zombie). Right after a launch
# the pid file holds the background shell that is about to exec the JVM: until it does, its
# command line is not the broker's, so "not found by command line" must not read as "exited".
launched_alive() {
  local pid state
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ]
}

# Wait until pid is gone (or a zombie). Returns 1 after $2 seconds.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2)) state
  while [ -e "/proc/$pid" ]; do
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ "$state" = Z ] && return 0
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

# Sets CMDLINE to the command line of pid (space separated); returns 1 if gone.
CMDLINE=
read_cmdline() {
  local -a parts=()
  { mapfile -d '' parts <"/proc/$1/cmdline"; } 2>/dev/null || return 1
  CMDLINE="${parts[*]}"
  [ -n "$CMDLINE" ]
}

# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------
K=$STATE/kafka
K_CONF=$K/server.properties
K_DATA=$K/data
K_LOGS=$K/logs
K_PID=$K/kafka.pid
K_SASL_CLIENT=$K/client-sasl.properties
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
LIBS=

check_java() {
  command -v "$JAVA" >/dev/null || die "java not found: kafka 4 needs java 17+ (e.g. apt-get install -y openjdk-17-jre-headless)"
  local major
  major=$("$JAVA" -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')
  [ -n "$major" ] && [ "$major" -ge 17 ] || die "java 17 or newer is needed for kafka 4 (found: $("$JAVA" -version 2>&1 | head -1))"
}

# Resolve the jars listed in kafka/pom.xml into a cache outside the repo,
# keyed by the pom's hash. Downloads into a temp dir and renames it, so a
# half-finished download is never taken for a complete one.
kafka_libs() {
  local sum cache tmp work
  sum=$(sha256sum "$HERE/kafka/pom.xml" | cut -c1-16)
  cache=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/sluice
  LIBS=$cache/kafka-libs-$sum
  if [ -d "$LIBS" ] && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null || die "maven (mvn) not found: it is needed once to download the kafka jars (apt-get install -y maven)"
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.kafka-libs-$sum.tmp.XXXXXX")
  work=$(mktemp -d)
  cp "$HERE/kafka/pom.xml" "$work/pom.xml"
  log "downloading kafka jars with maven into $LIBS (once per pom version)"
  if ! (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" </dev/null >"$work/mvn.log" 2>&1); then
    log "maven could not resolve deploy/local/kafka/pom.xml; last lines of its output:"
    tail -n 40 "$work/mvn.log" >&2
    rm -rf "$tmp" "$work"
    exit 1
  fi
  rm -rf "$work"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "maven finished but no kafka_2.13 jar was copied"; }
  # another stack.sh may have won the race: then keep theirs
  mv -T "$tmp" "$LIBS" 2>/dev/null || rm -rf "$tmp"
}

# java for short-lived Kafka tools: small heap, fast start, warnings to stderr
tool_java() {
  TOOL_JAVA=("$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Dlog4j2.configurationFile="$HERE/kafka/tools-log4j2.properties" -cp "$LIBS/*")
}

# Render a template: replace ${NAME} for the names given.
render() {
  local src=$1 dst=$2 name value expr=()
  shift 2
  for name in "$@"; do
    value=${!name}
    value=${value//\\/\\\\}; value=${value//&/\\&}; value=${value//|/\\|}
    expr+=(-e "s|\\\${$name}|$value|g")
  done
  sed "${expr[@]}" "$src" >"$dst.tmp"
  mv -f "$dst.tmp" "$dst"
}

kafka_prepare() {
  check_java
  kafka_libs
  tool_java
  mkdir -p "$K" "$K_LOGS"
  KAFKA_DATA_DIR=$K_DATA
  render "$HERE/kafka/server.properties" "$K_CONF" KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_SASL_PORT KAFKA_DATA_DIR
  cp "$HERE/kafka/log4j2.properties" "$K/log4j2.properties"
  cat >"$K_SASL_CLIENT" <<EOF
# client settings for the SASL_PLAINTEXT listener 127.0.0.1:$KAFKA_SASL_PORT
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$SCRAM_PASSWORD";
EOF
  kafka_format
}

# Format the storage once per state dir (also creates the SCRAM user).
kafka_format() {
  [ -f "$K_DATA/meta.properties" ] && return 0
  rm -rf "$K_DATA"   # a half-formatted dir from an interrupted run
  local id
  if [ -s "$K/cluster.id" ]; then
    id=$(<"$K/cluster.id")
  else
    id=$("${TOOL_JAVA[@]}" kafka.tools.StorageTool random-uuid)
    echo "$id" >"$K/cluster.id"
  fi
  log "formatting kafka storage in $K_DATA (cluster id $id)"
  if ! "${TOOL_JAVA[@]}" kafka.tools.StorageTool format --standalone -t "$id" -c "$K_CONF" \
      --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" >"$K_LOGS/format.log" 2>&1; then
    log "kafka storage format failed:"
    tail -n 40 "$K_LOGS/format.log" >&2
    exit 1
  fi
}

# Print the pid of this state dir's broker; return 1 if it is not running.
kafka_pid() {
  local pid d
  if [ -s "$K_PID" ]; then
    pid=$(<"$K_PID")
    if read_cmdline "$pid" && [[ $CMDLINE == *"kafka.Kafka $K_CONF" ]]; then
      echo "$pid"
      return 0
    fi
  fi
  # pid file lost or stale: look for a broker started with our config
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    if read_cmdline "$pid" && [[ $CMDLINE == *"kafka.Kafka $K_CONF" ]]; then
      { echo "$pid" >"$K_PID"; } 2>/dev/null || true
      echo "$pid"
      return 0
    fi
  done
  return 1
}

kafka_fail() {
  log "$*"
  if [ -s "$K_LOGS/server.log" ]; then
    echo "----- last 40 lines of $K_LOGS/server.log -----" >&2
    tail -n 40 "$K_LOGS/server.log" >&2
  fi
  if [ -s "$K_LOGS/kafka.out" ]; then
    echo "----- last 15 lines of $K_LOGS/kafka.out -----" >&2
    tail -n 15 "$K_LOGS/kafka.out" >&2
  fi
  if [ -s "$K_LOGS/probe.log" ]; then
    echo "----- last 10 lines of the last round-trip probe ($K_LOGS/probe.log) -----" >&2
    tail -n 10 "$K_LOGS/probe.log" >&2
  fi
  exit 1
}

# Start the broker in the background (no wait).
kafka_launch() {
  local pid
  if pid=$(kafka_pid); then
    log "kafka already running (pid $pid)"
    return 0
  fi
  ensure_ports_free kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT"
  log "starting kafka on 127.0.0.1:$KAFKA_PORT (sasl $KAFKA_SASL_PORT, controller $KAFKA_CONTROLLER_PORT)"
  echo "===== $(date -Is) starting kafka =====" >>"$K_LOGS/kafka.out"
  # setsid: own session, so the broker outlives this shell; fd 9 (the lock) closed
  (
    cd "$K"
    exec setsid nohup "$JAVA" -Xms256m -Xmx768m \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true \
      -Dkafka.logs.dir="$K_LOGS" -Dlog4j2.configurationFile="$K/log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$K_CONF"
  ) </dev/null >>"$K_LOGS/kafka.out" 2>&1 9>&- &
  echo $! >"$K_PID"
}

# One produce+consume round trip with Kafka's own EndToEndLatency tool
# (creates the probe topic if missing). Args: port, time limit, log file,
# then optionally a client properties file.
kafka_roundtrip() {
  local port=$1 limit=$2 out=$3 rc=0
  shift 3
  echo "== $(date -Is) round trip via 127.0.0.1:$port" >>"$out"
  timeout -k 5 "$limit" "${TOOL_JAVA[@]}" org.apache.kafka.tools.EndToEndLatency \
    "127.0.0.1:$port" "$PROBE_TOPIC" 1 all 16 "$@" >>"$out" 2>&1 || rc=$?
  [ $rc = 124 ] && echo "(probe timed out after ${limit}s)" >>"$out"
  return $rc
}

# Wait (bounded) until the broker completes round trips on the plain and the
# SASL listener (both probes run side by side).
kafka_wait_ready() {
  local deadline=$((SECONDS + WAIT_SECS)) left plain sasl
  : >"$K_LOGS/probe.log"
  : >"$K_LOGS/probe-sasl.log"
  until port_open "$KAFKA_PORT"; do
    { kafka_pid >/dev/null || launched_alive "$K_PID"; } || kafka_fail "kafka exited during startup"
    [ $SECONDS -lt $deadline ] || kafka_fail "kafka did not open 127.0.0.1:$KAFKA_PORT within ${WAIT_SECS}s"
    sleep 0.3
  done
  while :; do
    left=$((deadline - SECONDS))
    [ $left -gt 0 ] || kafka_fail "kafka did not complete a produce/consume round trip within ${WAIT_SECS}s"
    [ $left -gt 30 ] && left=30
    kafka_roundtrip "$KAFKA_PORT" "$left" "$K_LOGS/probe.log" & plain=$!
    kafka_roundtrip "$KAFKA_SASL_PORT" "$left" "$K_LOGS/probe-sasl.log" "$K_SASL_CLIENT" & sasl=$!
    if wait $plain; then
      wait $sasl && break
      # the plain listener works: give sasl one more try before calling it broken
      left=$((deadline - SECONDS))
      [ $left -gt 30 ] && left=30
      [ $left -gt 0 ] || left=1
      kafka_roundtrip "$KAFKA_SASL_PORT" "$left" "$K_LOGS/probe-sasl.log" "$K_SASL_CLIENT" && break
      kafka_fail "kafka round trip works on $KAFKA_PORT but not on the sasl listener $KAFKA_SASL_PORT (scram user $SCRAM_USER, see $K_LOGS/probe-sasl.log)"
    fi
    wait $sasl || true
    { kafka_pid >/dev/null || launched_alive "$K_PID"; } || kafka_fail "kafka exited during startup"
    sleep 1
  done
  log "kafka ready on 127.0.0.1:$KAFKA_PORT (round trip ok on plain and sasl listeners)"
}

kafka_start() {
  kafka_prepare
  kafka_launch
  kafka_wait_ready
}

# Stop the broker: SIGTERM, bounded wait, then SIGKILL.
kafka_stop() {
  local pid
  if ! pid=$(kafka_pid); then
    log "kafka not running"
    rm -f "$K_PID"
    return 0
  fi
  log "stopping kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 30; then
    log "kafka still running after 30s, sending kill -9"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "kafka (pid $pid) survived kill -9"
  fi
  rm -f "$K_PID"
}

kafka_kill() {
  local pid
  if ! pid=$(kafka_pid); then
    log "kafka not running"
    return 0
  fi
  log "killing kafka (kill -9 pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "kafka (pid $pid) survived kill -9"
  rm -f "$K_PID"
}

kafka_topic() {
  check_java
  kafka_libs
  tool_java
  port_open "$KAFKA_PORT" || die "kafka is not answering on 127.0.0.1:$KAFKA_PORT (run: $0 up)"
  timeout -k 5 60 "${TOOL_JAVA[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
PGBIN= PGROOT= PGDATA= PGRUN= PGLOG=
PG_ROOT_FILE=$STATE/postgres.location

# Run a command as the postgres user when we are root (initdb/postgres refuse root).
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

find_pgbin() {
  local d
  PGBIN=
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/psql" ] && PGBIN=$d
  done
  [ -n "$PGBIN" ]
}

# Install Debian's chromium when missing (idempotent), then print the binary's path. The
# browser end-to-end test runs it headless; nothing else in the stack needs it.
find_chromium() {
  local b
  for b in chromium chromium-browser; do
    command -v "$b" 2>/dev/null && return 0
  done
  return 1
}

chromium_install() {
  find_chromium && return 0
  is_root || die "missing chromium: install with 'sudo apt-get install -y chromium' (or run as root)"
  log "installing chromium with apt-get"
  local out
  out=$(mktemp)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends chromium; } </dev/null >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "apt-get install chromium failed"
  fi
  rm -f "$out"
  find_chromium || die "chromium installed but not on PATH"
}

# Install Debian's postgresql (and openssl) when missing.
pg_install() {
  local pkgs=()
  find_pgbin || pkgs+=(postgresql)
  command -v openssl >/dev/null || pkgs+=(openssl)
  [ ${#pkgs[@]} -eq 0 ] && return 0
  is_root || die "missing ${pkgs[*]}: install with 'sudo apt-get install -y ${pkgs[*]}' (or run as root)"
  log "installing ${pkgs[*]} with apt-get"
  local out
  out=$(mktemp)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"; } </dev/null >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "apt-get install ${pkgs[*]} failed"
  fi
  rm -f "$out"
  find_pgbin || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found"
  # the package may have started its default cluster; it must not hold our port
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name port status _; do
      if [ "$port" = "$PG_PORT" ] && [ "$status" = online ]; then
        log "stopping the package's default cluster $ver/$name, it uses port $PG_PORT"
        pg_ctlcluster "$ver" "$name" stop || true
      fi
    done
  fi
}

# Where the cluster lives: $STATE/postgres, or /var/tmp/sluice-<hash>/postgres when the
# postgres user cannot reach the state dir (or the socket path would be too long).
pg_paths() {
  if [ -s "$PG_ROOT_FILE" ]; then
    PGROOT=$(<"$PG_ROOT_FILE")
  else
    PGROOT=$STATE/postgres
    local reachable=1
    if is_root && [ -d "$STATE" ] && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
      reachable=0
    fi
    if [ $reachable = 0 ] || [ $((${#PGROOT} + 20)) -gt 100 ]; then
      PGROOT=/var/tmp/sluice-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)/postgres
    fi
  fi
  PGDATA=$PGROOT/data
  PGRUN=$PGROOT/run
  PGLOG=$PGROOT/postgres.log
}

# Create the cluster once: initdb, TLS cert, pg_hba.
pg_init() {
  pg_paths
  [ -s "$PG_ROOT_FILE" ] || echo "$PGROOT" >"$PG_ROOT_FILE"
  if [ "$PGROOT" != "$STATE/postgres" ] && [ ! -e "$STATE/postgres" ]; then
    ln -s "$PGROOT" "$STATE/postgres"   # for humans looking for the logs
  fi
  mkdir -p "$PGROOT"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user on this machine (is the postgresql package installed?)"
    chown postgres:postgres "$PGROOT"
  fi
  chmod 700 "$PGROOT"
  as_pg mkdir -p "$PGRUN"
  [ -f "$PGDATA/PG_VERSION" ] && return 0

  log "creating postgres cluster in $PGDATA"
  as_pg rm -rf "$PGDATA"   # leftovers of an interrupted initdb
  if ! as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 >"$STATE/initdb.log" 2>&1; then
    tail -n 40 "$STATE/initdb.log" >&2
    die "initdb failed"
  fi

  # self-signed certificate so clients can use sslmode=require
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" >/dev/null 2>&1 ||
    die "openssl could not create the postgres tls certificate"
  chmod 600 "$PGDATA/server.key"
  is_root && chown postgres:postgres "$PGDATA/server.key" "$PGDATA/server.crt"

  cat >"$PGDATA/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 trust
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
EOF
  echo "include_if_exists = 'sluice.conf'" >>"$PGDATA/postgresql.conf"
  is_root && chown postgres:postgres "$PGDATA/pg_hba.conf"
  return 0
}

# Settings that depend on the port/paths, rewritten at every start.
pg_conf() {
  cat >"$PGDATA/sluice.conf" <<EOF
# written by deploy/local/stack.sh at every start
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGRUN'
max_connections = 300
shared_buffers = 256MB
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
  is_root && chown postgres:postgres "$PGDATA/sluice.conf"
  return 0
}

# Print the postmaster pid; return 1 if not running.
pg_pid() {
  local pid
  [ -n "$PGDATA" ] || pg_paths
  [ -f "$PGDATA/postmaster.pid" ] || return 1
  read -r pid <"$PGDATA/postmaster.pid" || return 1
  read_cmdline "$pid" && [[ $CMDLINE == *postgres*"$PGDATA"* ]] || return 1
  echo "$pid"
}

pg_fail() {
  log "$*"
  if [ -s "$PGLOG" ]; then
    echo "----- last 40 lines of $PGLOG -----" >&2
    tail -n 40 "$PGLOG" >&2
  fi
  exit 1
}

psql_super() {
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGRUN" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_launch() {
  local pid
  if pid=$(pg_pid); then
    log "postgres already running (pid $pid)"
    return 0
  fi
  ensure_ports_free postgres "$PG_PORT"
  pg_conf
  log "starting postgres on 127.0.0.1:$PG_PORT"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t "$WAIT_SECS" start >/dev/null 9>&- ||
    pg_fail "postgres did not start within ${WAIT_SECS}s"
}

# App role (may create databases and roles: tests isolate themselves with them) and database (idempotent), then wait for 'select 1' as the app user.
pg_wait_ready() {
  local deadline=$((SECONDS + WAIT_SECS))
  until psql_super -c 'select 1' >/dev/null 2>&1; do
    pg_pid >/dev/null || pg_fail "postgres exited during startup"
    [ $SECONDS -lt $deadline ] || pg_fail "postgres did not accept connections within ${WAIT_SECS}s"
    sleep 0.3
  done
  psql_super >/dev/null <<EOF || pg_fail "could not create role/database $PG_USER"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER;
  END IF;
END \$\$;
ALTER ROLE $PG_USER WITH LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
EOF
  until PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 "$PGBIN/psql" -X -q -At \
      "postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB" -c 'select 1' 2>/dev/null | grep -qx 1; do
    [ $SECONDS -lt $deadline ] || pg_fail "postgres does not answer 'select 1' as $PG_USER within ${WAIT_SECS}s"
    sleep 0.3
  done
  log "postgres ready on 127.0.0.1:$PG_PORT"
}

pg_start() {
  pg_install
  pg_init
  pg_launch
  pg_wait_ready
}

# pids of the children of $1
child_pids() {
  local f line
  local -a fields
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -r -a fields <<<"${line##*) }"   # state ppid ...
    [ "${fields[1]}" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}

# Stop postgres with pg_ctl -m MODE; kill -9 postmaster and children if that fails.
pg_stop() {
  local mode=${1:-fast} pid kids
  find_pgbin || { log "postgres not running (not installed)"; return 0; }
  pg_paths
  if ! pid=$(pg_pid); then
    log "postgres not running"
    return 0
  fi
  log "stopping postgres (pid $pid, mode $mode)"
  kids=$(child_pids "$pid")
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m "$mode" -w -t 30 stop >/dev/null 2>&1; then
    log "pg_ctl stop failed or timed out, sending kill -9"
    kill -KILL "$pid" $kids 2>/dev/null || true
  fi
  wait_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5; } ||
    die "postgres (pid $pid) survived kill -9"
  # backends normally exit with the postmaster; kill any that did not
  for pid in $kids; do
    read_cmdline "$pid" && [[ $CMDLINE == postgres:* ]] || continue
    wait_gone "$pid" 5 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
  done
}

# ---------------------------------------------------------------------------
# The three-broker cluster: three combined broker+controller KRaft nodes
# ---------------------------------------------------------------------------
C=$STATE/cluster
C_NODES=(1 2 3)

broker_port() { echo $((KAFKA_CLUSTER_PORT + $1 - 1)); }
controller_port() { echo $((KAFKA_CLUSTER_PORT + 100 + $1 - 1)); }
proxied_port() { echo $((KAFKA_CLUSTER_PORT + 200 + $1 - 1)); }
cluster_brokers() {
  local n out=""
  for n in "${C_NODES[@]}"; do out+="${out:+,}127.0.0.1:$(broker_port "$n")"; done
  echo "$out"
}
check_node() { [[ ${1:-} =~ ^[123]$ ]] || die "broker number must be 1, 2 or 3, got '${1:-}'"; }

cluster_prepare() {
  check_java
  kafka_libs
  tool_java
  local n voters="" id
  for n in "${C_NODES[@]}"; do voters+="${voters:+,}$n@127.0.0.1:$(controller_port "$n")"; done
  mkdir -p "$C"
  if [ -s "$C/cluster.id" ]; then
    id=$(<"$C/cluster.id")
  else
    id=$("${TOOL_JAVA[@]}" kafka.tools.StorageTool random-uuid)
    echo "$id" >"$C/cluster.id"
  fi
  for n in "${C_NODES[@]}"; do
    local dir=$C/broker-$n
    mkdir -p "$dir/logs"
    NODE_ID=$n BROKER_PORT=$(broker_port "$n") CONTROLLER_PORT=$(controller_port "$n")
    PROXIED_PORT=$(proxied_port "$n") PROXIED_ADVERTISED_PORT=$((KAFKA_CLUSTER_PORT + 300 + n - 1))
    QUORUM_VOTERS=$voters KAFKA_DATA_DIR=$dir/data
    render "$HERE/kafka/cluster.properties" "$dir/server.properties" \
      NODE_ID BROKER_PORT CONTROLLER_PORT PROXIED_PORT PROXIED_ADVERTISED_PORT QUORUM_VOTERS KAFKA_DATA_DIR
    cp "$HERE/kafka/log4j2.properties" "$dir/log4j2.properties"
    [ -f "$dir/data/meta.properties" ] && continue
    rm -rf "$dir/data"   # a half-formatted dir from an interrupted run
    log "formatting broker $n storage in $dir/data (cluster id $id)"
    if ! "${TOOL_JAVA[@]}" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
        >"$dir/logs/format.log" 2>&1; then
      log "broker $n storage format failed:"
      tail -n 40 "$dir/logs/format.log" >&2
      exit 1
    fi
  done
}

# Print the pid of broker $1 of this state dir; return 1 if it is not running.
broker_pid() {
  local n=$1 conf=$C/broker-$1/server.properties pidf=$C/broker-$1/kafka.pid pid d
  if [ -s "$pidf" ]; then
    pid=$(<"$pidf")
    if read_cmdline "$pid" && [[ $CMDLINE == *"kafka.Kafka $conf" ]]; then
      echo "$pid"
      return 0
    fi
  fi
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    if read_cmdline "$pid" && [[ $CMDLINE == *"kafka.Kafka $conf" ]]; then
      { echo "$pid" >"$pidf"; } 2>/dev/null || true
      echo "$pid"
      return 0
    fi
  done
  return 1
}

broker_fail() {
  local n=$1 logs=$C/broker-$1/logs
  shift
  log "$*"
  if [ -s "$logs/server.log" ]; then
    echo "----- last 30 lines of $logs/server.log -----" >&2
    tail -n 30 "$logs/server.log" >&2
  fi
  if [ -s "$logs/kafka.out" ]; then
    echo "----- last 10 lines of $logs/kafka.out -----" >&2
    tail -n 10 "$logs/kafka.out" >&2
  fi
  exit 1
}

# Start broker $1 in the background (no wait). Small JVM: three of them share a small machine.
broker_launch() {
  local n=$1 dir=$C/broker-$1 pid
  if pid=$(broker_pid "$n"); then
    log "broker $n already running (pid $pid)"
    return 0
  fi
  ensure_ports_free "broker $n" "$(broker_port "$n")" "$(controller_port "$n")" "$(proxied_port "$n")"
  log "starting broker $n on 127.0.0.1:$(broker_port "$n") (controller $(controller_port "$n"))"
  echo "===== $(date -Is) starting broker $n =====" >>"$dir/logs/kafka.out"
  # where this start's log begins: broker_wait_started looks for the startup line after it
  wc -l 2>/dev/null <"$dir/logs/server.log" >"$dir/logs/.start-line" || echo 0 >"$dir/logs/.start-line"
  (
    cd "$dir"
    exec setsid nohup "$JAVA" -Xms64m -Xmx${KAFKA_CLUSTER_HEAP:-320m} \
      -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true \
      -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$dir/server.properties"
  ) </dev/null >>"$dir/logs/kafka.out" 2>&1 9>&- &
  echo $! >"$dir/kafka.pid"
}

# Wait (bounded) until broker $1 logged that it started, after its latest launch.
broker_wait_started() {
  local n=$1 logs=$C/broker-$1/logs deadline=$((SECONDS + WAIT_SECS)) from
  from=$(cat "$logs/.start-line" 2>/dev/null || echo 0)
  until tail -n +"$((from + 1))" "$logs/server.log" 2>/dev/null | grep -q "Kafka Server started"; do
    { broker_pid "$n" >/dev/null || launched_alive "$C/broker-$n/kafka.pid"; } || broker_fail "$n" "broker $n exited during startup"
    [ $SECONDS -lt $deadline ] || broker_fail "$n" "broker $n did not finish starting within ${WAIT_SECS}s"
    sleep 0.3
  done
  port_open "$(broker_port "$n")" || broker_fail "$n" "broker $n started but 127.0.0.1:$(broker_port "$n") does not answer"
}

cluster_topic_tool() {
  timeout -k 5 60 "${TOOL_JAVA[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(cluster_brokers)" "$@"
}

# All three up: an acks=all round trip through a replication-factor-3 probe topic, then no
# under-replicated partition anywhere (every broker fetches from every leader).
cluster_wait_ready() {
  local deadline=$((SECONDS + WAIT_SECS)) left n urp out=$C/probe.log
  : >"$out"
  for n in "${C_NODES[@]}"; do broker_wait_started "$n"; done
  until cluster_topic_tool --create --if-not-exists --topic "$PROBE_TOPIC" --partitions 1 \
      --replication-factor 3 --config min.insync.replicas=2 >>"$out" 2>&1; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$out" >&2; die "cluster: cannot create the probe topic within ${WAIT_SECS}s (see $out)"; }
    sleep 1
  done
  while :; do
    left=$((deadline - SECONDS))
    [ $left -gt 0 ] || { tail -n 20 "$out" >&2; die "cluster: no acks=all produce/consume round trip within ${WAIT_SECS}s (see $out)"; }
    [ $left -gt 30 ] && left=30
    echo "== $(date -Is) round trip via $(cluster_brokers)" >>"$out"
    timeout -k 5 "$left" "${TOOL_JAVA[@]}" org.apache.kafka.tools.EndToEndLatency \
      "$(cluster_brokers)" "$PROBE_TOPIC" 1 all 16 >>"$out" 2>&1 && break
    for n in "${C_NODES[@]}"; do { broker_pid "$n" >/dev/null || launched_alive "$C/broker-$n/kafka.pid"; } || broker_fail "$n" "broker $n exited during startup"; done
    sleep 1
  done
  while :; do
    urp=$(cluster_topic_tool --describe --under-replicated-partitions 2>>"$out") || urp="(describe failed)"
    [ -z "$urp" ] && break
    [ $SECONDS -lt $deadline ] || { echo "$urp" >&2; die "cluster: partitions still under-replicated after ${WAIT_SECS}s"; }
    sleep 1
  done
  log "cluster ready on $(cluster_brokers) (3 brokers in sync, acks=all round trip ok)"
}

broker_stop() {
  local n=$1 pid
  if ! pid=$(broker_pid "$n"); then
    log "broker $n not running"
    rm -f "$C/broker-$n/kafka.pid"
    return 0
  fi
  log "stopping broker $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 30; then
    log "broker $n still running after 30s, sending kill -9"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "broker $n (pid $pid) survived kill -9"
  fi
  rm -f "$C/broker-$n/kafka.pid"
}

broker_kill() {
  local n=$1 pid
  if ! pid=$(broker_pid "$n"); then
    log "broker $n not running"
    return 0
  fi
  log "killing broker $n (kill -9 pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "broker $n (pid $pid) survived kill -9"
  rm -f "$C/broker-$n/kafka.pid"
}

cluster_up() {
  cluster_prepare
  local n
  for n in "${C_NODES[@]}"; do broker_launch "$n"; done
}

cluster_down() {
  [ -d "$C" ] || return 0
  local n pid pids=()
  # SIGTERM all three at once: one at a time, the last ones would wait for a quorum that is gone
  for n in "${C_NODES[@]}"; do
    if pid=$(broker_pid "$n"); then
      log "stopping broker $n (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$n:$pid")
    fi
  done
  local entry
  for entry in "${pids[@]}"; do
    n=${entry%%:*} pid=${entry#*:}
    if ! wait_gone "$pid" 30; then
      log "broker $n still running after 30s, sending kill -9"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || die "broker $n (pid $pid) survived kill -9"
    fi
    rm -f "$C/broker-$n/kafka.pid"
  done
}

print_cluster_env() {
  echo "DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
  echo "KAFKA_BROKERS=$(cluster_brokers)"
}

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
print_env() {
  echo "DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
  echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
}

cmd_up() {
  take_lock
  local start=$SECONDS
  kafka_prepare
  kafka_launch        # the broker boots while postgres is set up
  pg_start
  kafka_wait_ready
  log "stack up in $((SECONDS - start))s (state in $STATE)"
  print_env
}

cmd_up_cluster() {
  take_lock
  local start=$SECONDS
  cluster_up          # the brokers boot while postgres is set up
  pg_start
  cluster_wait_ready
  log "cluster stack up in $((SECONDS - start))s (state in $STATE)"
  print_cluster_env
}

cmd_down() {
  take_lock
  kafka_stop
  cluster_down
  pg_stop fast
  # verify nothing of this stack is left
  local left="" n
  kafka_pid >/dev/null && left+=" kafka"
  if [ -d "$C" ]; then
    for n in "${C_NODES[@]}"; do broker_pid "$n" >/dev/null && left+=" broker-$n"; done
  fi
  pg_pid >/dev/null && left+=" postgres"
  [ -z "$left" ] || die "still running after down:$left"
  log "stack down"
}

cmd_status() {
  local rc=0 pid
  if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
    echo "kafka: running (pid $pid, 127.0.0.1:$KAFKA_PORT, sasl 127.0.0.1:$KAFKA_SASL_PORT)"
  elif [ -n "${pid:-}" ]; then
    echo "kafka: starting (pid $pid, 127.0.0.1:$KAFKA_PORT not answering yet)"
    rc=3
  else
    echo "kafka: stopped (127.0.0.1:$KAFKA_PORT)"
    rc=3
  fi
  if [ -d "$C" ]; then
    local n
    for n in "${C_NODES[@]}"; do
      if pid=$(broker_pid "$n"); then
        echo "cluster broker $n: running (pid $pid, 127.0.0.1:$(broker_port "$n"))"
      else
        echo "cluster broker $n: stopped (127.0.0.1:$(broker_port "$n"))"
      fi
    done
  fi
  pid=
  pg_paths
  if pid=$(pg_pid) && port_open "$PG_PORT"; then
    echo "postgres: running (pid $pid, 127.0.0.1:$PG_PORT, data $PGDATA)"
  elif [ -n "${pid:-}" ]; then
    echo "postgres: starting (pid $pid, 127.0.0.1:$PG_PORT not answering yet)"
    rc=3
  else
    echo "postgres: stopped (127.0.0.1:$PG_PORT)"
    rc=3
  fi
  return $rc
}

usage() {
  sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  load_ports
  # stopping a stack that was never set up: nothing to do
  case $cmd in
    down | kafka-stop | kafka-kill | pg-stop | down-cluster | broker-stop | broker-kill | broker-pid)
      [ -d "$STATE" ] || { log "nothing to stop: $STATE does not exist"; return 0; } ;;
  esac
  case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) print_env ;;
    up-cluster) cmd_up_cluster ;;
    down-cluster) take_lock; cluster_down; log "cluster down" ;;
    env-cluster) print_cluster_env ;;
    broker-stop) check_node "${1:-}"; take_lock; broker_stop "$1" ;;
    broker-kill) check_node "${1:-}"; take_lock; broker_kill "$1" ;;
    broker-start)
      check_node "${1:-}"; take_lock
      [ -f "$C/broker-$1/data/meta.properties" ] || die "broker $1 was never set up here: run '$0 up-cluster' first"
      cluster_prepare; broker_launch "$1"; broker_wait_started "$1"
      log "broker $1 started on 127.0.0.1:$(broker_port "$1")" ;;
    broker-pid) check_node "${1:-}"; broker_pid "$1" ;;
    cluster-topic-create)
      [ $# -eq 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || usage
      check_java; kafka_libs; tool_java
      cluster_topic_tool --create --if-not-exists --topic "$1" --partitions "$2" \
        --replication-factor 3 --config min.insync.replicas=2
      log "topic $1 ready (replication factor 3, min.insync.replicas 2)" ;;
    kafka-start) take_lock; kafka_start ;;
    kafka-stop) take_lock; kafka_stop ;;
    kafka-kill) take_lock; kafka_kill ;;
    pg-start) take_lock; pg_start ;;
    pg-stop)
      case ${1:-} in
        "") take_lock; pg_stop fast ;;
        --immediate) take_lock; pg_stop immediate ;;
        *) usage ;;
      esac ;;
    topic-create)
      [ $# -eq 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || usage
      kafka_topic --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1
      log "topic $1 ready" ;;
    topic-delete)
      [ $# -eq 1 ] || usage
      kafka_topic --delete --if-exists --topic "$1"
      log "topic $1 deleted" ;;
    chromium) chromium_install ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
