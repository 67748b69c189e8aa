#!/usr/bin/env bash
# bench/hits.sh — cache-hit throughput of cachecar (memory, Redis and MongoDB tier)
# against nginx proxy_cache, all in front of the same nginx origin, measured in the same
# run (STYLE.md rule 10).
#
# Usage: bench/hits.sh [--build]
#   env: DURATION=10 (seconds per wrk run)  ROUNDS=3  CONNECTIONS=64
#        CACHECAR_BIN=build/cachecar  KEEP_TMP=1 (keep the temp dir with configs/logs)
#        MONGO_TEST_SERVER_BIN=build/tests/cachecar_mongo_test_server
# See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
CACHECAR_BIN=${CACHECAR_BIN:-$ROOT/build/cachecar}
# The MongoDB wire-protocol test server (no real MongoDB can be installed here).
MONGO_TEST_SERVER_BIN=${MONGO_TEST_SERVER_BIN:-$ROOT/build/tests/cachecar_mongo_test_server}
SERVER_CPU=${SERVER_CPU:-0}   # server under test
CLIENT_CPU=${CLIENT_CPU:-1}   # wrk (and the idle origin)
BODY_BYTES=1024
PATH_UNDER_TEST=/api/v1/videos
BUILD=0

for arg in "$@"; do
  case $arg in
    --build) BUILD=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[hits] %s\n' "$*" >&2; }
die() { printf '[hits] FAIL: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()
WORK=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid i
  # Reverse start order, one at a time: the servers under test stop before the origin,
  # redis-server and the MongoDB test server they talk to (cachecar ends its MongoDB
  # sessions on exit).
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || true
    # Wait up to 5 s for a graceful exit, then force it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not exit on SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $rc -ne 0 ]]; then
      for f in "$WORK"/*.log; do
        [[ -s $f ]] || continue
        log "---- last lines of $f"
        tail -n 20 "$f" >&2 || true
      done
    fi
    if [[ ${KEEP_TMP:-0} == 1 || $rc -ne 0 ]]; then
      log "temp dir kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_pkgs+=(redis-tools)
if ((${#need_pkgs[@]})); then
  [[ $EUID -eq 0 ]] || die "missing ${need_pkgs[*]}; run as root or install them"
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need_pkgs[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

ncpu=$(nproc)
((ncpu >= 2)) || log "WARNING: only $ncpu CPU(s); server and wrk will share a core"
((SERVER_CPU < ncpu)) || SERVER_CPU=0
((CLIENT_CPU < ncpu)) || CLIENT_CPU=0

if [[ $BUILD == 1 || ! -x $CACHECAR_BIN ]]; then
  [[ $CACHECAR_BIN == "$ROOT/build/cachecar" ]] ||
    die "CACHECAR_BIN=$CACHECAR_BIN is not executable (and --build only builds build/cachecar)"
  log "building cachecar (Release)"
  # Warnings are not this script's business: GCC 12 reports -Wnull-dereference
  # false positives inside Boost.Asio at -O3, which -Werror turns into a failed build.
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DCACHECAR_TESTS=OFF \
    -DCACHECAR_WERROR=OFF >&2
  cmake --build "$ROOT/build" -j2 --target cachecar >&2
fi
if [[ ! -x $MONGO_TEST_SERVER_BIN ]]; then
  [[ $MONGO_TEST_SERVER_BIN == "$ROOT/build/tests/cachecar_mongo_test_server" ]] ||
    die "MONGO_TEST_SERVER_BIN=$MONGO_TEST_SERVER_BIN is not executable"
  log "building the MongoDB test server (build/, needs CACHECAR_TESTS=ON there)"
  cmake --build "$ROOT/build" -j1 --target cachecar_mongo_test_server >&2 ||
    die "cannot build cachecar_mongo_test_server in build/ (configure it with -DCACHECAR_TESTS=ON, or set MONGO_TEST_SERVER_BIN)"
fi

mkdir -p "$ROOT/bench/out"
WORK=$(mktemp -d /tmp/cachecar-bench.XXXXXX)

# ---------------------------------------------------------------- helpers
TAKEN_PORTS=" "
# free_port: sets FREE_PORT (a function, not $(...), so TAKEN_PORTS persists).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    [[ $TAKEN_PORTS == *" $p "* ]] && continue
    if [[ -z $(ss -Htln "sport = :$p" 2>/dev/null) ]]; then
      TAKEN_PORTS+="$p "
      FREE_PORT=$p
      return 0
    fi
  done
  die "no free port found"
}

# wait_http URL PID NAME: wait until URL answers (any HTTP status), fail if PID dies.
wait_http() {
  local url=$1 pid=$2 name=$3
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during start-up"
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.1
  done
  die "$name did not answer at $url within 10 s"
}

# nginx_common DIR: directives that keep an nginx instance inside DIR.
nginx_common() {
  local dir=$1
  [[ $EUID -eq 0 ]] && echo "user root;"
  cat <<EOF
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
  local dir=$1
  cat <<EOF
  client_body_temp_path $dir/client_body;
  proxy_temp_path       $dir/proxy_temp;
  fastcgi_temp_path     $dir/fastcgi_temp;
  uwsgi_temp_path       $dir/uwsgi_temp;
  scgi_temp_path        $dir/scgi_temp;
  keepalive_timeout 75s;
  keepalive_requests 1000000;  # wrk keeps connections open; don't make nginx recycle them
EOF
}

# start_nginx NAME CPU: start the nginx instance whose config is $WORK/NAME/nginx.conf;
# sets STARTED_PID (not $(...): the process must be a child of this shell).
start_nginx() {
  local name=$1 cpu=$2 dir=$WORK/$1
  "$NGINX" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" ||
    die "nginx config $dir/nginx.conf is invalid"
  taskset -c "$cpu" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
    >"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

# A fixed JSON body of exactly BODY_BYTES bytes (no single quotes or backslashes:
# it is embedded in an nginx string).
make_body() {
  local s='{"page":1,"limit":10,"items":['
  local i
  for i in $(seq 0 9); do
    ((i)) && s+=','
    s+=$(printf '{"uuid":"00000000-0000-4000-8000-%012d","title":"video %d","duration":%d}' "$i" "$i" $((60 * (i + 1))))
  done
  s+='],"pad":"'
  local pad=$((BODY_BYTES - ${#s} - 2))
  ((pad >= 0)) || die "body template longer than $BODY_BYTES bytes"
  s+=$(printf '%*s' "$pad" '' | tr ' ' x)
  s+='"}'
  ((${#s} == BODY_BYTES)) || die "body is ${#s} bytes, wanted $BODY_BYTES"
  printf '%s' "$s"
}

# ---------------------------------------------------------------- origin
free_port; ORIGIN_PORT=$FREE_PORT
BODY=$(make_body)
mkdir -p "$WORK/origin"
{
  nginx_common "$WORK/origin"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/origin")
  # The origin logs every request it receives: the benchmark checks that the
  # measured runs never reach it (all hits).
  access_log $WORK/origin/access.log;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    location = $PATH_UNDER_TEST {
      default_type application/json;
      return 200 '$BODY';
    }
    location / { return 404; }
  }
}
EOF
} >"$WORK/origin/nginx.conf"
start_nginx origin "$CLIENT_CPU"; ORIGIN_PID=$STARTED_PID
wait_http "http://127.0.0.1:$ORIGIN_PORT$PATH_UNDER_TEST" "$ORIGIN_PID" origin
got=$(curl -s "http://127.0.0.1:$ORIGIN_PORT$PATH_UNDER_TEST" | wc -c)
[[ $got -eq $BODY_BYTES ]] || die "origin body is $got bytes, wanted $BODY_BYTES"
log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (pid $ORIGIN_PID)"

origin_requests() { wc -l <"$WORK/origin/access.log"; }

# ---------------------------------------------------------------- redis
# A private redis-server for cachecar's Redis tier: no persistence, its own dir, pinned
# to the server CPU (it does work on every Redis-tier hit, so it is part of the server side).
free_port; REDIS_PORT=$FREE_PORT
mkdir -p "$WORK/redis"
taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
  --save "" --appendonly no --dir "$WORK/redis" --logfile "$WORK/redis.log" \
  >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
for _ in $(seq 100); do
  kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited during start-up"
  [[ $(rcli PING 2>/dev/null) == PONG ]] && break
  sleep 0.1
done
[[ $(rcli PING 2>/dev/null) == PONG ]] || die "redis-server did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s"
log "redis: 127.0.0.1:$REDIS_PORT (pid $REDIS_PID, CPU $SERVER_CPU)"

# ---------------------------------------------------------------- mongo test server
# The project's MongoDB wire-protocol test server (tests/support/mongo_test_server.*) as
# a process, for cachecar's MongoDB tier. Pinned to the server CPU like redis-server: it
# does work on every MongoDB-tier hit. --port 0: the kernel picks a free port, which the
# server prints ("listening on PORT").
taskset -c "$SERVER_CPU" "$MONGO_TEST_SERVER_BIN" --port 0 >"$WORK/mongo-server.log" 2>&1 &
MONGO_PID=$!
PIDS+=("$MONGO_PID")
MONGO_PORT=""
for _ in $(seq 100); do
  kill -0 "$MONGO_PID" 2>/dev/null || die "the MongoDB test server exited during start-up"
  MONGO_PORT=$(awk '/^listening on [0-9]+$/ {print $3; exit}' "$WORK/mongo-server.log")
  [[ -n $MONGO_PORT ]] && break
  sleep 0.1
done
[[ -n $MONGO_PORT ]] || die "the MongoDB test server did not print 'listening on PORT' within 10 s"
TAKEN_PORTS+="$MONGO_PORT "
log "mongo test server: 127.0.0.1:$MONGO_PORT (pid $MONGO_PID, CPU $SERVER_CPU)"

# ---------------------------------------------------------------- cachecar
# Three instances: "cachecar-memory" has only the memory tier (exactly the configuration
# this benchmark measured before Redis existed), "cachecar-redis" serves its route from
# Redis only, "cachecar-mongo" from MongoDB only (no Redis configured, so its generations
# live in MongoDB too). Separate processes keep each case free of what the others bring
# (connections, purge subscription, worker threads, timers) and give each case its own
# CPU accounting.
# start_cachecar NAME: writes $WORK/NAME.yaml from stdin, starts it; sets STARTED_PID,
# STARTED_PORT.
start_cachecar() {
  local name=$1 port admin
  free_port; port=$FREE_PORT
  free_port; admin=$FREE_PORT
  sed -e "s|@PORT@|$port|; s|@ADMIN@|$admin|" >"$WORK/$name.yaml"
  "$CACHECAR_BIN" --check -c "$WORK/$name.yaml" >&2 || die "cachecar rejected $WORK/$name.yaml"
  # stdout carries one access-log line per request: discard it (see README).
  taskset -c "$SERVER_CPU" "$CACHECAR_BIN" -c "$WORK/$name.yaml" >/dev/null 2>"$WORK/$name.log" &
  STARTED_PID=$!
  STARTED_PORT=$port
  PIDS+=("$STARTED_PID")
  wait_http "http://127.0.0.1:$admin/health" "$STARTED_PID" "$name"
  log "$name: 127.0.0.1:$port admin :$admin (pid $STARTED_PID, CPU $SERVER_CPU)"
}

start_cachecar cachecar-memory <<EOF
server:
  listen: 127.0.0.1:@PORT@
  upstream: http://127.0.0.1:$ORIGIN_PORT
  admin_listen: 127.0.0.1:@ADMIN@
  namespace: bench
  threads: 1
tiers:
  memory: { max_bytes: 64MiB }
routes:
  - name: videos
    match: GET $PATH_UNDER_TEST
    tiers: [memory]
    ttl: 1h
EOF
CC_PID=$STARTED_PID; CC_PORT=$STARTED_PORT

REDIS_TIMEOUT=50ms
REDIS_POOL=8
start_cachecar cachecar-redis <<EOF
server:
  listen: 127.0.0.1:@PORT@
  upstream: http://127.0.0.1:$ORIGIN_PORT
  admin_listen: 127.0.0.1:@ADMIN@
  namespace: bench-redis
  threads: 1
tiers:
  memory: { max_bytes: 64MiB }
  redis: { url: redis://127.0.0.1:$REDIS_PORT/0, timeout: $REDIS_TIMEOUT, pool: $REDIS_POOL }
routes:
  - name: videos
    match: GET $PATH_UNDER_TEST
    tiers: [redis]
    ttl: 1h
EOF
CR_PID=$STARTED_PID; CR_PORT=$STARTED_PORT

MONGO_TIMEOUT=200ms
start_cachecar cachecar-mongo <<EOF
server:
  listen: 127.0.0.1:@PORT@
  upstream: http://127.0.0.1:$ORIGIN_PORT
  admin_listen: 127.0.0.1:@ADMIN@
  namespace: bench-mongo
  threads: 1
tiers:
  memory: { max_bytes: 64MiB }
  mongo: { uri: "mongodb://127.0.0.1:$MONGO_PORT/?serverSelectionTimeoutMS=1000", database: bench, collection: cache, timeout: $MONGO_TIMEOUT }
routes:
  - name: videos
    match: GET $PATH_UNDER_TEST
    tiers: [mongo]
    ttl: 1h
EOF
CM_PID=$STARTED_PID; CM_PORT=$STARTED_PORT

# ---------------------------------------------------------------- nginx proxy_cache
free_port; NX_PORT=$FREE_PORT
mkdir -p "$WORK/nginx/cache"
{
  nginx_common "$WORK/nginx"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/nginx")
  access_log off;
  proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:10m max_size=64m inactive=2h;
  upstream origin {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$NX_PORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
EOF
} >"$WORK/nginx/nginx.conf"
start_nginx nginx "$SERVER_CPU"; NX_PID=$STARTED_PID
wait_http "http://127.0.0.1:$NX_PORT/" "$NX_PID" "nginx proxy_cache"
log "nginx proxy_cache: 127.0.0.1:$NX_PORT (pid $NX_PID, CPU $SERVER_CPU)"

# ---------------------------------------------------------------- warm + verify
# Measured in this order in every round.
NAMES=(cachecar-memory cachecar-redis cachecar-mongo nginx)
declare -A LABEL=([cachecar-memory]="cachecar (memory tier)" [cachecar-redis]="cachecar (redis tier)"
                  [cachecar-mongo]="cachecar (mongo tier)" [nginx]="nginx proxy_cache")
declare -A URL=([cachecar-memory]="http://127.0.0.1:$CC_PORT$PATH_UNDER_TEST"
                [cachecar-redis]="http://127.0.0.1:$CR_PORT$PATH_UNDER_TEST"
                [cachecar-mongo]="http://127.0.0.1:$CM_PORT$PATH_UNDER_TEST"
                [nginx]="http://127.0.0.1:$NX_PORT$PATH_UNDER_TEST")
declare -A PID_OF=([cachecar-memory]=$CC_PID [cachecar-redis]=$CR_PID [cachecar-mongo]=$CM_PID [nginx]=$NX_PID)
declare -A HIT_HEADER=([cachecar-memory]=x-cache [cachecar-redis]=x-cache [cachecar-mongo]=x-cache
                       [nginx]=x-cache-status)
# The tier that must answer (X-Cache-Tier); empty: not checked.
declare -A WANT_TIER=([cachecar-memory]=memory [cachecar-redis]=redis [cachecar-mongo]=mongo [nginx]="")
declare -A RESP_BYTES=()

# header_value FILE NAME: value of header NAME (lower case) in a curl -D dump.
header_value() {
  tr -d '\r' <"$1" | awk -F': *' -v h="$2" 'tolower($1)==h {print $2}'
}

# verify_hit NAME: one request must be a 200 HIT carrying the origin body.
verify_hit() {
  local name=$1 hdr=$WORK/$1.headers body=$WORK/$1.body code value size
  kill -0 "${PID_OF[$name]}" 2>/dev/null || die "$name (pid ${PID_OF[$name]}) is not running"
  kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server (pid $REDIS_PID) is not running"
  kill -0 "$MONGO_PID" 2>/dev/null || die "the MongoDB test server (pid $MONGO_PID) is not running"
  code=$(curl -s --max-time 5 -D "$hdr" -o "$body" -w '%{http_code} %{size_header}' "${URL[$name]}") ||
    die "$name: curl ${URL[$name]} failed"
  size=${code#* }
  code=${code%% *}
  [[ $code == 200 ]] || die "$name: status $code, wanted 200 ($(tr -d '\r' <"$hdr" | tr '\n' '|'))"
  value=$(header_value "$hdr" "${HIT_HEADER[$name]}")
  [[ $value == HIT ]] || die "$name: ${HIT_HEADER[$name]}='$value', wanted HIT ($(tr -d '\r' <"$hdr" | tr '\n' '|'))"
  if [[ -n ${WANT_TIER[$name]} ]]; then
    value=$(header_value "$hdr" x-cache-tier)
    [[ $value == "${WANT_TIER[$name]}" ]] ||
      die "$name: X-Cache-Tier='$value', wanted ${WANT_TIER[$name]} ($(tr -d '\r' <"$hdr" | tr '\n' '|'))"
  fi
  cmp -s "$body" <(printf '%s' "$BODY") || die "$name: body differs from the origin's"
  RESP_BYTES[$name]=$((size + BODY_BYTES))
}

for name in "${NAMES[@]}"; do
  curl -s -o /dev/null --max-time 5 "${URL[$name]}" || die "$name: warm-up request failed"
  if [[ $name == cachecar-redis || $name == cachecar-mongo ]]; then
    # The store to Redis / MongoDB runs in the background after the miss response:
    # poll until a response comes from that tier (bounded).
    want=${WANT_TIER[$name]} tier=""
    for try in $(seq 50); do
      curl -s -o /dev/null --max-time 5 -D "$WORK/warm.headers" "${URL[$name]}" ||
        die "$name: warm-up request failed"
      tier=$(header_value "$WORK/warm.headers" x-cache-tier)
      [[ $tier == "$want" ]] && break
      sleep 0.1
    done
    [[ $tier == "$want" ]] ||
      die "$name: no response from the $want tier after 50 tries ($(tr -d '\r' <"$WORK/warm.headers" | tr '\n' '|'))"
    log "$name: first X-Cache-Tier: $want after $try poll(s)"
  fi
  verify_hit "$name"
  log "$name: warm, 200 HIT (${RESP_BYTES[$name]} bytes per response)"
done
ORIGIN_BEFORE=$(origin_requests)

# background_load: % of all CPUs busy over 1 s while the servers are idle, i.e. load
# that is not ours (a compiler, another benchmark). It makes the numbers noisy.
background_load() {
  local a b
  a=$(awk '$1 == "cpu" {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  sleep 1
  b=$(awk '$1 == "cpu" {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ")
    busy = y[1] - x[1]; all = busy + y[2] - x[2]
    printf "%.0f", (all > 0 ? 100 * busy / all : 0) }'
}
LOAD_BEFORE=$(background_load)
((LOAD_BEFORE < 10)) ||
  log "WARNING: machine is ${LOAD_BEFORE}% busy before measuring (other processes); results will be noisy"

# ---------------------------------------------------------------- measure
# to_ms VALUE: wrk latency ("812.00us", "1.23ms", "1.02s", "2.00m") -> milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    else if (u != "ms") { print "bad"; exit }
    printf "%.3f", n }'
}

# server_ticks NAME: CPU time (utime+stime, clock ticks) used so far by the processes
# that serve requests: cachecar (all threads), nginx's workers.
CLK_TCK=$(getconf CLK_TCK)
# For the Redis case that includes redis-server, for the MongoDB case the MongoDB test
# server: they do part of the work of every hit.
proc_ticks() {
  local p total=0
  for p in "$@"; do
    # Fields after the ")" that ends comm: utime and stime are the 12th and 13th.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
server_ticks() {
  case $1 in
    nginx) proc_ticks $(pgrep -P "${PID_OF[$1]}" -f 'worker process') ;;
    cachecar-redis) proc_ticks "${PID_OF[$1]}" "$REDIS_PID" ;;
    cachecar-mongo) proc_ticks "${PID_OF[$1]}" "$MONGO_PID" ;;
    *) proc_ticks "${PID_OF[$1]}" ;;
  esac
}

# redis_calls: "command calls" per command from INFO commandstats (commands that a Lua
# script runs count too). redis-cli's own INFO is left out by the caller.
redis_calls() {
  rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ {sub(/^cmdstat_/, "", $1); print $1, $3}'
}
: >"$WORK/redis-calls.txt"  # per Redis-case run: "command calls" deltas
REDIS_REQS=0 REDIS_TICKS=0 REDIS_CASE_TICKS=0

# mongo_segs_in: TCP segments carrying data that the MongoDB test server's sockets have
# received so far (`ss -i` data_segs_in, summed over its established connections). The
# test server keeps its command counts inside its process, so this is the only outside
# view: one request message per segment here (small OP_MSG commands, one command in
# flight per connection), so the delta per hit approximates commands per hit.
# It includes the driver's monitoring `hello`s (a few per second).
mongo_segs_in() {
  ss -Htin state established "( sport = :$MONGO_PORT )" 2>/dev/null |
    grep -o 'data_segs_in:[0-9]*' | awk -F: '{n += $2} END {print n + 0}'
}
MONGO_REQS=0 MONGO_TICKS=0 MONGO_CASE_TICKS=0 MONGO_SEGS=0

declare -A RPS=() P50=() P99=() EFF=()
for name in "${NAMES[@]}"; do RPS[$name]=""; P50[$name]=""; P99[$name]=""; EFF[$name]=""; done

for round in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    out=$WORK/wrk-$name-$round.txt
    log "round $round/$ROUNDS: $name (${DURATION}s, $CONNECTIONS connections)"
    origin0=$(origin_requests)
    if [[ $name == cachecar-redis ]]; then
      calls0=$(redis_calls); rticks0=$(proc_ticks "$REDIS_PID")
    elif [[ $name == cachecar-mongo ]]; then
      segs0=$(mongo_segs_in); mticks0=$(proc_ticks "$MONGO_PID")
    fi
    ticks0=$(server_ticks "$name")
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${URL[$name]}" >"$out" 2>&1 ||
      { cat "$out" >&2; die "$name: wrk failed"; }
    ticks1=$(server_ticks "$name" 2>/dev/null || echo 0)
    if [[ $name == cachecar-redis ]]; then
      rticks1=$(proc_ticks "$REDIS_PID" 2>/dev/null || echo 0)
      calls1=$(redis_calls 2>/dev/null || true)
    elif [[ $name == cachecar-mongo ]]; then
      mticks1=$(proc_ticks "$MONGO_PID" 2>/dev/null || echo 0)
      segs1=$(mongo_segs_in)
    fi
    if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
      cat "$out" >&2
      status=0
      wait "${PID_OF[$name]}" || status=$?
      die "$name (pid ${PID_OF[$name]}) exited with status $status during round $round (wrk output above; see its log below)"
    fi
    if grep -qE 'Non-2xx or 3xx responses|Socket errors' "$out"; then
      cat "$out" >&2
      die "$name: wrk saw errors in round $round (output above)"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    [[ -n $rps && -n $p50 && -n $p99 ]] || { cat "$out" >&2; die "$name: cannot parse wrk output"; }
    p50=$(to_ms "$p50"); p99=$(to_ms "$p99")
    [[ $p50 != bad && $p99 != bad ]] || { cat "$out" >&2; die "$name: unknown latency unit"; }
    # Requests per CPU-second of the server: less sensitive than req/s to other
    # processes taking CPU 0 from the server during the run.
    nreq=$(awk '/ requests in / {print $1}' "$out")
    cpu_s=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
    eff=$(awk -v n="$nreq" -v c="$cpu_s" 'BEGIN {printf "%.0f", (c > 0 ? n / c : 0)}')
    RPS[$name]+="$rps "; P50[$name]+="$p50 "; P99[$name]+="$p99 "; EFF[$name]+="$eff "
    log "  $rps req/s, p50 ${p50} ms, p99 ${p99} ms, server CPU ${cpu_s} s, $eff req per CPU-s"
    if [[ $name == cachecar-redis ]]; then
      REDIS_REQS=$((REDIS_REQS + nreq))
      REDIS_TICKS=$((REDIS_TICKS + rticks1 - rticks0))
      REDIS_CASE_TICKS=$((REDIS_CASE_TICKS + ticks1 - ticks0))
      awk 'NR == FNR {b[$1] = $2; next} $1 != "info" && $2 - b[$1] > 0 {print $1, $2 - b[$1]}' \
        <(echo "$calls0") <(echo "$calls1") >>"$WORK/redis-calls.txt"
      log "  redis-server CPU $(awk -v t=$((rticks1 - rticks0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}') s of that"
    elif [[ $name == cachecar-mongo ]]; then
      MONGO_REQS=$((MONGO_REQS + nreq))
      MONGO_TICKS=$((MONGO_TICKS + mticks1 - mticks0))
      MONGO_CASE_TICKS=$((MONGO_CASE_TICKS + ticks1 - ticks0))
      MONGO_SEGS=$((MONGO_SEGS + segs1 - segs0))
      log "  mongo test server CPU $(awk -v t=$((mticks1 - mticks0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}') s of that," \
          "$(awk -v s=$((segs1 - segs0)) -v n="$nreq" 'BEGIN {printf "%.2f", (n > 0 ? s / n : 0)}') request segments per hit"
    fi
    verify_hit "$name"
    # Every wrk request and the check above must have been a hit.
    n=$(($(origin_requests) - origin0))
    ((n == 0)) || die "$name: the origin received $n request(s) during round $round: not all hits"
  done
done

LOAD_AFTER=$(background_load)
origin_during=$(($(origin_requests) - ORIGIN_BEFORE))
((origin_during == 0)) ||
  die "the origin received $origin_during requests during the measured runs: not all hits"

median() {
  tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g |
    awk '{a[NR] = $1} END { if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m }'
}

# ---------------------------------------------------------------- report
stamp=$(date +%Y%m%d-%H%M%S)
report=$ROOT/bench/out/hits-$stamp.md
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[[ -n $cpu_model ]] || cpu_model=$(uname -m)
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git -C "$ROOT" status --porcelain -- src include CMakeLists.txt 2>/dev/null) ]]; then
  git_rev+=" (+ uncommitted changes)"
fi

declare -A M_RPS=() M_P50=() M_P99=() M_EFF=()
for name in "${NAMES[@]}"; do
  M_RPS[$name]=$(median "${RPS[$name]}")
  M_P50[$name]=$(median "${P50[$name]}")
  M_P99[$name]=$(median "${P99[$name]}")
  M_EFF[$name]=$(median "${EFF[$name]}")
done
# ratio_row A B: a Markdown table row comparing server A with server B.
ratio_row() {
  local a=$1 b=$2 rr
  # Ratio of each round's pair (the runs of one round are back to back): less sensitive
  # to drift in machine speed over the whole run than the ratio of medians.
  rr=$(paste -d' ' <(tr ' ' '\n' <<<"${RPS[$a]}" | grep -v '^$') \
                   <(tr ' ' '\n' <<<"${RPS[$b]}" | grep -v '^$') |
    awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2}')
  printf '| %s / %s | **%s** | %s | %s | %s |\n' "${LABEL[$a]}" "${LABEL[$b]}" \
    "$(awk -v x="${M_RPS[$a]}" -v y="${M_RPS[$b]}" 'BEGIN { printf "%.2f", x / y }')" \
    "${rr// /, }" "$(median "$rr")" \
    "$(awk -v x="${M_EFF[$a]}" -v y="${M_EFF[$b]}" 'BEGIN { printf "%.2f", (y > 0 ? x / y : 0) }')"
}
# Redis commands per Redis-tier hit, e.g. "get 1.00, evalsha 1.00".
redis_per_hit=$(awk -v n="$REDIS_REQS" '{c[$1] += $2} END { for (k in c) printf "%s %.2f\n", k, (n > 0 ? c[k] / n : 0) }' \
  "$WORK/redis-calls.txt" | sort -k2,2gr -k1,1 | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
redis_share=$(awk -v r="$REDIS_TICKS" -v t="$REDIS_CASE_TICKS" 'BEGIN { printf "%.0f", (t > 0 ? 100 * r / t : 0) }')
mongo_share=$(awk -v r="$MONGO_TICKS" -v t="$MONGO_CASE_TICKS" 'BEGIN { printf "%.0f", (t > 0 ? 100 * r / t : 0) }')
mongo_segs_per_hit=$(awk -v s="$MONGO_SEGS" -v n="$MONGO_REQS" 'BEGIN { printf "%.2f", (n > 0 ? s / n : 0) }')

{
  echo "# cachecar cache-hit benchmark — $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "All four servers answer \`GET $PATH_UNDER_TEST\` from cache (a fixed ${BODY_BYTES}-byte JSON"
  echo "body from an nginx origin); every measured request was a 200 HIT from the expected tier"
  echo "(origin requests during the runs: $origin_during). Servers, redis-server and the MongoDB"
  echo "test server pinned to CPU $SERVER_CPU, wrk to CPU $CLIENT_CPU."
  echo
  echo "| server | req/s (median) | p50 ms | p99 ms | req per server CPU-s | req/s per round | bytes/response |"
  echo "|---|---:|---:|---:|---:|---|---:|"
  for name in "${NAMES[@]}"; do
    printf '| %s | %s | %s | %s | %.0f | %s | %s |\n' "${LABEL[$name]}" "${M_RPS[$name]}" "${M_P50[$name]}" \
      "${M_P99[$name]}" "${M_EFF[$name]}" "$(echo "${RPS[$name]}" | xargs | sed 's/ /, /g')" "${RESP_BYTES[$name]}"
  done
  echo
  echo "| ratio | req/s (of medians) | req/s per round | median of rounds | req per server CPU-s |"
  echo "|---|---:|---|---:|---:|"
  ratio_row cachecar-memory nginx
  ratio_row cachecar-redis nginx
  ratio_row cachecar-redis cachecar-memory
  ratio_row cachecar-mongo nginx
  ratio_row cachecar-mongo cachecar-memory
  echo
  echo "Redis tier: server CPU is cachecar's plus redis-server's (${redis_share}% of it was"
  echo "redis-server). Redis commands per hit (INFO commandstats; commands run inside Lua"
  echo "scripts count too): ${redis_per_hit:-none}."
  echo
  echo "MongoDB tier: served by the project's MongoDB **wire-protocol test server**, not a real"
  echo "MongoDB: its absolute numbers say little about MongoDB; the ratios show cachecar's cost"
  echo "on this path. Server CPU is cachecar's plus the test server's (${mongo_share}% of it was"
  echo "the test server). Request segments received by the test server per hit (\`ss -i\`"
  echo "data_segs_in; approximates commands, includes the driver's monitoring): ${mongo_segs_per_hit}."
  echo
  if ((LOAD_BEFORE >= 10 || LOAD_AFTER >= 10)); then
    echo "> **Warning:** the machine was not idle (other processes used ${LOAD_BEFORE}% of all CPUs"
    echo "> before the runs, ${LOAD_AFTER}% after): absolute numbers are noisy; trust the ratios more."
    echo
  fi
  echo "| setting | value |"
  echo "|---|---|"
  echo "| wrk | \`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency\`, $ROUNDS round(s), servers alternating (${NAMES[*]}) |"
  echo "| cachecar | $("$CACHECAR_BIN" --version 2>&1 | head -1), git $git_rev, threads: 1, access log to /dev/null; three instances (memory-only, redis-only, mongo-only route) |"
  echo "| redis | $(redis-server --version | awk '{print $3}' | sed 's/^v=//'), \`--save \"\" --appendonly no\`, on CPU $SERVER_CPU; cachecar \`timeout: $REDIS_TIMEOUT, pool: $REDIS_POOL\` |"
  echo "| mongo | \`$(basename "$MONGO_TEST_SERVER_BIN")\` (wire-protocol test server, not MongoDB), on CPU $SERVER_CPU; cachecar \`timeout: $MONGO_TIMEOUT\`, no Redis (generations in MongoDB) |"
  echo "| nginx | $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, access_log off, proxy_cache_path on $(stat -f -c %T "$WORK" 2>/dev/null || echo "?") ($(dirname "$WORK")) |"
  echo "| CPU | $cpu_model |"
  echo "| nproc | $ncpu |"
  echo "| kernel | $(uname -srm) |"
  echo "| background CPU load | ${LOAD_BEFORE}% before, ${LOAD_AFTER}% after (all CPUs, 1 s sample, servers idle) |"
} | tee "$report"
log "report written to $report"
