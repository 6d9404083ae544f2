#!/usr/bin/env bash
# Benchmarks one app instance on PostgreSQL with wrk, beside a bare hyper hello-world, on
# loopback only. Prints Markdown tables; docs/benchmarks.md records a run.
#
#   bash bench/app/run.sh            # all runs (about 15 minutes, 2 of them seeding 10M rows)
#   DURATION=5s SEED_ROWS=1000000 bash bench/app/run.sh
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), as on our machines.
# PG_PARAMS (default ?sslmode=disable) is appended to the database URL the app gets.
source "$(dirname "$0")/common.sh"
HELLO_PORT=${HELLO_PORT:-3902}
SEED_ROWS=${SEED_ROWS:-10000000}

APP_BIN=$(build_app)
cargo build --release -q -p lb --example hello_backend
HELLO_BIN=$CARGO_TARGET_DIR/release/examples/hello_backend

fresh_db

rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# requests_log's rows and disk, heap (with TOAST) and indexes apart, summed over partitions.
log_footprint() {
  psql -qtA -F ' ' "$PG/$DB" -c "SELECT count(*) FROM requests_log" \
    -c "SELECT sum(pg_total_relation_size(relid) - pg_indexes_size(relid)), sum(pg_indexes_size(relid))
        FROM pg_partition_tree('requests_log') WHERE isleaf" |
    paste -sd' ' | awk '{printf "%d rows: heap %.1f MB, indexes %.1f MB; per million rows %.1f MB (heap %.1f + indexes %.1f)\n",
      $1, $2 / 1e6, $3 / 1e6, ($2 + $3) / $1, $2 / $1, $3 / $1}'
}

echo "| request | req/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|"

"$HELLO_BIN" "$HELLO_PORT" >/dev/null 2>&1 &
PIDS+=("$!")
wait_port "$HELLO_PORT"
echo "| bare hyper hello-world | $(run_wrk "http://127.0.0.1:$HELLO_PORT/") |"

start_app
USER_ID=$(curl -sf -XPOST "http://127.0.0.1:$APP_PORT/api/users" -H 'content-type: application/json' \
  -d '{"name":"Bench","email":"bench-fixed@example.com"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "| GET /health | $(run_wrk "http://127.0.0.1:$APP_PORT/health") |"
echo "| GET /server-info (request log on) | $(run_wrk "http://127.0.0.1:$APP_PORT/server-info") |"
echo "| GET /api/users/:id | $(run_wrk "http://127.0.0.1:$APP_PORT/api/users/$USER_ID") |"
echo "| POST /api/users | $(run_wrk "http://127.0.0.1:$APP_PORT/api/users" -s bench/app/post_users.lua) |"
sleep 1
LOGGED=$(psql -qtA "$PG/$DB" -c "SELECT count(*) FROM requests_log")
WRITTEN_FOOTPRINT=$(log_footprint)
DROPPED=$(curl -sf "http://127.0.0.1:$APP_PORT/metrics" | awk '/^request_log_dropped_total/ {print $2}')
APP_RSS=$(rss_kb "$APP_PID")
stop_app

start_app APP__REQUEST_LOG__ENABLED=false
echo "| GET /server-info (request log off) | $(run_wrk "http://127.0.0.1:$APP_PORT/server-info") |"
stop_app

# Request log on vs off, in alternating pairs so the drift of this shared machine hits both
# alike; the ratio is the median over the pairs.
PAIRS=${PAIRS:-3}
PAIR_ROWS=""
for path in /server-info "/api/users/$USER_ID"; do
  ons=() offs=() ratios=()
  for _ in $(seq 1 "$PAIRS"); do
    start_app
    on=$(run_wrk "http://127.0.0.1:$APP_PORT$path" | cut -d'|' -f1 | tr -d ' ')
    stop_app
    start_app APP__REQUEST_LOG__ENABLED=false
    off=$(run_wrk "http://127.0.0.1:$APP_PORT$path" | cut -d'|' -f1 | tr -d ' ')
    stop_app
    ons+=("$on"); offs+=("$off"); ratios+=("$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.2f", a / b}')")
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  label=$path; [ "$path" != /server-info ] && label="/api/users/:id"
  PAIR_ROWS+="| GET $label | ${ons[*]} | ${offs[*]} | ${ratios[*]} | $median |"$'\n'
done

# SEED_ROWS log rows over a week for three servers in day partitions, their rollups and 30 days
# of hour rollups (bench/app/seed_log.sql). The app runs with its schema in place first.
psql -q -v ON_ERROR_STOP=1 -v rows="$SEED_ROWS" -f bench/app/seed_log.sql "$PG/$DB"
SEEDED_FOOTPRINT=$(log_footprint)
ROLLUP=$(psql -qtA -F ' ' "$PG/$DB" -c "SELECT count(*), pg_total_relation_size('request_stats') FROM request_stats")
start_app
echo "| GET /api/stats, all time (cache 1 s, the default) | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats") |"
echo "| GET /api/stats?window=24h (cache 1 s) | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats?window=24h") |"
stop_app
start_app APP__STATS__CACHE_MS=0
echo "| GET /api/stats?window=24h, cache off | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats?window=24h") |"
echo "| GET /api/stats?window=24h, cache off, one client (-c1) | $(CONNS=1 run_wrk "http://127.0.0.1:$APP_PORT/api/stats?window=24h") |"
echo "| GET /api/stats?window=1h, cache off | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats?window=1h") |"
echo "| GET /api/stats, all time (30 days of hour rows), cache off | $(run_wrk "http://127.0.0.1:$APP_PORT/api/stats") |"
STATS_RSS=$(rss_kb "$APP_PID")
stop_app

# Retention of 5 days: the first maintenance run (5 s after start) drops the oldest two days'
# partitions, the oldest a part day. Then, for contrast, one whole day deleted row by row from
# a plain table holding that day.
RUST_LOG=info start_app APP__REQUEST_LOG__RETENTION_DAYS=5
for _ in $(seq 1 100); do grep -q '"request log maintenance"' "$APP_LOG" && break; sleep 0.2; done
MAINTENANCE=$( (grep '"request log maintenance"' "$APP_LOG" || echo '{}') | head -1 |
  jq -r '"\(.partitions_dropped) partitions (\(.log_rows_removed) rows, estimated) dropped in a run of \(.took_ms) ms (\(.partitions_created) created, \(.rollup_rows_removed) rollup rows removed)"')
stop_app
DAY=$(psql -qtA "$PG/$DB" -c "SELECT min(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'requests_log'::regclass AND c.relname ~ '^requests_log_p[0-9]{8}$'")
DELETE_DAY=$(psql -qtA "$PG/$DB" <<SQL | tr '\n' ' '
CREATE TABLE bench_plain_day AS SELECT * FROM $DAY;
CREATE INDEX ON bench_plain_day (created_at);
SELECT count(*) || ' rows, ' || pg_size_pretty(pg_total_relation_size('bench_plain_day')) || ' before;'
FROM bench_plain_day;
\\timing on
DELETE FROM bench_plain_day;
\\timing off
SELECT pg_size_pretty(pg_total_relation_size('bench_plain_day')) || ' after the DELETE';
DROP TABLE bench_plain_day;
SQL
)

echo
echo "Request log on vs off, $PAIRS alternating pairs (req/s):"
echo
echo "| request | log on | log off | on / off per pair | median |"
echo "|---|---|---|---|---|"
printf '%s' "$PAIR_ROWS"
echo
echo "requests_log rows written during the first log-on runs: $LOGGED; dropped: ${DROPPED:-0}"
echo "app peak resident memory (VmHWM): first run ${APP_RSS} kB, stats run ${STATS_RSS} kB"
echo
echo "requests_log as the app wrote it: $WRITTEN_FOOTPRINT"
echo "requests_log as seeded: $SEEDED_FOOTPRINT"
echo "request_stats (rows, bytes): $ROLLUP"
echo "maintenance with a retention of 5 days: $MAINTENANCE"
echo "one day deleted row by row from a plain table instead: $DELETE_DAY"
