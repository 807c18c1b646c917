#!/usr/bin/env bash
# The proxy benchmark: the data plane against the fake upstream called directly and
# through nginx, in one run, on release builds. Installs nginx when missing (as root).
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

cargo build --release --workspace --bins
SWITCHYARD_BIN_DIR="$PWD/target/release" exec target/release/switchyard-bench "$@"
