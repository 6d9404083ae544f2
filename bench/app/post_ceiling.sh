#!/usr/bin/env bash
# POST /api/users against PostgreSQL's own single-row insert: pgbench running the same
# `INSERT ... RETURNING` into the same table (same indexes, same user_counts triggers) that a
# create writes, alternating with wrk POSTing to the app, ROUNDS times each, on one database.
# Prints each run and the ratio of the medians (POST / pgbench), then the latency of POST at
# 1, 32 and 128 connections.
#
#   bash bench/app/post_ceiling.sh
#   ROUNDS=3 DURATION=8s CONNS=32 bash bench/app/post_ceiling.sh
#
# Needs PostgreSQL (PG), pgbench and wrk (installed with apt-get when missing); APP_BIN is the
# release app built from this tree unless given.
source "$(dirname "$0")/common.sh"
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8s}
command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-contrib >/dev/null; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
APP_BIN=${APP_BIN:-$(build_app)}
SCRIPT=$(mktemp)
trap 'cleanup; rm -f "$SCRIPT"' EXIT

# What one create writes, as the app writes it: a new v7-like id (random here: pgbench has no
# v7), name, email and its canonical key, both times, the server id; the row back.
cat >"$SCRIPT" <<'SQL'
\set n random(1, 2000000000)
INSERT INTO users (id, name, email, email_key, created_at, updated_at, created_by)
VALUES (gen_random_uuid(), 'Bench ' || :n, 'pgb-' || :client_id || '-' || :n || '-' || random() || '@example.com',
        'pgb-' || :client_id || '-' || :n || '-' || random() || '@example.com', now(), now(), 'pgbench')
RETURNING id, name, email, created_at, updated_at, created_by;
SQL

fresh_db
start_app
seconds=${DURATION%s}
post=() pgb=()
for round in $(seq 1 "$ROUNDS"); do
  row=$(run_wrk "http://127.0.0.1:$APP_PORT/api/users" -s bench/app/post_users.lua)
  post+=("$(echo "$row" | cut -d'|' -f1 | tr -d ' ')")
  echo "round $round POST   -c$CONNS: $row"
  tps=$(pgbench -n -c "$CONNS" -j 2 -T "$seconds" -f "$SCRIPT" "$PG/$DB$PG_PARAMS" 2>/dev/null |
        awk '/^tps/ {printf "%d", $3}')
  pgb+=("$tps")
  echo "round $round pgbench -c$CONNS: $tps tps"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mp=$(median "${post[@]}") mg=$(median "${pgb[@]}")
echo "POST/pgbench = $(echo "scale=2; $mp / $mg" | bc) ($mp / $mg, medians of $ROUNDS runs of $DURATION at -c$CONNS)"

echo "POST latency by connections (req/s | p50 | p99 | errors):"
for c in 1 32 128; do
  echo "  -c$c: $(CONNS=$c run_wrk "http://127.0.0.1:$APP_PORT/api/users" -s bench/app/post_users.lua)"
done
users=$(psql -tA "$PG/$DB" -c "SELECT (SELECT count(*) FROM users), (SELECT sum(users) FROM user_counts)" 2>/dev/null || true)
echo "users and user_counts after the runs: $users"
