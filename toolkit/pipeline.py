"""Orchestration shared by `aiot run`, `aiot demo` and the tests: stream int8 vectors
through a device (QEMU or a real board) and check every output byte against
tflite-micro."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boards import Board
from .progress import Bar
from .reference import TflmReference


@dataclass
class ParityReport:
    board: str
    windows: int
    mismatched_windows: int
    mismatched_bytes: int
    max_abs_error: int
    ticks: list[int] = field(repr=False)
    instructions_per_inference: float | None
    outputs: np.ndarray = field(repr=False)
    first_mismatch: int | None = None

    @property
    def ok(self) -> bool:
        return self.mismatched_bytes == 0


def instructions_from_ticks(board: Board, ticks):
    """Under `-icount shift=0` one instruction is 1 ns: ticks (a number or an array) ->
    instructions, or None when the board has no QEMU SysTick rate."""
    if not board.systick_hz:
        return None
    return ticks * 1e9 / board.systick_hz


def check_parity(device, board: Board, tflite: bytes, x_int8: np.ndarray, label: str = "inferences") -> ParityReport:
    """Run every row of ``x_int8`` on ``device`` and on tflite-micro; compare bytes.

    Requests go out in chunks through ``device.infer_many``: pipelined on QEMU, one at a
    time on a real serial port (the client picks the depth per transport)."""
    ref = TflmReference(tflite)
    outs, ticks = [], []
    mismatched_windows = mismatched_bytes = max_err = 0
    first = None
    chunk = 64
    with Bar(len(x_int8), label) as bar:
        for start in range(0, len(x_int8), chunk):
            xs = x_int8[start : start + chunk]
            for i, x, r in zip(range(start, start + len(xs)), xs, device.infer_many(xs)):
                want = ref.invoke(x).reshape(-1)
                got = np.asarray(r.output, dtype=np.int8).reshape(-1)
                diff = np.abs(got.astype(np.int16) - want.astype(np.int16)) if got.shape == want.shape else None
                if diff is None or diff.any():
                    mismatched_windows += 1
                    mismatched_bytes += int((diff != 0).sum()) if diff is not None else int(want.size)
                    max_err = max(max_err, int(diff.max()) if diff is not None else 255)
                    first = i if first is None else first
                outs.append(got)
                ticks.append(int(r.ticks))
            bar.update(len(xs))
    avg_ticks = float(np.mean(ticks)) if ticks else 0.0
    return ParityReport(
        board=board.name, windows=len(x_int8), mismatched_windows=mismatched_windows,
        mismatched_bytes=mismatched_bytes, max_abs_error=max_err, ticks=ticks,
        instructions_per_inference=instructions_from_ticks(board, avg_ticks),
        outputs=np.stack(outs) if outs else np.zeros((0,), np.int8), first_mismatch=first,
    )
