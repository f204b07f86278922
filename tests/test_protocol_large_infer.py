"""INFER of inputs and outputs larger than one frame (INFER_INPUT / INFER_OUTPUT,
docs/protocol.md): the device app with a real model (2,000 int8 in, 2,000 out) built for the
host and driven by the Python client in-process. Outputs are compared with tflite-micro;
the frame limit the host uses is the one INFO announced; damaged or out-of-order chunks
are refused by the device and retried by the host."""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from aiot.device import protocol as P
from aiot.device.hil import Device, DeviceError
from aiot.errors import ToolkitError

from test_protocol_app import HostApp

FIXTURES = Path(__file__).resolve().parent.parent / "hil_tests" / "fixtures"
WIDE = FIXTURES / "wide2000"  # 2000 -> 4 -> 2000 dense int8 (hil_tests/fixtures/make_wide_model.py)
AE24 = FIXTURES / "ae24"


def _model_c(tmp_path_factory, src: Path) -> Path:
    from aiot.codegen import generate

    out = tmp_path_factory.mktemp(f"{src.name}-c")
    generate((src / "model.tflite").read_bytes(), out, name=src.name)
    return out


@pytest.fixture(scope="module")
def wide_c(tmp_path_factory) -> Path:
    return _model_c(tmp_path_factory, WIDE)


@pytest.fixture(scope="module")
def wide_vectors() -> np.ndarray:
    x = np.load(WIDE / "vectors.npz")["x_int8"]
    return x.reshape(len(x), -1)


@pytest.fixture(scope="module")
def wide_ref():
    from aiot.model.reference import TflmReference

    return TflmReference((WIDE / "model.tflite").read_bytes())


class HostTransport:
    """The host-built app as a Device transport. ``tamper(n, data)`` may change (or act on)
    the n-th write before the app sees it; every write is kept in ``written``."""

    pipeline_depth = 1

    def __init__(self, app: HostApp, tamper=None):
        self.app, self.tamper, self.name = app, tamper, "host-built app"
        self.written: list[bytes] = []
        self._out = b""

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.tamper:
            data = self.tamper(len(self.written) - 1, data)
        self.app.feed(data)

    def read(self, timeout: float) -> bytes:
        import ctypes

        buf = ctypes.create_string_buffer(1 << 16)
        n = self.app.lib.host_take(buf, len(buf))
        if not n:
            time.sleep(min(timeout, 0.005))
        return buf.raw[:n]

    def diagnose(self) -> str:
        return "host build"

    def close(self) -> None:
        pass

    def sent_frames(self) -> list[P.Frame]:
        got = P.StreamDecoder().feed(b"".join(self.written))
        assert all(isinstance(f, P.Frame) for f in got)
        return got


def _kinds(frames) -> list[int]:
    return [f.type for f in frames]


@pytest.mark.parametrize("limit", [None, 300])
def test_wide_model_is_bit_exact_through_the_client_within_the_frame_limit_info_announced(
        wide_c, wide_vectors, wide_ref, limit):
    app = HostApp(*([f"AIOT_FRAME_MAX_PAYLOAD={limit}u"] if limit else []), model_c=wide_c)
    t = HostTransport(app)
    dev = Device(t, timeout=1.0)
    info = dev.info()
    assert (info.input_bytes, info.output_bytes) == (2000, 2000) and info.chunked_infer
    assert info.max_payload == (limit or 1024) and dev.max_payload == info.max_payload
    for x in wide_vectors:
        got = dev.infer(x)
        assert got.output.tobytes() == wide_ref.invoke(x).reshape(-1).tobytes()
    # infer_many (what aiot run / validate use) takes the same path
    many = dev.infer_many(wide_vectors[:2], depth=4)
    assert [r.output.tobytes() for r in many] == [wide_ref.invoke(x).reshape(-1).tobytes() for x in wide_vectors[:2]]
    sent = t.sent_frames()
    assert max(len(f.payload) for f in sent) <= info.max_payload  # never more than the device takes
    chunk = info.max_payload - 4
    runs = len(wide_vectors) + 2
    inputs = [f for f in sent if f.type == P.Msg.INFER_INPUT]
    assert len(inputs) == runs * math.ceil(2000 / chunk)
    offsets = [struct.unpack_from("<I", f.payload)[0] for f in inputs[: math.ceil(2000 / chunk)]]
    assert offsets == list(range(0, 2000, chunk))
    assert b"".join(f.payload[4:] for f in inputs[: len(offsets)]) == wide_vectors[0].tobytes()
    reads = [f for f in sent if f.type == P.Msg.INFER_OUTPUT]
    assert len(reads) == runs * math.ceil((2000 - (info.max_payload - 5)) / chunk)
    assert dev.counters.clean


def test_a_model_that_fits_one_frame_keeps_the_plain_infer(tmp_path_factory):
    """Backward compatible: one INFER with the whole input, its answer carries the whole output."""
    from aiot.model.reference import TflmReference

    app = HostApp(model_c=_model_c(tmp_path_factory, AE24))
    t = HostTransport(app)
    dev = Device(t, timeout=1.0)
    x = np.load(AE24 / "vectors.npz")["x_int8"][0]
    assert dev.infer(x).output.tobytes() == TflmReference((AE24 / "model.tflite").read_bytes()).invoke(x).tobytes()
    assert _kinds(t.sent_frames()) == [P.Msg.INFO, P.Msg.INFER]
    f = app.request(P.Msg.INFER, x.tobytes())
    assert len(f.payload) == 5 + 24


def test_device_refuses_gaps_and_damaged_chunks_and_keeps_what_it_holds(wide_c, wide_vectors, wide_ref):
    app = HostApp(model_c=wide_c)
    x = wide_vectors[1].tobytes()

    def refused(f, why):
        assert f.type == P.Msg.ERROR, f
        code, req, detail = P.unpack_error(f.payload)
        assert code == P.ErrorCode.BAD_PAYLOAD and why in detail, detail
        return req

    assert refused(app.request(P.Msg.INFER_INPUT, P.pack_infer_input(1000, x[1000:])),
                   "offset 1000 leaves a gap: the device holds 0") == P.Msg.INFER_INPUT
    refused(app.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(0, 100)), "no output to read")
    assert app.request(P.Msg.INFER_INPUT, P.pack_infer_input(0, x[:1000])).payload == struct.pack("<I", 1000)
    # the next chunk damaged on the line: BAD_CRC, not acted on
    wire = bytearray(P.encode_frame(P.Msg.INFER_INPUT, 0x40, P.pack_infer_input(1000, x[1000:])))
    wire[500] = wire[500] ^ 0x01 or 0x01
    app.feed(bytes(wire))
    (err,) = app.frames()
    assert err.type == P.Msg.ERROR and P.unpack_error(err.payload)[0] in (P.ErrorCode.BAD_CRC, P.ErrorCode.BAD_ENCODING)
    refused(app.request(P.Msg.INFER, b""), "expected input_bytes = 2000, got 0 (INFER_INPUT sent 1000)")
    refused(app.request(P.Msg.INFER_INPUT, P.pack_infer_input(1000, x[1000:] + b"\x00")), "runs past the input")
    # the first chunk again (a retry) is taken; then the rest
    assert app.request(P.Msg.INFER_INPUT, P.pack_infer_input(0, x[:1000])).payload == struct.pack("<I", 1000)
    assert app.request(P.Msg.INFER_INPUT, P.pack_infer_input(1000, x[1000:])).payload == struct.pack("<I", 2000)
    run = app.request(P.Msg.INFER, b"")
    assert run.type == P.Msg.INFER | P.RESPONSE and len(run.payload) == 1024  # the output cut at the frame's end
    want = wide_ref.invoke(wide_vectors[1]).reshape(-1).tobytes()
    assert run.payload[5:] == want[:1019]
    rest = app.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(1019, 5000))
    assert rest.payload == struct.pack("<I", 1019) + want[1019:]
    assert app.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(1019, 5000)).payload == rest.payload  # idempotent
    refused(app.request(P.Msg.INFER, b""), "got 0 (INFER_INPUT sent 0)")  # the run consumed the input
    app.request(P.Msg.INFER_INPUT, P.pack_infer_input(0, x[:10]))
    refused(app.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(0, 10)), "no output to read")  # a new input discards it


def _nth_chunk(n: int, act):
    """tamper(): apply ``act`` to the write carrying the n-th INFER_INPUT (0-based)."""
    seen = []

    def tamper(i, data):
        frames = [f for f in P.StreamDecoder().feed(data) if isinstance(f, P.Frame)]
        if frames and frames[0].type == P.Msg.INFER_INPUT:
            seen.append(i)
            if len(seen) == n + 1:
                return act(data)
        return data

    return tamper


def test_host_retries_a_chunk_the_device_received_damaged(wide_c, wide_vectors, wide_ref):
    def damage(data):
        b = bytearray(data)
        b[300] = b[300] ^ 0x04 or 0x04  # in the chunk's data: seq and type intact
        return bytes(b)

    app = HostApp(model_c=wide_c)
    dev = Device(HostTransport(app, _nth_chunk(1, damage)), timeout=1.0)
    got = dev.infer(wide_vectors[2])
    assert got.output.tobytes() == wide_ref.invoke(wide_vectors[2]).reshape(-1).tobytes()
    assert dev.counters.retries == 1
    assert dev.stats()["link"]["bad_crc"] == 1


def test_host_starts_again_when_the_device_lost_the_chunks_it_held(wide_c, wide_vectors, wide_ref):
    app = HostApp(model_c=wide_c)

    def reset(data):  # the device restarts between two chunks: the next one leaves a gap
        app.lib.aiot_app_init()
        return data

    dev = Device(HostTransport(app, _nth_chunk(1, reset)), timeout=1.0)
    got = dev.infer(wide_vectors[3])
    assert got.output.tobytes() == wide_ref.invoke(wide_vectors[3]).reshape(-1).tobytes()
    assert dev.counters.retries == 1


def test_host_reports_a_device_that_keeps_refusing_chunks(wide_c, wide_vectors):
    app = HostApp(model_c=wide_c)

    def reset(data):
        app.lib.aiot_app_init()
        return data

    def always(i, data):
        frames = [f for f in P.StreamDecoder().feed(data) if isinstance(f, P.Frame)]
        if frames and frames[0].type == P.Msg.INFER_INPUT and struct.unpack_from("<I", frames[0].payload)[0]:
            return reset(data)
        return data

    dev = Device(HostTransport(app, always), timeout=1.0, retries=2)
    with pytest.raises(DeviceError) as e:
        dev.infer(wide_vectors[0])
    assert "leaves a gap" in e.value.message and "3 attempts" in e.value.message
    assert "reset" in e.value.hint


def test_a_lost_run_costs_the_whole_sequence_again(wide_c, wide_vectors, wide_ref):
    """The run consumed the input, so after a lost INFER the chunks are sent again."""
    app = HostApp(model_c=wide_c)
    lost = []

    def lose_first_run(i, data):
        frames = [f for f in P.StreamDecoder().feed(data) if isinstance(f, P.Frame)]
        if frames and frames[0].type == P.Msg.INFER and not lost:
            lost.append(i)
            return b""  # never reaches the device
        return data

    t = HostTransport(app, lose_first_run)
    dev = Device(t, timeout=0.3)
    assert dev.infer(wide_vectors[4]).output.tobytes() == wide_ref.invoke(wide_vectors[4]).reshape(-1).tobytes()
    assert lost and dev.counters.retries == 1
    assert _kinds(t.sent_frames()).count(P.Msg.INFER_INPUT) == 2 * 2  # 2 chunks, twice


def test_check_parity_of_aiot_run_takes_the_chunked_path(wide_c, wide_vectors):
    """`aiot run` and `aiot demo` compare through check_parity: same client, same split."""
    from aiot.device.parity import check_parity
    from aiot.target.boards import get_board

    dev = Device(HostTransport(HostApp(model_c=wide_c)), timeout=1.0)
    rep = check_parity(dev, get_board("mps2-an386"), (WIDE / "model.tflite").read_bytes(), wide_vectors)
    assert rep.ok and rep.windows == len(wide_vectors) and rep.outputs.shape == (len(wide_vectors), 2000)
