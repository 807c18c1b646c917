#!/usr/bin/env bash
# Production mode on one machine: PostgreSQL, Redis and etcd as throwaway servers,
# two control-plane replicas, two data planes and the usage collector, each its own
# process on loopback, all in one temp dir that is removed on exit.
#
#   deploy/stack.sh          start, print how to call it, run until Ctrl-C
#   deploy/stack.sh smoke    start, prove a call crosses every part, stop
#
# Binaries: built in release mode unless SWITCHYARD_BIN_DIR names a directory that
# holds them. Server packages are installed when missing (as root, Debian).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-up}"
case "$mode" in
up | smoke) ;;
*)
    echo "usage: deploy/stack.sh [up|smoke]" >&2
    exit 2
    ;;
esac

"$repo/scripts/ensure-services.sh"
bin="${SWITCHYARD_BIN_DIR:-}"
if [ -z "$bin" ]; then
    (cd "$repo" && cargo build --release --locked -p switchyard-control-plane \
        -p switchyard-data-plane -p switchyard-usage-collector -p switchyard-fake-upstream)
    bin="$repo/target/release"
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-stack.XXXXXX")"
chmod 755 "$dir"
pids=()
pg_ctl=""
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$pg_ctl" ]; then as_postgres "$pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# initdb refuses root: the server runs as the postgres user then.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# The address a process wrote to its address file, once it is listening.
addr() {
    local file="$1" name="$2"
    for _ in $(seq 1 600); do
        if [ -s "$file" ]; then
            python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$file" "$name"
            return
        fi
        sleep 0.1
    done
    echo "stack.sh: nothing listening after 60 s; see ${file%.json}.log" >&2
    exit 1
}
start() {
    local name="$1"
    shift
    "$@" >"$dir/$name.log" 2>&1 &
    pids+=("$!")
}

# PostgreSQL: one server, a database per service.
pg_bin="${PG_BIN:-$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)}"
pg_ctl="$pg_bin/pg_ctl"
pg_port="$(free_port)"
mkdir -p "$dir/pg"
[ "$(id -u)" = 0 ] && chown postgres "$dir/pg"
as_postgres "$pg_bin/initdb" -D "$dir/pg/data" -U postgres -A trust --no-sync >/dev/null
as_postgres "$pg_ctl" -D "$dir/pg/data" -w -l "$dir/pg/server.log" \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null
for db in control usage; do as_postgres "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$db"; done
database() { echo "postgres://postgres@127.0.0.1:$pg_port/$1"; }

redis_port="$(free_port)"
mkdir -p "$dir/redis"
start redis redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$dir/redis"
etcd_port="$(free_port)"
etcd_peer="$(free_port)"
start etcd etcd --name stack --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "stack=http://127.0.0.1:$etcd_peer" --initial-cluster-state new --logger zap --log-outputs stderr
etcd="http://127.0.0.1:$etcd_port"

kek="k1:$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
root_key="sy-root-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
export SWITCHYARD_KEK="$kek" SWITCHYARD_ROOT_KEY="$root_key"

start collector "$bin/switchyard-usage-collector" --database-url "$(database usage)" \
    --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --etcd-endpoints "$etcd" \
    --replica-id collector-a --addr-file "$dir/collector.json"
collector="http://$(addr "$dir/collector.json" grpc)"

cp_grpc=()
cp_http=()
for replica in a b; do
    # One after the other: the first migrates the schema.
    start "control-plane-$replica" "$bin/switchyard-control-plane" --database-url "$(database control)" \
        --http-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --collector-url "$collector" \
        --etcd-endpoints "$etcd" --replica-id "cp-$replica" --allow-private-upstreams \
        --addr-file "$dir/control-plane-$replica.json"
    cp_http+=("http://$(addr "$dir/control-plane-$replica.json" http)")
    cp_grpc+=("http://$(addr "$dir/control-plane-$replica.json" grpc)")
done

dp_http=()
for replica in a b; do
    mkdir -p "$dir/data-plane-$replica"
    # Each data plane follows both control-plane replicas (failing over between
    # them) and shares its limit counters through Redis.
    start "data-plane-$replica" "$bin/switchyard-data-plane" --listen 127.0.0.1:0 \
        --control-plane-url "${cp_grpc[0]},${cp_grpc[1]}" --collector-url "$collector" \
        --redis-url "redis://127.0.0.1:$redis_port/0" --replica-id "dp-$replica" \
        --snapshot-file "$dir/data-plane-$replica/snapshot.bin" \
        --usage-spool-dir "$dir/data-plane-$replica/spool" --allow-private-upstreams \
        --addr-file "$dir/data-plane-$replica.json"
    dp_http+=("http://$(addr "$dir/data-plane-$replica.json" http)")
done

if [ "$mode" = smoke ]; then
    start fake-upstream "$bin/switchyard-fake-upstream" --addr-file "$dir/fake-upstream.json"
    upstream="http://$(addr "$dir/fake-upstream.json" http)/v1"
    if ! python3 "$repo/deploy/smoke.py" --root-key "$root_key" --upstream "$upstream" \
        --control-planes "${cp_http[@]}" --data-planes "${dp_http[@]}"; then
        for log in "$dir"/*.log; do
            echo "--- $log (last lines)" >&2
            tail -n 20 "$log" >&2
        done
        exit 1
    fi
    exit 0
fi

cat <<EOF

Switchyard runs in production mode (logs and data in $dir):
  control planes (REST):  ${cp_http[0]}  ${cp_http[1]}
  data planes (proxy):    ${dp_http[0]}  ${dp_http[1]}
  PostgreSQL :$pg_port   Redis :$redis_port   etcd :$etcd_port

The operator's root key:
  export ROOT_KEY=$root_key

Create a main account, give it a provider key, call through either data plane:
  KEY=\$(curl -s -H "Authorization: Bearer \$ROOT_KEY" -H 'content-type: application/json' -d '{"name":"acme"}' ${cp_http[0]}/x-users | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
  curl -s -H "Authorization: Bearer \$KEY" -H 'content-type: application/json' -d '{"provider":"openai","base_url":"https://api.openai.com/v1","secret":"sk-…","models":["*"]}' ${cp_http[1]}/x-keys
  curl -s -H "Authorization: Bearer \$KEY" -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' ${dp_http[0]}/v1/chat/completions

Every data plane and the version it serves:
  curl -s -H "Authorization: Bearer \$ROOT_KEY" ${cp_http[0]}/dashboard/status

Ctrl-C stops everything and removes $dir.
EOF
wait "${pids[@]}"
