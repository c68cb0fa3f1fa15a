# Shared by the bench scripts (sourced, from the repository's root).

# Builds the load tool and, unless SERVER_BIN names a server binary, the server: each in
# a cargo invocation of its own. Built together, cargo unifies their features and the
# server carries the load tool's (awc turns on actix-http's HTTP/2, which makes every
# connection's state larger: 12.8 instead of 11.3 KiB per idle socket). Sets server_bin
# and server_rev.
build_binaries() {
  cargo build --release -q -p synctalk-load
  if [ -n "${SERVER_BIN:-}" ]; then
    server_bin=$SERVER_BIN
    server_rev=${SERVER_REV:-unknown}
  else
    cargo build --release -q -p synctalk-app
    server_bin=target/release/synctalk
    server_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- crates migrations vendor Cargo.toml Cargo.lock 2>/dev/null || server_rev="$server_rev+changes"
  fi
}

# Pins the PostgreSQL cluster under $1 (a data dir with postgres/postmaster.pid) to CPU
# $SERVER_CPU: the postmaster and every process it has now (later backends inherit).
# Sets postmaster (its pid).
pin_postgres() {
  local p
  postmaster=$(head -n1 "$1/postgres/postmaster.pid")
  for p in "$postmaster" $(pgrep -P "$postmaster" || true); do
    taskset -a -p -c "$SERVER_CPU" "$p" >/dev/null
  done
}

# On a shared machine: wait (up to QUIET_WAIT s, 900) until nothing else keeps the CPUs
# busy; QUIET=0 skips it.
wait_quiet() {
  [ "${QUIET:-1}" = 1 ] || return 0
  python3 - "${QUIET_WAIT:-900}" <<'PY'
import sys, time
def snap():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v), v[3] + v[4]
deadline, quiet, busy = time.time() + float(sys.argv[1]), 0, 1.0
while time.time() < deadline:
    a = snap(); time.sleep(1); b = snap()
    busy = 1 - (b[1] - a[1]) / max(1, b[0] - a[0])
    quiet = quiet + 1 if busy < 0.10 else 0
    if quiet >= 5:
        sys.exit(0)
print(f"  (the machine is still busy: {busy:.0%}; running anyway)", file=sys.stderr)
PY
}

# perf_summary DATA OUT TITLE: self time by process and object, then by symbol, of the
# `perf record` file DATA, written to OUT under the line TITLE.
perf_summary() {
  local data=$1 out=$2 title=$3
  # (Each report read whole into a file first: `head` closing a pipe would fail the run.)
  perf report -i "$data" --no-children --sort comm,dso --stdio >"$data.dso" 2>/dev/null || true
  perf report -i "$data" --no-children --sort comm,dso,sym --stdio >"$data.sym" 2>/dev/null || true
  { echo "# $title"
    echo "# self time by process and object"
    grep -vE '^#|^$' "$data.dso" | sed -n 1,25p
    echo "# self time by process, object and symbol"
    grep -vE '^#|^$' "$data.sym" | sed -n 1,100p
  } >"$out"
}
