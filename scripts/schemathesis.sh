#!/usr/bin/env bash
# The control plane's REST API against its own OpenAPI document, with schemathesis.
#
# Starts `switchyard up` (all three services, SQLite, in a temp dir), creates a main
# account and a sub-account, then runs schemathesis with a fixed seed against the
# served document once per key kind: the operator's root key, the main account's key
# and the sub-account's key. Fails on any finding: a 5xx, a status, content type or
# body the document does not describe, a request the document refuses that the
# server accepts, or one the document allows that the server refuses.
#
# Usage: scripts/schemathesis.sh [BIN_DIR]   (default: target/debug; needs `switchyard`)
# SCHEMATHESIS_MAX_EXAMPLES (default 15) bounds the generated cases per operation.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
bin="${1:-${CARGO_TARGET_DIR:-$repo/target}/debug}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-15}"
seed=20261207

version=4.32.5
venv="${TMPDIR:-/tmp}/switchyard-schemathesis"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$version"
fi

dir="$(mktemp -d)"
pid=""
# shellcheck disable=SC2329 # invoked by the trap below
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private upstreams allowed: which hosts an operator refuses is not the document's to say.
"$bin/switchyard" up --data-dir "$dir/data" --admin-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 \
    --allow-private-upstreams --addr-file "$dir/addrs.json" >"$dir/switchyard.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    [ -s "$dir/addrs.json" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$dir/switchyard.log" >&2
        echo "schemathesis.sh: switchyard up exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$dir/addrs.json" ]; then
    echo "schemathesis.sh: switchyard up did not write its addresses within 30 s" >&2
    exit 1
fi
admin="http://$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["admin"])' "$dir/addrs.json")"
root_key="$(cat "$dir/data/root-key")"

# POST a JSON body with a key; print the created account's API key.
create_account() {
    python3 - "$admin" "$1" "$2" <<'EOF'
import json, sys, urllib.request
admin, key, name = sys.argv[1:]
req = urllib.request.Request(f"{admin}/x-users", data=json.dumps({"name": name}).encode(),
    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["api_key"])
EOF
}
main_key="$(create_account "$root_key" main)"
sub_key="$(create_account "$main_key" sub)"

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance
# One worker and a fixed seed: the same cases in the same order every run. No stateful
# phase: it would chain deletions and rotations into the very keys under test.
run() {
    local kind="$1" key="$2"
    shift 2
    echo "schemathesis: as the $kind"
    (cd "$dir" && "$venv/bin/st" --config-file "$repo/scripts/schemathesis.toml" run "$admin/openapi.json" --checks "$checks" \
        --phases examples,coverage,fuzzing --max-examples "$max_examples" --seed "$seed" \
        --generation-database none --workers 1 --no-color --request-timeout 10 \
        -H "Authorization: Bearer $key" "$@")
}

key_of() {
    case "$1" in
        root) echo "$root_key" ;;
        main) echo "$main_key" ;;
        sub) echo "$sub_key" ;;
    esac
}

status=0
# Rotation retires the key it is called with: run it last, on its own.
for kind in root main sub; do
    run "$kind key" "$(key_of "$kind")" --exclude-path /x-self/rotate || status=1
done
for kind in root main sub; do
    run "$kind key (rotation)" "$(key_of "$kind")" --include-path /x-self/rotate || status=1
done
if [ "$status" -ne 0 ]; then
    echo "schemathesis.sh: findings above; the server's log: $dir/switchyard.log (removed on exit)" >&2
    tail -n 30 "$dir/switchyard.log" >&2
fi
exit "$status"
