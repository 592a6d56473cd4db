"""Modbus bridge: polls the site's Modbus devices (RTU over RS-485 and TCP) with pymodbus,
turns register values into readings of "virtual nodes", runs the trip engine on them
and drives the siren coil.

    bridge = ModbusBridge(cfg, sink, alloc_seq)   # cfg: gateway.config.SiteConfig
    task = asyncio.create_task(bridge.run())      # until cancelled
    bridge.stats()                                # per device: online, failures, counts...
    bridge.siren_stats(), bridge.sink_stats()
    bridge.set_external_level("radio", level)     # radio-node alarms may drive the siren too

`sink(records)` is an async callable that gets one list per poll: the poll's
gateway.records.Reading records (node = the device's virtual node; seq from
`alloc_seq(node)` (sync or async; the store persists it), one per WINDOW polls; idx =
point position * WINDOW + the poll's number in the window) followed by the Alarm records
the trip engine raised on them (under a seq of their own). It should commit the list
in one transaction. Device state changes (online/offline) go to `on_state(DeviceState)`
if given, and are always logged once per change.

Scheduling. Each bus has one task and one request queue, so a bus carries one
transaction at a time, with the RTU inter-frame silence (3.5 characters, 1.75 ms above
19200 baud) after each. Buses are independent: a dead device on one bus never touches
another. A device is polled every `poll_s` on a fixed-rate schedule (missed slots are
skipped, not bunched). A transaction waits at most `timeout_s`; after a timeout, the
retry (up to `retries`) is queued after `retry_backoff_s * 2**k`, so the other devices
on the bus go in between. When all retries fail the device goes offline; it is then
probed once (no retries) after `poll_s`, doubling up to `offline_probe_max_s`, so a dead
device costs its bus one timeout per probe. The first good answer brings it back online.

Errors are classified: `timeouts` (no reply), `crc_errors` (bytes came back but no
valid frame: CRC or framing error), `connect_failures` (serial port missing, TCP
refused, I/O error), `exceptions` (a Modbus exception response; its code
is kept in `last_exception_code` and the point's reading carries fault
fault_exception(code)).

If the sink raises, its records are kept and sent with the next delivery (all alarms;
readings up to MAX_UNSENT, older ones dropped and counted): `sink_stats()`.

Siren: `modbus.alarm_output` names a device and coil. When the highest level of all
Modbus channels (and of the external levels) reaches `min_level`, the coil is written
on; when it falls below, off. A failed write is retried with back-off until it lands.
"""
import asyncio
import heapq
import inspect
import itertools
import logging
import time
from collections import namedtuple

from pymodbus.exceptions import ConnectionException, ModbusException

from gateway import alarmtext
from gateway import modbus_decode as mdec
from gateway.logevent import event_line, log_event
from gateway.records import Alarm, Reading
from protocol import channels
from protocol import trip as _trip
from protocol.tripstate import VMAX as _TRIP_VMAX

log = logging.getLogger("stationgw.modbus")

DeviceState = namedtuple("DeviceState", "device node online t reason")
DeviceState.__doc__ = """A device went online (online=True) or offline; t is unix seconds,
reason a short text (e.g. "timeout", "crc error", "connect failed")."""

_READERS = {"holding": "read_holding_registers", "input": "read_input_registers",
            "coil": "read_coils", "discrete": "read_discrete_inputs"}
_PRIO_COIL, _PRIO_POLL = 0, 1
MAX_UNSENT = 10000                    # readings kept in memory while the sink fails
# Polls of one device under one seq (a "window"): point i of poll k of the window gets idx
# i * WINDOW + k, so a channel's consecutive polls have consecutive idx and the uplink
# carries them as one run [seq, idx, t0, step, values] (SPEC §9.2), as a radio frame's
# block does; and a 1 s poll costs one seq reservation (an fsync) per WINDOW polls, not one
# each. A restart starts a new window under a new seq, so no key is ever reused.
WINDOW = 1024


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


class DeviceStats:
    __slots__ = ("online", "last_ok", "consecutive_failures", "last_exception_code",
                 "last_error", "polls", "polls_ok", "timeouts", "crc_errors", "exceptions",
                 "connect_failures", "went_offline")

    def __init__(self):
        self.online = None            # None until the first poll settles it
        self.last_ok = None           # unix s of the last good poll
        self.consecutive_failures = 0
        self.last_exception_code = None
        self.last_error = ""
        self.polls = self.polls_ok = self.timeouts = self.crc_errors = 0
        self.exceptions = self.connect_failures = self.went_offline = 0

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}


class _NoReply(Exception):
    """The device gave no usable answer (timeout, bad frame or no connection)."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind              # "timeout" | "crc error" | "connect failed"


def make_client(bus, timeout, trace_packet):
    """A pymodbus async client for a bus; auto-reconnect is off, the bridge reconnects."""
    from pymodbus import FramerType
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
    if bus.type == "tcp":
        return AsyncModbusTcpClient(bus.host, port=bus.port, timeout=timeout, retries=0,
                                    reconnect_delay=0, trace_packet=trace_packet)
    return AsyncModbusSerialClient(bus.port, framer=FramerType.RTU, baudrate=bus.baudrate,
                                   parity=bus.parity, stopbits=bus.stopbits, timeout=timeout,
                                   retries=0, reconnect_delay=0, trace_packet=trace_packet)


class _Device:
    def __init__(self, cfg, rules):
        self.cfg = cfg
        self.stats = DeviceStats()
        self.plan = mdec.plan_reads(cfg.points)
        self.engine = _trip.TripEngine(rules) if rules else None
        self.next_due = 0.0           # fixed-rate schedule of regular polls
        self.attempt = 0              # retries used by the current poll
        self.window_seq = None        # seq of the current window of polls, and the
        self.window_pos = WINDOW      # number of polls already in it


class _BusWorker:
    """One task per bus: a due-time queue of jobs, executed one at a time."""

    def __init__(self, bridge, bus, devices, client_factory):
        self.bridge, self.bus, self.devices = bridge, bus, devices
        self.gap = bus.inter_frame_gap_s
        timeout = max([d.cfg.timeout_s for d in devices] or [1.0])
        self.rx_seen = False
        self.client = client_factory(bus, timeout, self._trace)
        self.queue = []
        self.order = itertools.count()
        self.wake = asyncio.Event()

    def _trace(self, sending, data):
        if not sending and data:
            self.rx_seen = True
        return data

    def push(self, due, prio, job):
        heapq.heappush(self.queue, (due, prio, next(self.order), job))
        self.wake.set()

    async def run(self):
        try:
            while True:
                now = self.bridge.clock.monotonic()
                if self.queue and self.queue[0][0] <= now:
                    job = heapq.heappop(self.queue)[3]
                    try:
                        await job()
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # a bug must not stop the bus; the log shows it
                        log.exception("%s", event_line("modbus_job_error", bus=self.bus.name))
                    if self.gap:
                        await asyncio.sleep(self.gap)
                    continue
                self.wake.clear()
                wait = (self.queue[0][0] - now) if self.queue else None
                try:
                    await asyncio.wait_for(self.wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.client.close()

    async def transact(self, dev, method, *args, **kw):
        """One request, bounded by the device's timeout. Raises _NoReply; returns the
        reply (which may be an exception response)."""
        c = self.client
        if not c.connected:
            try:
                ok = await asyncio.wait_for(c.connect(), dev.timeout_s)
            except (asyncio.TimeoutError, OSError):
                ok = False
            if not ok:
                c.close()
                raise _NoReply("connect failed")
        self.rx_seen = False
        try:
            return await asyncio.wait_for(getattr(c, method)(*args, device_id=dev.device_id,
                                                              **kw), dev.timeout_s)
        except asyncio.TimeoutError:
            pass
        except ConnectionException:
            c.close()
            raise _NoReply("connect failed") from None
        except ModbusException:
            pass                      # pymodbus' own timeout: "No response received"
        except Exception as e:        # the serial port went away, a USB adapter reset...
            log_event(log, "modbus_io_error", logging.ERROR, bus=self.bus.name, error=repr(e))
            c.close()
            raise _NoReply("io error") from None
        raise _NoReply("crc error" if self.rx_seen else "timeout")


def quiet_pymodbus():
    """pymodbus logs every timeout and failed connect (at ERROR, once per attempt): a dead
    device would flood the journal. The bridge logs each state change once, with the
    reason; an explicitly configured pymodbus log level is left alone for debugging."""
    lg = logging.getLogger("pymodbus.logging")
    if lg.level == logging.NOTSET:
        lg.setLevel(logging.CRITICAL)


class ModbusBridge:
    def __init__(self, config, sink, alloc_seq, clock=None, client_factory=make_client,
                 on_state=None):
        quiet_pymodbus()
        self.config = config
        self.sink, self.alloc_seq = sink, alloc_seq
        self.clock = clock or SystemClock()
        self.on_state = on_state
        self.devices = {}
        for d in config.modbus.devices:
            self.devices[d.name] = _Device(d, [r.rule() for r in d.rules])
        self.workers = {}
        for b in config.modbus.buses:
            devs = [x for x in self.devices.values() if x.cfg.bus == b.name]
            if devs:
                self.workers[b.name] = _BusWorker(self, b, devs, client_factory)
        self.alarm_output = config.modbus.alarm_output
        self.external = {}
        self.coil_wanted = None       # what the siren coil should be
        self.coil_state = None        # what we last wrote successfully
        self.coil_writing = False
        self.coil_failures = 0
        self._coil_gen = 0
        self.sink_errors = 0
        self.readings_dropped = 0
        self._unsent = []             # records the sink refused, sent with the next delivery
        self._inflight = set()

    # ------------------------------------------------------------ public

    async def run(self):
        """Poll until cancelled."""
        now = self.clock.monotonic()
        for w in self.workers.values():
            for d in w.devices:
                d.next_due = now
                w.push(now, _PRIO_POLL, self._poll_job(w, d))
        tasks = [asyncio.create_task(w.run(), name="modbus-bus-" + n)
                 for n, w in self.workers.items()]
        tasks.append(asyncio.create_task(self._ticker(), name="modbus-trip-tick"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._inflight:        # deliveries under way finish before we return
                await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def stats(self):
        out = {}
        for name, d in self.devices.items():
            s = d.stats.as_dict()
            s["node"] = d.cfg.node
            s["level"] = d.engine.level() if d.engine is not None else 0
            out[name] = s
        return out

    def siren_stats(self):
        return {"wanted": self.coil_wanted, "written": self.coil_state,
                "write_failures": self.coil_failures}

    def sink_stats(self):
        return {"errors": self.sink_errors, "unsent": len(self._unsent),
                "readings_dropped": self.readings_dropped}

    def level(self):
        lv = [d.engine.level() for d in self.devices.values() if d.engine is not None]
        return max(lv + list(self.external.values()) + [0])

    def set_coil(self, device, address, on):
        """A coil another feature drives (zone sirens, the village broadcast controller:
        gateway/zones.py): written at siren priority, retried with back-off until it lands;
        a newer call for the same coil supersedes a retry still waiting."""
        dev = self.devices.get(device)
        w = self.workers.get(dev.cfg.bus) if dev is not None else None
        if w is None:
            log.error("event=zone_coil_unknown device=%s address=%d", device, address)
            return False
        gens = self.__dict__.setdefault("_extra_gen", {})
        gens[(device, address)] = gen = gens.get((device, address), 0) + 1

        def job_for(failures):
            async def job():
                if gens.get((device, address)) != gen:
                    return
                try:
                    reply = await w.transact(dev.cfg, "write_coil", address, on)
                    ok = not reply.isError()
                except _NoReply:
                    ok = False
                if ok:
                    log.warning("event=zone_coil device=%s address=%d on=%s", device, address, on)
                    return
                log.error("event=zone_coil_failed device=%s address=%d on=%s", device, address, on)
                w.push(self.clock.monotonic() + min(0.1 * 2 ** failures, 5.0), _PRIO_COIL,
                       job_for(failures + 1))
            return job
        w.push(self.clock.monotonic(), _PRIO_COIL, job_for(0))
        return True

    def set_external_level(self, source, level):
        """Another alarm source (e.g. radio nodes) at `level`; the siren follows the max."""
        self.external[source] = level
        self._update_siren()

    # ------------------------------------------------------------ polling

    def _poll_job(self, w, d, probe=False):
        async def job():
            await self._poll(w, d, probe)
        return job

    async def _poll(self, w, d, probe):
        cfg, st = d.cfg, d.stats
        st.polls += 1
        # the poll's time stamp: when it started, to the nearest whole second (slots are
        # on whole wall-clock seconds, so equal polls stamp exactly poll_s apart)
        t_poll = int(self.clock.time() + 0.5)
        results = []                  # (point index, value, fault)
        try:
            for rd in d.plan:
                reply = await w.transact(cfg, _READERS[rd.table], rd.address, count=rd.count)
                if reply.isError():
                    code = getattr(reply, "exception_code", 0)
                    st.exceptions += 1
                    st.last_exception_code = code
                    st.last_error = "exception %d on %s %d+%d" % (code, rd.table, rd.address,
                                                                  rd.count)
                    log_event(log, "modbus_exception", logging.WARNING, device=cfg.name,
                              table=rd.table, address=rd.address, code=code)
                    for i, _off in rd.slices:
                        results.append((i, None, mdec.fault_exception(code)))
                    continue
                values = reply.bits if rd.table in ("coil", "discrete") else reply.registers
                if len(values) < rd.count:   # a short reply is as bad as a broken frame
                    raise _NoReply("crc error")
                for i, vals in mdec.split_reply(rd, values, cfg.points):
                    v, fault = mdec.decode_point(cfg.points[i], vals, channels.from_units)
                    results.append((i, v, fault))
        except _NoReply as e:
            self._failed(w, d, e.kind, probe)
            return
        except Exception:             # a reply we cannot use; the device stays scheduled
            log.exception("%s", event_line("modbus_bad_reply", device=cfg.name))
            self._failed(w, d, "bad reply", probe)
            return
        d.attempt = 0
        st.consecutive_failures = 0
        st.polls_ok += 1
        st.last_ok = self.clock.time()
        if st.online is not True:
            self._set_online(d, True, "answering")
        self._schedule_next(w, d)
        await self._finish(self._emit_poll(d, sorted(results), t_poll))
        out = self.alarm_output
        if out is not None and cfg.name == out.device and self.coil_wanted:
            # a relay that lost power comes back with its coil off: assert it every poll
            self.coil_state = None
            self._update_siren()

    def _failed(self, w, d, kind, probe):
        st, cfg = d.stats, d.cfg
        if kind in ("crc error", "bad reply"):
            st.crc_errors += 1
        elif kind == "timeout":
            st.timeouts += 1
        else:
            st.connect_failures += 1
        st.last_error = kind
        now = self.clock.monotonic()
        if not probe and d.attempt < cfg.retries:
            d.attempt += 1
            w.push(now + cfg.retry_backoff_s * (2 ** (d.attempt - 1)), _PRIO_POLL,
                   self._poll_job(w, d))
            return
        d.attempt = 0
        st.consecutive_failures += 1
        if st.online is not False:
            self._set_online(d, False, kind)
            self._update_siren()
        delay = min(cfg.poll_s * 2 ** (st.consecutive_failures - 1),
                    max(cfg.poll_s, cfg.offline_probe_max_s))
        w.push(now + delay, _PRIO_POLL, self._poll_job(w, d, probe=True))

    def _schedule_next(self, w, d):
        now = self.clock.monotonic()
        step = d.cfg.poll_s
        d.next_due += step
        if d.next_due <= now:      # skip missed slots instead of bunching polls
            d.next_due += step * (int((now - d.next_due) / step) + 1)
        d.next_due = self._on_second(d.next_due, step)
        w.push(d.next_due, _PRIO_POLL, self._poll_job(w, d))

    def _on_second(self, due, step):
        """`due` (monotonic) moved onto a whole wall-clock second when the poll interval is
        whole seconds: the nudge is the drift between the two clocks since the last slot,
        and readings stamped in whole seconds then stay exactly `step` apart."""
        if step != int(step):
            return due
        wall = self.clock.time() + (due - self.clock.monotonic())
        return due - (wall - round(wall))

    def _set_online(self, d, online, reason):
        st = d.stats
        st.online = online
        if not online:
            st.went_offline += 1
            bus = next((b for b in self.config.modbus.buses if b.name == d.cfg.bus), None)
            log_event(log, "modbus_offline", logging.WARNING, device=d.cfg.name,
                      node=d.cfg.node, reason=reason, **_where(bus, d.cfg, reason))
        else:
            log_event(log, "modbus_online", device=d.cfg.name, node=d.cfg.node)
            # an offline device resumes its fixed-rate schedule from now
            d.next_due = self._on_second(self.clock.monotonic(), d.cfg.poll_s)
        if self.on_state is not None:
            self.on_state(DeviceState(d.cfg.name, d.cfg.node, online, int(self.clock.time()),
                                      reason))
        if self.alarm_output is not None and online and \
                d.cfg.name == self.alarm_output.device and self.coil_wanted is not None:
            self.coil_state = None    # relay may have rebooted: write it again
            self._update_siren(urgent=True)

    async def _finish(self, coro):
        """Run a delivery to the end even if the bridge is cancelled meanwhile: a seq once
        allocated must reach the store, or consumers would see a gap that is no loss."""
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _alloc(self, node):
        s = self.alloc_seq(node)
        if inspect.isawaitable(s):
            s = await s
        return s

    async def _emit_poll(self, d, results, t_poll):
        cfg = d.cfg
        t_wall = int(self.clock.time())
        t_mono = int(self.clock.monotonic())
        if d.window_pos >= WINDOW:
            d.window_seq = await self._alloc(cfg.node)
            d.window_pos = 0
        seq, k = d.window_seq, d.window_pos
        d.window_pos += 1
        records = []
        events = []
        for i, value, fault in results:
            p = cfg.points[i]
            records.append(Reading(cfg.node, seq, i * WINDOW + k, p.chan, t_poll, value, fault,
                                   0))
        if d.engine is not None:
            for i, value, fault in results:
                if value is not None and abs(value) > _TRIP_VMAX:
                    value = None      # beyond what rules compare: a fault to the engine
                try:
                    events.extend(d.engine.update(cfg.points[i].chan, t_mono, value, fault or 0))
                except Exception:     # one point's trouble must not skip the others
                    log.exception("%s", event_line("trip_engine_error", device=cfg.name,
                                                   point=i))
            try:
                events.extend(d.engine.tick(t_mono))
            except Exception:
                log.exception("%s", event_line("trip_engine_error", device=cfg.name))
        if events:                    # alarms have their own seq: (node, seq, index) keys
            records.extend(self._alarms(cfg, await self._alloc(cfg.node), events, t_wall,
                                        t_mono))
        await self._deliver(records)
        if events or self.coil_wanted is None:
            self._update_siren()

    def _alarms(self, cfg, seq, events, t_wall, t_mono):
        rx_ms = int(self.clock.time() * 1000)
        out = []
        for k, ev in enumerate(events):
            t = t_wall - (t_mono - ev.t)
            out.append(Alarm(cfg.node, seq, k, ev.event, ev.level, ev.prev_level, ev.chan,
                             ev.rule_id, ev.rule_kind, ev.value, ev.threshold, t, rx_ms))
            log_event(log, "modbus_alarm", logging.WARNING, device=cfg.name, node=cfg.node,
                      chan=channels.label(ev.chan), level=alarmtext.level_name(ev.level),
                      prev=alarmtext.level_name(ev.prev_level), rule=ev.rule_id,
                      value=alarmtext.metric_text(ev.rule_kind, ev.chan, ev.value),
                      threshold=alarmtext.metric_text(ev.rule_kind, ev.chan, ev.threshold))
        return out

    async def _deliver(self, records):
        """Hand records to the sink. If it fails (store busy, disk trouble), keep them and
        send them with the next delivery: all alarms, and up to MAX_UNSENT readings (the
        oldest readings beyond that are dropped and counted in `readings_dropped`)."""
        batch, self._unsent = self._unsent + records, []
        if not batch:
            return
        try:
            await self.sink(batch)
        except Exception:
            self.sink_errors += 1
            log.exception("%s", event_line("modbus_sink_error", records=len(batch)))
            kept = batch + self._unsent
            readings = [r for r in kept if type(r) is Reading]
            extra = len(readings) - MAX_UNSENT
            if extra > 0:
                gone = set(map(id, readings[:extra]))
                kept = [r for r in kept if id(r) not in gone]
                self.readings_dropped += extra
                log_event(log, "modbus_readings_dropped", logging.ERROR, n=extra,
                          total=self.readings_dropped)
            self._unsent = kept

    async def _emit_tick(self, cfg, events, t_wall, t_mono):
        seq = await self._alloc(cfg.node)
        await self._deliver(self._alarms(cfg, seq, events, t_wall, t_mono))

    async def _ticker(self):
        """Hold-time clears come due without new samples; check once a second."""
        while True:
            await asyncio.sleep(1.0)
            t_mono = int(self.clock.monotonic())
            t_wall = int(self.clock.time())
            changed = False
            for d in self.devices.values():
                if d.engine is None:
                    continue
                events = d.engine.tick(t_mono)
                if events:
                    changed = True
                    await self._finish(self._emit_tick(d.cfg, events, t_wall, t_mono))
            if changed:
                self._update_siren()

    # ------------------------------------------------------------ siren

    def _update_siren(self, urgent=False):
        """Bring the coil to what the level asks for. `urgent`: write now even if a retry
        is waiting out its back-off (the relay just came back)."""
        out = self.alarm_output
        if out is None:
            return
        if self.coil_state is None and self.coil_wanted is None and any(
                d.engine is not None and d.stats.online is None for d in self.devices.values()):
            # Before every device with rules has been polled once, "off" may be wrong (a
            # restart during an alarm): leave the relay as it is until we know.
            return
        self.coil_wanted = self.level() >= out.min_level
        if self.coil_wanted == self.coil_state or (self.coil_writing and not urgent):
            return
        dev = self.devices.get(out.device)
        w = self.workers.get(dev.cfg.bus) if dev is not None else None
        if w is not None:
            self._coil_gen += 1       # a waiting retry of an older generation gives way
            self.coil_writing = True
            w.push(self.clock.monotonic(), _PRIO_COIL, self._coil_job(w, dev, 0, self._coil_gen))

    def _coil_job(self, w, dev, failures, gen):
        async def job():
            if gen != self._coil_gen:
                return
            want = self.coil_wanted
            try:
                reply = await w.transact(dev.cfg, "write_coil", self.alarm_output.address,
                                         want)
                ok = not reply.isError()
                why = "exception %d" % getattr(reply, "exception_code", 0) if not ok else ""
            except _NoReply as e:
                ok, why = False, e.kind
            if ok:
                self.coil_state = want
                log_event(log, "siren_coil", logging.WARNING, device=dev.cfg.name,
                          address=self.alarm_output.address, on=want)
                if self.coil_wanted != want:   # the level moved while we wrote
                    w.push(self.clock.monotonic(), _PRIO_COIL, self._coil_job(w, dev, 0, gen))
                    return
                self.coil_writing = False
                return
            self.coil_failures += 1
            log_event(log, "siren_coil_failed", logging.ERROR, device=dev.cfg.name,
                      address=self.alarm_output.address, on=want, reason=why)
            delay = min(0.1 * 2 ** failures, 5.0)
            w.push(self.clock.monotonic() + delay, _PRIO_COIL,
                   self._coil_job(w, dev, failures + 1, gen))
        return job


def _where(bus, dev, reason):
    """The endpoint of a device that went offline and the next thing to check."""
    if bus is None:
        return {}
    if bus.type == "tcp":
        at = "%s:%d" % (bus.host, bus.port)
        steps = {"connect failed": "is the device (or gateway) at %s powered, on the network "
                                   "and listening? Check [[modbus.buses]] %s host/port" % (
                                       at, bus.name)}
    else:
        at = "%s %d %s%d" % (bus.port, bus.baudrate, bus.parity, bus.stopbits)
        steps = {"connect failed": "is the RS-485 adapter %s plugged in and free?" % bus.port,
                 "crc error": "check baudrate/parity of [[modbus.buses]] %s against the device, "
                              "and the line's termination" % bus.name}
    default = "check the device's id (device_id = %d) and wiring, and timeout_s" % dev.device_id
    return {"endpoint": at, "device_id": dev.device_id, "next": steps.get(reason, default)}
