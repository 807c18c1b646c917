#!/usr/bin/env bash
# Switchyard's whole test suite, on a fresh machine.
#
# Installs what the tests need when it is missing (Debian packages, when run as
# root), checks formatting and lints, builds the binaries that the end-to-end tests
# start as separate processes, and runs every test. Tests that need PostgreSQL,
# Redis or etcd start throwaway servers themselves (temp dir, free loopback port) and
# stop them after.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
    [ -n "${PG_BIN:-}" ] && [ -x "${PG_BIN}/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if ! have_postgres; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing PostgreSQL (Debian package postgresql)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
    else
        echo "test.sh: PostgreSQL server binaries are missing." >&2
        echo "  install Debian's postgresql package (apt-get install postgresql)," >&2
        echo "  or set PG_BIN to the directory that holds initdb and pg_ctl." >&2
        exit 1
    fi
fi

# Limits shared across data planes are tested against a real Redis.
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing Redis (Debian package redis-server)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server
        # The package may start a system Redis; the tests run their own.
        (service redis-server stop || true) >/dev/null 2>&1
    else
        echo "test.sh: redis-server is missing: install Debian's redis-server package." >&2
        exit 1
    fi
fi

# Control-plane replicas coordinate through etcd: the tests run a real one.
if ! command -v etcd >/dev/null && [ ! -x /usr/bin/etcd ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing etcd (Debian package etcd-server)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server
        # The package may start a system etcd; the tests run their own.
        (service etcd stop || true) >/dev/null 2>&1
    else
        echo "test.sh: etcd is missing: install Debian's etcd-server package." >&2
        exit 1
    fi
fi
./scripts/ensure-protoc.sh

# The OpenAPI document must be a valid OpenAPI 3.1 document (its agreement with the
# routes is checked by control-plane/tests/openapi.rs).
validator_dir="${TMPDIR:-/tmp}/switchyard-openapi-validator"
if [ ! -x "$validator_dir/bin/python" ]; then
    python3 -m venv "$validator_dir"
    "$validator_dir/bin/pip" install -q openapi-spec-validator
fi
"$validator_dir/bin/python" -c 'import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print("openapi.json: valid OpenAPI 3.1")' control-plane/openapi.json

# The container image and the Helm chart: lint, render with default and production-like values, validate
# against Kubernetes schemas offline, and refuse bad values with a clear message.
./scripts/check-deploy.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The README's run command builds the embedded binary alone, without etcd (no protoc).
cargo clippy -p switchyard-embedded --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
