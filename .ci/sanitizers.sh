#!/usr/bin/env bash
# Sanitizer CI jobs (issue #8): builds cachecar with a sanitizer in its own build dir
# and runs the test suite under it. The suites start their own servers exactly as in
# the normal run (the redis harness spawns redis-server on a free port; the mongo
# tests use the in-process wire-protocol test server).
#
#   .ci/sanitizers.sh asan   ASan + UBSan (+ LeakSanitizer), build-asan/, whole suite
#   .ci/sanitizers.sh tsan   ThreadSanitizer, build-tsan/, labels integration|redis|mongo
#
#   env: SANITIZER_JOBS=2 (build and ctest parallelism)
#        CTEST_ARGS       extra ctest arguments, e.g. "-R Proxy"
#        TSAN_LABELS      ctest label regex for tsan (default integration|redis|mongo)
#
# Debug + -O1: asserts stay on, frames stay readable, and -O1 keeps the instrumented
# suite fast enough for CI. CACHECAR_WERROR=OFF: the sanitizer builds get warnings
# the normal build does not, all in library headers -- with -fsanitize=thread GCC 12
# warns "atomic_thread_fence is not supported with -fsanitize=thread" [-Wtsan] from
# libstdc++'s <atomic> for every TU that includes Asio (~900 times); with
# -fsanitize=address,undefined at -O1 a -Wmaybe-uninitialized inside
# boost::system::result's variant2 storage. The RelWithDebInfo test build in
# tests/run.sh still fails on real warnings, so nothing is lost.
# Suppressions live in .ci/sanitizers/; each entry says why it is not cachecar's bug.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-}
jobs=${SANITIZER_JOBS:-2}
supp=$PWD/.ci/sanitizers

bash .ci/install-deps.sh

case $kind in
  asan)
    dir=build-asan
    flags="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
    targets=()     # everything: the whole suite runs
    labels=""
    # detect_leaks=1: leaks fail the job; third-party one-time initialisations are
    # suppressed in lsan.supp. abort_on_error=0/exitcode: ctest sees a plain failure
    # with the report in the test output.
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:check_initialization_order=1:print_stacktrace=1"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
    ;;
  tsan)
    dir=build-tsan
    flags="-O1 -fsanitize=thread -fno-omit-frame-pointer"
    # Only what the labelled suites need (cachecar itself: the lifecycle tests run it).
    targets=(--target cachecar cachecar_integration_tests cachecar_redis_tests cachecar_mongo_tests)
    labels=${TSAN_LABELS:-integration|redis|mongo}
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$supp/tsan.supp:print_suppressions=0"
    ;;
  *)
    echo "usage: $0 asan|tsan" >&2
    exit 2
    ;;
esac

start=$SECONDS
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCACHECAR_WERROR=OFF -DCACHECAR_TESTS=ON \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="${flags#-O1 }"
cmake --build "$dir" -j"$jobs" "${targets[@]}"
echo "== $kind: build took $((SECONDS - start)) s"

# TSan maps its shadow at fixed addresses; with a large vm.mmap_rnd_bits (some 6.x
# kernels default to 32) the runtime aborts with "FATAL: ThreadSanitizer: unexpected
# memory mapping". Running without address randomisation (setarch -R, inherited by
# every child the tests spawn) avoids that without touching the machine's sysctl.
runner=()
if [[ $kind == tsan ]] && command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
  runner=(setarch "$(uname -m)" -R)
fi

start=$SECONDS
label_args=()
[[ -z $labels ]] || label_args=(-L "$labels")
rc=0
# shellcheck disable=SC2086
"${runner[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$jobs" --timeout 600 \
  "${label_args[@]}" ${CTEST_ARGS:-} || rc=$?
echo "== $kind: tests took $((SECONDS - start)) s (ctest exit $rc)"
exit "$rc"
