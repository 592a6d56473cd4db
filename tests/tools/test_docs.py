"""docs/technician.md as a new technician uses it: the "Try it without a board first"
commands, the decode example and the monitor command, run as written (paths moved to a
temp dir); the no-hardware radio flow's commands parse (tests/tools/test_technician.py
runs that flow); the READMEs stay a screen of orientation whose links resolve; the
figures table is generated and no document copies a figure."""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "technician.md").read_text()
BIN = ROOT / ".venv" / "bin"


def sh_block_after(heading):
    start = DOC.index(heading)
    m = re.search(r"```sh\n(.*?)```", DOC[start:], re.S)
    return [ln.split("#")[0].strip() for ln in m.group(1).splitlines() if ln.split("#")[0].strip()]


def env():
    return dict(os.environ, PATH="%s:%s" % (BIN, os.environ["PATH"]))


def test_try_without_a_board(tmp_path):
    lines = sh_block_after("## Try it without a board first")
    board = None
    results = []
    try:
        for line in lines:
            line = line.replace("/tmp/", "%s/" % tmp_path)
            if line.endswith("&"):
                board = subprocess.Popen(shlex.split(line[:-1]), cwd=tmp_path, env=env(),
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert "standin: board on" in board.stdout.readline()
            elif line == "kill %1":
                board.terminate()
                board.wait(10)
            else:
                r = subprocess.run(shlex.split(line), cwd=tmp_path, env=env(), capture_output=True,
                                   text=True, timeout=120)
                results.append((line, r))
    finally:
        if board is not None and board.poll() is None:
            board.kill()
            board.wait(5)
    by_cmd = {line.split()[1]: r for line, r in results}
    assert set(by_cmd) == {"keygen", "flash", "provision", "selftest"}
    for cmd in ("keygen", "flash", "provision"):
        assert by_cmd[cmd].returncode == 0, by_cmd[cmd].stdout + by_cmd[cmd].stderr
    assert "node 17 is up: node 17 boot" in by_cmd["provision"].stdout
    st = by_cmd["selftest"]
    assert st.returncode == 18      # the stand-in has no radio module: the doc says so
    assert re.search(r"config\s+OK\s+1\s+node 17", st.stdout), st.stdout
    assert (tmp_path / "keys.toml").stat().st_mode & 0o077 == 0


def test_decode_example():
    line = sh_block_after("## 6. Decode what is on the wire")[0]
    r = subprocess.run(shlex.split(line), env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "READINGS node 101 seq 1" in r.stdout and "water_level.0" in r.stdout


@pytest.mark.broker
def test_monitor_command(broker):
    line = sh_block_after("## 7. Watch the site live")[0].replace(":1883", ":%d" % broker.port)
    r = subprocess.run(shlex.split(line) + ["--duration", "1"], env=env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "monitoring stations/lushi/+/data" in r.stderr


# ---------------------------------------------------------------- the docs themselves

READMES = [ROOT / "README.md"] + sorted(ROOT.glob("*/README.md"))
DOCS = READMES + sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(path):
    text = path.read_text()
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)} | set(
        re.findall(r'<a id="([^"]+)"></a>', text))


def test_readmes_are_a_screen_of_orientation():
    # 126 KB of READMEs once held the reference material: it lives in docs/ now
    for p in READMES:
        n = len(p.read_text().splitlines())
        assert n <= 80, "%s has %d lines: one screen; move reference material to docs/" % (p, n)


def test_every_link_resolves_inside_the_repository():
    for doc in DOCS:
        for _text, target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, frag = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), "%s links to %s, which does not exist" % (doc, target)
            assert ROOT in dest.parents or dest == ROOT, "%s links outside the repository: %s" % (
                doc, target)
            if frag and dest.suffix == ".md":
                assert frag in anchors(dest), "%s: no heading #%s in %s" % (doc, frag, dest)
        assert "shared/DESIGN.md" not in doc.read_text(), doc


def test_the_service_unit_documentation_is_in_the_install():
    unit = (ROOT / "gateway" / "systemd" / "stationgw.service").read_text()
    doc = re.search(r"^Documentation=file:///opt/stationgw/(\S+)$", unit, re.M).group(1)
    assert (ROOT / doc).exists()           # the install clones this repository to /opt/stationgw


def test_figures_live_in_one_generated_table():
    from tools import docfigures
    assert docfigures.main(["--check"]) == 0, "run python -m tools.docfigures"
    figures = docfigures.load()
    for doc in DOCS:
        if doc.name == "figures.md":
            continue
        text = doc.read_text()
        for f in figures:
            for part in re.split(r"[;(]", f["value"]):
                part = part.strip(" )")
                if len(part) >= 6 and any(c.isdigit() for c in part):
                    assert part not in text, "%s copies figure %s (%r): link to docs/figures.md" % (
                        doc, f["id"], part)


def test_no_hardware_flow_commands_parse():
    from gateway import cli as gw_cli
    from tools import cli as ctl_cli
    block = re.search(r"## No hardware at all.*?```sh\n(.*?)```", DOC, re.S).group(1)
    seen = set()
    for line in block.splitlines():
        cmd = line.split("#")[0].strip().rstrip("&").strip()
        if not cmd:
            continue
        argv = shlex.split(cmd.replace("<the board pty>", "/dev/null"))
        if argv[0] == "stationctl":
            ctl_cli.build_parser().parse_args(argv[1:])
        elif argv[0] == "stationgw":
            gw_cli.parser().parse_args(argv[1:])
        seen.add((argv[0], argv[1]))
    assert {("stationctl", "standin"), ("stationgw", "run"), ("stationctl", "provision"),
            ("stationgw", "status")} <= seen
