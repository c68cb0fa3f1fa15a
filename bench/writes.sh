#!/usr/bin/env bash
# The `bench-writes` recipe: request throughput of the server against pgbench doing the
# same database work on the same database, in the same run, with PostgreSQL durable (the
# server's own cluster keeps PostgreSQL's defaults: fsync and synchronous_commit on).
# REQUEST picks the request (the `bench-sends` and `bench-history` recipes set it):
#   profile  (default) PATCH /users/@me, against pgbench's UPDATE + outbox append;
#   send     POST /channels/{id}/messages, each client into a channel of its own, against
#            pgbench's single-row INSERT of the same message row (target 1.5x);
#   history  GET /channels/{id}/messages?limit=50 of a channel of SEED messages, against
#            pgbench's SELECT of the same 50 rows (target 0.8x).
#
# One server with its own cluster under target/bench-data-writes. The server and PostgreSQL
# run on CPU $SERVER_CPU, the load tool and pgbench on CPU $LOAD_CPU (taskset). Then,
# PAIRS times, in alternating order:
#   server   synctalk-load writes: CLIENTS closed-loop clients, one account each,
#            PATCH /api/v1/users/@me (users UPDATE + one outbox append of two events,
#            one transaction) for DURATION s after a WARMUP s warm-up;
#   pgbench  CLIENTS clients, DURATION s (after a WARMUP s run that is not counted), a
#            script doing the same writes in one transaction: the UPDATE of the
#            client's user, then the same append statement with literals for $1..$5.
# A CHECKPOINT before each measured run, so neither inherits the other's dirty pages.
#   USERS (32) CLIENTS (32) DURATION (20) WARMUP (3) PAIRS (2)
#   PGBENCH_MODE (prepared: pgbench's fastest; or simple, extended)
#   POOL (24, the server's DATABASE_POOL_SIZE, as in `just bench`)
#   SERVER_BIN (a server binary to use instead of building this tree's; SERVER_REV: its commit)
#   QUIET (1: before each run wait, up to QUIET_WAIT s, until the machine is idle)
#   PERF (1: profile the first server run with perf; bench/results/<name>-<date>-profile.txt)
#   SLOW_PLANS (with STATEMENTS=1: log the plans of statements slower than this many ms)
#   STATEMENTS (1: load pg_stat_statements, and write what PostgreSQL's statements cost in
#     the first server run to bench/results/<name>-<date>-statements.txt; the module costs
#     a little on every statement, so such a run's ratio is not comparable)
# Results: bench/results/writes-<date>.json and a line in bench/results/summary.md.
# Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-32}
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
PAIRS=${PAIRS:-2}
REQUEST=${REQUEST:-profile}
SEED=${SEED:-100}
case "$REQUEST" in
  profile) results_name=writes; target=0.7 ;;
  send) results_name=sends; target=1.5 ;;
  history) results_name=history; target=0.8 ;;
  *) echo "REQUEST is profile, send or history"; exit 1 ;;
esac
PGBENCH_MODE=${PGBENCH_MODE:-prepared}
POOL=${POOL:-24}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

pgbench=$(command -v pgbench || true)
[ -n "$pgbench" ] || pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -n1 || true)
[ -n "$pgbench" ] || { echo "pgbench not found: apt-get install postgresql-contrib (or postgresql-client)"; exit 1; }
psql=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | tail -n1)

bin=target/release
# SERVER_BIN: benchmark that server binary instead of building this tree's.
. bench/lib.sh
build_binaries
data=${DATA_DIR:-target/bench-data-writes}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
# A fresh database every run, so runs compare.
rm -rf "$data"
mkdir -p bench/results "$data"
server=""
cleanup() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# Everything the server starts (pg_ctl, the postmaster, its backends) inherits CPU 0.
start_server() {
  taskset -c "$SERVER_CPU" env MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-8} SYNCTALK_ENV=development \
    RATE_LIMIT_AUTH_PER_MINUTE=10000000 RATE_LIMIT_USER_PER_MINUTE=10000000 GATEWAY_CONNECTS_PER_MINUTE=10000000 \
    ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 DATABASE_POOL_SIZE="$POOL" LOG_LEVEL=warn \
    ACCESS_TOKEN_TTL_SECS=7200 SYNCTALK_DATA_DIR="$data" \
    JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 SYNCTALK_PORT="$port" \
    "$server_bin" >>"$data/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "$url/ready" >/dev/null || { echo "the server did not start:"; cat "$data/server.log"; exit 1; }
}
start_server
if [ "${STATEMENTS:-0}" = 1 ]; then
  # Again with pg_stat_statements loaded: the server stops the cluster it started on
  # its way out, and starts it again (with the module) on the way in.
  kill "$server"; wait "$server" 2>/dev/null || true
  printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\npg_stat_statements.track_planning = on\n" \
    >>"$data/postgres/postgresql.conf"
  if [ -n "${SLOW_PLANS:-}" ]; then
    # And the plans (with actual rows and times) of statements slower than SLOW_PLANS ms,
    # in PostgreSQL's log.
    printf "shared_preload_libraries = 'pg_stat_statements,auto_explain'\nauto_explain.log_min_duration = %s\nauto_explain.log_analyze = on\nauto_explain.log_nested_statements = on\n" \
      "$SLOW_PLANS" >>"$data/postgres/postgresql.conf"
  fi
  start_server
fi

pin_postgres "$data"
affinity="server $(taskset -p -c "$server" | awk '{print $NF}'), postmaster $(taskset -p -c "$postmaster" | awk '{print $NF}')"
echo "pinned: $affinity; load on CPU $LOAD_CPU"

pgport=$(cat "$data/port")
export PGPASSWORD
PGPASSWORD=$(cat "$data/password")
sql() { "$psql" -h 127.0.0.1 -p "$pgport" -U synctalk -d synctalk -qAtX -c "$1"; }
[ "${STATEMENTS:-0}" = 1 ] && sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
settings=$(sql "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','wal_sync_method','commit_delay','max_connections','shared_buffers')")
echo "postgres: $settings"

# The accounts both sides write as.
taskset -c "$LOAD_CPU" "$bin/synctalk-load" writes --url "$url" --users "$USERS" --request "$REQUEST" --seed "$SEED" \
  --prefix "w$(echo "$stamp" | tr '[:upper:]' '[:lower:]')" --accounts "$data/accounts.json" --register-only

# pgbench's script: client c writes as account c mod USERS, with the payloads the server
# would write for it (its CurrentUser, and the public User on its profile topic).
python3 - "$data/accounts.json" "$data/writes.sql" "$REQUEST" <<'PY'
import json, sys
accounts = json.load(open(sys.argv[1]))
request = sys.argv[3]
# pgbench takes any ":name" in a command for a variable (in prepared mode even inside a
# string literal), so colons in literals are written as \x3a.
def lit(s): return "E'" + s.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a") + "'"
def arr(items): return "(ARRAY[" + ",".join(lit(i) for i in items) + "])[:n::int + 1]"
ids, mes, pubs = [], [], []
for a in accounts:
    me = dict(a["user"]); me["bio"] = "pgbench"
    pub = {k: v for k, v in me.items() if k != "email"}
    ids.append(me["id"])
    mes.append(json.dumps(me, separators=(",", ":")))
    pubs.append(json.dumps(pub, separators=(",", ":")))
uid = arr(ids)
topics = f"ARRAY['user:' || {uid}, 'profile:' || {uid}]"
payloads = f"ARRAY[{arr(mes)}, {arr(pubs)}]"
channel = arr([a.get("channel_id") or "" for a in accounts]) + "::uuid"
# A time-ordered id, as the server's (UUIDv7: milliseconds first, then random bits).
v7 = ("(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') "
      "|| substr(md5(random()::text), 1, 20))::uuid")
columns = ("channel_id, id, author_id, content, nonce, reply_to, mentions, mention_roles, "
           "mention_everyone, pinned_at, created_at, edited_at, deleted_at, has_reactions, "
           "has_attachments")
if request == "send":
    # The server's INSERT of the message row, alone (autocommit: one transaction each).
    lines = [
        f"\\set n :client_id % {len(ids)}",
        f"INSERT INTO messages (channel_id, id, author_id, content, nonce, reply_to, mentions, "
        f"mention_roles, mention_everyone, has_attachments) VALUES ({channel}, {v7}, {uid}::uuid, "
        f"'pgbench row', NULL, NULL, '{{}}', '{{}}', false, false) ON CONFLICT DO NOTHING "
        f"RETURNING {columns};",
    ]
    open(sys.argv[2], "w").write("\n".join(lines) + "\n")
    sys.exit(0)
if request == "history":
    # The server's page query: the newest 50 live messages of the channel.
    lines = [
        f"\\set n :client_id % {len(ids)}",
        f"SELECT {columns} FROM messages WHERE channel_id = {channel} AND deleted_at IS NULL "
        f"ORDER BY id DESC LIMIT 50;",
    ]
    open(sys.argv[2], "w").write("\n".join(lines) + "\n")
    sys.exit(0)
lines = [
    f"\\set n :client_id % {len(ids)}",
    "BEGIN;",
    f"UPDATE users SET bio = 'pgbench', updated_at = now() WHERE id = {uid}::uuid AND deleted_at IS NULL RETURNING *;",
    # The very append the server makes (event::append calls this function).
    f"SELECT outbox_append({topics}, ARRAY['event','event'], ARRAY['users','users'], "
    f"ARRAY['USER_UPDATE','USER_UPDATE'], {payloads});",
    "COMMIT;",
]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY

# Per-CPU counters, and the CPU time the server and PostgreSQL (the postmaster, its
# live children, and the children it has reaped) have used so far, in seconds.
TIMEFORMAT="%R %U %S"
cpu_snap() {
  grep -E '^cpu[0-9]+ ' /proc/stat >"$1"
  python3 - "$server" "$postmaster" >>"$1" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
def stat(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
server, postmaster = sys.argv[1], sys.argv[2]
s = stat(server)
pg = 0
m = stat(postmaster)
if m:
    pg += sum(int(x) for x in m[11:15])  # utime stime cutime cstime
for pid in filter(str.isdigit, os.listdir("/proc")):
    f = stat(pid)
    if f and f[1] == postmaster:
        pg += int(f[11]) + int(f[12])
print("proc", (int(s[11]) + int(s[12])) / tick if s else 0, pg / tick)
PY
}
# Database transactions and rows written so far (to count them per request).
db_snap() { sql "SELECT pg_stat_force_next_flush(); SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = 'synctalk'" | tail -n1 >"$1"; }
# After a run: how far the relay is behind, then wait (bounded) until it has caught up,
# so the next run does not pay for this one's publishing.
drain() {
  local name=$1 begun=$SECONDS left unpublished
  # Positions live in outbox_published since b6140a9, in the outbox rows before (a
  # SERVER_BIN of an older commit).
  if [ "$(sql "SELECT to_regclass('outbox_published') IS NOT NULL")" = t ]; then
    unpublished="SELECT count(*) FROM outbox o WHERE o.id > (SELECT floor FROM outbox_relay WHERE id = 1)
      AND (SELECT p.id FROM outbox_published p WHERE p.id = o.id) IS NULL"
  else
    unpublished="SELECT count(*) FROM outbox WHERE position IS NULL"
  fi
  sql "$unpublished" >"$data/$name.unpublished"
  for _ in $(seq 1 1200); do
    left=$(sql "$unpublished")
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  echo $((SECONDS - begun)) >"$data/$name.drain-seconds"
}
pgb() {
  taskset -c "$LOAD_CPU" "$pgbench" -n -h 127.0.0.1 -p "$pgport" -U synctalk -c "$CLIENTS" -j 1 \
    -M "$PGBENCH_MODE" -f "$data/writes.sql" "$@" synctalk
}
runs=()
run_server() {
  local name=$1
  wait_quiet
  sql "CHECKPOINT"
  db_snap "$data/$name.db-before"
  cpu_snap "$data/$name.cpu-before"
  local perf=""
  if [ "${PERF:-0}" = 1 ] && [ ! -e "$data/profile.data" ]; then
    # The first server run is profiled: every process on the server's CPU (the server and
    # PostgreSQL), sampled by the clock, from the end of the warm-up to the end of the run.
    ( sleep "$WARMUP"; exec perf record -q -C "$SERVER_CPU" -F 1999 -o "$data/profile.data" -- sleep "$DURATION" ) &
    perf=$!
  fi
  local statements=""
  if [ "${STATEMENTS:-0}" = 1 ] && [ ! -e "$data/statements.txt" ]; then
    statements=1
    sql "SELECT pg_stat_statements_reset()" >/dev/null
  fi
  { time taskset -c "$LOAD_CPU" "$bin/synctalk-load" writes --url "$url" --accounts "$data/accounts.json" --request "$REQUEST" \
    --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --out "$data/$name.json" >/dev/null 2>"$data/$name.err"; } 2>"$data/$name.time"
  cpu_snap "$data/$name.cpu-after"
  if [ -n "$perf" ]; then
    wait "$perf" || true
    profile="bench/results/$results_name-$stamp-profile.txt"
    perf_summary "$data/profile.data" "$profile" \
      "perf record -C $SERVER_CPU (server and PostgreSQL) during $name, $REQUEST requests at $server_rev"
    echo "  profile: $profile"
  fi
  if [ -n "$statements" ]; then
    # (Warm-up included: the statistics span the whole load run.)
    { echo "# pg_stat_statements during $name (warm-up included), $REQUEST requests at $server_rev:"
      echo "# calls | execution ms | planning ms | ms per call | rows | statement"
      sql "SELECT calls, round(total_exec_time::numeric, 1), round(total_plan_time::numeric, 1), \
             round(((total_exec_time + total_plan_time) / greatest(calls, 1))::numeric, 4), rows, \
             left(regexp_replace(query, '\s+', ' ', 'g'), 200) \
           FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 40"
    } >"$data/statements.txt"
    cp "$data/statements.txt" "bench/results/$results_name-$stamp-statements.txt"
    echo "  statements: bench/results/$results_name-$stamp-statements.txt"
  fi
  sleep 1
  db_snap "$data/$name.db-after"
  drain "$name"
  runs+=("server:$name")
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latency_ms"]; print("  %s: server %.0f req/s, p50 %.1f ms, p99 %.1f ms, %d errors" % (sys.argv[2], r["requests_per_second"], l["p50"], l["p99"], r["errors"]))' "$data/$name.json" "$name"
}
run_pgbench() {
  local name=$1
  wait_quiet
  sql "CHECKPOINT"
  pgb -T "$WARMUP" >"$data/$name.warmup.out" 2>&1 || { cat "$data/$name.warmup.out"; exit 1; }
  db_snap "$data/$name.db-before"
  cpu_snap "$data/$name.cpu-before"
  { time pgb -T "$DURATION" -l --log-prefix="$data/$name.log" >"$data/$name.out" 2>&1 || { cat "$data/$name.out"; exit 1; }; } 2>"$data/$name.time"
  cpu_snap "$data/$name.cpu-after"
  sleep 1
  db_snap "$data/$name.db-after"
  drain "$name"
  runs+=("pgbench:$name")
  echo "  $name: pgbench $(grep -E '^tps' "$data/$name.out" | head -n1)"
}
for pair in $(seq 1 "$PAIRS"); do
  if [ $((pair % 2)) -eq 1 ]; then
    run_server "server-$pair"; run_pgbench "pgbench-$pair"
  else
    run_pgbench "pgbench-$pair"; run_server "server-$pair"
  fi
done

# Anything the server or PostgreSQL complained about.
server_problems=$(grep -cE 'WARN|ERROR|panicked' "$data/server.log" || true)
# (Not counted: the connections ended when the server stops PostgreSQL, and the
# autovacuum a VACUUM of the bench cancels.)
pg_problems=$(grep -E 'ERROR|FATAL|PANIC' "$data/postgres.log" | grep -cvE 'terminating connection due to administrator command|canceling autovacuum task' || true)

out="bench/results/$results_name-$stamp.json"
python3 - "$data" "$out" "$stamp" "$CLIENTS" "$USERS" "$DURATION" "$WARMUP" "$PGBENCH_MODE" "$POOL" \
  "$affinity" "$settings" "$server_problems" "$pg_problems" "$server_rev" "$REQUEST" "$target" "${runs[@]}" <<'PY'
import glob, json, os, re, sys
(data, out, stamp, clients, users, duration, warmup, mode, pool, affinity, settings,
 server_problems, pg_problems, commit, request, target), runs = sys.argv[1:17], sys.argv[17:]

tick = os.sysconf("SC_CLK_TCK")
def cpu(name):
    def load(path):
        rows = {}
        for line in open(path):
            f = line.split()
            v = list(map(float, f[1:]))
            if f[0] == "proc":
                rows["proc"] = (float(f[1]), float(f[2]))
            else:
                rows[f[0]] = (sum(v), v[3] + v[4])  # total, idle + iowait
        return rows
    a, b = load(f"{data}/{name}.cpu-before"), load(f"{data}/{name}.cpu-after")
    wall, user, system = map(float, open(f"{data}/{name}.time").read().split()[-3:])
    busy = {"server_cpu_seconds": round(b["proc"][0] - a["proc"][0], 2),
            "postgres_cpu_seconds": round(b["proc"][1] - a["proc"][1], 2),
            "load_cpu_seconds": round(user + system, 2), "wall_seconds": wall}
    busy_seconds = 0.0
    for k in a:
        if k == "proc":
            continue
        total, idle = b[k][0] - a[k][0], b[k][1] - a[k][1]
        busy[k] = round(1 - idle / total, 3) if total else None
        busy_seconds += (total - idle) / tick
    # CPU time nobody in this bench used (another job on the machine): a run with much of
    # it was disturbed.
    busy["other_cpu_seconds"] = round(busy_seconds - busy["server_cpu_seconds"]
                                      - busy["postgres_cpu_seconds"] - busy["load_cpu_seconds"], 2)
    return busy

def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]

results = []
for entry in runs:
    kind, name = entry.split(":", 1)
    unpublished = int(open(f"{data}/{name}.unpublished").read().strip() or 0)
    drain = int(open(f"{data}/{name}.drain-seconds").read().strip() or 0)
    before = list(map(int, open(f"{data}/{name}.db-before").read().split("|")))
    after = list(map(int, open(f"{data}/{name}.db-after").read().split("|")))
    db = dict(zip(["transactions", "rows_inserted", "rows_updated", "rows_deleted"], [a - b for a, b in zip(after, before)]))
    if kind == "server":
        r = json.load(open(f"{data}/{name}.json"))
        c = cpu(name)
        ops = max(1, r["requests"] + r["warmup_requests"])  # the CPU sample spans both
        per_op = {"server": round(c["server_cpu_seconds"] * 1000 / ops, 3),
                  "postgres": round(c["postgres_cpu_seconds"] * 1000 / ops, 3)}
        results.append({"run": name, "kind": "server", "per_second": r["requests_per_second"],
                        "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                        "errors": r["errors"], "transactions": r["requests"], "cpu_busy": c, "cpu_ms_per_op": per_op,
                        "unpublished_after": unpublished, "relay_drain_seconds": drain, "database": db, "load": r})
    else:
        text = open(f"{data}/{name}.out").read()
        tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", text).group(1))
        done = int(re.search(r"number of transactions actually processed: (\d+)", text).group(1))
        failed = re.search(r"number of failed transactions: (\d+)", text)
        c = cpu(name)
        per_op = {"postgres": round(c["postgres_cpu_seconds"] * 1000 / max(1, done), 3)}
        lat = []
        for path in glob.glob(f"{data}/{name}.log*"):
            for line in open(path):
                f = line.split()
                if len(f) >= 3 and f[2].isdigit():
                    lat.append(int(f[2]) / 1000.0)
        results.append({"run": name, "kind": "pgbench", "per_second": tps,
                        "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99),
                        "errors": int(failed.group(1)) if failed else 0, "transactions": done,
                        "cpu_busy": c, "cpu_ms_per_op": per_op, "unpublished_after": unpublished,
                        "relay_drain_seconds": drain, "database": db,
                        "output": text.strip().splitlines()})

def mean(kind, key):
    v = [r[key] for r in results if r["kind"] == kind and r[key] is not None]
    return sum(v) / len(v) if v else None

server, pg = mean("server", "per_second"), mean("pgbench", "per_second")
ratio = server / pg if server and pg else None
doc = {"stamp": stamp, "server_commit": commit, "clients": int(clients), "users": int(users), "duration_seconds": int(duration),
       "warmup_seconds": int(warmup), "pgbench_mode": mode, "server_pool": int(pool),
       "pinning": affinity, "postgres": settings, "request": request, "target_ratio": float(target),
       "server_requests_per_second": server, "pgbench_tps": pg, "ratio": ratio,
       "server_log_warnings_errors": int(server_problems), "postgres_log_errors": int(pg_problems),
       "runs": results}
json.dump(doc, open(out, "w"), indent=2)
open(out, "a").write("\n")

sys.path.insert(0, "bench")
from summary import add_row  # noqa: E402

summary = "bench/results/summary.md"
heads = {"profile": """
## Event writes

Written by `just bench-writes` (bench/writes.sh): `PATCH /users/@me` (a users UPDATE and one
outbox append of two events, one transaction) from closed-loop clients, against pgbench doing
the same writes in one transaction on the same database in the same run; PostgreSQL durable
(fsync and synchronous_commit on). Server and PostgreSQL on CPU 0, load tool and pgbench on
CPU 1. Means over the runs; target ratio ≥ 0.7.

| run (UTC) | commit | clients | s per run | runs | server req/s | server p50 ms | server p99 ms | errors | pgbench tps | pgbench p50 ms | pgbench p99 ms | ratio |
|---|---|---|---|---|---|---|---|---|---|---|---|---|""", "send": """
## Message sends

Written by `just bench-sends` (bench/writes.sh, REQUEST=send): `POST /channels/{id}/messages`
from closed-loop clients, each into a guild channel of its own, against pgbench running the
server's INSERT of the message row alone (one transaction each) with as many clients, on
the same database in the same run; PostgreSQL durable. Server and PostgreSQL on CPU 0, load
tool and pgbench on CPU 1. Means over the runs; target ratio ≥ 1.5.

| run (UTC) | commit | clients | s per run | runs | server sends/s | server p50 ms | server p99 ms | errors | pgbench tps | pgbench p50 ms | pgbench p99 ms | ratio |
|---|---|---|---|---|---|---|---|---|---|---|---|---|""", "history": """
## History pages

Written by `just bench-history` (bench/writes.sh, REQUEST=history): `GET
/channels/{id}/messages?limit=50` from closed-loop clients, each of a channel of 100
messages of its own, against pgbench running the server's SELECT of those 50 rows with as
many clients, on the same database in the same run. Server and PostgreSQL on CPU 0, load
tool and pgbench on CPU 1. Means over the runs; target ratio ≥ 0.8.

| run (UTC) | commit | clients | s per run | runs | server pages/s | server p50 ms | server p99 ms | errors | pgbench tps | pgbench p50 ms | pgbench p99 ms | ratio |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"""}
head = heads[request]
errors = sum(r["errors"] for r in results if r["kind"] == "server")
n = len([r for r in results if r["kind"] == "server"])
f = lambda v: "-" if v is None else f"{v:.1f}"
row = (f"| {stamp} | {commit} | {clients} | {duration} | {n}+{n} | {server:.0f} | {f(mean('server','p50_ms'))} | "
      f"{f(mean('server','p99_ms'))} | {errors} | {pg:.0f} | {f(mean('pgbench','p50_ms'))} | "
      f"{f(mean('pgbench','p99_ms'))} | {ratio:.2f} |")
add_row(summary, head, row)
print(row)
PY
echo "results: $out; server log: $server_problems warning/error lines, postgres log: $pg_problems error lines"
