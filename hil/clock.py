"""Simulated time for the HIL rig: one clock that the world, the nodes and the gateway
all read, so hours of storm run in seconds of wall time.

The rig is a discrete-event simulation. It owns the clock and moves it forward in
jumps, to the next thing that is due (a node's wake-up, a packet arriving, a scripted
action), and only when the site is *quiescent*: no packet the gateway still has to
answer. While the gateway (a real process working in wall time) commits a frame and
writes its ACK, simulated time stands still, so a commit that takes 20 ms of wall time
costs no simulated time and no node times out because the PC is slower than the air.

Who reads the clock, and how:

* the world models and the medium: `SimClock.now()` in the rig process;
* the nodes: the rig hands each step its monotonic time (seconds since that node's
  boot) on the node's control pipe; the firmware never reads a clock of its own
  (firmware/app.py is stepped on injected time);
* the gateway: a separate process, reads the same clock from a small shared file
  (`SimClock.path`), written here with a sequence lock and read by
  gateway/simclock.py, selected by the environment variable STATIONGW_SIMCLOCK.

Layout of the file (16 bytes, little endian): u64 sequence, f64 Unix seconds. The
writer makes the sequence odd, writes the time, makes it even; a reader retries while
the sequence is odd or changed under it.
"""
import mmap
import os
import struct

_FMT = "<Qd"
SIZE = struct.calcsize(_FMT)
ENV = "STATIONGW_SIMCLOCK"


class SimClock:
    """The rig's clock: `epoch` is the Unix time of simulated second 0."""

    def __init__(self, path, epoch):
        self.path = str(path)
        self.epoch = float(epoch)
        self.t = 0.0                  # simulated seconds since the scenario started
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"\0" * SIZE)
            self._mm = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._seq = 0
        self._publish()

    def now(self):
        """Simulated Unix time."""
        return self.epoch + self.t

    def set(self, t):
        """Move to simulated second t (never backwards: a clock that steps back would
        reorder everything downstream)."""
        if t < self.t:
            raise ValueError("simulated time cannot go back: %r < %r" % (t, self.t))
        self.t = float(t)
        self._publish()

    def _publish(self):
        mm = self._mm
        self._seq += 1
        mm[0:8] = struct.pack("<Q", self._seq)
        mm[8:16] = struct.pack("<d", self.epoch + self.t)
        self._seq += 1
        mm[0:8] = struct.pack("<Q", self._seq)

    def close(self):
        self._mm.close()


def read(mm):
    """One consistent reading of a mapped clock file (Unix seconds)."""
    while True:
        s1, t = struct.unpack(_FMT, mm[:SIZE])
        if s1 & 1:
            continue
        s2 = struct.unpack("<Q", mm[0:8])[0]
        if s1 == s2:
            return t
