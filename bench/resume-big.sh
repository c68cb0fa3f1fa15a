#!/usr/bin/env bash
# The `bench-resume-big` recipe: sessions that were away while the outbox grew by a
# million rows resume, and how long RESUME -> RESUMED takes.
#
# One server with its own (durable) cluster under target/bench-data-resume; the server and
# PostgreSQL on CPU $SERVER_CPU, the load tool on CPU $LOAD_CPU. synctalk-load resume-big
# opens SESSIONS sessions for one user and drops them (no close frame), appends ROWS
# outbox rows for other users' topics on the same database (port and password from the
# data dir) and EVENTS profile updates for the user, waits until the relay has published
# it all and the node has applied it, then resumes each session once from seq 0 and checks
# it got exactly the EVENTS USER_UPDATEs, s 1..EVENTS, before RESUMED.
#   ROWS (1000000) SESSIONS (40) EVENTS (5)
#   VACUUM_AFTER (20: VACUUM (ANALYZE) the outbox after that many resumes, so the first
#            ones see it as just published, the rest as after autovacuum; empty: never)
#   PREPUBLISHED (0: the relay numbers the rows; 1: they are appended already numbered)
#   SERVER_BIN (a server binary to use instead of building this tree's; SERVER_REV: its commit)
#   QUIET (1: first wait, up to QUIET_WAIT s, until the machine is idle)
#   SLOW_MS (log statements slower than this many ms, and every autovacuum, in
#            target/bench-data-resume/postgres.log)
# Results: bench/results/resume-big-<date>.json and a line in bench/results/summary.md.
# Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
SESSIONS=${SESSIONS:-40}
VACUUM_AFTER=${VACUUM_AFTER-20}
EVENTS=${EVENTS:-5}
PREPUBLISHED=${PREPUBLISHED:-0}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

bin=target/release
. bench/lib.sh
build_binaries
data=${DATA_DIR:-target/bench-data-resume}
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
  ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 DATABASE_POOL_SIZE=24 LOG_LEVEL=warn \
  SYNCTALK_DATA_DIR="$data" JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 \
  SYNCTALK_PORT="$port" "$server_bin" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$url/ready" >/dev/null || { echo "the server did not start:"; cat "$data/server.log"; exit 1; }
pin_postgres "$data"

# SLOW_MS: log every statement slower than this to target/bench-data-resume/postgres.log.
if [ -n "${SLOW_MS:-}" ]; then
  PGPASSWORD=$(cat "$data/password") psql -h 127.0.0.1 -p "$(cat "$data/port")" -U synctalk -d synctalk -qAtX \
    -c "ALTER SYSTEM SET log_min_duration_statement = $SLOW_MS" \
    -c "ALTER SYSTEM SET log_autovacuum_min_duration = 0" -c "SELECT pg_reload_conf()" >/dev/null
fi
# On a shared machine: wait (bounded) until nothing else keeps the CPUs busy.
wait_quiet
extra=()
[ "$PREPUBLISHED" = 1 ] && extra+=(--prepublished)
[ -n "$VACUUM_AFTER" ] && extra+=(--vacuum-after "$VACUUM_AFTER")
out="bench/results/resume-big-$stamp.json"
status=0
taskset -c "$LOAD_CPU" "$bin/synctalk-load" resume-big --url "$url" --data-dir "$data" \
  --rows "$ROWS" --sessions "$SESSIONS" --events "$EVENTS" \
  --prefix "r$(echo "$stamp" | tr '[:upper:]' '[:lower:]')" "${extra[@]}" --out "$out" >/dev/null || status=$?
[ -f "$out" ] || { echo "resume-big failed ($status); server log:"; tail -n 20 "$data/server.log"; exit 1; }

server_problems=$(grep -cE 'WARN|ERROR|panicked' "$data/server.log" || true)
# (Not counted: the connections ended when the server stops PostgreSQL, and the
# autovacuum a VACUUM of the bench cancels.)
pg_problems=$(grep -E 'ERROR|FATAL|PANIC' "$data/postgres.log" | grep -cvE 'terminating connection due to administrator command|canceling autovacuum task' || true)
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
## Resume over a big outbox

Written by `just bench-resume-big` (bench/resume-big.sh): sessions dropped (no close
frame) while the outbox grew by the rows below, plus a few events for their user; each is
then resumed once from seq 0. resume ms = RESUME sent to RESUMED received (HELLO already
read); ok = got exactly the user's events, s 1..n, before RESUMED. "As published": right
after the relay numbered the rows (each still has a dead version until vacuum); "after
VACUUM": the rest of the sessions, after `VACUUM (ANALYZE) outbox`. PostgreSQL durable;
server and PostgreSQL on CPU 0, load tool on CPU 1.

| run (UTC) | commit | rows appended | numbered by | outbox rows | events | resumes ok | p50 ms | p99 ms | max ms | as published p50 / p99 ms | after VACUUM p50 / p99 ms | relay published in s |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"""
f = lambda v: "-" if v is None else f"{v:.1f}"
def phase(key):
    p = r.get(key)
    return f"{f(p['p50'])} / {f(p['p99'])}" if p and p.get("count") else "-"
ok = r["sessions"] - r["failures"]
who = "bench (pre-numbered)" if r["prepublished"] else "relay"
row = (f"| {stamp} | {commit} | {r['rows_appended']} | {who} | {r['outbox_rows']} | {r['events']} | {ok}/{r['sessions']} | "
      f"{f(r['resume_ms']['p50'])} | {f(r['resume_ms']['p99'])} | {f(r['resume_ms']['max'])} | "
      f"{phase('resume_ms_before_vacuum')} | {phase('resume_ms_after_vacuum')} | {f(r['relay_published_seconds'])} |")
add_row(summary, head, row)
print(row)
PY
echo "results: $out; server log: $server_problems warning/error lines, postgres log: $pg_problems error lines"
exit "$status"
