"""The RP2040 boot ROM (revision B1) for the emulator, as a 16 KB binary.

    python -m tools.rp2.bootrom --git /work/.mirror/wokwi+rp2040js/repo

The npm package rp2040js ships without the boot ROM. Its repository's demo/bootrom.ts
holds the B1 ROM as 32-bit words ("built from https://github.com/raspberrypi/pico-bootrom,
revision B1"); this script turns that file, at the commit in PROVENANCE, into
tools/rp2/images/rp2040-bootrom-b1.bin and records its SHA-256 in RECORD.json. The ROM is
Raspberry Pi's, BSD-3-Clause (tools/rp2/images/LICENSE-bootrom.txt). The binary carries
its own git revision of pico-bootrom at offset 0x50 (0x00a4a191), and the MicroPython
image finds the flash functions through its lookup table, as on silicon.
"""
import argparse
import hashlib
import json
import re
import struct
import subprocess
import sys

from tools.rp2.build import IMAGES, RECORD

NAME = "rp2040-bootrom-b1.bin"
PROVENANCE = {
    "repository": "https://github.com/wokwi/rp2040js",
    "commit": "7701ee065f50a04380f81361befd754810cb9e28",
    "path": "demo/bootrom.ts",
    "built_from": "https://github.com/raspberrypi/pico-bootrom revision B1 (git rev 00a4a191 "
                  "in the ROM; the repository's 'B1 changes' commit ad55537b)",
    "licence": "BSD-3-Clause (Raspberry Pi (Trading) Ltd.)",
}
BOOTROM_COMMIT = "ad55537bf35e332503b950d6951c41bcb8a7954f"   # pico-bootrom "B1 changes"
ROM_BYTES = 16 * 1024
GIT_REV_OFFSET = 0x50


def words_from_ts(text):
    body = text.split("new Uint32Array([", 1)[1].split("])", 1)[0]
    return [int(w, 16) for w in re.findall(r"0x[0-9a-fA-F]+", body)]


def licence_text(gitdir):
    """pico-bootrom's BSD-3 licence, plus the separate licence of its float library
    (bootrom/mufplib*.S, in the ROM): that one permits use on an RP2040 only, or GPLv2;
    the emulator runs it under GPLv2, whose source is pico-bootrom at the B1 commit."""
    def show(path):
        return subprocess.run(["git", "--git-dir", gitdir, "show", "%s:%s" % (BOOTROM_COMMIT, path)],
                              check=True, capture_output=True, text=True).stdout
    muf = show("bootrom/mufplib.S").split("*/", 1)[0]
    return ("RP2040 boot ROM, revision B1: %s\nSource: %s\nLicence: BSD-3-Clause (below)\n\n%s\n\n"
            "bootrom/mufplib.S and bootrom/mufplib-double.S (the ROM's float library):\n%s*/\n\n"
            "This project uses the float library under the GPLv2 option (the emulator is not an\n"
            "RP2040 device); its source is https://github.com/raspberrypi/pico-bootrom at commit\n"
            "%s, bootrom/mufplib.S and bootrom/mufplib-double.S.\n"
            % (NAME, PROVENANCE["built_from"], show("LICENSE.TXT").rstrip(), muf, BOOTROM_COMMIT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--git", required=True, help="bare git dir of wokwi/rp2040js")
    ap.add_argument("--bootrom-git", help="bare git dir of raspberrypi/pico-bootrom (licence texts)")
    a = ap.parse_args(argv)
    text = subprocess.run(["git", "--git-dir", a.git, "show",
                           "%s:%s" % (PROVENANCE["commit"], PROVENANCE["path"])],
                          check=True, capture_output=True, text=True).stdout
    words = words_from_ts(text)
    rom = struct.pack("<%dI" % len(words), *words)
    if len(rom) != ROM_BYTES:
        raise SystemExit("%s: %d bytes, expected a 16 KB ROM" % (PROVENANCE["path"], len(rom)))
    if struct.unpack_from("<I", rom, GIT_REV_OFFSET)[0] != 0x00A4A191:
        raise SystemExit("%s is not the B1 ROM (git revision at 0x50 differs)" % PROVENANCE["path"])
    (IMAGES / NAME).write_bytes(rom)
    if a.bootrom_git:
        (IMAGES / "LICENSE-bootrom.txt").write_text(licence_text(a.bootrom_git))
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    record["bootrom"] = dict(PROVENANCE, file=NAME, sha256=hashlib.sha256(rom).hexdigest(),
                             bytes=len(rom))
    RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print("%s: sha256 %s" % (NAME, record["bootrom"]["sha256"]), file=sys.stderr)


if __name__ == "__main__":
    main()
