"""The package as a technician or a site installs it: the wheel built from this checkout,
installed into a fresh venv, run from a directory where the checkout is not on the path.
Once `firmware/` was left out: `stationctl decode` crashed and `flash --dry-run` planned
19 files instead of every file of protocol/ and firmware/."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gateway import cli as gw_cli
from tools import cli as ctl_cli
from tools import flash

ROOT = Path(__file__).resolve().parents[2]
TREES = ("protocol", "gateway", "firmware", "tools", "hil", "bench", "hub")


def subcommands(parser):
    for a in parser._actions:
        if a.__class__.__name__ == "_SubParsersAction":
            return sorted(a.choices)
    return []


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools' build/ cache in the checkout could carry stale files
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "__pycache__", "*.egg-info", ".pytest_cache", "node_modules"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(tmp / "dist"), str(src)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp / "dist").glob("*.whl"))
    venv = tmp / "venv"
    # a fresh venv without its own pip (ensurepip takes ~15 s); this pip installs into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    # the project's pins as constraints, so the install is the one `make setup` tested
    pins = tmp / "constraints.txt"
    pins.write_text("".join(re.sub(r"\[.*?\]", "", line.split("#")[0]).strip() + "\n"
                            for line in (ROOT / "requirements.txt").read_text().splitlines()))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                        "install", "-q", "--disable-pip-version-check", "-c", str(pins),
                        str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp / "elsewhere"
    work.mkdir()
    return wheel, venv, work


def run(installed, *argv, **kw):
    _wheel, venv, work = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"                    # not the checkout's .venv
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def test_the_wheel_holds_every_source_file_of_the_trees(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [str(p.relative_to(ROOT)) for tree in TREES for p in (ROOT / tree).rglob("*.py")
               if "__pycache__" not in p.parts and str(p.relative_to(ROOT)) not in names]
    assert missing == []
    for data in ("firmware/variants/esp32_devkitc.json", "protocol/vectors/frames.json",
                 "gateway/web/status.html", "gateway/examples/site.toml",
                 "tools/mpy_fakes/machine.py"):
        assert data in names


def test_every_subcommand_help_runs_from_the_installed_package(installed):
    for tool, parser in (("stationctl", ctl_cli.build_parser()), ("stationgw", gw_cli.parser())):
        cmds = subcommands(parser)
        assert cmds
        for cmd in cmds:
            r = run(installed, tool, cmd, "--help")
            assert r.returncode == 0 and "usage:" in r.stdout, (tool, cmd, r.stderr[-2000:])


def test_decode_and_check_config_run_from_the_installed_package(installed):
    vec = json.loads((ROOT / "protocol" / "vectors" / "frames.json").read_text())
    frame = vec["valid"][0]
    r = run(installed, "stationctl", "decode", frame["frame"], "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["node"] == frame["expect"]["node"] and out["seq"] == frame["expect"]["seq"]
    r = run(installed, "stationgw", "check-config", "/nonexistent/site.toml")
    assert r.returncode == 2 and "cannot read config file" in r.stderr


def test_flash_dry_run_plans_every_node_file(installed):
    r = run(installed, "stationctl", "flash", "--dry-run", "--port", "/dev/ttyUSB0", "--board",
            "esp32", "--app-only")
    assert r.returncode == 0, r.stderr
    planned = sorted(re.findall(r"^   (\S+) +\d+ B +sha256 ", r.stdout, re.M))
    # what the checkout deploys (tools/flash.py's own list), every file of it
    want = sorted(dest for _src, dest, _compile in flash.app_files())
    assert planned == want and "firmware/app.mpy" in planned
    n_sources = sum(1 for tree in ("protocol", "firmware") for p in (ROOT / tree).rglob("*.py")
                    if "__pycache__" not in p.parts)
    assert len(planned) >= n_sources
