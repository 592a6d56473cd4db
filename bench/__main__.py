"""`python -m bench <name> [args]`: run bench/<name>.py's main(argv).

Every benchmark prints a table, then one last line of JSON, and measures its baseline
in the same run so the figures are ratios, not absolute claims about this machine."""
import importlib
import pkgutil
import sys
from pathlib import Path


def available():
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench <name> [options]\nbenchmarks: %s" % ", ".join(names))
        return 0 if argv else 2
    name = argv[0]
    if name not in names:
        print("unknown benchmark %r: available %s" % (name, ", ".join(names) or "(none)"),
              file=sys.stderr)
        return 2
    mod = importlib.import_module("bench." + name)
    if not hasattr(mod, "main"):
        print("bench/%s.py has no main(argv)" % name, file=sys.stderr)
        return 2
    rc = mod.main(argv[1:])
    return 0 if rc is None else rc


if __name__ == "__main__":
    sys.exit(main())
