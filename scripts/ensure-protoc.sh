#!/usr/bin/env bash
# The etcd client in the control plane is generated at build time: it needs protoc
# and the protobuf well-known types. Installs Debian's packages when missing (as
# root). The embedded binary (`cargo run --bin switchyard`) does not need them.
set -euo pipefail
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "missing Debian packages: ${missing[*]} (apt-get install them)" >&2
    exit 1
fi
