"""The site gateway daemon: config -> store -> uplink -> radio ingest -> Modbus bridge ->
status, in one asyncio loop (`stationgw run -c site.toml` calls `main(cfg)`).

Threads: the event loop (serial reads, Modbus, commands, status); one commit thread
(every store commit of radio groups and Modbus polls, in order); the uplink's worker
and paho's network thread (gateway/uplink.py).

Logs: one line per event on stdout, `ts=... level=... logger=... event=... key=value`
(journald adds its own time stamp; the format stays greppable). Secrets (node keys, the
MQTT password) are never logged: the config objects do not print them.

SIGTERM / SIGINT: stop reading the radio, finish the commit in flight and send its ACKs,
stop the Modbus polls, let the uplink flush what is in flight (bounded), publish the
offline status, close the store. Nothing committed is lost: what was not PUBACKed yet
stays in the store and goes out after the next start.

Status: every STATUS_EVERY_S a JSON snapshot is written atomically (temp file, fsync,
rename) as `status.json` next to the store; `stationgw status` reads and prints it.
"""
import asyncio
import collections
import concurrent.futures
import fcntl
import json
import logging
import os
import signal
import sys
import tempfile
import time

import cbor2

from gateway import cmdauth, simclock
from gateway import downlink as dl
from gateway.radio import RadioIngest, RadioPort
from gateway.store import Store, StoreError
from gateway.uplink import Uplink, UplinkSettings

log = logging.getLogger("stationgw.daemon")

STATUS_FILE = "status.json"
DOWNLINK_FILE = "downlink.cbor"
STATUS_EVERY_S = 2.0
STALE_AFTER_S = 30.0
EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
CMD_INBOX_MAX = 1000          # commands waiting for the loop; beyond: dropped and counted
CMD_PER_TURN = 8              # commands handled per event-loop turn
CLOCK_FLOOR = 1735689600      # 2025-01-01: a Pi without RTC or NTP can boot far before it


def setup_logging(stream=None, level=logging.INFO):
    h = logging.StreamHandler(stream or sys.stdout)
    h.setFormatter(logging.Formatter(
        "ts=%(asctime)s.%(msecs)03dZ level=%(levelname)s logger=%(name)s %(message)s",
        "%Y-%m-%dT%H:%M:%S"))
    h.formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level)
    for noisy in ("pymodbus",):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def state_dir(cfg):
    return os.path.dirname(os.path.abspath(cfg.storage.path))


def status_path(cfg):
    return os.path.join(state_dir(cfg), STATUS_FILE)


def fsync_dir(d):
    """Make a rename or a new file in directory `d` durable: without it a power cut can
    bring back the old directory entry although the file's data was synced (issue 12,
    defect 5)."""
    fd = os.open(d or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data, mode=0o600):
    """Write-temp, fsync, rename, fsync the directory: a reader sees the old file or the
    new one, never half, and after it returns a power cut keeps the new one."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=d)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(d)


class AlreadyRunning(Exception):
    """Another daemon holds this store's lock; the message names its PID."""


def lock_store(store_path):
    """Take an exclusive lock on `<store>.lock` (fcntl.flock, released by the kernel when
    the process dies, even by kill -9). Returns the open fd to keep; AlreadyRunning if
    another process holds it (issue 12, defect 7: two daemons on one config fought
    over the store, the radio port and the MQTT client id)."""
    path = os.path.abspath(str(store_path)) + ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        except OSError:
            other = "unknown"
        os.close(fd)
        raise AlreadyRunning(
            "another stationgw (pid %s) is already running on this store (%s): stop it "
            "first (`systemctl stop stationgw` or `kill %s`), or give this config its own "
            "storage.path" % (other, path, other)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, b"%d\n" % os.getpid(), 0)
    return fd


def _port_hint(port, e):
    """The next thing to check when the radio's serial port does not open."""
    import errno
    code = getattr(e, "errno", None)
    if code == errno.ENOENT:
        return ("no such device: is the LoRa module (or its USB adapter) connected, and is "
                "radio.port in site.toml right? (ls /dev/ttyAMA* /dev/ttyUSB* /dev/serial/by-id)")
    if code in (errno.EACCES, errno.EPERM):
        return ("permission denied: the service user needs the dialout group "
                "(sudo usermod -aG dialout stationgw) and the unit's DeviceAllow=%s" % port)
    if code == errno.EBUSY or "lock" in str(e).lower():
        return "the port is in use: is another stationgw (or a serial console) holding it?"
    return "check radio.port in site.toml and that the module is powered and wired"


class Daemon:
    def __init__(self, cfg, clock=time.time, serial_factory=None):
        self.cfg = cfg
        self.clock = clock
        self.serial_factory = serial_factory or _open_serial
        self.started = clock()
        self.loop = None
        self.stopping = None
        self.store = None
        self.uplink = None
        self.ingest = None
        self.port = None
        self.bridge = None
        self.commit_exec = concurrent.futures.ThreadPoolExecutor(1, "commit")
        # The downlink queue file is written here, never on the event loop (defect 4).
        self.save_exec = concurrent.futures.ThreadPoolExecutor(1, "dlsave")
        sec = cfg.security
        cmds = sec.commands if sec is not None else None
        self.queue = dl.DownlinkQueue(
            self._on_result,
            max_per_node=cmds.max_pending_per_node if cmds else dl.MAX_PENDING_PER_NODE,
            max_total=cmds.max_pending_total if cmds else dl.MAX_PENDING_TOTAL)
        self.auth = cmdauth.CommandAuth(
            cmds.operators if cmds else {}, cfg.site.id, cfg.site.gateway_id,
            max_skew_s=cmds.max_skew_s if cmds else cmdauth.DEFAULT_SKEW_S,
            rate_per_min=cmds.rate_per_min if cmds else 20)
        self.commands_enabled = cmds is not None
        self._save_running = False
        self._save_closed = False
        self._save_waiters = []
        self.saves = 0
        self.lock_fd = None
        self._refusal_bucket = cmdauth.TokenBucket(30, 10)   # cmd-result "refused" messages
        self._cmd_inbox = collections.deque()
        self._cmd_drain_scheduled = False
        self.commands_dropped = 0
        self.refusals_unreported = 0
        self.node_ids = {n.id for n in cfg.nodes}
        self.node_channels = {n.id: set(n.channels) for n in cfg.nodes if n.channels}
        self.module_info = None
        self.chan_levels = {}     # (radio node, chan) -> warning level from its last alarm
        self.beidou = None        # gateway.beidou.BeidouService when [beidou] is configured
        from gateway.zones import ZoneEngine
        self.zones = ZoneEngine(cfg.zones) if cfg.zones else None

    # ------------------------------------------------------------------ lifecycle
    async def run(self):
        cfg = self.cfg
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._request_stop, sig)
        log.info("event=starting site=%s gateway=%s config=%s pid=%d", cfg.site.id,
                 cfg.site.gateway_id, cfg.path, os.getpid())
        try:
            self.lock_fd = lock_store(cfg.storage.path)
        except AlreadyRunning as e:
            log.error("event=already_running error=%r", str(e))
            print("stationgw: %s" % e, file=sys.stderr)
            return EXIT_FAIL
        try:
            self.store = Store(cfg.storage.path, quota_bytes=cfg.storage.quota_mb * 1024 * 1024,
                               live_horizon_s=cfg.storage.live_horizon_s)
        except StoreError as e:
            log.error("event=store_failed error=%r", str(e))
            return EXIT_FAIL
        log.info("event=store_open path=%s", cfg.storage.path)
        suspect = self.clock_check(self.store.last_seen())
        if suspect:
            log.error("event=clock_suspect detail=%r: reading times and node clocks follow "
                      "this clock; fix time sync (NTP, an RTC)", suspect)
        self.store.add_listener(self._on_commit)
        self._load_downlink()
        tasks = []
        try:
            self.uplink = Uplink(self.store, UplinkSettings.from_config(cfg),
                                 on_command=self._on_command_thread).start()
            log.info("event=uplink_started broker=%s:%d protocol=%s", cfg.mqtt.host,
                     cfg.mqtt.port, cfg.mqtt.protocol)
            if cfg.beidou is not None:
                from gateway.beidou import start_service
                up = self.uplink
                self.beidou = start_service(cfg.beidou, self.store, lambda: up.connected,
                                            self.clock, self.serial_factory)
            if cfg.radio is not None:
                err = self._start_radio()
                if err:
                    log.error("event=radio_failed error=%r", err)
                    return EXIT_FAIL
                tasks.append(asyncio.create_task(self.port.run(), name="radio"))
            if cfg.modbus.devices:
                tasks.append(asyncio.create_task(self._run_modbus(), name="modbus"))
            tasks.append(asyncio.create_task(self._housekeeping(), name="status"))
            if self.zones is not None:
                if self.ingest is not None:
                    self.ingest.zone_level = self.zones.node_level
                tasks.append(asyncio.create_task(self._zone_ticker(), name="zones"))
            log.info("event=running radio=%s modbus_devices=%d nodes=%d",
                     cfg.radio.port if cfg.radio else "none", len(cfg.modbus.devices),
                     len(cfg.nodes))
            stop_wait = asyncio.create_task(self.stopping.wait())
            await asyncio.wait(tasks + [stop_wait], return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if self.stopping.is_set():
                return EXIT_OK
            for t in tasks:
                if t.done():
                    err = t.exception() or (self.port.failed if t.get_name() == "radio"
                                            else "ended")
                    log.error("event=task_failed task=%s error=%r: stopping so the service "
                              "manager restarts the gateway", t.get_name(), err)
            return EXIT_FAIL
        finally:
            await self._shutdown(tasks)

    def _request_stop(self, sig):
        log.info("event=stop_requested signal=%s", signal.Signals(sig).name)
        self.stopping.set()

    async def _shutdown(self, tasks):
        # 1. radio: stop reading, commit what was read, ack it.
        if self.port is not None:
            self.port.stop()
            for t in tasks:
                if t.get_name() == "radio":
                    try:
                        await asyncio.wait_for(t, 10)
                    except Exception as e:
                        log.error("event=radio_stop_failed error=%r", e)
        # 2. everything else (Modbus polls, status task).
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.commit_exec.shutdown(wait=True)
        self._save_closed = True
        self.save_exec.shutdown(wait=True)
        if self.beidou is not None:
            self.beidou.stop()
        # 3. uplink: flush what is in flight, offline status, disconnect.
        if self.uplink is not None:
            await self.loop.run_in_executor(None, self.uplink.stop, 5.0)
        try:
            self._save_downlink()
        except OSError as e:
            log.error("event=downlink_queue_save_failed error=%r", e)
        for w in self._save_waiters:     # commands whose save the final one covered
            w(None)
        self._save_waiters = []
        if self.store is not None:
            try:
                self._write_status()
            except Exception as e:
                log.warning("event=status_write_failed error=%r", e)
            self.store.close()
        if self.port is not None:
            self.port.ser.close()
        log.info("event=stopped")

    # ------------------------------------------------------------------ radio
    def _on_commit(self, new_alarms, n_live, n_backlog, n_status):
        # The commit thread. Radio-node alarms drive the site siren too (the Modbus
        # bridge owns the relay and follows the highest level of all sources).
        for _aid, a in new_alarms:
            if a.node in self.node_ids:
                log.warning("event=radio_alarm node=%d seq=%d chan=%d level=%d prev=%d rule=%d "
                            "value=%d", a.node, a.seq, a.chan, a.level, a.prev_level, a.rule_id,
                            a.value)
                self.chan_levels[(a.node, a.chan)] = a.level
                level = max(v for (n, _c), v in self.chan_levels.items() if n == a.node)
                if self.bridge is not None:
                    self.loop.call_soon_threadsafe(self.bridge.set_external_level,
                                                   "radio-%d" % a.node, level)
                if self.zones is not None:      # before the ACK of this frame is built
                    self.loop.call_soon_threadsafe(self._zone_level, a.node, level)
            elif self.zones is not None:        # a Modbus virtual node
                self.loop.call_soon_threadsafe(self._zone_level, a.node, a.level)

    # ------------------------------------------------------------------ zones
    def _zone_level(self, source, level):
        self._zone_actions(self.zones.level_changed(source, level, self.clock()))

    def _zone_actions(self, actions):
        for act in actions:
            log.warning("event=zone_%s zone=%s level=%d nodes=%s coils=%d reason=%r", act.what,
                        act.zone, act.level, ",".join(str(n) for n in sorted(act.nodes)),
                        len(act.coils), act.reason)
        if actions and self.bridge is not None:
            for (dev, addr), on in self.zones.coil_wanted().items():
                self.bridge.set_coil(dev, addr, on)

    async def _zone_ticker(self):
        while True:                       # hold-time clears (members normal long enough)
            await asyncio.sleep(1.0)
            self._zone_actions(self.zones.tick(self.clock()))

    def _zone_command(self, verb, payload):
        try:
            doc = dl.decode_payload(payload)
            acts = self.zones.command(verb, doc.get("zone"), self.clock())
        except (dl.CommandError, KeyError, ValueError, AttributeError) as e:
            self._publish_result(verb, None, dl.R_INVALID, None,
                                 "%s: send {\"zone\": \"<name>\"}" % e, None)
            return
        self._zone_actions(acts)
        self._publish_result(verb, doc.get("id") if isinstance(doc.get("id"), str) else None,
                             "applied", None, "zone %s" % doc.get("zone"), None)

    def _start_radio(self):
        r = self.cfg.radio
        try:
            ser = self.serial_factory(r)
        except Exception as e:
            return "cannot open radio port %s: %s. Next: %s" % (r.port, e, _port_hint(r.port, e))
        rssi = False
        if r.module != "none":
            from gateway import lora_module
            try:
                self.module_info = lora_module.configure_from_config(ser, r)
            except lora_module.ModuleError as e:
                ser.close()
                return str(e)
            rssi = bool(self.module_info.get("rssi_byte"))
            log.info("event=module_ready %s", " ".join(
                "%s=%s" % kv for kv in sorted(self.module_info.items())))
        keys = {n: r.keys.get(n) for n in r.keys.nodes()}
        from gateway.chanload import ChannelLoad, ebyte_airtime
        self.ingest = RadioIngest(keys, downlink=self.queue, rssi_byte=rssi,
                                  dl_seq_start=(int(self.clock()) & 0x7FFFFFFF) or 1,
                                  chanload=ChannelLoad(ebyte_airtime(r.air_rate)))
        self.port = RadioPort(ser, self.ingest, self.store, self.clock, self.commit_exec)
        nodes = set(keys) | set(self.store.known_nodes())
        self.port.load_state(sorted(n for n in nodes if n in keys))
        for node, d in self.store.last_seen().items():
            if node in keys:
                self.ingest.node_stats(node).last_seen = d
        log.info("event=radio_open port=%s module=%s nodes=%d rssi_byte=%s", r.port, r.module,
                 len(keys), rssi)
        return None

    # ------------------------------------------------------------------ Modbus
    async def _run_modbus(self):
        from gateway.modbus import ModbusBridge

        async def sink(records):
            await self.loop.run_in_executor(self.commit_exec, self.store.commit, records)

        def on_state(st):
            log.info("event=modbus_device device=%s online=%s reason=%s", st.device, st.online,
                     st.reason)

        def alloc_seq(node):
            # next_seq fsyncs: run it where the commits run, off the event loop, so radio
            # acks never wait behind it
            return self.loop.run_in_executor(self.commit_exec, self.store.next_seq, node)

        # stamps follow the daemon's clock (simulated under the HIL rig), polls wall time
        self.bridge = ModbusBridge(self.cfg, sink, alloc_seq, clock=simclock.BridgeClock(self.clock),
                                   on_state=on_state)
        await self.bridge.run()

    # ------------------------------------------------------------------ commands
    def _downlink_path(self):
        return os.path.join(state_dir(self.cfg), DOWNLINK_FILE)

    def _load_downlink(self):
        try:
            with open(self._downlink_path(), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        try:
            self.queue.load(data)
            self.auth.load_nonces(self.queue.extra.get("nonces"), time.time())
        except Exception as e:
            # Keep the file for a look; start with an empty queue rather than not at all.
            os.replace(self._downlink_path(), self._downlink_path() + ".bad")
            log.error("event=downlink_queue_unreadable error=%r moved_to=%s.bad", e,
                      self._downlink_path())
            return
        log.info("event=downlink_queue_loaded commands=%d", self.queue.depth())

    def _save_downlink(self):
        """Blocking save (shutdown only; the loop uses `_schedule_save`)."""
        if self.queue.dirty:
            self.queue.extra["nonces"] = self.auth.dump_nonces()
            write_atomic(self._downlink_path(), self.queue.dump())

    def _schedule_save(self, then=None):
        """Save the queue (and the replay cache) in the save thread; `then(error)` runs on
        the loop once a save that covers the current state is durable. Saves coalesce: a
        flood of commands costs a few writes, and the loop never waits for an fsync."""
        if then is not None:
            self._save_waiters.append(then)
        if self._save_running or self._save_closed:
            return              # after shutdown began, _shutdown's final save covers it
        self._save_running = True
        self.queue.extra["nonces"] = self.auth.dump_nonces()
        data = self.queue.dump()
        waiters, self._save_waiters = self._save_waiters, []
        fut = self.loop.run_in_executor(self.save_exec, write_atomic, self._downlink_path(),
                                        data)
        fut.add_done_callback(lambda f: self._saved(f, waiters))

    def _saved(self, fut, waiters):
        self._save_running = False
        self.saves += 1
        err = fut.exception()
        if err is not None:
            log.error("event=downlink_queue_save_failed error=%r", err)
        for w in waiters:
            w(err)
        if self._save_waiters or self.queue.dirty:
            self._schedule_save()

    def _on_command_thread(self, verb, payload):
        # paho's thread: hand over to the loop, which owns the downlink queue. The inbox
        # is bounded, and the loop takes a few commands per turn, so a flood of commands
        # never keeps the radio reader (ACKs) waiting for long.
        if len(self._cmd_inbox) >= CMD_INBOX_MAX:
            self.commands_dropped += 1      # counted; the sender gets no answer
            return
        self._cmd_inbox.append((verb, payload))
        if not self._cmd_drain_scheduled:
            self._cmd_drain_scheduled = True
            self.loop.call_soon_threadsafe(self._drain_commands)

    def _drain_commands(self):
        for _ in range(CMD_PER_TURN):
            try:
                verb, payload = self._cmd_inbox.popleft()
            except IndexError:
                break
            try:
                self._on_command(verb, payload)
            except Exception:            # one command's bug costs that command only
                log.exception("event=command_failed verb=%s", verb[:64])
        if self._cmd_inbox:
            self.loop.call_soon(self._drain_commands)      # after the next I/O poll
        else:
            self._cmd_drain_scheduled = False
            if self._cmd_inbox:          # appended between the pop and the flag
                self._cmd_drain_scheduled = True
                self.loop.call_soon(self._drain_commands)

    def _on_command(self, verb, payload):
        now = self.clock()
        if verb in ("zone-clear", "zone-sound") and self.zones is not None:
            return self._zone_command(verb, payload)
        try:
            if not self.commands_enabled:
                raise cmdauth.Refused("disabled", "this gateway takes no commands: add a "
                                      "[commands] section with an operators_file")
            # wall time, not the daemon's clock: the HIL rig simulates the latter, while
            # an operator signs with real time
            op, body, confirmed = self.auth.check(verb, payload, time.time())
        except cmdauth.Refused as e:
            self._refuse(verb, e)
            return
        try:
            doc = dl.decode_payload(body)
            cmd = dl.parse_command(verb, doc, self.node_ids, self.node_channels)
            why = cmdauth.danger(cmd, self.node_channels)
            if why:
                try:
                    self.auth.allow_dangerous(op, confirmed, why)
                except cmdauth.Refused as e:
                    self._refuse(verb, e, doc.get("id"))
                    return
                log.warning("event=command_dangerous operator=%s verb=%s id=%s nodes=%s why=%r",
                            op.name, verb, cmd.id, ",".join(str(n) for n in cmd.nodes), why)
            self.queue.put(cmd, now)
        except dl.QueueFull as e:
            self._refuse(verb, cmdauth.Refused("queue_full", str(e)), doc.get("id"))
            return
        except dl.CommandError as e:
            log.warning("event=command_invalid operator=%s verb=%s error=%r", op.name, verb,
                        str(e))
            cid = None
            try:
                cid = dl.decode_payload(body).get("id")
            except dl.CommandError:
                pass
            self._publish_result(verb, cid if isinstance(cid, str) else None, dl.R_INVALID,
                                 None, str(e), None)
            return
        log.info("event=command_accepted operator=%s verb=%s id=%s nodes=%s", op.name, verb,
                 cmd.id, ",".join(str(n) for n in cmd.nodes))

        def queued(err):        # durable (command and nonce) before we say "queued"
            log.info("event=command_queued verb=%s id=%s nodes=%s", verb, cmd.id,
                     ",".join(str(n) for n in cmd.nodes))
            self._publish_result(verb, cmd.id, dl.R_QUEUED, None, "sent after the node's "
                                 "next uplink frame", None, cmd.nodes)
        self._schedule_save(queued)

    def _refuse(self, verb, e, cid=None):
        """Refused commands are counted always, reported (log + cmd-result) at a bounded
        rate, so a flood of junk cannot flood the uplink or the journal."""
        if not self._refusal_bucket.take(time.monotonic()):
            self.refusals_unreported += 1
            return
        n, self.refusals_unreported = self.refusals_unreported, 0
        log.warning("event=command_refused verb=%s reason=%s detail=%r unreported_before=%d",
                    verb[:64], e.reason, str(e), n)
        self._publish_result(verb[:64], cid if isinstance(cid, str) else None, "refused", None,
                             "%s: %s" % (e.reason, e), None)

    def _on_result(self, cmd, node, result, detail, version):
        log.info("event=command_result verb=%s id=%s node=%s result=%s version=%s detail=%r",
                 cmd.verb, cmd.id, node, result, version, detail)
        self._publish_result(cmd.verb, cmd.id, result, node, detail, version)

    def _publish_result(self, verb, cid, result, node, detail, version, nodes=None):
        m = {0: 1, 1: self.cfg.site.id, 2: self.cfg.site.gateway_id, 3: verb, 4: cid, 5: result,
             7: detail, 9: int(self.clock())}
        if node is not None:
            m[6] = node
        if version is not None:
            m[8] = version
        if nodes is not None:
            m[10] = list(nodes)
        if self.uplink is not None:
            self.uplink.publish_cmd_result(cbor2.dumps(m))

    # ------------------------------------------------------------------ status
    async def _housekeeping(self):
        while True:
            self.queue.expire(self.clock())
            t0 = time.monotonic()
            if self.queue.dirty:
                self._schedule_save()
            try:
                await self.loop.run_in_executor(None, self._write_status)
            except Exception as e:
                log.warning("event=status_write_failed error=%r", e)
            # The store's figures hold its lock while they are counted; on a huge backlog
            # that takes a while, so the snapshot then comes less often and never takes
            # more than a few percent of the store's time away from commits and acks.
            await asyncio.sleep(max(STATUS_EVERY_S, 30 * (time.monotonic() - t0)))

    def clock_check(self, last_seen):
        """Stamps come from this clock and ACKs hand it to the nodes, so say loudly when it
        looks wrong (a Pi has no RTC; without NTP it may restart in the past)."""
        now = self.clock()
        newest = max(last_seen.values(), default=None)
        if now < CLOCK_FLOOR:
            return "clock reads %s, before 2025: no NTP yet?" % time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        if newest is not None and now < newest - 60:
            return "clock is %d s behind the newest frame in the store: it went backwards" % (
                newest - now)
        return None

    def snapshot(self):
        now = self.clock()
        st = self.store.stats()
        nodes = {}
        names = {n.id: n.name for n in self.cfg.nodes}
        radio = self.ingest.snapshot() if self.ingest is not None else {"nodes": {}, "rejects": {}}
        for node in sorted(set(names) | set(radio["nodes"])):
            d = dict(st["nodes"].get(node, {}))
            d.update({k: v for k, v in radio["nodes"].get(node, {}).items() if v is not None})
            d["name"] = names.get(node, "")
            d["downlink_queue"] = self.queue.depth(node)
            nodes[str(node)] = d
        up = self.uplink.stats() if self.uplink is not None else {}
        out = {
            "t": now, "pid": os.getpid(), "started": self.started,
            "site": self.cfg.site.id, "gateway": self.cfg.site.gateway_id,
            "nodes": nodes, "lanes": st["lanes"], "counters": st["counters"],
            "broker": {"connected": up.get("connected", False), "broker": up.get("broker"),
                       "protocol": up.get("protocol"), "last_puback": up.get("last_puback")
                       or st.get("last_puback"), "inflight_batches": up.get("inflight_batches"),
                       "batches_acked": up.get("batches_acked"),
                       "readings_acked": up.get("readings_acked"),
                       "alarms": up.get("alarms")},
            "store": {"used_bytes": st["used_bytes"], "quota_bytes": st["quota_bytes"],
                      "batch_seq": st["batch_seq"]},
            "commands": {"accepted": self.auth.accepted, "refused": dict(self.auth.refused),
                         "refused_queue_full": self.queue.refused_full,
                         "dropped_overload": self.commands_dropped,
                         "queue_saves": self.saves, "queue_depth": self.queue.depth()},
            "clock_suspect": self.clock_check(
                {n: d["last_seen"] for n, d in st["nodes"].items() if d.get("last_seen")}),
        }
        if self.port is not None:
            out["radio"] = {"port": self.cfg.radio.port, "module": self.cfg.radio.module,
                            "commits": self.port.commits,
                            "commit_failures": self.port.commit_failures,
                            "frames_acked": self.port.frames_acked,
                            "rejects": radio["rejects"], "module_info": self.module_info}
        if self.bridge is not None:
            out["modbus"] = self.bridge.stats()
        if self.beidou is not None:
            out["beidou"] = self.beidou.stats()
        return out

    def _write_status(self):
        data = json.dumps(self.snapshot(), sort_keys=True, default=str).encode()
        # Readable by operators' accounts: it holds figures, no secrets.
        write_atomic(status_path(self.cfg), data, 0o644)


def _open_serial(radio):
    import serial
    # exclusive: a second program on the same port (another gateway, a terminal) is an
    # error here, not two readers stealing each other's frames
    ser = serial.Serial(radio.port, radio.baudrate, timeout=0, write_timeout=2, exclusive=True)
    return ser


# ---------------------------------------------------------------------- entry points

def main(cfg, attach=None):
    """`stationgw run`: run until SIGTERM/SIGINT. Returns the exit code. `attach(daemon)`,
    if given, is called before the daemon starts (the status page hooks in there)."""
    setup_logging()
    for w in cfg.warnings:
        log.warning("event=config_warning %s", w)
    try:
        # simclock: wall time on a site; the HIL rig's shared clock when it sets the variable
        d = Daemon(cfg, clock=simclock.from_env())
        if attach is not None:
            attach(d)
        return asyncio.run(d.run())
    except KeyboardInterrupt:
        return EXIT_OK


def run(config_path):
    """Load the config, then `main`. Exit 2 with every problem if the config is bad."""
    from gateway import config as gconfig
    try:
        cfg = gconfig.load(config_path)
    except gconfig.ConfigError as e:
        for issue in e.issues:
            print("config error: %s" % issue, file=sys.stderr)
        return EXIT_CONFIG
    return main(cfg)


def read_status(cfg):
    with open(status_path(cfg), "rb") as f:
        return json.loads(f.read())


def status(cfg, as_json=False, out=None, now=None):
    """`stationgw status`: print the daemon's last snapshot. Exit 1 if there is none.
    `cfg` is a loaded SiteConfig or the path of site.toml."""
    out = out or sys.stdout
    if isinstance(cfg, (str, os.PathLike)):
        from gateway import config as gconfig
        try:
            cfg = gconfig.load(cfg)
        except gconfig.ConfigError as e:
            for issue in e.issues:
                print("config error: %s" % issue, file=sys.stderr)
            return EXIT_CONFIG
    path = status_path(cfg)
    try:
        snap = read_status(cfg)
    except FileNotFoundError:
        print("no status snapshot at %s: is the gateway running (`systemctl status "
              "stationgw`)? It writes one every %g s." % (path, STATUS_EVERY_S), file=sys.stderr)
        return EXIT_FAIL
    except (OSError, ValueError) as e:
        print("cannot read %s: %s" % (path, e), file=sys.stderr)
        return EXIT_FAIL
    now = time.time() if now is None else now
    if as_json:
        out.write(json.dumps(snap, indent=1, sort_keys=True) + "\n")
        return EXIT_OK
    out.write(format_status(snap, now) + "\n")
    return EXIT_OK


def _ago(now, t):
    if t is None:
        return "never"
    s = max(0, now - t)
    if s < 120:
        return "%ds ago" % s
    if s < 7200:
        return "%dm ago" % (s // 60)
    return "%.1fh ago" % (s / 3600)


def _age(s):
    return "-" if s is None else "%ds" % s


def format_status(snap, now):
    lines = []
    age = now - snap.get("t", 0)
    lines.append("gateway %s/%s  pid %s  snapshot %s%s" % (
        snap.get("site"), snap.get("gateway"), snap.get("pid"), _ago(now, snap.get("t")),
        "  (STALE: daemon not running?)" if age > STALE_AFTER_S else ""))
    b = snap.get("broker", {})
    if snap.get("clock_suspect"):
        lines.append("CLOCK SUSPECT: %s" % snap["clock_suspect"])
    lines.append("broker %s %s (%s), last PUBACK %s, batches acked %s" % (
        b.get("broker"), "CONNECTED" if b.get("connected") else "DISCONNECTED",
        b.get("protocol"), _ago(now, b.get("last_puback")), b.get("batches_acked")))
    lines.append("")
    lines.append("%-6s %-22s %-10s %6s %8s %5s %5s %6s %4s" % (
        "node", "name", "last seen", "rssi", "battery", "gaps", "log", "frames", "dl"))
    for node, d in sorted(snap.get("nodes", {}).items(), key=lambda kv: int(kv[0])):
        lines.append("%-6s %-22s %-10s %6s %8s %5s %5s %6s %4s" % (
            node, d.get("name", "")[:22], _ago(now, d.get("last_seen")),
            "-" if d.get("rssi_dbm") is None else "%d" % d["rssi_dbm"],
            "-" if d.get("battery_mv") is None else "%dmV" % d["battery_mv"],
            d.get("seq_gaps", "-"), d.get("log_depth", "-"), d.get("frames", "-"),
            d.get("downlink_queue", 0)))
    lines.append("")
    lines.append("%-16s %8s %10s" % ("lane", "depth", "oldest"))
    for lane, d in snap.get("lanes", {}).items():
        lines.append("%-16s %8s %10s" % (lane, d.get("depth"), _age(d.get("oldest_age_s"))))
    c = snap.get("counters", {})
    lines.append("")
    lines.append("counters: " + "  ".join("%s=%s" % kv for kv in sorted(c.items())))
    r = snap.get("radio")
    if r:
        lines.append("radio %s (%s): commits %s, failed %s, frames acked %s, rejects %s" % (
            r.get("port"), r.get("module"), r.get("commits"), r.get("commit_failures"),
            r.get("frames_acked"), " ".join("%s=%s" % kv for kv in sorted(
                r.get("rejects", {}).items())) or "none"))
    cm = snap.get("commands")
    if cm:
        lines.append("commands: accepted %s, waiting %s, refused %s" % (
            cm.get("accepted"), cm.get("queue_depth"), " ".join(
                "%s=%s" % kv for kv in sorted(cm.get("refused", {}).items())) or "none"))
    for name, d in sorted((snap.get("modbus") or {}).items()):
        lines.append("modbus %s (node %s): %s" % (name, d.get("node"), " ".join(
            "%s=%s" % (k, v) for k, v in sorted(d.items()) if k != "node")))
    return "\n".join(lines)
