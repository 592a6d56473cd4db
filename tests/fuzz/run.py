"""Run one fuzz target under atheris (libFuzzer, coverage-guided):

    .venv/bin/python tests/fuzz/run.py NAME SECONDS     # make fuzz runs every target

The corpus lives in build/fuzz/NAME/ (seeded from protocol/vectors at each run and
kept, so longer runs start where the last one stopped); a finding is written to
build/fuzz/crashes/NAME-* and the run exits non-zero with the traceback. The last
line printed is JSON: target, seconds, execs, execs_per_s, corpus size, finding."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]


def child(name, seconds, corpus, crashes):
    import atheris
    with atheris.instrument_imports(include=["protocol", "gateway.downlink"]):
        import targets  # (it imports protocol.cbordecode itself)
    atheris.Setup([sys.argv[0], str(corpus), "-max_total_time=%d" % seconds,
                   "-artifact_prefix=%s/%s-" % (crashes, name), "-print_final_stats=1",
                   "-rss_limit_mb=1024", "-timeout=10"], targets.TARGETS[name])
    atheris.Fuzz()


def main(argv):
    if argv[:1] == ["--child"]:
        return child(argv[1], int(argv[2]), argv[3], argv[4])
    import targets  # not in the child: there it is imported instrumented
    if len(argv) != 2 or argv[0] not in targets.TARGETS:
        print("usage: run.py NAME SECONDS   (NAME: %s)" % ", ".join(targets.TARGETS),
              file=sys.stderr)
        return 2
    name, seconds = argv[0], int(argv[1])
    import seeds
    corpus = ROOT / "build" / "fuzz" / name
    crashes = ROOT / "build" / "fuzz" / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds.seeds(name)):
        (corpus / ("seed-%03d" % i)).write_bytes(s)
    # libFuzzer ends the process itself: the figures come from its report on stderr
    p = subprocess.run([sys.executable, __file__, "--child", name, str(seconds), str(corpus),
                        str(crashes)], capture_output=True, text=True, errors="replace",
                       timeout=seconds + 300)
    text = p.stderr
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    execs = int(m[-1]) if m else 0
    rate = re.findall(r"exec/s: (\d+)", text)
    finding = None
    if p.returncode != 0:
        sys.stderr.write(text[-20000:])
        tb = re.search(r"=== Uncaught Python exception: ===\n(.*?)\n", text)
        finding = tb.group(1) if tb else "exit %d" % p.returncode
    print(json.dumps({"target": name, "seconds": seconds, "execs": execs,
                      "execs_per_s": round(execs / seconds) if seconds else 0,
                      "last_exec_per_s_report": int(rate[-1]) if rate else None,
                      "corpus": len(os.listdir(corpus)), "finding": finding}), flush=True)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
