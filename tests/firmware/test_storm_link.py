"""The storm link (SPEC.md 6.5) on the node: listen before talk through the radio's
carrier sense, alarms ahead of routine frames, and the gateway's F_CONGESTED hint
lengthening intensified reports."""
from test_app import DISP, AirRadio, Gateway, config, make_node, run

from firmware.logscan import open_log
from firmware.sampler import Sampler
from protocol.nodelink import NodeLink


class BusyRadio(AirRadio):
    def __init__(self, busy_until):
        super().__init__()
        self.busy_until = busy_until
        self.t = 0.0
        self.sensed = 0

    def channel_busy(self):
        self.sensed += 1
        return self.t < self.busy_until


def test_defer_is_short_for_alarms_and_long_for_routine():
    link = NodeLink(lambda: 0.5)
    link.defer(100.0, urgent=True)
    link.defer(100.0, urgent=False)
    assert link.next_send_time(True) == 100.3
    assert link.next_send_time(False) == 102.0


def test_node_holds_its_frames_while_the_channel_is_busy(tmp_path):
    node, sim, _, _, _, _ = make_node(tmp_path)
    radio = BusyRadio(busy_until=30.0)
    node.radio = radio                                  # a radio whose driver senses the channel
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    t = 0.0
    sent_busy = 0
    while t < 120:
        radio.t = sim.t = t
        node.step(t)
        if t < 30.0:
            sent_busy += len(radio.out)
        gw.hear(radio, t)
        t += 0.25
    assert radio.sensed > 0
    assert sent_busy == 0                       # nothing went on the air while busy
    assert node.link.next_send_time(False) > 0          # deferred, not refused
    assert gw.frames                            # and the HELLO left once it was clear


def test_congested_ack_lengthens_intensified_reports():
    s = Sampler([DISP], sample_s=60, intensified_s=10, report_s=1800)
    s.set_intensified(True, 0)
    assert s.report_interval() == 60
    s.congested = True
    assert s.report_interval() == 300
    s.set_intensified(False, 0)
    assert s.report_interval() == 1800          # normal reports untouched


def test_node_follows_the_gateways_hint(tmp_path):
    node, sim, radio, _, _, _ = make_node(tmp_path, config())
    gw = Gateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, 300)
    assert node.sampler.congested is False
    orig = gw.link.ack
    gw.link.ack = lambda n, re, t, dl, flags=0: orig(n, re, t, dl, flags | 0x02)
    run(node, sim, radio, gw, 1300)
    assert node.sampler.congested is True
