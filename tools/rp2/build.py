"""Build MicroPython's RPI_PICO image from pinned sources, offline and reproducibly.

    python -m tools.rp2.build                 # stock image + the image with the app frozen
    python -m tools.rp2.build --frozen        # only the frozen one (`make rp2-frozen`)
    python -m tools.rp2.build --only stock    # just one of them
    python -m tools.rp2.build --check         # rebuild into build/rp2 and compare with the record

Needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib,
cmake and build-essential (tools/setup/ensure-rp2-toolchain.sh), and a bare git directory
for each repository in SOURCES (`--mirror DIR`: DIR/<owner>+<name>/repo, or one git dir
per repository with --git owner/name=PATH). CI does not build: it uses the images
committed in tools/rp2/images/, whose SHA-256 RECORD holds (tests/rp2/test_rp2_image.py).

Reproducible: the sources are exported at fixed commits into a fixed-name tree,
SOURCE_DATE_EPOCH is the MicroPython commit's date (py/makeversionhdr.py stamps it), and
-ffile-prefix-map strips the build machine's paths from the objects, so two builds of
the same inputs are byte-identical. The frozen image also depends on firmware/ and
protocol/ as they are in the working tree: the record keeps their digest (`app_digest`)
and each file's SHA-256 (`app_sources`), so hil.pico.frozen_stale can say when the
committed image no longer matches the tree, and which files differ.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hil.pico import app_digest, app_sources

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tools" / "rp2" / "images"
RECORD = IMAGES / "RECORD.json"
BOARD = "RPI_PICO"
VERSION = "v1.28.0"

# path in the MicroPython tree -> (repository, commit). One table: the record, the notices
# and the export all read it. tinyusb: .gitmodules names a micropython fork that cannot be
# fetched; the same commit is in hathach/tinyusb.
SOURCES = (
    ("", "micropython/micropython", "e0e9fbb17ed6fd06bb76e266ae554784c9c80804", "MIT"),
    ("lib/pico-sdk", "raspberrypi/pico-sdk", "a1438dff1d38bd9c65dbd693f0e5db4b9ae91779",
     "BSD-3-Clause"),
    ("lib/tinyusb", "hathach/tinyusb", "aa0fc2e08f1c2dd6f026a431e8989357fbb4c5bf", "MIT"),
    ("lib/micropython-lib", "micropython/micropython-lib",
     "8380c7bb8f9e5e5260e9539156742925e00366b2", "MIT"),
    ("lib/mbedtls", "Mbed-TLS/mbedtls", "107ea89daaefb9867ea9121002fbbdf926780e98",
     "Apache-2.0 OR GPL-2.0-or-later"),
)
# licence files copied into the notices, per source path
LICENCE_FILES = {"": ("LICENSE",), "lib/pico-sdk": ("LICENSE.TXT",),
                 "lib/tinyusb": ("LICENSE",), "lib/micropython-lib": ("LICENSE",),
                 "lib/mbedtls": ("LICENSE",)}

IMAGE_NAMES = {"stock": "%s-%s.uf2" % (BOARD, VERSION),
               "station": "%s-%s-station.uf2" % (BOARD, VERSION)}
UF2_FAMILY_RP2040 = "0xe48bff56"
FLASH_BASE = "0x10000000"


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def git(gitdir, *args, **kw):
    return subprocess.run(["git", "--git-dir", str(gitdir)] + list(args), check=True,
                          capture_output=True, **kw).stdout


def export(gitdir, commit, dest):
    """Write the tree at `commit` into dest, blob by blob (a snapshot may lack a few blobs
    the build never reads: those are listed, not fatal)."""
    if git(gitdir, "cat-file", "-t", commit).strip() != b"commit":
        raise SystemExit("%s: commit %s is not in this repository: fetch it again" % (gitdir, commit))
    entries = []
    for line in git(gitdir, "ls-tree", "-r", "-z", "--full-tree", commit).split(b"\0"):
        if not line:
            continue
        meta, path = line.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob":
            entries.append((mode, sha, path.decode()))
    proc = subprocess.Popen(["git", "--git-dir", str(gitdir), "cat-file", "--batch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    missing = []
    for mode, sha, path in entries:
        proc.stdin.write(sha + b"\n")
        proc.stdin.flush()
        head = proc.stdout.readline().split()
        if head[1] == b"missing":
            missing.append(path)
            continue
        data = proc.stdout.read(int(head[2]))
        proc.stdout.read(1)
        out = dest / path
        out.parent.mkdir(parents=True, exist_ok=True)
        if mode == b"120000":
            if out.is_symlink() or out.exists():
                out.unlink()
            os.symlink(data.decode(), out)
        else:
            out.write_bytes(data)
            if mode == b"100755":
                out.chmod(0o755)
    proc.stdin.close()
    proc.wait()
    return missing


def find_gitdir(repo, mirror, overrides):
    if repo in overrides:
        return Path(overrides[repo])
    d = Path(mirror) / repo.replace("/", "+") / "repo"
    if not d.exists():
        raise SystemExit("no git directory for %s at %s: fetch it (or pass --git %s=PATH)"
                         % (repo, d, repo))
    return d


def export_sources(src, mirror, overrides):
    stamp = src / ".station-sources"
    want = json.dumps([s[:3] for s in SOURCES])
    if stamp.exists() and stamp.read_text() == want:
        return
    if src.exists():
        shutil.rmtree(src)
    for path, repo, commit, _ in SOURCES:
        missing = export(find_gitdir(repo, mirror, overrides), commit, src / path)
        if missing:
            print("%s: %d blobs absent from the snapshot (not used by the rp2 build): %s"
                  % (repo, len(missing), ", ".join(missing[:5])), file=sys.stderr)
    stamp.write_text(want)


def source_date_epoch(mirror, overrides):
    gitdir = find_gitdir(SOURCES[0][1], mirror, overrides)
    return int(git(gitdir, "show", "-s", "--format=%ct", SOURCES[0][2]).strip())


def stage_app(dest):
    """Copy the app next to its manifest in a fixed place, so the frozen names and paths
    do not depend on where this checkout lives."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in app_sources():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, dest / rel)
    shutil.copyfile(ROOT / "firmware" / "manifest.py", dest / "firmware" / "manifest.py")
    return dest / "firmware" / "manifest.py"


def build_image(kind, work, src, epoch, jobs):
    out = work / ("build-" + kind)
    if out.exists():
        shutil.rmtree(out)
    pairs = ((src, "micropython"), (out, "build"), (work / "app", "app"))
    maps = " ".join("-ffile-prefix-map=%s=/%s" % (p, n) for p, n in pairs)
    # .S files: gcc does not hand its prefix maps to the assembler, whose DWARF would
    # keep the work directory (the .elf differed between two work dirs; .bin did not)
    asm_maps = maps + " " + " ".join("-Wa,--debug-prefix-map=%s=/%s" % (p, n) for p, n in pairs)
    args = ["cmake", "-S", src / "ports" / "rp2", "-B", out, "-DMICROPY_BOARD=" + BOARD,
            "-DPICO_NO_PICOTOOL=1", "-DPICO_BUILD_DOCS=0"]
    digest = None
    if kind == "station":
        # of what is staged now, not of the tree at the end
        digest = (app_digest(), app_sources())
        args.append("-DMICROPY_FROZEN_MANIFEST=%s" % stage_app(work / "app"))
    # through the environment: CMake adds CFLAGS to the toolchain's own flags (-mcpu...),
    # where -DCMAKE_C_FLAGS would replace them
    # GIT_CEILING_DIRECTORIES: the exported tree has no .git, and py/makeversionhdr.py
    # must not find the checkout this runs in (it would stamp that repo's commit)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), LC_ALL="C", TZ="UTC",
               CFLAGS=maps, CXXFLAGS=maps, ASMFLAGS=asm_maps, GIT_CEILING_DIRECTORIES=str(work))
    run(args, env=env)
    run(["make", "-j%d" % jobs, "-C", out], env=env)
    uf2 = out / "firmware.uf2"
    run([sys.executable, src / "tools" / "uf2conv.py", "-c", "-b", FLASH_BASE,
         "-f", UF2_FAMILY_RP2040, "-o", uf2, out / "firmware.bin"], env=env)
    return uf2, digest


def toolchain():
    v = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True,
                       check=True).stdout.splitlines()[0]
    return v


def write_notices(src):
    parts = ["Third-party notices for the MicroPython %s %s images in this directory.\n"
             "Each image is built by tools/rp2/build.py from the sources below, unmodified.\n"
             "MicroPython's own LICENSE (first) lists the licences of the code it carries\n"
             "under lib/, extmod/ and drivers/.\n" % (BOARD, VERSION)]
    for path, repo, commit, spdx in SOURCES:
        for name in LICENCE_FILES[path]:
            f = src / path / name
            parts.append("=" * 78 + "\n%s  (https://github.com/%s, commit %s)\n%s: %s\n"
                         % (path or "micropython", repo, commit, spdx, name) + "=" * 78 + "\n")
            parts.append(f.read_text(errors="replace"))
    (IMAGES / "THIRD-PARTY-NOTICES.txt").write_text("\n".join(parts))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_record():
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", default="/work/.mirror",
                    help="directory of bare git dirs named <owner>+<name>/repo")
    ap.add_argument("--git", action="append", default=[], metavar="OWNER/NAME=PATH")
    ap.add_argument("--work", default=str(ROOT / "build" / "rp2"))
    ap.add_argument("--only", choices=sorted(IMAGE_NAMES), action="append")
    ap.add_argument("--frozen", action="store_true",
                    help="only the image with the app frozen in (same as --only station)")
    ap.add_argument("--check", action="store_true",
                    help="build, compare with RECORD.json, and leave the committed images alone")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    overrides = dict(g.split("=", 1) for g in a.git)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "micropython"
    export_sources(src, a.mirror, overrides)
    epoch = source_date_epoch(a.mirror, overrides)
    record = load_record()
    images = record.setdefault("images", {})
    bad = []
    if a.frozen:
        a.only = list(dict.fromkeys((a.only or []) + ["station"]))
    for kind in a.only or ("stock", "station"):
        t0 = time.monotonic()
        uf2, digest_app = build_image(kind, work, src, epoch, a.jobs)
        digest = sha256(uf2)
        print("%s: %s sha256 %s (%.0f s)" % (kind, IMAGE_NAMES[kind], digest,
                                              time.monotonic() - t0), file=sys.stderr)
        if a.check:
            want = images.get(kind, {}).get("sha256")
            if digest_app and images.get(kind, {}).get("app_digest") != digest_app[0]:
                bad.append("%s: not compared: the record is of other app sources (a stale "
                           "frozen image; `make rp2-frozen` rebuilds it); built %s" % (kind, digest))
            elif want != digest:
                bad.append("%s: built %s, recorded %s" % (kind, digest, want))
            continue
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(uf2, IMAGES / IMAGE_NAMES[kind])
        entry = {"file": IMAGE_NAMES[kind], "sha256": digest,
                 "bytes": uf2.stat().st_size}
        if kind == "station":
            entry["app_digest"], entry["app_sources"] = digest_app
            entry["manifest"] = "firmware/manifest.py"
        images[kind] = entry
    if a.check:
        if bad:
            raise SystemExit("not reproduced:\n  " + "\n  ".join(bad))
        print("reproduced: every image matches RECORD.json", file=sys.stderr)
        return
    record.update({
        "board": BOARD, "micropython": VERSION, "source_date_epoch": epoch,
        "toolchain": toolchain(),
        "sources": [{"path": p or ".", "repository": "https://github.com/" + r, "commit": c,
                     "licence": lic} for p, r, c, lic in SOURCES],
        "cmake": ["-DMICROPY_BOARD=" + BOARD, "-DPICO_NO_PICOTOOL=1", "-DPICO_BUILD_DOCS=0",
                  "-ffile-prefix-map (C, C++, ASM)",
                  "-DMICROPY_FROZEN_MANIFEST=firmware/manifest.py (station image)"],
        "uf2": {"family": UF2_FAMILY_RP2040, "base": FLASH_BASE},
    })
    write_notices(src)
    RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
