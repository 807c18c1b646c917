#!/usr/bin/env bash
# Make sure the server binaries Switchyard runs against are installed: PostgreSQL,
# Redis and etcd (Debian packages, installed when missing and run as root). Nothing
# is started here, and a package that starts a system-wide server has it stopped:
# tests and the local stack run their own throwaway instances.
set -euo pipefail

have_postgres() {
    [ -n "${PG_BIN:-}" ] && [ -x "${PG_BIN}/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-services.sh: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    for service in postgresql redis-server etcd; do
        (service "$service" stop || true) >/dev/null 2>&1
    done
else
    echo "ensure-services.sh: missing Debian packages: ${missing[*]}" >&2
    echo "  install them (apt-get install ${missing[*]}), or set PG_BIN to the" >&2
    echo "  directory holding PostgreSQL's initdb and pg_ctl." >&2
    exit 1
fi
