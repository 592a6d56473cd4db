"""A time seam for the HIL rig (hil/clock.py): the gateway's wall clock, or a simulated
one shared through a file when STATIONGW_SIMCLOCK names it.

    clock = simclock.from_env()      # time.time on a real site
    Daemon(cfg, clock=clock)

Only the stamps the daemon derives from its `clock` (reading and alarm times, replay
state, status) follow simulated time; timers (batch age, MQTT keepalive and
reconnect back-off, Modbus polls) keep running on wall time. On a real site the
variable is not set and nothing changes."""
import mmap
import os
import struct
import time

ENV = "STATIONGW_SIMCLOCK"
_SIZE = 16


def from_env(environ=None):
    path = (environ if environ is not None else os.environ).get(ENV)
    if not path:
        return time.time
    return FileClock(path)


class FileClock:
    """Reads the rig's clock file: u64 sequence (odd while being written), f64 Unix s."""

    def __init__(self, path):
        fd = os.open(path, os.O_RDONLY)
        try:
            self._mm = mmap.mmap(fd, _SIZE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.path = path

    def __call__(self):
        mm = self._mm
        while True:
            s1, t = struct.unpack("<Qd", mm[:_SIZE])
            if s1 & 1:
                continue
            if struct.unpack("<Q", mm[0:8])[0] == s1:
                return t


class BridgeClock:
    """The clock object gateway/modbus.py's ModbusBridge takes (`time()` for stamps,
    `monotonic()` for its poll schedule), stamping on the daemon's clock while polls
    keep wall-time pacing: `ModbusBridge(..., clock=BridgeClock(daemon.clock))`."""

    def __init__(self, stamp_clock):
        self.time = stamp_clock
        self.monotonic = time.monotonic
