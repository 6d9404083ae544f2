#!/usr/bin/env bash
# Memory of the lb crate around idle keep-alive connections: RSS (VmRSS) of a fresh lb_bench
# (2 I/O threads, as `infra up` runs it) in front of a hyper hello-world backend, before,
# while IDLE_CONNS (3000) connections that each made one request sit idle for HOLD_SECS (3),
# and SETTLE_SECS (2) after they closed; ROUNDS (3) times in a row. All on 127.0.0.1.
# Prints a markdown table. Env: BASE_PORT (18280), CARGO_TARGET_DIR.
set -euo pipefail

BASE_PORT=${BASE_PORT:-18280}
IDLE_CONNS=${IDLE_CONNS:-3000}
HOLD_SECS=${HOLD_SECS:-3}
SETTLE_SECS=${SETTLE_SECS:-2}
ROUNDS=${ROUNDS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rustlb-target}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B1=$((BASE_PORT + 1))
LB_PORT=$((BASE_PORT + 10))
ulimit -n "$(ulimit -Hn)"

(cd "$ROOT" && cargo build --release -p lb --example hello_backend --example lb_bench --example lb_idle >&2)
BIN=$CARGO_TARGET_DIR/release/examples
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

# shellcheck source=bench/lb/wait_port.sh
. "$ROOT/bench/lb/wait_port.sh"
"$BIN/hello_backend" "$B1" & PIDS+=($!)
wait_port "$B1"
"$BIN/lb_bench" "$LB_PORT" "127.0.0.1:$B1" >/dev/null 2>&1 & LB_PID=$!
PIDS+=($LB_PID)
wait_port "$LB_PORT"
rss() { awk '$1 == "VmRSS:" {printf "%.1f MB", $2 / 1024}' "/proc/$LB_PID/status"; }
# A few requests first, so every thread has served one.
"$BIN/lb_idle" "$LB_PORT" 20 0 >/dev/null

echo "lb_bench, $IDLE_CONNS idle connections held ${HOLD_SECS}s, RSS ${SETTLE_SECS}s after they closed"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD)"
echo
echo "| round | RSS before | RSS while held | RSS after close | answered |"
echo "|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    before=$(rss)
    : >"/tmp/lb_idle.$$"
    "$BIN/lb_idle" "$LB_PORT" "$IDLE_CONNS" "$HOLD_SECS" >"/tmp/lb_idle.$$" &
    client=$!
    for _ in $(seq 1 200); do grep -q '^ready' "/tmp/lb_idle.$$" && break; sleep 0.05; done
    held=$(rss)
    wait "$client"
    sleep "$SETTLE_SECS"
    echo "| $round | $before | $held | $(rss) | $(sed -n 's/^ready: //p' "/tmp/lb_idle.$$") |"
done
rm -f "/tmp/lb_idle.$$"
