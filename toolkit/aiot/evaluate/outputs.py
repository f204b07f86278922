"""What a device answers per streamed row (:class:`Outputs`) and the interface every
evaluation target implements (:class:`Device`): the reference device, and the monitor on the
host or in QEMU (aiot.evaluate.monitor_device), share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aiot.data import Series

#: Row states written to predictions.csv (the device targets add the monitor's own:
#: no_data, drift, recalibrating).
STATES = ("commissioning", "warmup", "gap", "normal", "anomaly", "recovering")


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
