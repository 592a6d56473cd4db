"""The alarm fast lane (DESIGN.md I3): an alarm is published the moment the store has
committed it, from the committing thread, never behind a batch timer or a backlog.

The lane keeps the (alarm id -> commit time) of every alarm it has handed to MQTT and
measures how long each waited from commit to PUBACK, so `stationgw status` and the
benchmark can show it. It does no I/O itself: `publish(payload) -> mid` is the uplink's.
"""
import collections
import threading


class AlarmLane:
    def __init__(self, encode, monotonic, keep=2048):
        self._encode = encode                  # Alarm -> bytes
        self._mono = monotonic
        self._lock = threading.Lock()
        self._sent = {}                        # alarm id -> monotonic time handed to MQTT
        self.waits_ms = collections.deque(maxlen=keep)
        self.published = 0
        self.acked = 0

    def claim(self, alarm_id):
        """True the first time an alarm id is seen: the caller publishes it. Guards the
        start-up resend against the listener publishing the same alarm."""
        with self._lock:
            if alarm_id in self._sent:
                return False
            self._sent[alarm_id] = self._mono()
            self.published += 1
            return True

    def payload(self, alarm):
        return self._encode(alarm)

    def release(self, alarm_id):
        """The broker did not take it (will be retried): let a later claim publish it."""
        with self._lock:
            self._sent.pop(alarm_id, None)
            self.published -= 1

    def acked_ids(self, alarm_ids, puback_times=None):
        """The broker acknowledged these alarms (puback_times: monotonic time each PUBACK
        arrived; now if not given)."""
        now = self._mono()
        times = puback_times or [now] * len(alarm_ids)
        with self._lock:
            for a, at in zip(alarm_ids, times, strict=True):
                t = self._sent.pop(a, None)
                if t is not None:
                    self.waits_ms.append((at - t) * 1000.0)
                    self.acked += 1

    def stats(self):
        with self._lock:
            waits = sorted(self.waits_ms)
            pending = len(self._sent)
        return {"published": self.published, "acked": self.acked, "in_flight": pending,
                "wait_ms_p50": _pct(waits, 0.5), "wait_ms_p99": _pct(waits, 0.99),
                "wait_ms_max": waits[-1] if waits else None}


def _pct(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[i], 3)
