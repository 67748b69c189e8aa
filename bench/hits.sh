#!/usr/bin/env bash
# bench/hits.sh — cache-hit throughput of cachecar against nginx proxy_cache,
# both in front of the same nginx origin, measured in the same run (STYLE.md rule 10).
#
# Usage: bench/hits.sh [--build]
#   env: DURATION=10 (seconds per wrk run)  ROUNDS=3  CONNECTIONS=64
#        CACHECAR_BIN=build/cachecar  KEEP_TMP=1 (keep the temp dir with configs/logs)
# See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
CACHECAR_BIN=${CACHECAR_BIN:-$ROOT/build/cachecar}
SERVER_CPU=${SERVER_CPU:-0}   # server under test
CLIENT_CPU=${CLIENT_CPU:-1}   # wrk (and the idle origin)
BODY_BYTES=1024
PATH_UNDER_TEST=/api/v1/videos
BUILD=0

for arg in "$@"; do
  case $arg in
    --build) BUILD=1 ;;
    -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
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

# ---------------------------------------------------------------- cachecar
free_port; CC_PORT=$FREE_PORT
free_port; CC_ADMIN_PORT=$FREE_PORT
cat >"$WORK/cachecar.yaml" <<EOF
server:
  listen: 127.0.0.1:$CC_PORT
  upstream: http://127.0.0.1:$ORIGIN_PORT
  admin_listen: 127.0.0.1:$CC_ADMIN_PORT
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
"$CACHECAR_BIN" --check -c "$WORK/cachecar.yaml" >&2 || die "cachecar rejected $WORK/cachecar.yaml"
# stdout carries one access-log line per request: discard it (see README).
taskset -c "$SERVER_CPU" "$CACHECAR_BIN" -c "$WORK/cachecar.yaml" >/dev/null 2>"$WORK/cachecar.log" &
CC_PID=$!
PIDS+=("$CC_PID")
wait_http "http://127.0.0.1:$CC_ADMIN_PORT/health" "$CC_PID" cachecar
log "cachecar: 127.0.0.1:$CC_PORT admin :$CC_ADMIN_PORT (pid $CC_PID, CPU $SERVER_CPU)"

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
NAMES=(cachecar nginx)
declare -A URL=([cachecar]="http://127.0.0.1:$CC_PORT$PATH_UNDER_TEST"
                [nginx]="http://127.0.0.1:$NX_PORT$PATH_UNDER_TEST")
declare -A PID_OF=([cachecar]=$CC_PID [nginx]=$NX_PID)
declare -A HIT_HEADER=([cachecar]=x-cache [nginx]=x-cache-status)
declare -A RESP_BYTES=()

# verify_hit NAME: one request must be a 200 HIT carrying the origin body.
verify_hit() {
  local name=$1 hdr=$WORK/$1.headers body=$WORK/$1.body code value size
  kill -0 "${PID_OF[$name]}" 2>/dev/null || die "$name (pid ${PID_OF[$name]}) is not running"
  code=$(curl -s --max-time 5 -D "$hdr" -o "$body" -w '%{http_code} %{size_header}' "${URL[$name]}") ||
    die "$name: curl ${URL[$name]} failed"
  size=${code#* }
  code=${code%% *}
  [[ $code == 200 ]] || die "$name: status $code, wanted 200 ($(tr -d '\r' <"$hdr" | tr '\n' '|'))"
  value=$(tr -d '\r' <"$hdr" | awk -F': *' -v h="${HIT_HEADER[$name]}" 'tolower($1)==h {print $2}')
  [[ $value == HIT ]] || die "$name: ${HIT_HEADER[$name]}='$value', wanted HIT"
  cmp -s "$body" <(printf '%s' "$BODY") || die "$name: body differs from the origin's"
  RESP_BYTES[$name]=$((size + BODY_BYTES))
}

for name in "${NAMES[@]}"; do
  curl -s -o /dev/null --max-time 5 "${URL[$name]}" || die "$name: warm-up request failed"
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
server_ticks() {
  local pids=${PID_OF[$1]}
  [[ $1 == nginx ]] && pids=$(pgrep -P "${PID_OF[$1]}" -f 'worker process' | xargs)
  local p total=0
  for p in $pids; do
    # Fields after the ")" that ends comm: utime and stime are the 12th and 13th.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

declare -A RPS=() P50=() P99=() EFF=()
for name in "${NAMES[@]}"; do RPS[$name]=""; P50[$name]=""; P99[$name]=""; EFF[$name]=""; done

for round in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    out=$WORK/wrk-$name-$round.txt
    log "round $round/$ROUNDS: $name (${DURATION}s, $CONNECTIONS connections)"
    ticks0=$(server_ticks "$name")
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${URL[$name]}" >"$out" 2>&1 ||
      { cat "$out" >&2; die "$name: wrk failed"; }
    ticks1=$(server_ticks "$name" 2>/dev/null || echo 0)
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
    verify_hit "$name"
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
ratio=$(awk -v a="${M_RPS[cachecar]}" -v b="${M_RPS[nginx]}" 'BEGIN { printf "%.2f", a / b }')
eff_ratio=$(awk -v a="${M_EFF[cachecar]}" -v b="${M_EFF[nginx]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
# Ratio of each round's pair (cachecar run, then the nginx run right after it):
# less sensitive to drift in machine speed over the whole run than the ratio of medians.
round_ratios=$(paste -d' ' <(tr ' ' '\n' <<<"${RPS[cachecar]}" | grep -v '^$') \
                           <(tr ' ' '\n' <<<"${RPS[nginx]}" | grep -v '^$') |
  awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2}')

{
  echo "# cachecar cache-hit benchmark — $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "Both servers answer \`GET $PATH_UNDER_TEST\` from cache (a fixed ${BODY_BYTES}-byte JSON"
  echo "body from an nginx origin); every measured request was a 200 HIT (origin requests"
  echo "during the runs: $origin_during). Server pinned to CPU $SERVER_CPU, wrk to CPU $CLIENT_CPU."
  echo
  echo "| server | req/s (median) | p50 ms | p99 ms | req per server CPU-s | req/s per round | bytes/response |"
  echo "|---|---:|---:|---:|---:|---|---:|"
  for name in "${NAMES[@]}"; do
    label=$name
    [[ $name == nginx ]] && label="nginx proxy_cache"
    [[ $name == cachecar ]] && label="cachecar (memory tier)"
    printf '| %s | %s | %s | %s | %.0f | %s | %s |\n' "$label" "${M_RPS[$name]}" "${M_P50[$name]}" \
      "${M_P99[$name]}" "${M_EFF[$name]}" "$(echo "${RPS[$name]}" | xargs | sed 's/ /, /g')" "${RESP_BYTES[$name]}"
  done
  echo
  echo "**cachecar / nginx req/s: ${ratio}** (ratio of medians; per round: ${round_ratios// /, },"
  echo "median $(median "$round_ratios"))"
  echo
  echo "cachecar / nginx requests per server CPU-second: ${eff_ratio}"
  echo
  if ((LOAD_BEFORE >= 10 || LOAD_AFTER >= 10)); then
    echo "> **Warning:** the machine was not idle (other processes used ${LOAD_BEFORE}% of all CPUs"
    echo "> before the runs, ${LOAD_AFTER}% after): absolute numbers are noisy; trust the ratios more."
    echo
  fi
  echo "| setting | value |"
  echo "|---|---|"
  echo "| wrk | \`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency\`, $ROUNDS round(s), servers alternating |"
  echo "| cachecar | $("$CACHECAR_BIN" --version 2>&1 | head -1), git $git_rev, threads: 1, access log to /dev/null |"
  echo "| nginx | $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, access_log off, proxy_cache_path on $(stat -f -c %T "$WORK" 2>/dev/null || echo "?") ($(dirname "$WORK")) |"
  echo "| CPU | $cpu_model |"
  echo "| nproc | $ncpu |"
  echo "| kernel | $(uname -srm) |"
  echo "| background CPU load | ${LOAD_BEFORE}% before, ${LOAD_AFTER}% after (all CPUs, 1 s sample, servers idle) |"
} | tee "$report"
log "report written to $report"
