#!/usr/bin/env bash
# The proxy benchmark: the data plane against the fake upstream called directly and
# through nginx, in one run, on release builds (the data plane profile-guided); then
# the collector's ingest rate into Postgres and into SQLite. Installs nginx and
# PostgreSQL when missing (as root).
# Extra arguments go to the bench binary (see `--help`), e.g. `--seconds 5`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
    # The package starts a system nginx; the benchmark runs its own.
    (service nginx stop || true) >/dev/null 2>&1
  else
    echo "nginx is needed: apt-get install nginx" >&2
    exit 1
  fi
fi

# The ingest benchmark runs its own throwaway Postgres.
./scripts/ensure-services.sh
# The data plane as the image ships it, built from a training profile
# (scripts/build-pgo.sh); SWITCHYARD_PGO=off measures the plain release build.
if [ "${SWITCHYARD_PGO:-on}" = off ]; then
    cargo build --release --locked --workspace --bins
    export SWITCHYARD_BIN_DIR="$PWD/target/release"
else
    ./scripts/build-pgo.sh
    export SWITCHYARD_BIN_DIR="$PWD/target/pgo/bin"
fi
"$SWITCHYARD_BIN_DIR/switchyard-bench" "$@"
echo
# The usage collector's ingest (rollups on), in events per second: into Postgres,
# then into SQLite (the embedded default).
target/release/ingest --seconds "${INGEST_SECONDS:-10}"
echo
target/release/ingest --store sqlite --seconds "${INGEST_SECONDS:-10}"
echo
# Snapshots at scale (100,000 issued keys, 10,000 accounts): encode, sizes, delta,
# apply-and-swap, lookups during swaps, and a data plane's memory holding it.
target/release/snapshot
