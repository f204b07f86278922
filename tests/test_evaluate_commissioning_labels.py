"""A labelled fault inside the commissioning rows (a real recording whose first failure comes
before 15 % of it is over) is kept out of what the installation learns: the device sees
those rows as missing while it commissions, and its model's noise units leave them out, as
its training windows already did. Learnt from, a 20-sigma excursion makes every later fault
look small (it used to: 0 of 6 faults on a pump-like recording)."""

from __future__ import annotations

import numpy as np
import pytest

from aiot.data import Series


def _recording(seed: int = 2) -> Series:
    rng = np.random.default_rng(seed)
    rows = 3000
    t = 1.7e9 + np.arange(rows, dtype=np.float64)
    v = np.stack([10 + 0.1 * rng.normal(size=rows), 5 + 0.2 * rng.normal(size=rows)], axis=1)
    labels = np.zeros(rows, np.int8)
    v[500:600, 1] += 20 * 0.2  # a failure during commissioning, labelled
    labels[500:600] = 1
    v[2000:2300, 1] += 6 * 0.2  # a later one, smaller
    labels[2000:2300] = 1
    return Series(timestamps=t, values=v, valid=np.ones_like(v, bool), labels=labels, channels=["a", "b"])


@pytest.mark.slow
def test_a_labelled_fault_in_the_commissioning_rows_is_not_learnt_and_the_later_fault_alerts():
    from aiot.evaluate.monitor_device import MonitorDevice, device_file_model, validated_knobs

    s = _recording()
    head = s.head(1000)
    model = device_file_model(head, window=8, epochs=1, seed=0, noise_floor=validated_knobs(per_file=True)["fleet_noise_floor"])
    dev = MonitorDevice(model, 8, "host", validated_knobs(per_file=True))
    report = dev.commission(head)
    # the device learnt sensor b's normal spread (0.2), not the excursion's
    assert report["commissioning"][1]["noise"] == pytest.approx(0.2, rel=0.25)
    out = dev.stream(s, 1000)
    alert = np.asarray(out.alert)
    assert alert[2000 - 1000 : 2300 - 1000].any()
    assert not alert[: 2000 - 1000].any()  # and it did not alert before the fault
