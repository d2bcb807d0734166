#!/usr/bin/env bash
# kafka-local.sh - run a real single-node Apache Kafka broker on loopback,
# without Docker.
#
# Why: the smsmon tests, CI and the demo need a *real* Kafka broker (Faust
# talks the full protocol: consumer groups, transactions, internal topics,
# SASL), but Docker is not available everywhere we run. Kafka 4.x runs in
# KRaft mode as one JVM process, so all we need is Java 17+ and the broker
# jars. The jars are resolved from Maven Central by pinned coordinates
# (scripts/kafka/pom.xml) and cached, so a warm start costs no network.
#
# Usage:
#   scripts/kafka-local.sh fetch
#       Resolve and cache the broker jars; prints the cache dir.
#   scripts/kafka-local.sh start [--port 9092] [--controller-port 9093]
#                                [--dir DIR] [--sasl] [--keep]
#       Start a combined broker+controller (KRaft) on 127.0.0.1:PORT, wait
#       until it really serves requests, then print `bootstrap=127.0.0.1:PORT`.
#       --sasl also opens a SASL_PLAINTEXT listener on PORT+2 (PLAIN and
#       SCRAM-SHA-512; user smsmon / password smsmon-secret, plus
#       admin / admin-secret) and prints `sasl_bootstrap=127.0.0.1:PORT+2`.
#       Storage is wiped and re-formatted on every start unless --keep.
#   scripts/kafka-local.sh stop [--dir DIR]
#       SIGTERM the broker, SIGKILL after 30 s. Exit 0 if nothing was running.
#   scripts/kafka-local.sh status [--dir DIR]
#       Exit 0 (and print the bootstrap lines) if the broker is running.
#   (stop and status also accept --port to derive the default DIR.)
#
# Files in DIR: server.properties, broker.pid, broker.log (all broker
# output), format.log, bootstrap.env (the key=value lines printed by start),
# data/ (KRaft metadata + topic logs).
#
# Environment:
#   SMSMON_KAFKA_CACHE  jar cache (default ${XDG_CACHE_HOME:-~/.cache}/smsmon/kafka-4.1.1)
#   SMSMON_KAFKA_DIR    broker dir (default /tmp/smsmon-kafka-<port>)
#   SMSMON_PYTHON       python with kafka-python used for the readiness probe
#                       (default: <repo>/.venv/bin/python if it has kafka-python;
#                       otherwise a TCP check plus the "started" log line)
#   SMSMON_KAFKA_HEAP   JVM heap options (default -Xmx512m)
#   SMSMON_KAFKA_READY_TIMEOUT  seconds to wait for readiness (default 90)
#   JAVA_HOME           used if set, else `java` from PATH
#
# Missing tools: if `java` is missing, openjdk-17-jre-headless is installed;
# if `mvn` is missing, maven is installed (apt-get, needs root).

set -euo pipefail

readonly KAFKA_VERSION=4.1.1

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
readonly POM="$SCRIPT_DIR/kafka/pom.xml"
readonly LOG4J_CONF="$SCRIPT_DIR/kafka/log4j2.properties"
readonly CACHE_DIR="${SMSMON_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smsmon/kafka-$KAFKA_VERSION}"
readonly LIB_DIR="$CACHE_DIR/libs"
readonly MARKER="$CACHE_DIR/.complete"
readonly READY_TIMEOUT="${SMSMON_KAFKA_READY_TIMEOUT:-90}"
readonly STOP_TIMEOUT=30
readonly SASL_USER=smsmon
readonly SASL_PASSWORD=smsmon-secret
readonly ADMIN_USER=admin
readonly ADMIN_PASSWORD=admin-secret

APT_UPDATED=""

log() { printf 'kafka-local: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^# Files in DIR/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    printf 'java\n'
  fi
}

apt_install() {
  [[ "$(id -u)" -eq 0 ]] || die "'$*' is required; install it (apt-get install -y $*) or run as root"
  command -v apt-get >/dev/null 2>&1 || die "'$*' is required and apt-get is not available"
  if [[ -z "$APT_UPDATED" ]]; then
    log "apt-get update"
    apt-get update -q >&2
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

ensure_java() {
  local java version major
  java=$(java_bin)
  if ! command -v "$java" >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
    java=$(java_bin)
  fi
  # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15
  version=$("$java" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  major=${version%%.*}
  [[ "$major" == 1 ]] && major=$(cut -d. -f2 <<<"$version")
  if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
    die "Kafka $KAFKA_VERSION needs Java 17+, found '${version:-unknown}' ($java); set JAVA_HOME"
  fi
}

ensure_maven() {
  command -v mvn >/dev/null 2>&1 || apt_install maven
}

# --------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------

marker_content() {
  printf 'kafka=%s pom=%s\n' "$KAFKA_VERSION" "$(sha256sum "$POM" | cut -d' ' -f1)"
}

fetch_is_complete() {
  [[ -f "$MARKER" && -d "$LIB_DIR" ]] && [[ "$(cat "$MARKER")" == "$(marker_content)" ]]
}

# Runs in a subshell so the lock fd is closed again before the broker is
# launched (a JVM inheriting it would hold the cache lock forever).
fetch_locked() (
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.lock"
  flock 9
  # Another process may have completed the fetch while we waited.
  fetch_is_complete && exit 0

  ensure_maven
  local work count slf4j
  work=$(mktemp -d "$CACHE_DIR/fetch.XXXXXX")
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  # Run maven on a copy of the pom so nothing (target/ etc.) lands in the repo.
  cp "$POM" "$work/pom.xml"
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR"
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    die "maven failed to resolve the broker jars"
  fi

  count=$(find "$work/libs" -maxdepth 1 -name '*.jar' | wc -l)
  [[ -f "$work/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] ||
    die "kafka_2.13-$KAFKA_VERSION.jar missing after resolution"
  slf4j=$(find "$work/libs" -maxdepth 1 -name 'slf4j-api-*.jar' -printf '%f\n')
  [[ "$slf4j" == "slf4j-api-2.0.17.jar" ]] ||
    die "expected exactly slf4j-api-2.0.17.jar, got: ${slf4j//$'\n'/ }"

  rm -rf "$LIB_DIR"
  mv "$work/libs" "$LIB_DIR"
  marker_content >"$MARKER"
  log "cached $count jars"
)

cmd_fetch() {
  [[ $# -eq 0 ]] || usage
  [[ -f "$POM" ]] || die "missing $POM"
  local pom_version
  pom_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
  [[ "$pom_version" == "$KAFKA_VERSION" ]] ||
    die "$POM pins kafka.version=$pom_version but this script expects $KAFKA_VERSION"
  ensure_java
  fetch_is_complete || fetch_locked
  printf '%s\n' "$CACHE_DIR"
}

# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------

# True if $1 is a live (non-zombie) kafka.Kafka process started for dir $2.
is_our_broker() {
  local pid=$1 dir=$2 state cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ "$state" != Z && "$state" != X ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *kafka.Kafka*"$dir/server.properties"* ]]
}

read_pid() {
  local pidfile="$1/broker.pid" pid=""
  [[ -f "$pidfile" ]] && pid=$(head -n1 "$pidfile" 2>/dev/null || true)
  printf '%s\n' "$pid"
}

port_in_use() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

kill_broker() {
  # The broker is a session/process-group leader (setsid), so signal the group.
  local sig=$1 pid=$2
  kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
}

# --------------------------------------------------------------------------
# readiness
# --------------------------------------------------------------------------

pick_python() {
  local py="${SMSMON_PYTHON:-}"
  if [[ -z "$py" && -x "$REPO_ROOT/.venv/bin/python" ]]; then
    py="$REPO_ROOT/.venv/bin/python"
  fi
  [[ -n "$py" ]] || return 1
  if "$py" -c 'import kafka' >/dev/null 2>&1; then
    printf '%s\n' "$py"
  else
    [[ -n "${SMSMON_PYTHON:-}" ]] && log "warning: SMSMON_PYTHON=$py cannot import kafka; using TCP+log readiness check"
    return 1
  fi
}

# Probe with kafka-python: list topics via PLAINTEXT and, with --sasl, via
# SASL_PLAINTEXT using SCRAM-SHA-512 (which proves the credential exists).
readonly PY_PROBE='
import sys, logging
logging.disable(logging.CRITICAL)
from kafka import KafkaAdminClient
def probe(**kw):
    c = KafkaAdminClient(request_timeout_ms=5000, **kw)
    try:
        c.list_topics()
    finally:
        c.close()
probe(bootstrap_servers=sys.argv[1])
if len(sys.argv) > 2:
    probe(bootstrap_servers=sys.argv[2], security_protocol="SASL_PLAINTEXT",
          sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=sys.argv[3],
          sasl_plain_password=sys.argv[4])
'

probe_ready() {
  local py=$1 port=$2 sasl_port=$3 log_file=$4
  # Cheap TCP check first: kafka-python retries a refused bootstrap for
  # seconds internally, which would only slow the loop down.
  port_in_use "$port" || return 1
  [[ -z "$sasl_port" ]] || port_in_use "$sasl_port" || return 1
  if [[ -n "$py" ]]; then
    local args=("127.0.0.1:$port")
    [[ -n "$sasl_port" ]] && args+=("127.0.0.1:$sasl_port" "$SASL_USER" "$SASL_PASSWORD")
    timeout 20 "$py" -c "$PY_PROBE" "${args[@]}" >/dev/null 2>&1
  else
    grep -q 'Kafka Server started' "$log_file" 2>/dev/null
  fi
}

# --------------------------------------------------------------------------
# start
# --------------------------------------------------------------------------

write_properties() {
  local file=$1 dir=$2 port=$3 cport=$4 sasl_port=$5
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ -n "$sasl_port" ]]; then
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    advertised+=",SASL_PLAINTEXT://127.0.0.1:$sasl_port"
    protomap+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  {
    printf '# Generated by scripts/kafka-local.sh (Kafka %s, KRaft single node).\n' "$KAFKA_VERSION"
    printf '%s\n' \
      "process.roles=broker,controller" \
      "node.id=1" \
      "controller.quorum.bootstrap.servers=127.0.0.1:$cport" \
      "listeners=$listeners" \
      "advertised.listeners=$advertised" \
      "controller.listener.names=CONTROLLER" \
      "listener.security.protocol.map=$protomap" \
      "inter.broker.listener.name=PLAINTEXT" \
      "log.dirs=$dir/data" \
      "num.partitions=1" \
      "offsets.topic.replication.factor=1" \
      "offsets.topic.num.partitions=4" \
      "transaction.state.log.replication.factor=1" \
      "transaction.state.log.min.isr=1" \
      "group.initial.rebalance.delay.ms=0" \
      "auto.create.topics.enable=true"
    if [[ -n "$sasl_port" ]]; then
      printf '%s\n' \
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512" \
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512" \
        "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$ADMIN_USER\" password=\"$ADMIN_PASSWORD\" user_$ADMIN_USER=\"$ADMIN_PASSWORD\" user_$SASL_USER=\"$SASL_PASSWORD\";" \
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    fi
  } >"$file"
}

parse_port() {
  if ! [[ "$2" =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
    die "$1 expects a port number, got '$2'"
  fi
  printf '%s\n' "$2"
}

cmd_start() {
  local port=9092 cport=9093 dir="" sasl="" keep=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port=$(parse_port "$1" "${2:-}"); shift 2 ;;
      --port=*) port=$(parse_port --port "${1#*=}"); shift ;;
      --controller-port) cport=$(parse_port "$1" "${2:-}"); shift 2 ;;
      --controller-port=*) cport=$(parse_port --controller-port "${1#*=}"); shift ;;
      --dir) [[ -n "${2:-}" ]] || die "--dir expects a path"; dir=$2; shift 2 ;;
      --dir=*) dir=${1#*=}; shift ;;
      --sasl) sasl=1; shift ;;
      --keep) keep=1; shift ;;
      -h | --help) usage ;;
      *) die "unknown start option '$1'" ;;
    esac
  done
  dir=${dir:-${SMSMON_KAFKA_DIR:-/tmp/smsmon-kafka-$port}}
  mkdir -p "$dir"
  dir=$(cd -- "$dir" && pwd)
  local sasl_port=""
  [[ -n "$sasl" ]] && sasl_port=$((port + 2))
  if ((cport == port)) || [[ "$cport" == "$sasl_port" ]]; then
    die "ports must differ: port=$port controller-port=$cport sasl-port=${sasl_port:-none}"
  fi

  local pid
  pid=$(read_pid "$dir")
  if [[ -n "$pid" ]] && is_our_broker "$pid" "$dir"; then
    die "a broker is already running from $dir (pid $pid); run: $0 stop --dir $dir"
  fi
  rm -f "$dir/broker.pid" "$dir/bootstrap.env"

  local p ports=("$port" "$cport")
  [[ -z "$sasl_port" ]] || ports+=("$sasl_port")
  for p in "${ports[@]}"; do
    ! port_in_use "$p" || die "port 127.0.0.1:$p is already in use"
  done

  cmd_fetch >/dev/null
  local java
  java=$(java_bin)
  local cp="$LIB_DIR/*"
  local log4j="-Dlog4j2.configurationFile=$LOG4J_CONF"

  if [[ -z "$keep" ]]; then
    rm -rf "$dir/data"
  fi
  local props="$dir/server.properties"
  write_properties "$props" "$dir" "$port" "$cport" "$sasl_port"

  if [[ -f "$dir/data/meta.properties" ]]; then
    log "keeping existing storage in $dir/data"
  else
    local cluster_id
    cluster_id=$("$java" "$log4j" -cp "$cp" kafka.tools.StorageTool random-uuid 2>"$dir/format.log") ||
      { cat "$dir/format.log" >&2; die "StorageTool random-uuid failed"; }
    local fmt=("$java" "$log4j" -cp "$cp" kafka.tools.StorageTool format
      -t "$cluster_id" -c "$props" --standalone)
    if [[ -n "$sasl" ]]; then
      fmt+=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]"
        --add-scram "SCRAM-SHA-512=[name=$ADMIN_USER,password=$ADMIN_PASSWORD]")
    fi
    "${fmt[@]}" >>"$dir/format.log" 2>&1 ||
      { cat "$dir/format.log" >&2; die "StorageTool format failed"; }
  fi

  local heap=()
  read -r -a heap <<<"${SMSMON_KAFKA_HEAP:--Xmx512m}"
  local log_file="$dir/broker.log"
  [[ -f "$log_file" ]] && mv -f "$log_file" "$log_file.prev"
  # setsid: own session + process group, so the broker outlives this script
  # and is not hit by the caller's Ctrl-C / job control. The wrapper writes
  # its own pid (== the JVM's pid after exec) even if setsid has to fork.
  # shellcheck disable=SC2016  # $$ and $1 are for the inner shell
  setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' kafka-local "$dir/broker.pid" \
    "$java" "${heap[@]}" -Djava.awt.headless=true "$log4j" \
    -cp "$cp" kafka.Kafka "$props" >"$log_file" 2>&1 </dev/null &

  local start=$SECONDS deadline=$((SECONDS + READY_TIMEOUT))
  pid=""
  while [[ -z "$pid" ]] && ((SECONDS < start + 10)); do
    pid=$(read_pid "$dir")
    [[ -n "$pid" ]] || sleep 0.1
  done
  [[ -n "$pid" ]] || die "broker did not write $dir/broker.pid"

  local py=""
  py=$(pick_python) || py=""
  log "started pid $pid, waiting up to ${READY_TIMEOUT}s for 127.0.0.1:$port (probe: ${py:-tcp+log}, log: $log_file)"
  local ready=""
  while ((SECONDS < deadline)); do
    if ! is_our_broker "$pid" "$dir"; then
      log "broker exited during startup; last 50 lines of $log_file:"
      tail -n 50 "$log_file" >&2 || true
      rm -f "$dir/broker.pid"
      exit 1
    fi
    if probe_ready "$py" "$port" "$sasl_port" "$log_file"; then
      ready=1
      break
    fi
    sleep 1
  done
  if [[ -z "$ready" ]]; then
    log "broker not ready after ${READY_TIMEOUT}s; last 50 lines of $log_file:"
    tail -n 50 "$log_file" >&2 || true
    kill_broker KILL "$pid"
    rm -f "$dir/broker.pid"
    exit 1
  fi

  {
    printf 'bootstrap=127.0.0.1:%s\n' "$port"
    [[ -z "$sasl_port" ]] || printf 'sasl_bootstrap=127.0.0.1:%s\n' "$sasl_port"
  } >"$dir/bootstrap.env"
  log "ready after $((SECONDS - start))s (pid $pid, dir $dir)"
  cat "$dir/bootstrap.env"
}

# --------------------------------------------------------------------------
# stop / status
# --------------------------------------------------------------------------

parse_dir_args() {
  local port=9092 dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) [[ -n "${2:-}" ]] || die "--dir expects a path"; dir=$2; shift 2 ;;
      --dir=*) dir=${1#*=}; shift ;;
      --port) port=$(parse_port "$1" "${2:-}"); shift 2 ;;
      --port=*) port=$(parse_port --port "${1#*=}"); shift ;;
      -h | --help) usage ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  dir=${dir:-${SMSMON_KAFKA_DIR:-/tmp/smsmon-kafka-$port}}
  if [[ -d "$dir" ]]; then
    dir=$(cd -- "$dir" && pwd)
  fi
  printf '%s\n' "$dir"
}

cmd_stop() {
  local dir pid
  dir=$(parse_dir_args "$@")
  pid=$(read_pid "$dir")
  if [[ -z "$pid" ]] || ! is_our_broker "$pid" "$dir"; then
    rm -f "$dir/broker.pid" "$dir/bootstrap.env"
    log "no broker running from $dir"
    return 0
  fi
  log "stopping broker pid $pid ($dir)"
  kill_broker TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while is_our_broker "$pid" "$dir" && ((SECONDS < deadline)); do
    sleep 0.5
  done
  if is_our_broker "$pid" "$dir"; then
    log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill_broker KILL "$pid"
    deadline=$((SECONDS + 10))
    while is_our_broker "$pid" "$dir" && ((SECONDS < deadline)); do
      sleep 0.2
    done
  fi
  rm -f "$dir/broker.pid" "$dir/bootstrap.env"
  ! is_our_broker "$pid" "$dir" || die "pid $pid did not exit"
  log "stopped"
}

cmd_status() {
  local dir pid
  dir=$(parse_dir_args "$@")
  pid=$(read_pid "$dir")
  if [[ -n "$pid" ]] && is_our_broker "$pid" "$dir"; then
    printf 'running pid=%s dir=%s\n' "$pid" "$dir"
    [[ ! -f "$dir/bootstrap.env" ]] || cat "$dir/bootstrap.env"
    return 0
  fi
  printf 'not running (dir=%s)\n' "$dir"
  return 1
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd=$1
  shift
  case "$cmd" in
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
