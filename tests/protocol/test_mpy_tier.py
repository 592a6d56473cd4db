"""protocol/ and firmware/ on the real MicroPython runtime: the mpy-cross gate over
every file, the test vectors and randomised round trips under a 64 KB heap."""
import re
import subprocess
from pathlib import Path

import pytest
from harness import MPY_CROSS, ROOT


def mpy_files():
    return sorted(p for pkg in ("protocol", "firmware") for p in (ROOT / pkg).rglob("*.py"))


def test_every_protocol_and_firmware_file_compiles_with_mpy_cross(tmp_path):
    bad = []
    files = mpy_files()
    assert any(p.parent.name == "protocol" for p in files)
    for src in files:
        r = subprocess.run([str(MPY_CROSS), "-o", str(tmp_path / "x.mpy"), str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            bad.append(f"{src.relative_to(ROOT)}: {r.stderr.strip().splitlines()[-1]}")
    assert not bad, "not MicroPython: " + "; ".join(bad)


FORBIDDEN = [
    (re.compile(r"^\s*(from typing|import typing|from dataclasses|import dataclasses|import enum|from enum)\b", re.M),
     "typing/dataclasses/enum do not exist on MicroPython"),
    (re.compile(r"\{\*\*"), "{**d} is not MicroPython"),
]


@pytest.mark.parametrize("src", mpy_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_subset_rules(src):
    text = src.read_text()
    for rx, why in FORBIDDEN:
        assert not rx.search(text), f"{src.relative_to(ROOT)}: {why}"


def test_protocol_has_no_io_or_clock():
    for src in (ROOT / "protocol").glob("*.py"):
        text = src.read_text()
        for banned in ("import time", "import socket", "import os", "open(", "ticks_ms", "import machine"):
            assert banned not in text, f"{src.name} uses {banned!r}: protocol/ is pure logic"


def test_vectors_under_micropython_96k(micropython_module):
    # 96 KB on the 64-bit port, not the 64 KB of the other tiers: this check also runs the
    # gateway's payload validation tables (protocol/gwmessages.py, ~5 KB of bytecode that
    # no node loads) with a vector file parsed in the heap, and the 64-bit port doubles
    # every object. The node's own budget is test_node_32bit.
    # One file per run, as a node would parse one document at a time.
    for name in ("frames.json", "framing.json", "cbor.json", "contract_payloads.json",
                 "contract_frames.json"):
        r = micropython_module("vectors_check", heap="96K",
                               args=[str(ROOT / "protocol" / "vectors"), name])
        assert r.returncode == 0, name + ": " + r.stderr
        assert "VECTORS checked=" in r.stdout and "failed=0" in r.stdout, r.stdout + r.stderr


def test_randomised_roundtrips_under_micropython_64k(micropython_module):
    r = micropython_module("protocol_fuzz", heap="64K", args=["150"])
    assert r.returncode == 0, r.stderr
    assert "FUZZ iterations=150 failed=0" in r.stdout, r.stdout + r.stderr


def test_the_heap_limit_is_real(micropython_module, tmp_path):
    # guards the tier itself: if -X heapsize stopped limiting, the tests above would prove nothing
    mp = Path(ROOT / ".venv" / "bin" / "micropython")
    r = subprocess.run([str(mp), "-X", "heapsize=64K", "-c", "b = bytearray(80000)"], capture_output=True, text=True)
    assert r.returncode != 0 and "MemoryError" in r.stdout + r.stderr
