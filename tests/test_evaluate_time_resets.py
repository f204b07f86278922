"""A recording whose clock steps back (issue 19) streamed through the device as a device
would see it: the monitor restarts its stream at the reset and every later row still gets
the device's answer (it used to map them all to "warmup": outputs were matched by time)."""

from __future__ import annotations

import numpy as np
import pytest

from aiot.data import Series


def _series(rows: int, reset_at: int, back_s: float, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = 1.7e9 + np.arange(rows, dtype=np.float64)
    t[reset_at:] -= back_s
    v = np.stack([10 + 0.1 * rng.normal(size=rows), 5 + 0.2 * rng.normal(size=rows)], axis=1)
    return Series(timestamps=t, values=v, valid=np.ones_like(v, bool), labels=None, channels=["a", "b"])


def _through_the_device(s: Series, commission: int = 400):
    """``s`` through the host build with its own model on its first ``commission`` rows (the
    shipped knobs): (device, its outputs for the rows after commissioning)."""
    from aiot.evaluate.monitor_device import MonitorDevice, device_file_model, validated_knobs

    model = device_file_model(s.head(commission), window=8, epochs=1, seed=0,
                              noise_floor=validated_knobs(per_file=True)["fleet_noise_floor"])
    dev = MonitorDevice(model, 8, "host", validated_knobs(per_file=True))
    dev.commission(s.head(commission))
    return dev, dev.stream(s, commission)


@pytest.mark.slow
@pytest.mark.parametrize("back_s", [3600.0, 100.0])  # the hour repeated; an NTP correction
def test_rows_after_a_time_reset_get_the_devices_answer(back_s):
    # the reset comes after the 400 commissioning rows: both cases train on the same rows, so
    # the second finds the first's model in the suite's cache
    _, out = _through_the_device(_series(1200, reset_at=700, back_s=back_s))
    states = np.array(out.state)
    after = states[700 - 400 + 16 :]  # two windows past the reset: the restarted stream answers again
    assert "warmup" not in set(after) and np.isfinite(out.score[700 - 400 + 16 :]).all()
    before = states[16:300]
    assert "warmup" not in set(before)


def test_the_reference_target_never_scores_a_window_across_a_time_reset():
    # rows 0..9, the clock steps back between rows 5 and 6; windows of 3 ending at rows 2..9:
    # those holding rows 5 and 6 together end at rows 6 and 7 (hand-counted)
    from aiot.evaluate.device import _complete

    s = _series(10, reset_at=6, back_s=4.0)
    got = _complete(s, np.arange(2, 10), 3, max_slip=2.5)
    assert got.tolist() == [True, True, True, True, False, False, True, True]


@pytest.mark.slow
def test_rows_past_the_devices_32_bit_clock_wrap_get_the_devices_answer():
    # The device counts time in 32-bit milliseconds: it wraps after 49.7 days (2**32 ms), which
    # a recording of months (a pump logged every minute for 5 months) passes. The monitor's
    # arithmetic is modulo 2**32, so the device goes on; the evaluation must still match each
    # row to the window output the device had given by then. Hourly-like steps of 10 minutes,
    # 60 days; a 12-unit step on sensor b from day 55 on, after the wrap.
    rows, period_s = 60 * 144, 600.0
    rng = np.random.default_rng(5)
    t = 1.7e9 + period_s * np.arange(rows, dtype=np.float64)
    v = np.stack([10 + 0.1 * rng.normal(size=rows), 5 + 0.2 * rng.normal(size=rows)], axis=1)
    fault = 55 * 144
    v[fault:, 1] += 12 * 0.2
    s = Series(timestamps=t, values=v, valid=np.ones_like(v, bool), labels=None, channels=["a", "b"])
    dev, out = _through_the_device(s)
    states = np.array(out.state)
    wrap = int(np.ceil(2**32 / 1000 / period_s))  # first row at or past the wrap (row 0 is device time 0)
    assert wrap < fault
    # past the wrap the device is armed: never "commissioning" or "warmup" again
    assert not {"commissioning", "warmup"} & set(states[wrap - 400:])
    # the step after the wrap alerts, within a day
    alert = np.asarray(out.alert)[fault - 400:]
    assert alert.any() and np.flatnonzero(alert)[0] < 144
    # its event is placed past the wrap too: at its row, on the recording's clock
    raised = [e for e in out.events if e.type == "ALERT_RAISED" and e.row >= fault]
    assert raised and raised[0].row - fault < 144 and raised[0].time == t[raised[0].row]
