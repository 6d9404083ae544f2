#!/usr/bin/env bash
# Slow- and greedy-client attacks on the lb crate and on HAProxy, side by side, in front of
# two hyper hello-world backends, all on 127.0.0.1. Fresh proxy processes, so their peak
# RSS (VmHWM) is this run's. Prints a markdown table.
#
# Attacks (lb/examples/lb_attack.rs; bounded in connections and time):
#   held: HELD_CONNS (100) connections each declare a 1 MiB body, send HELD_BYTES
#         (1,000,000) of it, and hold the connection for HELD_SECS (10).
#   drip: one POST declaring a 1000-byte body, then one byte every DRIP_EVERY_MS (20000)
#         for at most DRIP_MAX_SECS (45); both proxies are dripped at the same time.
#
# Env: BASE_PORT (18180), CARGO_TARGET_DIR; HAProxy gets the config of bench/lb/run.sh.
set -euo pipefail

BASE_PORT=${BASE_PORT:-18180}
HELD_CONNS=${HELD_CONNS:-100}
HELD_BYTES=${HELD_BYTES:-1000000}
HELD_SECS=${HELD_SECS:-10}
DRIP_EVERY_MS=${DRIP_EVERY_MS:-20000}
DRIP_MAX_SECS=${DRIP_MAX_SECS:-45}
TOOLS="haproxy"
EXAMPLES="--example lb_attack"
# shellcheck source=bench/lb/common.sh
. "$(dirname "$0")/common.sh"
# One request through each, so both start from a served state.
for p in "$LB_PORT" "$HA_PORT"; do
    exec 3<>"/dev/tcp/127.0.0.1/$p"
    printf 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n' >&3
    cat <&3 >/dev/null
    exec 3<&-
done

kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mb() { awk -v v="$1" 'BEGIN {printf "%.1f MB", v / 1024}'; }

# held NAME PORT PID: the held-body attack on one proxy; appends a row to $TMP/rows.
held() {
    local name=$1 port=$2 pid=$3 before peak
    before=$(kb "$pid" VmRSS)
    "$BIN/lb_attack" held "$port" "$HELD_CONNS" "$HELD_BYTES" 1048576 "$HELD_SECS" >"$TMP/held.out"
    peak=$(kb "$pid" VmHWM)
    echo "$name|$(mb "$before")|$(mb "$peak")|$(sed 's/^held: //' "$TMP/held.out")" >>"$TMP/rows"
}

held "lb (this crate)" "$LB_PORT" "$LB_PID"
sleep 2
held "$HA_NAME" "$HA_PORT" "$HA_PID"

"$BIN/lb_attack" drip "$LB_PORT" "$DRIP_EVERY_MS" "$DRIP_MAX_SECS" >"$TMP/drip.lb" &
DRIP_LB=$!
"$BIN/lb_attack" drip "$HA_PORT" "$DRIP_EVERY_MS" "$DRIP_MAX_SECS" >"$TMP/drip.ha" &
DRIP_HA=$!
wait "$DRIP_LB" "$DRIP_HA"

echo
echo "held: $HELD_CONNS connections x $HELD_BYTES of a 1048576-byte body, held ${HELD_SECS}s; drip: 1 byte / ${DRIP_EVERY_MS} ms, at most ${DRIP_MAX_SECS}s"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| proxy | RSS before | peak RSS (VmHWM) | held attack | drip |"
echo "|---|---|---|---|---|"
while IFS='|' read -r name before peak outcome; do
    if [[ $name == lb* ]]; then d=$TMP/drip.lb; else d=$TMP/drip.ha; fi
    echo "| $name | $before | $peak | $outcome | $(sed 's/^drip: //' "$d") |"
done <"$TMP/rows"
