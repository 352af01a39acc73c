#!/usr/bin/env bash
# Baseline for the benchmark report: how fast Kafka Connect (standalone) with the Debezium JDBC
# sink connector drains a topic of sluice-like events into a PostgreSQL table shaped like
# sluice's `events`. See bench/debezium/README.md.
#
# Usage: bench/debezium/run.sh [options]
#   --brokers HOST:PORT       Kafka bootstrap servers          (env KAFKA_BROKERS, default 127.0.0.1:9092)
#   --database-url URL        postgres://user:pass@host:port/db (env DATABASE_URL, required)
#   --events N                events to produce and drain      (env BENCH_EVENTS, default 100000)
#   --partitions P            partitions of the topic          (env BENCH_PARTITIONS, default 6)
#   --batch-size B            Debezium batch.size              (env BENCH_BATCH_SIZE, default 500)
#   --tasks T                 connector tasks.max              (env BENCH_TASKS, default P)
#   --max-poll-records M      consumer max.poll.records        (env BENCH_MAX_POLL_RECORDS, default B)
#   --insert-mode MODE        upsert | insert                  (env BENCH_INSERT_MODE, default upsert)
#   --writer W                unnest | batch | rewrite         (env BENCH_WRITER, default unnest)
#                               unnest:  dialect.postgres.unnest.insert.enabled=true (one INSERT ... UNNEST per batch)
#                               batch:   plain JDBC batching (one INSERT per row, sent as a JDBC batch)
#                               rewrite: JDBC batching with pgjdbc's reWriteBatchedInserts=true
#   --payload-bytes BYTES     size of each event's data        (env BENCH_PAYLOAD_BYTES, default 256)
#   --key-space K             distinct event keys              (env BENCH_KEY_SPACE, default 1000)
#   --replication-factor R    of the topic                     (env BENCH_REPLICATION_FACTOR, default 1)
#   --heap SIZE               Connect worker -Xmx              (env BENCH_HEAP, default 1g)
#   --timeout SECS            bound on the drain               (env BENCH_TIMEOUT, default 600 + N/500)
#   --stall-timeout SECS      fail when the row count stands still that long (env BENCH_STALL_TIMEOUT, default 120)
#   --keep-table              do not drop the target table at the end
#   --log-dir DIR             copy Connect's log and the configs there at the end
#
# Prints exactly one line on stdout, the result:
#   {"system":"debezium-jdbc","events":N,"partitions":P,"batch_size":B,"seconds":S,"rows_per_second":R,"rows":count,...}
# seconds = from the connector's creation (POST /connectors on a worker that is already up) until
# `select count(*)` on the table returns N (polled every 0.5 s). Everything else goes to stderr.
# Exit status: 0 on success, 1 on any failure (with the reason and the tail of Connect's log), 2 on bad usage.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

log() { echo "debezium-bench: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() {
  log "FAILED: $*"
  if [ -n "${CONNECT_LOG:-}" ] && [ -s "$CONNECT_LOG" ]; then
    log "last lines of Connect's log ($CONNECT_LOG):"
    tail -n 60 "$CONNECT_LOG" | sed 's/^/  | /' >&2
  fi
  if [ -n "${CONNECT_OUT:-}" ] && [ -s "$CONNECT_OUT" ]; then
    log "last lines of Connect's stdout/stderr:"
    tail -n 20 "$CONNECT_OUT" | sed 's/^/  | /' >&2
  fi
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------
BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092}
DB_URL=${DATABASE_URL:-}
EVENTS=${BENCH_EVENTS:-100000}
PARTITIONS=${BENCH_PARTITIONS:-6}
BATCH_SIZE=${BENCH_BATCH_SIZE:-500}
TASKS=${BENCH_TASKS:-}
MAX_POLL=${BENCH_MAX_POLL_RECORDS:-}
INSERT_MODE=${BENCH_INSERT_MODE:-upsert}
WRITER=${BENCH_WRITER:-unnest}
PAYLOAD_BYTES=${BENCH_PAYLOAD_BYTES:-256}
KEY_SPACE=${BENCH_KEY_SPACE:-1000}
RF=${BENCH_REPLICATION_FACTOR:-1}
HEAP=${BENCH_HEAP:-1g}
TIMEOUT=${BENCH_TIMEOUT:-}
STALL_TIMEOUT=${BENCH_STALL_TIMEOUT:-120}
KEEP_TABLE=0
LOG_DIR=

while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
  esac
  case $opt in
    --keep-table) KEEP_TABLE=1; shift; continue ;;
    -h | --help) usage ;;
  esac
  [ $# -ge 2 ] || { log "$opt needs a value"; usage; }
  case $opt in
    --brokers) BROKERS=$2 ;;
    --database-url) DB_URL=$2 ;;
    --events) EVENTS=$2 ;;
    --partitions) PARTITIONS=$2 ;;
    --batch-size) BATCH_SIZE=$2 ;;
    --tasks) TASKS=$2 ;;
    --max-poll-records) MAX_POLL=$2 ;;
    --insert-mode) INSERT_MODE=$2 ;;
    --writer) WRITER=$2 ;;
    --payload-bytes) PAYLOAD_BYTES=$2 ;;
    --key-space) KEY_SPACE=$2 ;;
    --replication-factor) RF=$2 ;;
    --heap) HEAP=$2 ;;
    --timeout) TIMEOUT=$2 ;;
    --stall-timeout) STALL_TIMEOUT=$2 ;;
    --log-dir) LOG_DIR=$2 ;;
    *) log "unknown option $opt"; usage ;;
  esac
  shift 2
done

TASKS=${TASKS:-$PARTITIONS}
MAX_POLL=${MAX_POLL:-$BATCH_SIZE}
[[ $EVENTS =~ ^[1-9][0-9]*$ ]] && TIMEOUT=${TIMEOUT:-$((600 + EVENTS / 500))}
for v in EVENTS PARTITIONS BATCH_SIZE TASKS MAX_POLL KEY_SPACE RF TIMEOUT STALL_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { log "$v must be a positive integer, got '${!v}'"; exit 2; }
done
[[ $PAYLOAD_BYTES =~ ^[0-9]+$ ]] || { log "--payload-bytes must be an integer"; exit 2; }
[[ $HEAP =~ ^[0-9]+[kKmMgG]?$ ]] || { log "--heap must look like 512m or 1g"; exit 2; }
case $INSERT_MODE in upsert | insert) ;; *) log "--insert-mode must be upsert or insert"; exit 2 ;; esac
case $WRITER in unnest | batch | rewrite) ;; *) log "--writer must be unnest, batch or rewrite"; exit 2 ;; esac
[ -n "$DB_URL" ] || { log "--database-url (or DATABASE_URL) is required"; exit 2; }

# postgres://user:pass@host:port/db?params -> JDBC URL + user + password
url_decode() { local s=${1//+/ }; printf '%b' "${s//%/\\x}"; }
re='^postgres(ql)?://([^:@/]*)(:([^@/]*))?@([^:/?]+|\[[^]/]+\])(:([0-9]+))?/([^?]+)(\?(.*))?$'
[[ $DB_URL =~ $re ]] || { log "--database-url must look like postgres://user:pass@host:port/db"; exit 2; }
DB_USER=$(url_decode "${BASH_REMATCH[2]}")
DB_PASS=$(url_decode "${BASH_REMATCH[4]}")
DB_HOST=${BASH_REMATCH[5]}
DB_PORT=${BASH_REMATCH[7]:-5432}
DB_NAME=${BASH_REMATCH[8]}
DB_PARAMS=${BASH_REMATCH[10]}
JDBC_URL="jdbc:postgresql://$DB_HOST:$DB_PORT/$DB_NAME"
jdbc_params=$DB_PARAMS
[ "$WRITER" = rewrite ] && jdbc_params=${jdbc_params:+$jdbc_params&}reWriteBatchedInserts=true
[ -n "$jdbc_params" ] && JDBC_URL="$JDBC_URL?$jdbc_params"

for tool in curl psql awk sha256sum timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (curl; psql: apt-get install -y postgresql-client)"
done
command -v "$JAVA" >/dev/null || die "java not found: Kafka Connect 4 needs Java 17+"
java_major=$("$JAVA" -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] || die "Java 17 or newer is needed (found: $("$JAVA" -version 2>&1 | head -1))"

# ---------------------------------------------------------------------------
# jars: bench/debezium/pom.xml, resolved once per pom version into the cache
#   <cache>/connect-libs-<sha>/worker/                             the worker's classpath
#   <cache>/connect-libs-<sha>/plugins/debezium-connector-jdbc/    plugin.path entry
# ---------------------------------------------------------------------------
resolve_libs() {
  local sum cache tmp work profile out
  sum=$(sha256sum "$HERE/pom.xml" | cut -c1-16)
  cache=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/sluice
  LIBS=$cache/connect-libs-$sum
  if [ -f "$LIBS/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "maven (mvn) not found: it is needed once to download the Connect and Debezium jars"
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.connect-libs-$sum.tmp.XXXXXX")
  work=$(mktemp -d)
  cp "$HERE/pom.xml" "$work/pom.xml"
  log "downloading Kafka Connect and Debezium jars with maven into $LIBS (once per pom version)"
  for profile in worker plugin; do
    out=$tmp/worker
    [ $profile = plugin ] && out=$tmp/plugins/debezium-connector-jdbc
    if ! (cd "$work" && timeout -k 10 900 mvn -q -B -P "$profile" dependency:copy-dependencies \
          -DincludeScope=runtime -DoutputDirectory="$out" </dev/null >"$work/mvn-$profile.log" 2>&1); then
      log "maven could not resolve bench/debezium/pom.xml (profile $profile); last lines of its output:"
      tail -n 40 "$work/mvn-$profile.log" >&2
      rm -rf "$tmp" "$work"
      exit 1
    fi
  done
  rm -rf "$work"
  compgen -G "$tmp/worker/connect-runtime-*.jar" >/dev/null &&
    compgen -G "$tmp/plugins/debezium-connector-jdbc/debezium-connector-jdbc-*.jar" >/dev/null ||
    { rm -rf "$tmp"; die "maven finished but connect-runtime or debezium-connector-jdbc is missing"; }
  touch "$tmp/.complete"
  # another run may have won the race: then keep theirs
  mv -T "$tmp" "$LIBS" 2>/dev/null || rm -rf "$tmp"
}

# ---------------------------------------------------------------------------
# state and cleanup
# ---------------------------------------------------------------------------
SUFFIX=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
TOPIC=bench-dbz-$SUFFIX
TABLE=events_dbz_$SUFFIX
CONNECTOR=dbz-sink-$SUFFIX
TMP=$(mktemp -d "${TMPDIR:-/tmp}/debezium-bench.XXXXXX")
CONNECT_LOG=$TMP/connect.log
CONNECT_OUT=$TMP/connect.out
CONNECT_PID=
TOPIC_CREATED=0
TABLE_CREATED=0
CONNECTOR_POSTED=0

export PGCONNECT_TIMEOUT=10
psql_q() { timeout -k 5 60 psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DB_URL" "$@"; }

# a short-lived Kafka tool (TopicCommand, ConsumerGroupCommand) with bounded admin timeouts
tool_java() {
  local secs=$1 main=$2
  shift 2
  timeout -k 10 "$secs" "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$TMP/tools-log4j2.properties" -cp "$LIBS/worker/*" "$main" \
    --bootstrap-server "$BROKERS" --command-config "$TMP/admin.properties" "$@"
}

stop_connect() {
  [ -n "$CONNECT_PID" ] || return 0
  if kill -0 "$CONNECT_PID" 2>/dev/null; then
    log "stopping Kafka Connect (pid $CONNECT_PID)"
    kill -TERM "$CONNECT_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$CONNECT_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$CONNECT_PID" 2>/dev/null; then
      log "Kafka Connect did not stop in 30 s: kill -9"
      kill -KILL "$CONNECT_PID" 2>/dev/null || true
    fi
  fi
  wait "$CONNECT_PID" 2>/dev/null || true
  CONNECT_PID=
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_connect
  if [ -n "$LOG_DIR" ]; then
    mkdir -p "$LOG_DIR" && cp -f "$TMP"/*.log "$TMP"/*.out "$TMP"/*.properties "$LOG_DIR"/ 2>/dev/null
    log "logs copied to $LOG_DIR"
  fi
  if [ "$TOPIC_CREATED" = 1 ]; then
    tool_java 60 org.apache.kafka.tools.TopicCommand --delete --if-exists --topic "$TOPIC" >&2 ||
      log "could not delete topic $TOPIC"
  fi
  if [ "$CONNECTOR_POSTED" = 1 ]; then
    tool_java 60 org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --delete --group "connect-$CONNECTOR" \
      >/dev/null 2>&1 || log "could not delete consumer group connect-$CONNECTOR"
  fi
  if [ "$TABLE_CREATED" = 1 ] && [ "$KEEP_TABLE" = 0 ]; then
    psql_q -c "DROP TABLE IF EXISTS $TABLE" >&2 || log "could not drop table $TABLE"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port for Connect's REST listener. Picked below the kernel's ephemeral range (where client
# connections, Kafka's and PostgreSQL's included, take their local ports, so a port found free
# there can be taken a moment later) and checked by binding it, not by connecting to it (a port
# held by an outgoing connection refuses nothing but cannot be bound). The start below still
# retries on a bind failure: nothing reserves the port between this check and Java's bind.
free_port() {
  local p low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$low" -gt 11000 ] || low=32768
  for _ in $(seq 1 100); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    port_open "$p" && continue
    if command -v python3 >/dev/null; then
      python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$p" 2>/dev/null || continue
    fi
    echo "$p"
    return 0
  done
  die "no free TCP port found for Connect's REST API"
}

# ---------------------------------------------------------------------------
# 1. jars, configs
# ---------------------------------------------------------------------------
resolve_libs
log "events=$EVENTS partitions=$PARTITIONS batch.size=$BATCH_SIZE tasks=$TASKS max.poll.records=$MAX_POLL insert.mode=$INSERT_MODE writer=$WRITER"
log "topic $TOPIC, table $TABLE, work dir $TMP"

cat >"$TMP/tools-log4j2.properties" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = stderr
# "Connection to node -1 could not be established", once a second while a broker is away
logger.network.name = org.apache.kafka.clients.NetworkClient
logger.network.level = ERROR
EOF

cat >"$TMP/admin.properties" <<'EOF'
request.timeout.ms=15000
default.api.timeout.ms=30000
EOF

cat >"$TMP/connect-log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $CONNECT_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %X{connector.context}%m (%c:%L)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.hibernate.name = org.hibernate
logger.hibernate.level = WARN
logger.c3p0.name = com.mchange
logger.c3p0.level = WARN
EOF

write_worker_properties() {
cat >"$TMP/worker.properties" <<EOF
bootstrap.servers=$BROKERS
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=$TMP/connect.offsets
offset.flush.interval.ms=10000
listeners=http://127.0.0.1:$REST_PORT
rest.advertised.host.name=127.0.0.1
plugin.path=$LIBS/plugins
plugin.discovery=service_load
connector.client.config.override.policy=All
EOF
}

UNNEST=false
[ "$WRITER" = unnest ] && UNNEST=true
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
cat >"$TMP/connector.json" <<EOF
{
  "name": "$CONNECTOR",
  "config": {
    "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
    "tasks.max": "$TASKS",
    "topics": "$TOPIC",
    "connection.url": $(json_str "$JDBC_URL"),
    "connection.username": $(json_str "$DB_USER"),
    "connection.password": $(json_str "$DB_PASS"),
    "connection.pool.min_size": "1",
    "connection.pool.max_size": "4",
    "insert.mode": "$INSERT_MODE",
    "primary.key.mode": "record_value",
    "primary.key.fields": "id",
    "schema.evolution": "none",
    "delete.enabled": "false",
    "collection.name.format": "$TABLE",
    "batch.size": "$BATCH_SIZE",
    "use.time.zone": "UTC",
    "dialect.postgres.unnest.insert.enabled": "$UNNEST",
    "consumer.override.max.poll.records": "$MAX_POLL",
    "consumer.override.auto.offset.reset": "earliest",
    "errors.tolerance": "none"
  }
}
EOF
# the same without the password, for --log-dir
sed 's/\("connection.password": \).*/\1"[hidden]",/' "$TMP/connector.json" >"$TMP/connector.properties"

# ---------------------------------------------------------------------------
# 2. table and topic, events (not timed)
# ---------------------------------------------------------------------------
# fail fast when no bootstrap server accepts a TCP connection (the Kafka tools would retry for 30 s)
broker_up=0
IFS=, read -r -a broker_list <<<"$BROKERS"
for b in "${broker_list[@]}"; do
  b=${b#*://}
  h=${b%:*} p=${b##*:}
  h=${h#[} h=${h%]}
  if timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$p" 2>/dev/null; then broker_up=1; break; fi
done
[ "$broker_up" = 1 ] || die "no Kafka broker answers at $BROKERS"
psql_q -c "select 1" >/dev/null || die "cannot connect to PostgreSQL at $DB_HOST:$DB_PORT/$DB_NAME"
TABLE_CREATED=1
psql_q <<EOF >&2 || die "could not create table $TABLE"
CREATE TABLE $TABLE (
    id          uuid        PRIMARY KEY,
    type        text        NOT NULL,
    key         text,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now()
);
EOF

TOPIC_CREATED=1
tool_java 90 org.apache.kafka.tools.TopicCommand --create \
  --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor "$RF" >&2 ||
  die "could not create topic $TOPIC on $BROKERS"

log "producing $EVENTS events"
t0=$(now)
produce_timeout=$((120 + EVENTS / 1000))
timeout -k 10 "$produce_timeout" "$JAVA" -Xms64m -Xmx512m -Dlog4j2.configurationFile="$TMP/tools-log4j2.properties" \
  -cp "$LIBS/worker/*" "$HERE/Produce.java" "$BROKERS" "$TOPIC" "$EVENTS" "$PAYLOAD_BYTES" "$KEY_SPACE" >&2 ||
  die "producing the events failed (or took more than $produce_timeout s)"
log "produced in $(elapsed "$t0" "$(now)") s"

# ---------------------------------------------------------------------------
# 3. Connect worker (not timed)
# ---------------------------------------------------------------------------
rest() { curl -sS --max-time 10 "$@"; }
# Starts the worker and waits for its REST API; returns 3 when the listener's port was taken
# (BindException), so the caller picks another port and starts again.
start_worker() {
  REST_PORT=$(free_port)
  write_worker_properties
  REST=http://127.0.0.1:$REST_PORT
  : >"$CONNECT_LOG"
  log "starting Kafka Connect standalone (REST on 127.0.0.1:$REST_PORT, heap $HEAP)"
  "$JAVA" -Xms256m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=50 \
    -Dlog4j2.configurationFile="$TMP/connect-log4j2.properties" \
    -cp "$LIBS/worker/*" org.apache.kafka.connect.cli.ConnectStandalone "$TMP/worker.properties" \
    </dev/null >"$CONNECT_OUT" 2>&1 &
  CONNECT_PID=$!
  # watchdog: should this script die without its traps (kill -9), stop the worker anyway
  (
    while kill -0 "$CONNECT_PID" 2>/dev/null; do
      if ! kill -0 $$ 2>/dev/null; then
        kill -TERM "$CONNECT_PID" 2>/dev/null
        sleep 20
        kill -KILL "$CONNECT_PID" 2>/dev/null
        exit 0
      fi
      sleep 1
    done
  ) </dev/null >/dev/null 2>&1 &
  local deadline=$((SECONDS + 120))
  until rest -o /dev/null -f "$REST/connector-plugins" 2>/dev/null; do
    if grep -qs 'BindException\|Address already in use' "$CONNECT_LOG" "$CONNECT_OUT"; then
      log "port $REST_PORT was taken before Connect bound it; stopping the worker to start again on another port"
      kill -TERM "$CONNECT_PID" 2>/dev/null || true
      wait "$CONNECT_PID" 2>/dev/null || true
      CONNECT_PID=
      return 3
    fi
    kill -0 "$CONNECT_PID" 2>/dev/null || die "Kafka Connect exited during start-up"
    [ $SECONDS -lt $deadline ] || die "Kafka Connect's REST API did not answer within 120 s"
    sleep 0.5
  done
}
t_worker=$(now)
for attempt in 1 2 3 4 5; do
  rc=0
  start_worker || rc=$?
  [ "$rc" = 0 ] && break
  [ "$attempt" -lt 5 ] || die "Kafka Connect could not bind a REST port in 5 attempts"
done
rest "$REST/connector-plugins" | grep -q 'io.debezium.connector.jdbc.JdbcSinkConnector' ||
  die "the worker is up but does not list io.debezium.connector.jdbc.JdbcSinkConnector (plugin.path=$LIBS/plugins)"
log "worker up in $(elapsed "$t_worker" "$(now)") s"

# ---------------------------------------------------------------------------
# 4. the measurement: connector creation -> count(*) = N
# ---------------------------------------------------------------------------
count_rows() { psql_q -c "select count(*) from $TABLE"; }
connector_failure() {
  # prints the trace and returns 0 when the connector or a task FAILED
  local status
  status=$(rest "$REST/connectors/$CONNECTOR/status" 2>/dev/null) || return 1
  case $status in
    *'"state":"FAILED"'*) printf '%s\n' "$status" | sed 's/\\n/\n/g; s/\\t/\t/g' | head -n 40 >&2; return 0 ;;
  esac
  return 1
}

t_start=$(now)
CONNECTOR_POSTED=1
code=$(rest -o "$TMP/post.out" -w '%{http_code}' -X POST -H 'content-type: application/json' \
  --data-binary @"$TMP/connector.json" "$REST/connectors") || die "POST /connectors failed"
[ "$code" = 201 ] || die "POST /connectors answered $code: $(cat "$TMP/post.out")"
log "connector $CONNECTOR created; waiting for $EVENTS rows (bound ${TIMEOUT}s, stall bound ${STALL_TIMEOUT}s)"

rows=0 last_rows=-1 last_change=$SECONDS first_row="" first_rows=0 polls=0 t_end=""
deadline=$((SECONDS + TIMEOUT))
while :; do
  rows=$(count_rows) || die "select count(*) from $TABLE failed"
  if [ "$rows" -ge "$EVENTS" ]; then
    t_end=$(now)
    break
  fi
  if [ -z "$first_row" ] && [ "$rows" -gt 0 ]; then first_row=$(elapsed "$t_start" "$(now)") first_rows=$rows; fi
  if [ "$rows" != "$last_rows" ]; then last_rows=$rows last_change=$SECONDS; fi
  polls=$((polls + 1))
  if [ $((polls % 10)) = 0 ]; then
    log "  $rows/$EVENTS rows after $(elapsed "$t_start" "$(now)") s"
  fi
  if [ $((polls % 4)) = 0 ] && connector_failure; then
    die "the connector or one of its tasks FAILED with $rows/$EVENTS rows (status above)"
  fi
  kill -0 "$CONNECT_PID" 2>/dev/null || die "Kafka Connect exited with $rows/$EVENTS rows written"
  [ $((SECONDS - last_change)) -lt "$STALL_TIMEOUT" ] ||
    { connector_failure || true; die "no new row for ${STALL_TIMEOUT}s: stuck at $rows/$EVENTS rows"; }
  [ $SECONDS -lt "$deadline" ] || die "only $rows/$EVENTS rows after ${TIMEOUT}s"
  sleep 0.5
done
SECS=$(elapsed "$t_start" "$t_end")
first_row=${first_row:-$SECS}
log "$rows rows in $SECS s (first row after $first_row s)"
[ "$rows" = "$EVENTS" ] || log "warning: the table holds $rows rows for $EVENTS events"

stop_connect
grep -E ' (ERROR|WARN) ' "$CONNECT_LOG" | grep -v -E 'clientId=.*(Node -1|disconnected)|HHH10001006' | tail -n 5 | sed 's/^/  connect log: /' >&2 || true

RPS=$(awk -v n="$EVENTS" -v s="$SECS" 'BEGIN { printf "%.1f", n / s }')
# rate between the first poll that saw rows and the end: excludes task start-up and group join
STEADY=$(awk -v n="$rows" -v r="$first_rows" -v s="$SECS" -v f="$first_row" 'BEGIN { if (s - f > 0) printf "%.1f", (n - r) / (s - f); else printf "null" }')
printf '{"system":"debezium-jdbc","events":%s,"partitions":%s,"batch_size":%s,"seconds":%s,"rows_per_second":%s,"rows":%s,"tasks":%s,"max_poll_records":%s,"insert_mode":"%s","writer":"%s","first_row_seconds":%s,"rows_per_second_after_first_row":%s}\n' \
  "$EVENTS" "$PARTITIONS" "$BATCH_SIZE" "$SECS" "$RPS" "$rows" "$TASKS" "$MAX_POLL" "$INSERT_MODE" "$WRITER" "$first_row" "$STEADY"
