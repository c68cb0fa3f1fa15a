#!/usr/bin/env bash
# The `bench-storm` recipe: a resume storm on one node.
#
# One server with its own (durable) cluster under target/bench-data; the server and
# PostgreSQL on CPU $SERVER_CPU, the load tool on CPU $LOAD_CPU. synctalk-load storm
# opens SOCKETS sessions (PER_USER per user) at RATE per second, drops them all at once
# (the TCP connections just end, no close frame: every session stays resumable), waits
# until the server has recorded every drop, writes one missed USER_UPDATE per user (VIA
# sql: one INSERT of one outbox row per user topic, numbered by the relay; VIA patch: one
# PATCH /users/@me per user), waits until the relay has published them and the node has
# applied them, then has every session RESUME at once with its last s. Each must get
# exactly its user's missed event, with the next s, before RESUMED; the figure is the
# time from the start of the storm to the last RESUMED (target: under 20 s).
#   SOCKETS (19000) PER_USER (20) RATE (500) VIA (sql) TIMEOUT (120: per resume, s)
#   RETRIES (0: one attempt per resume; n: a resume whose connection fails, e.g. with
#            408 from a server too busy to read the request in time, tries again up to n
#            times after a jittered back-off, as a client would)
#   SERVER_BIN (a server binary to use instead of building this tree's; SERVER_REV: its commit)
#   QUIET (1: first wait, up to QUIET_WAIT s, until the machine is idle)
#   SLOW_MS (log statements slower than this many ms in target/bench-data/postgres.log)
# Results: bench/results/storm-<date>.json and a line in bench/results/summary.md.
# Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
SOCKETS=${SOCKETS:-19000}
PER_USER=${PER_USER:-20}
RATE=${RATE:-500}
VIA=${VIA:-sql}
TIMEOUT=${TIMEOUT:-120}
RETRIES=${RETRIES:-0}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
# The load tool and the server each hold SOCKETS sockets (under 20,000 open files here).
ulimit -n "$(ulimit -Hn)"

bin=target/release
. bench/lib.sh
build_binaries
data=target/bench-data
stamp=$(date -u +%Y%m%dT%H%M%SZ)
rm -rf "$data"
mkdir -p bench/results "$data"
server=""
cleanup() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
taskset -c "$SERVER_CPU" env MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-8} SYNCTALK_ENV=development \
  RATE_LIMIT_AUTH_PER_MINUTE=10000000 RATE_LIMIT_USER_PER_MINUTE=10000000 GATEWAY_CONNECTS_PER_MINUTE=10000000 \
  ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 DATABASE_POOL_SIZE=${POOL:-24} LOG_LEVEL=warn \
  ACCESS_TOKEN_TTL_SECS=7200 SYNCTALK_DATA_DIR="$data" \
  JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 \
  SYNCTALK_PORT="$port" "$server_bin" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$url/ready" >/dev/null || { echo "the server did not start:"; cat "$data/server.log"; exit 1; }
pin_postgres "$data"
echo "server pid $server, postmaster $postmaster (CPU $SERVER_CPU); load on CPU $LOAD_CPU"

if [ -n "${SLOW_MS:-}" ]; then
  PGPASSWORD=$(cat "$data/password") psql -h 127.0.0.1 -p "$(cat "$data/port")" -U synctalk -d synctalk -qAtX \
    -c "ALTER SYSTEM SET log_min_duration_statement = $SLOW_MS" -c "SELECT pg_reload_conf()" >/dev/null
fi
# On a shared machine: wait (bounded) until nothing else keeps the CPUs busy.
wait_quiet
out="bench/results/storm-$stamp.json"
status=0
taskset -c "$LOAD_CPU" "$bin/synctalk-load" storm --url "$url" --data-dir "$data" \
  --sockets "$SOCKETS" --per-user "$PER_USER" --rate "$RATE" --via "$VIA" --timeout "$TIMEOUT" --retries "$RETRIES" \
  --prefix "s$(echo "$stamp" | tr '[:upper:]' '[:lower:]')" --out "$out" >/dev/null || status=$?
[ -f "$out" ] || { echo "storm failed ($status); server log:"; tail -n 20 "$data/server.log"; exit 1; }

server_problems=$(grep -cE 'WARN|ERROR|panicked' "$data/server.log" || true)
pg_problems=$(grep -E 'ERROR|FATAL|PANIC' "$data/postgres.log" 2>/dev/null | grep -cvE 'terminating connection due to administrator command|canceling autovacuum task' || true)
python3 - "$out" "$stamp" "$server_problems" "$pg_problems" "$server_rev" <<'PY'
import json, sys
out, stamp, server_problems, pg_problems, commit = sys.argv[1:6]
r = json.load(open(out))
r["server_commit"] = commit
r["server_log_warnings_errors"], r["postgres_log_errors"] = int(server_problems), int(pg_problems)
json.dump(r, open(out, "w"), indent=2)
open(out, "a").write("\n")
sys.path.insert(0, "bench")
from summary import add_row  # noqa: E402

summary = "bench/results/summary.md"
head = """
## Resume storm

Written by `just bench-storm` (bench/storm.sh): every session on one node dropped at once
(no close frame), one missed USER_UPDATE per user, then every session resumes at once
with its last s. ok = RESUMED after exactly the missed event with the next s; lost /
duplicated count the missed event. last RESUMED s = from the start of the storm to the
last RESUMED (target < 20 s). PostgreSQL durable; server and PostgreSQL on CPU 0, load
tool on CPU 1.

| run (UTC) | commit | sessions | users | events via | drops recorded in s | ok | refused | failed | lost | duplicated | resume p50 ms | resume p99 ms | last RESUMED s | log warn/err | client retries allowed / used |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"""
f = lambda v: "-" if v is None else f"{v:.1f}"
row = (f"| {stamp} | {commit} | {r['sessions_up']}/{r['sockets_requested']} | {r['users']} | {r['events_via']} | "
       f"{f(r['drop_recorded_seconds'])} | {r['resumed_ok']}/{r['resumes']} | {r['refused']} | {r['failed']} | "
       f"{r['lost']} | {r['duplicated']} | {f(r['resume_ms']['p50'])} | {f(r['resume_ms']['p99'])} | "
       f"{f(r['last_resumed_seconds'])} | {server_problems} | {r['retry']['allowed']} / {r['retry']['retries']} |")
add_row(summary, head, row)
print(row)
PY
echo "results: $out; server log: $server_problems warning/error lines, postgres log: $pg_problems error lines"
exit "$status"
