"""The HIL rig: a whole site from a scenario description, run on simulated time.

    rig = Rig(scenario, workdir, seed=1, runtime="micropython")
    result = rig.run()          # -> hil.report.Result

What runs:
* N nodes: hil/nodeproc.py, i.e. the real firmware (firmware.app.Node, its frame log
  on a directory as flash, firmware.radio.loopback on a pty as UART), each its own
  process: the MicroPython unix port with a bounded heap loading compiled .mpy (as on
  a board), or CPython for speed;
* the radio medium (hil/medium.py) between the nodes' ptys and the gateway's pty;
* a real Mosquitto on a free loopback port;
* the real gateway daemon as a subprocess (`python -m gateway.cli run -c site.toml`)
  with a generated site.toml and keys file, on the simulated clock;
* hil/subscriber.py, decoding everything with cbor2 and the uplink contract.

Processes: hil/procs.py. Time: hil/clock.py. The loop below is a discrete-event simulation: it jumps to the next
event and only when the gateway has answered every frame delivered to it (or is
dead, or took longer than GW_ANSWER_WALL_S of wall time, which is counted)."""
import heapq
import os
import random
import secrets
import select
import shutil
import time
import tty
from pathlib import Path

from hil import world as W
from hil.clock import SimClock
from hil.medium import GATEWAY, OK, Medium, split_packets
from hil.procs import ROOT, Broker, Gateway, ModbusGauge, NodeProc, build_mpy, last_line
from hil.subscriber import Subscriber
from protocol import channels
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

GW_ANSWER_WALL_S = 10.0
BACKOFF_MAX_WALL_S = 65.0     # the uplink's reconnect back-off cap (gateway/uplink.py) + margin
GAUGE_UPDATE_S = 60.0         # simulated seconds between updates of a gauge's register
GAUGE_POLL_S = 1             # the gateway polls gauges on wall time (whole seconds, SPEC §9.2)
GW_TURNAROUND_S = 0.02
RX_GAP_S = 0.005
PROGRESS_S = 6 * 3600
BD_PACE_S = 180.0             # simulated seconds paced after a node alarm (BeiDou lane)
BD_PACE_WALL_S = 0.01         # wall time per paced simulated second: > the gateway's BeiDou tick
SITE, GW, PREFIX = "hil", "gw1", "stations"
# Deliberate faults that the checks must catch (tests/hil proves the rig can fail).
SABOTAGE = (None, "wrong-key")


# ------------------------------------------------------------------ the site

class Sent:
    """A reading a node took, as the node reported it."""
    __slots__ = ("node", "chan", "t", "value", "fault", "packed", "boot", "matched")

    def __init__(self, node, chan, t, value, fault, boot):
        self.node, self.chan, self.t, self.value, self.fault = node, chan, t, value, fault
        self.packed = False
        self.boot = boot
        self.matched = False


class NodeAlarm:
    __slots__ = ("node", "event", "chan", "rule", "level", "prev", "t", "value", "wall",
                 "matched")

    def __init__(self, node, parts, t_unix, wall):
        self.node = node
        self.event, self.chan, self.rule, self.level, self.prev = [int(x) for x in parts[:5]]
        self.t = t_unix
        self.value = int(parts[6])
        self.wall = wall
        self.matched = None


class Rig:
    def __init__(self, scenario, workdir, seed=None, runtime=None, heap=None, out=None,
                 sabotage=None, board=None, hub_kills=None, hub_subscription="exclusive"):
        self.sc = scenario
        self.hub_kills = hub_kills    # None: no hub; N: run hub/ beside, kill -9 it N times
        self.hub_subscription = hub_subscription
        self.hub = self.hub_result = None
        self.d = Path(workdir)
        self.seed = scenario.seed if seed is None else seed
        self.runtime = runtime or scenario.runtime
        self.heap = heap or scenario.heap
        self.rng = random.Random(self.seed)
        if sabotage not in SABOTAGE:
            raise ValueError("sabotage %r: allowed %s" % (sabotage, ", ".join(
                str(x) for x in SABOTAGE)))
        self.sabotage = sabotage
        self.board = board            # hil.board.Bench: the first node is a real board
        self.out = out or (lambda s: None)
        self.epoch = int(time.time())
        self.events = []
        self.counter = 0
        self.awaiting = []            # wall deadlines of frames the gateway must answer
        self.gw_rx = bytearray()
        self.sent = []
        self.by_node_unpacked = {}
        self.node_alarms = []
        self.allowed_loss = set()     # ids of Sent lost with a node's RAM at a power cut
        self.stats = {"stored": 0, "alarm_first_on_air": 0, "alarm_not_first_on_air": 0,
                      "gauge_offline": 0, "gauge_online_again": 0,
                      "gw_crashes": 0,
                      "gw_answer_timeouts": 0, "node_steps": 0, "frames_to_gw": 0,
                      "gw_kills": 0, "node_kills": 0, "broker_outages": 0, "forged_sent": 0,
                      "node_crashes": 0, "node_config_errors": 0, "gw_kills_mid_frame": 0,
                      "dropped_gw_down": 0}
        self.notes = []
        self.broker_restart_wall = None
        self.captured = []            # real uplink packets, for replay attacks
        self.kill_gw_on_delivery = 0
        self.gauges = []              # (GaugeSpec, procs.ModbusGauge)
        self.answer_ms = []           # wall ms from a frame on the gateway's port to its ACK
        self.next_gauge_update = 0.0
        self.commands = []            # (t, verb, id, payload) sent by the operator
        self.next_progress = PROGRESS_S
        self.gw_signers = {}          # node -> Hmac of the key the gateway was given
        self.frame_readings = {}      # (node, seq) -> readings in it, until acked
        self.stored_seqs = set()
        self.siren_changes = []       # (node, sim t, on): zone-warning checks
        self.bd_pace_until = 0.0
        self.bd_paced = 0             # simulated seconds stepped slowly for the BeiDou lane
        self.bd = None                # hil.bdterminal.SimTerminal when the scenario has [beidou]
        self.bd_received = []         # (sim t, decoded BeiDou message) at the "platform"

    # ---------------------------------------------------------------- set-up
    def _write_site(self, mqtt_port, radio_tty):
        d = self.d / "site"
        d.mkdir(parents=True, exist_ok=True)
        kp = d / "keys.toml"
        fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("[keys]\n")
            for i, n in enumerate(self.sc.nodes):
                key = n.key
                if self.sabotage == "wrong-key" and i == 0:
                    key = bytes(reversed(key))       # the rig must then report losses
                self.gw_signers[n.id] = Hmac(key)
                f.write('"%d" = "%s"\n' % (n.id, key.hex()))
        from hil.demo import write_operators
        self.operator = write_operators(str(d))
        self.store_path = d / "store.db"
        lines = ['[site]', 'id = "%s"' % SITE, 'gateway_id = "%s"' % GW, '',
                 '[commands]', 'operators_file = "operators.toml"', 'rate_per_min = 600', '',
                 '[storage]', 'path = "%s"' % self.store_path, 'quota_mb = 64', '',
                 '[batch]', 'max_age_s = %g' % self.sc.gateway["max_age_s"],
                 'max_readings = %d' % self.sc.gateway["max_readings"], '',
                 '[mqtt]', 'host = "127.0.0.1"', 'port = %d' % mqtt_port,
                 'client_id = "stationgw-hil-gw1"', 'topic_prefix = "%s"' % PREFIX,
                 'keepalive_s = 5', 'inflight = %d' % self.sc.gateway["inflight"], '',
                 '[radio]', 'port = "%s"' % radio_tty, 'module = "none"', 'channel = 18',
                 'air_rate = 2400', 'keys_file = "keys.toml"', '']
        for n in self.sc.nodes:
            lines += ['[[nodes]]', 'id = %d' % n.id, 'name = "hil-%d"' % n.id,
                      'channels = [%s]' % ", ".join('"%s"' % c.name for c in n.channels), '']
        for spec, g in self.gauges:              # each gauge on its own TCP "bus"
            lines += ['[[modbus.buses]]', 'name = "bus-%s"' % spec.name, 'type = "tcp"',
                      'host = "127.0.0.1"', 'port = %d' % g.port, '']
        for spec, g in self.gauges:
            lines += ['[[modbus.devices]]', 'name = "%s"' % spec.name,
                      'bus = "bus-%s"' % spec.name,
                      'node = %d' % spec.node, 'device_id = 1', 'poll_s = %g' % GAUGE_POLL_S,
                      'timeout_s = 0.3', 'retries = 0', '',
                      '[[modbus.devices.points]]', 'chan = "%s"' % spec.channel.name,
                      'table = "holding"', 'address = %d' % g.REGISTER, 'type = "i16"',
                      'scale = 0.001', '']
        lines += _zone_lines(self.sc.zones)
        lines += self._beidou_lines(d)
        path = d / "site.toml"
        path.write_text("\n".join(lines))
        return path

    def _write_node(self, n):
        import json
        nd = self.d / ("node-%d" % n.id)
        nd.mkdir(parents=True, exist_ok=True)
        on_board = self.board is not None and n.id == self.sc.nodes[0].id
        variant = self.board.wiring.get("board", "esp32_devkitc") if on_board else "esp32_devkitc"
        cfg = {"version": 1, "node": n.id, "key": n.key.hex(), "board": variant,
               "channels": [{"id": c.name, "driver": "fake"} for c in n.channels],
               "rules": n.rules, "intervals": n.intervals, "log_kb": n.log_kb,
               "sleep": "none"}
        (nd / "config.json").write_text(json.dumps(cfg))
        board = nd / "firmware" / "variants"          # what `stationctl flash` copies
        board.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "firmware" / "variants" / (variant + ".json"), board)
        sources = []
        for c in n.channels:
            if c.source == "loop420":
                sources.append(["loop420", c.chan, 100, c.value_4ma, c.value_20ma])
            elif c.source == "rain":
                sources.append(["rain", c.chan, c.tip_mm])
            elif c.source == "drawwire":
                sources.append(["drawwire", c.chan, list(W.DRAWWIRE_CAL)])
            else:
                sources.append([c.source, c.chan])
        spec = {"sources": sources, "lora": [self.sc.radio["sf"], self.sc.radio["bw_hz"]],
                "boot_seed": self.rng.randrange(1, 1 << 30)}
        if on_board:
            spec["uart"] = self.board.uart_spec()
        (nd / "hil.json").write_text(json.dumps(spec))
        return nd

    # ---------------------------------------------------------------- BeiDou
    def _beidou_lines(self, d):
        b = self.sc.beidou
        if not b:
            return []
        self.bd_key = secrets.token_bytes(32)
        kp = d / "beidou.key"
        fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.bd_key.hex())
        self.bd_master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(self.bd_master)
        self.bd_slave = slave
        return ["[beidou]", 'port = "%s"' % os.ttyname(slave), 'dest = "0300001"',
                "gateway_number = 1", 'key_file = "beidou.key"',
                'card = "%s"' % b.get("card", "bds2"),
                "fallback_after_s = %g" % b.get("fallback_after_s", 20), ""]

    def _start_beidou(self):
        from hil.bdterminal import SimTerminal
        from protocol import bdmsg
        b = self.sc.beidou
        if not b:
            return

        def delivered(card, dest, payload, t):
            try:
                m = bdmsg.decode(payload, self.bd_key)
            except bdmsg.BdMsgError as e:
                self.notes.append("BeiDou message refused: %s" % e)
                return
            self.bd_received.append((t - self.epoch, m))
            self.out("  t=%s BeiDou message: %d alarm(s), levels %s" % (
                _hms(t - self.epoch), len(m["alarms"]), [a.level for a in m["alarms"]]))

        self.bd = SimTerminal(self.bd_master, self.clock.now, interval_s=b.get("interval_s", 60),
                              fail_p=b.get("fail_p", 0.0), feedback_s=b.get("feedback_s", 2.0),
                              deliver_s=b.get("deliver_s", 5.0), seed=self.seed,
                              on_message=delivered).serve()

    def _bd_pace(self, t):
        """After a node alarm, move simulated time at most 1 s per BD_PACE_WALL_S of wall
        time, so the gateway's BeiDou thread (which runs on wall time, reading the
        simulated clock) sees every second of the card interval."""
        if self.bd is None:
            return
        tt = self.clock.t
        while tt < t and (tt < self.bd_pace_until or self.bd.busy(self.epoch + tt)):
            step = min(1.0, t - tt)
            time.sleep(step * BD_PACE_WALL_S)
            tt += step
            self.clock.set(tt)
            self.bd_paced += step

    def _push(self, t, kind, *args):
        self.counter += 1
        heapq.heappush(self.events, (t, self.counter, kind, args))

    # ---------------------------------------------------------------- the world
    def inputs(self, n, t):
        out = []
        for c in n.channels:
            v = c.sensor.sample(t)
            if c.source == "loop420":
                if isinstance(v, W.FaultCode):
                    out.append("F%d" % v.code)
                elif c.sensor.loop_broken(t):
                    out.append("0")
                else:
                    out.append(str(W.loop_current_ua(v, c.value_4ma, c.value_20ma)))
            elif c.source == "drawwire":
                out.append(str(W.wiper_uv(v)))
            elif isinstance(v, W.FaultCode):
                out.append("F%d" % v.code)
            elif c.sensor.loop_broken(t):
                out.append("F8")                 # what the loop driver would report
            elif c.source == "rain":
                out.append(str(int(v) // int(round(c.tip_mm * 10))))    # tips so far
            else:
                out.append(str(int(v)))
        return out

    # ---------------------------------------------------------------- node I/O
    def _node_lines(self, np_, lines, step_done=True):
        wall = time.time()
        unpacked = self.by_node_unpacked.setdefault(np_.id, [])
        for line in lines:
            k = line[:1]
            if k == "R":
                _, chan, t, v = line.split()
                fault = int(v[1:]) if v[0] == "F" else None
                s = Sent(np_.id, int(chan), self.epoch + np_.boot_t + int(t),
                         None if fault is not None else int(v), fault, np_.boots)
                self.sent.append(s)
                unpacked.append(s)
            elif k == "P":
                for s in unpacked:
                    s.packed = True
                if not step_done:
                    self.allowed_loss.update(id(s) for s in unpacked)
                del unpacked[:]
            elif k == "A":
                parts = line.split()[1:]
                t_unix = self.epoch + np_.boot_t + int(parts[5])
                a = NodeAlarm(np_.id, parts, t_unix, wall)
                self.node_alarms.append(a)
                np_.alarm_pending = True
                if self.bd is not None:       # let the gateway's BeiDou lane keep pace
                    self.bd_pace_until = self.clock.t + BD_PACE_S
                self.out("  t=%s node %d ALARM %s" % (_hms(self.clock.t), np_.id, line))
            elif k == "C" and ("error" in line or "torn" in line):
                self.notes.append("node %d: %s" % (np_.id, line[2:]))
                if "config error" in line:
                    self.stats["node_config_errors"] += 1

    def _parse_w(self, np_, w):
        _, wake, level, depth, siren, tx = w.split()
        on = siren == "1"
        if on != bool(getattr(np_, "siren", False)):
            self.siren_changes.append((np_.id, self.clock.t, on))
        np_.level, np_.depth, np_.siren = int(level), int(depth), on
        np_.tx_total = int(tx)
        return float(wake)

    def step_node(self, np_, t):
        if not np_.alive():
            return
        mono = t - np_.boot_t
        lines, w = np_.step(mono, self.inputs(np_.spec, t))
        self.stats["node_steps"] += 1
        self._node_lines(np_, lines)
        if w is None:
            self.stats["node_crashes"] += 1
            self.notes.append("node %d crashed: %s" % (np_.id, last_line(np_.stderr_text())))
            return
        wake = self._parse_w(np_, w)
        self._transmit_from(np_, t)
        np_.wake_gen += 1
        nxt = np_.boot_t + wake if wake >= 0 else t + 600
        if nxt <= t:
            nxt = t + 0.001
        self._push(nxt, "wake", np_, np_.wake_gen)

    def _transmit_from(self, np_, t, wait=True):
        for pkt in np_.pull(np_.tx_total if wait else None):
            if np_.alarm_pending:
                # I3 on the node: after a trip, its next frame on the air is the ALARM
                np_.alarm_pending = False
                mtype = self._uplink_type(pkt)
                self.stats["alarm_first_on_air" if mtype == fr.ALARM
                           else "alarm_not_first_on_air"] += 1
            tx = self.medium.transmit(np_.id, t, pkt)
            self._push(tx.arrive, "to_gw", tx)

    def _uplink_type(self, pkt):
        for item in Deframer().feed(pkt):
            if isinstance(item, bytes):
                try:
                    return fr.decode(item, self.gw_signers.get, fr.UPLINK_TYPES).mtype
                except fr.FrameError:
                    pass
        return None

    # ---------------------------------------------------------------- gateway I/O
    def _pull_gw(self):
        try:
            while True:
                b = os.read(self.gw_master, 4096)
                if not b:
                    break
                self.gw_rx.extend(b)
        except (BlockingIOError, OSError):
            pass
        for pkt in split_packets(self.gw_rx):
            if self.awaiting:
                sent = self.awaiting.pop(0) - GW_ANSWER_WALL_S
                self.answer_ms.append((time.time() - sent) * 1000)
            self._count_stored(pkt)
            tx = self.medium.transmit(GATEWAY, self.clock.t + GW_TURNAROUND_S, pkt)
            for np_ in self.nodes:
                self._push(tx.arrive, "to_node", np_, tx)

    def _wait_gateway(self):
        """Hold simulated time until the gateway has answered what it was given."""
        while self.awaiting:
            if not self.gw.alive():
                self.awaiting = []
                return
            left = self.awaiting[0] - time.time()
            if left <= 0:
                self.stats["gw_answer_timeouts"] += 1
                self.awaiting.pop(0)
                continue
            select.select([self.gw_master], [], [], min(left, 0.05))
            self._pull_gw()

    def _gateway_will_answer(self, pkt):
        """Pacing only: a frame the gateway cannot authenticate gets no ACK, so the
        clock must not wait for one (the checks never rely on this). Also notes how
        many readings each READINGS frame carries, for the `stored` figure."""
        for item in Deframer().feed(pkt):
            if isinstance(item, bytes):
                try:
                    f = fr.decode(item, self.gw_signers.get, fr.UPLINK_TYPES)
                except fr.FrameError:
                    continue
                if f.mtype == fr.READINGS and (f.node, f.seq) not in self.stored_seqs:
                    try:
                        n = sum(b.count if b.values is None else len(b.values)
                                for b in rd.decode(f.payload))
                    except ValueError:
                        n = 0
                    self.frame_readings[(f.node, f.seq)] = n
                return True
        return False

    def _count_stored(self, pkt):
        """An ACK is written only after the commit (I1): the readings of every frame it
        acknowledges are stored at the gateway."""
        for item in Deframer().feed(pkt):
            if not isinstance(item, bytes):
                continue
            try:
                f = fr.decode(item, self.gw_signers.get, fr.DOWNLINK_TYPES)
                if f.mtype != fr.ACK:
                    continue
                _re, _gw_time, ranges = msg.decode_ack(f.payload)
            except (fr.FrameError, msg.PayloadError):
                continue
            for key in list(self.frame_readings):
                if key[0] == f.node and any(lo <= key[1] <= hi for lo, hi in ranges):
                    self.stats["stored"] += self.frame_readings.pop(key)
                    self.stored_seqs.add(key)

    # ---------------------------------------------------------------- events
    def _on_event(self, t, kind, args):
        if kind == "wake":
            np_, gen = args
            if gen == np_.wake_gen:
                if np_.cut_pending is not None and np_.alive():
                    self._do_cut(np_, t)
                else:
                    self.step_node(np_, t)
        elif kind == "to_gw":
            tx, = args
            if self.medium.outcome(tx, GATEWAY) != OK:
                return
            if not self.gw.alive():
                self.stats["dropped_gw_down"] += 1
                return
            os.write(self.gw_master, tx.data)
            if isinstance(tx.src, int):
                self.stats["frames_to_gw"] += 1
                if self._gateway_will_answer(tx.data):
                    self.awaiting.append(time.time() + GW_ANSWER_WALL_S)
                if len(self.captured) < 200:
                    self.captured.append(tx.data)
                if self.kill_gw_on_delivery:
                    self.kill_gw_on_delivery -= 1
                    self.stats["gw_kills_mid_frame"] += 1
                    self._kill_restart_gw(self.rng.uniform(0, 0.025))
        elif kind == "to_node":
            np_, tx = args
            if np_.alive() and self.medium.outcome(tx, np_.id) == OK:
                np_.deliver(tx.data)
                self.step_node(np_, t)
                # the UART radio completes a packet only after a quiet gap, at the next
                # poll: a listening node's main loop polls again within the gap
                self._push(t + RX_GAP_S, "poll", np_)
        elif kind == "poll":
            np_, = args
            self.step_node(np_, t)
        elif kind == "action":
            fn, a = args
            fn(t, *a)

    # ---------------------------------------------------------------- actions
    def _broker_down(self, t, until):
        self.out("  t=%s broker killed (down until t=%s)" % (_hms(t), _hms(until)))
        self.stats["broker_outages"] += 1
        # The broker crashes with the sessions it had: written out first, so the
        # subscriber's persistent session (and what is queued for it while it
        # reconnects) survives the kill -9 whatever the autosave timer says.
        self.broker.save()
        self.broker.stop(kill=True)
        self._push(until, "action", self._broker_up, ())

    def _broker_up(self, t):
        self.out("  t=%s broker restarted" % _hms(t))
        self.broker.start()
        self.broker_restart_wall = time.time()
        if not self.sub.wait_subscribed(60):
            self.notes.append("subscriber did not resubscribe within 60 s of the broker restart")

    def _gw_kill(self, t):
        """kill -9 the gateway: half of the time at once (idle, or in the middle of
        publishing), half of the time 0-25 ms after the next frame is written to its
        serial port, i.e. while it reads, commits, acks or publishes that frame."""
        if self.rng.random() < 0.5:
            self._kill_restart_gw()
        else:
            self.kill_gw_on_delivery += 1

    def _kill_restart_gw(self, delay=0.0):
        if delay:
            time.sleep(delay)
        self.gw.kill9()
        self.stats["gw_kills"] += 1
        self.awaiting = []
        self.gw.start()

    def _node_cut(self, t, node_id, off_s):
        """Cut a node's power at its next wake-up, 0-2 ms into the step: while it
        samples, writes its flash log or transmits."""
        np_ = self.by_id[node_id]
        if not np_.alive() or np_.cut_pending is not None:   # off already: cut it later
            self._push(t + 900.0, "action", self._node_cut, (node_id, off_s))
            return
        np_.cut_pending = off_s

    def _do_cut(self, np_, t):
        off_s, np_.cut_pending = np_.cut_pending, None
        mono = t - np_.boot_t
        lines = np_.kill_in_step(mono, self.inputs(np_.spec, t), self.rng.uniform(0, 0.002))
        self.stats["node_kills"] += 1
        self._node_lines(np_, lines, step_done=False)
        unpacked = self.by_node_unpacked.get(np_.id, [])
        self.allowed_loss.update(id(s) for s in unpacked)
        del unpacked[:]
        time.sleep(0.002)              # what it wrote before dying crosses the pty
        self._transmit_from(np_, t, wait=False)
        np_.wake_gen += 1
        self._push(float(int(t + off_s) + 1), "action", self._node_boot, (np_.id,))

    def _node_boot(self, t, node_id):
        np_ = self.by_id[node_id]
        lines, w = np_.start(t)
        self._node_lines(np_, lines)
        if w is None:
            self.stats["node_crashes"] += 1
            self.notes.append("node %d did not boot: %s" % (node_id, last_line(np_.stderr_text())))
            return
        wake = self._parse_w(np_, w)
        self._transmit_from(np_, t)
        np_.wake_gen += 1
        self._push(max(t + 0.001, t + wake), "wake", np_, np_.wake_gen)

    def _attack(self, t, kind):
        """An attacker's transmission: forged frames (a real node id with a wrong key,
        an unknown node id), replays of real frames heard earlier, and line noise."""
        node = self.sc.nodes[self.rng.randrange(len(self.sc.nodes))].id
        wrong = Hmac(bytes(self.rng.randrange(1, 256) for _ in range(32)))
        if kind == "replay" and self.captured:
            pkt = self.captured[self.rng.randrange(len(self.captured))]
        elif kind == "garbage":
            pkt = b"\x00" + bytes(self.rng.randrange(1, 256) for _ in range(40)) + b"\x00"
        else:
            if kind == "unknown":
                node = 4000 + self.rng.randrange(1000)
            blocks = [rd.Block(channels.chan_id(2, 0), 90, 60, [99999, 99999])]
            mtype = fr.READINGS
            payload = rd.encode(blocks)
            if self.rng.random() < 0.5:
                mtype = fr.ALARM
                payload = msg.encode_alarms([{msg.A_EVENT: 1, msg.A_LEVEL: 4, msg.A_PREV: 0,
                                              msg.A_CHAN: 0x10, msg.A_RULE: 9, msg.A_KIND: 1,
                                              msg.A_VALUE: 1, msg.A_THRESHOLD: 1,
                                              msg.A_AGE: 0}])
            pkt = wrap(fr.encode(wrong, mtype, node, 1_000_000 + self.rng.randrange(1000),
                                 int(self.clock.now()), payload, fr.F_CLOCK_SYNCED))
        self.stats["forged_sent"] += 1
        tx = self.medium.transmit("attacker", t, pkt)
        self._push(tx.arrive, "to_gw", tx)

    def _command(self, t, verb, payload):
        """An operator's command over MQTT; simulated time waits (wall) until the
        gateway has queued it, so the node's next uplink can fetch it."""
        cid = "hil-%d-%s" % (len(self.commands) + 1, verb)
        payload = dict(payload, id=cid)
        self.commands.append((t, verb, cid, payload))
        self.out("  t=%s command %s %s" % (_hms(t), verb, payload))
        self.sub.command(verb, payload)
        deadline = time.time() + 60           # a hang guard: it returns at the result
        while time.time() < deadline:
            self._pull_gw()
            if any(d.get(5) in ("queued", "invalid") for d in self.sub.results_for(cid)):
                return
            time.sleep(0.01)
        self.notes.append("command %s: no 'queued' result from the gateway in 60 s" % cid)

    def _schedule_actions(self):
        sc = self.sc
        for a in sc.actions:
            do = a["do"]
            at = a.get("at", 0.0)
            if do == "dead_zone":
                self.medium.add_dead_zone(a["node"], at, at + a["for"])
            elif do == "broker_down":
                self._push(at, "action", self._broker_down, (at + a["for"],))
            elif do == "gateway_kills":
                for _ in range(a["count"]):
                    self._push(self.rng.uniform(at, a["until"]), "action", self._gw_kill, ())
            elif do == "node_power_cuts":
                for _ in range(a["count"]):
                    n = sc.nodes[self.rng.randrange(len(sc.nodes))].id
                    self._push(self.rng.uniform(at, a["until"]), "action", self._node_cut,
                               (n, self.rng.uniform(0, a.get("max_off", 600.0))))
            elif do == "command":
                self._push(at, "action", self._command, (a["verb"], a.get("payload", {})))
            elif do == "attack":
                kinds = ("forged", "unknown", "replay", "garbage")
                for i in range(a["count"]):
                    self._push(self.rng.uniform(at, a["until"]), "action", self._attack,
                               (kinds[i % len(kinds)],))
            else:
                raise ValueError("%s: action %r: allowed dead_zone, broker_down, "
                                 "gateway_kills, node_power_cuts, attack, command" % (sc.path, do))

    # ---------------------------------------------------------------- run
    def run(self):
        from hil.report import evaluate
        sc = self.sc
        if self.d.exists():
            shutil.rmtree(self.d)
        self.d.mkdir(parents=True)
        wall0 = time.time()
        mpy = build_mpy() if self.runtime == "micropython" else None
        r = sc.radio
        self.medium = Medium(r["sf"], r["bw_hz"], r["cr"], r["loss"], r["delay_s"],
                             seed=self.seed)
        self.clock = SimClock(self.d / "simclock", self.epoch)
        self.broker = Broker(self.d / "mq").start()
        self.sub = Subscriber(self.broker.port, PREFIX, SITE, GW).start()
        if self.hub_kills is not None:
            from hil.hubcheck import HubUnderTest
            self.hub = HubUnderTest(self.d / "hub", self.broker.port, PREFIX,
                                    self.hub_subscription).start()
            for i in range(self.hub_kills):
                self._push(sc.duration_s * (i + 1) / (self.hub_kills + 1), "action",
                           lambda t: self.hub.arm(self.sub), ())
        for spec in sc.gauges:
            self.gauges.append((spec, ModbusGauge()))
        self._start_gauges()
        self.gw_master, gw_slave = os.openpty()
        tty.setraw(gw_slave)
        tty.setraw(self.gw_master)
        os.set_blocking(self.gw_master, False)
        site_cfg = self._write_site(self.broker.port, os.ttyname(gw_slave))
        self.sub.operator = self.operator
        self.gw = Gateway(site_cfg, self.d,
                          self.d / "simclock")
        self._start_beidou()
        self.nodes = []
        self.by_id = {}
        try:
            self.gw.start()
            for i, n in enumerate(sc.nodes):
                if i == 0 and self.board is not None:
                    n = self.board.adapt(n)
                    np_ = self.board.node(n, self._write_node(n), mpy or build_mpy())
                else:
                    np_ = NodeProc(n, self._write_node(n), self.runtime, self.heap, mpy)
                self.nodes.append(np_)
                self.by_id[n.id] = np_
                self._push(float(i), "action", self._node_boot, (n.id,))
            self._schedule_actions()
            self._loop(sc.duration_s)
            self._drain(sc.duration_s)
            self._settle()
        finally:
            for np_ in self.nodes:
                np_.stop()
            self.gw.stop()
            if self.hub:            # compared with all the subscriber ever got
                self.hub.stop_watching()
                self.hub_result = self.hub.verify(self.sub)
                self.hub.stop()
            self.sub.stop()
            self.broker.stop()
            for _spec, g in self.gauges:
                g.close()
            if self.bd is not None:
                self.bd.stop()
                (self.d / "beidou-terminal.log").write_text("".join(
                    "%s %s\n" % (_hms(t - self.epoch), w) for t, w in self.bd.log))
                os.close(self.bd_master)
                os.close(self.bd_slave)
            self.clock.close()
            os.close(gw_slave)
            os.close(self.gw_master)
            for np_ in self.nodes:
                os.close(np_.master)
                if np_.slave is not None:
                    os.close(np_.slave)
        self.stats["wall_s"] = round(time.time() - wall0, 1)
        return evaluate(self)

    def _loop(self, until, stop=None):
        while self.events:
            self._pull_gw()
            self._wait_gateway()
            if not self.gw.alive():
                self._gateway_died()
            t = self.events[0][0]
            if t > until:
                return False
            t, _, kind, args = heapq.heappop(self.events)
            if t > self.clock.t:
                self._bd_pace(t)
                if t >= self.next_progress:
                    self.next_progress = (t // PROGRESS_S + 1) * PROGRESS_S
                    self.out("  t=%s  %d readings taken, %d at the subscriber, %d alarms"
                             % (_hms(t), len(self.sent), self.sub.snapshot()[0],
                                len(self.node_alarms)))
                self.clock.set(t)
                if self.gauges and t >= self.next_gauge_update:
                    self.next_gauge_update = t + GAUGE_UPDATE_S
                    self._update_gauges(t)
            self._on_event(t, kind, args)
            if stop is not None and stop():
                return True
        return False

    def _start_gauges(self):
        import logging
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        for spec, g in self.gauges:
            g.set(0)
            g.serve()
            g.set(spec.channel.sensor.sample(0.0))
            g.silent_now = False

    def _update_gauges(self, t):
        for spec, g in self.gauges:
            silent = spec.channel.sensor.silent(t)
            if silent and not g.silent_now:
                self.out("  t=%s gauge %s stops answering" % (_hms(t), spec.name))
                g.silence()
                g.silent_now = True
                self._await_gw_log("event=modbus_device device=%s online=False" % spec.name,
                                   "gauge_offline")
            elif not silent and g.silent_now:
                self.out("  t=%s gauge %s answers again" % (_hms(t), spec.name))
                g.serve()
                g.silent_now = False
                self._await_gw_log("event=modbus_device device=%s online=True" % spec.name,
                                   "gauge_online_again")
            if not silent:
                v = spec.channel.sensor.sample(t)
                if not isinstance(v, W.FaultCode):
                    g.set(v)

    def _await_gw_log(self, text, stat, timeout=60.0):
        """Hold simulated time (wall seconds) until the gateway logs `text` once more:
        its Modbus bridge runs on wall time, so an outage must last in wall time."""
        seen = self.gw.text().count(text)
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._pull_gw()
            if self.gw.text().count(text) > seen:
                self.stats[stat] += 1
                return True
            time.sleep(0.05)
        self.notes.append("the gateway did not log %r within %g s" % (text, timeout))
        return False

    def _gateway_died(self):
        """The daemon exited without being killed: a failure of the run (its log tail
        goes in the notes); it is restarted so the run can show what it cost."""
        rc = self.gw.proc.returncode if self.gw.proc is not None else None
        tail = [x for x in self.gw.text().splitlines() if "level=ERROR" in x][-2:]
        self.stats["gw_crashes"] += 1
        self.notes.append("gateway exited by itself (rc %s): %s" % (rc, " | ".join(tail)))
        self.gw.start()

    def _drain(self, end):
        """After the scenario: keep the site running until every node's log is empty
        (all its frames acked), at most drain_s more simulated seconds."""
        def empty():
            return all(n.depth == 0 for n in self.nodes if n.alive())
        if self._loop(end + self.sc.drain_s, empty):
            return
        self.notes.append("nodes still had logged frames after %d s of drain: %s" % (
            self.sc.drain_s, ", ".join("%d:%d" % (n.id, n.depth) for n in self.nodes)))

    def _settle(self, timeout=300.0):
        """Wall time for the gateway to publish what it stored. Done when the subscriber
        has every packed reading, or when the gateway has nothing left for the broker
        (_gateway_drained) - events, not a quiet spell: a gateway still in its reconnect
        back-off on a loaded machine is not done. The timeout only bounds a gateway that
        never drains."""
        deadline = time.time() + timeout
        want = sum(1 for s in self.sent if s.packed)
        gauges = {spec.node for spec, _g in self.gauges}   # they publish all the time
        while time.time() < deadline:
            self._pull_gw()
            if not self.gw.alive():
                return
            if self.sub.snapshot(exclude=gauges)[0] >= want or self._gateway_drained():
                time.sleep(0.5)           # duplicates in flight land before the checks
                self._pull_gw()
                return
            time.sleep(0.05)
        self.notes.append("the gateway had not drained to the broker %d s after the run"
                          % timeout)

    def _gateway_drained(self):
        """The gateway's store (read-only, as `stationgw status` reads it) holds no
        reading or alarm from a radio node, and every batch still in it has reached the
        subscriber (its PUBACK may be on the way). Gauges publish all the time: their
        readings do not count."""
        import sqlite3
        gauges = sorted({spec.node for spec, _g in self.gauges}) or [-1]
        try:
            db = sqlite3.connect(Path(self.store_path).resolve().as_uri() + "?mode=ro", uri=True,
                                 timeout=30.0)
            try:
                q = ",".join("?" * len(gauges))
                left = db.execute("SELECT (SELECT count(*) FROM readings WHERE node NOT IN "
                                  "(%s)) + (SELECT count(*) FROM alarms WHERE node NOT IN "
                                  "(%s))" % (q, q), gauges + gauges).fetchone()[0]
                newest = db.execute("SELECT max(seq) FROM batches").fetchone()[0] or 0
            finally:
                db.close()
        except sqlite3.Error:
            return False
        with self.sub.lock:
            seen = max(self.sub.batches, default=0)
        return left == 0 and seen >= newest


def _hms(t):
    t = int(t)
    return "%dd%02d:%02d:%02d" % (t // 86400, t // 3600 % 24, t // 60 % 60, t % 60)


def _zone_lines(zones):
    """[[zones]] of a scenario as site.toml lines (values written back as TOML)."""
    out = []
    for z in zones:
        out.append("[[zones]]")
        for k, v in z.items():
            out.append("%s = %s" % (k, _toml(v)))
        out.append("")
    return out


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, list):
        return "[%s]" % ", ".join(_toml(x) for x in v)
    if isinstance(v, dict):
        return "{ %s }" % ", ".join("%s = %s" % (k, _toml(x)) for k, x in v.items())
    return repr(v)
