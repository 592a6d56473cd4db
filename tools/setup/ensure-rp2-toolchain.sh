#!/bin/sh
# The toolchain tools/rp2/build.py builds MicroPython's rp2 images with (#15): Debian's
# gcc-arm-none-eabi 12.2.rel1 (the version RECORD.json names: another one gives another
# image), newlib, cmake, make. About 2.5 GB, so only `make rp2-frozen` / `make rp2-check`
# ask for it, never `make setup`: CI uses the committed images. Installs with apt as
# root; otherwise says what to run and fails (the build cannot run without it).
set -e
PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib cmake build-essential"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing$missing with apt-get (root) for the rp2 image build (~2.5 GB)." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        $missing >/dev/null
    exit 0
fi
echo "setup: the rp2 image build needs$missing and this is not a root shell." >&2
echo "       Run: sudo apt-get install -y$missing" >&2
exit 1
