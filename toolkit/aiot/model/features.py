"""Model input features: normalized sliding windows. The on-device C code implements
exactly the same formula, so keep it this simple.

For a series with C channels, samples x[t, c] and window length W:

1. Normalization, per channel, with statistics of the TRAINING rows only::

       z[t, c] = clip((x[t, c] - mean[c]) / std[c], -CLIP, +CLIP)       CLIP = 8

   ``mean``/``std`` are the mean and population standard deviation (ddof=0) of the
   valid training samples of channel c; a constant channel gets std = 1. They are
   stored as float32 and the formula is evaluated in float32 arithmetic (subtract,
   divide, clip), which is what the C code does, so both give identical bits.

2. The window ending at row t (t >= W-1) is the W rows t-W+1 .. t, flattened
   time-major (oldest first)::

       f = [z[t-W+1, 0], z[t-W+1, 1], ..., z[t-W+1, C-1], z[t-W+2, 0], ..., z[t, C-1]]

   A window is *complete* when all its W*C samples are present and no gap in time lies
   inside it (consecutive timestamps at most GAP_FACTOR = 2.5 sample periods apart, so a
   one-period clock slip is not a gap; see aiot.data.GAP_FACTOR).
   Incomplete windows are never scored or trained on; they are counted and reported.

3. Label of a window = label of its last row (the device decides when that row arrives).

4. int8 model input (TFLite ``Quantize`` semantics: float32 division, round half
   away from zero)::

       q = clamp(round_half_away(f / input_scale) + input_zero_point, -128, 127)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiot.data import GAP_FACTOR, Series
from aiot.errors import ToolkitError

CLIP = 8.0


@dataclass
class Normalization:
    mean: np.ndarray  #: (C,) float32
    std: np.ndarray  #: (C,) float32

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """(N, C) raw -> (N, C) float32 normalized and clipped; NaN stays NaN."""
        z = (np.asarray(values, dtype=np.float32) - self.mean) / self.std
        return np.clip(z, np.float32(-CLIP), np.float32(CLIP))

    def to_json(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std], "clip": CLIP}

    @classmethod
    def from_json(cls, d: dict) -> "Normalization":
        return cls(mean=np.asarray(d["mean"], dtype=np.float32), std=np.asarray(d["std"], dtype=np.float32))


def fit_normalization(series: Series) -> Normalization:
    """Per-channel mean and std of the valid samples in ``series`` (the training rows)."""
    counts = series.valid.sum(axis=0)
    empty = [series.channels[i] for i in np.nonzero(counts == 0)[0]]
    if empty:
        raise ToolkitError(
            f"channel(s) {', '.join(empty)} have no valid sample in the training rows",
            hint="drop these channels (--channels) or train on more rows",
        )
    vals = np.where(series.valid, series.values, 0.0)
    mean = vals.sum(axis=0) / counts
    var = (np.where(series.valid, series.values - mean, 0.0) ** 2).sum(axis=0) / counts
    std = np.sqrt(var)
    std[std <= 1e-12] = 1.0
    return Normalization(mean=mean, std=std)


@dataclass
class Windows:
    """All windows of a series (one per end row), complete or not."""

    x: np.ndarray  #: (M, W*C) float32 features, time-major; NaN where missing; read-only view
    end_rows: np.ndarray  #: (M,) int64 row index of each window's last sample
    complete: np.ndarray  #: (M,) bool
    timestamps: np.ndarray  #: (M,) float64 time of each window's last sample
    labels: np.ndarray | None  #: (M,) int8 label of the last sample
    any_fault: np.ndarray | None  #: (M,) bool: some row of the window is labelled 1

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, mask: np.ndarray) -> "Windows":
        return Windows(
            x=self.x[mask],
            end_rows=self.end_rows[mask],
            complete=self.complete[mask],
            timestamps=self.timestamps[mask],
            labels=None if self.labels is None else self.labels[mask],
            any_fault=None if self.any_fault is None else self.any_fault[mask],
        )


def make_windows(series: Series, norm: Normalization, window: int) -> Windows:
    """Every window of ``window`` rows of ``series`` (stride 1), normalized with ``norm``."""
    if window < 1:
        raise ToolkitError(f"window must be at least 1 sample, got {window}")
    n, c = series.values.shape
    if n < window:
        where = f" in {series.source}" if series.source else ""
        raise ToolkitError(
            f"{n} row(s){where}, too few for one window of {window} samples",
            hint="use a longer recording or a smaller --window",
        )
    if norm.mean.shape != (c,):
        raise ToolkitError(f"normalization has {norm.mean.shape[0]} channel(s), the data has {c}")
    z = norm.apply(series.values)
    m = n - window + 1
    # (M, C, W) strided view -> (M, W, C) -> (M, W*C): still a view of z (row stride C), so
    # overlapping windows cost no memory; read-only so no caller edits many windows at once.
    x = np.lib.stride_tricks.sliding_window_view(z, window, axis=0).transpose(0, 2, 1).reshape(m, window * c)
    x.flags.writeable = False
    complete = _window_count(~series.valid.all(axis=1), window) == 0
    if n > 1 and window > 1:
        # a window spans the window-1 steps that start at its first row
        gap = series.breaks()  # lost rows, or a clock that stepped back (a time reset)
        complete &= _window_count(gap, window - 1) == 0
    end_rows = np.arange(window - 1, n, dtype=np.int64)
    labels = any_fault = None
    if series.labels is not None:
        labels = series.labels[end_rows].astype(np.int8)
        any_fault = _window_count(series.labels != 0, window) > 0
    return Windows(
        x=x, end_rows=end_rows, complete=complete, timestamps=series.timestamps[end_rows], labels=labels,
        any_fault=any_fault,
    )


def _window_count(flags: np.ndarray, span: int) -> np.ndarray:
    """How many of ``span`` consecutive ``flags`` are set, for every start position."""
    cs = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return cs[span:] - cs[:-span]


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float features -> int8 model input, rounding half away from zero like TFLite."""
    v = (np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)  # exact in float64 for any float32 v
    return np.clip(r + int(zero_point), -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) - int(zero_point)) * float(scale)
