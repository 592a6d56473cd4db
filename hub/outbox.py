"""Delivery of CAP messages from the durable outbox (the `outbox` table, written in the
same transaction as the alarm that caused them) to the sinks, at least once each:

  spool      <dir>/<identifier>.xml, written atomically (rename); re-writing is harmless
  http       POST application/cap+xml; 2xx is delivered, anything else retried with
             backoff (1 s doubling to 5 min), across restarts
  mqtt       QoS 1 publish to <topic>/<identifier>, delivered on PUBACK
  broadcast  the village broadcast controller of the station's zone, on red: a Modbus
             coil set (pymodbus) or an HTTP POST, whichever the config names

A row is marked sent only after its sink confirmed; a crash in between sends it again
with the same identifier, which receivers use to drop the copy."""
import logging
import os
import threading
import time
import urllib.error
import urllib.request

from hub.cap import CONTENT_TYPE

log = logging.getLogger("stationhub")


class SinkError(Exception):
    pass


class SpoolSink:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)

    def send(self, ident, body, row):
        path = os.path.join(self.dir, ident + ".xml")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class HttpSink:
    def __init__(self, url, timeout_s=5.0, headers=None):
        self.url, self.timeout_s, self.headers = url, timeout_s, dict(headers or {})

    def send(self, ident, body, row):
        req = urllib.request.Request(self.url, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": CONTENT_TYPE,
                                              "X-CAP-Identifier": ident, **self.headers})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                if not 200 <= r.status < 300:
                    raise SinkError("HTTP %d" % r.status)
        except urllib.error.HTTPError as e:
            raise SinkError("HTTP %d from %s" % (e.code, self.url)) from None
        except (urllib.error.URLError, OSError) as e:
            raise SinkError("%s: %s" % (self.url, getattr(e, "reason", e))) from None


class MqttSink:
    def __init__(self, client, topic):
        self.client, self.topic = client, topic.rstrip("/")

    def send(self, ident, body, row):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        p = Properties(PacketTypes.PUBLISH)
        p.ContentType = CONTENT_TYPE
        info = self.client.publish("%s/%s" % (self.topic, ident), body.encode("utf-8"), qos=1,
                                   properties=p)
        info.wait_for_publish(5)
        if not info.is_published():
            raise SinkError("no PUBACK from the broker within 5 s")


class BroadcastHook:
    """Fires the zone's village broadcast: zones {zone: coil address} on a Modbus TCP
    controller, or an HTTP POST {zone, level, identifier} to `url`."""

    def __init__(self, zones, modbus_host=None, modbus_port=502, device_id=1, url=None):
        self.zones, self.url = dict(zones), url
        self.modbus = (modbus_host, modbus_port, device_id) if modbus_host else None

    def send(self, ident, zone, row):
        if zone not in self.zones and self.modbus:
            raise SinkError("zone %r has no broadcast coil in the config ([broadcast.zones])"
                            % zone)
        if self.modbus:
            from pymodbus.client import ModbusTcpClient
            host, port, dev = self.modbus
            c = ModbusTcpClient(host, port=port, timeout=2, retries=1)
            try:
                if not c.connect():
                    raise SinkError("broadcast controller %s:%d unreachable" % (host, port))
                r = c.write_coil(self.zones[zone], True, device_id=dev)
                if r.isError():
                    raise SinkError("broadcast controller refused coil %d: %s" % (
                        self.zones[zone], r))
            finally:
                c.close()
        if self.url:
            import json
            req = urllib.request.Request(self.url, method="POST", data=json.dumps(
                {"zone": zone, "level": "red", "identifier": ident}).encode(),
                headers={"Content-Type": "application/json", "X-CAP-Identifier": ident})
            try:
                with urllib.request.urlopen(req, timeout=5):
                    pass
            except (urllib.error.URLError, OSError) as e:
                raise SinkError("broadcast %s: %s" % (self.url, getattr(e, "reason", e))) from None


def backoff_ms(attempts, base_ms=1000):
    return min(300_000, base_ms * (2 ** min(attempts, 9)))


class Dispatcher:
    """Delivers due outbox rows; one thread. `wake` (an Event) is set when new rows
    were committed, so a warning leaves without waiting for the poll."""

    def __init__(self, store, sinks, wake, poll_s=1.0, on_sent=None, retry_base_ms=1000,
                 priority=None):
        self.store, self.sinks, self.wake = store, dict(sinks), wake
        self.priority = priority        # hub.ingest.PriorityGate: bulk writes wait for us
        self.retry_base_ms = retry_base_ms
        self.poll_s = poll_s
        self.on_sent = on_sent
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cap-dispatch", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run_once(self):
        """Deliver what is due; returns how many deliveries were tried. Per station and
        sink, messages go strictly in order: one waiting for a retry holds back the later
        ones (an Update never overtakes its Alert)."""
        now = int(time.time() * 1000)
        unsent = self.store.unsent_outbox()     # a plain read: never waits for a writer
        due, first = [], set()
        for row in unsent:
            key = (row[1], row[5], row[6])
            if key in first:
                continue
            first.add(key)
            if row[8] <= now:
                due.append(row[:8])
        if not due:
            return 0
        if self.priority is None:
            return self._deliver(due)
        with self.priority:
            return self._deliver(due)

    def _deliver(self, due):
        for ident, sink_name, msgtype, level, body, site, node, attempts in due:
            sink = self.sinks.get(sink_name)
            try:
                if sink is None:
                    raise SinkError("sink %r is not configured" % sink_name)
                sink.send(ident, body, (site, node, msgtype, level))
            except Exception as e:
                nxt = int(time.time() * 1000) + backoff_ms(attempts, self.retry_base_ms)
                with self.store.tx():
                    self.store.mark_retry(ident, sink_name, nxt, str(e))
                log.warning("event=cap_retry id=%s sink=%s attempt=%d error=%s", ident,
                            sink_name, attempts + 1, e)
                continue
            sent = int(time.time() * 1000)
            with self.store.tx():
                self.store.mark_sent(ident, sink_name, sent)
            log.info("event=cap_sent id=%s sink=%s type=%s level=%d", ident, sink_name,
                     msgtype, level)
            if self.on_sent:
                self.on_sent(ident, sink_name, sent)
        return len(due)

    def _run(self):
        while not self.stop_ev.is_set():
            self.wake.clear()
            try:
                self.run_once()
            except Exception as e:
                log.error("event=dispatch_failed error=%r", e)
            self.wake.wait(self.poll_s)

    def stop(self):
        self.stop_ev.set()
        self.wake.set()
        self.thread.join(10)
