# Shared by bench/app/run.sh and bench/app/write_path.sh (sourced, not run): settings, the app's
# start and stop on a database of its own, and wrk runs summarised as one table row.
#
# Sets PG, PG_PARAMS, DB, APP_PORT, DURATION, CONNS; needs wrk and psql (wrk is installed with
# apt-get if missing). Callers set APP_BIN before start_app.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}   # anchors.md measured the Node.js app with 32 connections
PG=${PG:-postgres://postgres@127.0.0.1:5432}
# Plain TCP, as the Node.js app's `pg` client connects unless told otherwise: TLS on loopback
# protects nothing and costs both sides CPU (production URLs say sslmode=require).
PG_PARAMS=${PG_PARAMS:-?sslmode=disable}
DB=${DB:-rustlb_bench}
APP_PORT=${APP_PORT:-3901}
APP_LOG=/tmp/rustlb-bench-app.log
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rustlb-target}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { echo "psql is needed" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

fresh_db() { PGOPTIONS=--client-min-messages=warning psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null; }

wait_port() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/${2:-}" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 did not answer" >&2; exit 1; }

start_app() { # extra settings as VAR=value arguments, e.g. APP__STATS__CACHE_MS=0
  env APP_ENVIRONMENT=production APP__APPLICATION__HOST=127.0.0.1 APP__APPLICATION__PORT="$APP_PORT" \
    APP__APPLICATION__SERVER_ID=bench-1 APP__DATABASE__URL="$PG/$DB$PG_PARAMS" \
    APP__DATABASE__RUN_MIGRATIONS=true RUST_LOG="${RUST_LOG:-warn}" "$@" \
    "$APP_BIN" >"$APP_LOG" 2>&1 &
  APP_PID=$!
  PIDS+=("$APP_PID")
  wait_port "$APP_PORT" health
}
stop_app() { kill -TERM "$APP_PID"; wait "$APP_PID" 2>/dev/null || true; }

# wrk's summary as "req/s | p50 | p99 | errors"
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

# The release binary of package app for the workspace in $1 (default: this one), built in
# CARGO_TARGET_DIR; its path printed.
build_app() {
  (cd "${1:-.}" && cargo build --release -q -p app --message-format=json) |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "app" and .executable != null) | .executable'
}
