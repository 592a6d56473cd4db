"""The committed rp2 images are the ones tools/rp2/build.py recorded: same SHA-256, same
sources, RP2040 UF2s, with their licences beside them (CI never builds them)."""
import hashlib
import json

import pytest

from hil.pico import app_digest, frozen_stale
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


def test_record_says_which_app_sources_the_frozen_image_holds():
    entry = RECORD["images"]["station"]
    assert len(entry["app_digest"]) == 64
    assert entry.get("app_sources"), "RECORD.json lists no app sources for the frozen image: " \
        "rebuild it with `make rp2-frozen`"
    assert "firmware/manifest.py" in entry["app_sources"]
    assert all(p.startswith(("firmware/", "protocol/")) and len(h) == 64
               for p, h in entry["app_sources"].items())


def test_frozen_image_is_built_from_this_trees_firmware():
    """The committed image with the app frozen in is a build product of firmware/ and
    protocol/; CI cannot rebuild it (a 2.5 GB toolchain), so a stale one skips here with
    the files that differ and the command, and every user of it refuses it or falls back
    (hil.pico_board: the stock image + .mpy; tools.rp2.frozen_figures: an error)."""
    why = frozen_stale()
    if why:
        pytest.skip("STALE frozen image: " + why)
    assert RECORD["images"]["station"]["app_digest"] == app_digest()
