"""INFER of a model whose input and output (2,000 int8 each) exceed one frame, on the
board: INFER_INPUT chunks, INFER_OUTPUT reads (docs/protocol.md). Outputs byte-identical to
tflite-micro; a firmware built with a smaller frame limit makes the host split finer; a
damaged chunk is refused and the device keeps what it held. Builds its own firmware from
hil_tests/fixtures/wide2000: QEMU only."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from aiot.device import protocol as P

WIDE = Path(__file__).resolve().parent / "fixtures" / "wide2000"


@pytest.fixture(scope="module")
def wide(board, pytestconfig):
    if pytestconfig.getoption("--transport") != "qemu" or pytestconfig.getoption("--firmware"):
        pytest.skip("builds its own firmware (the wide model): QEMU only")
    from aiot import paths
    from aiot.codegen import generate
    from aiot.model.reference import TflmReference

    c = paths.build_dir() / "hil" / "wide2000-c"
    generate((WIDE / "model.tflite").read_bytes(), c, name="wide2000")
    x = np.load(WIDE / "vectors.npz")["x_int8"]
    return c, x.reshape(len(x), -1), TflmReference((WIDE / "model.tflite").read_bytes())


# (board, frame limit) -> the wide firmware: built once per run, however many tests boot it
_BUILT: dict[tuple[str, int | None], Path] = {}


def _session(board, c, limit=None):
    from aiot import paths
    from aiot.device.hil import open_device
    from aiot.target.firmware import build

    if (board.name, limit) not in _BUILT:
        defines = [f"AIOT_FRAME_MAX_PAYLOAD={limit}u"] if limit else []
        _BUILT[board.name, limit] = build(board, paths.build_dir() / "hil" / f"{board.name}-wide{limit or ''}", c,
                                          defines=defines).elf
    return open_device(board=board, elf=_BUILT[board.name, limit], transport="qemu", timeout=3.0)


@pytest.mark.parametrize("limit", [None, 300])
def test_wide_model_is_bit_exact_within_the_frame_limit_the_device_announced(board, wide, limit):
    c, xs, ref = wide
    with _session(board, c, limit) as dev:
        info = dev.info()
        assert info.chunked_infer and info.max_payload == (limit or 1024) == dev.max_payload
        assert info.input_bytes == info.output_bytes == 2000
        sent = []
        write = dev.transport.write
        dev.transport.write = lambda data: (sent.append(data), write(data))[1]
        for x in xs:
            assert dev.infer(x).output.tobytes() == ref.invoke(x).reshape(-1).tobytes()
        frames = P.StreamDecoder().feed(b"".join(sent))
        assert frames and max(len(f.payload) for f in frames) <= info.max_payload
        assert sum(f.type == P.Msg.INFER_INPUT for f in frames) == len(xs) * -(-2000 // (info.max_payload - 4))
        assert dev.counters.clean


def test_damaged_chunk_is_refused_and_the_device_keeps_what_it_held(board, wide):
    c, xs, ref = wide
    x = xs[0].tobytes()
    with _session(board, c) as dev:
        assert dev.request(P.Msg.INFER_INPUT, P.pack_infer_input(0, x[:1000])).payload == struct.pack("<I", 1000)
        wire = bytearray(P.encode_frame(P.Msg.INFER_INPUT, 0x51, P.pack_infer_input(1000, x[1000:])))
        wire[600] = wire[600] ^ 0x02 or 0x02
        dev.send_raw(b"\x00" + bytes(wire))
        errs = [f for f in dev.read_frames(3.0, want=1) if isinstance(f, P.Frame) and f.type == P.Msg.ERROR]
        assert errs and P.unpack_error(errs[0].payload)[0] in (P.ErrorCode.BAD_CRC, P.ErrorCode.BAD_ENCODING)
        with pytest.raises(Exception, match="leaves a gap: the device holds 1000"):
            dev.request(P.Msg.INFER_INPUT, P.pack_infer_input(1500, x[1500:]))
        assert dev.request(P.Msg.INFER_INPUT, P.pack_infer_input(1000, x[1000:])).payload == struct.pack("<I", 2000)
        run = dev.request(P.Msg.INFER, b"")
        status, _ticks, first = P.unpack_infer(run.payload, 2000, 1024)
        rest = dev.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(len(first), 2000)).payload[4:]
        assert status == 0 and first + rest == ref.invoke(xs[0]).reshape(-1).tobytes()
