"""Incidents (labelled fault runs) and alerts (runs of alert=1), matched to each other:
the answer to "did it flag the March failure, and did it keep quiet in February?".

Matching rule (one rule for both sides, so the incident table and the alert list agree): an
alert detects an incident when the alert STARTS inside ``[onset - tolerance_rows, end]``.
An alert that was already on before that (latched since an earlier disturbance, or raised
hours before on another sensor) detects nothing and is a false alert, however long it
overlaps the fault; so is one that starts after the fault's last labelled row. The small
tolerance forgives labels placed a few rows late; it never reaches back into the previous
incident.

An early-warning lead (``lead_s``, ``aiot evaluate --early-warning``; 0 by default) widens the
window to ``[min(onset - tolerance_rows, first row within lead_s before the onset), end]``:
for labels that mark the failure itself (a BROKEN row, the end of a run to failure), where an
alert raised while the fault develops is the catch, not a false alarm. The rows of that lead
(:func:`lead_rows`) are then neither normal nor fault in the row metrics. The lead, too, never
reaches back into the previous incident, nor across a clock that stepped back."""

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
    true: bool  #: starts inside [onset - tolerance (or the lead), end] of a labelled incident
    incidents: list[int] = field(default_factory=list)  #: indexes into the file's incidents
    sensors: list[str] = field(default_factory=list)  #: channels that drove it, strongest first


def _lead_start(onset: int, floor: int, timestamps: np.ndarray | None, lead_s: float) -> int:
    """The first row of the lead before ``onset``: rows back to ``floor`` whose time is at
    most ``lead_s`` before the onset's, stopping at a clock that stepped back."""
    if timestamps is None or lead_s <= 0:
        return onset
    t0, row = timestamps[onset], onset
    while row - 1 >= floor and timestamps[row - 1] <= timestamps[row] and t0 - timestamps[row - 1] <= lead_s:
        row -= 1
    return row


def _windows(incidents: list[tuple[int, int]], tolerance_rows: int, timestamps: np.ndarray | None = None,
             lead_s: float = 0.0) -> list[tuple[int, int]]:
    """Each incident's detection window ``[onset - tolerance (or the lead's first row, the
    earlier), end]``, its early edge kept after the previous incident's end: windows never
    overlap, so one alert detects at most one incident (an alert raised inside one fault does
    not also detect the next)."""
    out, prev_end = [], -1
    for onset, end in incidents:
        early = min(onset - tolerance_rows, _lead_start(onset, prev_end + 1, timestamps, lead_s))
        out.append((max(early, prev_end + 1), end))
        prev_end = end
    return out


def lead_rows(labels: np.ndarray | Sequence[int], timestamps: np.ndarray | None, lead_s: float) -> np.ndarray:
    """The normal rows within ``lead_s`` seconds before a labelled onset (after the previous
    incident, on this side of a clock step back): with an early-warning lead they are neither
    normal nor fault in the row metrics (an alert there is a warning, silence is no miss)."""
    y = np.asarray(labels).astype(bool)
    ts = None if timestamps is None else np.asarray(timestamps, float)
    mask = np.zeros(y.shape, bool)
    prev_end = -1
    for onset, end in runs(y):
        mask[_lead_start(onset, prev_end + 1, ts, lead_s):onset] = True
        prev_end = end
    return mask


def incidents(
    labels: np.ndarray | Sequence[int],
    alerts: np.ndarray | Sequence[int],
    timestamps: np.ndarray | None = None,
    tolerance_rows: int = DEFAULT_TOLERANCE_ROWS,
    lead_s: float = 0.0,
) -> list[Incident]:
    """Each contiguous run of label 1; detected when an alert starts inside
    ``[onset - tolerance_rows, end]``, or within ``lead_s`` before the onset (see the
    module's matching rule)."""
    y = np.asarray(labels).astype(bool)
    starts = [s for s, _ in runs(np.asarray(alerts).astype(bool))]
    out: list[Incident] = []
    labelled = runs(y)
    ts = None if timestamps is None else np.asarray(timestamps, float)
    for (start, end), (lo, hi) in zip(labelled, _windows(labelled, tolerance_rows, ts, lead_s)):
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
    timestamps: np.ndarray | None = None,
    lead_s: float = 0.0,
) -> list[Alert]:
    """Each contiguous run of alert 1; true when it starts inside ``[onset - tolerance_rows,
    end]`` (or within ``lead_s`` before the onset) of a labelled incident (the incidents it
    detects), else false.

    ``channel_scores`` (N, C), when the device reports per-sensor contributions, names the
    sensors behind each alert: those whose mean contribution over the alert is at least
    half of the strongest one's.
    """
    a = np.asarray(alerts).astype(bool)
    y = np.zeros_like(a) if labels is None else np.asarray(labels).astype(bool)
    windows = _windows(runs(y), tolerance_rows, None if timestamps is None else np.asarray(timestamps, float), lead_s)
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
