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


@dataclass(frozen=True)
class DeviceEvent:
    """One event the device's monitor emitted (aiot.monitor.Event: monitor.h's
    aiot_monitor_event_t), placed in the recording it was streamed from."""

    row: int  #: the file row whose sample the device emitted it at (the last row pushed at or before its time)
    time: float  #: its time in the recording's clock (s): the device's milliseconds since the file's first row, back in the file's time
    type: str  #: aiot.monitor.EVENT_TYPES name
    channel: int | None  #: its main channel (per-sensor events: that sensor), None when it names none
    channels: tuple[int, ...]  #: every channel it names (alerts: the window's top contributors)
    value: float  #: meaning and unit per type (monitor.h; aiot.evaluate.events.UNITS)
    severity: int
    state: str  #: the monitor's state after it
    seq: int  #: the device's event counter (a jump: events the ring dropped)


@dataclass
class Outputs:
    """Per-row device answers for the streamed (non-commissioning) rows."""

    state: list[str]
    score: np.ndarray  #: (N,) float, NaN where no window could be scored
    confidence: np.ndarray  #: (N,) float in 0..1
    alert: np.ndarray  #: (N,) int8 0/1
    channel_scores: np.ndarray | None = None  #: (N, C) per-sensor share of the score
    #: every event the device's monitor emitted from the start of commissioning, oldest first;
    #: None on a target without the monitor (the reference target has no events)
    events: list[DeviceEvent] | None = None
    #: events the device's ring overwrote before they were drained (its events_dropped)
    events_dropped: int = 0


class Device(Protocol):
    target: str

    def commission(self, head: Series) -> dict:
        """Fit the installation's baseline on normal rows; return what was fitted (for report.json)."""

    def stream(self, series: Series, start: int) -> Outputs:
        """Push rows ``start..`` of ``series`` one at a time (earlier rows may fill the window)."""
