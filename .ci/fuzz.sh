#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang + ASan/UBSan in build-fuzz/,
# replays every committed regression input, then fuzzes each target for a bounded
# time starting from its seed corpus. Exits non-zero if a regression input or a
# fuzzing run fails, naming the input that did it.
#
#   .ci/fuzz.sh                    # 60 s per target (CI)
#   .ci/fuzz.sh --seconds 3600     # or FUZZ_SECONDS=3600
#   .ci/fuzz.sh --target fuzz_config --seconds 600
#   .ci/fuzz.sh --replay-only      # build and replay regressions, no fuzzing
#
# Environment: FUZZ_SECONDS (60), FUZZ_JOBS (build parallelism, default nproc),
# FUZZ_OUT (scratch corpora, logs and artifacts; default build-fuzz/fuzz-out).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-$(nproc)}"
out="${FUZZ_OUT:-build-fuzz/fuzz-out}"
replay_only=0
targets=(fuzz_request fuzz_config fuzz_templates fuzz_entry_codec)
only=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --target) only+=("$2"); shift 2 ;;
    --replay-only) replay_only=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
((${#only[@]})) && targets=("${only[@]}")

# Compiler and libFuzzer runtime (clang's -fsanitize=fuzzer lives in libclang-rt-14-dev).
need=()
command -v clang++ >/dev/null || need+=(clang)
dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed" || need+=(libclang-rt-14-dev)
if ((${#need[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
bash .ci/install-deps.sh  # the project's own libraries; a no-op when present

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCACHECAR_FUZZ=ON -DCACHECAR_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}"

failed=()
mkdir -p "$out"

# 1. Regressions: every input that once crashed a target must now run clean.
for t in "${targets[@]}"; do
  dir="tests/fuzz/regressions/$t"
  mapfile -t inputs < <(find "$dir" -type f ! -name .gitkeep 2>/dev/null | sort)
  ((${#inputs[@]})) || continue
  echo "== $t: replaying ${#inputs[@]} regression input(s)"
  if ! "build-fuzz/tests/fuzz/$t" -timeout=5 -rss_limit_mb=2048 "${inputs[@]}" >"$out/$t.replay.log" 2>&1; then
    tail -n 30 "$out/$t.replay.log"
    echo "FAIL: $t regression replay (log: $out/$t.replay.log)"
    failed+=("$t (regression replay)")
  fi
done

# 2. Fuzzing, from a scratch copy of the seed corpus (the committed one stays small).
if ((replay_only == 0)); then
  for t in "${targets[@]}"; do
    corpus="$out/$t.corpus"
    artifacts="$out/$t.artifacts/"
    rm -rf "$corpus" "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    cp tests/fuzz/corpus/"$t"/* "$corpus"/
    extra=()
    case "$t" in
      fuzz_request) extra=(-dict=tests/fuzz/http.dict -max_len=8192) ;;
      fuzz_config) extra=(-dict=tests/fuzz/yaml.dict -max_len=8192) ;;
    esac
    echo "== $t: fuzzing for ${seconds}s"
    if "build-fuzz/tests/fuzz/$t" "$corpus" "${extra[@]}" -max_total_time="$seconds" -timeout=5 \
         -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" >"$out/$t.log" 2>&1; then
      grep -E '^#[0-9]+.*(DONE|pulse)' "$out/$t.log" | tail -n 1 || true
    else
      tail -n 40 "$out/$t.log"
      for a in "$artifacts"*; do [[ -e "$a" ]] && echo "FAIL: $t: crashing input $a"; done
      failed+=("$t")
    fi
  done
fi

if ((${#failed[@]})); then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: all targets clean"
