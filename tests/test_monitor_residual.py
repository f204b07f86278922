"""residual_score: each sensor also scores the model's residual of it (monitor.h), so the
device sees a fault that breaks how sensors move together while each stays inside its own
commissioned level and spread. Hand-made streams through the host build of the device C:
three sensors that follow one slow common swing, and a model that reconstructs each from
the mean of the other two (so a sensor's residual is its departure from the others)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from aiot import monitor as mon
from aiot.errors import ToolkitError
from test_monitor_trust import armed, run as run_monitor  # the same stream runner and armed rows

PERIOD = 1000
W = 8
COMMISSION, CALIBRATION = 160, 32
SWING = 3.0   # raw units of the common swing, period 80 samples (10 windows)
NOISE = 0.2   # each sensor's own noise (raw units)
LEVELS = (50.0, 20.0, 35.0)


def learned(n_windows: int) -> int:
    return COMMISSION + CALIBRATION * W + n_windows * W


def common(n: int) -> np.ndarray:
    return SWING * np.sin(2.0 * np.pi * np.arange(n) / 80.0)


def sensors(n: int, seed: int = 3) -> np.ndarray:
    """Three sensors on the same swing, each with its own level and noise."""
    rng = np.random.default_rng(seed)
    s = common(n)
    return np.stack([lvl + s + rng.normal(0.0, NOISE, n) for lvl in LEVELS], axis=1).astype(np.float32)


def from_the_others(window: np.ndarray) -> np.ndarray:
    """Each channel reconstructed as the mean of the other channels (normalized units)."""
    total = window.sum(axis=1, keepdims=True)
    return ((total - window) / (window.shape[1] - 1)).astype(np.float32)


def config(**knobs) -> mon.Config:
    # the mechanism alone: the other terms and smoothing of the shipped defaults off
    base = dict(commission_samples=COMMISSION, calibration_windows=CALIBRATION, level_windows=1,
                max_drift_rate=0.0, max_recal_step=0.5, spread_score=0, residual_score=0, score_average=0, recover_ratio=0.0,
                clear_band=3, clear_margin=1.5)
    base.update(knobs)
    return mon.default_config(3, W, PERIOD, **base)


def run(cfg, x, scorer=from_the_others):
    return run_monitor(cfg, x, scorer)


def raised(events):
    return [e for e in events if e.type == "ALERT_RAISED"]


def decoupled(start_window: int = 10, n_windows: int = 60):
    """From `start_window` windows after arming, sensor 1 swings against the others (the
    mirror of the common swing): its level and spread have exactly the distribution they
    were commissioned with, only its relation to sensors 0 and 2 is broken."""
    a, n = learned(start_window), learned(n_windows)
    x = sensors(n)
    s = common(n)
    x[a:, 1] -= (2.0 * s[a:]).astype(np.float32)
    return a, x


def test_a_sensor_that_stops_following_the_others_alerts_with_the_residual_score_only():
    a, x = decoupled()
    for spread in (0, 1):
        _, out, ev = run(config(spread_score=spread), x)
        assert not raised(ev), f"spread_score {spread}: level and spread are as commissioned, nothing to see"
        assert "ANOMALY" not in [mon.STATES[s] for s in armed(out)["state"]]
    _, out, ev = run(config(residual_score=1), x)
    up = raised(ev)
    assert up and up[0].timestamp_ms >= a * PERIOD
    assert up[0].timestamp_ms <= (a + 10 * W) * PERIOD  # within one swing of the fault
    arm = armed(out)
    before = arm[arm["t_end_ms"] < a * PERIOD]
    assert not np.any(before["state"] == mon.ANOMALY)  # no false alert before it
    assert mon.STATES[arm["state"][-1]] == "ANOMALY"   # still alerting while it lasts
    # the decoupled sensor departs twice as far from the others as they do from it
    top = arm[arm["state"] == mon.ANOMALY]["top_channels"][:, 0]
    assert np.mean(top == 1) > 0.9


@pytest.mark.parametrize("residual", [0, 1])
def test_a_one_sensor_step_alerts_with_the_residual_score_on_or_off_and_names_it(residual):
    a, n = learned(10), learned(40)
    x = sensors(n)
    x[a:, 2] += 15.0  # about 7 noise units (the swing is the commissioned noise) on sensor 2
    _, out, ev = run(config(residual_score=residual, spread_score=1), x)
    up = raised(ev)
    assert up and up[0].channel == 2 and a * PERIOD <= up[0].timestamp_ms <= (a + 5 * W) * PERIOD
    arm = armed(out)
    assert mon.STATES[arm["state"][-1]] == "ANOMALY"
    assert np.all(arm[arm["state"] == mon.ANOMALY]["top_channels"][:, 0] == 2)


def test_the_residual_score_is_never_nan_or_inf():
    """A stuck sensor (residual spread ~0: floored), a 1e20 sample while armed (clipped
    features: a large residual, not inf) and a model answering 1e15 (a huge but finite
    residual: capped, an alert, never NaN) all stay finite."""
    a, n = learned(10), learned(30)
    x = sensors(n)
    x[:, 0] = 7.25          # stuck the whole time
    x[a + 3, 1] = 1e20      # garbage while armed
    m, out, _ = run(config(residual_score=1), x)
    assert m.commissioning()[0]["stuck"]
    for field in ("score", "confidence", "p_value"):
        assert np.all(np.isfinite(out[field])), field
    arm = armed(out)
    hit = (arm["t_start_ms"] <= (a + 3) * PERIOD) & (arm["t_end_ms"] >= (a + 3) * PERIOD)
    assert hit.sum() == 1 and arm[hit]["flags"][0] & mon.OUT_VOTE
    assert 0.0 < arm[hit]["score"][0] < np.finfo(np.float32).max

    x = sensors(n)
    calls = {"n": 0}
    calibration_calls = CALIBRATION * 4  # the model runs from calibration on, 1 + 3 calls a window

    def goes_wild(window):
        calls["n"] += 1
        y = from_the_others(window)
        return y + 1e15 if calls["n"] > calibration_calls + 10 * 4 else y

    _, out, ev = run(config(residual_score=1), x, scorer=goes_wild)
    for field in ("score", "confidence", "p_value"):
        assert np.all(np.isfinite(out[field])), field
    arm = armed(out)
    assert np.all(arm["score"] < np.finfo(np.float32).max)
    assert raised(ev) and mon.STATES[arm["state"][-1]] == "ANOMALY"  # a model gone wild is not NORMAL


def test_the_residual_score_is_a_bounded_setting_of_the_per_sensor_score():
    assert mon.default_config(3, W, PERIOD).residual_score == 3  # with the pooled energy: the gated joint CV's pick (test_tune_defaults)
    with pytest.raises(ToolkitError, match="residual_score"):
        mon.default_config(3, W, PERIOD, level_windows=1, residual_score=5)
    with pytest.raises(ToolkitError, match="residual_score 1 needs level_windows"):
        mon.default_config(3, W, PERIOD, level_windows=0, spread_score=0, residual_score=1)
    cfg = mon.default_config(3, W, PERIOD, level_windows=0, spread_score=0, residual_score=0)
    cfg.residual_score = 1  # the energy score has no per-sensor z to take the larger of
    assert "residual_score needs level_windows" in mon.config_problem(cfg)
    assert mon.library().aiot_monitor_check_config(ctypes.byref(cfg)) != 0


def test_switching_the_residual_score_needs_a_fresh_installation():
    """Its reference is measured while calibrating: a live update cannot switch it."""
    m = mon.Monitor(config(), from_the_others)
    with pytest.raises(ToolkitError, match="refused"):
        m.update_config(residual_score=1)
    m.update_config(alert_margin=4.0)  # a live knob still goes through


def test_the_residual_score_costs_no_configuration_or_state_bytes():
    """It takes a padding byte of the configuration and reuses commissioning-only state."""
    assert ctypes.sizeof(mon.config_type(8)) == 220 and ctypes.sizeof(mon.config_type(64)) == 1116


def test_config_set_and_get_round_trip_the_residual_score_in_the_device_app():
    """The device app built for the host (8 channels): residual_score travels in CONFIG_SET
    and comes back in CONFIG_GET; switching it is a fresh installation (answer 1), never a
    refused live update; without level_windows the device refuses it, naming the rule."""
    from aiot.device import protocol as P
    from test_protocol_app import HostApp

    app = HostApp()
    cfg = mon.default_config(2, 4, 100, level_windows=1, residual_score=0)  # off, then switched on
    assert app.request(P.Msg.CONFIG_SET, mon.pack_config(cfg, 8) + b"\x01").payload == b"\x01"
    cfg.residual_score = 1
    f = app.request(P.Msg.CONFIG_SET, mon.pack_config(cfg, 8))
    assert f.type == P.Msg.CONFIG_SET | P.RESPONSE and f.payload == b"\x01"
    got = mon.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:])
    assert got.residual_score == 1 and bytes(got) == bytes(cfg)
    cfg.level_windows, cfg.spread_score = 0, 0  # (spread_score would be refused first)
    code, req, detail = P.unpack_error(app.request(P.Msg.CONFIG_SET, mon.pack_config(cfg, 8)).payload)
    assert (code, req) == (P.ErrorCode.BAD_PAYLOAD, P.Msg.CONFIG_SET) and "residual_score needs level_windows" in detail
    assert mon.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:]).residual_score == 1


def test_the_residual_spread_is_floored_like_the_noise():
    """A calibration hour in which the sensors agree to 0.01 raw units measures a residual
    spread far below what the installation calls noise (noise_floor 1 raw unit, as `aiot
    evaluate` sets it from the fleet's long-term spread). Later each sensor wanders on its own
    by half that floor: normal by the configured floor, so it must not alert, as the level z
    (whose spread is floored the same way) does not."""
    a, n = learned(5), learned(60)
    rng = np.random.default_rng(11)
    s = common(n)
    x = np.stack([lvl + s + rng.normal(0.0, 0.01, n) for lvl in LEVELS], axis=1)
    t = np.arange(n - a)
    for c, phase in enumerate((0.0, 2.1, 4.2)):  # independent slow wander, 0.5 raw units
        x[a:, c] += 0.5 * np.sin(2.0 * np.pi * t / 240.0 + phase)
    x = x.astype(np.float32)
    _, out, ev = run(config(noise_floor=1.0), x)
    assert not raised(ev)  # the level z: within its floored spread
    _, out, ev = run(config(noise_floor=1.0, residual_score=1), x)
    assert not raised(ev), [mon.STATES[s] for s in armed(out)["state"]]
