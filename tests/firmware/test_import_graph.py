"""Imports in firmware/ and protocol/ go one way (issue #15, firmware/README.md).

The graph is read from the source (ast), imports inside functions included: on a board
without frozen modules those lazy imports are how boot-only code is loaded, used and
dropped again (firmware/unload.py), and a lazy import back into the module that loaded
it is still a cycle. Two rules:
  * no cycles at all;
  * layering: a boot module (below, BOOT) may import resident code, never the reverse.
    Boot code runs at start or for a rare event (a CONFIG downlink) and is dropped
    afterwards; the orchestrating boot module (firmware/main.py) imports the one-shot
    module, calls it and drops it. A resident module that needs boot code at run time
    is handed a function (Node's `downlink=`), it does not import it.
Both checks are also run on planted trees, so they can fail."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("firmware", "protocol")

# The boot layer: run once at start (or for a rare event) and dropped, or entry points.
# Everything else in firmware/ and protocol/ is resident (or a library that resident code
# may load, such as protocol/cbordecode.py and protocol/ruleparse.py) and imports none of
# these.
BOOT = {
    "firmware.main": "entry point: boot, then the loop; hands Node its downlink handler",
    "firmware.boot": "the port's boot.py",
    "firmware.startup": "console escape and wiring, dropped once the Node is built",
    "firmware.board": "board files: read to build pins, dropped after wiring",
    "firmware.halsetup": "building pins, ADCs, UARTs, the watchdog; reset and wake causes",
    "firmware.drivers.factory": "config channels -> driver objects",
    "firmware.nodeconfig": "config checks: boot and a CONFIG downlink",
    "firmware.downlink": "a CONFIG or ZONE downlink, loaded by main.downlink()",
    "firmware.logscan": "the frame log's scan after a reboot",
    "firmware.radio.ebyte_config": "the radio module's configuration mode",
    "firmware.selftest": "the technician's self-test",
    "firmware.unload": "drops boot modules: used by boot code only",
    "firmware.manifest": "the frozen build's manifest (not a module on the node)",
}

# Cycles left on purpose, each with its reason; the test fails when one is gone too, so
# this list cannot go stale.
KNOWN_CYCLES = {
    ("protocol.ruleparse", "protocol.trip"):
        "trip.Rule's constructor and from_wire/from_dict load the checks in ruleparse, "
        "which builds Rules: splitting them changes Rule's API (~95 callers) in the "
        "trip engine (issue #11's area); left for it",
}


def module_name(path, root):
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph(root, packages=PACKAGES):
    """{module: {imported module in the same tree}} for every .py under `packages`."""
    files = {}
    for pkg in packages:
        for p in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" not in p.parts:
                files[module_name(p, root)] = p
    graph = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")
                    keep = parts if is_pkg else parts[:-1]
                    keep = keep[:len(keep) - (node.level - 1)]
                    base = ".".join(keep + ([base] if base else []))
                targets = [base + "." + a.name if base + "." + a.name in files else base
                           for a in node.names]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "__import__" and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                targets = [node.args[0].value]
            for t in targets:
                # `import a.b.c` imports a and a.b too; only modules of this tree count
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph):
    """Every strongly connected component with more than one module (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def layer_violations(graph, boot=BOOT):
    """[(resident module, boot module it imports)]."""
    return sorted((m, d) for m, deps in graph.items() if m not in boot
                  for d in deps if d in boot)


def test_the_graph_sees_the_node():
    g = import_graph(ROOT)
    # lazy imports count: app.py loads protocol.trip at top, main.py loads startup in run()
    assert "protocol.trip" in g["firmware.app"]
    assert "firmware.startup" in g["firmware.main"]
    assert "protocol.cbordecode" in g["protocol.messages"]      # inside decode_config()
    assert set(BOOT) <= set(g), sorted(set(BOOT) - set(g))


def test_no_import_cycles_in_firmware_and_protocol():
    found = cycles(import_graph(ROOT))
    assert found == sorted(KNOWN_CYCLES), (
        "import cycles in firmware/ + protocol/: %s (imports go one way: boot code imports "
        "resident code, never the reverse; firmware/README.md)" % found)


def test_resident_code_never_imports_boot_code():
    bad = layer_violations(import_graph(ROOT))
    assert bad == [], ("resident modules import boot modules: %s. Hand the resident code a "
                       "function from the boot side instead (firmware/README.md)" % bad)


def test_every_boot_module_exists():
    g = import_graph(ROOT)
    assert [m for m in BOOT if m not in g] == []


def _tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize("a, b", [
    ("from firmware import b\n", "def f():\n    from firmware import a\n"),          # lazy, back
    ("import firmware.b\n", "from . import a\n"),                                    # relative
    ("def f():\n    __import__('firmware.b')\n", "from firmware.a import X\n"),    # by name
])
def test_a_planted_cycle_is_found(tmp_path, a, b):
    root = _tree(tmp_path, {"firmware/a.py": a, "firmware/b.py": b, "protocol/__init__.py": ""})
    assert cycles(import_graph(root)) == [("firmware.a", "firmware.b")]


def test_a_longer_planted_cycle_is_found(tmp_path):
    root = _tree(tmp_path, {"firmware/a.py": "from protocol import c\n",
                            "firmware/b.py": "def f():\n    import firmware.a\n",
                            "protocol/__init__.py": "",
                            "protocol/c.py": "from firmware.b import f\n"})
    assert cycles(import_graph(root)) == [("firmware.a", "firmware.b", "protocol.c")]


def test_a_resident_module_importing_boot_code_is_found(tmp_path):
    root = _tree(tmp_path, {"firmware/app.py": "def on_config():\n    from firmware import downlink\n",
                            "firmware/downlink.py": "from protocol import frame\n",
                            "firmware/main.py": "from firmware.app import Node\n",
                            "protocol/__init__.py": "", "protocol/frame.py": ""})
    g = import_graph(root)
    assert cycles(g) == []
    boot = {"firmware.main": "", "firmware.downlink": ""}
    assert layer_violations(g, boot) == [("firmware.app", "firmware.downlink")]
