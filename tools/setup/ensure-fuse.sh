#!/bin/sh
# FUSE for the power-cut rig (hil/powerfs.py, tests/gateway/test_powercut_fuse.py):
# libfuse3 (loaded by mfusepy through ctypes) and fusermount3. Installs them with apt
# when running as root; otherwise says what to run. Without /dev/fuse the rig's tests
# skip and say why; that is the machine's limit, not something setup can fix.
set -e
have_lib() { ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so'; }
if have_lib && command -v fusermount3 >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing fuse3 and libfuse3-3 with apt-get (root) for the power-cut rig." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        fuse3 libfuse3-3 >/dev/null
    exit 0
fi
echo "setup: libfuse3/fusermount3 missing and this is not a root shell." >&2
echo "       Run: sudo apt-get install -y fuse3 libfuse3-3   (power-cut rig tests skip without it)" >&2
exit 0
