"""docs/figures.md from docs/figures.toml: every measured figure of the project in one
generated table, so no document copies a figure by hand.

    python -m tools.docfigures            rewrite docs/figures.md
    python -m tools.docfigures --check    exit 1 if docs/figures.md is out of date
"""
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "figures.toml"
TARGET = ROOT / "docs" / "figures.md"


def load(path=SOURCE):
    with open(path, "rb") as f:
        return tomllib.load(f)["figure"]


def render(figures):
    out = ["# Figures", "",
           "Generated from `docs/figures.toml` by `python -m tools.docfigures`: edit that file, "
           "not this one. Measured on the CI kind of machine (2 cores) unless the row says "
           "otherwise; each row says how to measure it again.", "",
           "| figure | value | measured by |", "|---|---|---|"]
    for f in figures:
        out.append('| <a id="%s"></a>%s | %s | `%s` |' % (f["id"], f["what"], f["value"], f["how"]))
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render(load())
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/figures.md is out of date: run `python -m tools.docfigures`",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
