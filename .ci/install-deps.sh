#!/usr/bin/env bash
# Installs everything cachecar needs to build, test and benchmark on Debian 12
# (the sanitizer runtimes come with gcc: libasan8, libubsan1, liblsan0, libtsan2).
# Idempotent: skips apt entirely when every package is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-all-dev libboost-json1.81-dev libboost-url1.81-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libssl-dev zlib1g-dev
  libhiredis-dev libmongoc-dev libbson-dev libsystemd-dev
  libgtest-dev libgmock-dev
  redis-server curl strace
  nginx-light wrk  # bench/soak.sh: the origin and the load generator
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
