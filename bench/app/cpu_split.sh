#!/usr/bin/env bash
# Where the CPU goes per request for GET /server-info with the request log on and off: the
# app process, every PostgreSQL process and wrk, from /proc tick counters over one wrk run.
#
#   bash bench/app/cpu_split.sh          # one run each way, 10 s
#   RUNS=3 DURATION=10s bash bench/app/cpu_split.sh
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
RUNS=${RUNS:-1}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
# Plain TCP, as the Node.js app's `pg` client connects unless told otherwise: TLS on loopback
# protects nothing and costs both sides CPU (production URLs say sslmode=require).
PG_PARAMS=${PG_PARAMS:-?sslmode=disable}
DB=rustlb_cpu
PORT=${APP_PORT:-3911}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rustlb-target}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p app
APP_BIN=$CARGO_TARGET_DIR/release/app
HZ=$(getconf CLK_TCK)

ticks() { awk '{s += $14 + $15} END {print s + 0}' "$@" 2>/dev/null || echo 0; }
pg_stats() { pgrep -u postgres | sed 's|^|/proc/|; s|$|/stat|'; }

one_run() { # $1 = request log true/false
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null 2>&1
  APP_ENVIRONMENT=production APP__APPLICATION__PORT=$PORT APP__APPLICATION__SERVER_ID=bench-1 \
  APP__DATABASE__URL="$PG/$DB$PG_PARAMS" APP__DATABASE__RUN_MIGRATIONS=true APP__REQUEST_LOG__ENABLED=$1 \
  RUST_LOG=warn "$APP_BIN" >/tmp/rustlb-cpu-app.log 2>&1 &
  local app=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  wrk -t2 -c32 -d2s "http://127.0.0.1:$PORT/server-info" >/dev/null   # warm-up
  local a0 p0 a1 p1
  a0=$(ticks "/proc/$app/stat"); p0=$(ticks $(pg_stats))
  /usr/bin/time -f "%U %S" -o /tmp/rustlb-cpu-wrk-time wrk -t2 -c32 -d"$DURATION" \
    "http://127.0.0.1:$PORT/server-info" >/tmp/rustlb-cpu-wrk.txt
  a1=$(ticks "/proc/$app/stat"); p1=$(ticks $(pg_stats))
  kill -TERM "$app"; wait "$app" 2>/dev/null || true
  local reqs rps
  reqs=$(awk '/requests in/ {print $1}' /tmp/rustlb-cpu-wrk.txt)
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' /tmp/rustlb-cpu-wrk.txt)
  awk -v mode="$1" -v rps="$rps" -v n="$reqs" -v a=$((a1 - a0)) -v p=$((p1 - p0)) -v hz="$HZ" \
      -v w="$(awk '{print $1 + $2}' /tmp/rustlb-cpu-wrk-time)" 'BEGIN {
    printf "| %s | %d | %.1f us | %.1f us | %.1f us | %.1f us |\n", (mode == "true" ? "on" : "off"), rps,
      a / hz * 1e6 / n, p / hz * 1e6 / n, w * 1e6 / n, (a / hz + p / hz + w) * 1e6 / n }'
}

echo "| request log | req/s | app CPU per request | PostgreSQL CPU per request | wrk CPU per request | total |"
echo "|---|---|---|---|---|---|"
for _ in $(seq 1 "$RUNS"); do
  one_run false
  one_run true
done
