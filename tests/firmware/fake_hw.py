"""Load tests/mpy_fakes/machine.py as a fresh, privately named module: each test gets
its own fake hardware and no global `machine` is installed."""
import importlib.util
from pathlib import Path

FAKES = Path(__file__).resolve().parent.parent / "mpy_fakes"


def load_fake_machine():
    spec = importlib.util.spec_from_file_location("fake_machine", FAKES / "machine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
