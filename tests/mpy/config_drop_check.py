# A CONFIG downlink on the MicroPython unix port, modules loaded as .mpy as on a board
# (tests/firmware/test_app_config_mpy.py runs it). argv[-1] is an empty work directory.
#
#  * where boot dropped the config checks (firmware/main.py does), a CONFIG loads them,
#    applies, and drops them again
#  * where they stayed loaded (a rig that keeps them), a CONFIG leaves them loaded: a
#    reload later could meet a fragmented heap (seen in the HIL remote-command scenario)
import sys

from firmware.app import Node
from firmware.hal import Hal
from firmware.runconfig import NodeConfig
from firmware.unload import CONFIG_MODULES, unload_config
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


cfg = NodeConfig({"version": 1, "node": 7, "key": "11" * 32, "board": "esp32_devkitc",
                  "channels": [{"id": "displacement.0", "driver": "fake"}],
                  "rules": [[1, 0x10, 1, 2, 1, 3000, 100, 2, 600]], "log_kb": 16})
node = Node(Hal(machine=NoMachine(), root=sys.argv[-1]), cfg, {0x10: Still()}, None,
            console=lambda s: None)
node.start(0)

unload_config()                                        # as firmware/main.py after boot
check("boot dropped the checks", not any(n in sys.modules for n in CONFIG_MODULES))
new, result, _ = node._check_config({M.C_VERSION: 2, M.C_INTERVALS: {M.I_SAMPLE_S: 30}}, 10)
check("applied with the checks loaded for it", result == M.RESULT_OK and node.cfg.version == 2
      and node.sampler.sample_s == 30)
check("and dropped again", not any(n in sys.modules for n in CONFIG_MODULES))

import firmware.nodeconfig  # noqa: E402,F401  (a node that keeps the checks loaded)

new, result, _ = node._check_config({M.C_VERSION: 3, M.C_RULES: [[2, 0x10, 1, 3, 1, 4000, 100, 2, 600]]}, 20)
check("applied", result == M.RESULT_OK and node.cfg.version == 3 and node.engine.rules[0].rule_id == 2)
check("the checks stay loaded", "firmware.nodeconfig" in sys.modules)
print("CONFIG_DROP ok=%d failures=%d" % (not failures, len(failures)))
