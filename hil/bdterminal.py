"""A simulated BeiDou RDSS terminal on a pty, for tests and the HIL rig (docs/beidou.md).

It speaks the RDSS 2.1 sentences the gateway driver uses: CCICA -> BDICI (card number
and service interval), CCTXA -> BDFKI (feedback) and, for a message that went, its
delivery to the receiving side (`on_message(card, dest, payload, t)`: the county's
command terminal, where the platform decodes it). What it simulates of the real thing:

* the card's service interval: a CCTXA earlier than `interval_s` after the last send is
  refused with FKI ...,N,N,0,<wait s>;
* the card's message size: a longer message is refused (FKI N, inhibit 2);
* failures: each send fails with probability `fail_p` (FKI N, inhibit 1: no beam or
  no power), or the next `fail_next` sends do; `silent` drops all feedback;
* delays: feedback after `feedback_s`, delivery after `deliver_s` more.

Time comes from `clock()` (simulated seconds in the rig). Pure Python on the master
side of a pty; `serve()` runs it in a thread until `stop()`."""
import os
import random
import select
import threading

from gateway.beidou import CARD_BYTES, Splitter, sentence


class SimTerminal:
    def __init__(self, fd, clock, card="0242286", interval_s=60, max_bytes=CARD_BYTES["bds2"],
                 fail_p=0.0, feedback_s=1.0, deliver_s=5.0, seed=0, on_message=None):
        self.fd = fd
        self.clock = clock
        self.card = card
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self.fail_p = fail_p
        self.fail_next = 0
        self.silent = False
        self.feedback_s = feedback_s
        self.deliver_s = deliver_s
        self.rng = random.Random(seed)
        self.on_message = on_message
        self.splitter = Splitter()
        self.last_send = None
        self.last_txa = None         # when the gateway last asked to send (the rig paces after it)
        self.timers = []             # (due, kind, args)
        self.log = []                # (t, what)
        self.delivered = []          # (t, dest, payload)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # ---- protocol
    def handle(self, data):
        now = self.clock()
        for item in self.splitter.feed(data):
            if isinstance(item, str):
                self.log.append((now, "garbage: " + item))
                continue
            name, f = item
            if name == "CCICA":
                self._reply(now, sentence("BDICI", self.card, "00" + self.card, "0000000", 6,
                                          self.interval_s, 3, "N", 0))
            elif name == "CCTXA":
                self._txa(now, f)
            else:
                self.log.append((now, "unknown sentence " + name))

    def busy(self, now, window_s=120.0):
        """Feedback or a delivery is still due, or a send was asked for lately."""
        return bool(self.timers) or (self.last_txa is not None and now - self.last_txa < window_s)

    def _txa(self, now, f):
        self.last_txa = now
        dest, content = f[0], f[3]
        if self.last_send is not None and now - self.last_send < self.interval_s:
            wait = int(self.interval_s - (now - self.last_send) + 0.999)
            self.log.append((now, "refused: interval"))
            self._reply(now, sentence("BDFKI", "TXA", "N", "N", 0, wait), delay=0.1)
            return
        payload = bytes.fromhex(content)
        if len(payload) > self.max_bytes:
            self.log.append((now, "refused: %d bytes > %d" % (len(payload), self.max_bytes)))
            self._reply(now, sentence("BDFKI", "TXA", "N", "Y", 2, 0), delay=0.1)
            return
        self.last_send = now
        if self.fail_next > 0 or self.rng.random() < self.fail_p:
            self.fail_next = max(0, self.fail_next - 1)
            self.log.append((now, "failed"))
            self._reply(now, sentence("BDFKI", "TXA", "N", "Y", 1, 0), delay=self.feedback_s)
            return
        self.log.append((now, "sent %d bytes" % len(payload)))
        self._reply(now, sentence("BDFKI", "TXA", "Y", "Y", 0, 0), delay=self.feedback_s)
        with self._lock:
            self.timers.append((now + self.feedback_s + self.deliver_s, "deliver", (dest, payload)))

    def _reply(self, now, data, delay=0.05):
        if self.silent and b"FKI" in data:
            return
        with self._lock:
            self.timers.append((now + delay, "write", (data,)))

    def tick(self):
        """Fire due timers (feedback writes, deliveries)."""
        now = self.clock()
        with self._lock:
            due = [x for x in self.timers if x[0] <= now]
            self.timers = [x for x in self.timers if x[0] > now]
        for t, kind, args in sorted(due, key=lambda x: x[0]):
            if kind == "write":
                try:
                    os.write(self.fd, args[0])
                except OSError:
                    pass
            else:
                dest, payload = args
                self.delivered.append((t, dest, payload))
                if self.on_message is not None:
                    self.on_message(self.card, dest, payload, t)

    # ---- thread
    def serve(self):
        self._thread = threading.Thread(target=self._run, name="sim-beidou", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.004)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if data:
                    self.handle(data)
            self.tick()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
