"""The committed rp2 images are the ones tools/rp2/build.py recorded: same SHA-256, same
sources, RP2040 UF2s, with their licences beside them (CI never builds them)."""
import hashlib
import json

from tools.flash import RP2040_FAMILY, uf2_families
from tools.rp2 import build

RECORD = json.loads(build.RECORD.read_text())


def _sha(name):
    return hashlib.sha256((build.IMAGES / name).read_bytes()).hexdigest()


def test_committed_images_match_the_record():
    assert set(RECORD["images"]) == set(build.IMAGE_NAMES)
    for kind, entry in RECORD["images"].items():
        assert entry["file"] == build.IMAGE_NAMES[kind]
        assert _sha(entry["file"]) == entry["sha256"], "%s differs from RECORD.json: rebuild " \
            "with `python -m tools.rp2.build`" % entry["file"]
        assert (build.IMAGES / entry["file"]).stat().st_size == entry["bytes"]


def test_images_are_rp2040_uf2():
    for entry in RECORD["images"].values():
        assert uf2_families((build.IMAGES / entry["file"]).read_bytes()) == {RP2040_FAMILY}


def test_bootrom_matches_the_record():
    rom = RECORD["bootrom"]
    data = (build.IMAGES / rom["file"]).read_bytes()
    assert len(data) == 16384
    assert hashlib.sha256(data).hexdigest() == rom["sha256"]
    assert "BSD" in (build.IMAGES / "LICENSE-bootrom.txt").read_text()


def test_record_lists_the_pinned_sources_and_their_licences():
    pinned = [("https://github.com/" + r, c) for _, r, c, _ in build.SOURCES]
    assert [(s["repository"], s["commit"]) for s in RECORD["sources"]] == pinned
    notices = (build.IMAGES / "THIRD-PARTY-NOTICES.txt").read_text()
    for _, repo, commit, _ in build.SOURCES:
        assert commit in notices and repo in notices
    assert "The MIT License" in notices       # MicroPython's own
    assert RECORD["source_date_epoch"] > 0
