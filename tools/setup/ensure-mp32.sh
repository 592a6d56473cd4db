#!/bin/sh
# Make sure the 32-bit MicroPython (the WebAssembly port, npm
# @micropython/micropython-webassembly-pyscript, pinned in tools/mp32/package-lock.json)
# is installed in tools/mp32/node_modules for the 32-bit tests and `python -m bench node`.
# Needs Node.js 18+ and npm: installs them with apt when running as root; otherwise says
# exactly what to run.
set -e
DIR=$(cd "$(dirname "$0")/../mp32" && pwd)
PKG=@micropython/micropython-webassembly-pyscript
WANT=$(sed -n "s|.*\"$PKG\": *\"\([^\"]*\)\".*|\1|p" "$DIR/package.json")
have_pkg() {
    [ -f "$DIR/node_modules/$PKG/micropython.wasm" ] &&
        grep -q "\"version\": *\"$WANT\"" "$DIR/node_modules/$PKG/package.json" 2>/dev/null
}
node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'process.exit(+process.versions.node.split(".")[0] < 18 ? 1 : 0)'
}
if have_pkg && node_ok; then
    exit 0
fi
if ! node_ok; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: Node.js 18+ and npm are missing; installing them with apt-get (root)." >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    if ! node_ok; then
        echo "setup: the 32-bit MicroPython tests need Node.js 18 or newer and npm." >&2
        echo "       Run: sudo apt-get install -y nodejs npm   (then make setup again)" >&2
        exit 1
    fi
fi
echo "setup: installing $PKG $WANT into tools/mp32/node_modules (npm ci)." >&2
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
have_pkg
