#!/usr/bin/env bash
# Release binaries with the data plane built by profile-guided optimization: an
# instrumented build of it serves the training load (`switchyard-bench --training`:
# every route, both protocols, whole answers and streams, refusals), and the
# profile it records lays out the release build (hot code together, cold code
# apart). Result: target/pgo/bin, the release binaries with that data plane.
#
# Needs llvm-profdata of rustc's LLVM version: rustup's llvm-tools when installed,
# else Debian's llvm-<version> (installed when missing, as root).
# PGO_TRAINING_SECONDS sets the training load's length (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --workspace --bins

host="$(rustc -vV | sed -n 's/^host: //p')"
llvm="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    profdata="$(command -v "llvm-profdata-$llvm" || true)"
fi
if [ -z "$profdata" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "llvm-$llvm" >/dev/null \
            || { apt-get update -q >/dev/null \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "llvm-$llvm" >/dev/null; } \
            || true
        profdata="$(command -v "llvm-profdata-$llvm" || true)"
    fi
    if [ -z "$profdata" ]; then
        echo "build-pgo.sh: llvm-profdata for LLVM $llvm is needed:" >&2
        echo "  rustup component add llvm-tools, or apt-get install llvm-$llvm" >&2
        exit 1
    fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# With --target the flags reach the data plane and its dependencies only; build
# scripts and proc macros are built for the host without them.
build_data_plane() {
    RUSTFLAGS="$1" cargo build --release --locked --target "$host" --target-dir "$2" \
        -p switchyard-data-plane --bin switchyard-data-plane
}
# A fixed default profile path keeps the instrumented build cached between runs;
# the training sets its own path.
build_data_plane "-Cprofile-generate=$PWD/target/pgo/unused-profiles" target/pgo/generate
mkdir "$work/bin"
for bin in switchyard-control-plane switchyard-usage-collector switchyard-fake-upstream; do
    ln -s "$PWD/target/release/$bin" "$work/bin/$bin"
done
ln -s "$PWD/target/pgo/generate/$host/release/switchyard-data-plane" "$work/bin/"
SWITCHYARD_BIN_DIR="$work/bin" LLVM_PROFILE_FILE="$work/profiles/data-plane-%p-%m.profraw" \
    target/release/switchyard-bench --training "${PGO_TRAINING_SECONDS:-20}"
"$profdata" merge -o "$work/data-plane.profdata" "$work"/profiles/data-plane-*.profraw
# The profile's path is new each run, so the optimized build never outlives its
# profile.
build_data_plane "-Cprofile-use=$work/data-plane.profdata" target/pgo/use

out=target/pgo/bin
rm -rf "$out"
mkdir -p "$out"
for bin in switchyard-control-plane switchyard-usage-collector switchyard-fake-upstream \
    switchyard-bench; do
    cp "target/release/$bin" "$out/"
done
cp "target/pgo/use/$host/release/switchyard-data-plane" "$out/"
echo "build-pgo.sh: $out/switchyard-data-plane is built from the training profile"
