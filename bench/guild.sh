#!/usr/bin/env bash
# The `bench-guild` recipe: a guild of MEMBERS members on one node.
#
# One server with its own (durable) cluster under target/bench-data-guild; the server and
# PostgreSQL on CPU $SERVER_CPU, the load tool on CPU $LOAD_CPU. synctalk-load guild
# registers MEMBERS + EXTRA users; the first makes a guild, the other MEMBERS-1 join by
# invite; each member opens a socket on /gateway/guilds. Then, one request at a time:
# PAGES pages of 100 members, EXTRA joins by invite, and EXTRA kicks of those, each kick
# followed until every member socket has its GUILD_MEMBER_REMOVE. Targets: page, join
# and kick each under 10 ms at p99; every kick's event at every socket. Each join and
# kick is timed alone: the next starts once its event reached every member socket.
#   MEMBERS (10000) EXTRA (200) PAGES (500) RATE (1000 sockets/s) CONCURRENCY (32)
#   SETTLE (10 s between the last socket up and the first measured request)
#   GAP_MS (100: after a join's or kick's event reached every socket, before the next)
#   SERVER_BIN (a server binary to use instead of building this tree's; SERVER_REV: its commit)
#   QUIET (1: first wait, up to QUIET_WAIT s, until the machine is idle)
# Results: bench/results/guild-<date>.json and a line in bench/results/summary.md.
# Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${MEMBERS:-10000}
EXTRA=${EXTRA:-200}
PAGES=${PAGES:-500}
RATE=${RATE:-1000}
CONCURRENCY=${CONCURRENCY:-32}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
# The load tool and the server each hold MEMBERS sockets (under 20,000 open files here).
ulimit -n "$(ulimit -Hn)"

bin=target/release
. bench/lib.sh
build_binaries
data=target/bench-data-guild
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
wait_quiet
out="bench/results/guild-$stamp.json"
status=0
taskset -c "$LOAD_CPU" "$bin/synctalk-load" guild --url "$url" --members "$MEMBERS" --extra "$EXTRA" \
  --pages "$PAGES" --settle "${SETTLE:-10}" --gap-ms "${GAP_MS:-100}" --rate "$RATE" --concurrency "$CONCURRENCY" \
  --prefix "g$(echo "$stamp" | tr '[:upper:]' '[:lower:]')" --out "$out" >/dev/null 2>"$data/load.log" &
load=$!
# Set-up writes 10,000 members in under a minute; autovacuum analyzes them about a
# minute later (seen here), and until then PostgreSQL plans with the empty tables'
# estimates (a page took 7-11 ms instead of 2). Measure the steady state: analyze as
# soon as the sockets are up, within the load tool's settle time.
while kill -0 "$load" 2>/dev/null && ! grep -qs "sockets up" "$data/load.log"; do sleep 0.5; done
# And a CHECKPOINT, as bench-writes does before each run: the set-up's WAL is flushed
# now, not by a checkpoint in the middle of the measured requests.
PGPASSWORD=$(cat "$data/password") psql -q -h 127.0.0.1 -p "$(cat "$data/port")" -U synctalk synctalk \
  -c ANALYZE -c CHECKPOINT
wait "$load" || status=$?
cat "$data/load.log" >&2
[ -f "$out" ] || { echo "guild bench failed ($status); server log:"; tail -n 20 "$data/server.log"; exit 1; }

server_problems=$(grep -cE 'WARN|ERROR|panicked' "$data/server.log" || true)
python3 - "$out" "$stamp" "$server_problems" "$server_rev" <<'PY'
import json, sys
out, stamp, server_problems, commit = sys.argv[1:5]
r = json.load(open(out))
r["server_commit"] = commit
r["server_log_warnings_errors"] = int(server_problems)
json.dump(r, open(out, "w"), indent=2)
open(out, "a").write("\n")
sys.path.insert(0, "bench")
from summary import add_row  # noqa: E402

summary = "bench/results/summary.md"
head = """
## A big guild: each request timed alone

Written by `just bench-guild` (bench/guild.sh): a guild of 10,000 members on one node,
each with a socket on /gateway/guilds; one request at a time: pages of 100 members,
joins by invite and kicks (targets: each under 10 ms at p99). Each join's
GUILD_MEMBER_ADD and each kick's GUILD_MEMBER_REMOVE is followed to every member socket,
and the next request starts 100 ms after that (10,000 frames a request: back to back, a
request would be timed behind the previous one's fan-out). Tables analyzed and a checkpoint
taken after set-up.
PostgreSQL durable; server and PostgreSQL on CPU 0, load tool on CPU 1.

| run (UTC) | commit | members | sockets | page p50 / p99 ms | join p50 / p99 ms | kick p50 / p99 ms | join / kick events delivered | join to last socket p50 / p99 ms | kick to last socket p50 / p99 ms | log warn/err |
|---|---|---|---|---|---|---|---|---|---|---|"""
f = lambda v: "-" if v is None else f"{v:.1f}"
pair = lambda d: f"{f(d['p50'])} / {f(d['p99'])}"
j, k = r["join"], r["kick"]
row = (f"| {stamp} | {commit} | {r['members']} | {r['sockets_up']} | {pair(r['member_page_ms'])} | "
       f"{pair(j['latency_ms'])} | {pair(k['latency_ms'])} | "
       f"{j['event_deliveries']}/{j['event_expected']} / {k['event_deliveries']}/{k['event_expected']} | "
       f"{pair(j['to_last_socket_ms'])} | {pair(k['to_last_socket_ms'])} | {server_problems} |")
add_row(summary, head, row)
print(row)
PY
echo "results: $out; server log: $server_problems warning/error lines"
exit "$status"
