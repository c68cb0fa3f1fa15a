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
