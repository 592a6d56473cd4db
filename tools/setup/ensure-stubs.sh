#!/bin/sh
# The real ports' API stubs for `python -m tools.stubcheck` (issue #15): each port's PyPI
# stub package (pinned in tools/stubs/<port>.txt) in its own directory build/stubs/<port>,
# since both packages provide a `machine` module. Reinstalled when the pins change.
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PIP="$ROOT/.venv/bin/pip"
for port in esp32 rp2; do
    req="$ROOT/tools/stubs/$port.txt"
    dest="$ROOT/build/stubs/$port"
    if [ -f "$dest/.pins" ] && cmp -s "$req" "$dest/.pins"; then
        continue
    fi
    echo "setup: installing the $port MicroPython stubs into build/stubs/$port." >&2
    rm -rf "$dest"
    "$PIP" install -q --no-deps --target "$dest" -r "$req"
    cp "$req" "$dest/.pins"
done
