#!/usr/bin/env bash
# bench/stream.sh — what cachecar does not cache, measured against nginx proxy_pass and
# a direct connection in the same run (STYLE.md rule 10): pass-through downloads of
# 8 MiB and 1 GiB (throughput, time to first byte), the delay each Server-Sent Event
# gets, the WebSocket echo round trip, and the RSS of 200 slow readers of 1 GiB.
#
# Usage: bench/stream.sh [--build] [--quick]
#   env: ROUNDS=5 (runs per measurement and server, order rotated)  DURATION=10 (wrk s)
#        READERS=200 (slow readers)  READER_RATE=64k (curl --limit-rate of each)
#        CACHECAR_BIN=build-bench/cachecar  KEEP_TMP=1
# See bench/README.md ("stream.sh").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_TAG=stream
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
READERS=${READERS:-200}
READER_RATE=${READER_RATE:-64k}
BUILD=0
for arg in "$@"; do
  case $arg in
    --build) BUILD=1 ;;
    --quick) ROUNDS=1 DURATION=2 READERS=20 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

bench_install nginx:nginx-light wrk:wrk curl:curl taskset:util-linux cmake:cmake ninja:ninja-build
bench_cpus
bench_build "$BUILD"
bench_workdir

# ---------------------------------------------------------------- servers
# Origins on the client CPU: nginx serving two files from tmpfs (sendfile), and the
# stream tool (SSE, WebSocket echo). In front of them on the server CPU, one worker /
# I/O thread each: cachecar (two instances, one per origin: cachecar has one upstream)
# and nginx proxy_pass (two server blocks), both with keep-alive to their origin.
mkdir -p "$WORK/files" "$WORK/files-origin" "$WORK/proxy"
head -c $((8 << 20)) /dev/urandom >"$WORK/files/8m.bin"
head -c $((1 << 30)) /dev/zero >"$WORK/files/1g.bin"

free_port; FILES_PORT=$FREE_PORT
{
  nginx_common "$WORK/files-origin"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/files-origin")
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:$FILES_PORT;
    location /big/ { alias $WORK/files/; }
  }
}
EOF
} >"$WORK/files-origin/nginx.conf"
start_nginx files-origin "$CLIENT_CPU"; FILES_PID=$STARTED_PID
wait_http "http://127.0.0.1:$FILES_PORT/big/8m.bin" "$FILES_PID" files-origin

free_port; STREAM_PORT=$FREE_PORT
taskset -c "$CLIENT_CPU" "$STREAM_TOOL_BIN" origin "$STREAM_PORT" >"$WORK/stream-origin.log" 2>&1 &
STREAM_PID=$!; PIDS+=("$STREAM_PID")
wait_http "http://127.0.0.1:$STREAM_PORT/" "$STREAM_PID" stream-origin

cc_config() {
  cat <<EOF
server:
  listen: 127.0.0.1:@PORT@
  upstream: http://127.0.0.1:$1
  admin_listen: 127.0.0.1:@ADMIN@
  namespace: bench-stream
  threads: 1
logging:
  access_log: off
limits:
  tunnel_idle_timeout: 1h
routes: []
EOF
}
start_cachecar cachecar-files < <(cc_config "$FILES_PORT"); CCF_PID=$STARTED_PID; CCF_PORT=$STARTED_PORT
start_cachecar cachecar-stream < <(cc_config "$STREAM_PORT"); CCS_PID=$STARTED_PID; CCS_PORT=$STARTED_PORT

free_port; NXF_PORT=$FREE_PORT
free_port; NXS_PORT=$FREE_PORT
{
  nginx_common "$WORK/proxy"
  cat <<EOF
worker_processes 1;
http {
$(nginx_http_common "$WORK/proxy")
  access_log off;
  upstream files { server 127.0.0.1:$FILES_PORT; keepalive 16; }
  upstream stream { server 127.0.0.1:$STREAM_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$NXF_PORT;
    location / {
      proxy_pass http://files;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$NXS_PORT;
    location /sse {
      proxy_pass http://stream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
    location /ws {
      proxy_pass http://stream;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
    }
  }
}
EOF
} >"$WORK/proxy/nginx.conf"
start_nginx proxy "$SERVER_CPU"; NX_PID=$STARTED_PID
wait_http "http://127.0.0.1:$NXF_PORT/big/8m.bin" "$NX_PID" nginx-proxy
log "nginx proxy_pass: files :$NXF_PORT, stream :$NXS_PORT (pid $NX_PID, CPU $SERVER_CPU)"

NAMES=(direct nginx cachecar)
files_port() { case $1 in direct) echo "$FILES_PORT" ;; nginx) echo "$NXF_PORT" ;; cachecar) echo "$CCF_PORT" ;; esac; }
stream_port() { case $1 in direct) echo "$STREAM_PORT" ;; nginx) echo "$NXS_PORT" ;; cachecar) echo "$CCS_PORT" ;; esac; }
# rotated NAMES for round R
order() { local r=$1 i n=${#NAMES[@]}; for ((i = 0; i < n; i++)); do echo "${NAMES[(i + r) % n]}"; done; }

busy_before=$(background_load)
declare -A TTFB MBPS WRK SSE_MED SSE_P99 WS_MED WS_P99

# ---------------------------------------------------------------- downloads
# download NAME FILE BYTES: one curl through NAME; records MB/s.
download() {
  local name=$1 file=$2 bytes=$3 out code size speed
  out=$(taskset -c "$CLIENT_CPU" curl -s -o /dev/null --max-time 300 \
    -w '%{http_code} %{size_download} %{speed_download}' \
    "http://127.0.0.1:$(files_port "$name")/big/$file") || die "$name: download of $file failed"
  read -r code size speed <<<"$out"
  [[ $code == 200 && $size == "$bytes" ]] || die "$name: $file answered $code with $size bytes, wanted 200 and $bytes"
  MBPS[$name.$file]+=" $(awk -v s="$speed" 'BEGIN {printf "%.1f", s / 1048576}')"
}
for r in $(seq 0 $((ROUNDS - 1))); do
  for name in $(order "$r"); do
    for _ in 1 2 3 4; do download "$name" 8m.bin $((8 << 20)); done
    download "$name" 1g.bin $((1 << 30))
  done
done
log "downloads done"

# Time to first byte, on its own: the time until the response head arrives (curl
# --max-filesize stops there). During a download the client shares its CPU with the
# origin's sendfile burst, and its wake-up then waits on the scheduler (1-4 ms, for
# every proxy alike, and longer the faster the proxy drains the origin); so for this
# pass the origin moves to the server CPU and the client has its CPU to itself.
pin_origin() { local p; for p in "$FILES_PID" $(pgrep -P "$FILES_PID"); do taskset -pc "$1" "$p" >/dev/null; done; }
first_byte() {
  local name=$1 file=$2 out code ttfb rc=0
  out=$(taskset -c "$CLIENT_CPU" curl -s -o /dev/null --max-time 30 --max-filesize 1 \
    -w '%{http_code} %{time_starttransfer}' "http://127.0.0.1:$(files_port "$name")/big/$file") || rc=$?
  read -r code ttfb <<<"$out"
  [[ $rc == 63 && $code == 200 ]] || die "$name: $file: curl exit $rc, status $code (wanted 63: stopped after a 200 head)"
  TTFB[$name.$file]+=" $(awk -v t="$ttfb" 'BEGIN {printf "%.3f", t * 1000}')"
}
pin_origin "$SERVER_CPU"
for r in $(seq 0 $((ROUNDS - 1))); do
  for name in $(order "$r"); do
    for _ in $(seq 10); do first_byte "$name" 8m.bin; first_byte "$name" 1g.bin; done
  done
done
pin_origin "$CLIENT_CPU"
log "time to first byte done"

# 8 MiB bodies over 8 connections at once (wrk, Transfer/sec).
for r in $(seq 0 $((ROUNDS - 1))); do
  for name in $(order "$r"); do
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c8 -d"${DURATION}s" "http://127.0.0.1:$(files_port "$name")/big/8m.bin" 2>&1)
    grep -q "Non-2xx\|Socket errors" <<<"$out" && die "$name: wrk reported errors: $out"
    rate=$(awk '/^Transfer\/sec:/ {v = $2; u = v; sub(/[0-9.]+/, "", u); n = v + 0
      if (u == "GB") n *= 1024; else if (u == "KB") n /= 1024; printf "%.1f", n}' <<<"$out")
    WRK[$name]+=" $rate"
  done
done
log "concurrent downloads done"

# ---------------------------------------------------------------- SSE, WebSocket
for r in $(seq 0 $((ROUNDS - 1))); do
  for name in $(order "$r"); do
    out=$(taskset -c "$CLIENT_CPU" "$STREAM_TOOL_BIN" sse "$(stream_port "$name")" "/sse?n=200&ms=5" 200) ||
      die "$name: SSE stream failed"
    SSE_MED[$name]+=" $(sed 's/.*median_us=\([0-9.]*\).*/\1/' <<<"$out")"
    SSE_P99[$name]+=" $(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$out")"
    out=$(taskset -c "$CLIENT_CPU" "$STREAM_TOOL_BIN" ws "$(stream_port "$name")" /ws 5000 64) ||
      die "$name: WebSocket echo failed"
    WS_MED[$name]+=" $(sed 's/.*median_us=\([0-9.]*\).*/\1/' <<<"$out")"
    WS_P99[$name]+=" $(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$out")"
  done
done
log "SSE and WebSocket done"

# ---------------------------------------------------------------- slow readers
# READERS curls each read a 1 GiB response at READER_RATE; RSS of the proxy (nginx:
# master + worker) sampled every 0.2 s for 10 s once they all run.
rss_kib() { local p t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
nginx_pids() { echo "$NX_PID $(pgrep -P "$NX_PID" | tr '\n' ' ')"; }
declare -A RSS_IDLE RSS_PEAK
for name in nginx cachecar; do
  # shellcheck disable=SC2046
  pids=$([[ $name == nginx ]] && nginx_pids || echo "$CCF_PID")
  # shellcheck disable=SC2086
  RSS_IDLE[$name]=$(rss_kib $pids)
  readers=()
  for _ in $(seq "$READERS"); do
    taskset -c "$CLIENT_CPU" curl -s -o /dev/null --limit-rate "$READER_RATE" \
      "http://127.0.0.1:$(files_port "$name")/big/1g.bin" &
    readers+=($!)
  done
  sleep 3
  peak=0
  for _ in $(seq 50); do
    # shellcheck disable=SC2086
    now=$(rss_kib $pids); ((now > peak)) && peak=$now
    sleep 0.2
  done
  running=0
  for p in "${readers[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
  ((running == READERS)) || die "$name: only $running of $READERS slow readers still running"
  kill "${readers[@]}" 2>/dev/null || true
  wait "${readers[@]}" 2>/dev/null || true
  RSS_PEAK[$name]=$peak
  sleep 1
done
log "slow readers done"
busy_after=$(background_load)

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }'; }
date_s=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
report=$ROOT/bench/out/stream-$(date -u +%Y-%m-%d).md
{
  echo "# cachecar streaming benchmark — $date_s"
  echo
  echo "Proxies (cachecar, nginx proxy_pass; one worker / I/O thread each) on CPU $SERVER_CPU; origins"
  echo "(nginx with sendfile from tmpfs, bench/stream_tool) and clients on CPU $CLIENT_CPU. Medians over"
  echo "$ROUNDS round(s), servers rotated per round; every download checked for status and length,"
  echo "every event and echo for order and content. Ratios: cachecar over nginx (throughput: higher"
  echo "is better; times: lower is better)."
  echo
  echo "| measurement | direct | nginx proxy_pass | cachecar | cachecar / nginx |"
  echo "|---|---:|---:|---:|---:|"
  for f in 8m.bin 1g.bin; do
    label=$([[ $f == 8m.bin ]] && echo "8 MiB" || echo "1 GiB")
    d=$(median "${MBPS[direct.$f]}") n=$(median "${MBPS[nginx.$f]}") c=$(median "${MBPS[cachecar.$f]}")
    echo "| $label download, one connection (MiB/s) | $d | $n | $c | $(ratio "$c" "$n")× |"
    d=$(median "${TTFB[direct.$f]}") n=$(median "${TTFB[nginx.$f]}") c=$(median "${TTFB[cachecar.$f]}")
    echo "| $label download, time to first byte (ms; origin on the server CPU) | $d | $n | $c | $(ratio "$c" "$n")× |"
  done
  d=$(median "${WRK[direct]}") n=$(median "${WRK[nginx]}") c=$(median "${WRK[cachecar]}")
  echo "| 8 MiB downloads, 8 connections (MiB/s, wrk) | $d | $n | $c | $(ratio "$c" "$n")× |"
  d=$(median "${SSE_MED[direct]}") n=$(median "${SSE_MED[nginx]}") c=$(median "${SSE_MED[cachecar]}")
  echo "| SSE event delay, median (µs; 200 events 5 ms apart) | $d | $n | $c | $(ratio "$c" "$n")× |"
  d=$(median "${SSE_P99[direct]}") n=$(median "${SSE_P99[nginx]}") c=$(median "${SSE_P99[cachecar]}")
  echo "| SSE event delay, p99 (µs) | $d | $n | $c | $(ratio "$c" "$n")× |"
  d=$(median "${WS_MED[direct]}") n=$(median "${WS_MED[nginx]}") c=$(median "${WS_MED[cachecar]}")
  echo "| WebSocket echo round trip, median (µs; 5,000 × 64 B) | $d | $n | $c | $(ratio "$c" "$n")× |"
  d=$(median "${WS_P99[direct]}") n=$(median "${WS_P99[nginx]}") c=$(median "${WS_P99[cachecar]}")
  echo "| WebSocket echo round trip, p99 (µs) | $d | $n | $c | $(ratio "$c" "$n")× |"
  for name in nginx cachecar; do
    eval "${name}_rss=\"$(awk -v i="${RSS_IDLE[$name]}" -v p="${RSS_PEAK[$name]}" 'BEGIN {printf "%.1f → %.1f", i / 1024, p / 1024}')\""
  done
  echo "| RSS idle → peak with $READERS readers of 1 GiB at $READER_RATE/s (MiB) | – | $nginx_rss | $cachecar_rss | – |"
  echo
  echo "nginx runs with its defaults for downloads (\`proxy_buffering on\`: what the client does not"
  echo "take yet goes to a temp file, so its RSS stays low and its disk use grows) and"
  echo "\`proxy_buffering off\` for SSE. The SSE delay is the time from the origin writing an event to"
  echo "the client reading it (a shared monotonic clock); \"direct\" is the floor. Time to first byte"
  echo "is measured in a pass of its own, up to the response head (curl --max-filesize), with the"
  echo "origin moved to the server CPU: during a download the client shares its CPU with the"
  echo "origin's sendfile burst and waits on the scheduler (1-4 ms, for every proxy alike)."
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| CPU | $(cpu_model) |"
  echo "| kernel | $(uname -srm) |"
  echo "| cachecar | $("$CACHECAR_BIN" --version 2>/dev/null | head -1), git $(git_rev), \`threads: 1\`, access log off |"
  echo "| nginx | $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') |"
  echo "| other load | ${busy_before}% before, ${busy_after}% after (of all CPUs, servers idle) |"
} | tee "$report"
cp "$report" "$ROOT/bench/out/stream-latest.md"
log "report: $report"
