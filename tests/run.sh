#!/usr/bin/env bash
# Installs dependencies, builds cachecar with warnings as errors, and runs the whole
# test suite (unit + integration). This is the README's test command and what CI runs.
#   BUILD_DIR   build directory (default: build)
#   CTEST_ARGS  extra ctest arguments, e.g. "-L unit"
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-deps.sh

BUILD_DIR=${BUILD_DIR:-build}
# Tests ON explicitly: the README run command configures the same dir with them OFF.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCACHECAR_WERROR=ON -DCACHECAR_TESTS=ON
cmake --build "$BUILD_DIR" -j2
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j2 --timeout 300 ${CTEST_ARGS:-}
