"""BeiDou short-message fallback for alarms (docs/beidou.md).

When an alarm has not been PUBACKed by the broker within `fallback_after_s` of its
commit, or the uplink is down, the gateway sends it through an RDSS short-message
terminal on a serial port, packed into the card's message size (protocol/bdmsg.py),
one message per card service interval, red first and newest first, several alarms per
message, resent until the terminal confirms. The MQTT uplink still carries every alarm
once it is back: the dedup key (node, seq, index) makes the double delivery harmless.

Layers, as in gateway/radio.py:
  sentence(), Splitter    RDSS 2.1 ASCII sentences: $<talker><cmd>,f1,...*hh\\r\\n, hh the
                          XOR of every byte between '$' and '*'
  Terminal                the terminal's protocol, sans I/O: card info (CCICA -> BDICI),
                          send (CCTXA) -> feedback (BDFKI), received messages (BDTXR)
  AlarmQueue, Fallback    which alarms go, in which order, and when
  BeidouService           the thread that owns the serial port and polls the store
"""
import logging
import os
import threading
import time

from protocol import bdmsg

log = logging.getLogger("stationgw.beidou")

MAX_LINE = 4096          # a BDS-3 regional message is ~1750 bytes = 3500 hex characters

# bytes a card carries per message (docs/beidou.md): BDS-2 civil 628 bits; BDS-3
# regional 14,000 bits; BDS-3 global 560 bits
CARD_BYTES = {"bds2": 78, "bds3-regional": 1750, "bds3-global": 70}


class SentenceError(ValueError):
    pass


def checksum(body):
    c = 0
    for b in body:
        c ^= b
    return c


def sentence(name, *fields):
    """b'$NAME,f1,f2*hh\\r\\n'. name is talker + command, e.g. 'CCTXA'."""
    body = ",".join((name,) + tuple(str(f) for f in fields)).encode("ascii")
    return b"$" + body + b"*%02X\r\n" % checksum(body)


def parse(line):
    """One line (without CR LF) -> (name, [fields]); SentenceError says what is wrong."""
    if not line.startswith(b"$"):
        raise SentenceError("does not start with '$'")
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3:
        raise SentenceError("no '*hh' checksum at the end")
    body = line[1:star]
    try:
        want = int(line[star + 1:], 16)
    except ValueError:
        raise SentenceError("checksum %r is not hex" % line[star + 1:]) from None
    if checksum(body) != want:
        raise SentenceError("checksum %02X, computed %02X" % (want, checksum(body)))
    try:
        parts = body.decode("ascii").split(",")
    except UnicodeDecodeError:
        raise SentenceError("not ASCII") from None
    return parts[0], parts[1:]


class Splitter:
    """Bytes from the port -> sentences (and reasons for garbage), resynchronising on '$'."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf.extend(data)
        out = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > MAX_LINE:
                    out.append("too_long")
                    del self.buf[:]
                return out
            line = bytes(self.buf[:i]).rstrip(b"\r")
            del self.buf[:i + 1]
            d = line.find(b"$")
            if d < 0:
                if line.strip():
                    out.append("garbage")
                continue
            try:
                out.append(parse(line[d:]))
            except SentenceError as e:
                out.append("bad sentence: %s" % e)


# ---------------------------------------------------------------- the terminal, sans I/O

CARD = "card"              # (CARD, card number, interval s)
CONFIRMED = "confirmed"    # (CONFIRMED, token)
FAILED = "failed"          # (FAILED, token, reason, wait s)
RECEIVED = "received"      # (RECEIVED, sender card, payload bytes)


class Terminal:
    """The RDSS 2.1 conversation with one terminal. Call `start(now)` and write what it
    returns; feed bytes read with `feed(data, now)`; `ready(now)` says a message may go;
    `send(payload, token, now)` returns the sentence to write; `poll(now)` times out a
    send that got no feedback. Events come back as tuples (CARD, CONFIRMED, FAILED,
    RECEIVED)."""

    def __init__(self, dest, min_interval_s=0.0, confirm_timeout_s=10.0, query_every_s=30.0):
        if not (isinstance(dest, str) and dest.isdigit() and len(dest) <= 7):
            raise ValueError("destination card %r: allowed up to 7 digits" % (dest,))
        self.dest = dest
        self.min_interval_s = float(min_interval_s)
        self.confirm_timeout_s = float(confirm_timeout_s)
        self.query_every_s = float(query_every_s)
        self.splitter = Splitter()
        self.card = None
        self.interval_s = None
        self.next_send = 0.0
        self.inflight = None          # (token, sent_at)
        self.last_query = None
        self.counts = {}

    def _count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def start(self, now):
        self.last_query = now
        return sentence("CCICA", 0, "00")

    def query_due(self, now):
        return self.card is None and (self.last_query is None
                                      or now - self.last_query >= self.query_every_s)

    def ready(self, now):
        return self.card is not None and self.inflight is None and now >= self.next_send

    def send(self, payload, token, now):
        if not self.ready(now):
            raise RuntimeError("terminal not ready (no card, a send in flight, or too early)")
        self.inflight = (token, now)
        # the spacing starts now; the terminal's feedback may push it further
        self.next_send = now + max(self.interval_s, self.min_interval_s)
        self._count("sent")
        # communication type 1 (normal), transmission mode 1 (code: content in hex)
        return sentence("CCTXA", self.dest, 1, 1, bytes(payload).hex().upper())

    def deadline(self):
        if self.inflight is not None:
            return self.inflight[1] + self.confirm_timeout_s
        return self.next_send if self.card is not None else None

    def poll(self, now):
        if self.inflight is not None and now >= self.inflight[1] + self.confirm_timeout_s:
            token = self.inflight[0]
            self.inflight = None
            self._count("no_feedback")
            return [(FAILED, token, "no feedback from the terminal in %.0f s"
                     % self.confirm_timeout_s, 0)]
        return []

    def feed(self, data, now):
        events = []
        for item in self.splitter.feed(data):
            if isinstance(item, str):
                self._count("garbage")
                log.warning("event=beidou_garbage reason=%r", item)
                continue
            name, f = item
            try:
                ev = self._sentence(name[2:], f, now)
            except (IndexError, ValueError) as e:
                self._count("bad_fields")
                log.warning("event=beidou_bad_sentence name=%s error=%r", name, e)
                continue
            if ev is not None:
                events.append(ev)
        return events

    def _sentence(self, cmd, f, now):
        if cmd == "ICI":
            card, interval = f[0], int(f[4])
            if not card.strip("0"):
                self._count("no_card")
                self.card = None
                return None
            self.card, self.interval_s = card, float(interval)
            return (CARD, card, interval)
        if cmd == "FKI":
            # FKI,<command>,<executed Y/N>,<interval respected Y/N>,<tx inhibit>,<wait s>
            if f[0] != "TXA" or self.inflight is None:
                return None
            token = self.inflight[0]
            self.inflight = None
            ok, freq_ok = f[1] == "Y", f[2] == "Y"
            wait = int(f[4]) if len(f) > 4 and f[4].strip() else 0
            if ok and freq_ok:
                self._count("confirmed")
                return (CONFIRMED, token)
            self._count("refused")
            self.next_send = max(self.next_send, now + wait)
            reason = "sent too early (wait %d s)" % wait if not freq_ok else \
                "terminal refused (inhibit %s)" % (f[3] if len(f) > 3 else "?")
            return (FAILED, token, reason, wait)
        if cmd == "TXR":
            # TXR,<type>,<sender>,<mode 0/1/2>,<time>,<content>
            mode, content = f[2], f[4]
            data = bytes.fromhex(content) if mode == "1" else content.encode()
            return (RECEIVED, f[1], data)
        return None


# ---------------------------------------------------------------- what goes, and when

def _rank(a):
    return (-a.level, -a.t, a.node, a.seq, a.index)


class AlarmQueue:
    """Alarms waiting for BeiDou: most severe first, newest first within a level (a clear
    is level 0, last). Keys are the dedup keys (node, seq, index)."""

    def __init__(self):
        self.items = {}

    def __len__(self):
        return len(self.items)

    def add(self, a):
        self.items[a.key()] = a

    def discard(self, key):
        self.items.pop(key, None)

    def ordered(self):
        return sorted(self.items.values(), key=_rank)


class Fallback:
    """Which committed alarms need BeiDou: those the broker has not acknowledged within
    `after_s` (or at once while the uplink is down), each until the terminal confirms a
    message that carried it. Pure: `update` takes the store's pending alarms."""

    def __init__(self, after_s=20.0):
        self.after_s = float(after_s)
        self.queue = AlarmQueue()
        self.confirmed = set()        # keys a confirmed message carried
        self.inflight = ()            # keys in the message the terminal has now

    def update(self, now, pending, uplink_up):
        """pending: [(alarm_id, gateway.records.Alarm)] not PUBACKed; returns keys queued now."""
        live = set()
        added = []
        for _aid, a in pending:
            key = (a.node, a.seq, a.index)
            live.add(key)
            if key in self.confirmed or key in self.queue.items or key in self.inflight:
                continue
            if uplink_up and now - a.rx_ms / 1000.0 < self.after_s:
                continue
            self.queue.add(bdmsg.BdAlarm(a.node, a.seq, a.index, a.event, a.level, a.prev_level,
                                         a.chan, a.rule_id, a.rule_kind, a.value, a.threshold,
                                         a.t))
            added.append(key)
        for key in list(self.queue.items):
            if key not in live:           # the broker has it now: no need to spend the card
                self.queue.discard(key)
        self.confirmed &= live | set(self.inflight)
        return added

    def take(self, limit, now):
        """The alarms for the next message (most urgent first, as many as fit `limit`
        bytes), and whether more stay queued; they leave the queue until confirm/fail."""
        order = self.queue.ordered()
        n = bdmsg.fit(order, int(now), limit)
        if n == 0:
            return [], False
        chosen = order[:n]
        for a in chosen:
            self.queue.discard(a.key())
        self.inflight = tuple(a.key() for a in chosen)
        return chosen, len(order) > n

    def confirmed_sent(self, alarms):
        for a in alarms:
            self.confirmed.add(a.key())
        self.inflight = ()

    def failed(self, alarms):
        for a in alarms:
            self.queue.add(a)             # back in the queue: resent at the next slot
        self.inflight = ()


# ---------------------------------------------------------------- the I/O shell

class BeidouService:
    """Owns the terminal's serial port in a thread: reads feedback, polls the store's
    pending alarms every `tick_s`, and sends one message per card interval.

    store: gateway.store.Store (pending_alarms()). uplink_up: () -> bool.
    clock: () -> Unix seconds (the daemon's clock, simulated in the HIL rig)."""

    def __init__(self, settings, ser, store, uplink_up, clock=time.time, key=None,
                 tick_s=0.5):
        self.s = settings
        self.ser = ser
        self.store = store
        self.uplink_up = uplink_up
        self.clock = clock
        self.key = key
        self.tick_s = tick_s
        self.terminal = Terminal(settings.dest, settings.min_interval_s,
                                 settings.confirm_timeout_s)
        self.fallback = Fallback(settings.fallback_after_s)
        self.msg_seq = 0
        self._sending = None          # alarms of the message in flight
        self._stop = threading.Event()
        self._thread = None
        self.sent_messages = 0
        self.confirmed_alarms = 0
        self.received = []            # (sender, bytes): messages the terminal delivered

    def start(self):
        self._thread = threading.Thread(target=self._run, name="beidou", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _write(self, b):
        try:
            self.ser.write(b)
        except Exception as e:   # a dead terminal costs the fallback, never the gateway
            log.error("event=beidou_write_failed error=%r", e)

    def _run(self):
        self._write(self.terminal.start(self.clock()))
        last = None
        while not self._stop.is_set():
            try:
                self.step()
                last = None
            except Exception as e:   # keep the fallback alive through surprises; say so once
                if repr(e) != last:
                    log.exception("event=beidou_step_failed error=%r", e)
                last = repr(e)
            self._stop.wait(self.tick_s)

    def step(self):
        now = self.clock()
        try:
            data = self.ser.read(self.ser.in_waiting or 1) if self.ser.in_waiting else b""
        except Exception as e:
            log.error("event=beidou_read_failed error=%r", e)
            data = b""
        events = self.terminal.feed(data, now) if data else []
        events += self.terminal.poll(now)
        for ev in events:
            self._event(ev, now)
        if self.terminal.query_due(now):
            self._write(self.terminal.start(now))
        self.fallback.update(now, self.store.pending_alarms(), bool(self.uplink_up()))
        if self.terminal.ready(now) and len(self.fallback.queue):
            limit = self.s.max_bytes
            alarms, more = self.fallback.take(limit, now)
            if alarms:
                self.msg_seq = (self.msg_seq + 1) & 0xFFFF
                msg = bdmsg.encode(self.key, self.s.gateway_number, self.msg_seq, int(now),
                                   alarms, more)
                self._sending = alarms
                self._write(self.terminal.send(msg, self.msg_seq, now))
                self.sent_messages += 1
                log.warning("event=beidou_send seq=%d alarms=%d levels=%s bytes=%d more=%s",
                            self.msg_seq, len(alarms), ",".join(str(a.level) for a in alarms),
                            len(msg), more)

    def _event(self, ev, now):
        kind = ev[0]
        if kind == CARD:
            log.info("event=beidou_card card=%s interval_s=%d", ev[1], ev[2])
        elif kind == CONFIRMED and self._sending is not None:
            self.fallback.confirmed_sent(self._sending)
            self.confirmed_alarms += len(self._sending)
            log.warning("event=beidou_confirmed seq=%d alarms=%d", ev[1], len(self._sending))
            self._sending = None
        elif kind == FAILED and self._sending is not None:
            self.fallback.failed(self._sending)
            log.warning("event=beidou_failed seq=%s reason=%r", ev[1], ev[2])
            self._sending = None
        elif kind == RECEIVED:
            self.received.append((ev[1], ev[2]))

    def stats(self):
        return {"card": self.terminal.card, "interval_s": self.terminal.interval_s,
                "queued": len(self.fallback.queue), "sent_messages": self.sent_messages,
                "confirmed_alarms": self.confirmed_alarms, "counts": dict(self.terminal.counts)}


def start_service(settings, store, uplink_up, clock, serial_factory):
    """Open the terminal's port and start the fallback; None (logged) if the port will
    not open: alarms then wait for MQTT as before, and the gateway keeps running."""
    try:
        ser = serial_factory(settings)
    except Exception as e:
        log.error("event=beidou_port_failed port=%s error=%r: alarms wait for MQTT only",
                  settings.port, e)
        return None
    # the HIL rig runs simulated time fast and sets a shorter tick (hil/procs.py)
    tick = float(os.environ.get("STATIONGW_BEIDOU_TICK_S", "0.5"))
    svc = BeidouService(settings, ser, store, uplink_up, clock, key=settings.key, tick_s=tick)
    svc.start()
    log.info("event=beidou_started port=%s dest=%s card=%s max_bytes=%d after_s=%g",
             settings.port, settings.dest, settings.card, settings.max_bytes,
             settings.fallback_after_s)
    return svc
