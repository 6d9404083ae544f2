#!/usr/bin/env bash
# Fresh clone to first URL: clones the repository, then runs README's first command with an
# empty cargo home (every crate downloaded) and an empty target directory, and reports the wall
# time until the local stack prints its URL, and the build's `cargo --timings` report.
#
# Run it on an otherwise idle machine; every run downloads the crates again (about 1 min).
#
# Env: REPO (this repository), FEATURES (extra cargo arguments, e.g. "--features cloud" to build
#      what the Pulumi program needs too, for comparison), LB_PORT (18680), FIRST_PORT (18681),
#      TIMINGS_OUT (where to copy cargo's timings HTML; default: not kept), LIMIT (1200 s).
set -euo pipefail

REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
LB_PORT=${LB_PORT:-18680}
FIRST_PORT=${FIRST_PORT:-18681}
LIMIT=${LIMIT:-1200}
FEATURES=${FEATURES:-}
WORK=$(mktemp -d)
STACK_PID=
cleanup() {
    [ -n "$STACK_PID" ] && kill -INT "$STACK_PID" 2>/dev/null && wait "$STACK_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

git clone -q "$REPO" "$WORK/clone"
cd "$WORK/clone"
# Own ports, so a stack already running on the defaults does not matter.
sed -i "s/^  rustlb:lbAddress:.*/  rustlb:lbAddress: 127.0.0.1:$LB_PORT/; s/^  rustlb:firstBackendPort:.*/  rustlb:firstBackendPort: $FIRST_PORT/" stacks/Pulumi.local.yaml
grep -q "lbAddress: 127.0.0.1:$LB_PORT" stacks/Pulumi.local.yaml || printf '  rustlb:lbAddress: 127.0.0.1:%s\n  rustlb:firstBackendPort: %s\n' "$LB_PORT" "$FIRST_PORT" >>stacks/Pulumi.local.yaml

export CARGO_HOME=$WORK/cargo-home CARGO_TARGET_DIR=$WORK/target
mkdir -p "$CARGO_HOME"
start=$(date +%s.%N)
# README's first command, with --timings (the same build, plus its report).
# shellcheck disable=SC2086
cargo run --release --timings $FEATURES -p infra -- up --stack local >"$WORK/out.txt" 2>"$WORK/err.txt" &
STACK_PID=$!
url=
while [ -z "$url" ]; do
    if ! kill -0 "$STACK_PID" 2>/dev/null; then
        tail -20 "$WORK/err.txt" >&2
        echo "the command exited before printing a URL" >&2
        exit 1
    fi
    now=$(date +%s.%N)
    if [ "$(echo "$now - $start > $LIMIT" | bc)" = 1 ]; then
        echo "no URL within $LIMIT s" >&2
        exit 1
    fi
    url=$(grep -o "http://127.0.0.1:$LB_PORT" "$WORK/out.txt" | head -1 || true)
    sleep 0.5
done
end=$(date +%s.%N)
compiled=$(grep -c '^ *Compiling' "$WORK/err.txt" || true)
downloaded=$(grep -c '^ *Downloaded' "$WORK/err.txt" || true)
if [ -n "${TIMINGS_OUT:-}" ]; then
    cp "$(ls -t "$CARGO_TARGET_DIR"/cargo-timings/cargo-timing-*.html | head -1)" "$TIMINGS_OUT"
fi
printf 'first URL %s after %.0f s (%s crates downloaded, %s compiled; args: %s)\n' \
    "$url" "$(echo "$end - $start" | bc)" "$downloaded" "$compiled" "${FEATURES:-none}"
curl -fsS "$url/health" >/dev/null && echo "the URL answers /health"
