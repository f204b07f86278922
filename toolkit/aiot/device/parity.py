"""Orchestration shared by `aiot run`, `aiot demo` and the tests: stream input vectors
(int8; int16 for a 16x8 model; every input of a model with several, one after the other)
through a device (QEMU or a real board) and check every output byte against
tflite-micro."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aiot.target.boards import Board
from aiot.progress import Bar
from aiot.model.reference import TflmReference


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
    #: instructions one SysTick tick stands for (QEMU boards; None on hardware)
    instructions_per_tick: float | None = None

    @property
    def ok(self) -> bool:
        return self.mismatched_bytes == 0

    @property
    def instructions_ci95(self) -> float | None:
        """Half-width of the 95% interval of ``instructions_per_inference``.

        SysTick counts whole ticks (40 instructions on a 25 MHz QEMU board), so one
        inference reads as one of the two tick counts around its length, depending on where
        between two ticks it starts; the host's timing sets that, so the readings, and their
        mean, differ from run to run. The mean is an unbiased estimate; this is its spread."""
        if self.instructions_per_tick is None or not self.ticks:
            return None
        if len(self.ticks) < 2:
            return self.instructions_per_tick  # one reading: known to a tick
        t = np.asarray(self.ticks, dtype=np.float64)
        return float(1.96 * t.std(ddof=1) / np.sqrt(len(t)) * self.instructions_per_tick)

    def instructions_text(self) -> str:
        """The instruction figure with its resolution, e.g. ``2,864.2 ± 0.5 (mean of 7166, 95%
        interval; SysTick counts 40 instructions a tick: each inference read 2,840 or 2,880)``;
        "n/a" without a QEMU SysTick rate (hardware counts cycles, not instructions)."""
        ipi, ci, per = self.instructions_per_inference, self.instructions_ci95, self.instructions_per_tick
        if ipi is None or ci is None or per is None:
            return "n/a"
        lo, hi = min(self.ticks) * per, max(self.ticks) * per
        reads = f"{lo:,.0f}" if lo == hi else f"{lo:,.0f} or {hi:,.0f}" if hi - lo == per else f"{lo:,.0f} to {hi:,.0f}"
        digits = 1 if ci < 1 else 0
        return (f"{ipi:,.{digits}f} ± {ci:,.{digits}f} (mean of {len(self.ticks)}, 95% interval; SysTick counts "
                f"{per:g} instructions a tick: each inference read {reads})")


def instructions_from_ticks(board: Board, ticks):
    """Under `-icount shift=0` one instruction is 1 ns: ticks (a number or an array) ->
    instructions, or None when the board has no QEMU SysTick rate."""
    if not board.systick_hz:
        return None
    return ticks * 1e9 / board.systick_hz


def check_parity(device, board: Board, tflite: bytes, x_int8: np.ndarray, label: str = "inferences") -> ParityReport:
    """Run every row of ``x_int8`` on ``device`` and on tflite-micro; compare bytes.

    One request at a time, on QEMU too: pipelined, the next requests' bytes arrive while the
    device runs this one, and its receive interrupt's instructions land inside the measured
    ticks (mps2-an386: windows read 73, 74, even 92 ticks instead of 71-72, and the mean
    came out 1 to 9 instructions high, by a different amount every run)."""
    from aiot.errors import ToolkitError
    from aiot.model.tflite import float_input_quantize, float_output_dequantize, parse

    g = parse(tflite)
    if float_input_quantize(g) is not None or float_output_dequantize(g) is not None:
        raise ToolkitError("the parity check streams int8 test vectors; this model takes or gives float32 around "
                           "its int8 graph", hint="validate it with `aiot validate --model MODEL.tflite` (float "
                           "vectors in, every float output compared bit for bit with tflite-micro's)")
    ref = TflmReference(tflite)
    outs, ticks = [], []
    mismatched_windows = mismatched_bytes = max_err = 0
    first = None
    chunk = 64
    with Bar(len(x_int8), label) as bar:
        for start in range(0, len(x_int8), chunk):
            xs = x_int8[start : start + chunk]
            for i, x, r in zip(range(start, start + len(xs)), xs, device.infer_many(xs, depth=1)):
                want = ref.invoke(x).reshape(-1)
                got = np.asarray(r.output).reshape(-1)  # every output in order (int8; int16 in the 16x8 mode)
                diff = np.abs(got.astype(np.int32) - want.astype(np.int32)) if got.shape == want.shape else None
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
        instructions_per_tick=instructions_from_ticks(board, 1.0),
    )
