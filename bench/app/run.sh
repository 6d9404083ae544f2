#!/usr/bin/env bash
# Benchmarks one app instance on PostgreSQL with wrk, beside a bare hyper hello-world, on
# loopback only. Prints a Markdown table; docs/benchmarks.md records a run.
#
#   bash bench/app/run.sh            # all runs (about 10 minutes, a third of it seeding 1M rows)
#   DURATION=5s bash bench/app/run.sh
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), as on our machines.
# PG_PARAMS (default ?sslmode=disable) is appended to the database URL the app gets.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}   # anchors.md measured the Node.js app with 32 connections
PG=${PG:-postgres://postgres@127.0.0.1:5432}
# Plain TCP, as the Node.js app's `pg` client connects unless told otherwise: TLS on loopback
# protects nothing and costs both sides CPU (production URLs say sslmode=require).
PG_PARAMS=${PG_PARAMS:-?sslmode=disable}
DB=rustlb_bench
APP_PORT=${APP_PORT:-3901}
HELLO_PORT=${HELLO_PORT:-3902}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lbinfra-target}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { echo "psql is needed" >&2; exit 1; }

cargo build --release -q -p app
cargo build --release -q -p lb --example hello_backend
APP_BIN=$CARGO_TARGET_DIR/release/app
HELLO_BIN=$CARGO_TARGET_DIR/release/examples/hello_backend

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null

wait_port() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/${2:-}" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 did not answer" >&2; exit 1; }

start_app() { # $1 = request log on/off
  APP_ENVIRONMENT=production APP__APPLICATION__HOST=127.0.0.1 APP__APPLICATION__PORT=$APP_PORT \
  APP__APPLICATION__SERVER_ID=bench-1 APP__DATABASE__URL="$PG/$DB$PG_PARAMS" APP__DATABASE__RUN_MIGRATIONS=true \
  APP__REQUEST_LOG__ENABLED=$1 APP__STATS__CACHE_MS=${2:-1000} RUST_LOG=warn \
    "$APP_BIN" >/tmp/rustlb-bench-app.log 2>&1 &
  APP_PID=$!
  PIDS+=("$APP_PID")
  wait_port "$APP_PORT" health
}
stop_app() { kill -TERM "$APP_PID"; wait "$APP_PID" 2>/dev/null || true; }

# wrk's summary as "req/s | p50 | p99"
run_wrk() { # $1 url, rest: extra wrk args
  local url=$1; shift
  local threads=2
  [ "$CONNS" -lt 2 ] && threads=1
  wrk -t"$threads" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" > /tmp/rustlb-wrk.txt
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' /tmp/rustlb-wrk.txt)
  p50=$(awk '$1=="50%" {print $2}' /tmp/rustlb-wrk.txt)
  p99=$(awk '$1=="99%" {print $2}' /tmp/rustlb-wrk.txt)
  errors=$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' /tmp/rustlb-wrk.txt)
  echo "$rps | $p50 | $p99 | ${errors:-none}"
}

rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

echo "| request | req/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|"

"$HELLO_BIN" "$HELLO_PORT" >/dev/null 2>&1 &
PIDS+=("$!")
wait_port "$HELLO_PORT"
echo "| bare hyper hello-world | $(run_wrk "http://127.0.0.1:$HELLO_PORT/") |"

start_app true
USER_ID=$(curl -sf -XPOST "http://127.0.0.1:$APP_PORT/api/users" -H 'content-type: application/json' \
  -d '{"name":"Bench","email":"bench-fixed@example.com"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "| GET /health | $(run_wrk "http://127.0.0.1:$APP_PORT/health") |"
echo "| GET /server-info (request log on) | $(run_wrk "http://127.0.0.1:$APP_PORT/server-info") |"
echo "| GET /api/users/:id | $(run_wrk "http://127.0.0.1:$APP_PORT/api/users/$USER_ID") |"
echo "| POST /api/users | $(run_wrk "http://127.0.0.1:$APP_PORT/api/users" -s bench/app/post_users.lua) |"
sleep 1
LOGGED=$(psql -qtA "$PG/$DB" -c "SELECT count(*) FROM requests_log")
DROPPED=$(curl -sf "http://127.0.0.1:$APP_PORT/metrics" | awk '/^request_log_dropped_total/ {print $2}')
APP_RSS=$(rss_kb "$APP_PID")
stop_app

start_app false
echo "| GET /server-info (request log off) | $(run_wrk "http://127.0.0.1:$APP_PORT/server-info") |"
stop_app

# Request log on vs off, in alternating pairs so the drift of this shared machine hits both
# alike; the ratio is the median over the pairs.
PAIRS=${PAIRS:-3}
PAIR_ROWS=""
for path in /server-info "/api/users/$USER_ID"; do
  ons=() offs=() ratios=()
  for _ in $(seq 1 "$PAIRS"); do
    start_app true
    on=$(run_wrk "http://127.0.0.1:$APP_PORT$path" | cut -d'|' -f1 | tr -d ' ')
    stop_app
    start_app false
    off=$(run_wrk "http://127.0.0.1:$APP_PORT$path" | cut -d'|' -f1 | tr -d ' ')
    stop_app
    ons+=("$on"); offs+=("$off"); ratios+=("$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.2f", a / b}')")
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  label=$path; [ "$path" != /server-info ] && label="/api/users/:id"
  PAIR_ROWS+="| GET $label | ${ons[*]} | ${offs[*]} | ${ratios[*]} | $median |"$'\n'
done

# 1M log rows over a day for three servers, and the matching minute and hour rollups (same
# bucket formula as app/src/stats.rs: floor(8 * log2(duration_us))).
psql -q -v ON_ERROR_STOP=1 "$PG/$DB" <<'SQL'
TRUNCATE requests_log, request_stats;
INSERT INTO requests_log (server_id, method, path, status, duration_us, client_ip, request_id, created_at)
SELECT 'node-' || (g % 3 + 1), 'GET', '/server-info', CASE WHEN g % 97 = 0 THEN 500 ELSE 200 END,
       200 + (g::bigint * 7919) % 20000, '127.0.0.1', 'seed-' || g,
       now() - ((g % 86400) || ' seconds')::interval
FROM generate_series(1, 1000000) AS g;
INSERT INTO request_stats (server_id, span_seconds, bucket_start, latency_bucket, requests, errors, duration_sum_us)
SELECT server_id, span, date_trunc(CASE span WHEN 60 THEN 'minute' ELSE 'hour' END, created_at),
       floor(8 * log(2, duration_us))::int, count(*), count(*) FILTER (WHERE status >= 500), sum(duration_us)
FROM requests_log CROSS JOIN (VALUES (60), (3600)) AS spans(span) GROUP BY 1, 2, 3, 4;
ANALYZE;
SQL
start_app true
echo "| GET /api/stats, 1M log rows, all time | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats") |"
echo "| GET /api/stats?window=1h, 1M log rows | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats?window=1h") |"
stop_app
start_app true 0
echo "| GET /api/stats, 1M log rows, all time, cache off | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats") |"
echo "| GET /api/stats?window=1h, 1M log rows, cache off | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats?window=1h") |"
echo "| GET /api/stats, 1M log rows, cache off, one client (-c1) | $(CONNS=1 run_wrk "http://127.0.0.1:$APP_PORT/api/stats" ) |"
STATS_RSS=$(rss_kb "$APP_PID")
stop_app

echo
echo "Request log on vs off, $PAIRS alternating pairs (req/s):"
echo
echo "| request | log on | log off | on / off per pair | median |"
echo "|---|---|---|---|---|"
printf '%s' "$PAIR_ROWS"
echo
echo "requests_log rows written during the first log-on runs: $LOGGED; dropped: ${DROPPED:-0}"
echo "app peak resident memory (VmHWM): first run ${APP_RSS} kB, stats run ${STATS_RSS} kB"
