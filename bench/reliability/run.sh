#!/usr/bin/env bash
# Runs the failure drills on a local stack of 3 instances over PostgreSQL and writes
# docs/reliability.md from what `infra verify --stack local --drills` measured (keeping the
# section bench/reliability/backup_drill.sh writes).
#
# The stack lives in a scratch folder with its own ports and its own database
# (rustlb_drills_<pid>, dropped at the end); every drill is bounded in requests and time and
# sends traffic only to 127.0.0.1.
#
# Env: PG_URL (postgres://postgres@127.0.0.1:5432), LB_PORT (18480), FIRST_PORT (18481),
#      OUT (docs/reliability.md), PROFILE (release).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
LB_PORT=${LB_PORT:-18480}
FIRST_PORT=${FIRST_PORT:-18481}
OUT=${OUT:-$ROOT/docs/reliability.md}
PROFILE=${PROFILE:-release}
DB=rustlb_drills_$$
API_KEY=drills-key-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

CHECK_INTERVAL=2
# shellcheck source=bench/reliability/common.sh
. "$ROOT/bench/reliability/common.sh"
drill_setup
"$INFRA" up --stack local --detach >/dev/null
"$INFRA" verify --stack local --drills --json >"$WORK/report.json" || true
"$INFRA" verify --stack local >"$WORK/verify.txt" || true
"$INFRA" destroy --stack local >/dev/null

python3 - "$WORK/report.json" "$WORK/verify.txt" "$OUT" "$(nproc)" "$(date -u +%Y-%m-%d)" <<'PY'
import json, sys
report_path, verify_path, out, cores, day = sys.argv[1:6]
r = json.load(open(report_path))
rows = []
for d in r["drills"]:
    failed = ", ".join(f"{n} ({k})" for k, n in d["failures"].items()) or "0"
    ms = lambda v: "-" if v is None else f"{v} ms"
    rows.append(f"| {d['name']} | {d['load']} | {d['requests']} | {failed} | {d['lost_log_rows']} | "
                f"{ms(d['slowest_503_ms'])} | {ms(d['recovery_ms'])} | {d['goal']} | {'PASS' if d['passed'] else 'FAIL'} |")
notes = "\n".join(f"- {d['name']}: {d['note']}" for d in r["drills"] if d["note"])
text = f"""# Reliability drills

What happens to clients, and to the request log, when instances die, restart or lose their
database. Produced by `bash bench/reliability/run.sh` on {day} ({cores} cores, shared machine):
a local stack of 3 instances over PostgreSQL behind the embedded load balancer as the shipped
local stack runs it (health check every 2 s, timeout 1 s, out after 3 failures or at once on a
503 `draining`, back after 2 passes; least outstanding requests; 504 after 10 s without an
answer, out after 2 of those in a row), so each instance drains 3 s after SIGTERM, then

```sh
infra verify --stack local --drills
```

Each drill sends bounded load through the load balancer (8 clients, 2 ms apart; 10 ms in the
40 s outage, to stay within the bound of 50,000 requests) and counts:
requests without a 2xx answer, and `requests_log` rows missing for requests an instance
answered (every answer's `X-Request-Id` is the key of the row its instance must write).

| drill | what happens | goal |
|---|---|---|
| kill -9 one instance, reads | SIGKILL to `local-2` 1.5 s into 6 s of reads; the supervisor takes it out of rotation and restarts it, and it replays its request-log spool | 0 failed requests, 0 lost and 0 duplicate log rows |
| kill -9 one instance, writes | the same under alternating GET /server-info and POST /api/users | only the writes in flight at the kill fail (502: they may have been stored, so they are never replayed); 0 lost and 0 duplicate log rows |
| rolling restart, reads | `infra restart --stack local`: each instance leaves rotation, gets SIGTERM, drains, starts again and passes its checks before the next one goes | 0 failed requests, 0 lost rows |
| rolling restart, writes | the same under alternating GET /server-info and POST /api/users | 0 failed requests, 0 lost rows |
| outside SIGTERM roll | SIGTERM by pid to each instance in turn (as `systemctl stop`, an operator's `kill` or the OOM killer's polite stage would send it, never through the supervisor) under reads and writes; the next once the last is back in rotation | 0 failed requests, 0 lost rows |
| frozen backend | SIGSTOP to `local-2` for 8 s under reads and writes (it accepts connections and answers nothing), then SIGCONT | the others answer in every second of the freeze, only 504s (on SQLite also 503s while the frozen instance holds the write lock), 0 lost rows |
| database outage, 40 s | the database refuses every connection for 40 s, longer than the 30 s after which `/health` used to give up on it (`ALTER DATABASE ... ALLOW_CONNECTIONS false` and its sessions terminated) under reads and writes | reads answer throughout; writes get only fast (< 100 ms) 503 `database_unavailable`; 0 lost rows; writes back within 3 s |
| full disk (SQLite) | beside the stack, one instance of the build on SQLite in a 4 MB tmpfs that is filled up under writes, then given its space back (needs root) | 0 writes acknowledged but not stored; only JSON 503/507 while full; `/health` names the storage; writes back within 5 s, no restart |
| rollout, build fails its health check | `infra rollout` of a build on an empty database it may not migrate (its `/health` answers 503), under reads and writes | refused by the health gate before any traffic; 0 failed requests, 0 lost rows |
| rollout, build answers 5xx on POST /api/users | `infra rollout` of a build whose database is read-only (reads answer, writes fail) | refused by verify's checks before any traffic; 0 failed requests, 0 lost rows |
| rollout, good build | `infra rollout` of the same build the stack runs: started beside, gated, switched, watched 3 s, the old instances retired | rolled out; 0 failed requests, 0 lost rows |

During the outage every instance stays in rotation: `/health` answers 200 `degraded` for as
long as the database is away, because the database is shared and failing every instance's
check would take the whole service out (reads that need no database too) and keep it out
until `healthyThreshold` checks pass after the database returns. Requests that need the
database get 503 `database_unavailable` with `Retry-After` at once; their log rows wait in
each instance's on-disk spool and are written when the database is back.

## Results

| drill | load | requests | failed | lost log rows | slowest 503 | recovery | goal | result |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{notes}

Each instance appends every request-log row to its own spool file before it answers, and
writes to the database from there, storing its position in the spool in the same transaction:
a kill -9 loses no row, since the restarted instance replays the spool from where the database
left off (only a crash of the machine could lose the rows the kernel had not written back). A
graceful stop (SIGTERM, a rolling restart) writes the spool before exit.

## The checks around the drills

```
{open(verify_path).read().rstrip()}
```
"""
# backup_drill.sh writes its own section, and the comparison with DigitalOcean's load balancer
# is written by hand from a DIGITALOCEAN_LB=1 run; keep them.
import os, re
if os.path.exists(out):
    for name in ("digitalocean-lb", "backup-drill"):
        kept = re.search(rf"<!-- {name} -->.*?<!-- /{name} -->\n", open(out).read(), re.S)
        if kept:
            text = text.rstrip() + "\n\n" + kept.group(0)
open(out, "w").write(text)
print(f"wrote {out}")
PY
