"""Scoring a detector against labelled rows: SKAB's row metrics (F1, FAR, MAR) and the
NAB score (windows, scaled sigmoid, null/perfect normalisation). Pure numpy, no I/O.

Conventions follow the public reference implementations (SKAB's tsad ``chp_score`` with
``metric="binary"``; NAB's ``Sweeper``), re-derived here and pinned by hand-computed tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from aiot.data.runs import runs  # noqa: F401  (metrics.runs, as the evaluation calls it)

#: NAB's standard application profile (cost matrix).
NAB_STANDARD = {"tp": 1.0, "fp": 0.11, "fn": 1.0}
#: NAB's probationary period: the first 15 % of a file, capped at 15 % of 5000 rows.
NAB_PROBATION_FRACTION = 0.15


@dataclass
class Confusion:
    """Row-level confusion counts; ``+`` pools files (SKAB sums counts, then divides)."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def f1(self) -> float | None:
        """TP / (TP + (FP + FN) / 2), as SKAB writes it (None when there is nothing to score)."""
        d = self.tp + 0.5 * (self.fp + self.fn)
        return self.tp / d if d else None

    @property
    def far(self) -> float | None:
        """False alarm rate FP / (FP + TN): share of normal rows that raised an alert."""
        d = self.fp + self.tn
        return self.fp / d if d else None

    @property
    def mar(self) -> float | None:
        """Missed alarm rate FN / (FN + TP): share of anomalous rows left silent."""
        d = self.fn + self.tp
        return self.fn / d if d else None

    def as_dict(self) -> dict:
        return {**asdict(self), "f1": self.f1, "far": self.far, "mar": self.mar}


def confusion(labels: np.ndarray | Sequence[int], alerts: np.ndarray | Sequence[int],
              ignore: np.ndarray | None = None) -> Confusion:
    """Count rows: label 1 is an anomaly, alert 1 is the device saying so. Rows where
    ``ignore`` is true (an early-warning lead: incidents.lead_rows) are not counted."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(alerts).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"labels and alerts differ in length ({y.shape[0]} vs {p.shape[0]})")
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        y, p = y[keep], p[keep]
    return Confusion(
        tp=int((y & p).sum()), fp=int((~y & p).sum()), tn=int((~y & ~p).sum()), fn=int((y & ~p).sum())
    )


def incident_cuts(labels: np.ndarray | Sequence[int]) -> list[int]:
    """Where one recording's scored rows are cut into parts that hold one labelled incident
    each (``aiot tune --labels --folds incident``): halfway between an incident's last row
    and the next one's onset. No cut with fewer than two incidents."""
    r = runs(np.asarray(labels).astype(bool))
    return [(end + 1 + onset) // 2 for (_, end), (onset, _) in zip(r, r[1:])]


def part_names(name: str, parts: int) -> list[str]:
    """The names of a recording's parts: the recording's own name when it is whole."""
    return [name] if parts == 1 else [f"{name}#incident{k}of{parts}" for k in range(1, parts + 1)]


def confusions_by_part(name: str, labels: np.ndarray, alerts: np.ndarray,
                       cuts: Sequence[int] = (), ignore: np.ndarray | None = None) -> dict[str, Confusion]:
    """One recording's confusion per part (:func:`incident_cuts`); whole when ``cuts`` is empty.
    The device ran the whole recording: only the counting is cut, so the parts add up to it.
    Rows where ``ignore`` is true (an early-warning lead) are not counted."""
    edges = [0, *cuts, len(labels)]
    names = part_names(name, len(edges) - 1)
    return {n: confusion(labels[a:b], alerts[a:b], None if ignore is None else ignore[a:b])
            for n, a, b in zip(names, edges, edges[1:])}


#: Where a normal row sits relative to the file's labelled faults (:func:`normal_phases`).
PHASES = ("before_fault", "between_faults", "after_fault", "no_fault_in_file")


@dataclass
class PhaseCounts:
    """Normal rows of one phase, and how many of them alerted (false alarms); ``+`` pools."""

    rows: int = 0
    alerting: int = 0

    def __add__(self, other: "PhaseCounts") -> "PhaseCounts":
        return PhaseCounts(self.rows + other.rows, self.alerting + other.alerting)

    @property
    def share(self) -> float | None:
        return self.alerting / self.rows if self.rows else None

    def as_dict(self) -> dict:
        return {"rows": self.rows, "alerting": self.alerting, "share": self.share}


def normal_phases(labels: np.ndarray | Sequence[int], alerts: np.ndarray | Sequence[int],
                  start: int = 0, ignore: np.ndarray | None = None) -> dict[str, PhaseCounts]:
    """Split the false alarms (alerting normal rows) by where the row sits: before the file's
    first labelled fault (drift, warm-up), between two faults, after the last one (the
    machine settling: a fault's fading tail, which row labels call normal), or in a file
    with no labelled fault at all. Phases follow the whole file's labels; only rows from
    ``start`` on (the test rows), and not ``ignore``d, are counted. The phases' ``alerting``
    rows sum to the FP count of :func:`confusion` over the counted rows, their ``rows`` to FP + TN."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(alerts).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"labels and alerts differ in length ({y.shape[0]} vs {p.shape[0]})")
    phase = np.full(y.shape, 3, np.int8)  # index into PHASES
    faults = np.nonzero(y)[0]
    if faults.size:
        idx = np.arange(y.size)
        phase[:] = 1
        phase[idx < faults[0]] = 0
        phase[idx > faults[-1]] = 2
    normal = ~y
    normal[:start] = False
    if ignore is not None:
        normal &= ~np.asarray(ignore, bool)
    return {name: PhaseCounts(int((normal & (phase == k)).sum()), int((normal & p & (phase == k)).sum()))
            for k, name in enumerate(PHASES)}


# -- NAB ------------------------------------------------------------------------------


def scaled_sigmoid(position: float) -> float:
    """NAB's reward curve: +0.9866 at a window's left edge (-1), 0 at its right edge (0),
    negative past it, and exactly -1 from 3 window-lengths on."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_probation_rows(n_rows: int, fraction: float = NAB_PROBATION_FRACTION) -> int:
    """Rows at the start of a file whose detections NAB ignores."""
    return int(min(math.floor(fraction * n_rows), fraction * 5000))


@dataclass
class NabFile:
    """One file's NAB tallies; ``normalized`` pools several of them."""

    raw: float
    null: float  #: the detector that never fires: every window missed
    perfect: float  #: one detection on the first row of every window
    windows: int  #: windows with at least one row after the probationary period
    windows_detected: int
    false_positives: int  #: detection rows outside every window (after probation)


def nab_file_score(
    alerts: np.ndarray | Sequence[int],
    windows: Sequence[tuple[int, int]],
    probation_rows: int = 0,
    profile: dict | None = None,
) -> NabFile:
    """Score one file's binary detections against NAB windows (row index pairs, inclusive).

    - A window earns the best (= earliest) of its detections:
      ``tp * sigmoid(pos) / sigmoid(-1)`` with ``pos = -(right - i + 1) / width``, so a
      detection on the first row earns exactly ``tp``; an undetected window costs ``-fn``.
    - A detection outside windows costs ``fp * sigmoid(|i - prev_right| / (prev_width - 1))``
      (negative), or ``-fp`` before the first window.
    - Rows before ``probation_rows`` are ignored, as are windows wholly inside it.
    Windows must be sorted and disjoint. A 1-row window would make NAB divide by zero for
    the detections after it; we use a denominator of 1 there.
    """
    prof = profile or NAB_STANDARD
    a = np.asarray(alerts).astype(bool)
    n = a.size
    max_tp = scaled_sigmoid(-1.0)
    _check_windows(windows, n)

    raw = 0.0
    counted = detected = fps = 0
    prev_right: int | None = None
    prev_width = 0
    cursor = 0
    for left, right in [*windows, (n, n)]:  # sentinel closes the gap after the last window
        for i in np.nonzero(a[cursor:left])[0] + cursor:
            if i < probation_rows:
                continue
            if prev_right is None:
                pos = 3.0
            else:
                pos = abs(int(i) - prev_right) / float(max(prev_width - 1, 1))
            raw += scaled_sigmoid(pos) * prof["fp"]
            fps += 1
        if left >= n:
            break
        width = right - left + 1
        if right >= probation_rows:
            counted += 1
            hits = [int(i) for i in np.nonzero(a[left : right + 1])[0] + left if i >= probation_rows]
            if hits:
                detected += 1
                pos = -(right - hits[0] + 1) / float(width)
                raw += scaled_sigmoid(pos) * prof["tp"] / max_tp
            else:
                raw -= prof["fn"]
        prev_right, prev_width = right, width
        cursor = right + 1
    return NabFile(
        raw=raw,
        null=-prof["fn"] * counted,
        perfect=prof["tp"] * counted,
        windows=counted,
        windows_detected=detected,
        false_positives=fps,
    )


def nab_normalized(files: Sequence[NabFile]) -> float | None:
    """100 * (raw - null) / (perfect - null), summed over files as NAB does for a corpus.

    None when no file has a window (the score is undefined, not zero).
    """
    raw = sum(f.raw for f in files)
    null = sum(f.null for f in files)
    perfect = sum(f.perfect for f in files)
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def _check_windows(windows: Sequence[tuple[int, int]], n: int) -> None:
    prev = -1
    for left, right in windows:
        if not (0 <= left <= right < n) or left <= prev:
            raise ValueError(f"NAB windows must be sorted, disjoint and inside 0..{n - 1}: got {list(windows)}")
        prev = right
