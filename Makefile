# The two commands: `make run` (demo site) and `make test` (every tier that needs no hardware).
VENV   := .venv
PY     := $(VENV)/bin/python
READY  := $(VENV)/.ready

.PHONY: run test setup broker mp32 chromium postgres rp2emu stubs fuse soak fuzz lint bench clean

$(READY): requirements.txt pyproject.toml tools/setup/ensure-venv.sh
	@VENV=$(VENV) sh tools/setup/ensure-venv.sh

setup: $(READY) broker mp32 chromium postgres rp2emu stubs fuse

# PostgreSQL server binaries for the hub's tests (#16); they run their own cluster
postgres:
	@sh tools/setup/ensure-postgres.sh

broker:
	@sh tools/setup/ensure-mosquitto.sh

# Debian's chromium + chromedriver for the status page's browser tests (tests/browser.py)
chromium:
	@sh tools/setup/ensure-chromium.sh

# FUSE (libfuse3, fusermount3) for the power-cut rig (hil/powerfs.py), issue #12
fuse:
	@sh tools/setup/ensure-fuse.sh

# 32-bit MicroPython (WebAssembly port under Node) for tests/firmware/test_node_32bit.py
mp32:
	@sh tools/setup/ensure-mp32.sh

# emulated Raspberry Pi Pico (npm rp2040js, pinned in tools/rp2/emu/) for tests/rp2 (#15)
rp2emu: mp32
	@sh tools/setup/ensure-rp2emu.sh

# the esp32 and rp2 ports' API stubs for tools/stubcheck.py (tests/tools/test_stubcheck.py, #15)
stubs: $(READY)
	@sh tools/setup/ensure-stubs.sh

# The rp2 image with the app frozen in, rebuilt from this tree's firmware/ and protocol/
# (#15). After changing them: `make rp2-frozen`, then commit tools/rp2/images/
# (tests/rp2/test_rp2_image.py skips, and tools.rp2.frozen_figures refuses, while it is
# stale). ~8 min on 2 busy cores. Needs the ARM toolchain (ensure-rp2-toolchain.sh, apt,
# ~2.5 GB) and the pinned sources as bare git dirs in RP2_MIRROR/<owner>+<name>/repo
# (tools/rp2/build.py SOURCES). `make rp2-check` rebuilds both images into build/rp2 and
# compares them with tools/rp2/images/RECORD.json, byte for byte.
.PHONY: rp2-frozen rp2-check
RP2_MIRROR ?= /work/.mirror
rp2-frozen: $(READY)
	@sh tools/setup/ensure-rp2-toolchain.sh
	$(PY) -m tools.rp2.build --frozen --mirror $(RP2_MIRROR)

rp2-check: $(READY)
	@sh tools/setup/ensure-rp2-toolchain.sh
	$(PY) -m tools.rp2.build --check --mirror $(RP2_MIRROR)

# pytest exits 5 when it collected nothing: that is a failure, never a pass.
test: setup
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Long power-cut runs (issue #12): the FUSE rig under the real daemon with many more cuts,
# the littlefs torn-write sweep over a longer sequence.
SOAK_CUTS ?= 300
SOAK_LFS_STEPS ?= 160
soak: setup
	POWERCUT_CUTS=$(SOAK_CUTS) LFS_SWEEP_STEPS=$(SOAK_LFS_STEPS) $(PY) -m pytest -q -p no:cacheprovider -s \
		tests/gateway/test_powercut_fuse.py tests/firmware/test_lfs_sweep.py

# Fuzzing (issue #12): every decoder of bytes from the air or the broker (tests/fuzz),
# each target for FUZZ_SECONDS; corpora grow in build/fuzz/, findings in build/fuzz/crashes/.
FUZZ_SECONDS ?= 300
fuzz: setup
	@rc=0; for t in framing frame payloads cbor rules commands; do \
		$(PY) tests/fuzz/run.py $$t $(FUZZ_SECONDS) || rc=1; done; exit $$rc

run: setup
	$(PY) -m hil.demo $(DEMO_ARGS)

lint: $(READY)
	$(VENV)/bin/ruff check .

bench: $(READY)
	$(PY) -m bench wire

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
