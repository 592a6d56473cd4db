# A CONFIG downlink on the MicroPython unix port, modules loaded as .mpy as on a board
# (tests/firmware/test_app_config_mpy.py runs it). argv[-1] is an empty work directory.
#
#  * where boot dropped the config checks and the CBOR decoder (firmware/main.py does),
#    a CONFIG loads them, applies, and drops them again, also when it is refused
#  * where they stayed loaded (a rig that keeps them), a CONFIG leaves them loaded: a
#    reload later could meet a fragmented heap (seen in the HIL remote-command scenario)
import sys

from firmware.app import Node
from firmware.hal import Hal
from firmware.main import downlink
from firmware.nodeconfig import checked, save_running
from firmware.unload import CONFIG_MODULES, unload, unload_config
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


raw = {"version": 1, "node": 7, "key": "11" * 32, "board": "esp32_devkitc",
       "channels": [{"id": "displacement.0", "driver": "fake"}],
       "rules": [[1, 0x10, 1, 2, 1, 3000, 100, 2, 600]], "log_kb": 16}
hal = Hal(machine=NoMachine(), root=sys.argv[-1])
save_running(hal, raw)          # on flash as a board has it: a CONFIG builds on config.good.json
node = Node(hal, checked(raw), {0x10: Still()}, None, console=lambda s: None, downlink=downlink)
del raw, save_running, checked
from firmware.logscan import open_log  # noqa: E402  (boot code: main.py opens the log, then drops it)

open_log(node.log, node.clock)
del open_log
unload("firmware.logscan")
node.start(0)



class Downlink:
    mtype = 9               # protocol.frame.CONFIG: Node._on_config hands CONFIG and ZONE on

    def __init__(self, payload):
        self.payload = payload


def config(now, m, fresh=True):
    """A CONFIG downlink through Node._on_config, answering a frame the node sent now
    (or, not fresh, a seq it never sent)."""
    seq = node.log.take_seq()
    node.link.sent(now, seq, 0.1)
    node._on_config(now, Downlink(gwmessages.encode_config(seq if fresh else seq + 100, m)))


def loaded():
    return [n for n in CONFIG_MODULES if n in sys.modules]


unload_config()                                        # as firmware/main.py after boot
check("boot dropped the checks and the CBOR decoder", not loaded())
config(10, {M.C_VERSION: 2, M.C_INTERVALS: {M.I_SAMPLE_S: 30}})
check("applied with the checks loaded for it", node.cfg.version == 2 and node.sampler.sample_s == 30)
check("and dropped again, the decoder too", not loaded())
config(11, {M.C_VERSION: 5}, fresh=False)
check("a CONFIG not fresh: refused", node.cfg.version == 2 and node.counts.get("config_not_fresh") == 1)
check("and the decoder dropped", not loaded())
try:
    node._on_config(12, Downlink(b"\x00\x00\x00\x01\xff"))
    check("bad CBOR refused", False)
except M.PayloadError:
    pass
check("bad CBOR: the decoder dropped", not loaded())

import firmware.nodeconfig  # noqa: E402,F401  (a node that keeps the checks loaded)

config(20, {M.C_VERSION: 3, M.C_RULES: [[2, 0x10, 1, 3, 1, 4000, 100, 2, 600]]})
check("applied", node.cfg.version == 3 and node.engine.rules[0].rule_id == 2)
check("the checks and the decoder stay loaded", "firmware.nodeconfig" in sys.modules
      and "protocol.cbordecode" in sys.modules)
print("CONFIG_DROP ok=%d failures=%d" % (not failures, len(failures)))
