# Sourced by bench/lb/common.sh and bench/lb/idle.sh: `wait_port PORT` waits up to 5 s for
# 127.0.0.1:PORT to accept a connection.
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 never opened" >&2
    return 1
}
