"""World models (hil/world.py), the simulated clock (hil/clock.py with the gateway's
reader gateway/simclock.py) and scenario files (hil/scenario.py)."""
import pytest

from gateway import simclock
from hil import scenario as scen
from hil import world as W
from hil.clock import SimClock


def test_storm_has_the_documented_burst_and_its_total():
    h = W.storm(3600, 4 * 3600, 60.0, burst_end_s=3.5 * 3600)
    end = 3.5 * 3600
    assert h.depth(end - 1200, end) >= 53.9                     # 53.9 mm within 20 min
    assert h.depth(end - 1200, end) < 53.9 + 30                 # plus the storm's own rain
    assert h.mm(10 * 3600) == pytest.approx(60.0 + 53.9)
    assert h.mm(3600) == 0.0
    peak = max(range(12), key=lambda k: h.depth(3600 + k * 1200, 3600 + (k + 1) * 1200)
               if not 7200 + 3600 <= 3600 + k * 1200 < end else -1)
    assert 3 <= peak <= 6                                       # advanced triangular storm


def test_rain_gauge_counts_whole_tips():
    g = W.RainGauge(W.storm(0, 3600, 10.0), tip_mm=0.2)
    vals = [g.value(t) for t in range(0, 4000, 60)]
    assert all(v % 2 == 0 for v in vals)                        # 0.2 mm = 2 tenths per tip
    assert vals == sorted(vals)
    assert vals[-1] == 100


def test_creep_inverse_velocity_falls_linearly_to_zero_at_failure():
    c = W.Creep(t_f=16 * 3600, t_acc=4 * 3600, v0_mm_h=1.0, noise=0)
    assert c.velocity_mm_h(3600) == pytest.approx(1.0)
    assert c.velocity_mm_h(4 * 3600 + 1) == pytest.approx(1.0, rel=1e-3)   # continuous
    inv = [(t, 1.0 / c.velocity_mm_h(t)) for t in (6 * 3600, 10 * 3600, 14 * 3600, 15.5 * 3600)]
    slope = (inv[1][1] - inv[0][1]) / (inv[1][0] - inv[0][0])
    for t, y in inv:
        assert y == pytest.approx(inv[0][1] + slope * (t - inv[0][0]), rel=1e-6)
    assert inv[0][1] + slope * (16 * 3600 - inv[0][0]) == pytest.approx(0.0, abs=1e-9)
    # measured as displacement, it accelerates, and the wire snaps at failure
    assert c.value(15.9 * 3600) - c.value(15.8 * 3600) > c.value(6.1 * 3600) - c.value(6 * 3600)
    assert c.value(16 * 3600) == W.FaultCode(1)


def test_creep_noise_is_seeded():
    a = W.Creep(1e6, 5e5, 0.5, noise=3, seed=4)
    b = W.Creep(1e6, 5e5, 0.5, noise=3, seed=4)
    assert [a.value(t) for t in range(0, 6000, 60)] == [b.value(t) for t in range(0, 6000, 60)]
    with pytest.raises(ValueError, match="before failure"):
        W.Creep(100, 200, 1.0)


def test_hydrograph_rises_to_its_peak_and_recedes():
    h = W.Hydrograph(1500, 2800, 7200, 6 * 3600)
    assert h.value(0) == 1500
    assert h.value(7200 + 6 * 3600) == 1500 + 2800
    rise = [h.value(7200 + k * 1800) for k in range(13)]
    assert rise == sorted(rise)
    assert h.value(7200 + 30 * 3600) < 1700


def test_faults_spike_stick_drift_open_and_break_the_loop():
    s = W.Sensor(W.Steady(1000), [W.Spikes(0.5, 300, seed=1)])
    vals = {s.sample(t) for t in range(200)}
    assert vals == {700, 1000, 1300}
    ramp = W.Sensor(W.Hydrograph(0, 1000, 0, 3600), [W.Stuck(1000, 2000)])
    frozen = ramp.sample(1000)
    assert ramp.sample(1500) == frozen and ramp.sample(2000) != frozen
    d = W.Sensor(W.Steady(0), [W.Drift(10, start=3600)])
    assert d.sample(3600) == 0 and d.sample(3600 * 4) == 30
    o = W.Sensor(W.Steady(5), [W.OpenCircuit(10, 20)])
    assert o.sample(15) == W.FaultCode(1) and o.sample(25) == 5
    b = W.Sensor(W.Steady(5), [W.BrokenLoop(10, 20)])
    assert b.loop_broken(15) and not b.loop_broken(20)


def test_loop_current_maps_4_to_20_ma_and_stays_in_a_live_loop_range():
    assert W.loop_current_ua(0, 0, 10000) == 4000
    assert W.loop_current_ua(-5000, 0, 10000) == 3850       # clamped above 3.8 mA
    assert W.loop_current_ua(5000, 0, 10000) == 12000
    assert W.loop_current_ua(10000, 0, 10000) == 20000
    assert W.loop_current_ua(99999, 0, 10000) == 20450      # below the 20.5 mA over-range


def test_sim_clock_is_shared_with_the_gateway_reader(tmp_path):
    c = SimClock(tmp_path / "clock", 1_780_000_000)
    read = simclock.from_env({"STATIONGW_SIMCLOCK": str(tmp_path / "clock")})
    assert read() == 1_780_000_000
    c.set(3600.5)
    assert read() == 1_780_003_600.5
    with pytest.raises(ValueError, match="cannot go back"):
        c.set(10)
    assert read() == 1_780_003_600.5
    c.close()


def test_gateway_uses_wall_time_without_the_variable():
    import time
    assert simclock.from_env({}) is time.time


def test_every_scenario_loads():
    names = scen.names()
    for n in ("calm-day", "storm", "creep-to-failure", "flood-wave", "radio-dead-zone",
              "uplink-outage", "gateway-crash-loop", "node-power-cuts", "sensor-faults",
              "forged-frames"):
        assert n in names
        sc = scen.load(n)
        assert sc.nodes and sc.duration_s > 0


def test_a_bad_scenario_names_file_key_and_allowed_values(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('duration_h = 1\n[[nodes]]\nid = 5\nchannels = [{ id = "rain.0", source = "pump" }]\n')
    with pytest.raises(scen.ScenarioError) as e:
        scen.load(str(p))
    assert "bad.toml" in str(e.value) and "source" in str(e.value) and "loop420" in str(e.value)
    p.write_text('duration_h = 1\n[[nodes]]\nid = 5\nchannels = [{ id = "lava.0" }]\n')
    with pytest.raises(scen.ScenarioError, match="lava.0.*allowed"):
        scen.load(str(p))
    with pytest.raises(scen.ScenarioError, match="python -m hil list"):
        scen.load("no-such-scenario")


class _Adc:
    """A fixed ADC reading in uV (the rig's fake ADC does the same on the node)."""

    def __init__(self):
        self.uv = 0

    def read_uv(self):
        return self.uv


def test_draw_wire_world_to_driver_round_trip_is_exact():
    from firmware.drivers.adc_filter import AdcFilter
    from firmware.drivers.drawwire import DrawWire
    from firmware.hal import AdcChannel
    adc = _Adc()
    c = W.DRAWWIRE_CAL
    drv = DrawWire(AdcFilter(AdcChannel(adc, 100000, 3100000, uv_method=True), samples=8),
                   ((c[0], c[1]), (c[2], c[3])))
    for d in (0, 1, 9999, 10000, 12345, 25017, 49999):
        adc.uv = W.wiper_uv(d)
        assert drv.read() == (d, 0)
    adc.uv = W.wiper_uv(W.FaultCode(1))           # the wire snapped
    assert drv.read() == (None, 1)


def test_loop_current_world_to_driver_detects_a_cut_loop():
    from firmware.drivers.adc_filter import AdcFilter
    from firmware.drivers.loop420 import Loop420
    from firmware.hal import AdcChannel
    adc = _Adc()
    drv = Loop420(AdcFilter(AdcChannel(adc, 100000, 3100000, uv_method=True), samples=8),
                  100, 0, 10000)
    adc.uv = W.loop_current_ua(2500, 0, 10000) * 100
    assert drv.read() == (2500, 0)
    adc.uv = 0                                    # BrokenLoop: 0 mA
    assert drv.read() == (None, 8)


def test_bridge_clock_stamps_on_the_shared_clock_and_polls_on_wall_time(tmp_path):
    import time
    c = SimClock(tmp_path / "clock", 1_000_000)
    c.set(7200)
    b = simclock.BridgeClock(simclock.from_env({"STATIONGW_SIMCLOCK": str(tmp_path / "clock")}))
    assert b.time() == 1_007_200
    assert abs(b.monotonic() - time.monotonic()) < 1
    c.close()
