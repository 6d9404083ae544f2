# Shared by bench/lb/run.sh and bench/lb/attack.sh (sourced, not run): installs the TOOLS
# they need with apt-get if missing, builds the lb examples (hello_backend, lb_bench and
# EXAMPLES, extra --example flags), starts two hyper hello-world backends on BASE_PORT+1 and
# +2, our load balancer on BASE_PORT+10 and HAProxy on BASE_PORT+11 (all 127.0.0.1), and
# stops them all on exit. Sets ROOT, B1, B2, LB_PORT, HA_PORT, BIN, TMP, PIDS, LB_PID,
# HA_PID and HA_NAME. With TLS=1 (bench/lb/tls.sh) both proxies serve HTTPS on their ports
# with one self-signed ECDSA P-256 certificate ($TMP/cert.pem, key $TMP/key.pem), offering
# TLS up to TLS_MAX (1.3), with session resumption unless TLS_RESUME=0; HAProxy's stats
# socket is $TMP/haproxy.sock.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rustlb-target}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B1=$((BASE_PORT + 1))
B2=$((BASE_PORT + 2))
LB_PORT=$((BASE_PORT + 10))
HA_PORT=$((BASE_PORT + 11))

for tool in $TOOLS; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq $TOOLS >/dev/null
        break
    fi
done

# shellcheck disable=SC2086 # EXAMPLES is a list of flags
(cd "$ROOT" && cargo build --release -p lb --example hello_backend --example lb_bench $EXAMPLES >&2)
BIN=$CARGO_TARGET_DIR/release/examples

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=bench/lb/wait_port.sh
. "$ROOT/bench/lb/wait_port.sh"

"$BIN/hello_backend" "$B1" & PIDS+=($!)
"$BIN/hello_backend" "$B2" & PIDS+=($!)
wait_port "$B1"; wait_port "$B2"

HA_BIND=""
HA_GLOBAL=""
if [ "${TLS:-0}" = 1 ]; then
    TLS_MAX=${TLS_MAX:-1.3}
    openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/key.pem"
    openssl req -x509 -new -key "$TMP/key.pem" -subj /CN=localhost -days 2 \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out "$TMP/cert.pem" 2>/dev/null
    cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"
    export LB_TLS_CERT=$TMP/cert.pem LB_TLS_KEY=$TMP/key.pem LB_TLS_MAX=$TLS_MAX
    export LB_TLS_RESUME=${TLS_RESUME:-1}
    HA_BIND="ssl crt $TMP/haproxy.pem alpn http/1.1 ssl-max-ver TLSv$TLS_MAX"
    HA_GLOBAL="stats socket $TMP/haproxy.sock level user"
    if [ "$LB_TLS_RESUME" = 0 ]; then
        HA_BIND="$HA_BIND no-tls-tickets"
        HA_GLOBAL="$HA_GLOBAL
    tune.ssl.cachesize 0"
    fi
fi
"$BIN/lb_bench" "$LB_PORT" "127.0.0.1:$B1" "127.0.0.1:$B2" >"$TMP/lb.out" & LB_PID=$!
PIDS+=($LB_PID)

cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4096
    $HA_GLOBAL
defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$HA_PORT $HA_BIND
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /health
    server s1 127.0.0.1:$B1 check inter 30s fall 3 rise 2
    server s2 127.0.0.1:$B2 check inter 30s fall 3 rise 2
EOF
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 & HA_PID=$!
PIDS+=($HA_PID)
wait_port "$LB_PORT"; wait_port "$HA_PORT" || { cat "$TMP/haproxy.log" >&2; exit 1; }
for _ in $(seq 1 100); do grep -q '^ready' "$TMP/lb.out" && break; sleep 0.05; done
HA_NAME="HAProxy $(haproxy -v | awk 'NR==1 {print $3}')"
