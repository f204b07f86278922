"""Isolated garbage samples (a 1e20 on one sensor) in the rows the host learns statistics
from: an installation's commissioning rows, a fleet's normal recording, a model's training
rows. The device rejects such a spike when it commissions (monitor.c commission_channel);
what the host computes from the same rows (noise floors, a model's normalization) must not
take it in either, or the sensor is blind in the image, silently."""

from __future__ import annotations

import sys

import numpy as np

from aiot.data import Series

#: What the installation's statistics leave a spike out of (the default wording).
FLOORS = "its noise floor and the model's training, as the device leaves them out when it commissions"


#: A sample further than this many of its sensor's spreads from the sensor's median and from
#: both its neighbours is garbage (monitor.h commission_reject's default).
SPIKE_SPREADS = 8.0


def reject_spikes(series: Series) -> tuple[Series, dict[str, list[int]]]:
    """``series`` with its isolated garbage samples (a 1e20 on one sensor) marked missing, and
    which they were (sensor -> row indices). Per sensor, over its valid samples in time order:
    its spread is the range between its k-th smallest and k-th largest sample (k: 1 % of
    them, at least 2, so a few garbage samples cannot widen it) as a normal's standard
    deviation, at least 1e-3 of its median's size; a sample further than SPIKE_SPREADS of them
    from the median and from both its neighbours is rejected. A far value its neighbour
    confirms is a level and is kept, as the device keeps it (monitor.c commission_channel
    rejects spikes too when it commissions, judged window by window). What real sensors do
    stays: on SKAB's and TEP's normal recordings and commissioning rows nothing is rejected."""
    valid = series.valid.copy()
    rejected: dict[str, list[int]] = {}
    for c, name in enumerate(series.channels):
        rows = np.flatnonzero(valid[:, c])
        n = rows.size
        k = max(2, int(np.ceil(0.01 * n)))
        if n < 4 * k:  # too few samples to tell a spike from the signal
            continue
        x = series.values[rows, c].astype(np.float64)
        ordered = np.sort(x)
        med = float(np.median(x))
        spread = max((ordered[n - 1 - k] - ordered[k]) / (2 * 2.326), 1e-3 * abs(med))
        lim = SPIKE_SPREADS * spread
        step = np.abs(np.diff(x)) <= lim
        far = ~(np.abs(x - med) <= lim) & ~np.r_[False, step] & ~np.r_[step, False]
        if far.any():
            valid[rows[far], c] = False
            rejected[name] = rows[far].tolist()
    if not rejected:
        return series, rejected
    out = series.slice(0, series.rows)
    out.valid = valid
    return out, rejected


#: The warnings said in this run: one recording's garbage is said once, however many models
#: are built from it (aiot tune builds one per noise floor and model kind of its grid).
_SAID: set[tuple] = set()


def say_spikes(series: Series, rejected: dict[str, list[int]], where, what: str = FLOORS) -> None:
    """One warning line per sensor with rejected samples: where, how many, the first few,
    and ``what`` they were left out of; once per run."""
    for name, rows in rejected.items():
        said = (str(where), name, tuple(rows), what)
        if said in _SAID:
            continue
        _SAID.add(said)
        c = series.channels.index(name)
        first = ", ".join(f"row {i + 1} ({series.values[i, c]:g})" for i in rows[:3])
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        sys.stderr.write(f"warning: {where}: {name}: {len(rows)} isolated sample(s) far beyond the sensor's range "
                         f"({first}{more}) left out of {what}\n")
