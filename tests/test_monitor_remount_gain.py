"""A remount that changes a sensor's gain (an accelerometer's coupling) against one that
moves its level (a probe moved on a housing). A step says only how far the level moved at
the moment of the remount; the monitor corrects it as an offset, then watches: when the
sensor's residual against the others grows in proportion to how far its own level has
moved since, as a gain change of that step predicts, the correction becomes that gain
(RECAL_GAIN) and the load changes that followed are not a fault. Hand-made streams through
the host build of the device C: three sensors whose levels all follow one load
(proportionally, like vibration, current and flow do), a model that reconstructs each from
the mean of the other two."""

from __future__ import annotations

import numpy as np
import pytest

from aiot import monitor as mon
from test_monitor_residual import from_the_others
from test_monitor_trust import armed, run as run_monitor

PERIOD = 1000
W = 8
COMMISSION, CALIBRATION = 160, 32
LEVELS = (50.0, 20.0, 35.0)
SWING = 0.2     # the load swings +-20 % around 1 ...
CYCLE = 160     # ... every 160 samples (20 windows), through commissioning and after
OWN = 0.005     # each sensor's own noise, x its level


def learned(n_windows: int) -> int:
    return COMMISSION + CALIBRATION * W + n_windows * W


def load(n: int) -> np.ndarray:
    return 1.0 + SWING * np.sin(2.0 * np.pi * np.arange(n) / CYCLE)


def sensors(n: int, seed: int = 5) -> np.ndarray:
    """Three sensors proportional to the load: in noise units they all move alike."""
    rng = np.random.default_rng(seed)
    u = load(n)
    return np.stack([lvl * u + rng.normal(0.0, OWN * lvl, n) for lvl in LEVELS], axis=1).astype(np.float32)


def config(**knobs) -> mon.Config:
    base = dict(commission_samples=COMMISSION, calibration_windows=CALIBRATION, level_windows=1, residual_score=1,
                spread_score=0, score_average=0, recover_ratio=0.0, max_drift_rate=0.0, clear_band=3,
                clear_margin=1.5, alert_margin=3.0)
    base.update(knobs)
    return mon.default_config(3, W, PERIOD, **base)


def run(x, **knobs):
    return run_monitor(config(**knobs), x, from_the_others)


def of(events, kind):
    return [e for e in events if e.type == kind]


def remount_row(at_window: int = 12) -> int:
    """The first load peak at least `at_window` windows after arming (the sensor's level there
    is the farthest from the levels it passes through later)."""
    a = learned(at_window)
    return a + (CYCLE // 4 - a) % CYCLE


def remounted(gain: float = 1.0, offset: float = 0.0, n_windows: int = 140):
    """Sensor 0 remounted at :func:`remount_row`: its readings x gain + offset from there on."""
    n = learned(n_windows)
    a = remount_row()
    x = sensors(n)
    x[a:, 0] = x[a:, 0] * gain + offset
    return a, x


def test_the_stream_without_a_remount_is_quiet():
    _, x = remounted()
    _, out, ev = run(x)
    assert not of(ev, "ALERT_RAISED") and not of(ev, "RECAL_STARTED")
    assert "ANOMALY" not in [mon.STATES[s] for s in armed(out)["state"]]


@pytest.mark.parametrize("gain", [1.2, 0.8])
def test_a_gain_remount_becomes_a_gain_correction_and_the_load_swing_after_it_is_no_alert(gain):
    a, x = remounted(gain=gain)
    m, out, ev = run(x)
    assert of(ev, "RECAL_DONE") and of(ev, "RECAL_DONE")[0].channel == 0
    up = of(ev, "ALERT_RAISED")
    assert not up, f"the load swing after a gain remount raised an alert: {up}"
    g = of(ev, "RECAL_GAIN")
    assert len(g) == 1 and g[0].channel == 0 and g[0].value == pytest.approx(gain, rel=0.05)
    assert g[0].timestamp_ms > of(ev, "RECAL_DONE")[0].timestamp_ms
    # the offset correction is undone: the level the gain leaves is the commissioned one
    c0 = m.channel(0)
    assert abs(c0.baseline - c0.baseline0) < 0.5 * c0.noise


def test_an_offset_remount_stays_an_offset():
    # the same level step at the remount as a x1.2 gain, but an offset: the load swing after
    # it leaves no residual, so nothing argues for a gain
    step = 0.2 * LEVELS[0] * load(remount_row() + 1)[-1]
    _, x = remounted(offset=step)
    m, out, ev = run(x)
    assert of(ev, "RECAL_DONE") and not of(ev, "RECAL_GAIN") and not of(ev, "ALERT_RAISED")
    c0 = m.channel(0)
    assert (c0.baseline - c0.baseline0) == pytest.approx(step, rel=0.15)


@pytest.mark.parametrize("after", [3, 10, 30])
def test_a_fault_after_a_gain_remount_still_alerts_and_is_never_taken_for_a_gain(after):
    # sensor 0 remounted with a gain, then, `after` windows later (while it still settles,
    # about when the watch decides, after), it climbs on its own to 3 x the step a gain would
    # explain: a fault. It alerts, names sensor 0, stays raised, and no gain comes after it.
    a, x = remounted(gain=1.2)
    f = a + after * W
    ramp = np.clip((np.arange(len(x)) - f) / (4.0 * W), 0.0, 1.0) * 0.6 * LEVELS[0]
    x[:, 0] += ramp.astype(np.float32)
    _, out, ev = run(x)
    assert not [e for e in of(ev, "RECAL_GAIN") if e.timestamp_ms >= f * PERIOD]
    up = of(ev, "ALERT_RAISED")
    assert up and f * PERIOD <= up[0].timestamp_ms <= (f + 10 * W) * PERIOD and 0 in up[0].channels
    assert mon.STATES[armed(out)["state"][-1]] == "ANOMALY"


@pytest.mark.parametrize("garbage", [1e38, -3e38, np.finfo(np.float32).max])
def test_garbage_while_the_watch_runs_is_never_a_gain_and_every_output_stays_finite(garbage):
    # a gain remount, then one window of sensor 0 answering garbage while the watch runs:
    # the watch must not take it for evidence (no gain from it, no overflow into its counters)
    a, x = remounted(gain=1.2)
    g = a + 6 * W
    x[g:g + W, 0] = garbage
    _, out, ev = run(x)
    for field in ("score", "confidence", "p_value"):
        assert np.all(np.isfinite(out[field])), field
    assert [e.value for e in of(ev, "RECAL_GAIN")] in ([], [pytest.approx(1.2, rel=0.05)])
    assert of(ev, "ALERT_RAISED") and of(ev, "ALERT_RAISED")[0].timestamp_ms >= g * PERIOD  # the garbage alerts
