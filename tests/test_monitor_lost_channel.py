"""A sensor that stops sending must not blind the device to the others.

A short dropout (a radio, a logger) is NO_DATA: nothing can be said while a sensor is
missing. A sensor silent for longer than `channel_lost_minutes` is *lost* (broken cable,
dead sensor: real recordings have columns empty for weeks): CHANNEL_LOST names it, the
windows are scored again from the other sensors (flag OUT_PARTIAL), and a fault on them
alerts. When it sends again, CHANNEL_BACK, and it is scored again. Hand-made streams with
the baseline model of tests/test_monitor.py: 1 s samples, 8-sample windows."""

from __future__ import annotations

import numpy as np

from aiot import monitor as mon
from test_monitor import PERIOD, W, config, learned, noise, run, states, armed

OUT_PARTIAL = 0x20  # monitor.h AIOT_OUT_PARTIAL


def _stream(silent_from: int, silent_to: int | None, fault_from: int | None, n_windows: int = 120):
    """Channel 1 silent over armed windows [silent_from, silent_to); a +12 noise-unit step on
    channel 0 from armed window fault_from on."""
    n = learned(n_windows)
    x = noise(n, 2)
    a = learned(0)
    x[a + silent_from * W : n if silent_to is None else a + silent_to * W, 1] = np.nan
    if fault_from is not None:
        x[a + fault_from * W :, 0] += 12.0
    return x


def _events(ev, kind):
    return [e for e in ev if e.type == kind]


def test_a_sensor_silent_longer_than_the_lost_time_is_named_and_the_others_are_scored():
    # channel 1 silent from armed window 10 on; lost after 1 minute = 60 samples = 7.5 windows
    x = _stream(10, None, fault_from=60)
    m, out, ev = run(config(channel_lost_minutes=1), x)
    arm = armed(out)
    st = states(arm)
    lost = _events(ev, "CHANNEL_LOST")
    assert len(lost) == 1 and lost[0].channel == 1
    t_lost = lost[0].timestamp_ms
    silent_since = (learned(0) + 10 * W) * PERIOD
    # 60 s without data, known at the end of the window that completes them (within one window)
    assert silent_since + 60_000 <= t_lost + PERIOD <= silent_since + 60_000 + W * PERIOD
    before = (arm["t_end_ms"] >= silent_since) & (arm["t_end_ms"] < t_lost)
    after = arm["t_start_ms"] > t_lost
    assert before.sum() >= 6 and set(np.array(st)[before]) == {"NO_DATA"}
    # from then on every window is scored from channel 0 and says it is partial
    assert "NO_DATA" not in set(np.array(st)[after])
    assert np.all(arm["flags"][after] & OUT_PARTIAL)
    assert np.all(arm["quality"][after] == 1.0)
    # the fault on the sensor that is still there alerts, naming it
    raised = _events(ev, "ALERT_RAISED")
    fault_at = (learned(0) + 60 * W) * PERIOD
    assert raised and fault_at <= raised[0].timestamp_ms <= fault_at + 8 * W * PERIOD
    assert raised[0].channel == 0
    assert m.channel(1).health & mon.CH_LOST


def test_with_the_lost_time_off_a_silent_sensor_keeps_the_whole_device_no_data():
    x = _stream(10, None, fault_from=60)
    _, out, ev = run(config(channel_lost_minutes=0), x)
    arm = armed(out)
    silent = arm["t_start_ms"] >= (learned(0) + 10 * W) * PERIOD
    assert set(np.array(states(arm))[silent]) == {"NO_DATA"}
    assert not _events(ev, "CHANNEL_LOST") and not _events(ev, "ALERT_RAISED")


def test_a_dropout_shorter_than_the_lost_time_is_no_data_and_loses_no_channel():
    x = _stream(10, 16, fault_from=None)  # 48 s silent, lost time 60 s
    _, out, ev = run(config(channel_lost_minutes=1), x)
    arm = armed(out)
    gap = (arm["t_start_ms"] >= (learned(0) + 10 * W) * PERIOD) & (arm["t_end_ms"] < (learned(0) + 16 * W) * PERIOD)
    assert gap.sum() >= 5 and set(np.array(states(arm))[gap]) == {"NO_DATA"}
    assert not _events(ev, "CHANNEL_LOST") and not (arm["flags"] & OUT_PARTIAL).any()


def test_a_lost_sensor_that_sends_again_is_back_and_scored_again():
    x = _stream(10, 40, fault_from=None)
    x[learned(0) + 70 * W :, 1] += 12.0  # after its return, a fault on the sensor that was lost
    m, out, ev = run(config(channel_lost_minutes=1), x)
    arm = armed(out)
    back = _events(ev, "CHANNEL_BACK")
    assert len(_events(ev, "CHANNEL_LOST")) == 1 and len(back) == 1 and back[0].channel == 1
    returned = (learned(0) + 40 * W) * PERIOD
    assert returned <= back[0].timestamp_ms <= returned + 2 * W * PERIOD
    later = arm["t_start_ms"] > back[0].timestamp_ms
    assert not (arm["flags"][later] & OUT_PARTIAL).any()
    raised = _events(ev, "ALERT_RAISED")
    assert raised and raised[-1].channel == 1 and raised[-1].timestamp_ms >= (learned(0) + 70 * W) * PERIOD
    assert not m.channel(1).health & mon.CH_LOST


def test_when_every_sensor_is_silent_there_is_nothing_to_score():
    n = learned(80)
    x = noise(n, 2)
    x[learned(10) :, :] = np.nan  # samples still arrive, every value missing
    _, out, _ = run(config(channel_lost_minutes=1), x)
    arm = armed(out)
    silent = arm["t_start_ms"] >= learned(10) * PERIOD
    assert silent.sum() > 30 and set(np.array(states(arm))[silent]) == {"NO_DATA"}


def test_the_lost_time_is_a_setting_with_a_range_and_0_turns_it_off():
    assert mon.default_config(2, W, PERIOD).channel_lost_minutes == 60
    assert mon.default_config(2, W, PERIOD, channel_lost_minutes=0).channel_lost_minutes == 0
