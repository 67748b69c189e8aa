#!/usr/bin/env bash
# bench/run.sh — cachecar (memory, Redis, MongoDB tier) against nginx proxy_cache, Varnish
# and nginx+srcache+memcached, all in front of one origin, on one machine in one run:
# hits (1 KiB, 64 KiB), a 90/10 hit/miss mix, misses only (plus direct to the origin)
# and hits while the category is purged every 100 ms. Every answer is checked.
#
# Usage: bench/run.sh [--build] [--quick]
#   --build  rebuild build-bench/ first (it is built anyway when a binary is missing)
#   --quick  DURATION=2 ROUNDS=1: a smoke test of the harness, not a measurement
#   env: DURATION=10 (s per wrk run)  ROUNDS=3  CONNECTIONS=64  SERVER_CPU=0  CLIENT_CPU=1
#        SCENARIOS="hit1k hit64k mix miss purge reval"  SERVERS="cachecar-memory cachecar-redis
#        cachecar-mongo nginx varnish srcache"  KEEP_TMP=1 (keep the temp dir)
#        CACHECAR_BIN=build-bench/cachecar  MONGO_TEST_SERVER_BIN=build-bench/tests/...
# Writes bench/out/latest.{md,csv,png}. See bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_TAG=run
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

BUILD=0
for arg in "$@"; do
  case $arg in
    --build) BUILD=1 ;;
    --quick) DURATION=${DURATION:-2}; ROUNDS=${ROUNDS:-1} ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
ALL_SCENARIOS=(hit1k hit64k mix miss purge reval)
ALL_SERVERS=(cachecar-memory cachecar-redis cachecar-mongo nginx varnish srcache)
read -r -a SCEN_LIST <<<"${SCENARIOS:-${ALL_SCENARIOS[*]}}"
read -r -a SERVER_LIST <<<"${SERVERS:-${ALL_SERVERS[*]}}"
for s in "${SCEN_LIST[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || die "unknown scenario '$s' (known: ${ALL_SCENARIOS[*]})"
done
for s in "${SERVER_LIST[@]}"; do
  [[ " ${ALL_SERVERS[*]} " == *" $s "* ]] || die "unknown server '$s' (known: ${ALL_SERVERS[*]})"
done
PURGE_INTERVAL_MS=100
MOD_DIR=/usr/lib/nginx/modules

# ---------------------------------------------------------------- prerequisites
bench_install nginx:nginx-light wrk:wrk curl:curl taskset:util-linux lscpu:util-linux \
  redis-server:redis-server redis-cli:redis-tools memcached:memcached varnishd:varnish \
  gnuplot:gnuplot-nox cmake:cmake ninja:ninja-build \
  "$MOD_DIR/ngx_http_srcache_filter_module.so:libnginx-mod-http-srcache-filter" \
  "$MOD_DIR/ngx_http_memc_module.so:libnginx-mod-http-memc"
bench_cpus
# The binaries are needed only when a cachecar server is measured.
[[ " ${SERVER_LIST[*]}" == *" cachecar-"* || $BUILD == 1 ]] && bench_build "$BUILD"
bench_workdir

declare -A LABEL=([cachecar-memory]="cachecar memory" [cachecar-redis]="cachecar redis"
                  [cachecar-mongo]="cachecar mongo" [nginx]="nginx proxy_cache"
                  [varnish]="Varnish" [srcache]="nginx srcache+memcached" [direct]="direct to origin")
declare -A BASE=() PID_OF=() ADMIN_OF=()
declare -A WANT_TIER=([cachecar-memory]=memory [cachecar-redis]=redis [cachecar-mongo]=mongo
                      [nginx]=- [varnish]=- [srcache]=- [direct]=-)
want() { [[ " ${SERVER_LIST[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------- origin and stores
start_origin
BASE[direct]=http://127.0.0.1:$ORIGIN_PORT PID_OF[direct]=$ORIGIN_PID
want cachecar-redis && start_redis
want cachecar-mongo && start_mongo_server

# memcached: the shared external tier of the srcache peer, on the server CPU like
# redis-server. One worker thread, as cachecar runs one I/O thread.
if want srcache; then
  free_port; MEMCACHED_PORT=$FREE_PORT
  mc_user=()
  [[ $EUID -eq 0 ]] && mc_user=(-u nobody)  # memcached refuses to run as root
  taskset -c "$SERVER_CPU" memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 1024 -t 1 -c 4096 \
    "${mc_user[@]}" >"$WORK/memcached.log" 2>&1 &
  MEMCACHED_PID=$!
  PIDS+=("$MEMCACHED_PID")
  for _ in $(seq 100); do
    kill -0 "$MEMCACHED_PID" 2>/dev/null || die "memcached exited during start-up"
    [[ -n $(ss -Htln "sport = :$MEMCACHED_PORT" 2>/dev/null) ]] && break
    sleep 0.1
  done
  log "memcached: 127.0.0.1:$MEMCACHED_PORT (pid $MEMCACHED_PID, CPU $SERVER_CPU)"
fi

# ---------------------------------------------------------------- servers under test
# start_cachecar_case TIER: (re)start the instance that serves every route from TIER.
start_cachecar_case() {
  local name=cachecar-$1
  start_cachecar "$name" < <(cachecar_config "$1")
  PID_OF[$name]=$STARTED_PID
  BASE[$name]=http://127.0.0.1:$STARTED_PORT
  ADMIN_OF[$name]=http://127.0.0.1:$STARTED_ADMIN
}
want cachecar-memory && start_cachecar_case memory
want cachecar-redis && start_cachecar_case redis
want cachecar-mongo && start_cachecar_case mongo

# The MongoDB test server scans linearly and keeps every document (it is meant for the
# hundreds a test writes): after a miss run has stored tens of thousands of entries each
# find and insert costs O(entries). So every cachecar-mongo run starts from an empty
# test server and a fresh cachecar-mongo (see README).
restart_mongo_case() {
  stop_pid "${PID_OF[cachecar-mongo]}"
  stop_pid "$MONGO_PID"
  start_mongo_server
  start_cachecar_case mongo
}

if want nginx; then
  start_nginx_proxy_cache
  PID_OF[nginx]=$NX_PID BASE[nginx]=http://127.0.0.1:$NX_PORT
fi

# Varnish: malloc storage, its own -n workdir in the temp dir; -j none because the
# default jail needs the varnish/vcache users to reach the 0700 temp dir. BAN with an
# X-Ban regex on req.url is the category purge (Varnish's own lazy invalidation).
if want varnish; then
  free_port; VARNISH_PORT=$FREE_PORT
  cat >"$WORK/varnish.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
sub vcl_recv {
  if (req.method == "BAN") {
    ban("req.url ~ " + req.http.X-Ban);
    return (synth(200, "Banned"));
  }
}
sub vcl_backend_response {
  set beresp.ttl = 1h;
}
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
EOF
  taskset -c "$SERVER_CPU" varnishd -F -j none -n "$WORK/varnish" -a "127.0.0.1:$VARNISH_PORT" \
    -f "$WORK/varnish.vcl" -s malloc,1g >"$WORK/varnish.log" 2>&1 &
  PID_OF[varnish]=$!
  PIDS+=("${PID_OF[varnish]}")
  BASE[varnish]=http://127.0.0.1:$VARNISH_PORT
  wait_http "${BASE[varnish]}/" "${PID_OF[varnish]}" varnish
  log "varnish: 127.0.0.1:$VARNISH_PORT (pid ${PID_OF[varnish]}, CPU $SERVER_CPU)"
fi

# nginx + srcache + memc: nginx caching into memcached (the peer of a shared external
# tier). /_purge is memcached's only invalidation, flush_all.
if want srcache; then
  free_port; SRCACHE_PORT=$FREE_PORT
  mkdir -p "$WORK/srcache"
  {
    echo "load_module $MOD_DIR/ngx_http_srcache_filter_module.so;"
    echo "load_module $MOD_DIR/ngx_http_memc_module.so;"
    nginx_common "$WORK/srcache"
    cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/srcache")
  access_log off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 16; }
  upstream memcached { server 127.0.0.1:$MEMCACHED_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$SRCACHE_PORT;
    location = /_memc {
      internal;
      set \$memc_key \$query_string;
      set \$memc_exptime 3600;
      memc_pass memcached;
    }
    location = /_purge {
      set \$memc_cmd flush_all;
      memc_pass memcached;
    }
    location / {
      srcache_fetch GET /_memc \$request_uri;
      srcache_store PUT /_memc \$request_uri;
      srcache_store_statuses 200;
      add_header X-Cache \$srcache_fetch_status always;
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  } >"$WORK/srcache/nginx.conf"
  start_nginx srcache "$SERVER_CPU"; PID_OF[srcache]=$STARTED_PID
  BASE[srcache]=http://127.0.0.1:$SRCACHE_PORT
  wait_http "${BASE[srcache]}/" "${PID_OF[srcache]}" "nginx srcache"
  log "nginx srcache+memc: 127.0.0.1:$SRCACHE_PORT (pid ${PID_OF[srcache]}, CPU $SERVER_CPU)"
fi

# purge_once NAME: one category purge (videos: the 1 KiB and 64 KiB routes); prints the
# HTTP status. Servers that cannot purge have no case here.
purge_once() {
  local c=(curl -s -o /dev/null -w '%{http_code}\n' --max-time 1)
  case $1 in
    cachecar-*) "${c[@]}" -X POST -H 'Content-Type: application/json' \
                  -d '{"categories":["videos"]}' "${ADMIN_OF[$1]}/purge" ;;
    varnish) "${c[@]}" -X BAN -H "X-Ban: ^($HIT_PATH|$LARGE_PATH)" "${BASE[varnish]}/" ;;
    srcache) "${c[@]}" "${BASE[srcache]}/_purge" ;;
    *) return 1 ;;
  esac
}
# purge_loop NAME FILE: a purge every PURGE_INTERVAL_MS, on a fixed schedule (a slow purge
# delays the next one, it does not cause a burst), until killed.
purge_loop() {
  local next now
  next=${EPOCHREALTIME/[.,]/}
  while :; do
    purge_once "$1" >>"$2" || true
    next=$((next + PURGE_INTERVAL_MS * 1000))
    now=${EPOCHREALTIME/[.,]/}
    if ((next > now)); then sleep "$(printf '%d.%06d' $(((next - now) / 1000000)) $(((next - now) % 1000000)))"; else next=$now; fi
  done
}
can_purge() { [[ $1 == cachecar-* || $1 == varnish || $1 == srcache ]]; }

# ---------------------------------------------------------------- checks
# prime NAME PATH: PATH on NAME answers a 200 HIT (from the route's tier for cachecar).
prime() {
  local want_bytes=$BODY_BYTES
  [[ $2 == "$LARGE_PATH" ]] && want_bytes=$LARGE_BYTES
  prime_hit "$1" "${BASE[$1]}$2" "${WANT_TIER[$1]}" "$want_bytes"
}

# server_alive NAME: the server and the stores it uses are still running.
server_alive() {
  kill -0 "${PID_OF[$1]}" 2>/dev/null || die "$1 (pid ${PID_OF[$1]}) is not running (see its log)"
  case $1 in
    cachecar-redis) kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server is not running" ;;
    cachecar-mongo) kill -0 "$MONGO_PID" 2>/dev/null || die "the MongoDB test server is not running" ;;
    srcache) kill -0 "$MEMCACHED_PID" 2>/dev/null || die "memcached is not running" ;;
  esac
}

# ---------------------------------------------------------------- one run
CSV=$WORK/results.csv
echo "scenario,server,round,req_per_s,p50_ms,p99_ms,responses,non200,hit,miss,none,other,tier_bad,origin_requests,purges,purges_failed" >"$CSV"
declare -A RPS=() P50=() P99=() HITPCT=() ORIG=() PURGES=() PURGE_FAILED=()
NONCE=$(date +%s)-$$

# run_one SCENARIO NAME ROUND
run_one() {
  local scen=$1 name=$2 round=$3 mode path=$HIT_PATH out=$WORK/wrk-$1-$2-$3.txt
  local prefix="${ITEMS_PREFIX}$1-$2-r$3-$NONCE-" purger="" purges=0 purge_file=$WORK/purge-$1-$2-$3.txt
  case $scen in
    hit1k|purge) mode=hit ;;
    hit64k) mode=hit path=$LARGE_PATH ;;
    mix) mode=mix ;;
    miss) mode=miss ;;
    reval) mode=hit path=$REVAL_PATH ;;  # each a HIT whose freshness a 304 renewed
  esac
  [[ $name == cachecar-mongo ]] && restart_mongo_case
  [[ $mode == miss || $name == direct ]] || prime "$name" "$path"
  server_alive "$name"
  log "round $round/$ROUNDS $scen: $name (${DURATION}s, $CONNECTIONS connections)"
  local origin0 origin1 validated0=0 validated1=0
  origin0=$(origin_requests)
  [[ $scen == reval ]] && validated0=$(validations "$name")
  if [[ $scen == purge ]]; then
    : >"$purge_file"
    purge_loop "$name" "$purge_file" &
    purger=$!
    PIDS+=("$purger")
    taskset -pc "$CLIENT_CPU" "$purger" >/dev/null
  fi
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -s "$ROOT/bench/check.lua" "${BASE[$name]}" -- "$mode" "$path" "$prefix" "${WANT_TIER[$name]}" \
    >"$out" 2>&1 || { cat "$out" >&2; die "$scen/$name: wrk failed"; }
  [[ -n $purger ]] && stop_pid "$purger"
  origin1=$(origin_settled)
  server_alive "$name"
  [[ $scen == reval ]] && validated1=$(validations "$name")

  local rps p50 p99 chk total non200 hit miss none other tier_bad n_origin=$((origin1 - origin0))
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  chk=$(grep '^CHECK ' "$out" || true)
  [[ -n $rps && -n $p50 && -n $p99 && -n $chk ]] || { cat "$out" >&2; die "$scen/$name: cannot parse wrk output"; }
  p50=$(to_ms "$p50"); p99=$(to_ms "$p99")
  [[ $p50 != bad && $p99 != bad ]] || { cat "$out" >&2; die "$scen/$name: unknown latency unit"; }
  local k v kv
  for kv in ${chk#CHECK }; do k=${kv%%=*} v=${kv#*=}; printf -v "$k" '%s' "$v"; done
  local purge_failed=0
  if [[ -s $purge_file ]]; then
    purges=$(grep -c '^200$' "$purge_file" || true)
    purge_failed=$(grep -vc '^200$' "$purge_file" || true)
    # A purge that is refused is the server's answer to overload (cachecar defers a
    # purge with 503 while a tier's circuit breaker is open), not a wrong response to
    # the measured traffic: reported in the table, not fatal.
    ((purge_failed == 0)) ||
      log "  WARNING: $purge_failed purge(s) did not answer 200 ($(sort "$purge_file" | uniq -c | xargs)); see $name's log"
  fi

  # What every run must be. wrk's own error lines first: socket errors, non-2xx.
  local bad=""
  grep -qE 'Socket errors|Non-2xx or 3xx responses' "$out" && bad+="wrk reported errors; "
  ((total > 0)) || bad+="no responses; "
  ((non200 == 0)) || bad+="$non200 non-200 responses; "
  ((tier_bad == 0)) || bad+="$tier_bad hits not from the ${WANT_TIER[$name]} tier; "
  local inflight=$((CONNECTIONS + 1))  # requests wrk sent but stopped waiting for at the end
  case $scen in
    hit1k|hit64k)
      ((hit == total)) || bad+="$((total - hit)) of $total responses not HIT (miss $miss, none $none, other $other); "
      ((n_origin == 0)) || bad+="the origin saw $n_origin requests; " ;;
    mix)
      ((miss + hit == total)) || bad+="$((total - hit - miss)) responses neither HIT nor MISS; "
      # Every 10th request is a new key: the misses must be a real 10 %, each one an
      # origin request.
      ((miss * 100 >= total * 8 && miss * 100 <= total * 12)) ||
        bad+="miss share $miss/$total is not ~10 %; "
      ((n_origin >= miss && n_origin <= miss + inflight)) ||
        bad+="origin saw $n_origin requests for $miss misses; " ;;
    miss)
      if [[ $name == direct ]]; then
        ((none == total)) || bad+="direct answers carry a cache header; "
        ((n_origin >= total && n_origin <= total + inflight)) || bad+="origin saw $n_origin of $total requests; "
      else
        ((miss == total)) || bad+="$((total - miss)) of $total responses not MISS; "
        ((n_origin >= miss && n_origin <= miss + inflight)) ||
          bad+="origin saw $n_origin requests for $miss misses; "
      fi ;;
    reval)
      # Every answer a HIT confirmed by the origin: each origin request a conditional one
      # answered 304 (the body never crossed again), shared by the requests that came
      # while it was on its way (coalescing), so fewer origin requests than answers.
      ((hit == total)) || bad+="$((total - hit)) of $total responses not HIT; "
      ((n_origin > 0)) || bad+="the origin saw no revalidation; "
      ((validated1 - validated0 >= n_origin - inflight)) ||
        bad+="only $((validated1 - validated0)) of $n_origin origin requests were 304 revalidations; " ;;
    purge)
      ((hit + miss + other == total)) || bad+="responses without a cache header; "
      ((purges > 0)) || bad+="no purge succeeded; "
      # A purge that works makes the next request a miss that reaches the origin.
      ((n_origin > 0)) || bad+="the origin saw no request: the purges had no effect; " ;;
  esac
  if [[ -n $bad ]]; then
    # A shared tier that times out is marked down and its lookups become misses: on a
    # machine busy with other work that, not cachecar's cache, is the usual cause.
    [[ $name == cachecar-redis || $name == cachecar-mongo ]] && ((hit < total)) &&
      grep -q 'marked down' "$WORK/$name.log" &&
      bad+="its tier was marked down after timeouts (see its log below; is the machine busy?); "
    cat "$out" >&2
    die "$scen/$name round $round: $bad(wrk output above)"
  fi

  local hitpct
  hitpct=$(awk -v h="$hit" -v t="$total" 'BEGIN {printf "%.1f", 100 * h / t}')
  local key="$scen|$name"
  RPS[$key]+="$rps " P50[$key]+="$p50 " P99[$key]+="$p99 " HITPCT[$key]+="$hitpct "
  ORIG[$key]+="$n_origin " PURGES[$key]+="$purges " PURGE_FAILED[$key]=$((${PURGE_FAILED[$key]:-0} + purge_failed))
  echo "$scen,$name,$round,$rps,$p50,$p99,$total,$non200,$hit,$miss,$none,$other,$tier_bad,$n_origin,$purges,$purge_failed" >>"$CSV"
  log "  $rps req/s, p50 $p50 ms, p99 $p99 ms; $total responses: hit $hit, miss $miss, other $other; origin $n_origin${purger:+; $purges purges}"
}

# validations NAME: the revalidations a cachecar instance answered with a 304.
validations() {
  curl -s "${ADMIN_OF[$1]}/metrics" |
    awk '/^cachecar_validations_total\{route="revalidated",outcome="not_modified"\}/ {n += $2} END {print n + 0}'
}

# servers_for SCENARIO: the servers measured in it (direct only for misses; purges only
# where the server can purge; revalidations on cachecar, whose every hit is one).
servers_for() {
  local s
  for s in "${SERVER_LIST[@]}"; do
    [[ $1 == purge ]] && ! can_purge "$s" && continue
    [[ $1 == reval && $s != cachecar-* ]] && continue
    echo "$s"
  done
  [[ $1 == miss ]] && echo direct
  return 0
}

LOAD_BEFORE=$(background_load)
((LOAD_BEFORE < 10)) ||
  log "WARNING: machine is ${LOAD_BEFORE}% busy before measuring (other processes); results will be noisy"
START_DATE=$(date '+%Y-%m-%d %H:%M:%S %Z')

# Each round runs every scenario on every server once; the server order is rotated by
# one per round so drift in machine speed does not always hit the same server.
for round in $(seq "$ROUNDS"); do
  for scen in "${SCEN_LIST[@]}"; do
    mapfile -t list < <(servers_for "$scen")
    n=${#list[@]}
    for ((i = 0; i < n; i++)); do
      run_one "$scen" "${list[(i + round - 1) % n]}" "$round"
    done
  done
done
LOAD_AFTER=$(background_load)

# ---------------------------------------------------------------- report
OUT=$ROOT/bench/out
cp "$CSV" "$OUT/latest.csv"

ratio() {  # ratio A B: A/B to two decimals, n/a when either is missing
  [[ -n $1 && -n $2 && $1 != n/a && $2 != n/a ]] || { echo "n/a"; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}
med() { [[ -n ${1// /} ]] && median "$1" || echo "n/a"; }
fmt_int() { [[ $1 == n/a ]] && echo n/a || printf "%.0f" "$1"; }

declare -A SCEN_TITLE=([hit1k]="hits, 1 KiB" [hit64k]="hits, 64 KiB" [mix]="90/10 hit/miss"
                       [miss]="misses only" [purge]="hits + purge every 100 ms"
                       [reval]="revalidated hits (304), 1 KiB")
versions() {
  local nv vv mv rv cv
  nv=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
  vv=$(varnishd -V 2>&1 | head -1 | sed 's/^varnishd (//; s/ revision.*//')
  mv=$(memcached -V 2>/dev/null)
  rv=$(redis-server --version | awk '{print $3}' | sed 's/^v=//')
  cv=$("$CACHECAR_BIN" --version 2>/dev/null | head -1 || true)
  echo "| cachecar | $cv, git $(git_rev), \`threads: 1\`, access log off (as the peers) |"
  echo "| nginx | $nv (proxy_cache; srcache+memc; origin) |"
  echo "| Varnish | $vv, \`-s malloc,1g -j none\` |"
  echo "| memcached | $mv, \`-t 1\` |"
  echo "| redis | $rv, \`--save \"\" --appendonly no\` |"
  echo "| MongoDB | \`$(basename "$MONGO_TEST_SERVER_BIN")\`: the project's wire-protocol test server, not MongoDB |"
}

{
  echo "# cachecar benchmark — $START_DATE"
  echo
  echo "One origin (nginx), every server in front of it on CPU $SERVER_CPU (with redis-server,"
  echo "memcached and the MongoDB test server), wrk on CPU $CLIENT_CPU:"
  echo "\`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency -s bench/check.lua\`, $ROUNDS round(s),"
  echo "server order rotated per round; medians over rounds. Every response was checked: all"
  echo "200; hit scenarios all HIT (cachecar: from the route's tier) with no origin request;"
  echo "misses are new keys and each reached the origin. Ratios are req/s over nginx"
  echo "proxy_cache's and Varnish's in the same scenario."
  echo
  echo "| scenario | server | req/s | p50 ms | p99 ms | × nginx | × Varnish | hit % | origin req/run | purges/run |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for scen in "${SCEN_LIST[@]}"; do
    mapfile -t list < <(servers_for "$scen")
    [[ $scen == purge ]] && want nginx && list+=(nginx)
    nx=$(med "${RPS[$scen|nginx]:-}")
    vx=$(med "${RPS[$scen|varnish]:-}")
    for name in "${list[@]}"; do
      key="$scen|$name"
      if [[ -z ${RPS[$key]:-} ]]; then
        echo "| ${SCEN_TITLE[$scen]} | ${LABEL[$name]} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a (cannot purge) |"
        continue
      fi
      r=$(med "${RPS[$key]}")
      hp=$(med "${HITPCT[$key]}"); hp=$(printf '%.1f' "$hp")
      [[ $name == direct ]] && hp="–"
      pg=$(fmt_int "$(med "${PURGES[$key]}")")
      ((${PURGE_FAILED[$key]:-0} == 0)) || pg+=" (${PURGE_FAILED[$key]} refused in all)"
      [[ $scen == purge ]] || pg="–"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${SCEN_TITLE[$scen]}" "${LABEL[$name]}" \
        "$(fmt_int "$r")" "$(med "${P50[$key]}")" "$(med "${P99[$key]}")" "$(ratio "$r" "$nx")" \
        "$(ratio "$r" "$vx")" "$hp" "$(fmt_int "$(med "${ORIG[$key]}")")" "$pg"
    done
  done
  echo
  echo "Purge: cachecar \`POST /purge {\"categories\":[\"videos\"]}\` on its admin port; Varnish"
  echo "\`BAN\` (a ban on the category's URLs); srcache+memcached: memcached \`flush_all\` (its only"
  echo "invalidation); nginx proxy_cache cannot purge without the commercial module (n/a)."
  echo "The MongoDB tier runs against the project's wire-protocol test server (linear scans,"
  echo "restarted empty before each cachecar-mongo run): its absolute numbers say little about"
  echo "a real mongod."
  echo
  if ((LOAD_BEFORE >= 10 || LOAD_AFTER >= 10)); then
    echo "> **Warning:** the machine was not idle (other processes used ${LOAD_BEFORE}% of all CPUs"
    echo "> before the runs, ${LOAD_AFTER}% after): absolute numbers are noisy; trust the ratios more."
    echo
  fi
  echo "| machine | |"
  echo "|---|---|"
  echo "| CPU | $(cpu_model) |"
  echo "| cores | $NCPU (servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU) |"
  echo "| kernel | $(uname -srm) |"
  echo "| date | $START_DATE |"
  versions
  echo "| background CPU load | ${LOAD_BEFORE}% before, ${LOAD_AFTER}% after (all CPUs, 1 s, servers idle) |"
} >"$OUT/latest.md"

# The plot: grouped bars of median req/s, one group per scenario, one bar per server.
plot_servers=("${SERVER_LIST[@]}")
[[ " ${SCEN_LIST[*]} " == *" miss "* ]] && plot_servers+=(direct)
{
  printf '"scenario"'
  for name in "${plot_servers[@]}"; do printf ' "%s"' "${LABEL[$name]}"; done
  echo
  for scen in "${SCEN_LIST[@]}"; do
    printf '"%s"' "${SCEN_TITLE[$scen]}"
    for name in "${plot_servers[@]}"; do
      v=${RPS[$scen|$name]:-}
      if [[ -n $v ]]; then printf ' %s' "$(median "$v")"; else printf ' -'; fi
    done
    echo
  done
} >"$WORK/plot.dat"
cp "$WORK/plot.dat" "$OUT/latest.dat"
gnuplot <<EOF || log "WARNING: gnuplot failed; no PNG"
set terminal pngcairo size 1400,700 font "sans,10" noenhanced
set output "$OUT/latest.png"
set title "cachecar benchmark, $START_DATE — median req/s (wrk -c$CONNECTIONS, ${DURATION}s x $ROUNDS)"
set datafile missing "-"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "req/s"
set yrange [0:*]
set grid ytics
set key outside right top vertical
plot for [i=2:$((${#plot_servers[@]} + 1))] "$WORK/plot.dat" using i:xtic(1) title columnheader(i)
EOF

cat "$OUT/latest.md"
log "written: $OUT/latest.md, $OUT/latest.csv, $OUT/latest.png"
