#!/usr/bin/env bash
# bench/hits.sh — cache-hit throughput of cachecar (memory, Redis and MongoDB tier)
# against nginx proxy_cache, all in front of the same nginx origin, measured in the same
# run (STYLE.md rule 10). The detailed hit-path report (CPU per request, Redis commands
# and MongoDB segments per hit); bench/run.sh is the full comparison. Shares its servers
# and helpers with run.sh through bench/lib.sh.
#
# Usage: bench/hits.sh [--build]
#   env: DURATION=10 (seconds per wrk run)  ROUNDS=3  CONNECTIONS=64
#        CACHECAR_BIN=build-bench/cachecar  KEEP_TMP=1 (keep the temp dir with configs/logs)
#        MONGO_TEST_SERVER_BIN=build-bench/tests/cachecar_mongo_test_server
# See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_TAG=hits
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
PATH_UNDER_TEST=$HIT_PATH
BUILD=0

for arg in "$@"; do
  case $arg in
    --build) BUILD=1 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

bench_install nginx:nginx-light wrk:wrk curl:curl taskset:util-linux \
  redis-server:redis-server redis-cli:redis-tools cmake:cmake ninja:ninja-build
bench_cpus
ncpu=$NCPU
bench_build "$BUILD"
bench_workdir

# ---------------------------------------------------------------- servers
# The origin, redis-server, the MongoDB test server, three cachecar instances and nginx
# proxy_cache, as bench/run.sh starts them (bench/lib.sh). "cachecar-memory" has only the
# memory tier, "cachecar-redis" serves its routes from Redis only, "cachecar-mongo" from
# MongoDB only (no Redis configured, so its generations live in MongoDB too). Separate
# processes keep each case free of what the others bring (connections, purge
# subscription, worker threads, timers) and give each case its own CPU accounting.
start_origin
start_redis
start_mongo_server
start_cachecar cachecar-memory < <(cachecar_config memory)
CC_PID=$STARTED_PID; CC_PORT=$STARTED_PORT
start_cachecar cachecar-redis < <(cachecar_config redis)
CR_PID=$STARTED_PID; CR_PORT=$STARTED_PORT
start_cachecar cachecar-mongo < <(cachecar_config mongo)
CM_PID=$STARTED_PID; CM_PORT=$STARTED_PORT
start_nginx_proxy_cache

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
                       [nginx]=x-cache)
# The tier that must answer (X-Cache-Tier); "-": not checked.
declare -A WANT_TIER=([cachecar-memory]=memory [cachecar-redis]=redis [cachecar-mongo]=mongo [nginx]=-)
declare -A RESP_BYTES=()

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
  if [[ ${WANT_TIER[$name]} != - ]]; then
    value=$(header_value "$hdr" x-cache-tier)
    [[ $value == "${WANT_TIER[$name]}" ]] ||
      die "$name: X-Cache-Tier='$value', wanted ${WANT_TIER[$name]} ($(tr -d '\r' <"$hdr" | tr '\n' '|'))"
  fi
  cmp -s "$body" <(printf '%s' "$BODY") || die "$name: body differs from the origin's"
  RESP_BYTES[$name]=$((size + BODY_BYTES))
}

for name in "${NAMES[@]}"; do
  prime_hit "$name" "${URL[$name]}" "${WANT_TIER[$name]}" "$BODY_BYTES"
  verify_hit "$name"
  log "$name: warm after $PRIME_TRIES request(s), 200 HIT (${RESP_BYTES[$name]} bytes per response)"
done
ORIGIN_BEFORE=$(origin_requests)

LOAD_BEFORE=$(background_load)
((LOAD_BEFORE < 10)) ||
  log "WARNING: machine is ${LOAD_BEFORE}% busy before measuring (other processes); results will be noisy"

# ---------------------------------------------------------------- measure
# server_ticks NAME: CPU time (utime+stime, clock ticks) used so far by the processes
# that serve requests: cachecar (all threads), nginx's workers.
CLK_TCK=$(getconf CLK_TCK)
# For the Redis case that includes redis-server, for the MongoDB case the MongoDB test
# server: they do part of the work of every hit.
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

# ---------------------------------------------------------------- report
stamp=$(date +%Y%m%d-%H%M%S)
report=$ROOT/bench/out/hits-$stamp.md
cpu_model=$(cpu_model)
git_rev=$(git_rev)

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
