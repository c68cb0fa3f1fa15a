#!/usr/bin/env bash
# The `bench` recipe: idle authenticated gateway sockets.
#   SOCKETS   sockets in all (default 19000: the most one process holds under the
#             20,000 open-file limit here)
#   NODES     SyncTalk nodes sharing one PostgreSQL and one NATS (default 1)
#   CLIENTS   load-tool processes the sockets are spread over (default: enough to keep
#             each under 19,000 sockets)
#   RATE      sockets opened per second, per client process (default 500)
#   FRIENDS   friends per user (default 0): before the sockets open, the users are made
#             friends in groups of FRIENDS+1 (rows written straight to the database), so
#             each session listens to FRIENDS+2 topics instead of 2
#   PIN       1: the server and PostgreSQL on CPU $SERVER_CPU (0), the load tool on
#             CPU $LOAD_CPU (1), with taskset (default: 1 with one node, else 0)
#   QUIET     1 (default): first wait, up to QUIET_WAIT s, until the machine is idle
#   SERVER_BIN a server binary to use instead of building this tree's
# Results: bench/results/idle-<nodes>n-<sockets>-<date>.json (one per client process)
# and a line in bench/results/summary.md. Only 127.0.0.1 is ever contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
SOCKETS=${SOCKETS:-19000}
NODES=${NODES:-1}
RATE=${RATE:-500}
PER_PROCESS=19000
CLIENTS=${CLIENTS:-$(( (SOCKETS + PER_PROCESS - 1) / PER_PROCESS ))}
HOLD=${HOLD:-10}
FRIENDS=${FRIENDS:-0}
PIN=${PIN:-$([ "$NODES" = 1 ] && echo 1 || echo 0)}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
server_pin=(); load_pin=()
if [ "$PIN" = 1 ]; then server_pin=(taskset -c "$SERVER_CPU"); load_pin=(taskset -c "$LOAD_CPU"); fi
ulimit -n "$(ulimit -Hn)"

bin=target/release
. bench/lib.sh
build_binaries
data=target/bench-data
stamp=$(date -u +%Y%m%dT%H%M%SZ)
# A fresh database every run, so runs compare.
rm -rf "$data"
mkdir -p bench/results "$data"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

common=(MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-8} SYNCTALK_ENV=development RATE_LIMIT_AUTH_PER_MINUTE=10000000 RATE_LIMIT_USER_PER_MINUTE=10000000 GATEWAY_CONNECTS_PER_MINUTE=10000000
        ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 DATABASE_POOL_SIZE=24 LOG_LEVEL=warn
        SYNCTALK_DATA_DIR="$data" JWT_SECRET=bench-secret-bench-secret-bench-secret-0123)
if [ "$NODES" -gt 1 ]; then
  if [ -z "${NATS_URL:-}" ]; then
    nport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    nats-server -a 127.0.0.1 -p "$nport" >"$data/nats.log" 2>&1 & pids+=($!)
    export NATS_URL="nats://127.0.0.1:$nport"
    sleep 1
  fi
  common+=(NATS_URL="$NATS_URL" NATS_SUBJECT_PREFIX="bench_$stamp")
fi

urls=(); server_pids=()
for n in $(seq 1 "$NODES"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  extra=()
  if [ "$n" -gt 1 ]; then
    extra=(DATABASE_URL="postgres://synctalk:$(cat "$data/password")@127.0.0.1:$(cat "$data/port")/synctalk")
  fi
  "${server_pin[@]}" env "${common[@]}" "${extra[@]}" SYNCTALK_PORT="$port" "$server_bin" >"$data/node$n.log" 2>&1 & pids+=($!)
  server_pids+=($!)
  urls+=("http://127.0.0.1:$port")
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "node $n did not start:"; cat "$data/node$n.log"; exit 1; }
done

if [ "$PIN" = 1 ]; then
  pin_postgres "$data"
  echo "pinned: server and PostgreSQL on CPU $SERVER_CPU, load on CPU $LOAD_CPU"
fi
# On a shared machine: wait (bounded) until nothing else keeps the CPUs busy.
wait_quiet

per_client=$(( (SOCKETS + CLIENTS - 1) / CLIENTS ))
outs=()
for c in $(seq 1 "$CLIENTS"); do
  out="bench/results/idle-${NODES}n-${SOCKETS}-${stamp}-c$c.json"
  outs+=("$out")
  "${load_pin[@]}" "$bin/synctalk-load" idle --url "${urls[@]}" --server-pid "${server_pids[@]}" \
    --sockets "$per_client" --rate "$RATE" --hold "$HOLD" --friends "$FRIENDS" --data-dir "$data" --prefix "b$(echo "$stamp" | tr "[:upper:]" "[:lower:]")c$c" --out "$out" >/dev/null &
  pids+=($!)
done
for p in "${pids[@]: -$CLIENTS}"; do wait "$p"; done

python3 - "$NODES" "$SOCKETS" "$stamp" "$FRIENDS" "$RATE" "$PIN" "${outs[@]}" <<'PY'
import json, sys
nodes, sockets, stamp, friends, rate, pin, outs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7:]
runs = [json.load(open(o)) for o in outs]
ready = sum(r["sockets_ready"] for r in runs)
alive = sum(r["sockets_alive_after_hold"] for r in runs)
p99 = max(r["identify_latency_ms"]["p99"] for r in runs)
p50 = max(r["identify_latency_ms"]["p50"] for r in runs)
# Memory: the last client to finish measured every node after all its sockets were up.
per = [n for n in runs[-1]["nodes"]]
total_growth = sum(max(0, (n["rss_after_kib"] or 0) - (n["rss_before_kib"] or 0)) for n in per)
kb = total_growth * 1024 / max(ready, 1) / 1024
rss = ", ".join(f'{(n["rss_after_kib"] or 0)/1024:.0f} MiB' for n in per)
asked = str(sockets)
notes = [f"{rate}/s"] + ([f"{friends} friends each"] if friends else []) + (["pinned"] if pin == "1" else [])
asked += " (" + ", ".join(notes) + ")"
row = f"| {stamp} | {nodes} | {asked} | {ready} | {alive} | {p50:.1f} | {p99:.1f} | {kb:.1f} | {rss} |"
# The row goes at the end of the idle table (the first section of summary.md).
path = "bench/results/summary.md"
text = open(path).read()
nxt = text.find("\n## ")
if nxt < 0:
    text = text.rstrip("\n") + "\n" + row + "\n"
else:
    text = text[:nxt].rstrip("\n") + "\n" + row + "\n" + text[nxt:]
open(path, "w").write(text)
print(row)
PY
server_problems=$(cat "$data"/node*.log | grep -cE 'WARN|ERROR|panicked' || true)
echo "server logs: $server_problems warning/error lines (under $data)"
