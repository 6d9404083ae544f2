#!/usr/bin/env bash
# The backup and restore drill: a local stack of 3 instances over PostgreSQL loses its database
# and gets it back from `infra backup`; writes the results into docs/reliability.md (between
# the backup-drill markers, which run.sh keeps).
#
#   1. Under read load, USERS users are created through the load balancer; every user and
#      every requests_log row in the database is recorded; `infra backup` runs with the load
#      still going. The stack stops, the database is dropped, `infra restore` and `infra up`
#      bring it back, and every recorded user and row must be there (0 lost).
#   2. LOG_ROWS more requests_log rows are inserted with generate_series; backup, stop, drop,
#      restore and up again are timed: the restore time (RTO) at that size.
#
# The stack lives in a scratch folder with its own ports and database (rustlb_backup_<pid>,
# dropped at the end); every loop is bounded and traffic goes only to 127.0.0.1.
#
# Env: PG_URL (postgres://postgres@127.0.0.1:5432), LB_PORT (18580), FIRST_PORT (18581),
#      USERS (2000), LOG_ROWS (1000000), OUT (docs/reliability.md), PROFILE (release).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
LB_PORT=${LB_PORT:-18580}
FIRST_PORT=${FIRST_PORT:-18581}
USERS=${USERS:-2000}
LOG_ROWS=${LOG_ROWS:-1000000}
OUT=${OUT:-$ROOT/docs/reliability.md}
PROFILE=${PROFILE:-release}
DB=rustlb_backup_$$
API_KEY=drill-key-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

CHECK_INTERVAL=1
# shellcheck source=bench/reliability/common.sh
. "$ROOT/bench/reliability/common.sh"
drill_setup
q() { psql -qAt "$PG_URL/$DB" -c "$1"; }
ms() { date +%s%3N; }
# Every user and every log row, whole, one line each, sorted: what "came back" is compared on.
dump_rows() {
    q "COPY (SELECT id, name, email, created_at, updated_at, created_by FROM users) TO STDOUT" | sort >"$1.users"
    q "COPY (SELECT id, created_at, server_id, method, path, status, duration_us, client_ip, request_id FROM requests_log) TO STDOUT" | sort >"$1.log"
}
lost() { comm -23 "$1" "$2" | wc -l; }
# Starts the stack; prints how long until every instance passed its health checks.
up_timed() {
    local t0; t0=$(ms)
    "$INFRA" up --stack local --detach >/dev/null
    echo $(($(ms) - t0))
}

up_timed >/dev/null

# 1. Users under load, an online backup, the database lost, restored: nothing lost.
cat >"$WORK/load.py" <<'PY'
import http.client, json, os, sys, threading, time
port, users, key, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()
result = {"reads": 0, "read_failures": 0, "created": 0, "create_failures": 0}
stop_file = os.path.join(work, "stop")

def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)

def call(c, method, path, body=None, headers={}):
    try:
        c.request(method, path, body, headers)
        r = c.getresponse(); r.read()
        return c, r.status
    except Exception:
        c.close()
        return conn(), None

def reader():
    c = conn()
    for _ in range(100_000):  # bounded; ends when the shell says the backup is done
        if os.path.exists(stop_file):
            break
        c, status = call(c, "GET", "/server-info")
        with lock:
            result["reads" if status == 200 else "read_failures"] += 1
        time.sleep(0.005)

def writer(first, count):
    c = conn()
    for i in range(first, first + count):
        body = json.dumps({"name": f"drill user {i}", "email": f"drill{i}@backup.test"})
        c, status = call(c, "POST", "/api/users", body,
                         {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        with lock:
            result["created" if status == 201 else "create_failures"] += 1

readers = [threading.Thread(target=reader) for _ in range(4)]
for t in readers: t.start()
per = users // 4
writers = [threading.Thread(target=writer, args=(w * per, per if w < 3 else users - 3 * per))
           for w in range(4)]
t0 = time.time()
for t in writers: t.start()
for t in writers: t.join()
result["create_seconds"] = round(time.time() - t0, 1)
with open(os.path.join(work, "created.json"), "w") as f:
    json.dump(result, f)
for t in readers: t.join()
print(json.dumps(result))
PY
python3 "$WORK/load.py" "$LB_PORT" "$USERS" "$API_KEY" "$WORK" >"$WORK/load.json" &
LOAD_PID=$!
for _ in $(seq 600); do [ -s "$WORK/created.json" ] && break; sleep 0.5; done
[ -s "$WORK/created.json" ] || { echo "the writers did not finish" >&2; exit 1; }
sleep 1 # one flush interval (250 ms) and then some: the writers' log rows are in
dump_rows "$WORK/before"
BEFORE_USERS=$(wc -l <"$WORK/before.users")
BEFORE_LOG=$(wc -l <"$WORK/before.log")
T0=$(ms)
"$INFRA" backup --stack local --out "$WORK/small.pgdump" 2>/dev/null
BACKUP1_MS=$(($(ms) - T0))
SMALL_BYTES=$(stat -c %s "$WORK/small.pgdump")
touch "$WORK/stop"
wait "$LOAD_PID"
"$INFRA" destroy --stack local >/dev/null
psql -q "$PG_URL/postgres" -c "DROP DATABASE $DB WITH (FORCE)"
T0=$(ms)
"$INFRA" restore --stack local --from "$WORK/small.pgdump" 2>/dev/null
RESTORE1_MS=$(($(ms) - T0))
UP1_MS=$(up_timed)
dump_rows "$WORK/after"
LOST_USERS=$(lost "$WORK/before.users" "$WORK/after.users")
LOST_LOG=$(lost "$WORK/before.log" "$WORK/after.log")
# Through the API too: every recorded user answers GET /api/users/:id.
API_MISSING=$(cut -f1 "$WORK/before.users" | python3 -c '
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
missing = 0
for line in sys.stdin:
    c.request("GET", "/api/users/" + line.strip()); r = c.getresponse(); r.read()
    missing += r.status != 200
print(missing)' "$LB_PORT")

# 2. The restore time at LOG_ROWS more request log rows.
T0=$(ms)
q "INSERT INTO requests_log (server_id, method, path, status, duration_us, client_ip, request_id, created_at)
   SELECT 'local-' || (1 + i % 3), 'GET', '/server-info', 200, 150 + i % 900, '127.0.0.1',
          md5(i::text), now() - (i % 72000) * interval '1 second'
   FROM generate_series(1, $LOG_ROWS) AS i" >/dev/null
INSERT_MS=$(($(ms) - T0))
checksum() {
    q "SELECT count(*) || ' rows, hash ' || sum(hashtextextended(id || '|' || created_at || '|' || server_id || '|' || request_id || '|' || status || '|' || duration_us, 0)) FROM requests_log"
}
LOG_TOTAL=$(q "SELECT count(*) FROM requests_log")
SUM_BEFORE=$(checksum)
DB_BYTES=$(q "SELECT pg_database_size(current_database())")
T0=$(ms)
"$INFRA" backup --stack local --out "$WORK/big.pgdump" 2>/dev/null
BACKUP2_MS=$(($(ms) - T0))
DUMP_BYTES=$(stat -c %s "$WORK/big.pgdump")
"$INFRA" destroy --stack local >/dev/null
psql -q "$PG_URL/postgres" -c "DROP DATABASE $DB WITH (FORCE)"
T0=$(ms)
"$INFRA" restore --stack local --from "$WORK/big.pgdump" 2>/dev/null
RESTORE2_MS=$(($(ms) - T0))
UP2_MS=$(up_timed)
SUM_AFTER=$(checksum)
"$INFRA" destroy --stack local >/dev/null

cat >"$WORK/numbers.json" <<EOF
{"users": $USERS, "log_rows": $LOG_ROWS, "before_users": $BEFORE_USERS, "before_log": $BEFORE_LOG,
 "backup1_ms": $BACKUP1_MS, "small_bytes": $SMALL_BYTES, "restore1_ms": $RESTORE1_MS,
 "up1_ms": $UP1_MS, "lost_users": $LOST_USERS, "lost_log": $LOST_LOG, "api_missing": $API_MISSING,
 "insert_ms": $INSERT_MS, "log_total": $LOG_TOTAL, "db_bytes": $DB_BYTES,
 "backup2_ms": $BACKUP2_MS, "dump_bytes": $DUMP_BYTES, "restore2_ms": $RESTORE2_MS,
 "up2_ms": $UP2_MS, "sum_before": "$SUM_BEFORE", "sum_after": "$SUM_AFTER"}
EOF
cat "$WORK/numbers.json" "$WORK/load.json"

python3 - "$OUT" "$(nproc)" "$(date -u +%Y-%m-%d)" "$WORK/numbers.json" "$WORK/load.json" <<'PY'
import json, re, sys
out, cores, day, numbers, load = sys.argv[1:6]
n = json.load(open(numbers))
load = json.load(open(load))
s = lambda ms: f"{ms / 1000:.1f} s"
mb = lambda b: f"{b / 1e6:.1f} MB"
same = n["sum_before"] == n["sum_after"]
passed = n["lost_users"] + n["lost_log"] + n["api_missing"] == 0 and same
section = f"""<!-- backup-drill -->
## Backup and restore

Produced by `bash bench/reliability/backup_drill.sh` on {day} ({cores} cores, shared machine):
the same kind of local stack (3 instances over PostgreSQL 15, release build), then

1. under read load (4 clients, GET /server-info through the load balancer), {n['users']} users
   created through it by 4 writers; every user and every `requests_log` row then in the
   database recorded; `infra backup --stack local` with the read load still running (pg_dump
   reads one snapshot); the stack stopped (`infra destroy`), the database dropped
   (`DROP DATABASE ... WITH (FORCE)`), `infra restore --stack local --from FILE`, `infra up`;
   every recorded user and row compared, whole, with what is there after;
2. {n['log_rows']:,} more `requests_log` rows inserted with `generate_series`; backup, stop,
   drop, restore and up again, timed.

| step | measured |
|---|---|
| users created under load | {load['created']} in {load['create_seconds']} s ({load['create_failures']} failed); {load['reads']} reads beside them and through the backup ({load['read_failures']} failed) |
| recorded before the backup | {n['before_users']} users, {n['before_log']} `requests_log` rows |
| online backup | {s(n['backup1_ms'])}, {mb(n['small_bytes'])} |
| restore into the dropped database | {s(n['restore1_ms'])}, then `up` until 3 instances are healthy {s(n['up1_ms'])} |
| lost after the restore | {n['lost_users']} users, {n['lost_log']} `requests_log` rows; {n['api_missing']} users missing through `GET /api/users/:id` |
| {n['log_rows']:,} rows inserted | {s(n['insert_ms'])}; `requests_log` then {n['log_total']:,} rows, database {mb(n['db_bytes'])} on disk |
| backup at that size | {s(n['backup2_ms'])}, {mb(n['dump_bytes'])} (custom format, compressed) |
| **restore (RTO) at that size** | **{s(n['restore2_ms'])}**, then `up` {s(n['up2_ms'])}: service back {s(n['restore2_ms'] + n['up2_ms'])} after the restore started |
| the big restore, checked | `requests_log` {'identical' if same else 'NOT identical'} (count and a hash of every row: {n['sum_after']}) |

Result: **{'PASS' if passed else 'FAIL'}** (goal: 0 users and 0 rows lost; the restored log
identical to the backed-up one).

pg_restore loads into a scratch database (`--jobs` up to 4, `--exit-on-error`) that replaces
the stack's only once it is complete, so a failed restore leaves things as they were. A
backup holds what was committed when it started: rows an instance still had queued then (at
most one flush interval, 250 ms, of traffic) and everything written after it are lost with
the database, so the data at risk is what the last backup interval wrote (RPO).
<!-- /backup-drill -->
"""
text = open(out).read()
pattern = re.compile(r"<!-- backup-drill -->.*?<!-- /backup-drill -->\n", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: section, text)
else:
    text = text.rstrip() + "\n\n" + section
open(out, "w").write(text)
print(f"wrote the backup drill into {out}")
PY
