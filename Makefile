# The two commands: `make run` (demo site) and `make test` (every tier that needs no hardware).
VENV   := .venv
PY     := $(VENV)/bin/python
READY  := $(VENV)/.ready

.PHONY: run test setup broker mp32 chromium postgres rp2emu stubs lint bench clean

$(READY): requirements.txt pyproject.toml tools/setup/ensure-venv.sh
	@VENV=$(VENV) sh tools/setup/ensure-venv.sh

setup: $(READY) broker mp32 chromium postgres rp2emu stubs

# PostgreSQL server binaries for the hub's tests (#16); they run their own cluster
postgres:
	@sh tools/setup/ensure-postgres.sh

broker:
	@sh tools/setup/ensure-mosquitto.sh

# Debian's chromium + chromedriver for the status page's browser tests (tests/browser.py)
chromium:
	@sh tools/setup/ensure-chromium.sh

# 32-bit MicroPython (WebAssembly port under Node) for tests/firmware/test_node_32bit.py
mp32:
	@sh tools/setup/ensure-mp32.sh

# emulated Raspberry Pi Pico (npm rp2040js, pinned in tools/rp2/emu/) for tests/rp2 (#15)
rp2emu: mp32
	@sh tools/setup/ensure-rp2emu.sh

# the esp32 and rp2 ports' API stubs for tools/stubcheck.py (tests/tools/test_stubcheck.py, #15)
stubs: $(READY)
	@sh tools/setup/ensure-stubs.sh

# pytest exits 5 when it collected nothing: that is a failure, never a pass.
test: setup
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

run: setup
	$(PY) -m hil.demo $(DEMO_ARGS)

lint: $(READY)
	$(VENV)/bin/ruff check .

bench: $(READY)
	$(PY) -m bench wire

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
