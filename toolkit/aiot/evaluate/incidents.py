"""Incidents (labelled fault runs) and alerts (runs of alert=1), matched to each other:
the answer to "did it flag the March failure, and did it keep quiet in February?"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from aiot.evaluate.metrics import runs


@dataclass
class Incident:
    """One labelled fault: rows ``start..end`` inclusive."""

    start: int
    end: int
    detected: bool
    first_alert: int | None  #: first alerting row inside the incident
    delay_rows: int | None  #: first_alert - start
    delay_s: float | None  #: same, in seconds of the recording's clock


@dataclass
class Alert:
    """One alert episode: rows ``start..end`` inclusive where the device said alert=1."""

    start: int
    end: int
    true: bool  #: overlaps a labelled incident
    incidents: list[int] = field(default_factory=list)  #: indexes into the file's incidents
    sensors: list[str] = field(default_factory=list)  #: channels that drove it, strongest first


def incidents(
    labels: np.ndarray | Sequence[int],
    alerts: np.ndarray | Sequence[int],
    timestamps: np.ndarray | None = None,
) -> list[Incident]:
    """Each contiguous run of label 1; detected when any alert falls inside it."""
    y = np.asarray(labels).astype(bool)
    a = np.asarray(alerts).astype(bool)
    out: list[Incident] = []
    for start, end in runs(y):
        hits = np.nonzero(a[start : end + 1])[0]
        if hits.size:
            first = start + int(hits[0])
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
) -> list[Alert]:
    """Each contiguous run of alert 1; true when it overlaps a labelled incident.

    ``channel_scores`` (N, C), when the device reports per-sensor contributions, names the
    sensors behind each alert: those whose mean contribution over the alert is at least
    half of the strongest one's.
    """
    a = np.asarray(alerts).astype(bool)
    y = np.zeros_like(a) if labels is None else np.asarray(labels).astype(bool)
    inc = runs(y)
    out: list[Alert] = []
    for start, end in runs(a):
        hit = [k for k, (s, e) in enumerate(inc) if s <= end and e >= start]
        sensors: list[str] = []
        if channel_scores is not None and len(channels):
            mean = np.nanmean(np.abs(channel_scores[start : end + 1]), axis=0)
            if np.isfinite(mean).any() and np.nanmax(mean) > 0:
                top = np.nanmax(mean)
                order = np.argsort(-np.nan_to_num(mean, nan=-1.0), kind="stable")
                sensors = [channels[j] for j in order if mean[j] >= 0.5 * top]
        out.append(Alert(start, end, bool(hit), hit, sensors))
    return out
