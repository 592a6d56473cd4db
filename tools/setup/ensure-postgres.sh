#!/bin/sh
# PostgreSQL server binaries (Debian's postgresql package) for the hub's tests: they start
# a throw-away cluster with initdb/pg_ctl in a temp dir as an unprivileged user; the
# system service need not run.
set -e
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: PostgreSQL is missing; installing Debian's postgresql with apt-get (root)." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq postgresql >/dev/null
    exit 0
fi
echo "setup: PostgreSQL is not installed and this is not a root shell." >&2
echo "       Run: sudo apt-get install -y postgresql   (tests run their own cluster)." >&2
exit 1
