#!/usr/bin/env bash
# The `bench-messages` recipe: messages fanned out to channel members, SyncTalk against
# the bare broadcast server (crates/bare: actix-ws, no auth, no storage, every text
# frame to every socket), driven by the same load tool with the same parameters.
#
# Server (and PostgreSQL, durable, and nats-server) on CPU $SERVER_CPU, load tool on
# CPU $LOAD_CPU. In one run:
#   1. SyncTalk, one node, its own cluster under target/bench-data-messages:
#      synctalk-load messages, phases small, fanout and big (see crates/loadtest/src/messages.rs):
#        small   SMALL_RATE messages/s into a channel of SMALL_MEMBERS for SMALL_SECONDS;
#        fanout  a channel of FANOUT_MEMBERS, steps at FANOUT_RATES messages/s
#                (STEP_SECONDS each) until a step's per-delivery p99 passes 100 ms;
#        big     BIG_MESSAGES messages one at a time into a channel of BIG_MEMBERS.
#   2. The bare server, the same phases, its frames as long as SyncTalk's MESSAGE_CREATE.
#   3. SyncTalk, two nodes over NATS on the same cluster: the fanout phase with the
#      sockets and sends spread over both (NODES2=0 skips it).
# Targets (issue 9): small p99 to every member <= 25 ms; fanout deliveries per server
# CPU-second >= 0.5x the bare server's; big: the last member within 150 ms; two nodes
# >= 0.8x one node's deliveries per CPU-second.
#   SMALL_MEMBERS (100) SMALL_RATE (100) SMALL_SECONDS (20) FANOUT_MEMBERS (1000)
#   FANOUT_RATES (25,50,75,100,150,200,300,400,600) STEP_SECONDS (10) BIG_MEMBERS (10000)
#   BIG_MESSAGES (30) PHASES (small,fanout,big) NODES2 (1)
#   SERVER_BIN (a server binary to use instead of building this tree's; SERVER_REV: its commit)
#   QUIET (1: first wait, up to QUIET_WAIT s, until the machine is idle)
#   PERF (1: profile the server's core during each SyncTalk fan-out phase; PERF_SECONDS)
# Results: bench/results/messages-<date>-{synctalk,bare,synctalk2}.json and a line in
# bench/results/summary.md. Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PHASES=${PHASES:-small,fanout,big}
NODES2=${NODES2:-1}
ulimit -n "$(ulimit -Hn)"

bin=target/release
. bench/lib.sh
build_binaries
cargo build --release -q -p synctalk-bare
data=target/bench-data-messages
stamp=$(date -u +%Y%m%dT%H%M%SZ)
rm -rf "$data"
mkdir -p bench/results "$data"
pids=()
# Last started first, each waited for: the node that started the cluster stops it on
# its way out, and must not cut the other node's connections while it still runs.
stop_all() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1"; return 1; }

params=(--small-members "${SMALL_MEMBERS:-100}" --small-rate "${SMALL_RATE:-100}" --small-seconds "${SMALL_SECONDS:-20}"
        --fanout-members "${FANOUT_MEMBERS:-1000}" --fanout-rates "${FANOUT_RATES:-25,50,75,100,150,200,300,400,600}"
        --step-seconds "${STEP_SECONDS:-10}" --big-members "${BIG_MEMBERS:-10000}" --big-messages "${BIG_MESSAGES:-30}")
prefix="m$(echo "$stamp" | tr '[:upper:]' '[:lower:]')"

# SyncTalk node N (1 or 2): the first starts the cluster; the others use it.
start_node() {
  local n=$1 port extra=()
  port=$(free_port)
  if [ "$n" -gt 1 ]; then
    extra=(DATABASE_URL="postgres://synctalk:$(cat "$data/password")@127.0.0.1:$(cat "$data/port")/synctalk")
  fi
  taskset -c "$SERVER_CPU" env MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-8} SYNCTALK_ENV=development \
    RATE_LIMIT_AUTH_PER_MINUTE=10000000 RATE_LIMIT_USER_PER_MINUTE=10000000 GATEWAY_CONNECTS_PER_MINUTE=10000000 \
    ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 DATABASE_POOL_SIZE=${POOL:-24} LOG_LEVEL=warn \
    ACCESS_TOKEN_TTL_SECS=7200 SYNCTALK_DATA_DIR="$data" "${extra[@]}" "${bus[@]}" \
    JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 \
    SYNCTALK_PORT="$port" "$server_bin" >>"$data/node$n.log" 2>&1 &
  pids+=($!); node_pids+=($!); urls+=("http://127.0.0.1:$port")
  wait_up "http://127.0.0.1:$port/ready" || { tail -n 20 "$data/node$n.log"; exit 1; }
}

# PERF=1: `perf record -C $SERVER_CPU` (every process on the server's core) for the
# first PERF_SECONDS (default STEP_SECONDS) of each SyncTalk fan-out phase, reported by
# process, object and symbol in bench/results/messages-<date>-<name>-profile.txt. Run it
# with one rate (FANOUT_RATES=100) to compare one node and two at the same load.
profile_fanout() {
  local name=$1 log=$2 out="$data/profile-$name"
  for _ in $(seq 1 1200); do grep -q '^phase fanout' "$log" 2>/dev/null && break; sleep 0.1; done
  grep -q '^phase fanout' "$log" 2>/dev/null || return 0
  perf record -q -C "$SERVER_CPU" -F 1999 -o "$out.data" -- sleep "${PERF_SECONDS:-${STEP_SECONDS:-10}}" 2>/dev/null || return 0
  perf_summary "$out.data" "bench/results/messages-$stamp-$name-profile.txt" \
    "perf record -C $SERVER_CPU during the fan-out phase of $name (rates ${FANOUT_RATES:-default}), at $server_rev"
}
load() {
  local name=$1; shift
  local perf=""
  wait_quiet
  if [ "${PERF:-0}" = 1 ] && [ "$name" != bare ]; then
    : >"$data/load-$name.log"
    profile_fanout "$name" "$data/load-$name.log" &
    perf=$!
  fi
  taskset -c "$LOAD_CPU" "$bin/synctalk-load" messages "$@" --out "bench/results/messages-$stamp-$name.json" \
    >/dev/null 2>"$data/load-$name.log" || { cat "$data/load-$name.log"; exit 1; }
  cat "$data/load-$name.log" >&2
  if [ -n "$perf" ]; then
    wait "$perf" || true
    [ -e "bench/results/messages-$stamp-$name-profile.txt" ] && echo "profile: bench/results/messages-$stamp-$name-profile.txt" >&2
  fi
}

# 1. SyncTalk, one node.
bus=(); node_pids=(); urls=()
start_node 1
pin_postgres "$data"
echo "SyncTalk: node ${node_pids[*]}, postmaster $postmaster (CPU $SERVER_CPU); load on CPU $LOAD_CPU"
load synctalk --target synctalk --url "${urls[@]}" --server-pid "${node_pids[@]}" --side-pid "$postmaster" \
  --phases "$PHASES" --prefix "${prefix}a" "${params[@]}"
frame_bytes=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['mean_frame_bytes']))" \
  "bench/results/messages-$stamp-synctalk.json")
stop_all

# 2. The bare server, with frames as long as SyncTalk's.
port=$(free_port)
taskset -c "$SERVER_CPU" "$bin/synctalk-bare" "$port" >"$data/bare.log" 2>&1 &
pids+=($!); bare=$!
wait_up "http://127.0.0.1:$port/stats"
echo "bare server: pid $bare (CPU $SERVER_CPU), frames of $frame_bytes bytes"
load bare --target bare --url "http://127.0.0.1:$port" --server-pid "$bare" --phases "$PHASES" \
  --frame-bytes "$frame_bytes" "${params[@]}"
bare_stats=$(curl -s "http://127.0.0.1:$port/stats")
stop_all

# 3. SyncTalk, two nodes over NATS on the same cluster: the fan-out phase.
if [ "$NODES2" = 1 ]; then
  nport=$(free_port)
  taskset -c "$SERVER_CPU" nats-server -a 127.0.0.1 -p "$nport" >"$data/nats.log" 2>&1 &
  pids+=($!); nats=$!
  sleep 1
  bus=(NATS_URL="nats://127.0.0.1:$nport" NATS_SUBJECT_PREFIX="bench_$stamp"); node_pids=(); urls=()
  start_node 1
  start_node 2
  pin_postgres "$data"
  echo "SyncTalk: nodes ${node_pids[*]}, nats $nats, postmaster $postmaster (CPU $SERVER_CPU)"
  load synctalk2 --target synctalk --url "${urls[@]}" --server-pid "${node_pids[@]}" \
    --side-pid "$postmaster" "$nats" --phases fanout --prefix "${prefix}b" "${params[@]}"
  stop_all
fi

server_problems=$(cat "$data"/node*.log | grep -cE 'WARN|ERROR|panicked' || true)
python3 - "$stamp" "$server_rev" "$server_problems" "$bare_stats" <<'PY'
import json, os, sys
stamp, commit, problems, bare_stats = sys.argv[1:5]
load = lambda name: json.load(open(f"bench/results/messages-{stamp}-{name}.json")) \
    if os.path.exists(f"bench/results/messages-{stamp}-{name}.json") else None
st, bare, st2 = load("synctalk"), load("bare"), load("synctalk2")
for r in (st, bare, st2):
    if r is not None:
        r["server_commit"] = commit
for name, r in (("synctalk", st), ("bare", bare), ("synctalk2", st2)):
    if r is not None:
        if name == "bare":
            r["bare_server_stats"] = json.loads(bare_stats)
        else:
            r["server_log_warnings_errors"] = int(problems)
        path = f"bench/results/messages-{stamp}-{name}.json"
        json.dump(r, open(path, "w"), indent=2)
        open(path, "a").write("\n")
sys.path.insert(0, "bench")
from summary import add_row  # noqa: E402

f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
def phase(r, name):
    return None if r is None else r["phases"].get(name)
def p99_last(p):
    return None if p is None else p["to_last_member_ms"]["p99"]
def best(p):
    return None if p is None else p.get("best")
def rate(b, key="deliveries_per_server_cpu_second"):
    return None if b is None else b[key]
def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b
def delivered(r, name):
    p = phase(r, name)
    if p is None:
        return "-"
    steps = p.get("steps", [p])
    return f"{sum(s['deliveries'] for s in steps)}/{sum(s['expected'] for s in steps)}"

s_small, b_small = phase(st, "small"), phase(bare, "small")
s_fan, b_fan, s2_fan = best(phase(st, "fanout")), best(phase(bare, "fanout")), best(phase(st2, "fanout"))
s_big, b_big = phase(st, "big"), phase(bare, "big")
fan = lambda b: "-" if b is None else f"{b['rate']}/s: {f(b['deliveries_per_server_cpu_second'], 0)} (p99 {b['per_delivery_ms']['p99']:.1f} ms)"
head = """
## Messages: SyncTalk against a bare broadcast server

Written by `just bench-messages` (bench/messages.sh): the same load tool and parameters
against SyncTalk (messages sent with `POST .../messages`, persisted, fanned out on
/gateway/messaging) and against `synctalk-bare` (no auth, no storage, every text frame to
every socket, frames as long as SyncTalk's). Latencies from each message's due time (open
loop). Server, PostgreSQL (durable) and nats-server on CPU 0, load tool on CPU 1.
Targets: 100/s into 100 members p99 to every member <= 25 ms; fan-out into 1,000
members, deliveries per server CPU-second at the highest rate with per-delivery p99 <=
100 ms >= 0.5x bare; one message to 10,000 members, last member <= 150 ms; two nodes
over NATS >= 0.8x one node's deliveries per server CPU-second.

| run (UTC) | commit | 100 members @100/s p99 to all ms (bare) | 1,000-member fan-out: best rate, deliveries per server CPU-s (bare) | ratio (target 0.5) | with PostgreSQL's CPU | 10,000 members p50 / p99 to last ms (bare) | two nodes: best rate, per CPU-s | two / one (target 0.8) | delivered (small, fanout, big) | log warn/err |
|---|---|---|---|---|---|---|---|---|---|---|"""
row = (f"| {stamp} | {commit} | {f(p99_last(s_small))} ({f(p99_last(b_small))}) | {fan(s_fan)} ({fan(b_fan)}) | "
       f"{f(ratio(rate(s_fan), rate(b_fan)), 2)} | "
       f"{f(ratio(rate(s_fan, 'deliveries_per_cpu_second_with_side'), rate(b_fan)), 2)} | "
       f"{f(s_big and s_big['to_last_member_ms']['p50'])} / {f(p99_last(s_big))} "
       f"({f(b_big and b_big['to_last_member_ms']['p50'])} / {f(p99_last(b_big))}) | {fan(s2_fan)} | "
       f"{f(ratio(rate(s2_fan), rate(s_fan)), 2)} | "
       f"{delivered(st, 'small')}, {delivered(st, 'fanout')}, {delivered(st, 'big')} | {problems} |")
add_row("bench/results/summary.md", head, row)
print(row)
PY
echo "results: bench/results/messages-$stamp-*.json; server logs: $server_problems warning/error lines"
