#!/usr/bin/env bash
# Builds the Debian package in build-pkg/ and checks what an operator would get:
#   1. contents: exactly the expected files, owned by root, nothing from tests
#   2. control: name/version, Depends from dpkg-shlibdeps (+ adduser), conffiles,
#      executable postinst/prerm/postrm that pass `sh -n`
#   3. `systemd-analyze verify` of the packaged unit, unmodified, against the
#      extracted package (so /usr/bin/cachecar is checked to be where the unit says)
#   4. the packaged binary: --version matches the package, --check accepts the
#      packaged config
#   5. `systemd-analyze security` exposure of the unit (printed; FAIL above 3.0)
#   6. (strace present) a short run of the packaged binary uses only system calls
#      the unit's SystemCallFilter= allows
#   7. (root, dpkg, no cachecar installed or present) dpkg -i / -r / -P round trip:
#      user created, config kept on remove, removed on purge; everything this step
#      created is removed again. CACHECAR_PKG_INSTALL_TEST=0 skips it.
# Prints one PASS/FAIL/SKIP line per check; exits non-zero if any check failed.
# CACHECAR_PKG_JOBS sets the build parallelism (default 2).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

failures=0
pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
skip() { echo "SKIP: $*"; }
info() { echo "      $*"; }
indent() { sed "s/^/      ${1:-}/"; }

work=$(mktemp -d /tmp/cachecar-pkg.XXXXXX)
installed_by_us=0
user_created_by_us=0
cleanup() {
  if ((installed_by_us)); then dpkg -P cachecar >/dev/null 2>&1 || true; fi
  if ((user_created_by_us)); then
    userdel cachecar >/dev/null 2>&1 || true
    groupdel cachecar >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------
# The build a user makes (Release, -Werror as by default): GCC 12 at -O3 reports
# -Wstringop-overflow false positives in libstdc++'s string code that -O2 does not;
# the code avoids the shapes that trigger them (see route/pattern.cpp), and this step
# keeps it so.
echo "== building the package (build-pkg/)"
rm -f build-pkg/cachecar_*.deb
if ! {
  cmake -S . -B build-pkg -G Ninja -DCMAKE_BUILD_TYPE=Release -DCACHECAR_TESTS=OFF \
    -DCACHECAR_WERROR=ON >"$work/build.log" 2>&1 &&
    cmake --build build-pkg -j"${CACHECAR_PKG_JOBS:-2}" >>"$work/build.log" 2>&1 &&
    (cd build-pkg && cpack -G DEB) >>"$work/build.log" 2>&1
}; then
  tail -n 40 "$work/build.log"
  fail "build the package (log above)"
  exit 1
fi
debs=(build-pkg/cachecar_*.deb)
if [[ ${#debs[@]} -ne 1 || ! -f ${debs[0]} ]]; then
  fail "exactly one build-pkg/cachecar_*.deb (found: ${debs[*]})"
  exit 1
fi
deb=${debs[0]}
pass "built $deb ($(du -h "$deb" | cut -f1))"

# --- contents ------------------------------------------------------------------
expected_files="./etc/cachecar/cachecar.yaml
./lib/systemd/system/cachecar.service
./usr/bin/cachecar
./usr/share/doc/cachecar/README.md"
# Regular files only (directories vary with the generator); column 6 is the path.
actual_files=$(dpkg-deb -c "$deb" | awk '$1 ~ /^-/ {print $6}' | sort)
if [[ $actual_files == "$expected_files" ]]; then
  pass "contents: /usr/bin/cachecar, /etc/cachecar/cachecar.yaml, /lib/systemd/system/cachecar.service, doc; nothing else"
else
  fail "contents differ from the expected list"
  diff <(echo "$expected_files") <(echo "$actual_files") | indent
fi
if dpkg-deb -c "$deb" | awk '$2 != "root/root" {bad=1} END {exit bad}'; then
  pass "every entry is owned by root/root"
else
  fail "entries not owned by root/root:"
  dpkg-deb -c "$deb" | awk '$2 != "root/root"' | indent
fi
if dpkg-deb -c "$deb" | grep -E ' \./usr/bin/cachecar$' | grep -q '^-rwxr-xr-x'; then
  pass "/usr/bin/cachecar is mode 0755"
else
  fail "/usr/bin/cachecar is not mode 0755"
fi

# --- control -------------------------------------------------------------------
mkdir -p "$work/control"
dpkg-deb -e "$deb" "$work/control"
project_version=$(sed -nE 's/^project\(cachecar VERSION ([0-9.]+).*/\1/p' CMakeLists.txt)
pkg_name=$(dpkg-deb -f "$deb" Package)
pkg_version=$(dpkg-deb -f "$deb" Version)
depends=$(dpkg-deb -f "$deb" Depends)
if [[ $pkg_name == cachecar && $pkg_version == "$project_version" ]]; then
  pass "Package: $pkg_name, Version: $pkg_version (= project version)"
else
  fail "Package/Version are '$pkg_name' '$pkg_version'; expected cachecar $project_version"
fi
info "Depends: $depends"
# Every library the binary links directly must come from a package in Depends
# (by name, or by a virtual name it Provides, e.g. libspdlog1.10-fmt9).
depends_names=$(tr ',|' '\n' <<<"$depends" | sed -E 's/^ +//; s/[ (].*//' | sed '/^$/d')
missing_deps=()
while read -r soname; do
  path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64|x86_64|64bit/ {print $NF; exit}')
  [[ -n $path ]] || path=$(ldconfig -p | awk -v s="$soname" '$1 == s {print $NF; exit}')
  # dpkg knows a file by the path its package ships, which on merged-/usr may be
  # the /lib or the /usr/lib spelling, the symlink or its target.
  real=$(readlink -f "$path")
  owner=
  for p in "$path" "$real" "${real#/usr}" "/usr${path}"; do
    owner=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1)
    [[ -z $owner ]] || break
  done
  if [[ -z $owner ]]; then
    missing_deps+=("$soname(no owning package)")
  else
    provides=$(dpkg-query -W -f='${Provides}' "$owner" 2>/dev/null | tr ',' '\n' | sed -E 's/^ +//; s/[ (].*//')
    if ! grep -Fxq -f <(printf '%s\n' "$owner" "$provides" | sed '/^$/d') <<<"$depends_names"; then
      missing_deps+=("$soname($owner)")
    fi
  fi
done < <(objdump -p build-pkg/cachecar | awk '$1 == "NEEDED" {print $2}')
if ((${#missing_deps[@]} == 0)) && grep -Fxq adduser <<<"$depends_names"; then
  pass "Depends covers every NEEDED library of the binary, and adduser"
else
  fail "Depends lacks: ${missing_deps[*]} $(grep -Fxq adduser <<<"$depends_names" || echo adduser)"
fi
if [[ $(cat "$work/control/conffiles" 2>/dev/null) == /etc/cachecar/cachecar.yaml ]]; then
  pass "conffiles lists /etc/cachecar/cachecar.yaml"
else
  fail "conffiles is not exactly /etc/cachecar/cachecar.yaml: $(cat "$work/control/conffiles" 2>&1)"
fi
for script in postinst prerm postrm; do
  f=$work/control/$script
  if [[ -x $f ]] && sh -n "$f" && cmp -s "$f" "systemd/debian/$script"; then
    pass "maintainer script $script: present, executable, = systemd/debian/$script, sh -n ok"
  else
    fail "maintainer script $script missing, not executable, stale or not valid sh"
  fi
done

# --- unit: systemd-analyze verify -------------------------------------------------
# verify resolves every path the unit names (ExecStart= binaries, the units it
# orders against) inside --root, and exits 0 on mere warnings such as an unknown
# key. So the root is the extracted package, plus the host's unit files (for
# network-online.target, sysinit.target, ...) and /bin/kill (ExecReload=), and
# any output that mentions cachecar counts as a failure.
root=$work/root
dpkg-deb -x "$deb" "$root"
mkdir -p "$root/usr/lib/systemd/system" "$root/bin"
for d in /lib/systemd/system /usr/lib/systemd/system; do
  [[ -d $d ]] && cp -rn "$d/." "$root/usr/lib/systemd/system/" 2>/dev/null
done
cp "$(type -P kill)" "$root/bin/kill"
unit=$root/lib/systemd/system/cachecar.service
if ! command -v systemd-analyze >/dev/null; then
  fail "systemd-analyze not found"
else
  verify_out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --root="$root" cachecar.service 2>&1)
  verify_rc=$?
  if ((verify_rc == 0)) && ! grep -qi cachecar <<<"$verify_out"; then
    pass "systemd-analyze verify ($(systemd-analyze --version | head -n1 | cut -d' ' -f1-2)) of the packaged unit"
    [[ -z $verify_out ]] || indent "(other units) " <<<"$verify_out"
  else
    fail "systemd-analyze verify (rc=$verify_rc):"
    indent <<<"$verify_out"
  fi

  # --- unit: exposure score ---------------------------------------------------------
  security_out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=yes --root="$root" cachecar.service 2>&1)
  score=$(sed -nE 's/.*Overall exposure level for cachecar\.service: ([0-9.]+).*/\1/p' <<<"$security_out")
  if [[ -z $score ]]; then
    fail "systemd-analyze security gave no score:"
    indent <<<"$security_out"
  elif awk -v s="$score" 'BEGIN {exit !(s <= 3.0)}'; then
    pass "systemd-analyze security: exposure $score (fails above 3.0)"
    grep '✗' <<<"$security_out" | sed -E 's/ +/ /g; s/^/      not set: /'
  else
    fail "systemd-analyze security: exposure $score is above 3.0"
    grep '✗' <<<"$security_out" | indent
  fi
fi

# --- packaged binary ------------------------------------------------------------------
bin=$root/usr/bin/cachecar
conf=$root/etc/cachecar/cachecar.yaml
version_out=$("$bin" --version 2>&1)
if [[ $version_out == "cachecar $pkg_version" ]]; then
  pass "packaged binary --version: $version_out"
else
  fail "packaged binary --version printed '$version_out', expected 'cachecar $pkg_version'"
fi
if check_out=$("$bin" --check -c "$conf" 2>&1); then
  pass "packaged binary --check accepts the packaged config: $check_out"
else
  fail "packaged binary --check rejects the packaged config:"
  indent <<<"$check_out"
fi

# --- system calls against SystemCallFilter= -----------------------------------------
# There is no systemd to run the unit under here; the closest evidence that its
# seccomp filter fits is to trace what the binary calls while it starts, serves,
# reloads and drains, and compare with the sets the unit allows and denies.
expand_syscalls() {
  local item
  for item in "$@"; do
    case $item in
    @*)
      systemd-analyze syscall-filter "$item" | awk '/^    [^#]/ {print $1}' | while read -r s; do
        expand_syscalls "$s"
      done
      ;;
    *) echo "$item" ;;
    esac
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if ! command -v strace >/dev/null || ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
  skip "system-call check (needs strace, curl, python3)"
else
  # shellcheck disable=SC2207 # word splitting of the filter lists is intended
  allow=($(sed -nE 's/^SystemCallFilter=([^~].*)/\1/p' "$unit"))
  # shellcheck disable=SC2207
  deny=($(sed -nE 's/^SystemCallFilter=~(.*)/\1/p' "$unit"))
  expand_syscalls "${allow[@]}" | sort -u >"$work/allowed"
  expand_syscalls "${deny[@]}" | sort -u >"$work/denied"
  listen_port=$(free_port) admin_port=$(free_port) dead_port=$(free_port)
  cat >"$work/strace.yaml" <<EOF
server:
  listen: 127.0.0.1:$listen_port
  upstream: http://127.0.0.1:$dead_port
  admin_listen: 127.0.0.1:$admin_port
  namespace: pkgcheck
  threads: 2
tiers:
  memory: { max_bytes: 16MiB }
routes:
  - name: all
    match: GET /
    tiers: [memory]
    ttl: 1m
EOF
  strace -f -qq -o "$work/trace" "$bin" -c "$work/strace.yaml" >"$work/strace-run.log" 2>&1 &
  tracer=$!
  up=0
  for _ in $(seq 50); do
    curl -fs -o /dev/null "http://127.0.0.1:$admin_port/health" && up=1 && break
    sleep 0.2
  done
  child=$(pgrep -P "$tracer" | head -n1)
  if ((up)) && [[ -n $child ]]; then
    curl -s -o /dev/null "http://127.0.0.1:$listen_port/" # upstream refuses: a 502 path
    kill -HUP "$child"
    sleep 0.5
    curl -fs -o /dev/null "http://127.0.0.1:$admin_port/health"
    kill -TERM "$child"
  else
    kill "$tracer" 2>/dev/null
  fi
  wait "$tracer"
  sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$work/trace" | sort -u >"$work/used"
  not_allowed=$(comm -23 "$work/used" "$work/allowed" | tr '\n' ' ')
  denied=$(comm -12 "$work/used" "$work/denied" | tr '\n' ' ')
  if ((!up)); then
    fail "system-call check: the packaged binary did not come up under strace:"
    tail -n 20 "$work/strace-run.log" | indent
  elif [[ -z $not_allowed && -z $denied ]]; then
    pass "system-call check: all $(wc -l <"$work/used") system calls of a start/serve/reload/drain run are in SystemCallFilter=${allow[*]} and not in ~${deny[*]}"
  else
    fail "system-call check: outside the allow list: [${not_allowed}] denied: [${denied}]"
  fi
fi

# --- install / remove / purge round trip -----------------------------------------------
if [[ ${CACHECAR_PKG_INSTALL_TEST:-1} == 0 ]]; then
  skip "dpkg round trip (CACHECAR_PKG_INSTALL_TEST=0)"
elif [[ $(id -u) -ne 0 ]] || ! command -v dpkg >/dev/null; then
  skip "dpkg round trip (needs root and dpkg)"
elif dpkg-query -W -f='${Status}' cachecar 2>/dev/null | grep -qv 'not-installed'; then
  skip "dpkg round trip (a cachecar package is already on this machine; left alone)"
elif getent passwd cachecar >/dev/null || getent group cachecar >/dev/null || [[ -e /etc/cachecar ]]; then
  skip "dpkg round trip (a cachecar user/group or /etc/cachecar already exists; left alone)"
else
  installed_by_us=1
  user_created_by_us=1
  if ! install_out=$(dpkg -i "$deb" </dev/null 2>&1); then
    fail "dpkg -i:"
    indent <<<"$install_out"
  else
    pass "dpkg -i $deb"
    # Checked before anything else, so a later failure cannot hide it.
    home=$(getent passwd cachecar | cut -d: -f6)
    shell=$(getent passwd cachecar | cut -d: -f7)
    uid=$(id -u cachecar 2>/dev/null)
    if [[ -n $uid ]] && ((uid < 1000)) && [[ $home == /nonexistent && ! -e /nonexistent ]] &&
      [[ $(id -gn cachecar) == cachecar && $shell == */nologin ]]; then
      pass "postinst created system user cachecar (uid $uid, group cachecar, home /nonexistent, nologin)"
    else
      fail "cachecar user: uid='$uid' home='$home' shell='$shell' group='$(id -gn cachecar 2>&1)'"
    fi
    if /usr/bin/cachecar --check -c /etc/cachecar/cachecar.yaml >/dev/null 2>&1 &&
      setpriv --reuid=cachecar --regid=cachecar --clear-groups \
        /usr/bin/cachecar --check -c /etc/cachecar/cachecar.yaml >/dev/null 2>&1; then
      pass "installed config passes --check, also as user cachecar (what ExecStartPre= runs)"
    else
      fail "installed /usr/bin/cachecar --check -c /etc/cachecar/cachecar.yaml fails (as root or as cachecar)"
    fi
    echo "# edited by check-package.sh" >>/etc/cachecar/cachecar.yaml
    if dpkg -i "$deb" </dev/null >/dev/null 2>&1 && grep -q 'edited by check-package.sh' /etc/cachecar/cachecar.yaml; then
      pass "reinstall over an edited config keeps the edit"
    else
      fail "reinstall lost the edited config (or failed)"
    fi
    if dpkg -r cachecar </dev/null >/dev/null 2>&1 && [[ ! -e /usr/bin/cachecar && ! -e /lib/systemd/system/cachecar.service ]] &&
      grep -q 'edited by check-package.sh' /etc/cachecar/cachecar.yaml 2>/dev/null; then
      pass "dpkg -r removes binary and unit, keeps the edited /etc/cachecar/cachecar.yaml"
    else
      fail "dpkg -r: binary/unit left behind or edited config lost"
    fi
    if dpkg -P cachecar </dev/null >/dev/null 2>&1 && [[ ! -e /etc/cachecar ]] && getent passwd cachecar >/dev/null; then
      pass "dpkg -P removes /etc/cachecar; the cachecar user stays (Debian practice)"
    else
      fail "dpkg -P: /etc/cachecar left behind, or the user was removed"
    fi
  fi
fi

echo
if ((failures)); then
  echo "check-package: $failures check(s) FAILED"
  exit 1
fi
echo "check-package: all checks passed"
