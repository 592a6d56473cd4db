#!/bin/sh
# The emulated Raspberry Pi Pico for tests/rp2 (issue #15): npm rp2040js, pinned in
# tools/rp2/emu/package-lock.json, installed into tools/rp2/emu/node_modules. The
# MicroPython images and the boot ROM it runs are committed in tools/rp2/images/
# (built by tools/rp2/build.py; CI does not build them). Needs Node.js 18+ and npm,
# which tools/setup/ensure-mp32.sh installs.
set -e
DIR=$(cd "$(dirname "$0")/../rp2/emu" && pwd)
WANT=$(sed -n 's|.*"rp2040js": *"\([^"]*\)".*|\1|p' "$DIR/package.json")
if [ -f "$DIR/node_modules/rp2040js/package.json" ] &&
        grep -q "\"version\": *\"$WANT\"" "$DIR/node_modules/rp2040js/package.json"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "setup: the emulated Pico tests need Node.js 18+ and npm: sudo apt-get install -y nodejs npm" >&2
    exit 1
fi
echo "setup: installing rp2040js $WANT into tools/rp2/emu/node_modules (npm ci)." >&2
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
