#!/usr/bin/env bash
# Benchmarks the lb crate against HAProxy in one run, in front of two hyper hello-world
# backends, all on 127.0.0.1. Prints a markdown table (req/s, p50, p99, ratio vs direct,
# proxy CPU per request, proxy max RSS).
#
# Env: DURATION (10s), CONNS (64), THREADS (2), ROUNDS (1), BASE_PORT (18080),
#      PROFILE (release), WRK_PATH (/); for lb_bench: LB_IO_THREADS (2), LB_THREADS (1), LB_RISE (1).
#      LB_EXTRA_BIN: another lb_bench binary (e.g. built from an earlier commit and copied
#      aside) run as one more row on BASE_PORT+12 against the same backends, named
#      LB_EXTRA_NAME ("lb (extra build)"), so two builds are compared within one run; the
#      proxies' order rotates every round, and the means end with this crate's row over it.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
BASE_PORT=${BASE_PORT:-18080}
WRK_PATH=${WRK_PATH:-/}
TOOLS="wrk haproxy"
EXAMPLES=""
# shellcheck source=bench/lb/common.sh
. "$(dirname "$0")/common.sh"

# utime+stime of a process in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run NAME PORT [PID]: one wrk run; appends a row to $TMP/rows.
run() {
    local name=$1 port=$2 pid=${3:-} before=0 after=0
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port$WRK_PATH" >"$TMP/wrk.out"
    [ -n "$pid" ] && after=$(cpu_ticks "$pid")
    local rps p50 p99 reqs errs
    rps=$(awk '/^Requests\/sec/ {print $2}' "$TMP/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$TMP/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$TMP/wrk.out")
    reqs=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
    errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$TMP/wrk.out")
    local cpu="-" rss="-"
    if [ -n "$pid" ]; then
        cpu=$(awk -v d=$((after - before)) -v t="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')
        rss=$(awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' "/proc/$pid/status")
    fi
    echo "$name|$rps|$p50|$p99|$cpu|$rss|$reqs|${errs:-none}" >>"$TMP/rows"
}

# The proxies measured each round, as "name|port|pid".
PROXIES=("lb (this crate)|$LB_PORT|$LB_PID" "$HA_NAME|$HA_PORT|$HA_PID")
LB_EXTRA_NAME=${LB_EXTRA_NAME:-lb (extra build)}
if [ -n "${LB_EXTRA_BIN:-}" ]; then
    EXTRA_PORT=$((BASE_PORT + 12))
    "$LB_EXTRA_BIN" "$EXTRA_PORT" "127.0.0.1:$B1" "127.0.0.1:$B2" >"$TMP/lb-extra.out" & EXTRA_PID=$!
    PIDS+=($EXTRA_PID)
    wait_port "$EXTRA_PORT"
    for _ in $(seq 1 100); do grep -q '^ready' "$TMP/lb-extra.out" && break; sleep 0.05; done
    PROXIES=("${PROXIES[0]}" "$LB_EXTRA_NAME|$EXTRA_PORT|$EXTRA_PID" "${PROXIES[1]}")
fi

# Warm up pools and caches so the first measured run isn't penalised.
for p in "${PROXIES[@]}"; do
    IFS='|' read -r _ port _ <<<"$p"
    wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port$WRK_PATH" >/dev/null
done

for r in $(seq 1 "$ROUNDS"); do
    run "direct to one backend" "$B1"
    # Rotate the order so no proxy always runs right after the direct run (with two
    # proxies: lb first in odd rounds, HAProxy first in even ones).
    n=${#PROXIES[@]}
    for i in $(seq 0 $((n - 1))); do
        IFS='|' read -r name port pid <<<"${PROXIES[$(((r - 1 + i) % n))]}"
        run "$name" "$port" "$pid"
    done
done

echo
echo "command: wrk -t$THREADS -c$CONNS -d$DURATION --latency http://127.0.0.1:<port>$WRK_PATH (rounds: $ROUNDS)"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| setup | req/s | ratio vs direct | p50 | p99 | proxy CPU per request | proxy max RSS | requests | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F'|' '
    /^direct/ { direct = $2 }
    { ratio = (direct > 0) ? sprintf("%.2f", $2 / direct) : "-"
      cpu = ($5 == "-") ? "-" : $5 " us"
      printf "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, ratio, $3, $4, cpu, $6, $7, $8 }
' "$TMP/rows"
if [ "$ROUNDS" -gt 1 ]; then
    echo
    echo "Means over $ROUNDS rounds (ratio vs the mean direct run):"
    echo
    echo "| setup | req/s | ratio vs direct | proxy CPU per request |"
    echo "|---|---|---|---|"
    awk -F'|' '
        { if (!($1 in n)) name[++k] = $1; n[$1]++; rps[$1] += $2; if ($5 != "-") cpu[$1] += $5 }
        END {
            d = rps["direct to one backend"] / n["direct to one backend"]
            for (i = 1; i <= k; i++) { s = name[i]; m = rps[s] / n[s]
                c = (s ~ /^direct/) ? "-" : sprintf("%.1f us", cpu[s] / n[s])
                printf "| %s | %d | %.2f | %s |\n", s, m, m / d, c } }
    ' "$TMP/rows"
fi
if [ -n "${LB_EXTRA_BIN:-}" ]; then
    echo
    awk -F'|' -v x="$LB_EXTRA_NAME" '
        { n[$1]++; rps[$1] += $2; cpu[$1] += $5 }
        END { s = "lb (this crate)"
            printf "%s over %s (means): req/s %.3f, CPU per request %.3f\n", s, x,
                (rps[s] / n[s]) / (rps[x] / n[x]), (cpu[s] / n[s]) / (cpu[x] / n[x]) }
    ' "$TMP/rows"
fi
