"""MQTT uplink: store -> CBOR batches and alarms -> broker, with paho-mqtt 2.x.

Threads:
  - the network thread (ours, running paho's `loop()`): delivers PUBACKs and, after a
    lost connection, reconnects with exponential back-off and jitter (`Backoff`), and
    in between probes the broker's TCP port every `probe_s`: the moment the broker
    answers again it reconnects, so alarms held during an outage go out within a
    probe interval of its return, not at the end of a long back-off (issue 12, defect
    9). The back-off still paces full MQTT/TLS connects, and a broker that refuses
    the CONNECT (credentials, ACL) is not probed into a reconnect storm;
  - the committing thread (radio ingest / Modbus bridge): `Store.commit` calls our
    listener, which publishes new alarms at once (the alarm fast lane);
  - the uplink worker: turns acks into store deletions, takes batches from the lanes
    while the in-flight window has room, checks the quota.

Delivery: QoS 1. A batch is taken from the store (seq persisted with its payload)
before it is published, and deleted from the store only when its PUBACK arrives, so a
crash re-sends it after restart with the same seq and bytes. While connected, paho
itself re-sends what is in flight after a reconnect. A v5 PUBACK with a failure reason
code is not an ack: the message is published again later.

Bytes (issue 13): on MQTT 5 a data batch is published under topic alias 1 when the
broker's CONNACK allows aliases (Mosquitto's max_topic_alias defaults to 10): the full
topic goes with the first data batch of each connection, later ones carry an empty
topic. Aliases live only as long as a connection, and paho re-sends what was in flight
as it was stored, so at every CONNACK the stored data batches get their full topic back
(and lose the alias if the broker no longer allows one) before paho re-sends them. Data
batches carry no content type (SPEC §9.1: the /data topic says CBOR); alarms, status and
command results keep it.

Alarms jump the queue: they are published by the committing thread the moment they
are stored, and the batch window is kept below the broker's receive maximum (minus
ALARM_RESERVE), so an alarm never waits behind queued batches inside paho either.
"""
import logging
import queue
import random
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import batcher
from gateway.alarmlane import AlarmLane
from gateway.logevent import event_line, log_event

log = logging.getLogger("stationgw.uplink")

SW_VERSION = "stationgw 0.1.0"
CONTENT_TYPE = "application/cbor"
DATA_ALIAS = 1             # MQTT 5 topic alias of <prefix>/S/G/data
ALARM_RESERVE = 4          # receive-maximum slots kept free for alarms and status
RETRY_REFUSED_S = 5.0      # a publish the broker refused (v5 reason >= 0x80) is retried
IDLE_WAKE_S = 1.0
NET_POLL_S = 0.1           # the network thread's select() timeout while connected
PROBE_RETRY_S = 1.0        # a probe may trigger a connect at most this often
FLAP_S = 5.0               # a connection must hold this long to reset the back-off
PRUNE_MARKS_S = 3600.0     # how often alarm marks no reading can be near are forgotten


class UplinkSettings:
    """What the uplink needs; `from_config` adapts gateway.config.SiteConfig."""

    def __init__(self, site, gateway_id, host="127.0.0.1", port=1883, protocol="v5",
                 client_id=None, topic_prefix="stations", keepalive_s=30, inflight=16,
                 username="", password_file="", tls_ca="", tls_cert="", tls_key="",
                 max_readings=5000, max_bytes=65536, max_age_s=5.0, backoff_min_s=0.5,
                 backoff_max_s=30.0, quota_check_s=5.0, retry_refused_s=RETRY_REFUSED_S,
                 sw_version=SW_VERSION, probe_s=0.25, batch_schema=batcher.BATCH_SCHEMA):
        if protocol not in ("v5", "v311"):
            raise ValueError("mqtt protocol %r: allowed 'v5' or 'v311'" % (protocol,))
        self.site = site
        self.gateway_id = gateway_id
        self.host = host
        self.port = port
        self.protocol = protocol
        self.client_id = client_id or "stationgw-%s-%s" % (site, gateway_id)
        self.topic_prefix = topic_prefix
        self.keepalive_s = keepalive_s
        self.inflight = inflight
        self.username = username
        self.password_file = password_file
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.probe_s = probe_s
        self.quota_check_s = quota_check_s
        self.retry_refused_s = retry_refused_s
        self.sw_version = sw_version
        self.batch_schema = batch_schema

    @classmethod
    def from_config(cls, cfg, **overrides):
        m, b = cfg.mqtt, cfg.batch
        kw = dict(site=cfg.site.id, gateway_id=cfg.site.gateway_id, host=m.host, port=m.port,
                  protocol=m.protocol, client_id=m.client_id, topic_prefix=m.topic_prefix,
                  keepalive_s=m.keepalive_s, inflight=m.inflight, username=m.username,
                  password_file=m.password_file, tls_ca=m.tls_ca, tls_cert=m.tls_cert,
                  tls_key=m.tls_key, max_readings=b.max_readings, max_bytes=b.max_bytes,
                  max_age_s=b.max_age_s, batch_schema=b.schema)
        rc = cfg.security.reconnect if getattr(cfg, "security", None) is not None else None
        if rc is not None:
            kw.update(backoff_min_s=rc.min_s, backoff_max_s=rc.max_s, probe_s=rc.probe_s)
        kw.update(overrides)
        return cls(**kw)


class Topics:
    def __init__(self, prefix, site, gw):
        base = "%s/%s/%s" % (prefix, site, gw)
        self.data = base + "/data"
        self.alarm = base + "/alarm"
        self.status = base + "/status"
        self.cmd = base + "/cmd/"
        self.cmd_result = base + "/cmd-result"


class Backoff:
    """Exponential back-off with jitter: the n-th delay is drawn from
    [cap/2, cap] with cap = min(max_s, min_s * 2**n), so a site full of gateways does
    not reconnect in lock-step after a broker restart."""

    def __init__(self, min_s, max_s, rand=random.random):
        self.min_s = min_s
        self.max_s = max_s
        self._rand = rand
        self._n = 0

    def next(self):
        cap = min(self.max_s, self.min_s * (2 ** self._n))
        if cap < self.max_s:
            self._n += 1
        return cap * (0.5 + 0.5 * self._rand())

    def reset(self):
        self._n = 0


class Uplink:
    def __init__(self, store, settings, clock=time.time, monotonic=time.monotonic,
                 rand=random.random, on_command=None):
        self.store = store
        self.s = settings
        self.topics = Topics(settings.topic_prefix, settings.site, settings.gateway_id)
        self._clock = clock
        self._mono = monotonic
        self._policy = batcher.LanePolicy(settings.max_readings, settings.max_age_s)
        self.alarms = AlarmLane(
            lambda a: batcher.encode_alarm(settings.site, settings.gateway_id, a), monotonic)
        self._backoff = Backoff(settings.backoff_min_s, settings.backoff_max_s, rand)
        self._on_command = on_command
        self._acks = queue.SimpleQueue()     # (mid, refused, monotonic) from paho's thread
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()        # _mids and counters; may be held across publish()
        self._mids = {}                      # mid -> (kind, key, payload, n_readings, lane)
        self._retry = []                     # (due, kind, key, payload, n_readings, lane)
        self._inflight = 0                   # batches handed to paho, not yet acked
        self._window = settings.inflight
        self._connected = False
        self._state_saved = None
        self._need_birth = False
        self._thread = None
        self._net_thread = None
        self._net_stop = threading.Event()
        self._refused = False                # the broker refused our CONNECT: no probing
        self.reconnects_by = {}              # "probe" | "timer" -> count
        self._next_quota = 0.0
        self._next_prune = 0.0
        self.batches_acked = 0
        self.readings_acked = 0
        self.acked_by_lane = {}
        self.connects = 0
        self.receive_maximum = None
        self.last_puback = None
        self._props = None
        if settings.protocol == "v5":
            self._props = Properties(PacketTypes.PUBLISH)
            self._props.ContentType = CONTENT_TYPE
        self._counters = batcher.CounterPolicy()
        # Topic alias state: what the broker allows on this connection and whether the
        # alias is set on it; _alias_lock orders a publish against paho's CONNACK callback.
        self._alias_lock = threading.Lock()
        self._alias_max = 0
        self._alias_set = False
        self.data_topic_bytes = 0             # topic bytes sent with data batches (bench, tests)
        self._client = self._make_client()

    # ------------------------------------------------------------------ setup
    def _make_client(self):
        s = self.s
        v5 = s.protocol == "v5"
        kw = {"client_id": s.client_id, "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kw["clean_session"] = True
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
        c.suppress_exceptions = True      # a callback bug is logged, never kills paho's thread
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(s.inflight + ALARM_RESERVE)
        if s.tls_ca:
            c.tls_set(ca_certs=s.tls_ca, certfile=s.tls_cert or None, keyfile=s.tls_key or None)
        if s.username:
            c.username_pw_set(s.username, self._read_password())
        death = batcher.encode_status(s.site, s.gateway_id, batcher.STATE_OFFLINE, self._clock(),
                                      s.sw_version)
        wprops = None
        if v5:
            wprops = Properties(PacketTypes.WILLMESSAGE)
            wprops.ContentType = CONTENT_TYPE
        c.will_set(self.topics.status, death, qos=1, retain=True, properties=wprops)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _read_password(self):
        if not self.s.password_file:
            return None
        try:
            with open(self.s.password_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            # The path is fine to show; the content never is.
            raise ValueError("mqtt.password_file %s cannot be read (%s): check the path and "
                             "that the service user may read it" % (self.s.password_file,
                                                                   e.strerror)) from None

    def start(self):
        self.store.add_listener(self._on_commit)
        # Whatever a previous run left unacknowledged goes first: alarms, then batches
        # in seq order, with the same bytes. paho holds them until the connection is up.
        for aid, a in self.store.pending_alarms():
            self._publish_alarm(aid, a)
        for b in self.store.unacked_batches():
            self._publish("b", b.seq, b.payload, b.n_readings, b.lane)
        kw = {"clean_start": True} if self.s.protocol == "v5" else {}
        self._client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive_s, **kw)
        self._net_thread = threading.Thread(target=self._net_run, name="mqtt-net", daemon=True)
        # paho treats a client with a network thread as threaded: publish() from other
        # threads then wakes that thread instead of writing the socket itself
        self._client._thread = self._net_thread
        self._net_thread.start()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Clean shutdown: stop taking batches, wait (bounded) for PUBACKs of what is in
        flight, publish the offline status, disconnect. Unacked data stays in the store."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self.store.remove_listener(self._on_commit)
        deadline = self._mono() + timeout
        while self._connected and self._mono() < deadline:
            self._process_acks()
            with self._lock:
                if not self._mids:
                    break
            time.sleep(0.01)
        self._process_acks()
        if self._connected:
            s = self.s
            info = self._client.publish(
                self.topics.status,
                batcher.encode_status(s.site, s.gateway_id, batcher.STATE_OFFLINE, self._clock(),
                                      s.sw_version, self.store.last_seen()),
                qos=1, retain=True, properties=self._props)
            try:
                info.wait_for_publish(max(0.1, deadline - self._mono()))
            except (RuntimeError, ValueError):
                pass
        # the network thread sends the DISCONNECT (so the broker drops our will) and,
        # seeing the connection closed while stopping, ends
        self._client.disconnect()
        if self._net_thread is not None:
            self._net_thread.join(2.0)
            self._net_stop.set()
            self._net_thread.join(2.0)
        self._client._thread = None

    # ------------------------------------------------------------------ paho callbacks
    # They run in paho's thread, some with paho's locks held: never take self._lock here.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log_event(log, "broker_refused", logging.WARNING, host=self.s.host, port=self.s.port,
                      reason=str(reason_code),
                      next="check [mqtt] username, password_file and TLS against the broker's "
                           "config; the broker refused the connection")
            self._refused = True
            return
        # paho cannot change its own in-flight limit on an open connection, so honour the
        # broker's receive maximum by shrinking the batch window instead.
        recv_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        self._reset_alias(getattr(properties, "TopicAliasMaximum", 0) if properties else 0)
        self.receive_maximum = recv_max
        if recv_max:
            self._window = max(1, min(self.s.inflight, recv_max - ALARM_RESERVE))
        self._connected = True
        self._need_birth = True
        self.connects += 1
        if self._on_command:
            client.subscribe(self.topics.cmd + "#", qos=1)
        log_event(log, "broker_connected", host=self.s.host, port=self.s.port,
                  protocol=self.s.protocol, window=self._window)
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        was = self._connected
        self._connected = False
        self._alias_set = False
        if self._stopping.is_set():
            return
        if was:
            log_event(log, "broker_lost", logging.WARNING, host=self.s.host, port=self.s.port,
                      reason=str(reason_code))

    def _reset_alias(self, alias_max):
        """At CONNACK, before paho re-sends what was in flight: a new connection knows
        no alias, so every stored data batch gets its full topic back (and no alias
        property if the broker allows none). paho 2.2 (pinned) keeps those messages in
        _out_messages under _out_message_mutex and calls on_connect before re-sending;
        tests/gateway/test_uplink_alias.py fails if that changes."""
        data = self.topics.data.encode()
        with self._alias_lock:
            self._alias_max = alias_max or 0
            self._alias_set = False
            c = self._client
            with c._out_message_mutex:
                for m in c._out_messages.values():
                    if m.properties is None or getattr(m.properties, "TopicAlias", None) != DATA_ALIAS:
                        continue
                    m._topic = data
                    if self._alias_max < DATA_ALIAS:
                        m.properties = None
                    self.data_topic_bytes += len(data)

    # ------------------------------------------------------------------ network thread
    def _probe(self):
        """Does anything accept TCP on host:port? (No MQTT, no TLS: a SYN and a close.)"""
        try:
            with socket.create_connection((self.s.host, self.s.port),
                                          timeout=max(0.2, min(2.0, 4 * self.s.probe_s))):
                return True
        except OSError:
            return False

    def _net_run(self):
        c, s = self._client, self.s
        up = False
        next_try = 0.0                 # the first connect: at once
        last_try = None
        while not self._net_stop.is_set() and not c._thread_terminate:
            if up:
                rc = c.loop(timeout=NET_POLL_S)
                if rc == mqtt.MQTT_ERR_SUCCESS:
                    if self._connected and self._mono() - last_try > FLAP_S:
                        # only a connection that held resets the back-off: one that a
                        # broker drops at once (a client with our id) keeps growing it
                        self._backoff.reset()
                    continue
                up = False
                if self._net_stop.is_set() or self._stopping.is_set():
                    break
                delay = self._backoff.next()
                next_try = self._mono() + delay
                log_event(log, "broker_backoff", host=s.host, port=s.port,
                          next_connect_s=round(delay, 1), probe_s=s.probe_s)
                continue
            if self._stopping.is_set():
                break
            now = self._mono()
            how = None
            if now >= next_try:
                how = "timer"
            elif s.probe_s > 0 and not self._refused and \
                    (last_try is None or now - last_try >= PROBE_RETRY_S) and self._probe():
                how = "probe"
                log.info("event=broker_answers host=%s port=%d: reconnecting now", s.host,
                         s.port)
            if how is None:
                self._net_stop.wait(s.probe_s if s.probe_s > 0 else NET_POLL_S)
                continue
            last_try = self._mono()
            self._refused = False
            try:
                c.reconnect()
            except Exception as e:
                delay = self._backoff.next()
                next_try = self._mono() + delay
                log_event(log, "broker_unreachable", host=s.host, port=s.port, error=str(e),
                          next_connect_s=round(delay, 1),
                          next="is the broker running and reachable at this host:port "
                               "([mqtt] host, port)?")
                continue
            up = True
            self.reconnects_by[how] = self.reconnects_by.get(how, 0) + 1

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.put((mid, bool(reason_code is not None and reason_code.is_failure),
                        self._mono()))
        self._wake.set()

    def _on_message(self, client, userdata, msg):
        verb = msg.topic[len(self.topics.cmd):]
        try:
            self._on_command(verb, msg.payload)
        except Exception:  # a bad command must never stop the uplink
            log.exception("%s", event_line("command_handler_failed", verb=verb))

    def publish_cmd_result(self, payload):
        self._publish("r", None, payload, 0)

    # ------------------------------------------------------------------ publishing
    def _publish(self, kind, key, payload, n_readings, lane=None):
        topic = {"a": self.topics.alarm, "b": self.topics.data, "s": self.topics.status,
                 "r": self.topics.cmd_result}[kind]
        props = self._props
        with self._lock:
            if kind == "b" and props is not None:
                with self._alias_lock:
                    props = None
                    if self._alias_max >= DATA_ALIAS:
                        props = Properties(PacketTypes.PUBLISH)
                        props.TopicAlias = DATA_ALIAS
                        if self._alias_set:
                            topic = ""
                        self._alias_set = True
                    self.data_topic_bytes += len(topic)
                    info = self._client.publish(topic, payload, qos=1, properties=props)
            else:
                info = self._client.publish(topic, payload, qos=1, retain=(kind == "s"),
                                            properties=props)
            self._mids[info.mid] = (kind, key, payload, n_readings, lane)
            if kind == "b":
                self._inflight += 1

    def _publish_alarm(self, alarm_id, alarm):
        if self.alarms.claim(alarm_id):
            self._publish("a", alarm_id, self.alarms.payload(alarm), 0)

    def _on_commit(self, new_alarms, n_live, n_backlog, n_status):
        for aid, a in new_alarms:
            self._publish_alarm(aid, a)
        if n_live or n_backlog or n_status:
            self._wake.set()

    def _process_acks(self):
        alarms, batches, refused = [], [], []
        n_readings = 0
        by_lane = {}
        alarm_times = []
        while True:
            try:
                mid, failed, at = self._acks.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                entry = self._mids.pop(mid, None)
                if entry and entry[0] == "b":
                    self._inflight -= 1
            if entry is None:
                continue
            kind, key, payload, n, lane = entry
            if failed:
                refused.append((self._mono() + self.s.retry_refused_s, kind, key, payload, n,
                                lane))
            elif kind == "a":
                alarms.append(key)
                alarm_times.append(at)
            elif kind == "b":
                batches.append(key)
                n_readings += n
                by_lane[lane] = by_lane.get(lane, 0) + n
        if alarms:
            self.store.ack_alarms(alarms)
            self.alarms.acked_ids(alarms, alarm_times)
        if batches:
            self.store.ack_batches(batches)
            self.batches_acked += len(batches)
            self.readings_acked += n_readings
            for lane, n in by_lane.items():
                self.acked_by_lane[lane] = self.acked_by_lane.get(lane, 0) + n
        if alarms or batches:
            self.last_puback = self._clock()
        if refused:
            log_event(log, "publish_refused", logging.WARNING, count=len(refused),
                      retry_s=self.s.retry_refused_s)
            self._retry.extend(refused)

    def _run(self):
        # Everything that matters sets _wake; the timeout only paces the quota check and
        # retries, so an idle gateway wakes once a second.
        timeout = IDLE_WAKE_S
        while not self._stopping.is_set():
            self._wake.wait(timeout)
            self._wake.clear()
            timeout = IDLE_WAKE_S
            try:
                self._process_acks()
                if self._connected != self._state_saved:
                    # for `stationgw status` in another process; written here, never from
                    # paho's callbacks (they must not wait for the store's lock)
                    self._state_saved = self._connected
                    self.store.set_meta("broker_state",
                                        "connected" if self._connected else "disconnected")
                if not self._connected:
                    continue
                now = self._mono()
                if self._need_birth:
                    self._need_birth = False
                    s = self.s
                    self._publish("s", None, batcher.encode_status(
                        s.site, s.gateway_id, batcher.STATE_ONLINE, self._clock(), s.sw_version,
                        self.store.last_seen()), 0)
                if self._retry:
                    due = [r for r in self._retry if r[0] <= now]
                    self._retry = [r for r in self._retry if r[0] > now]
                    for _, kind, key, payload, n, lane in due:
                        self._publish(kind, key, payload, n, lane)
                if now >= self._next_prune:
                    self._next_prune = now + PRUNE_MARKS_S
                    self.store.prune_alarm_marks()
                if now >= self._next_quota:
                    self._next_quota = now + self.s.quota_check_s
                    thinned, dropped = self.store.enforce_quota()
                    if thinned or dropped:
                        log_event(log, "store_over_quota", logging.WARNING, thinned=thinned,
                                  dropped=dropped)
                wake_at = self._fill_window()
                if wake_at is not None:
                    timeout = max(0.001, min(timeout, wake_at - self._mono()))
            except Exception:
                # Never let the uplink die: log, back off a little, carry on.
                log.exception("%s", event_line("uplink_worker_error"))
                timeout = 1.0

    def _fill_window(self):
        encode = self._encoder()
        while not self._stopping.is_set() and self._connected:
            room = self._window - self._inflight
            live_n, live_since, backlog = self.store.lane_hint()
            lane, wake_at = self._policy.choose(self._mono(), live_n, live_since, backlog, room)
            if lane is None:
                return wake_at
            b = self.store.take_batch(lane, self.s.max_readings, encode, self.s.max_bytes)
            if b is not None:
                self._publish("b", b.seq, b.payload, b.n_readings, b.lane)
        return None

    def _encoder(self):
        if self.s.batch_schema == 1:        # for consumers not yet on schema 2 (SPEC §10)
            site, gw = self.s.site, self.s.gateway_id
            return lambda seq, created, rows, statuses, counters: batcher.encode_batch_v1(
                site, gw, seq, created, rows, statuses, counters)
        pick = self._counters.pick

        def encode(seq, created, rows, statuses, counters):
            return batcher.encode_batch(seq, created, rows, statuses,
                                        pick(seq, created, counters))
        return encode

    # ------------------------------------------------------------------ status
    @property
    def connected(self):
        return self._connected

    def stats(self):
        with self._lock:
            pending = len(self._mids)
            inflight = self._inflight
        return {"connected": self._connected, "broker": "%s:%d" % (self.s.host, self.s.port),
                "protocol": self.s.protocol, "connects": self.connects, "window": self._window,
                "receive_maximum": self.receive_maximum,
                "inflight_batches": inflight, "unacked_messages": pending,
                "batches_acked": self.batches_acked, "readings_acked": self.readings_acked,
                "readings_acked_by_lane": dict(self.acked_by_lane),
                "last_puback": self.last_puback, "alarms": self.alarms.stats()}
