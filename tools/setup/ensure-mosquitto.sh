#!/bin/sh
# Make sure a Mosquitto broker binary exists for the tests and the demo.
# Installs it with apt when running as root; otherwise says exactly what to run.
set -e
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: Mosquitto is missing; installing it with apt-get (root)." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    exit 0
fi
echo "setup: Mosquitto is not installed and this is not a root shell." >&2
echo "       Run: sudo apt-get install -y mosquitto   (the tests start their own broker" >&2
echo "       on a free loopback port; the system service need not run)." >&2
exit 1
