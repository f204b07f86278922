"""One model per installation (data without a fleet recording, `aiot evaluate --per-file`,
`aiot commission` without --fleet-data) runs the defaults cross-validated with such models
(aiot.installation.PER_FILE_KNOBS), not the fleet model's. They are chosen among the settings
that score a sensor's level: a model trained on one installation's own rows reconstructs a
window's shape, and a slow, autocorrelated sensor (a temperature) that leaves its commissioned
level by many spreads still has a window shape the model knows."""

from __future__ import annotations

import numpy as np
import pytest

from aiot.data import Series

STEP = (2000, 2300)  # rows of the fault
COMMISSION = 1000


def _temperature(step_spreads: float, seed: int = 3, rows: int = 3000) -> Series:
    """One sensor, AR(1) at 0.9 with a spread of 1 around 50 (5-minute samples); from STEP on it
    sits ``step_spreads`` spreads lower."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=rows) * np.sqrt(1 - 0.9**2)
    x = np.zeros(rows)
    for i in range(1, rows):
        x[i] = 0.9 * x[i - 1] + e[i]
    x += 50.0
    x[STEP[0] : STEP[1]] -= step_spreads
    labels = np.zeros(rows, np.int8)
    labels[STEP[0] : STEP[1]] = 1
    return Series(timestamps=1.6e9 + 300.0 * np.arange(rows), values=x[:, None], valid=np.ones((rows, 1), bool),
                  labels=labels, channels=["temp"])


def _alerts(knobs: dict, series: Series) -> np.ndarray:
    from aiot.installation import FLOOR_KNOB
    from aiot.evaluate.monitor_device import MonitorDevice, device_file_model

    head = series.head(COMMISSION)
    model = device_file_model(head, window=8, epochs=30, seed=0, noise_floor=float(knobs.get(FLOOR_KNOB, 0.0)))
    dev = MonitorDevice(model, 8, "host", knobs)
    dev.commission(head)
    return np.asarray(dev.stream(series, COMMISSION).alert)


def test_one_model_per_installation_has_defaults_of_its_own_that_score_the_level():
    from aiot.installation import EVAL_KNOBS, PER_FILE_KNOBS, validated_knobs

    assert validated_knobs(per_file=True) == PER_FILE_KNOBS != EVAL_KNOBS
    assert validated_knobs() == EVAL_KNOBS
    assert PER_FILE_KNOBS["level_windows"] > 0


@pytest.mark.slow
def test_a_temperature_twelve_spreads_off_its_level_alerts_with_the_per_installation_defaults():
    from aiot.installation import validated_knobs

    alert = _alerts(validated_knobs(per_file=True), _temperature(12.0))
    assert alert[STEP[0] - COMMISSION : STEP[1] - COMMISSION].any()
    assert not alert[: STEP[0] - COMMISSION].any()  # and nothing before it
