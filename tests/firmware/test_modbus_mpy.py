"""The firmware's Modbus RTU master under the MicroPython unix port, on a real pty,
against a real pymodbus RTU server. The port's fake UART needs a pty path and
pymodbus owns the other one, so a small relay joins two pty pairs."""
import json
import os
import select
import threading
import tty
from pathlib import Path

import pytest
from modbus_sim import RtuServer

pytestmark = pytest.mark.mpy

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "mpy_fakes"
SCRIPT = ROOT / "tests" / "mpy" / "fw_modbus_pty.py"
HOLDING = [1000 + i for i in range(20)]
INPUT = [2000 + i for i in range(10)]


def _pty():
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    return m, s


class Relay:
    """Copies bytes both ways between two pty masters, like a null-modem cable."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            r, _, _ = select.select([self.a, self.b], [], [], 0.05)
            for fd in r:
                try:
                    data = os.read(fd, 512)
                except OSError:
                    return
                os.write(self.b if fd == self.a else self.a, data)

    def close(self):
        self.stop = True
        self.thread.join(2)


def test_master_on_micropython_reads_pymodbus_over_a_pty(micropython):
    fds = []
    server = relay = None
    try:
        dev_m, dev_s = _pty()        # pymodbus end
        mcu_m, mcu_s = _pty()        # MicroPython end
        quiet_m, quiet_s = _pty()    # nobody answers here
        fds += [dev_m, dev_s, mcu_m, mcu_s, quiet_m, quiet_s]
        server = RtuServer(os.ttyname(dev_s), HOLDING, INPUT)
        relay = Relay(dev_m, mcu_m)
        r = micropython(SCRIPT, heap="96K", args=[os.ttyname(mcu_s), os.ttyname(quiet_s)],
                        extra_path=[FAKES], timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["holding"] == [0, HOLDING[:10]]
        assert res["input"] == [0, INPUT[2:5]]
        assert res["exception"] == [7, 2]      # MODBUS_EXCEPTION, illegal data address
        assert res["silent"] == 5              # NO_RESPONSE
        assert res["de_low"] == 0
    finally:
        if relay:
            relay.close()
        if server:
            server.close()
        for fd in fds:
            os.close(fd)
