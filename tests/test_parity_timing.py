"""The instructions-per-inference figure of check_parity (aiot demo, aiot run): not inflated
by requests in flight, and reported with its resolution.

The simulated device behaves as the firmware does on mps2-an386 under -icount shift=0:
SysTick counts one tick per 40 instructions, an inference starts at a host-dependent point
between two ticks, and bytes of requests queued behind the running one raise receive
interrupts whose instructions land inside the measured ticks. Real QEMU: tests/test_demo.py."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from aiot.device import protocol as P
from aiot.target.boards import get_board
from aiot.device.hil import Device
from aiot.device.parity import ParityReport, check_parity
from aiot.model.reference import TflmReference

TFLITE = (Path(__file__).parent / "fixtures" / "tflite" / "good_dense.tflite").read_bytes()
INSTRUCTIONS = 2864        # what one inference really executes
PER_TICK = 40              # 1e9 / 25 MHz: instructions per SysTick tick under -icount shift=0
RX_ISR_INSTRUCTIONS = 25   # one receive interrupt (per byte arriving during an inference)


class SimulatedQemu:
    """A QEMU transport stand-in: it pipelines like QemuTransport (depth 16) and answers
    INFO and INFER with tflite-micro's outputs and SysTick-quantized ticks."""

    name = "simulated QEMU"
    pipeline_depth = 16

    def __init__(self, seed: int = 0):
        self.ref = TflmReference(TFLITE)
        self.info = P.DeviceInfo(P.PROTO_MAJOR, 0, P.DeviceInfo.FLAG_MODEL, 0x1234, 8, 8, 64, 0.5, 0, 0.5, 0,
                                 25_000_000, 25_000_000, 1024, 3, "sim", "mps2-an386", "good_dense")
        self.rng = np.random.default_rng(seed)
        self.decoder = P.StreamDecoder()
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        frames = [f for f in self.decoder.feed(data) if isinstance(f, P.Frame)]
        for k, f in enumerate(frames):
            if f.type == P.Msg.INFO:
                self.out += P.encode_frame(f.type | P.RESPONSE, f.seq, P.pack_info(self.info))
            elif f.type == P.Msg.INFER:
                behind = sum(len(P.encode_frame(g.type, g.seq, g.payload)) for g in frames[k + 1 :])
                # some of the queued bytes arrive while this inference runs
                isr = RX_ISR_INSTRUCTIONS * int(self.rng.integers(0, min(behind, 8) + 1))
                phase = int(self.rng.integers(0, PER_TICK))  # where between two ticks it starts
                ticks = (phase + INSTRUCTIONS + isr) // PER_TICK
                y = self.ref.invoke(np.frombuffer(f.payload, np.int8)).reshape(-1)
                self.out += P.encode_frame(f.type | P.RESPONSE, f.seq, struct.pack("<BI", 0, ticks) + y.tobytes())

    def read(self, timeout: float) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def diagnose(self) -> str:
        return "simulated"

    def close(self) -> None:
        pass


def _inputs(n: int) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, size=(n, 8)).astype(np.int8)


def test_requests_in_flight_do_not_count_in_the_instruction_figure():
    rep = check_parity(Device(SimulatedQemu()), get_board("mps2-an386"), TFLITE, _inputs(400))
    assert rep.ok and rep.windows == 400
    # every inference reads as one of the two tick counts around its true length
    assert set(rep.ticks) <= {INSTRUCTIONS // PER_TICK, INSTRUCTIONS // PER_TICK + 1}
    assert rep.instructions_per_tick == PER_TICK
    assert abs(rep.instructions_per_inference - INSTRUCTIONS) <= rep.instructions_ci95


def test_the_figure_is_reported_with_its_resolution():
    rep = check_parity(Device(SimulatedQemu(seed=2)), get_board("mps2-an386"), TFLITE, _inputs(400))
    # 400 readings of 71 or 72 ticks: the mean is known to about +-2 instructions, not to one
    assert 1.0 < rep.instructions_ci95 < 3.0
    text = rep.instructions_text()
    assert f"{rep.instructions_per_inference:,.0f} ± {rep.instructions_ci95:,.0f}" in text
    assert "mean of 400" in text and "40 instructions a tick" in text and "read 2,840 or 2,880" in text


def _report(ticks: list[int], board: str = "mps2-an386") -> ParityReport:
    b = get_board(board)
    per = 1e9 / b.systick_hz if b.systick_hz else None
    return ParityReport(board=b.name, windows=len(ticks), mismatched_windows=0, mismatched_bytes=0, max_abs_error=0,
                        ticks=ticks, instructions_per_inference=float(np.mean(ticks)) * per if per else None,
                        outputs=np.zeros((0,), np.int8), instructions_per_tick=per)


def test_many_readings_narrow_the_interval_below_one_instruction():
    rep = _report([71, 72] * 4000)
    assert rep.instructions_ci95 == pytest.approx(1.96 * 0.5 / np.sqrt(8000) * 40, rel=1e-3)
    assert rep.instructions_text().startswith("2,860.0 ± 0.4 (mean of 8000")


def test_one_reading_is_known_to_a_tick_and_hardware_has_no_instruction_figure():
    assert _report([72]).instructions_ci95 == 40
    assert "2,880 ± 40" in _report([72]).instructions_text()
    hw = _report([1234, 1240], board="nucleo-f446re")
    assert hw.instructions_ci95 is None and hw.instructions_text() == "n/a"
