"""Synthetic, labelled water-pump data for demos and tests (no real data needed).

A centrifugal pump sampled at 1 Hz with four sensors: pump-side and motor-side bearing
vibration RMS (mm/s), motor current (A) and bearing housing temperature (degC). A slowly
varying hydraulic load drives all four (current ~ load, vibration ~ load, temperature a
first-order lag of load plus ambient); each sensor has its own noise. The first half of
the recording is normal operation (for training); the second half (the test period)
holds labelled faults between normal stretches:

- ``imbalance``: sudden impeller imbalance, vibration on both bearings jumps at once
  (pump side most), current rises slightly; ends when "repaired".
- ``bearing_wear``: pump-side bearing degrades, vibration and temperature rise together
  over tens of minutes.

plus a short temperature-sensor dropout (missing samples, labelled normal: no data is
not an event). Everything is deterministic for a seed.

Use at least 4 hours for a model worth looking at: the temperature's 10-minute thermal
lag and the 5-25 minute load set-points need about 2 hours of training rows to be
covered; trained on less, the model raises false alarms on normal test data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aiot.data import Series, write_csv as _write_series
from aiot.errors import ToolkitError

CHANNELS = ["vib_rms_1", "vib_rms_2", "motor_current", "temperature"]
START_UTC = 1767571200.0  # 2026-01-05T00:00:00Z
DECIMALS = 4

# Where the events sit, as fractions of the test period (second half of the recording).
_DROPOUT = (0.08, 20)  # (start fraction, seconds)
_IMBALANCE = (0.20, 0.28)
_BEARING = (0.50, 0.80)  # ramps up over the first 3/4, then stays bad


@dataclass
class Incident:
    name: str
    start_row: int  #: first faulty row
    stop_row: int  #: one past the last faulty row


@dataclass
class PumpDataset:
    series: Series
    train_rows: int  #: rows [0, train_rows) are normal operation for training
    incidents: list[Incident] = field(default_factory=list)
    dropout_rows: tuple[int, int] = (0, 0)  #: temperature samples missing in [start, stop)


def _load_profile(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hydraulic load in [0.35, 1]: demand set-points held 5-25 min, a smooth daily swing,
    and a 60 s first-order lag (the pump's speed controller)."""
    steps = np.empty(n)
    t = 0
    while t < n:
        hold = int(rng.integers(300, 1500))
        steps[t : t + hold] = rng.uniform(0.45, 0.95)
        t += hold
    daily = 0.08 * np.sin(2 * np.pi * np.arange(n) / 86400.0)
    target = np.clip(steps + daily, 0.35, 1.0)
    return _lag(target, 60.0, target[0])


def _lag(u: np.ndarray, tau_s: float, y0: float) -> np.ndarray:
    a = 1.0 / tau_s
    y = np.empty_like(u)
    acc = y0
    for i, v in enumerate(u):
        acc += a * (v - acc)
        y[i] = acc
    return y


def pump_dataset(seed: int = 0, hours: float = 4.0, faults: bool = True, dropout: bool = True) -> PumpDataset:
    """Generate ``hours`` of 1 Hz pump data: first half normal, second half the test period."""
    if not (1.0 <= hours <= 24.0 * 14):
        raise ToolkitError(f"hours must be between 1 and 336, got {hours}", hint="e.g. --hours 4")
    rng = np.random.default_rng(seed)
    n = int(round(hours * 3600))
    train_rows = n // 2
    test_n = n - train_rows

    def test_row(frac: float) -> int:
        return train_rows + int(frac * test_n)

    load = _load_profile(rng, n)
    ambient = 22.0 + 2.0 * np.sin(2 * np.pi * (np.arange(n) / 86400.0 - 0.3)) + 0.3 * _lag(rng.normal(0, 1, n), 900, 0)
    structure = rng.normal(0.0, 1.0, n)  # structure-borne noise seen by both accelerometers

    vib1 = 1.1 + 1.9 * load**2 + 0.10 * structure + rng.normal(0, 0.08, n)
    vib2 = 0.7 + 1.0 * load + 0.06 * structure + rng.normal(0, 0.05, n)
    current = 3.0 + 6.5 * load + rng.normal(0, 0.06, n)
    fault_temp = np.zeros(n)  # bearing over-temperature; the pump is stopped and cools at repair

    labels = np.zeros(n, dtype=np.int8)
    incidents: list[Incident] = []
    if faults:
        a, b = test_row(_IMBALANCE[0]), test_row(_IMBALANCE[1])
        vib1[a:b] += 1.6 + 1.2 * load[a:b]
        vib2[a:b] += 0.9 + 0.6 * load[a:b]
        current[a:b] += 0.35
        fault_temp[a:b] += _lag(np.full(b - a, 3.0), 300.0, 0.0)
        labels[a:b] = 1
        incidents.append(Incident("imbalance", a, b))

        a, b = test_row(_BEARING[0]), test_row(_BEARING[1])
        ramp = np.clip(np.arange(b - a) / (0.75 * (b - a)), 0.0, 1.0)
        vib1[a:b] += ramp * (2.4 + 1.5 * load[a:b]) + ramp * rng.normal(0, 0.15, b - a)
        vib2[a:b] += 0.4 * ramp
        current[a:b] += 0.15 * ramp
        fault_temp[a:b] += _lag(14.0 * ramp, 300.0, 0.0)
        labels[a:b] = 1
        incidents.append(Incident("bearing_wear", a, b))

    temp_target = ambient + 18.0 * load
    temperature = _lag(temp_target, 600.0, temp_target[0]) + fault_temp + rng.normal(0, 0.12, n)

    values = np.round(np.stack([vib1, vib2, current, temperature], axis=1), DECIMALS)
    valid = np.ones_like(values, dtype=bool)
    drop = (0, 0)
    if dropout:
        d0 = test_row(_DROPOUT[0])
        drop = (d0, d0 + _DROPOUT[1])
        values[drop[0] : drop[1], 3] = np.nan
        valid[drop[0] : drop[1], 3] = False

    series = Series(
        timestamps=START_UTC + np.arange(n, dtype=np.float64),
        values=values,
        valid=valid,
        labels=labels,
        channels=list(CHANNELS),
        source=None,
        iso_time=True,
        meta={"generator": "aiot.data.synth.pump_dataset", "seed": seed, "hours": hours},
    )
    return PumpDataset(series=series, train_rows=train_rows, incidents=incidents, dropout_rows=drop)


def write_csv(path: Path | str, dataset: PumpDataset | None = None, **kwargs) -> PumpDataset:
    """Write ``dataset`` (or ``pump_dataset(**kwargs)``) to ``path``; returns the dataset."""
    ds = dataset if dataset is not None else pump_dataset(**kwargs)
    _write_series(path, ds.series, decimals=DECIMALS)
    return ds
