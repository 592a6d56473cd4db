"""The whole node under CPython with fakes for sensors, relays and the RF: a simulated
day with a storm, a sensor fault, a radio outage and a creep to failure, checked
against what a gateway built from protocol/ receives and decodes."""
import math

import pytest
from fake_hw import fs_at

from firmware import faults
from firmware.app import Node
from firmware.logscan import open_log
from firmware.main import downlink
from firmware.nodeconfig import checked, save_running
from firmware.radio.radio import lora_airtime_ms
from protocol import frame as fr
from protocol import framing, gwmessages, messages, readings
from protocol.gwlink import NEW, GatewayLink
from protocol.levels import RED
from protocol.mic import Hmac
from protocol.trip import INVVEL, RATE, SUM, THRESHOLD, TRIP

KEY = bytes(range(1, 33))
NODE = 17
UNIX0 = 1_780_000_000
RAIN, DISP, WATER, BATT = 0x08, 0x10, 0x18, 0x28
TF = 20 * 3600            # the slope fails at 20:00




class Relay:
    def __init__(self):
        self.on_ = False
        self.history = []

    def on(self):
        self.on_ = True

    def off(self):
        self.on_ = False

    def is_on(self):
        return self.on_


class Sim:
    """Simulated time and physics shared by the fake sensors."""

    def __init__(self):
        self.t = 0.0
        self.reads = {}

    def rain_rate(self, t):            # 0.1 mm per minute
        if 6 * 3600 <= t < 8 * 3600:
            return 10 if 7 * 3600 <= t < 7.5 * 3600 else 4
        return 0

    def disp(self, t):                 # 0.01 mm, 1/v linear to zero at TF
        return int(-600 * math.log((TF - t) / 3600.0) + 600 * math.log(TF / 3600.0) + 0.5)

    def water(self, t):                # mm
        h = t / 3600.0
        if h < 6:
            return 1500
        if h < 9:
            return int(1500 + (h - 6) * 700)
        return max(1500, int(3600 - (h - 9) * 300))

    def water_fault(self, t):
        return faults.BROKEN_LOOP if 12 * 3600 <= t < 12 * 3600 + 1200 else 0


class Source:
    def __init__(self, sim, chan, fn, fault=None, increment=False):
        self.sim, self.chan, self.fn, self.fault, self.increment = sim, chan, fn, fault, increment
        self.last = 0
        self.acc = 0.0
        self.log = []

    def read(self):
        t = int(self.sim.t)
        if self.fault and self.fault(t):
            self.log.append((t, None))
            return None, self.fault(t)
        if self.increment:
            # a tipping bucket: whole tips since the last read, the rest stays in the bucket
            self.acc += sum(self.fn(x) for x in range(self.last, t)) / 60.0
            self.last = max(self.last, t)
            v = int(self.acc)
            self.acc -= v
        else:
            v = self.fn(t)
        self.log.append((t, v))
        return v, 0


class AirRadio:
    """The RF, faked: send() hands wire bytes to the gateway; poll() returns downlinks."""

    def __init__(self):
        self.out = []
        self.inbox = []

    def send(self, data):
        self.out.append(data)
        return True

    def poll(self):
        return self.inbox.pop(0) if self.inbox else None

    def busy(self):
        return False

    def airtime_ms(self, n):
        return int(lora_airtime_ms(n, 9) + 0.999)


class Gateway:
    """A gateway made of protocol/ parts: stores NEW frames, then acks."""

    def __init__(self):
        self.signer = Hmac(KEY)
        self.link = GatewayLink(lambda n: self.signer if n == NODE else None)
        self.deframer = framing.Deframer()
        self.frames = []         # (recv unix time, Frame)
        self.dl_seq = 1
        self.down = lambda t: False
        self.errors = []
        self.configs = []        # (re or None for "the frame just heard", CONFIG map)
        self.shift = 0           # world time minus the node's monotonic time (grows at a reboot)

    def hear(self, radio, t):
        for wire in radio.out:
            if self.down(t):
                continue
            for item in self.deframer.feed(wire):
                assert not isinstance(item, str), item
                try:
                    rx = self.link.receive(item)
                except fr.FrameError as e:
                    self.errors.append(e.reason)
                    continue
                if rx.status == NEW:
                    self.frames.append((UNIX0 + self.shift + t, rx.frame))
                self.link.committed(rx.frame)
                self.dl_seq += 1
                pending = fr.F_PENDING if self.configs else 0
                ack = self.link.ack(NODE, rx.frame.seq, int(UNIX0 + self.shift + t), self.dl_seq, pending)
                radio.inbox.append(framing.wrap(ack))
                if self.configs:
                    # a downlink rides on the answer to an uplink: re = that uplink's seq
                    re, m = self.configs.pop(0)
                    self.dl_seq += 1
                    radio.inbox.append(framing.wrap(self.link.config(
                        NODE, rx.frame.seq if re is None else re, m, int(UNIX0 + t), self.dl_seq)))
        radio.out.clear()

    def of_type(self, mtype):
        return [(t, f) for t, f in self.frames if f.mtype == mtype]

    def readings(self):
        """chan -> {unix time: value or ('fault', code)}, and duplicates seen."""
        out = {}
        dups = 0
        for t_rx, f in self.of_type(fr.READINGS):
            for b in readings.decode(f.payload):
                ts = b.times(int(t_rx))
                series = out.setdefault(b.chan, {})
                for k, ts_k in enumerate(ts):
                    if ts_k in series:
                        dups += 1
                    series[ts_k] = b.values[k] if b.values is not None else ("fault", b.fault)
        return out, dups


def config(fs=None, **over):
    """The node's config; with `fs`, also on that flash as a board has it (config.json,
    config.good.json), which a CONFIG downlink reads back (firmware/nodeconfig.py)."""
    raw = {"version": 1, "node": NODE, "key": KEY.hex(), "board": "esp32_devkitc",
           "channels": [{"id": "rain.0", "driver": "fake"}, {"id": "displacement.0", "driver": "fake"},
                        {"id": "water_level.0", "driver": "fake"}],
           "rules": [[2, RAIN, SUM, 3, 3600, 300, 50, 1800],
                     [6, DISP, RATE, 2, 3600, 200, 50, 1800],
                     [7, DISP, INVVEL, 4, 7200, 3600, 900, 3600],
                     [8, WATER, THRESHOLD, 2, 1, 3000, 100, 2, 600]],
           "intervals": {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600},
           "log_kb": 64}
    raw.update(over)
    if fs is not None:
        save_running(fs, raw)
    return checked(raw)


def make_node(tmp_path, cfg=None, sim=None):
    sim = sim or Sim()
    sources = {RAIN: Source(sim, RAIN, sim.rain_rate, increment=True),
               DISP: Source(sim, DISP, sim.disp, fault=lambda t: faults.OPEN_CIRCUIT if t >= TF else 0),
               WATER: Source(sim, WATER, sim.water, fault=sim.water_fault)}
    radio = AirRadio()
    siren, strobe = Relay(), Relay()
    consoled = []
    fs = fs_at(tmp_path)
    node = Node(fs, cfg or config(fs), sources, radio,
                siren, strobe, rand=lambda: 0.5, console=consoled.append, downlink=downlink)
    node.sent_log = []
    return node, sim, radio, siren, strobe, consoled


def run(node, sim, radio, gw, t_end, on_step=None):
    t = sim.t
    while t < t_end:
        sim.t = t
        wake = node.step(t)
        if on_step:
            on_step(t)
        gw.hear(radio, t)
        nxt = t + 60 if wake is None else wake
        if radio.inbox:
            nxt = min(nxt, t + 0.3)      # the ack comes back after ~one airtime
        t = max(min(nxt, t + 60), t + 0.05)
    sim.t = t


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("day")
    node, sim, radio, siren, strobe, consoled = make_node(tmp)
    gw = Gateway()
    gw.down = lambda t: 18.5 * 3600 <= t < 19.5 * 3600 + 600     # radio outage
    open_log(node.log, node.clock)
    node.start(0.0)
    trace = {"red_at": None, "siren_on_at": None, "first_after_red": None}

    def watch(t):
        if trace["red_at"] is None and node.engine.level(DISP) == RED:
            trace["red_at"] = t
            trace["queued_at_red"] = node.log.depth()
            trace["sent_before"] = len(node.sent_log)
        if siren.on_ and trace["siren_on_at"] is None:
            trace["siren_on_at"] = t
        if trace["red_at"] is not None and trace["first_after_red"] is None \
                and len(node.sent_log) > trace["sent_before"]:
            trace["first_after_red"] = node.sent_log[trace["sent_before"]]

    run(node, sim, radio, gw, 21 * 3600, watch)
    # let the backlog drain with the gateway listening
    gw.down = lambda t: False
    run(node, sim, radio, gw, 21 * 3600 + 1800)
    return node, sim, gw, siren, strobe, trace, consoled


def test_hello_first_then_clock_synced(day):
    node, sim, gw, *_ = day
    first = gw.frames[0][1]
    assert first.mtype == fr.HELLO
    hello = gwmessages.decode_map(first.payload)
    assert hello[messages.H_CONFIG_VERSION] == 1 and hello[messages.H_CHANNELS] == [RAIN, DISP, WATER]
    later = [f for _, f in gw.frames[1:]]
    assert all(f.flags & fr.F_CLOCK_SYNCED for f in later)
    assert node.clock.synced()


def test_every_reading_arrives_once_with_its_time_and_value(day):
    node, sim, gw, *_ = day
    series, dups = gw.readings()
    assert dups == 0
    for chan in (DISP, WATER):
        src = node.sources[chan]
        got = series[chan]
        # every read the node made (before the last report) is at the gateway, at the
        # time it was taken, with the value the sensor gave
        logged = [(t, v) for t, v in src.log if t < sim.t - 700]
        assert len(logged) > 1400
        for t, v in logged:
            assert UNIX0 + t in got, (chan, t)
            if v is None:
                assert got[UNIX0 + t][0] == "fault"
            else:
                assert got[UNIX0 + t] == v
    # no rain lost: the gateway's total equals what the gauge reported
    rain_src = sum(v for t, v in node.sources[RAIN].log if t < sim.t - 700)
    rain_gw = sum(v for t, v in series[RAIN].items() if t - UNIX0 < sim.t - 700)
    assert rain_gw == rain_src and rain_src > 600


def test_sensor_fault_travels_as_fault_blocks(day):
    node, sim, gw, *_ = day
    series, _ = gw.readings()
    faulty = {t - UNIX0: v for t, v in series[WATER].items() if isinstance(v, tuple)}
    assert faulty and all(v == ("fault", faults.BROKEN_LOOP) for v in faulty.values())
    assert min(faulty) >= 12 * 3600 and max(faulty) < 12 * 3600 + 1200
    broken = {t - UNIX0: v for t, v in series[DISP].items() if isinstance(v, tuple)}
    assert broken and min(broken) >= TF and all(v == ("fault", faults.OPEN_CIRCUIT) for v in broken.values())


def test_storm_and_high_water_trip_and_clear(day):
    node, sim, gw, *_ = day
    alarms = []
    for t_rx, f in gw.of_type(fr.ALARM):
        for a in gwmessages.decode_alarms(f.payload):
            alarms.append((int(t_rx) - a[messages.A_AGE] - UNIX0, a))
    rain = [(t, a) for t, a in alarms if a[messages.A_CHAN] == RAIN]
    assert rain[0][1][messages.A_EVENT] == TRIP and rain[0][1][messages.A_LEVEL] == 3
    assert 7 * 3600 <= rain[0][0] <= 7.5 * 3600 + 60
    assert rain[-1][1][messages.A_EVENT] == 3          # cleared after the storm
    water = [(t, a) for t, a in alarms if a[messages.A_CHAN] == WATER]
    assert water[0][1][messages.A_LEVEL] == 2
    assert abs(water[0][0] - (6 + 1500 / 700) * 3600) < 300


def test_red_creep_trips_siren_before_failure_and_alarm_leaves_first(day):
    node, sim, gw, siren, strobe, trace, _ = day
    red_at = trace["red_at"]
    assert red_at is not None and TF - red_at >= 1800, red_at
    assert trace["siren_on_at"] is not None and trace["siren_on_at"] <= red_at + 1
    assert trace["queued_at_red"] >= 3          # readings were waiting (radio outage)
    mtype, seq, wire = trace["first_after_red"]
    assert mtype == fr.ALARM
    f = fr.decode(framing.Deframer().feed(wire)[0], lambda n: Hmac(KEY))
    assert any(a[messages.A_LEVEL] == RED for a in gwmessages.decode_alarms(f.payload))
    assert f.flags & fr.F_ALARM_ACTIVE
    # the red alarm reached the gateway stamped at the trip time
    reds = [(t, a) for t, fz in gw.of_type(fr.ALARM) for a in gwmessages.decode_alarms(fz.payload)
            if a[messages.A_LEVEL] == RED]
    assert reds and abs(int(reds[0][0]) - reds[0][1][messages.A_AGE] - UNIX0 - red_at) <= 1


def test_a_sensor_broken_at_red_raises_blind_and_holds_red_for_the_hold(day):
    node, sim, gw, siren, strobe, trace, _ = day
    # after failure the draw-wire reads open circuit: the platform learns that the channel
    # went blind at red (event 4), and red is held for its rule's hold from then, not
    # forever (protocol/TRIP.md 3.2)
    ev = [(int(t) - a[messages.A_AGE] - UNIX0, a[messages.A_EVENT], a[messages.A_LEVEL])
          for t, fz in gw.of_type(fr.ALARM) for a in gwmessages.decode_alarms(fz.payload)]
    blind = [(t, lv) for t, e, lv in ev if e == 4]
    assert blind and TF <= blind[0][0] <= TF + 60 and blind[0][1] == RED
    hold = max(r.hold_s for r in node.engine.rules if r.chan == DISP and r.level == RED)
    clears = [t for t, e, _lv in ev if e == 3 and t > blind[0][0]]
    assert clears and clears[0] >= blind[0][0] + hold
    assert node.engine.level(DISP) == 0 and not siren.on_


def test_intensified_sampling_near_trip(day):
    node, sim, gw, *_ = day
    steps = set()
    for t_rx, f in gw.of_type(fr.READINGS):
        for b in readings.decode(f.payload):
            if b.chan == DISP and b.count > 1 and int(t_rx) - UNIX0 > TF - 3 * 3600:
                steps.add(b.step)
    assert 10 in steps


def test_status_reports_log_and_config(day):
    node, sim, gw, *_ = day
    st = [gwmessages.decode_map(f.payload) for _, f in gw.of_type(fr.STATUS)]
    assert len(st) >= 18
    assert all(s[messages.S_CONFIG_VERSION] == 1 for s in st)
    assert max(s[messages.S_LOG_DEPTH] for s in st) >= 3       # the outage backlog showed
    assert node.log.depth() == 0                                # and drained


def test_seqs_unique_and_frames_fit(day):
    node, sim, gw, *_ = day
    seqs = [f.seq for _, f in gw.frames]
    assert len(seqs) == len(set(seqs))
    assert max(len(f.raw) for _, f in gw.frames) <= fr.MAX_FRAME
    assert not gw.errors


def test_no_key_means_no_transmission_but_logging(tmp_path):
    from firmware.nodeconfig import SafeConfig
    sim = Sim()
    cfg = SafeConfig("esp32_devkitc")
    node = Node(fs_at(tmp_path), cfg,
                {BATT: Source(sim, BATT, lambda t: 3900)}, AirRadio(), console=lambda s: None)
    open_log(node.log, node.clock)
    node.start(0)
    t = 0
    while t < 3600:
        sim.t = t
        node.step(t)
        t += 60
    assert node.radio.out == []
    assert node.log.depth() >= 5


def test_config_downlink_applied_once_and_acked(tmp_path):
    node, sim, radio, *_ = make_node(tmp_path)
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, sim.t + 5)

    def send_config(version, extra=None, re=None):
        m = {messages.C_VERSION: version}
        m.update(extra or {})
        gw.configs.append((re, m))
        node._queue(fr.STATUS)     # an uplink for the config to answer
        run(node, sim, radio, gw, sim.t + 5)
        acks = [gwmessages.decode_map(f.payload) for _, f in gw.of_type(fr.CONFIG_ACK)]
        return acks[-1] if acks else None

    # a CONFIG must answer a recent uplink: seq 999999 was never sent
    assert send_config(2, {messages.C_INTERVALS: {messages.I_SAMPLE_S: 30}}, re=999999) is None
    assert node.cfg.version == 1 and node.counts.get("config_not_fresh") == 1
    ack = send_config(2, {messages.C_INTERVALS: {messages.I_SAMPLE_S: 30}, messages.C_EMERGENCY_S: 600})
    assert node.cfg.version == 2 and node.sampler.sample_s == 30
    assert node.mode(sim.t) == 2
    assert ack[messages.K_RESULT] == messages.RESULT_OK and ack[messages.K_VERSION] == 2
    # the same version again: acked OK, not re-applied
    ack = send_config(2, {messages.C_INTERVALS: {messages.I_SAMPLE_S: 45}})
    assert ack[messages.K_RESULT] == messages.RESULT_OK and node.sampler.sample_s == 30
    # bad rules: refused with a reason, nothing changes
    ack = send_config(3, {messages.C_RULES: [[1, DISP, 9, 4]]})
    assert ack[messages.K_RESULT] == messages.RESULT_REJECTED and "kind" in ack[messages.K_REASON]
    assert node.cfg.version == 2 and len(node.engine.rules) == 4
    # older version: stale
    ack = send_config(1)
    assert ack[messages.K_RESULT] == messages.RESULT_STALE
    # new rules apply to the running engine
    ack = send_config(4, {messages.C_RULES: [[8, WATER, THRESHOLD, 3, 1, 2000, 100, 1, 600]]})
    assert ack[messages.K_RESULT] == messages.RESULT_OK and len(node.engine.rules) == 1
    # the new config survives a reboot
    import json
    cfg2 = checked(json.loads((tmp_path / "config.json").read_text()))
    assert cfg2.version == 4 and cfg2.intervals["sample_s"] == 30 and len(cfg2.rules) == 1


class _TightHeapFs:
    """The node's filesystem, but writing a config file runs out of heap `fails` times:
    what a board without frozen modules may meet when a CONFIG makes it load the checks."""

    def __init__(self, fs, fails):
        self.fs = fs
        self.fails = fails

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open(self, p, mode="rb"):
        if "w" in mode and p.startswith("config") and self.fails:
            self.fails -= 1
            raise MemoryError("memory allocation failed")
        return self.fs.open(p, mode)


def resend_config_until_acked(node, sim, radio, gw, said=None):
    """The gateway sends CONFIG v2 and resends it until it hears CONFIG_ACK: the first
    try meets a node without heap for it (nothing applied, no ack), the resend applies."""
    for _ in range(2):
        gw.configs.append((None, {messages.C_VERSION: 2, messages.C_INTERVALS: {messages.I_SAMPLE_S: 30}}))
        node._queue(fr.STATUS)
        run(node, sim, radio, gw, sim.t + 5)
        if gw.of_type(fr.CONFIG_ACK):
            break
        assert node.cfg.version == 1 and node.counts.get("config_no_memory") == 1
        assert said is None or any("too little free heap" in s for s in said)
    acks = [gwmessages.decode_map(f.payload) for _, f in gw.of_type(fr.CONFIG_ACK)]
    assert len(acks) == 1 and acks[0][messages.K_RESULT] == messages.RESULT_OK
    assert node.cfg.version == 2 and node.sampler.sample_s == 30


def test_config_downlink_without_heap_is_not_acked_and_applies_on_the_resend(tmp_path):
    node, sim, radio, *_ = make_node(tmp_path)
    node.fs = _TightHeapFs(node.fs, fails=1)
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, sim.t + 5)
    said = []
    node.console = said.append
    resend_config_until_acked(node, sim, radio, gw, said)


def test_config_downlink_without_heap_to_decode_it_is_not_acked(tmp_path, monkeypatch):
    # decoding loads the CBOR decoder, which boot drops on a board (firmware/unload.py):
    # no heap for it is met like no heap for the checks
    node, sim, radio, *_ = make_node(tmp_path)
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, sim.t + 5)
    decode, fails = messages.decode_config, [1]

    def tight(payload):
        if fails[0]:
            fails[0] -= 1
            raise MemoryError("memory allocation failed")
        return decode(payload)
    monkeypatch.setattr(messages, "decode_config", tight)
    resend_config_until_acked(node, sim, radio, gw)


def test_forged_downlink_is_counted_and_ignored(tmp_path):
    node, sim, radio, *_ = make_node(tmp_path)
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, sim.t + 5)
    other = Hmac(bytes(range(100, 132)))
    forged = fr.encode(other, fr.CONFIG, NODE, 99, UNIX0,
                       gwmessages.encode_config(gw.frames[0][1].seq, {messages.C_VERSION: 9}))
    radio.inbox.append(framing.wrap(forged))
    radio.inbox.append(b"\x00\x01\x02\x03\x00")
    run(node, sim, radio, gw, sim.t + 5)
    assert node.cfg.version == 1
    assert node.counts.get("rx_mic") == 1


def _reboot(tmp_path, node, sim, radio, down_s):
    """Power off for down_s, then a fresh Node on the same flash (monotonic time restarts)."""
    sim2 = Sim()
    node2, _, radio2, *_ = make_node(tmp_path, sim=sim2)
    return node2, sim2, radio2


def test_reboot_with_a_synced_backlog_keeps_exact_times(tmp_path):
    node, sim, radio, *_ = make_node(tmp_path)
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, 1800)                     # synced, all acked
    gw.down = lambda t: True
    run(node, sim, radio, gw, 5400)                     # an hour of backlog, Unix-stamped
    backlog = node.log.depth()
    assert backlog >= 5
    took = {t for t, v in node.sources[DISP].log if 1800 < t < 5400 - 700}
    node2, sim2, radio2 = _reboot(tmp_path, node, sim, radio, 600)
    gw.down = lambda t: False
    gw.shift = 5400 + 600                               # the world went on while it was off
    open_log(node2.log, node2.clock)
    node2.start(0.0)
    assert node2.log.depth() >= backlog
    run(node2, sim2, radio2, gw, 1200)
    assert node2.log.depth() == 0
    series, dups = gw.readings()
    got = set(t - UNIX0 for t in series[DISP])
    assert took <= got                                  # same absolute times as sampled
    frames = [f for _, f in gw.frames if f.mtype == fr.READINGS]
    assert not any(f.flags & fr.F_TIME_APPROX for f in frames)


def test_reboot_without_a_clock_marks_old_times_approximate(tmp_path):
    node, sim, radio, *_ = make_node(tmp_path)
    gw = Gateway()
    gw.down = lambda t: True
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, 3600)                     # never synced: boot-relative stamps
    assert node.log.depth() >= 5 and not node.clock.synced()
    node2, sim2, radio2 = _reboot(tmp_path, node, sim, radio, 600)
    gw.down = lambda t: False
    gw.shift = 3600 + 600
    open_log(node2.log, node2.clock)
    node2.start(0.0)
    run(node2, sim2, radio2, gw, 900)
    assert node2.log.depth() == 0
    old = [(t, f) for t, f in gw.frames if f.mtype == fr.READINGS and f.flags & fr.F_TIME_APPROX]
    assert len(old) >= 5
    # spacing inside the old boot is exact; the stamps err late by the unknown downtime
    # plus the time from the old boot's last record to the cut (< one report interval)
    ts = sorted(ts for t, f in old for b in readings.decode(f.payload) if b.chan == DISP
                for ts in b.times(int(t)))
    assert all(b - a == 60 for a, b in zip(ts, ts[1:], strict=False))
    true_first = UNIX0 + 0
    assert ts[0] >= true_first and ts[0] - true_first <= 600 + 600 + 5


class SmallPacketRadio(AirRadio):
    """An E22 set to 64-byte sub-packets: the module refuses anything longer."""
    max_payload = 64

    def send(self, data):
        if len(data) > self.max_payload:
            return False
        return AirRadio.send(self, data)


def test_frames_fit_a_small_module_packet_and_readings_still_arrive(tmp_path):
    sim = Sim()
    sources = {RAIN: Source(sim, RAIN, sim.rain_rate, increment=True),
               DISP: Source(sim, DISP, sim.disp), WATER: Source(sim, WATER, sim.water)}
    radio = SmallPacketRadio()
    said = []
    node = Node(fs_at(tmp_path), config(), sources, radio, Relay(), Relay(), rand=lambda: 0.5,
                console=said.append)
    node.sent_log = []
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, 23 * 3600)      # a storm and high water: alarms and STATUS go too
    sizes = [len(w) for _, _, w in node.sent_log]
    assert sizes and max(sizes) <= 64
    assert not node.counts.get("radio_refused")
    kinds = {f.mtype for _, f in gw.frames}
    assert {fr.HELLO, fr.READINGS, fr.ALARM, fr.STATUS} <= kinds
    series, dups = gw.readings()
    assert dups == 0 and len(series[WATER]) > 1000
    assert not any("too small" in s for s in said)


def test_a_module_packet_too_small_for_an_alarm_is_reported(tmp_path):
    class E32Radio(AirRadio):
        max_payload = 58
    said = []
    Node(fs_at(tmp_path), config(), {}, E32Radio(), Relay(), Relay(), rand=lambda: 0.5,
         console=said.append)
    assert any("too small for an alarm frame" in s and "sub_packet >= 64" in s for s in said)
