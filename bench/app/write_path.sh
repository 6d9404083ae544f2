#!/usr/bin/env bash
# The write path before and after a change, in one run: the app built from BEFORE (a git
# revision; default `git merge-base HEAD main`) and from this working tree take turns on a
# fresh database each, for PAIRS rounds (default 3) of GET /server-info with the request log on
# (every request a requests_log row) and POST /api/users (every request a users row). Prints a
# Markdown table.
#
#   bash bench/app/write_path.sh
#   BEFORE=HEAD~3 PAIRS=5 DURATION=10s bash bench/app/write_path.sh
#   BEFORE_BIN=/tmp/app-before AFTER_BIN=target/release/app bash bench/app/write_path.sh
#
# The BEFORE tree is exported with git archive and built in a target dir of its own,
# $CARGO_TARGET_DIR/before (cargo names the workspace's own crates alike in both trees, so one
# target dir would mix them up); the first run builds its dependencies too. Needs PostgreSQL as
# bench/app/run.sh does.
source "$(dirname "$0")/common.sh"
BEFORE=${BEFORE:-$(git merge-base HEAD main)}
PAIRS=${PAIRS:-3}
TREE=$(mktemp -d)
trap 'cleanup; rm -rf "$TREE"' EXIT

# BEFORE_BIN / AFTER_BIN: release binaries built already (e.g. where a second target dir does
# not fit on the disk: build BEFORE's tree in the same target dir first and copy its binary out).
if [ -z "${BEFORE_BIN:-}" ]; then
  git archive "$BEFORE" | tar -x -C "$TREE"
  BEFORE_BIN=$TREE/app-before
  cp "$(CARGO_TARGET_DIR=$CARGO_TARGET_DIR/before build_app "$TREE")" "$BEFORE_BIN"
fi
if [ -z "${AFTER_BIN:-}" ]; then
  AFTER_BIN=$TREE/app-after
  cp "$(build_app)" "$AFTER_BIN"
fi

# CPU seconds (user + system) of the app and of every PostgreSQL process, from /proc: less at
# the mercy of whatever else runs on the machine than requests per second are.
ticks() { awk '{s += $14 + $15} END {print s + 0}' "$@" 2>/dev/null || echo 0; }
pg_stats() { pgrep -u postgres | sed 's|^|/proc/|; s|$|/stat|'; }
HZ=$(getconf CLK_TCK)

# One wrk run as "req/s app-CPU-us-per-request PostgreSQL-CPU-us-per-request".
measured() { # wrk arguments after the url
  local a0 p0 a1 p1 rps n
  a0=$(ticks "/proc/$APP_PID/stat"); p0=$(ticks $(pg_stats))
  run_wrk "$@" >/dev/null
  a1=$(ticks "/proc/$APP_PID/stat"); p1=$(ticks $(pg_stats))
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' /tmp/rustlb-wrk.txt)
  n=$(awk '/requests in/ {print $1}' /tmp/rustlb-wrk.txt)
  awk -v r="$rps" -v a=$((a1 - a0)) -v p=$((p1 - p0)) -v n="$n" -v hz="$HZ" \
    'BEGIN {printf "%s %.1f %.1f", r, a / hz / n * 1e6, p / hz / n * 1e6}'
}

# One build's turn on a fresh database: both requests, then the log rows dropped.
turn() { # $1 = binary
  APP_BIN=$1
  fresh_db
  start_app
  wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$APP_PORT/server-info" >/dev/null   # warm-up
  local log users dropped
  log=$(measured "http://127.0.0.1:$APP_PORT/server-info")
  users=$(measured "http://127.0.0.1:$APP_PORT/api/users" -s bench/app/post_users.lua)
  sleep 1
  dropped=$(curl -sf "http://127.0.0.1:$APP_PORT/metrics" | awk '/^request_log_dropped_total/ {print $2}')
  stop_app
  echo "$log $users ${dropped:-0}"
}

echo "| round | build | GET /server-info, log on: req/s | app / PostgreSQL CPU per request | POST /api/users: req/s | app / PostgreSQL CPU per request | log rows dropped |"
echo "|---|---|---|---|---|---|---|"
declare -A LOG USERS LOG_PG USERS_PG
for round in $(seq 1 "$PAIRS"); do
  # Alternate which build goes first, so the drift of this shared machine hits both alike.
  order="before after"; [ $((round % 2)) -eq 0 ] && order="after before"
  for build in $order; do
    bin=$BEFORE_BIN; [ "$build" = after ] && bin=$AFTER_BIN
    read -r log log_app log_pg users users_app users_pg dropped < <(turn "$bin")
    LOG[$build]+="$log "; USERS[$build]+="$users "
    LOG_PG[$build]+="$log_pg "; USERS_PG[$build]+="$users_pg "
    echo "| $round | $build | $log | $log_app / $log_pg us | $users | $users_app / $users_pg us | $dropped |"
  done
done
median() { printf '%s\n' $1 | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo
for build in before after; do
  echo "$build ($( [ "$build" = before ] && git rev-parse --short "$BEFORE" || echo "working tree")): medians GET /server-info $(median "${LOG[$build]}") req/s at $(median "${LOG_PG[$build]}") us of PostgreSQL CPU per request, POST /api/users $(median "${USERS[$build]}") req/s at $(median "${USERS_PG[$build]}") us"
done
