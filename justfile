# SyncTalk recipes. The README's two commands need only cargo; these are shortcuts.

# Run the server (its own PostgreSQL under ./.data unless DATABASE_URL is set).
run:
    cargo run --release

# Every test, against real PostgreSQL.
test:
    cargo test --workspace

# What CI runs: fmt, clippy, tests and the contract checks.
ci:
    bash .ci/run

# Regenerate openapi/openapi.json from the code.
openapi:
    cargo run -q -p synctalk-app -- openapi > openapi/openapi.json

# Regenerate crates/db/src/schema.rs from the migrations.
schema:
    diesel print-schema --database-url "$(cargo run -q -p synctalk-testkit --bin synctalk-testdb)" > crates/db/src/schema.rs

# Lint openapi/openapi.json with spectral (.spectral.yaml).
lint-openapi:
    npx --yes @stoplight/spectral-cli@6.15.0 lint openapi/openapi.json --ruleset .spectral.yaml --fail-severity=warn

# Schemathesis against openapi/openapi.json and a real server (as CI runs it).
schemathesis:
    .ci/schemathesis

# Fuzz each target for SECONDS (default 30) from the committed corpus, as CI does.
fuzz seconds="30":
    .ci/fuzz {{seconds}}

# Validate asyncapi.yaml.
asyncapi:
    npx --yes @asyncapi/cli@4.1.1 validate asyncapi.yaml

# Stop and delete the local development cluster (./.data); the next run makes a new one.
db-reset:
    -pg_ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -n1); [ -d .data/postgres ] && if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_ctl" stop -D "$PWD/.data/postgres" -m fast; else "$pg_ctl" stop -D .data/postgres -m fast; fi
    rm -rf .data

# Benchmark idle gateway sockets (SOCKETS, NODES, RATE, CLIENTS, FRIENDS); writes bench/results/.
bench:
    bash bench/run.sh

# Event-write throughput: the server's PATCH /users/@me against pgbench doing the same
# writes (CLIENTS, DURATION, WARMUP, PAIRS, PGBENCH_MODE, POOL); writes bench/results/.
bench-writes:
    bash bench/writes.sh

# Resuming sessions over an outbox of a million rows (ROWS, SESSIONS, EVENTS,
# PREPUBLISHED); writes bench/results/.
bench-resume-big:
    bash bench/resume-big.sh

# Resume storm: SOCKETS sessions on one node dropped at once, one missed event each, all
# resuming at once (SOCKETS, PER_USER, RATE, VIA); writes bench/results/.
bench-storm:
    bash bench/storm.sh

# A guild of 10,000 members: member pages, joins and kicks under 10 ms at p99, and every
# kick's event at every member socket (results in bench/results/).
bench-guild:
    bash bench/guild.sh

# Messages fanned out to channel members: SyncTalk against the bare broadcast server
# (crates/bare) with the same load tool and parameters, one node and two over NATS
# (SMALL_*, FANOUT_*, BIG_*, PHASES, NODES2); writes bench/results/.
bench-messages:
    bash bench/messages.sh

# Message sends into 32 channels against pgbench's INSERT of the same rows (target 1.5x).
bench-sends:
    REQUEST=send bash bench/writes.sh

# History pages of 50 messages against pgbench's SELECT of the same rows (target 0.8x).
bench-history:
    REQUEST=history bash bench/writes.sh
