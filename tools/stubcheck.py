"""Check the node's hardware calls against the real ports' APIs, without a board.

    python -m tools.stubcheck              # esp32 and rp2; exit 1 on any error
    python -m tools.stubcheck --port rp2

The HAL (firmware/hal.py, firmware/halsetup.py) and the code that reaches `machine`
through it get the `machine` module injected (tests pass a fake), so a type checker sees
`hal.machine.Pin(...)` as a call on an unknown object. This copies firmware/ and
protocol/ into build/stubcheck/<port>/, rewrites `hal.machine` / `self.machine` to the
module `machine` itself (and `hal._esp32_mod()` to the module `esp32` on esp32), keeping
every line where it was, and runs mypy with the port's PyPI stubs (micropython-esp32-stubs,
micropython-rp2-rpi-pico-stubs, pinned in tools/stubs/, installed by
tools/setup/ensure-stubs.sh) as its standard library and `--platform` set to the port's
sys.platform, so code behind `sys.platform == "rp2"` is checked only for rp2. The HAL
modules are checked in full (check_untyped_defs); the rest is read for its interfaces.
Errors are printed with the original file names and line numbers.
"""
import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "build" / "stubs"
WORK = ROOT / "build" / "stubcheck"
PORTS = {"esp32": "esp32", "rp2": "rp2"}          # port -> sys.platform
# modules whose every function body is checked: the ones that call machine/esp32 directly
CHECKED = ("firmware.hal", "firmware.halsetup", "firmware.main", "firmware.startup")
# third-party stub modules with their own mypy errors (not ours to fix)
STUB_PACKAGES = ("machine", "vfs", "_mpy_shed.*", "rp2", "esp32", "esp", "network", "bluetooth")

_MACHINE = re.compile(r"\b(?:hal|self)\.machine\b")
_ESP32 = re.compile(r"\b(?:hal|self)\._esp32_mod\(\)")


def rewrite(text, port):
    """The source as the checker should see it: the injected modules are the port's own.
    Line numbers do not change (the import goes on line 1, before a `;`)."""
    out = _MACHINE.sub("machine", text)
    if port == "esp32":
        out = _ESP32.sub("esp32", out)
    if out == text:
        return text
    mods = "machine" + (", esp32" if port == "esp32" and _ESP32.search(text) else "")
    return "import %s; %s" % (mods, out)      # a docstring on line 1 stays an expression


def stage(port, root=ROOT, work=WORK):
    dest = work / port
    if dest.exists():
        shutil.rmtree(dest)
    for top in ("firmware", "protocol"):
        for p in (root / top).rglob("*.py"):
            if "__pycache__" in p.parts or p.name == "manifest.py":
                continue
            q = dest / p.relative_to(root)
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_text(rewrite(p.read_text(), port))
        for d in [dest / top] + [x for x in (dest / top).rglob("*") if x.is_dir()]:
            (d / "__init__.py").touch()
    # the rest of firmware/ and protocol/ is read for the types it gives the HAL modules
    # (follow_imports = silent), and its CPython fallbacks are not this check's business
    cfg = ["[mypy]", "follow_imports = silent",
           "", "[mypy-%s]" % ",".join(CHECKED), "check_untyped_defs = True",
           "", "[mypy-%s]" % ",".join(STUB_PACKAGES), "ignore_errors = True", ""]
    (dest / "mypy.ini").write_text("\n".join(cfg))
    return dest


def check(port, root=ROOT, work=WORK):
    stubs = STUBS / port
    if not (stubs / "machine.pyi").exists():
        raise SystemExit("stubcheck: no %s stubs in %s: run `make setup` "
                         "(tools/setup/ensure-stubs.sh)" % (port, stubs))
    dest = stage(port, root, work)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(dest / "mypy.ini"),
           "--custom-typeshed-dir", str(stubs), "--platform", PORTS[port],
           "--python-version", "3.11", "--no-site-packages", "--no-incremental",
           "--cache-dir", "/dev/null", "--show-error-codes", "--no-error-summary",
           ] + [a for m in CHECKED for a in ("-m", m)]
    env = {"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, env=env)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error:" in ln and not ln.startswith(str(stubs))]
    for ln in lines:
        if not ln.startswith(str(stubs)):
            print("[%s] %s" % (port, ln))
    if r.returncode not in (0, 1):
        raise SystemExit("stubcheck: mypy failed to run (%d):\n%s" % (r.returncode, r.stderr))
    return errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", choices=sorted(PORTS), action="append")
    a = ap.parse_args(argv)
    bad = 0
    for port in a.port or sorted(PORTS):
        errors = check(port)
        print("stubcheck %s: %s" % (port, "%d errors" % len(errors) if errors else "ok"))
        bad += len(errors)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
