"""Incidents (labelled fault runs) and alerts (runs of alert=1), matched to each other:
the answer to "did it flag the March failure, and did it keep quiet in February?".

Matching rule (one rule for both sides, so the incident table and the alert list agree): an
alert detects an incident when the alert STARTS inside ``[onset - tolerance_rows, end]``.
An alert that was already on before that (latched since an earlier disturbance, or raised
hours before on another sensor) detects nothing and is a false alert, however long it
overlaps the fault; so is one that starts after the fault's last labelled row. The small
tolerance forgives labels placed a few rows late; it never reaches back into the previous
incident."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from aiot.evaluate.metrics import runs

#: Rows an alert may start before a labelled onset and still detect it (labels are set by
#: hand and often a few samples late); written into report.json with the results.
DEFAULT_TOLERANCE_ROWS = 2


@dataclass
class Incident:
    """One labelled fault: rows ``start..end`` inclusive."""

    start: int
    end: int
    detected: bool
    first_alert: int | None  #: start row of the first alert that detects it
    delay_rows: int | None  #: first_alert - start (negative within the tolerance)
    delay_s: float | None  #: same, in seconds of the recording's clock


@dataclass
class Alert:
    """One alert episode: rows ``start..end`` inclusive where the device said alert=1."""

    start: int
    end: int
    true: bool  #: starts inside [onset - tolerance, end] of a labelled incident
    incidents: list[int] = field(default_factory=list)  #: indexes into the file's incidents
    sensors: list[str] = field(default_factory=list)  #: channels that drove it, strongest first


def _windows(incidents: list[tuple[int, int]], tolerance_rows: int) -> list[tuple[int, int]]:
    """Each incident's detection window ``[onset - tolerance, end]``, its early edge kept
    after the previous incident's end: windows never overlap, so one alert detects at most
    one incident (an alert raised inside one fault does not also detect the next)."""
    out, prev_end = [], -1
    for onset, end in incidents:
        out.append((max(onset - tolerance_rows, prev_end + 1), end))
        prev_end = end
    return out


def incidents(
    labels: np.ndarray | Sequence[int],
    alerts: np.ndarray | Sequence[int],
    timestamps: np.ndarray | None = None,
    tolerance_rows: int = DEFAULT_TOLERANCE_ROWS,
) -> list[Incident]:
    """Each contiguous run of label 1; detected when an alert starts inside
    ``[onset - tolerance_rows, end]`` (see the module's matching rule)."""
    y = np.asarray(labels).astype(bool)
    starts = [s for s, _ in runs(np.asarray(alerts).astype(bool))]
    out: list[Incident] = []
    labelled = runs(y)
    for (start, end), (lo, hi) in zip(labelled, _windows(labelled, tolerance_rows)):
        hits = [a for a in starts if lo <= a <= hi]
        if hits:
            first = hits[0]
            delay_s = None if timestamps is None else float(timestamps[first] - timestamps[start])
            out.append(Incident(start, end, True, first, first - start, delay_s))
        else:
            out.append(Incident(start, end, False, None, None, None))
    return out


def alerts(
    labels: np.ndarray | Sequence[int] | None,
    alerts: np.ndarray | Sequence[int],
    channel_scores: np.ndarray | None = None,
    channels: Sequence[str] = (),
    tolerance_rows: int = DEFAULT_TOLERANCE_ROWS,
) -> list[Alert]:
    """Each contiguous run of alert 1; true when it starts inside ``[onset - tolerance_rows,
    end]`` of a labelled incident (the incidents it detects), else false.

    ``channel_scores`` (N, C), when the device reports per-sensor contributions, names the
    sensors behind each alert: those whose mean contribution over the alert is at least
    half of the strongest one's.
    """
    a = np.asarray(alerts).astype(bool)
    y = np.zeros_like(a) if labels is None else np.asarray(labels).astype(bool)
    windows = _windows(runs(y), tolerance_rows)
    out: list[Alert] = []
    for start, end in runs(a):
        hit = [k for k, (lo, hi) in enumerate(windows) if lo <= start <= hi]
        sensors: list[str] = []
        if channel_scores is not None and len(channels):
            mean = np.nanmean(np.abs(channel_scores[start : end + 1]), axis=0)
            if np.isfinite(mean).any() and np.nanmax(mean) > 0:
                top = np.nanmax(mean)
                order = np.argsort(-np.nan_to_num(mean, nan=-1.0), kind="stable")
                sensors = [channels[j] for j in order if mean[j] >= 0.5 * top]
        out.append(Alert(start, end, bool(hit), hit, sensors))
    return out
