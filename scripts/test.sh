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

# A one-off build gains nothing from incremental caches, which more than double the
# size of target/ (the whole suite needs about 4 GB without them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
    echo "test.sh: warning: only $((free_kb / 1024)) MB free here; the build and tests need about 6 GB" >&2
fi

# PostgreSQL, Redis and etcd: the tests start throwaway servers of each.
./scripts/ensure-services.sh

# Headless Chromium and its WebDriver, for the console's browser test
# (tests/tests/console.rs, which skips with a message without them).
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } &&
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing chromium chromium-driver"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver
fi

# The real clients the client suite drives (tests/tests/clients.rs), pinned, in a
# throwaway place: the Python SDKs in a venv, Claude Code and Codex CLI under an npm
# prefix (their tests skip, saying why, without Node and npm).
./scripts/ensure-clients.sh

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
# Builds the binaries with no protoc in reach, first, so every build script runs
# without it; the build below then has nothing left to do.
./scripts/check-no-protoc.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
# The local production-mode stack (deploy/stack.sh) carries a call end to end, with
# the binaries wherever cargo put them (CARGO_TARGET_DIR may point elsewhere).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
SWITCHYARD_BIN_DIR="$target_dir/debug" ./deploy/stack.sh smoke
# The REST API against its OpenAPI document, as each key kind (schemathesis, fixed seed).
./scripts/schemathesis.sh "$target_dir/debug"
cargo test --workspace --locked
