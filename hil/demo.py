"""The demo site (`make run`, or `python -m hil.demo [--duration S]`).

Starts, all on this machine and on 127.0.0.1:
  - Mosquitto on a free port, with its own config in a temp dir;
  - three simulated radio nodes (hil/simnode.py) on "the air": one pty pair whose far end
    is the gateway's radio port, as a transparent LoRa module would give it;
  - a Modbus TCP water-level gauge (pymodbus) whose level rises and falls;
  - the gateway daemon (`python -m gateway.cli run -c site.toml`) as a subprocess, with
    a generated site config and fresh random node keys (mode 0600);
  - a live view: one line per decoded batch, alarm (highlighted) and status from MQTT.

Demo time runs faster than real time (--speed, default 12: a node samples every
minute of demo time, i.e. every 5 s) so something happens in a few seconds; node 101
has a displacement step that trips its orange rule after about 5 s.

The helpers (`write_site`, `Air`, `start_broker`, `start_gauge`) are used by the tests.
"""
import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty

from gateway import alarmtext
from hil.simnode import Channel, SimNode, World
from protocol import channels, trip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DISP = channels.chan_id(2)       # displacement.0, 0.01 mm
RAIN = channels.chan_id(1)       # rain.0, 0.1 mm
LEVEL = channels.chan_id(3)      # water_level.0, mm
BATT = channels.chan_id(5)       # battery.0, mV
SOIL = channels.chan_id(9)       # soil_moisture.0, 0.1 %

NODES = (
    (101, "liujiapo-crack", ("displacement.0", "rain.0", "battery.0")),
    (102, "liujiapo-rain", ("rain.0", "soil_moisture.0", "battery.0")),
    (103, "xihe-bridge-level", ("water_level.0", "battery.0")),
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- site files

def make_keys(nodes):
    return {n: secrets.token_bytes(32) for n in nodes}


OPERATOR = "duty"


def write_operators(d):
    """operators.toml (0600) with one operator, "duty", who may send every verb and
    dangerous ones; its key is random per site. Returns (name, key)."""
    from gateway import opcli
    path = os.path.join(d, "operators.toml")
    if os.path.exists(path):
        return opcli.operator_key(path, OPERATOR)
    from gateway import downlink as dl
    return OPERATOR, opcli.add_operator(path, OPERATOR, list(dl.VERBS), dangerous=True)


def signed(site_dir, verb, doc, site="demo", gw="gw1", dangerous=False, t=None):
    """A command envelope signed with the site's demo operator key (what an operator's
    `stationgw sign-command` sends)."""
    from gateway import opcli
    name, key = opcli.operator_key(os.path.join(site_dir, "operators.toml"), OPERATOR)
    return opcli.sign_json(key, name, site, gw, verb, doc, t=t, dangerous=dangerous)


def write_site(d, mqtt_port, radio_port, keys, nodes=NODES, modbus_port=None,
               module="none", extra="", max_readings=5000):
    """Write site.toml and keys.toml (0600) into directory d; returns the config path."""
    os.makedirs(d, exist_ok=True)
    kp = os.path.join(d, "keys.toml")
    fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("[keys]\n")
        for n, k in sorted(keys.items()):
            f.write('"%d" = "%s"\n' % (n, k.hex()))
    os.chmod(kp, 0o600)
    write_operators(d)
    lines = ['[site]', 'id = "demo"', 'gateway_id = "gw1"', '',
             '[commands]', 'operators_file = "operators.toml"', 'rate_per_min = 600', '',
             '[storage]', 'path = "%s"' % os.path.join(d, "store.db"), 'quota_mb = 64', '',
             '[batch]', 'max_age_s = 0.5', 'max_readings = %d' % max_readings, '',
             '[mqtt]', 'host = "127.0.0.1"', 'port = %d' % mqtt_port,
             'client_id = "stationgw-demo-gw1"', 'keepalive_s = 10', '']
    if radio_port:
        lines += ['[radio]', 'port = "%s"' % radio_port, 'module = "%s"' % module,
                  'channel = 18', 'air_rate = 2400', 'keys_file = "keys.toml"', '']
        for nid, name, chans in nodes:
            lines += ['[[nodes]]', 'id = %d' % nid, 'name = "%s"' % name,
                      'channels = [%s]' % ", ".join('"%s"' % c for c in chans), '']
    if modbus_port:
        lines += ['[[modbus.buses]]', 'name = "gauge-net"', 'type = "tcp"',
                  'host = "127.0.0.1"', 'port = %d' % modbus_port, '',
                  '[[modbus.devices]]', 'name = "river-radar"', 'bus = "gauge-net"',
                  'node = 9001', 'device_id = 1', 'poll_s = 2', 'timeout_s = 0.5',
                  'retries = 1', '',
                  '[[modbus.devices.points]]', 'chan = "water_level.0"', 'table = "holding"',
                  'address = 4', 'type = "i16"', 'scale = 0.001', '',
                  '[[modbus.devices.rules]]', 'id = 1', 'chan = "water_level.0"',
                  'kind = "threshold"', 'level = "yellow"', 'op = "above"', 'threshold = 2.5',
                  'hysteresis = 0.1', 'persist_s = 0', 'hold_s = 10', '']
    path = os.path.join(d, "site.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + extra)
    return path


def demo_nodes(keys, speed_t0=0.0):
    """The three demo nodes. Node 101's crack opens by 8 mm at demo time 50 s, which
    trips its orange threshold rule."""
    r101 = trip.Rule.from_wire([1, DISP, trip.THRESHOLD, 3, trip.ABOVE, 1500, 50, 1, 120])
    return [
        SimNode(101, keys[101], [Channel(DISP, World(1000, 30, 900, jump=800, jump_at=50)),
                                 Channel(RAIN, World(3, 3, 600)),
                                 Channel(BATT, World(3950, 20, 3600))],
                rules=[r101], sample_s=60, report_s=60, status_s=600, t0=speed_t0),
        SimNode(102, keys[102], [Channel(RAIN, World(5, 4, 420, phase=1.0)),
                                 Channel(SOIL, World(350, 40, 1800)),
                                 Channel(BATT, World(3880, 15, 3600))],
                sample_s=60, report_s=60, status_s=600, t0=speed_t0),
        SimNode(103, keys[103], [Channel(LEVEL, World(1800, 200, 1200)),
                                 Channel(BATT, World(3700, 25, 3600))],
                sample_s=60, report_s=60, status_s=600, t0=speed_t0),
    ]


# ---------------------------------------------------------------------- the gateway

def wait_until(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class GatewayProcess:
    """The daemon as a subprocess (`python -m gateway.cli run -c cfg`); each start logs
    to its own file `gw-<n>.log` in `d`."""

    def __init__(self, cfg, d):
        self.cfg, self.d = cfg, d
        self.proc = None
        self.runs = 0
        self.log = None

    def start(self, wait=True, timeout=60):
        self.runs += 1
        self.log = os.path.join(self.d, "gw-%d.log" % self.runs)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c",
                                          self.cfg], cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT)
        if wait:
            ok = wait_until(lambda: "event=running" in self.text() or
                            self.proc.poll() is not None, timeout)
            if not ok or self.proc.poll() is not None:
                raise RuntimeError("gateway did not start; its log:\n" + self.text()[-3000:])
        return self

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def term(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---------------------------------------------------------------------- the air

class Air:
    """One pty pair as the radio channel. The gateway opens `path`; the nodes' frames
    are written whole into the master end (a radio delivers packets, not interleaved
    bytes) and whatever the gateway writes is heard by every node."""

    def __init__(self, nodes, speed=1.0, clock=time.monotonic):
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave          # kept open so the master never sees EOF/EIO
        self.nodes = list(nodes)
        self.speed = speed
        self.clock = clock
        self.t_start = clock()
        self.frames_sent = 0
        self.bytes_heard = 0
        self._stop = threading.Event()
        self._thread = None
        self.muted = False           # True: nothing goes on the air (a radio outage)

    def node_time(self):
        return (self.clock() - self.t_start) * self.speed

    def pump(self):
        """One round: let every node act, deliver what the gateway said."""
        now = self.node_time()
        for n in self.nodes:
            out = n.step(now)
            if out and not self.muted:
                os.write(self.master, out)
                self.frames_sent += 1
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            data = b""
        if data:
            self.bytes_heard += len(data)
            now = self.node_time()
            for n in self.nodes:
                n.receive(data, now)

    def start(self, period_s=0.02):
        os.set_blocking(self.master, False)

        def loop():
            while not self._stop.is_set():
                self.pump()
                self._stop.wait(period_s)
        self._thread = threading.Thread(target=loop, name="air", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def close(self):
        self.stop()
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


# ---------------------------------------------------------------------- broker, gauge

def mosquitto_binary():
    for c in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if c and os.path.exists(c):
            return c
    return None


def start_broker(d, port=None):
    """Mosquitto on 127.0.0.1:port with persistence in d. Returns (Popen, port)."""
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("mosquitto is not installed: `sudo apt-get install -y mosquitto` "
                         "(Debian/Raspberry Pi OS) or `make broker`, then run the demo again")
    port = port or free_port()
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    conf = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "persistence true",
            "persistence_location %s/data/" % d, "autosave_interval 1",
            "log_dest file %s/broker.log" % d]
    if os.geteuid() == 0:
        conf.insert(0, "user root")
    cp = os.path.join(d, "mosquitto.conf")
    with open(cp, "w") as f:
        f.write("\n".join(conf) + "\n")
    p = subprocess.Popen([binary, "-c", cp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60        # a hang guard: a loaded box starts slowly
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return p, port
        except OSError:
            if p.poll() is not None:
                raise SystemExit("mosquitto exited at start: see %s/broker.log" % d) from None
            time.sleep(0.02)
    p.kill()
    raise SystemExit("mosquitto did not accept connections on port %d" % port)


class ModbusSim:
    """A pymodbus TCP server for one device in its own thread and event loop.
    `animate(t_demo, server)`, if given, is a coroutine run every 0.5 s to move values."""

    def __init__(self, device_id=1, values=(0,) * 16, animate=None, speed=1.0, port=None):
        self.port = port or free_port()
        self.device_id = device_id
        self.values = list(values)
        self.animate = animate
        self.speed = speed
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._run, name="modbus-sim", daemon=True)

    def start(self):
        self._thread.start()
        if not self.ready.wait(60) or self.error:
            raise RuntimeError("Modbus simulator did not start: %r" % (self.error,))
        return self

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except Exception as e:   # report to start()
            self.error = e
            self.ready.set()

    async def _serve(self):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice
        dev = SimDevice(id=self.device_id, simdata=[SimData(0, values=self.values,
                                                             datatype=DataType.REGISTERS)])
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        self._stop = asyncio.Event()
        self.ready.set()
        t0 = time.monotonic()
        while not self._stop.is_set():
            if self.animate is not None:
                await self.animate((time.monotonic() - t0) * self.speed, self)
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
        await self.server.shutdown()

    async def set(self, fc, address, values):
        await self.server.async_setValues(self.device_id, fc, address, values)

    def get(self, fc, address, count=1):
        """Read values from another thread (fc 1 coils, 3 holding registers)."""
        fut = asyncio.run_coroutine_threadsafe(
            self.server.async_getValues(self.device_id, fc, address, count), self.loop)
        return list(fut.result(60))

    def stop(self):
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(3)


async def river(t, sim):
    """Holding register 4 = river level in mm: 1.8 m, rising over 2.5 m (the yellow rule)
    within 240 demo seconds, falling back from 400 s on."""
    mm = int(1800 + 1000 * min(1.0, t / 240.0) - 1000 * max(0.0, (t - 400) / 240.0))
    await sim.set(3, 4, [max(0, mm)])


def Gauge(speed=1.0, port=None):
    return ModbusSim(1, [0] * 4 + [1800] + [0] * 11, river, speed, port)


# ---------------------------------------------------------------------- the live view

class LiveView:
    """Subscribes to the site's topics and prints one line per message."""

    BOLD, RESET = "\033[1m", alarmtext.ANSI_RESET

    def __init__(self, port, prefix="stations/demo/gw1", out=sys.stdout, color=None):
        import paho.mqtt.client as mqtt
        self.out = out
        self.color = out.isatty() if color is None else color
        self.readings = 0
        self.batches = 0
        self.alarms = 0
        self.statuses = 0
        self.results = 0
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-view-%d" % os.getpid(),
                        protocol=mqtt.MQTTv5)
        c.on_connect = lambda c, u, f, rc, p: c.subscribe(prefix + "/#", qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def _p(self, text, style=None):
        if self.color and style:
            text = style + text + self.RESET
        with self.lock:
            self.out.write(time.strftime("%H:%M:%S ") + text + "\n")
            self.out.flush()

    def _on_message(self, client, userdata, msg):
        import cbor2

        from gateway.batcher import decode_batch_readings
        try:
            kind = msg.topic.rsplit("/", 1)[-1]
            if kind == "data":
                m, rows = decode_batch_readings(msg.payload)
                self.batches += 1
                self.readings += len(rows)
                by_node = {}
                for node, _seq, _idx, chan, _t, v, _fl in rows:
                    by_node.setdefault(node, {})[chan] = v
                parts = []
                for node, chans in sorted(by_node.items()):
                    vals = " ".join("%s=%s" % (channels.label(c), _units(c, v))
                                    for c, v in sorted(chans.items()))
                    parts.append("node %d: %s" % (node, vals))
                for st in m.get(6, ()):
                    parts.append("node %s status: battery %sV, log %s, gaps %s" % (
                        st.get(1), "-" if st.get(3) is None else st[3] / 1000.0, st.get(8, "-"),
                        st.get(12, "-")))
                self._p("batch #%d  %d readings  %s" % (m[3], len(rows), " | ".join(parts)))
            elif kind == "alarm":
                a = cbor2.loads(msg.payload)
                self.alarms += 1
                ev = {1: "TRIP", 2: "LEVEL", 3: "CLEAR"}.get(a.get(5), a.get(5))
                level, kind_, chan = a.get(6, 0), a.get(10), a.get(8, 0)
                self._p("ALARM %s node %s %s -> %s rule %s value %s threshold %s" % (
                    ev, a.get(3), channels.label(chan), alarmtext.level_name(level).upper(),
                    a.get(9), alarmtext.metric_text(kind_, chan, a.get(11)),
                    alarmtext.metric_text(kind_, chan, a.get(12))),
                    alarmtext.ANSI.get(level) or self.BOLD)
            elif kind == "status":
                s = cbor2.loads(msg.payload)
                self.statuses += 1
                self._p("gateway %s %s" % (s.get(2), "ONLINE" if s.get(3) else "OFFLINE"),
                        self.BOLD)
            elif kind == "cmd-result":
                r = cbor2.loads(msg.payload)
                self.results += 1
                self._p("command %s -> %s %s" % (r.get(3), r.get(5), r.get(7) or ""))
        except Exception as e:   # the view must not die on one odd message
            self._p("undecodable message on %s: %r" % (msg.topic, e))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def _units(chan, v):
    if isinstance(v, list):
        return "fault%d" % v[0]
    name, unit, exp, _acc = channels.info(chan)
    return "%g%s" % (round(v * 10.0 ** exp, 3), unit)


# ---------------------------------------------------------------------- main

def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hil.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=None,
                    help="stop after this many seconds (default: until Ctrl-C)")
    ap.add_argument("--speed", type=float, default=12.0,
                    help="demo seconds per real second (default %(default)s)")
    ap.add_argument("--dir", default=None, help="site directory (default: a new temp dir)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)     # unwind: stop everything, clean up
    # the site holds fresh node keys: a temp site goes away with the demo, --dir stays
    d = args.dir or tempfile.mkdtemp(prefix="stationgw-demo-")
    procs = []
    broker = air = gauge = view = gw = None
    hub_url = None
    rc = 0
    try:
        broker, mqtt_port = start_broker(os.path.join(d, "mq"))
        procs.append(broker)
        keys = make_keys([n[0] for n in NODES])
        air = Air(demo_nodes(keys), speed=args.speed)
        gauge = Gauge(speed=args.speed).start()
        cfg = write_site(os.path.join(d, "site"), mqtt_port, air.path, keys,
                         modbus_port=gauge.port)
        view = LiveView(mqtt_port)
        from hub import demohook  # the monitoring centre's map (hub/, issue #16)
        hub, hub_url = demohook.start(os.path.join(d, "hub"), mqtt_port)
        procs.append(hub)
        log_path = os.path.join(d, "gateway.log")
        logf = open(log_path, "wb")
        gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", cfg],
                              cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
        procs.append(gw)
        print("demo site in %s\n  broker   mosquitto on 127.0.0.1:%d\n  radio    3 simulated "
              "nodes on %s\n  modbus   water-level gauge on 127.0.0.1:%d (node 9001)\n  "
              "gateway  pid %d, config %s, log %s\n  status   %s -m gateway.cli status -c %s"
              "\n  watch    %s -m tools.cli monitor --broker mqtt://127.0.0.1:%d --site demo\n  map      %s (CAP alerts in "
              "%s)\n%s" % (
                  d, mqtt_port, air.path, gauge.port, gw.pid, cfg, log_path, sys.executable, cfg,
                  sys.executable, mqtt_port, hub_url, os.path.join(d, "hub", "cap-out"),
                  "running for %g s" % args.duration if args.duration else "Ctrl-C stops"),
              flush=True)
        air.start()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            if gw.poll() is not None:
                print("gateway exited with code %d; its log:\n%s" % (
                    gw.returncode, open(log_path, errors="replace").read()[-3000:]))
                rc = 1
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if air:
            air.stop()
        if gw and gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(15)
            except subprocess.TimeoutExpired:
                gw.kill()
        if view:
            time.sleep(0.3)
            view.close()
            print("seen: %d batches, %d readings, %d alarms, %d gateway status messages" % (
                view.batches, view.readings, view.alarms, view.statuses), flush=True)
        if gauge:
            gauge.stop()
        if air:
            air.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not args.dir:
            shutil.rmtree(d, ignore_errors=True)
            print("removed %s (its node keys with it); --dir DIR keeps a demo site" % d,
                  flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
