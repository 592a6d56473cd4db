# A set-rules CONFIG the node cannot afford, on the MicroPython unix port (modules as
# .mpy, as on a board; tests/firmware/test_config_nomem_mpy.py runs it). argv[-1] is an
# empty work directory.
#
# The heap is filled with ballast and then 256 bytes more of it are freed before each try,
# so the CONFIG's MemoryError falls at every place it can: loading the checks and the CBOR
# decoder, decoding, checking the rules, installing them, writing flash, queueing the ack.
# At every level the node must survive and stay consistent: either it runs the new
# version (rules, node.cfg and config.good.json) and queued its ack, or it runs the old
# one (rules, node.cfg and flash as before), sent no ack and counted config_no_memory.
# Between tries it keeps sampling. Once the heap has room, the CONFIG is applied.
import gc
import json
import sys

from firmware.app import Node
from firmware.hal import Hal
from firmware.main import downlink
from firmware.nodeconfig import checked, save_running
from firmware.unload import unload, unload_config
from protocol import gwmessages
from protocol import messages as M

failures = []


def check(what, ok):
    if not ok:
        failures.append(what)
        print("FAIL", what)


class NoMachine:
    pass


class Still:
    def read(self):
        return 100, 0


RAIN, DISP = 0x08, 0x10
raw = {"version": 1, "node": 7, "key": "11" * 32, "board": "esp32_devkitc",
       "channels": [{"id": "displacement.0", "driver": "fake"}, {"id": "rain.0", "driver": "fake"}],
       "rules": [[9, DISP, 1, 2, 1, 3000, 100, 2, 600]], "log_kb": 16}
# the landslide profile's rules (tools/provision.py), as the gateway's set-rules sends them
NEW_RULES = [[1, DISP, 2, 2, 10800, 200, 50, 3600], [2, DISP, 2, 3, 3600, 1000, 200, 3600],
             [3, DISP, 4, 4, 7200, 3600, 900, 3600], [6, DISP, 5, 3, 7200, 50, 800, 3600, 172800],
             [7, DISP, 5, 4, 7200, 50, 850, 3600, 172800], [4, RAIN, 3, 2, 3600, 300, 50, 1800],
             [5, RAIN, 3, 3, 1200, 500, 50, 1800]]
hal = Hal(machine=NoMachine(), root=sys.argv[-1])
save_running(hal, raw)
node = Node(hal, checked(raw), {DISP: Still(), RAIN: Still()}, None, console=lambda s: None,
            downlink=downlink)
del raw, save_running, checked
from firmware.logscan import open_log  # noqa: E402  (boot code, dropped as main.py does)

open_log(node.log, node.clock)
del open_log
unload("firmware.logscan")
unload_config()
node.start(0)


class Downlink:
    mtype = 9               # protocol.frame.CONFIG

    def __init__(self, payload):
        self.payload = payload


def flash_version():
    f = hal.open("config.good.json", "r")
    try:
        return json.loads(f.read())["version"]
    finally:
        f.close()


def rule_ids():
    return sorted([r.rule_id for r in node.engine.rules])


ballast = []
now = 10.0
refused = applied = 0
for free in range(0, 1000):    # how many 256-byte pieces of ballast are freed
    version = free + 2
    old_version = node.cfg.version
    old_rules = rule_ids()
    old_acks = len([c for c in node.control if c.mtype == 5])
    old_nomem = node.counts.get("config_no_memory", 0)
    seq = node.log.take_seq()
    node.link.sent(now, seq, 0.1)
    # built before the heap is filled: with it full, the test's own work would fail
    payload = gwmessages.encode_config(seq, {M.C_VERSION: version, M.C_RULES: NEW_RULES})
    # fill the heap with 256-byte pieces, then smaller ones; free the first `free` pieces
    # (allocated one after the other: free space of free * 256 B in one piece, or nearly)
    dl = Downlink(payload)
    gc.collect()
    ones = [None] * 1000        # the 256-byte pieces, freed without allocating
    n = 0
    try:
        while n < len(ones):
            ones[n] = bytearray(256)
            n += 1
    except MemoryError:
        pass
    for size in (64, 16):
        try:
            while True:
                ballast.append(bytearray(size))
        except MemoryError:
            pass
    for i in range(min(free, n)):
        ones[i] = None
    gc.collect()
    node._on_config(now, dl)
    ballast = []
    ones = None
    gc.collect()
    acks = len([c for c in node.control if c.mtype == 5])
    if node.cfg.version == version:
        applied += 1
        check("%d B freed: applied and saved (flash v%d, rules %r, acks %d)"
              % (free * 256, flash_version(), rule_ids(), acks - old_acks),
              flash_version() == version and rule_ids() == [1, 2, 3, 4, 5, 6, 7]
              and acks == old_acks + 1)
        break
    refused += 1
    check("%d B freed: refused, old config kept" % (free * 256),
          node.cfg.version == old_version and flash_version() == old_version
          and rule_ids() == old_rules and acks == old_acks
          and node.counts.get("config_no_memory", 0) == old_nomem + 1)
    node.step(now + 1)          # the node goes on sampling
    now += 60
check("refused on a full heap at least once", refused > 0)
check("applied once the heap had room", applied == 1)
print("CONFIG_NOMEM ok=%d failures=%d refused=%d" % (not failures, len(failures), refused))
