"""INFO, inference parity with tflite-micro, malformed frames, resynchronization, timeouts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from aiot.device import protocol as P
from aiot.errors import ToolkitError
from aiot.device.hil import DeviceError, DeviceTimeout

FRAMES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "frames" / "malformed.json"


def test_info(device, board, require_model, hil_model):
    info = device.info(refresh=True)
    assert (info.proto_major, info.proto_minor) == (P.PROTO_MAJOR, P.PROTO_MINOR)
    assert info.board == board.name
    assert info.has_model and info.has_monitor
    assert info.model_hash == hil_model.crc
    assert info.input_bytes == hil_model.x_int8.shape[1]
    assert info.tick_hz > 0 and info.cpu_hz == board.cpu_hz
    assert info.max_payload >= info.input_bytes
    # the build follows the board file: uart.rx_irq -> interrupt-driven receive, WFI when idle
    assert info.sleeps_when_idle == ("AIOT_UART_RX_IRQ" in board.defines())
    # protocol 1.1: the chip's unique id where the board file names its register; the suite's
    # firmware for the others is built without an id
    if board.device_uid is not None:
        import re

        assert re.fullmatch(f"uid:[0-9a-f]{{{2 * board.device_uid[1]}}}", info.device_id), info.device_id
    else:
        assert info.device_id == ""
    print(f"\n{board.name}: {info}")


def test_inference_matches_tflite_micro(device, board, require_model, hil_model, capsys):
    from aiot.model.reference import TflmReference

    ref = TflmReference(hil_model.tflite)
    mismatches, ticks = [], []
    for i, x in enumerate(hil_model.x_int8):
        r = device.infer(x)
        want = ref.invoke(x).reshape(-1)
        assert r.output.shape == want.shape
        if not np.array_equal(r.output, want):
            mismatches.append((i, int(np.abs(r.output.astype(int) - want.astype(int)).max())))
        ticks.append(r.ticks)
    assert not mismatches, f"{len(mismatches)} of {len(hil_model.x_int8)} vectors differ (index, max |err|): {mismatches[:5]}"
    assert min(ticks) > 0
    hz = board.systick_hz or board.cpu_hz
    with capsys.disabled():
        print(f"\n{board.name}: {len(ticks)} vectors bit-exact; {np.mean(ticks) * 1e9 / hz:,.0f} instructions/inference")


def test_pipelined_inference_matches_one_by_one(device, require_model, hil_model):
    xs = hil_model.x_int8[:40]
    many = device.infer_many(xs)  # 16 deep on QEMU, one at a time on a serial port
    assert [r.output.tobytes() for r in many] == [device.infer(x).output.tobytes() for x in xs]


@pytest.fixture(scope="module")
def small_ring_device(board, model_c, pytestconfig):
    """The same firmware with a 32-byte receive ring, so a burst fills it for sure (with
    the real 512 bytes whether it fills depends on QEMU's timing)."""
    if "AIOT_UART_RX_IRQ" not in board.defines():
        pytest.skip(f"{board.name} polls its UART: no receive ring")
    if pytestconfig.getoption("--transport") != "qemu" or pytestconfig.getoption("--firmware"):
        pytest.skip("builds its own firmware variant: QEMU only")
    from aiot import paths
    from aiot.target.firmware import build
    from aiot.device.hil import open_device

    elf = build(board, paths.build_dir() / "hil" / f"{board.name}-ring32", model_c,
                defines=["AIOT_RX_RING_BYTES=32"]).elf
    with open_device(board=board, elf=elf, transport="qemu", timeout=2.0) as dev:
        dev.info()
        yield dev


def test_a_burst_larger_than_the_receive_ring_loses_nothing(small_ring_device, require_model, hil_model):
    """Send many requests in one write while the device is busy answering: the
    interrupt-driven receive must pause, not drop, so every request gets its own, correct
    answer in order. INFERs alternate with CONFIG_GETs (an 8-byte request, a ~130-byte
    answer, during which more requests land in the ring). Checked to fail on a ring that
    drops the byte it has no room for."""
    device = small_ring_device
    xs = hil_model.x_int8[:60]
    config = device.request(P.Msg.CONFIG_GET, retry=True).payload
    want, wire = [], b""
    for i, x in enumerate(xs):
        q_inf, q_cfg = 0x20 + 2 * i, 0x21 + 2 * i
        wire += b"\x00" + P.encode_frame(P.Msg.INFER, q_inf, x.tobytes())
        wire += b"\x00" + P.encode_frame(P.Msg.CONFIG_GET, q_cfg, b"")
        want += [(P.Msg.INFER | P.RESPONSE, q_inf), (P.Msg.CONFIG_GET | P.RESPONSE, q_cfg)]
    assert len(wire) > 60 * 32 and len(config) > 100
    device.send_raw(wire)
    got = device.read_frames(30.0, want=len(want))
    assert all(isinstance(f, P.Frame) for f in got), [f for f in got if not isinstance(f, P.Frame)][:3]
    assert [(f.type, f.seq) for f in got] == want
    assert all(f.payload == config for f in got[1::2])
    out_bytes = device.info().output_bytes
    assert [P.unpack_infer(f.payload, out_bytes)[2] for f in got[::2]] == [device.infer(x).output.tobytes() for x in xs]


def test_infer_with_wrong_input_size_is_refused(device, require_model):
    with pytest.raises(DeviceError) as e:
        device.request(P.Msg.INFER, b"\x01" * (require_model.input_bytes + 1))
    assert e.value.code == P.ErrorCode.BAD_PAYLOAD
    assert str(require_model.input_bytes) in e.value.detail
    with pytest.raises(ToolkitError, match="int8 values"):  # caught on the host before sending
        device.infer(np.zeros(3, np.int8))
    assert device.info(refresh=True).has_model


def test_unknown_request_type(device):
    with pytest.raises(DeviceError) as e:
        device.request(0x55, b"abc")
    assert e.value.code == P.ErrorCode.UNKNOWN_TYPE and e.value.request == 0x55


def _fixtures():
    doc = json.loads(FRAMES.read_text())
    return [pytest.param(f, id=f["name"]) for f in doc["frames"]]


def _error_frames(frames):
    return [f for f in frames if isinstance(f, P.Frame) and f.type == P.Msg.ERROR]


@pytest.mark.parametrize("fx", _fixtures())
def test_malformed_frame_gets_an_error_and_is_not_acted_on(device, fx):
    wire = bytes.fromhex(fx["hex"]) if fx["hex"] else P.cobs_encode(bytes.fromhex(fx["body"])) + b"\x00"
    before = device.stats()["link"]
    device.send_raw(b"\x00" + wire)
    got = _error_frames(device.read_frames(2.0, want=1))
    assert got, f"no error frame for {fx['name']}"
    code, _req, _detail = P.unpack_error(got[0].payload)
    assert P.error_name(code) == fx["error"]
    after = device.stats()["link"]
    # Only the STATS request itself was a valid frame in between.
    assert after["frames_ok"] == before["frames_ok"] + 1
    assert device.info(refresh=True).proto_major == P.PROTO_MAJOR


def test_oversized_frame(device):
    info = device.info()
    device.send_raw(b"\x00" + P.encode_frame(P.Msg.INFER, 0x66, b"\x01" * (info.max_payload + 1)))
    got = _error_frames(device.read_frames(5.0, want=1))
    assert got and P.unpack_error(got[0].payload)[0] == P.ErrorCode.TOO_LARGE
    assert device.info(refresh=True)


def test_corrupted_exit_is_not_acted_on(device):
    wire = bytearray(P.encode_frame(P.Msg.EXIT, 0x21, b"\x05"))
    wire[-3] ^= 0x40  # inside the CRC: still well-formed COBS, wrong checksum
    device.send_raw(b"\x00" + bytes(wire))
    got = _error_frames(device.read_frames(2.0, want=1))
    assert got and P.unpack_error(got[0].payload)[0] == P.ErrorCode.BAD_CRC
    assert device.info(refresh=True)  # still alive: the EXIT was not executed


def test_frame_split_across_slow_writes(device):
    wire = P.encode_frame(P.Msg.INFO, 0x30)
    device.send_raw(b"\x00")
    for i in range(0, len(wire), 3):
        device.send_raw(wire[i : i + 3])
        time.sleep(0.02)
    got = [f for f in device.read_frames(2.0, want=1) if isinstance(f, P.Frame)]
    assert got and got[0].type == P.Msg.INFO | P.RESPONSE and got[0].seq == 0x30


def test_incomplete_frame_gets_no_answer_then_resyncs(device):
    wire = P.encode_frame(P.Msg.INFO, 0x31)
    device.send_raw(b"\x00" + wire[: len(wire) // 2])  # no delimiter: the device must wait
    # (A late answer to an earlier, retried request would be no answer to this one.)
    assert [f for f in device.read_frames(0.5, want=1) if getattr(f, "seq", None) == 0x31] == []
    # A deadline that has passed when the request is written, on top of the stuck frame: a
    # clear timeout, not a hang. (0.1 ms used to be the deadline: on a loaded machine the
    # device's answer could be read within it and the request then succeeded.)
    saved = device.timeout
    try:
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout) as e:
            device.request(P.Msg.INFO, timeout=0.0)
        assert time.monotonic() - t0 < 1.0
        assert device.name in e.value.message and "INFO" in e.value.message
    finally:
        device.timeout = saved
    # The next request's leading delimiter ended the half frame: the device answers again.
    assert device.info(refresh=True).proto_major == P.PROTO_MAJOR


def test_garbage_line_noise_then_valid(device):
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    device.info(refresh=True)
    device.stray.clear()
    device.send_raw(noise)
    # One long deadline, no retry: a retried INFO's late first answer would be a stray too.
    info = P.unpack_info(device.request(P.Msg.INFO, timeout=30.0).payload)
    assert info.proto_major == P.PROTO_MAJOR
    # Noise can complete frames, but never valid ones: only error frames came back.
    assert device.stray, "3000 random bytes contain ~12 delimiters: the device must have complained"
    assert all(isinstance(f, P.BrokenFrame) or f.type == P.Msg.ERROR for f in device.stray), device.stray


def test_exit_ends_the_session_with_its_code(fresh_device):
    assert fresh_device.info().proto_major == P.PROTO_MAJOR
    assert fresh_device.exit(7) == 7
    t0 = time.monotonic()
    with pytest.raises(ToolkitError, match="not running any more .*exited with code 7"):
        fresh_device.request(P.Msg.INFO, timeout=0.5)
    assert time.monotonic() - t0 < 2.0


def test_dead_device_is_reported_with_its_exit(fresh_device):
    fresh_device.info()
    fresh_device.transport.qemu.proc.kill()  # the emulator dies under the session
    fresh_device.transport.qemu.proc.wait()
    with pytest.raises(ToolkitError, match="not running any more .*QEMU exited with code -9") as e:
        fresh_device.info(refresh=True)
    assert fresh_device.name in e.value.message
