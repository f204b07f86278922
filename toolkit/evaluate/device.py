"""The "device" the evaluation streams a recording through, behind one small interface.

A device is commissioned on an installation's first rows, then fed the rest one sample
at a time; per row it answers state, score, confidence, alert (and, when it can, each
sensor's share of the score). Targets plug in here:

- ``host``:  the firmware's monitor C built for the host (``toolkit.monitor``);
- ``qemu:BOARD``: the real firmware in QEMU over the serial protocol;
- ``reference``: the int8 model through tflite-micro's interpreter (the project's golden
  reference) with the simple alert rule written out in :class:`ReferenceDevice`. It is
  the yardstick the C targets must agree with, not a replacement for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..data import Series
from ..errors import ToolkitError

#: Row states written to predictions.csv.
STATES = ("commissioning", "warmup", "gap", "normal", "anomaly")


@dataclass
class Outputs:
    """Per-row device answers for the streamed (non-commissioning) rows."""

    state: list[str]
    score: np.ndarray  #: (N,) float, NaN where no window could be scored
    confidence: np.ndarray  #: (N,) float in 0..1
    alert: np.ndarray  #: (N,) int8 0/1
    channel_scores: np.ndarray | None = None  #: (N, C) per-sensor share of the score


class Device(Protocol):
    target: str

    def commission(self, head: Series) -> dict:
        """Fit the installation's baseline on normal rows; return what was fitted (for report.json)."""

    def stream(self, series: Series, start: int) -> Outputs:
        """Push rows ``start..`` of ``series`` one at a time (earlier rows may fill the window)."""


@dataclass
class AlertRule:
    """When a stream of window scores becomes an alert (same for every file).

    An alert starts after ``raise_after`` consecutive windows above the threshold and
    ends after ``clear_after`` consecutive windows below it: one noisy window is not an
    incident, and one quiet window does not end one.
    """

    # Defaults = the pick of toolkit.evaluate.tuning (anomaly-free data + injected faults,
    # no SKAB experiment row involved); see docs/evaluation.md.
    threshold_quantile: float = 0.99  #: of the commissioning windows' scores
    threshold_margin: float = 1.5  #: threshold = margin * quantile
    raise_after: int = 3
    clear_after: int = 5
    confidence_span: int = 8  #: confidence = share of the last N windows above threshold
    smooth: int = 10  #: score = mean of the last `smooth` window scores (noise averages out, a fault stays)
    noise_floor: float = 1.0  #: per-sensor scale >= noise_floor x the fleet's (long-term) spread
    max_slip: int = 2  #: a window may span timestamp steps up to this many periods (clock jitter)
    #: "mean": mean squared error over the window (all sensors pooled); "max_channel": the
    #: worst sensor's error relative to its own commissioning error (a one-sensor fault is
    #: not diluted by the healthy ones)
    score: str = "mean"

    def to_json(self) -> dict:
        return dict(self.__dict__)


def apply_rule(scores: np.ndarray, threshold: float, rule: AlertRule) -> tuple[np.ndarray, np.ndarray]:
    """(alert 0/1, confidence) per row from scores.

    A NaN score (no complete window: a gap) neither votes for nor against: the alert
    holds, as on the device.
    """
    n = scores.size
    alert = np.zeros(n, np.int8)
    conf = np.zeros(n, np.float64)
    above_run = below_run = 0
    on = False
    recent: list[int] = []
    for i in range(n):
        if not np.isfinite(scores[i]):
            alert[i] = on
            conf[i] = conf[i - 1] if i else 0.0
            continue
        hot = bool(scores[i] > threshold)
        above_run = above_run + 1 if hot else 0
        below_run = 0 if hot else below_run + 1
        if not on and above_run >= rule.raise_after:
            on = True
        elif on and below_run >= rule.clear_after:
            on = False
        alert[i] = on
        recent.append(int(hot))
        if len(recent) > rule.confidence_span:
            recent.pop(0)
        conf[i] = sum(recent) / rule.confidence_span
    return alert, conf


class ReferenceDevice:
    """Int8 model via tflite-micro + per-installation normalization and threshold."""

    target = "reference"

    def __init__(self, package: Path, rule: AlertRule):
        from ..package import load_package
        from ..reference import TflmReference

        self.pkg = load_package(package)
        self.rule = rule
        self.model = TflmReference(self.pkg.tflite_bytes())
        q = self.pkg.manifest["model"]
        self.in_scale, self.in_zp = float(q["input_scale"]), int(q["input_zero_point"])
        self.out_scale, self.out_zp = float(q["output_scale"]), int(q["output_zero_point"])
        self.norm = None
        self.threshold = None
        self.ref = None  #: (C,) mean per-sensor error over the commissioning windows

    def combine(self, total: np.ndarray, per_channel: np.ndarray) -> np.ndarray:
        """Window score from the pooled and per-sensor errors, per ``rule.score``."""
        if self.rule.score == "mean":
            return total
        if self.rule.score == "max_channel":
            return (per_channel / self.ref).max(axis=1) if len(per_channel) else total
        raise ToolkitError(f"unknown score kind '{self.rule.score}'", hint="use mean or max_channel")

    def _scores(self, series: Series, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from ..features import dequantize, make_windows, quantize_input

        w = make_windows(series, self.norm, self.pkg.window)
        complete = _complete(series, w.end_rows, self.pkg.window, self.rule.max_slip)
        keep = complete if rows is None else (complete & (w.end_rows >= rows))
        x = w.x[keep]
        qin = quantize_input(np.nan_to_num(x), self.in_scale, self.in_zp)
        qout = self.model.run(qin).reshape(len(qin), -1) if len(qin) else np.zeros((0, x.shape[1]), np.int8)
        # Same score as train/quantize: the float features against the int8 reconstruction.
        xout = dequantize(qout, self.out_scale, self.out_zp)
        err = (np.nan_to_num(x).astype(np.float64) - xout) ** 2
        c = len(series.channels)
        return w.end_rows[keep], err.mean(axis=1), err.reshape(len(err), -1, c).mean(axis=1)

    def commission(self, head: Series) -> dict:
        from ..features import fit_normalization

        h = head.slice(0, head.rows)
        if h.labels is not None:  # a labelled fault in the commissioning rows must not set the baseline
            h.valid &= (h.labels == 0)[:, None]
        self.norm = fit_normalization(h)
        if self.rule.noise_floor > 0:
            fleet_std = self.pkg.normalization.std
            self.norm.std = np.maximum(self.norm.std, np.float32(self.rule.noise_floor) * fleet_std)
        _, total, per_ch = self._scores(h)
        self.ref = np.maximum(per_ch.mean(axis=0), 1e-6) if len(per_ch) else None
        scores = _smooth(self.combine(total, per_ch), self.rule.smooth)
        if scores.size == 0:
            raise ToolkitError(
                f"{head.source}: no complete window of {self.pkg.window} rows in the {head.rows} commissioning rows",
                hint="commission on more rows (--train-rows) or fill the gaps",
            )
        self.threshold = float(np.quantile(scores, self.rule.threshold_quantile) * self.rule.threshold_margin)
        return {"threshold": self.threshold, "commissioning_windows": int(scores.size),
                "normalization": self.norm.to_json()}

    def stream(self, series: Series, start: int) -> Outputs:
        n = series.rows - start
        end_rows, total, per_ch = self._scores(series, rows=np.int64(start))
        score = np.full(n, np.nan)
        chs = np.full((n, len(series.channels)), np.nan)
        score[end_rows - start] = _smooth(self.combine(total, per_ch), self.rule.smooth)
        chs[end_rows - start] = per_ch
        alert, conf = apply_rule(score, self.threshold, self.rule)
        state = []
        for i in range(n):
            if not np.isfinite(score[i]):
                state.append("warmup" if start + i < self.pkg.window - 1 else "gap")
            else:
                state.append("anomaly" if alert[i] else "normal")
        return Outputs(state, score, conf, alert, chs)


def _complete(series: Series, end_rows: np.ndarray, window: int, max_slip: int) -> np.ndarray:
    """Windows with every sample present and no timestamp step over ``max_slip`` periods
    between their first and last row (a one-sample clock slip is jitter, not a gap)."""
    first = end_rows - window + 1
    bad_row = np.concatenate(([0], np.cumsum(~series.valid.all(axis=1))))
    rows_ok = (bad_row[end_rows + 1] - bad_row[first]) == 0
    big_step = np.concatenate(([0], np.cumsum(np.diff(series.timestamps) > max_slip * series.sample_period_s + 1e-9)))
    # big_step[i] counts the big steps among rows 0..i; steps inside = those arriving at rows first+1..end
    steps_ok = (big_step[end_rows] - big_step[first]) == 0
    return rows_ok & steps_ok


def _smooth(scores: np.ndarray, k: int) -> np.ndarray:
    """Trailing mean of the last ``k`` scores (fewer at the start); causal, like the device."""
    if k <= 1 or scores.size == 0:
        return scores
    c = np.cumsum(np.concatenate(([0.0], scores)))
    idx = np.arange(1, scores.size + 1)
    lo = np.maximum(idx - k, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def make_device(target: str, package: Path, rule: AlertRule, knobs: dict | None = None) -> Device:
    """The device for ``--target``; a clear error for targets this tree cannot run yet."""
    if target == "reference":
        return ReferenceDevice(package, rule)
    if target == "host":
        from .monitor_device import MonitorDevice

        meta = json.loads((Path(package) / "meta.json").read_text())
        return MonitorDevice(package, int(meta["window"]), "host", knobs)
    if target.startswith("qemu:"):
        from .monitor_device import MonitorDevice

        meta = json.loads((Path(package) / "meta.json").read_text())
        return MonitorDevice(package, int(meta["window"]), target, knobs)
    raise ToolkitError(f"unknown --target '{target}'", hint="use host, qemu:BOARD or reference")
