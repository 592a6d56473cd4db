#!/bin/sh
# Debian's chromium and its chromedriver: the status page's browser tests drive them
# (tests/browser.py). Installed with apt when running as root; otherwise says what to run.
# Without them the browser tests skip and say why; nothing else needs them.
set -e
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver with apt-get (root)." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        chromium chromium-driver >/dev/null
    exit 0
fi
echo "setup: chromium is not installed and this is not a root shell; the browser tests" >&2
echo "       will skip. Run: sudo apt-get install -y chromium chromium-driver" >&2
exit 0
