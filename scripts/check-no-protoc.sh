#!/usr/bin/env bash
# No crate may need a system protoc to build: gRPC code is generated ahead and
# committed (proto/src/gen/, coord/src/etcd/gen/, each with a test that regenerates
# it with protox). Builds every binary with protoc out of reach: PROTOC pointing
# nowhere and a PATH without it. Run it before other builds of the same target dir,
# so that build scripts run here first; when nothing changed it costs a no-op build
# (this environment changes no fingerprint).
set -euo pipefail
cd "$(dirname "$0")/.."

# A build script that already ran (with protoc about) is not run again below, so
# its need would go unseen there: refuse up front the code generators that call
# protoc, in what the binaries build with (dev-dependencies aside).
generators="$(cargo tree --workspace --locked -e normal,build --prefix none --format '{p}' |
    awk '{ print $1 }' | sort -u |
    grep -x -E 'prost-build|tonic-build|protobuf-codegen|protoc-rust|grpcio-compiler' || true)"
if [ -n "$generators" ]; then
    echo "check-no-protoc: the build uses $(echo "$generators" | paste -sd ' '), which call protoc;" \
        "generate the code ahead and commit it, as proto/ and coord/ do" >&2
    echo "(cargo tree --workspace -e normal,build -i <name> shows who pulls them in)" >&2
    exit 1
fi

cargo="$(command -v cargo)"
bin_dir="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-no-protoc.XXXXXX")"
trap 'rm -rf "$bin_dir"' EXIT
# Every command of PATH, the first of each name as PATH would find it, but protoc.
IFS=: read -r -a dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for cmd in "$dir"/*; do
        name="${cmd##*/}"
        if [ -x "$cmd" ] && [ ! -e "$bin_dir/$name" ]; then
            ln -s "$cmd" "$bin_dir/$name"
        fi
    done
done
rm -f "$bin_dir/protoc"
if PATH="$bin_dir" command -v protoc >/dev/null; then
    echo "check-no-protoc: protoc is still on the restricted PATH" >&2
    exit 1
fi

env PATH="$bin_dir" PROTOC=/nonexistent/protoc "$cargo" build --workspace --bins --locked
echo "check-no-protoc: every binary builds without protoc"
