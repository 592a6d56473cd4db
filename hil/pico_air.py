"""The radio between an emulated Pico's LoRa module and the gateway, on wall time.

The node's UART0 pty is the module's serial side. This plays a transparent Ebyte module
there as the node's driver sees one: AUX (GP6) high while idle, low while it takes a
packet in and sends it; bytes the node writes in normal mode (M0 = M1 = 0) form one
packet per frame (protocol/framing.py: 0x00 | COBS | 0x00); packets go through the rig's
medium (hil/medium.py: LoRa airtime, half duplex, loss) to a pty whose other end is the
gateway's radio port (`module = "none"`), and what the gateway says comes back the same
way. Configuration mode (M1 = 1) answers nothing here: the node's boot path does not
configure its module (provisioning does, on the bench)."""
import os
import select
import threading
import time
import tty

from hil.medium import GATEWAY, OK, Medium, split_packets

M0, M1, AUX = 2, 3, 6


class PicoAir:
    def __init__(self, pico, node_id, medium=None, m0=M0, m1=M1, aux=AUX):
        self.pico = pico
        self.node = node_id
        self.medium = medium or Medium(sf=7, loss=0.0)
        self.pins = {"m0": m0, "m1": m1}
        self.aux = aux
        self.level = {m0: 0, m1: 0}
        gm, gs = os.openpty()
        tty.setraw(gm)
        tty.setraw(gs)
        self._gw_m, self._gw_s = gm, gs
        self.gateway_port = os.ttyname(gs)
        self._node = os.open(pico.uart_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        os.set_blocking(gm, False)
        self.t0 = time.monotonic()
        self.uplink = []        # (t, bytes, outcome) node -> gateway
        self.downlink = []      # (t, bytes, outcome) gateway -> node
        self._due = []          # (arrive, dst, Tx)
        self._stop = threading.Event()
        self._thread = None
        self._mark = pico.mark()

    def now(self):
        return time.monotonic() - self.t0

    def normal_mode(self):
        return self.level[self.pins["m0"]] == 0 and self.level[self.pins["m1"]] == 0

    def start(self):
        self.pico.watch(self.pins["m0"], self.pins["m1"])
        self.pico.pin(self.aux, 1)
        self._thread = threading.Thread(target=self._run, daemon=True, name="pico-air")
        self._thread.start()
        return self

    def _pin_events(self):
        evs = self.pico.events
        while self._mark < len(evs):
            e = evs[self._mark]
            self._mark += 1
            if e.get("ev") == "pin" and e["pin"] in self.level:
                self.level[e["pin"]] = 1 if e["value"] else 0

    def _run(self):
        from_node = bytearray()
        from_gw = bytearray()
        while not self._stop.is_set():
            r, _, _ = select.select([self._node, self._gw_m], [], [], 0.01)
            self._pin_events()
            if self._node in r:
                try:
                    from_node += os.read(self._node, 4096)
                except BlockingIOError:
                    pass
                if self.normal_mode():
                    for pkt in split_packets(from_node):
                        self._send(self.node, pkt)
                else:
                    del from_node[:]
            if self._gw_m in r:
                try:
                    from_gw += os.read(self._gw_m, 4096)
                except BlockingIOError:
                    pass
                for pkt in split_packets(from_gw):
                    self._send(GATEWAY, pkt)
            now = self.now()
            for item in [d for d in self._due if d[0] <= now]:
                self._due.remove(item)
                self._deliver(*item[1:])

    def _send(self, src, pkt):
        tx = self.medium.transmit(src, self.now(), pkt)
        dst = GATEWAY if src == self.node else self.node
        self._due.append((tx.arrive, dst, tx))
        if src == self.node:
            # the module is busy while it sends: AUX low until the packet is on the air
            self.pico.pin(self.aux, 0)
            self._due.append((tx.end, "aux", None))

    def _deliver(self, dst, tx):
        if dst == "aux":
            self.pico.pin(self.aux, 1)
            return
        outcome = self.medium.outcome(tx, dst)
        log = self.uplink if dst == GATEWAY else self.downlink
        log.append((self.now(), tx.data, outcome))
        if outcome != OK:
            return
        if dst == GATEWAY:
            os.write(self._gw_m, tx.data)
        elif self.normal_mode():
            os.write(self._node, tx.data)

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for fd in (self._node, self._gw_m, self._gw_s):
            try:
                os.close(fd)
            except OSError:
                pass
