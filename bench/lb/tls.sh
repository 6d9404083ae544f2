#!/usr/bin/env bash
# HTTPS at the lb crate against HAProxy, one certificate for both (self-signed ECDSA P-256),
# in front of two hyper hello-world backends, all on 127.0.0.1 (bench/lb/common.sh). For
# each TLS setup (TLS 1.3; TLS 1.3 without session resumption; TLS 1.2 without), ROUNDS
# rounds of, per proxy in rotating order:
#   keep-alive: wrk -c CONNS over TLS, many requests per connection;
#   new connections: the same with `Connection: close`, one request per TLS connection
#     (wrk resumes the session it had when the server allows it);
# then, for the first setup, each proxy's RSS with IDLE_CONNS (1000) idle TLS connections
# that made one request each. Prints a markdown table and the lb/HAProxy ratios.
#
# Env: DURATION (8s), CONNS (64), THREADS (2), ROUNDS (2), BASE_PORT (18180),
#      SETUPS ("1.3:1 1.3:0 1.2:0", version:resumption), IDLE_CONNS (1000).
set -euo pipefail

if [ -z "${TLS_SETUP:-}" ]; then
    ROOT=$(cd "$(dirname "$0")/../.." && pwd)
    ulimit -n "$(ulimit -Hn)"
    rows=$(mktemp)
    first=1
    for setup in ${SETUPS:-1.3:1 1.3:0 1.2:0}; do
        TLS_SETUP=$setup IDLE=$first ROWS=$rows bash "$0" >&2
        first=0
    done
    echo
    echo "command: ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-8s} CONNS=${CONNS:-64} bash bench/lb/tls.sh"
    echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD)"
    echo "client: wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}') on $(openssl version | awk '{print $1, $2}'), $(haproxy -v | awk 'NR==1 {print "HAProxy", $3}')"
    echo
    echo "| TLS | test | proxy | req/s | p99 | CPU per request | handshakes | cipher |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'|' '$1 == "run" { printf "| %s | %s | %s | %d | %s | %s us | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9 }' "$rows"
    echo
    echo "Means over the rounds, lb over HAProxy:"
    echo
    echo "| TLS | test | req/s | CPU per request |"
    echo "|---|---|---|---|"
    awk -F'|' '$1 == "run" { k = $2 "|" $3; if (!(k in n)) key[++m] = k; n[k]++
                   p = ($4 ~ /^lb/) ? "lb" : "ha"; rps[k, p] += $5; cpu[k, p] += $7 }
        END { for (i = 1; i <= m; i++) { k = key[i]; split(k, f, "|")
                printf "| %s | %s | %.2fx | %.2fx |\n", f[1], f[2], rps[k, "lb"] / rps[k, "ha"], cpu[k, "lb"] / cpu[k, "ha"] } }' "$rows"
    if grep -q '^idle' "$rows"; then
        echo
        echo "Memory with ${IDLE_CONNS:-1000} idle TLS connections (one request each, then held):"
        echo
        echo "| proxy | RSS before | RSS while held | per connection | answered |"
        echo "|---|---|---|---|---|"
        awk -F'|' '$1 == "idle" { printf "| %s | %.1f MB | %.1f MB | %.1f KB | %s |\n", $2, $3 / 1024, $4 / 1024, ($4 - $3) / $6, $5 }' "$rows"
    fi
    rm -f "$rows"
    exit 0
fi

DURATION=${DURATION:-8s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
BASE_PORT=${BASE_PORT:-18180}
IDLE_CONNS=${IDLE_CONNS:-1000}
TLS_MAX=${TLS_SETUP%%:*}
TLS_RESUME=${TLS_SETUP##*:}
TLS=1
TOOLS="wrk haproxy openssl"
EXAMPLES=""
# shellcheck source=bench/lb/common.sh
. "$(dirname "$0")/common.sh"

label="TLS $TLS_MAX"
if [ "$TLS_RESUME" = 0 ]; then label="$label, no resumption"; fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
# lb's handshake counts as "full resumed".
lb_handshakes() {
    curl -sk "https://127.0.0.1:$LB_PORT/_lb/status" |
        python3 -c 'import json, sys; h = json.load(sys.stdin)["tls_handshakes"]; print(h["full"], h["resumed"])'
}
# One field of HAProxy's `show info`.
ha_info() {
    python3 - "$TMP/haproxy.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show info\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(next((l.split(": ", 1)[1] for l in data.decode().splitlines() if l.startswith(sys.argv[2] + ":")), "?"))
PY
}
cipher() {
    openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | awk '/^New, / {print $2 " " $5}' | tr -d ,
}

# run TEST PROXY PORT PID [wrk flags...]
run() {
    local test=$1 name=$2 port=$3 pid=$4
    shift 4
    local before after hs_before="" handshakes
    if [ "$name" = lb ]; then hs_before=$(lb_handshakes); fi
    before=$(cpu_ticks "$pid")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "https://127.0.0.1:$port/" >"$TMP/wrk.out"
    after=$(cpu_ticks "$pid")
    local rps p99 reqs cpu
    rps=$(awk '/^Requests\/sec/ {print $2}' "$TMP/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$TMP/wrk.out")
    reqs=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
    cpu=$(awk -v d=$((after - before)) -v t="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')
    if [ "$name" = lb ]; then
        read -r f0 r0 <<<"$hs_before"
        read -r f1 r1 <<<"$(lb_handshakes)"
        handshakes="$((f1 - f0)) full, $((r1 - r0)) resumed"
    else
        handshakes="$(ha_info CumSslConns) in all, reuse $(ha_info SslFrontendSessionReuse_pct) %"
    fi
    if [ "$test" = keep-alive ]; then handshakes="-"; fi
    local proxy_name=$HA_NAME
    if [ "$name" = lb ]; then proxy_name="lb (this crate)"; fi
    echo "run|$label|$test|$proxy_name|$rps|$p99|$cpu|$handshakes|$(cipher "$port")" >>"$ROWS"
}

PROXIES=("lb|$LB_PORT|$LB_PID" "ha|$HA_PORT|$HA_PID")
for p in "${PROXIES[@]}"; do
    IFS='|' read -r _ port _ <<<"$p"
    wrk -t"$THREADS" -c"$CONNS" -d2s "https://127.0.0.1:$port/" >/dev/null
done
for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
        IFS='|' read -r name port pid <<<"${PROXIES[$(((r - 1 + i) % 2))]}"
        run keep-alive "$name" "$port" "$pid"
        run "new connections" "$name" "$port" "$pid" -H "Connection: close"
    done
done

if [ "${IDLE:-0}" = 1 ]; then
    for p in "${PROXIES[@]}"; do
        IFS='|' read -r name port pid <<<"$p"
        rss() { awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status"; }
        before=$(rss)
        python3 - "$port" "$IDLE_CONNS" >"$TMP/idle.out" <<'PY' &
import socket, ssl, sys, time
port, n = int(sys.argv[1]), min(int(sys.argv[2]), 5000)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conns, answered = [], 0
deadline = time.monotonic() + 120
for _ in range(n):
    if time.monotonic() > deadline:
        break
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
    s.sendall(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
    data = b""
    while not data.endswith(b"Hello, World!"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    answered += data.endswith(b"Hello, World!")
    conns.append(s)
print(f"ready {len(conns)} {answered}", flush=True)
time.sleep(3)
PY
        client=$!
        for _ in $(seq 1 1200); do grep -q '^ready' "$TMP/idle.out" && break; sleep 0.1; done
        held=$(rss)
        read -r _ open answered <"$TMP/idle.out"
        wait "$client"
        proxy_name=$HA_NAME
        if [ "$name" = lb ]; then proxy_name="lb (this crate)"; fi
        echo "idle|$proxy_name|$before|$held|$answered of $open|$open" >>"$ROWS"
    done
fi
