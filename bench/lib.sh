# bench/lib.sh — pieces shared by bench/run.sh and bench/hits.sh: sourced, not run.
# Before sourcing, set ROOT (the repository root) and BENCH_TAG (the log prefix).
# Everything a script starts goes through PIDS, which the EXIT trap stops in reverse
# order; nothing is ever killed by name. See bench/README.md.
# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this

CACHECAR_BIN=${CACHECAR_BIN:-$ROOT/build-bench/cachecar}
# The MongoDB wire-protocol test server (no real MongoDB can be installed here).
MONGO_TEST_SERVER_BIN=${MONGO_TEST_SERVER_BIN:-$ROOT/build-bench/tests/cachecar_mongo_test_server}
# The SSE / WebSocket origin and clients of stream.sh (bench/stream_tool.cpp).
STREAM_TOOL_BIN=${STREAM_TOOL_BIN:-$ROOT/build-bench/bench/cachecar_stream_tool}
SERVER_CPU=${SERVER_CPU:-0}   # servers under test and the stores they talk to
CLIENT_CPU=${CLIENT_CPU:-1}   # wrk (and the origin)
KEEP_TMP=${KEEP_TMP:-0}

# The origin's routes, the same in every script.
HIT_PATH=/api/v1/videos        # fixed 1 KiB JSON body
LARGE_PATH=/api/v1/large       # fixed 64 KiB JSON body
ITEMS_PREFIX=/api/v1/items/    # /api/v1/items/<anything>: 200, a small distinct body
WRITE_PATH=/api/v1/items       # POST: 200
REVAL_PATH=/api/v1/revalidated # the 1 KiB body as a file: ETag, Cache-Control: no-cache, 304 to If-None-Match
BODY_BYTES=1024
LARGE_BYTES=65536

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] FAIL: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""

# stop_pid PID: SIGTERM, up to 5 s for a graceful exit, then SIGKILL; forget the PID.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not exit on SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for i in "${!PIDS[@]}"; do [[ ${PIDS[i]} == "$pid" ]] && unset 'PIDS[i]'; done
  PIDS=("${PIDS[@]}")
}

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local i
  # Reverse start order, one at a time: the servers under test stop before the origin
  # and the stores they talk to (cachecar ends its MongoDB sessions on exit).
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $rc -ne 0 ]]; then
      for f in "$WORK"/*.log "$WORK"/*/error.log; do
        [[ -s $f ]] || continue
        log "---- last lines of $f"
        tail -n 20 "$f" >&2 || true
      done
    fi
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
      log "temp dir kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}

# bench_workdir: the temp dir for every config, log and cache of the run, and the traps.
bench_workdir() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # On tmpfs when there is one: Varnish's shared-memory log and nginx's cache files are
  # mmapped/written there, and on a disk-backed /tmp their writeback stalled Varnish for
  # up to a second (p99 1.4 s). Packaged Varnish keeps its workdir on tmpfs too.
  local base=/tmp
  [[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
  WORK=$(mktemp -d "$base/cachecar-bench.XXXXXX")
  mkdir -p "$ROOT/bench/out"
}

# ---------------------------------------------------------------- prerequisites
# bench_install CHECK:PACKAGE...: installs PACKAGE with apt when CHECK (a command name,
# or an absolute path to a file) is missing. apt-get update only when needed.
bench_install() {
  local spec check pkg need=()
  for spec in "$@"; do
    check=${spec%%:*} pkg=${spec#*:}
    if [[ $check == /* ]]; then
      [[ -e $check ]] && continue
    else
      command -v "$check" >/dev/null 2>&1 || [[ -x /usr/sbin/$check ]] && continue
    fi
    need+=("$pkg")
  done
  ((${#need[@]})) || return 0
  [[ $EUID -eq 0 ]] || die "missing ${need[*]}; run as root or install them"
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q "${need[@]}" >&2
}

# bench_build FORCE: builds cachecar, the MongoDB test server and the stream tool (Release, build-bench/)
# when FORCE is 1 or one of them is missing. Custom binaries are never built.
bench_build() {
  local force=$1
  local default_cc=$ROOT/build-bench/cachecar
  local default_mongo=$ROOT/build-bench/tests/cachecar_mongo_test_server
  if [[ $force == 1 || ! -x $CACHECAR_BIN || ! -x $MONGO_TEST_SERVER_BIN || ! -x $STREAM_TOOL_BIN ]]; then
    [[ $CACHECAR_BIN == "$default_cc" || -x $CACHECAR_BIN ]] ||
      die "CACHECAR_BIN=$CACHECAR_BIN is not executable (only build-bench/ is built)"
    [[ $MONGO_TEST_SERVER_BIN == "$default_mongo" || -x $MONGO_TEST_SERVER_BIN ]] ||
      die "MONGO_TEST_SERVER_BIN=$MONGO_TEST_SERVER_BIN is not executable (only build-bench/ is built)"
    log "building cachecar and the MongoDB test server (Release, build-bench/)"
    # Warnings are not a benchmark's business: GCC 12 reports -Wnull-dereference false
    # positives inside Boost.Asio at -O3, which -Werror turns into a failed build.
    cmake -S "$ROOT" -B "$ROOT/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCACHECAR_TESTS=ON -DCACHECAR_WERROR=OFF >&2
    cmake --build "$ROOT/build-bench" -j"${BUILD_JOBS:-1}" \
      --target cachecar cachecar_mongo_test_server cachecar_stream_tool >&2
  fi
}

bench_cpus() {
  NCPU=$(nproc)
  ((NCPU >= 2)) || log "WARNING: only $NCPU CPU(s); servers and wrk will share a core"
  ((SERVER_CPU < NCPU)) || SERVER_CPU=0
  ((CLIENT_CPU < NCPU)) || CLIENT_CPU=0
}

# ---------------------------------------------------------------- helpers
TAKEN_PORTS=" "
# Listening ports come from below the kernel's ephemeral range: a port inside it that is
# free now can become the source port of any outgoing connection (cachecar's to Redis,
# MongoDB or the origin) before the server that was meant to bind it starts.
PORT_LO=10000
PORT_HI=$(($(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768) - 1))
((PORT_HI > PORT_LO + 1000)) || PORT_HI=$((PORT_LO + 10000))
# free_port: sets FREE_PORT (a function, not $(...), so TAKEN_PORTS persists).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO + 1)))
    [[ $TAKEN_PORTS == *" $p "* ]] && continue
    # No socket at all on it, listening or connected.
    if [[ -z $(ss -Htan "sport = :$p" 2>/dev/null) ]]; then
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

# header_value FILE NAME: value of header NAME (lower case) in a curl -D dump.
header_value() {
  tr -d '\r' <"$1" | awk -F': *' -v h="$2" 'tolower($1)==h {print $2}'
}

# prime_hit NAME URL TIER BYTES: request URL until it is a 200 HIT (X-Cache starting with
# HIT; X-Cache-Tier TIER unless TIER is "-") with a BYTES-byte body, up to 50 times 0.1 s
# apart: the first request is a miss, and cachecar stores to Redis / MongoDB in the
# background after the miss response. Sets PRIME_TRIES.
prime_hit() {
  local name=$1 url=$2 want_tier=$3 bytes=$4 hdr=$WORK/prime.headers code x tier
  for PRIME_TRIES in $(seq 50); do
    code=$(curl -s --max-time 5 -D "$hdr" -o "$WORK/prime.body" -w '%{http_code}' "$url") ||
      die "$name: curl $url failed"
    x=$(header_value "$hdr" x-cache)
    tier=$(header_value "$hdr" x-cache-tier)
    if [[ $code == 200 && $x == HIT* && ( $want_tier == - || $tier == "$want_tier" ) ]]; then
      [[ $(wc -c <"$WORK/prime.body") -eq $bytes ]] ||
        die "$name: $url body is $(wc -c <"$WORK/prime.body") bytes, wanted $bytes"
      return 0
    fi
    sleep 0.1
  done
  [[ $want_tier == - ]] || want_tier=" from the $want_tier tier"
  die "$name: $url is not a 200 HIT${want_tier#-} after 50 tries (status $code; $(tr -d '\r' <"$hdr" | tr '\n' '|'))"
}

# to_ms VALUE: wrk latency ("812.00us", "1.23ms", "1.02s", "2.00m") -> milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    else if (u != "ms") { print "bad"; exit }
    printf "%.3f", n }'
}

# median "V1 V2 ...": the median, two decimals.
median() {
  tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g |
    awk '{a[NR] = $1} END { if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m }'
}

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

# proc_ticks PID...: CPU time (utime+stime, clock ticks) the processes used so far.
proc_ticks() {
  local p total=0
  for p in "$@"; do
    # Fields after the ")" that ends comm: utime and stime are the 12th and 13th.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

cpu_model() {
  local m
  m=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ {print $2; exit}')
  [[ -n $m ]] || m=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "${m:-$(uname -m)}"
}

git_rev() {
  local rev
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  if [[ -n $(git -C "$ROOT" status --porcelain -- src include CMakeLists.txt 2>/dev/null) ]]; then
    rev+=" (+ uncommitted changes)"
  fi
  echo "$rev"
}

# ---------------------------------------------------------------- nginx
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

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

# make_body BYTES: a fixed JSON body of exactly BYTES bytes (no single quotes or
# backslashes: the 1 KiB one is embedded in an nginx string).
make_body() {
  local bytes=$1 s='{"page":1,"limit":10,"items":[' i
  for i in $(seq 0 9); do
    ((i)) && s+=','
    s+=$(printf '{"uuid":"00000000-0000-4000-8000-%012d","title":"video %d","duration":%d}' "$i" "$i" $((60 * (i + 1))))
  done
  s+='],"pad":"'
  local pad=$((bytes - ${#s} - 2))
  ((pad >= 0)) || die "body template longer than $bytes bytes"
  s+=$(printf '%*s' "$pad" '' | tr ' ' x)
  s+='"}'
  ((${#s} == bytes)) || die "body is ${#s} bytes, wanted $bytes"
  printf '%s' "$s"
}

# ---------------------------------------------------------------- origin
# start_origin: one nginx origin for every server under test. Sets ORIGIN_PORT,
# ORIGIN_PID, BODY (the 1 KiB body). It logs every request it receives
# (origin_requests): the scripts check that hits never reach it and misses do.
start_origin() {
  free_port; ORIGIN_PORT=$FREE_PORT
  BODY=$(make_body "$BODY_BYTES")
  mkdir -p "$WORK/origin"
  make_body "$LARGE_BYTES" >"$WORK/origin/large.json"
  printf '%s' "$BODY" >"$WORK/origin/reval.json"
  {
    nginx_common "$WORK/origin"
    cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/origin")
  access_log $WORK/origin/access.log;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    default_type application/json;
    location = $HIT_PATH { return 200 '$BODY'; }
    location = $LARGE_PATH { alias $WORK/origin/large.json; }
    # Must be revalidated before every reuse: a cache asks with If-None-Match and nginx
    # answers 304 (its not_modified filter) without the body.
    location = $REVAL_PATH { alias $WORK/origin/reval.json; add_header Cache-Control no-cache; }
    # Any key: every miss in the mix and miss scenarios is a new URL.
    location $ITEMS_PREFIX { return 200 '{"item":"\$uri","stored":true}'; }
    # The write route (return answers any method, POST included).
    location = $WRITE_PATH { return 200 '{"ok":true}'; }
    location / { return 404; }
  }
}
EOF
  } >"$WORK/origin/nginx.conf"
  start_nginx origin "$CLIENT_CPU"; ORIGIN_PID=$STARTED_PID
  wait_http "http://127.0.0.1:$ORIGIN_PORT$HIT_PATH" "$ORIGIN_PID" origin
  local got
  got=$(curl -s "http://127.0.0.1:$ORIGIN_PORT$HIT_PATH" | wc -c)
  [[ $got -eq $BODY_BYTES ]] || die "origin body is $got bytes, wanted $BODY_BYTES"
  got=$(curl -s "http://127.0.0.1:$ORIGIN_PORT$LARGE_PATH" | wc -c)
  [[ $got -eq $LARGE_BYTES ]] || die "origin large body is $got bytes, wanted $LARGE_BYTES"
  got=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "http://127.0.0.1:$ORIGIN_PORT$WRITE_PATH")
  [[ $got == 200 ]] || die "origin answered POST $WRITE_PATH with $got, wanted 200"
  log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (pid $ORIGIN_PID, CPU $CLIENT_CPU)"
}

origin_requests() { wc -l <"$WORK/origin/access.log"; }
# origin_settled: origin_requests once it has not changed for 0.2 s (at most 6 s): when
# wrk stops, requests the server already forwarded still reach the origin, and they
# belong to the run that just ended, not to the next one.
origin_settled() {
  local a b
  a=$(origin_requests)
  for _ in $(seq 30); do
    sleep 0.2
    b=$(origin_requests)
    [[ $a == "$b" ]] && break
    a=$b
  done
  echo "$a"
}

# ---------------------------------------------------------------- stores
# start_redis: a private redis-server for cachecar's Redis tier: no persistence, its own
# dir, pinned to the server CPU (it works on every Redis-tier hit, so it is part of the
# server side). Sets REDIS_PORT, REDIS_PID.
start_redis() {
  free_port; REDIS_PORT=$FREE_PORT
  mkdir -p "$WORK/redis"
  taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$WORK/redis" --logfile "$WORK/redis.log" \
    >/dev/null 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 100); do
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited during start-up"
    [[ $(rcli PING 2>/dev/null) == PONG ]] && break
    sleep 0.1
  done
  [[ $(rcli PING 2>/dev/null) == PONG ]] ||
    die "redis-server did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s"
  log "redis: 127.0.0.1:$REDIS_PORT (pid $REDIS_PID, CPU $SERVER_CPU)"
}
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# start_mongo_server: the project's MongoDB wire-protocol test server
# (tests/support/mongo_test_server.*) as a process, pinned to the server CPU like
# redis-server. --port 0: the kernel picks a free port, which the server prints
# ("listening on PORT"). Sets MONGO_PORT, MONGO_PID.
start_mongo_server() {
  local logf=$WORK/mongo-server.log
  : >"$logf"  # exists before the background process opens it: awk reads it at once
  taskset -c "$SERVER_CPU" "$MONGO_TEST_SERVER_BIN" --port 0 >"$logf" 2>&1 &
  MONGO_PID=$!
  PIDS+=("$MONGO_PID")
  MONGO_PORT=""
  for _ in $(seq 100); do
    kill -0 "$MONGO_PID" 2>/dev/null || die "the MongoDB test server exited during start-up"
    MONGO_PORT=$(awk '/^listening on [0-9]+$/ {print $3; exit}' "$logf")
    [[ -n $MONGO_PORT ]] && break
    sleep 0.1
  done
  [[ -n $MONGO_PORT ]] || die "the MongoDB test server did not print 'listening on PORT' within 10 s"
  TAKEN_PORTS+="$MONGO_PORT "
  log "mongo test server: 127.0.0.1:$MONGO_PORT (pid $MONGO_PID, CPU $SERVER_CPU)"
}

# ---------------------------------------------------------------- cachecar
REDIS_TIMEOUT=50ms
REDIS_POOL=8
MONGO_TIMEOUT=200ms

# cachecar_config TIER: the YAML of the instance that serves every cached route from
# TIER only (memory, redis or mongo), with @PORT@/@ADMIN@ for start_cachecar. The same
# routes in every instance: the 1 KiB and 64 KiB bodies (category videos), the items
# (category items) and a write route that purges items.
cachecar_config() {
  local tier=$1 ns=bench
  [[ $tier == memory ]] || ns=bench-$tier
  cat <<EOF
server:
  listen: 127.0.0.1:@PORT@
  upstream: http://127.0.0.1:$ORIGIN_PORT
  admin_listen: 127.0.0.1:@ADMIN@
  namespace: $ns
  threads: 1
logging:
  access_log: off   # as the peers: nginx runs with access_log off, Varnish without varnishncsa
tiers:
  memory: { max_bytes: 64MiB }
EOF
  case $tier in
    redis) echo "  redis: { url: redis://127.0.0.1:$REDIS_PORT/0, timeout: $REDIS_TIMEOUT, pool: $REDIS_POOL }" ;;
    mongo) echo "  mongo: { uri: \"mongodb://127.0.0.1:$MONGO_PORT/?serverSelectionTimeoutMS=1000\", database: bench, collection: cache, timeout: $MONGO_TIMEOUT }" ;;
  esac
  cat <<EOF
routes:
  - name: videos
    match: GET $HIT_PATH
    tiers: [$tier]
    ttl: 1h
    categories: [videos]
  - name: large
    match: GET $LARGE_PATH
    tiers: [$tier]
    ttl: 1h
    categories: [videos]
  - name: revalidated
    match: GET $REVAL_PATH
    tiers: [$tier]
    ttl: 1h
  - name: items
    match: GET ${ITEMS_PREFIX}{id}
    tiers: [$tier]
    ttl: 1h
    categories: [items]
invalidate:
  - match: POST $WRITE_PATH
    purge: [items]
EOF
}

# start_cachecar NAME [PORT ADMIN]: writes $WORK/NAME.yaml from stdin (with @PORT@ and
# @ADMIN@ filled in; free ports unless given), starts it on the server CPU; sets
# STARTED_PID, STARTED_PORT, STARTED_ADMIN.
start_cachecar() {
  local name=$1 port=${2:-} admin=${3:-}
  [[ -n $port ]] || { free_port; port=$FREE_PORT; }
  [[ -n $admin ]] || { free_port; admin=$FREE_PORT; }
  sed -e "s|@PORT@|$port|; s|@ADMIN@|$admin|" >"$WORK/$name.yaml"
  "$CACHECAR_BIN" --check -c "$WORK/$name.yaml" >&2 || die "cachecar rejected $WORK/$name.yaml"
  # stdout carries one access-log line per request: discard it (see README).
  taskset -c "$SERVER_CPU" "$CACHECAR_BIN" -c "$WORK/$name.yaml" >/dev/null 2>>"$WORK/$name.log" &
  STARTED_PID=$!
  STARTED_PORT=$port
  STARTED_ADMIN=$admin
  PIDS+=("$STARTED_PID")
  wait_http "http://127.0.0.1:$admin/health" "$STARTED_PID" "$name"
  log "$name: 127.0.0.1:$port admin :$admin (pid $STARTED_PID, CPU $SERVER_CPU)"
}

# ---------------------------------------------------------------- nginx proxy_cache
# start_nginx_proxy_cache: nginx proxy_cache in front of the origin, hit header X-Cache.
# Sets NX_PORT, NX_PID.
start_nginx_proxy_cache() {
  free_port; NX_PORT=$FREE_PORT
  mkdir -p "$WORK/nginx/cache"
  {
    nginx_common "$WORK/nginx"
    cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/nginx")
  access_log off;
  proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=2h;
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
      add_header X-Cache \$upstream_cache_status always;
    }
  }
}
EOF
  } >"$WORK/nginx/nginx.conf"
  start_nginx nginx "$SERVER_CPU"; NX_PID=$STARTED_PID
  wait_http "http://127.0.0.1:$NX_PORT/" "$NX_PID" "nginx proxy_cache"
  log "nginx proxy_cache: 127.0.0.1:$NX_PORT (pid $NX_PID, CPU $SERVER_CPU)"
}
