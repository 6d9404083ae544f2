# Sourced by the drills: the release infra binary, a fresh PostgreSQL database and a local stack
# of 3 instances on it in a scratch folder, all removed on exit. The caller sets ROOT, PG_URL,
# LB_PORT, FIRST_PORT, PROFILE, DB and API_KEY, and CHECK_INTERVAL (seconds between health
# checks); afterwards INFRA names the binary, WORK the folder (the current directory).
# DIGITALOCEAN_LB=1 runs the load balancer without the local stack's departures.

drill_cleanup() {
    (cd "$WORK" && "$INFRA" destroy --stack local >/dev/null 2>&1) || true
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}

drill_setup() {
    cd "$ROOT"
    cargo build --quiet --profile "$PROFILE" -p infra
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    local dir; dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
    INFRA=$target/$dir/infra
    WORK=$(mktemp -d)
    trap drill_cleanup EXIT
    psql -q "$PG_URL/postgres" -c "CREATE DATABASE $DB" >/dev/null
    mkdir -p "$WORK/stacks"
    cp Pulumi.yaml "$WORK/"
    # The shipped local stack's health check (or a faster one) and load balancer departures from
    # DigitalOcean's, on PostgreSQL, with an API key.
    cat >"$WORK/stacks/Pulumi.local.yaml" <<YAML
config:
  rustlb:dropletCount: 3
  rustlb:lbAddress: 127.0.0.1:$LB_PORT
  rustlb:firstBackendPort: $FIRST_PORT
  rustlb:databaseUrl: $PG_URL/$DB?sslmode=disable
  rustlb:apiKey: $API_KEY
  rustlb:healthCheck:
    protocol: http
    port: 3000
    path: /health
    checkIntervalSeconds: $CHECK_INTERVAL
    responseTimeoutSeconds: 1
    unhealthyThreshold: 3
    healthyThreshold: 2
YAML
    # DIGITALOCEAN_LB=1 leaves them out: the load balancer then behaves as DigitalOcean's.
    if [ -z "${DIGITALOCEAN_LB:-}" ]; then
        cat >>"$WORK/stacks/Pulumi.local.yaml" <<YAML
  rustlb:lbLeaveOnDraining: true
  rustlb:lbLeastOutstanding: true
  rustlb:lbResponseTimeoutSeconds: 10
  rustlb:lbEjectAfterTimeouts: 2
YAML
    fi
    cd "$WORK"
}
