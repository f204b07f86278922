"""The host client (aiot.device.hil.Device) against scripted fake devices on a local socket:
timeouts, retries, stray frames, error frames, wrong devices, the EVENTS acknowledgement and
PUSH resumption. Real firmware behaviour is covered by hil_tests/."""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest

from aiot import monitor as M
from aiot.device import protocol as P
from aiot.errors import ToolkitError
from aiot.device.hil import Device, DeviceError, DeviceTimeout, SerialTransport, make_transport

INFO = P.DeviceInfo(1, 0, 3, 0xDEADBEEF, 4, 2, 64, 0.5, -1, 0.25, 3, 25_000_000, 25_000_000, 1024, 2,
                    "0.1.0", "fake-board", "fake-model")


class FakeDevice:
    """Serves one TCP connection; ``handler(frame) -> bytes | None`` scripts the answers."""

    def __init__(self, handler=None, raw=None):
        self.handler = handler
        self.raw = raw  # bytes to send right away and every 50 ms (a chatty wrong device)
        self.received: list[P.Frame | P.BrokenFrame] = []
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.srv.accept()
        conn.settimeout(0.05)
        dec = P.StreamDecoder()
        with conn:
            while not self.stop.is_set():
                if self.raw:
                    conn.sendall(self.raw)
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    return
                for f in dec.feed(data):
                    self.received.append(f)
                    out = self.handler(f) if self.handler and isinstance(f, P.Frame) else None
                    if out == "close":
                        return
                    if out:
                        conn.sendall(out)

    def close(self):
        self.stop.set()
        self.srv.close()


@pytest.fixture
def fake():
    made = []

    def make(handler=None, raw=None, timeout=0.3, retries=2):
        fd = FakeDevice(handler, raw)
        made.append(fd)
        dev = Device(SerialTransport(fd.url), timeout=timeout, retries=retries)
        made.append(dev)
        return fd, dev

    yield make
    for m in reversed(made):
        m.close()


def reply(f: P.Frame, payload: bytes = b"", type_=None) -> bytes:
    return P.encode_frame(f.type | P.RESPONSE if type_ is None else type_, f.seq, payload)


def info_handler(f):
    return reply(f, P.pack_info(INFO)) if f.type == P.Msg.INFO else None


def test_info_roundtrip(fake):
    _fd, dev = fake(info_handler)
    assert dev.info() == INFO
    assert dev.counters.retries == 0


def test_silent_device_times_out_with_a_clear_message(fake):
    _fd, dev = fake(lambda f: None, timeout=0.2, retries=2)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout) as e:
        dev.info()
    assert 0.5 < time.monotonic() - t0 < 3.0
    msg = str(e.value)
    assert dev.name in msg and "socket://127.0.0.1:" in msg
    assert "INFO" in msg and "3 attempts" in msg and "0.2 s" in msg
    assert "baud" in e.value.hint


def test_wrong_device_is_reported(fake):
    _fd, dev = fake(raw=b"U-Boot 2023.01 ready\r\n", timeout=0.3, retries=0)
    with pytest.raises(DeviceTimeout) as e:
        dev.info()
    assert "not aiot frames" in e.value.message and "U-Boot" in e.value.message
    assert "wrong firmware or wrong baud rate" in e.value.hint


def test_idempotent_request_is_retried_after_a_lost_answer(fake):
    seen = []

    def handler(f):
        seen.append(f.seq)
        return info_handler(f) if len(seen) > 1 else None  # the first answer is "lost"

    fd, dev = fake(handler)
    assert dev.info() == INFO
    assert dev.counters.retries == 1 and len(seen) == 2 and seen[0] != seen[1]  # a fresh seq


def test_non_idempotent_request_is_not_retried(fake):
    fd, dev = fake(lambda f: None, timeout=0.2)
    with pytest.raises(DeviceTimeout):
        dev.reset_baseline()
    assert len([f for f in fd.received if isinstance(f, P.Frame)]) == 1


def test_stray_and_stale_frames_are_ignored(fake):
    def handler(f):
        stale = P.encode_frame(P.Msg.INFO | P.RESPONSE, (f.seq - 1) & 0xFF, b"old")
        other_err = P.encode_frame(P.Msg.ERROR, (f.seq + 5) & 0xFF, b"\x01\x01")
        noise = b"\x13\x37\x00"
        return stale + other_err + noise + reply(f, P.pack_info(INFO))

    _fd, dev = fake(handler)
    assert dev.info() == INFO
    assert dev.counters.stray_frames == 2 and dev.counters.broken_frames == 1


def test_a_timeout_says_what_came_instead_valid_frames_for_other_seqs(fake):
    def handler(f):  # answers with well-formed frames, always for another seq
        return P.encode_frame(P.Msg.INFO | P.RESPONSE, (f.seq + 9) & 0xFF, P.pack_info(INFO))

    _fd, dev = fake(handler, timeout=0.2, retries=0)
    with pytest.raises(DeviceTimeout) as e:
        dev.info()
    assert "1 valid frame(s) that answer nothing asked (INFO response x1)" in e.value.message
    assert "not aiot frames" not in e.value.message
    assert "another program talking to the device" in e.value.hint


def test_a_timeout_says_what_came_instead_frames_with_a_bad_crc(fake):
    def handler(f):
        good = bytearray(reply(f, P.pack_info(INFO)))
        good[5] ^= 0x40  # one bit flipped on the line: the CRC no longer matches
        return bytes(good)

    _fd, dev = fake(handler, timeout=0.2, retries=1)
    with pytest.raises(DeviceTimeout) as e:
        dev.info()
    assert "2 broken frame(s) (" in e.value.message
    kinds = e.value.message.split("broken frame(s) (")[1]
    assert "BAD_CRC" in kinds or "BAD_ENCODING" in kinds
    assert "noise on the line or a wrong baud rate" in e.value.hint


def test_error_frame_raises_device_error(fake):
    def handler(f):
        if f.type == P.Msg.INFO:
            return info_handler(f)
        return P.encode_frame(P.Msg.ERROR, f.seq, bytes([P.ErrorCode.NO_MODEL, f.type]) + b"built without a model")

    _fd, dev = fake(handler)
    with pytest.raises(DeviceError) as e:
        dev.request(P.Msg.INFER, b"\x00" * 4)
    assert e.value.code == P.ErrorCode.NO_MODEL and e.value.request == P.Msg.INFER
    assert "NO_MODEL" in e.value.message and "built without a model" in e.value.message
    assert "aiot build" in e.value.hint


def test_protocol_major_mismatch(fake):
    other = P.DeviceInfo(**{**INFO.__dict__, "proto_major": 2})
    _fd, dev = fake(lambda f: reply(f, P.pack_info(other)))
    with pytest.raises(ToolkitError, match="protocol 2.0"):
        dev.info()


def test_malformed_info_payload(fake):
    _fd, dev = fake(lambda f: reply(f, b"\x01\x00\x03"))
    with pytest.raises(ToolkitError, match="malformed INFO"):
        dev.info()


def test_infer(fake):
    def handler(f):
        if f.type == P.Msg.INFER:
            assert f.payload == bytes([1, 2, 0xFF, 0x80])
            return reply(f, struct.pack("<bI", 0, 1234) + bytes([5, 0xFB]))
        return info_handler(f)

    _fd, dev = fake(handler)
    r = dev.infer(np.array([[1, 2], [-1, -128]], np.int8))
    assert r.output.tolist() == [5, -5] and r.ticks == 1234 and r.output.dtype == np.int8
    with pytest.raises(ToolkitError, match="int8"):
        dev.infer(np.zeros(4, np.float32))
    with pytest.raises(ToolkitError, match="takes 4"):
        dev.infer(np.zeros(5, np.int8))


def test_infer_short_response(fake):
    def handler(f):
        return reply(f, struct.pack("<bI", 0, 1) + b"\x05") if f.type == P.Msg.INFER else info_handler(f)

    _fd, dev = fake(handler)
    with pytest.raises(ToolkitError, match="malformed INFER"):
        dev.infer(np.zeros(4, np.int8))


def test_an_infer_answer_with_a_failure_status_is_not_taken_as_a_result(fake):
    def handler(f):
        return reply(f, struct.pack("<bI", -3, 1) + b"\x05\x06") if f.type == P.Msg.INFER else info_handler(f)

    _fd, dev = fake(handler)
    with pytest.raises(ToolkitError, match="answered INFER with status -3: the inference failed"):
        dev.infer(np.zeros(4, np.int8))


def test_a_device_running_another_model_is_named_before_any_comparison(fake):
    import zlib

    _fd, dev = fake(info_handler)  # INFO says model 'fake-model', hash 0xDEADBEEF
    with pytest.raises(ToolkitError, match=r"runs model 'fake-model' \(hash deadbeef\), not pkg \(") as e:
        dev.require_model(b"another model", "pkg")
    assert f"{zlib.crc32(b'another model'):08x}" in e.value.message and "aiot build --package" in e.value.hint


def test_a_device_running_the_model_passes_the_model_check(fake):
    import dataclasses
    import zlib

    info = dataclasses.replace(INFO, model_hash=zlib.crc32(b"the model"))
    _fd, dev = fake(lambda f: reply(f, P.pack_info(info)) if f.type == P.Msg.INFO else None)
    assert dev.require_model(b"the model", "pkg") == info


def test_connection_closed_is_an_error_not_a_hang(fake):
    _fd, dev = fake(lambda f: "close", timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(ToolkitError):
        dev.info()
    assert time.monotonic() - t0 < 4.0


def test_missing_serial_port():
    with pytest.raises(ToolkitError, match="cannot open serial port /dev/ttyNOPE") as e:
        SerialTransport("/dev/ttyNOPE", 115200)
    assert "dialout" in e.value.hint


def test_transport_arguments():
    with pytest.raises(ToolkitError, match="unknown transport"):
        make_transport("usb")
    with pytest.raises(ToolkitError, match="needs a port"):
        make_transport("serial")
    with pytest.raises(ToolkitError, match="needs a board"):
        make_transport("qemu")


def _event(seq: int) -> bytes:
    rec = np.zeros(1, M.EVENT_DTYPE)
    rec["seq"], rec["type"], rec["timestamp_ms"], rec["channel"] = seq, 13, 1000 * seq, M.NO_CHANNEL
    return rec.tobytes()


def test_events_ack_protocol_survives_a_lost_answer(fake):
    """Fake device with the documented semantics: hold a batch until acknowledged by seq."""
    ring = list(range(11))
    held: list[int] = []
    requests = []
    lost = {"done": False}

    def handler(f):
        nonlocal held
        if f.type != P.Msg.EVENTS:
            return None
        requests.append(f.payload)
        valid, ack = struct.unpack("<BH", f.payload)
        if valid:
            held = [s for s in held if s > ack]
        while len(held) < 4 and ring:
            held.append(ring.pop(0))
        out = reply(f, struct.pack("<BBHI", len(held), len(ring), 0, 2) + b"".join(_event(s) for s in held))
        if len(requests) == 2 and not lost["done"]:
            lost["done"] = True
            return None  # the answer to the second request is lost
        return out

    _fd, dev = fake(handler)
    events = dev.events()
    assert [e.seq for e in events] == list(range(11))  # nothing lost, nothing twice
    assert events[0].type == "BASELINE_RESET" and events[0].channel is None
    assert requests[0] == b"\x00\x00\x00"
    assert requests[1] == requests[2] == struct.pack("<BH", 1, 3)  # the retry repeats the ack
    assert dev.events_dropped == 2


def test_events_carry_the_devices_confidence_and_a_device_without_it_says_none(fake):
    """The EVENTS header's u16 is the event record's size (20: with the confidence of the window
    that emitted it); 0 is a device built before it (16-byte records, no confidence)."""
    rec = np.zeros(2, M.WIRE_EVENT_DTYPE)
    rec["seq"], rec["type"], rec["timestamp_ms"], rec["channel"] = [0, 1], 3, [8000, 9000], M.NO_CHANNEL
    rec["confidence"] = [0.875, -1.0]
    answers = {20: struct.pack("<BBHI", 2, 0, 20, 0) + rec.tobytes(),  # the confidence is the last field
               0: struct.pack("<BBHI", 2, 0, 0, 0) + b"".join(r.tobytes()[:16] for r in rec)}
    for size, answer in answers.items():
        sent = []

        def handler(f, answer=answer):
            if f.type != P.Msg.EVENTS:
                return None
            sent.append(f.payload)
            return reply(f, answer if len(sent) == 1 else struct.pack("<BBHI", 0, 0, size, 0))

        _fd, dev = fake(handler)
        events = dev.events()
        assert [e.type for e in events] == ["ALERT_RAISED"] * 2 and [e.seq for e in events] == [0, 1]
        assert [e.confidence for e in events] == ([0.875, None] if size else [None, None])

    def other_size(f):  # a record this host does not know: said, not misread
        return reply(f, struct.pack("<BBHI", 1, 0, 24, 0) + bytes(24)) if f.type == P.Msg.EVENTS else None

    _fd, dev = fake(other_size)
    with pytest.raises(ToolkitError, match="24-byte event records") as e:
        dev.events()
    assert "aiot build" in e.value.hint


def test_a_device_that_ignores_the_events_acknowledgement_is_named_not_looped_on(fake):
    # it answers every EVENTS request with the same event, acknowledged or not: the client used
    # to loop for ever (aiot monitor ignored --duration)
    def handler(f):
        if f.type != P.Msg.EVENTS:
            return None
        return reply(f, struct.pack("<BBHI", 1, 0, 0, 0) + _event(7))

    _fd, dev = fake(handler)
    t0 = time.monotonic()
    with pytest.raises(ToolkitError, match="sent events up to seq 7 again although they were acknowledged"):
        dev.events()
    assert time.monotonic() - t0 < 5


def test_a_device_producing_events_as_fast_as_they_are_read_hands_control_back(fake):
    seq = iter(range(1_000_000))

    def handler(f):  # a correct device whose ring never empties
        if f.type != P.Msg.EVENTS:
            return None
        return reply(f, struct.pack("<BBHI", 1, 1, 0, 0) + _event(next(seq) % 65536))

    _fd, dev = fake(handler)
    events = dev.events()
    assert [e.seq for e in events] == list(range(Device.MAX_EVENT_BATCHES))
    assert [e.seq for e in dev.events()][0] == Device.MAX_EVENT_BATCHES  # the next call goes on from there


def test_an_error_detail_is_cut_and_cannot_drive_the_terminal():
    long = b"\x04\x02" + b"\x1b[31mred" + b"\xff\xfe" + b"x" * 1200
    code, req, detail = P.unpack_error(long)
    assert (code, req) == (4, 2)
    assert "\x1b" not in detail and "\\x1b[31mred" in detail and "\\xff\\xfe" in detail
    assert detail.endswith("...") and len(detail) < P.MAX_ERROR_DETAIL + 40


def test_push_resumes_where_the_device_stopped(fake):
    got = []

    def handler(f):
        if f.type != P.Msg.PUSH:
            return None
        count, ch, _ = struct.unpack_from("<HBB", f.payload)
        recs = np.frombuffer(f.payload[4:], dtype=np.dtype([("t", "<u4"), ("m", "u1"), ("v", "<f4", (ch,))]))
        take = min(count, 3)  # the device's output room allows 3 samples per request
        got.extend(recs[:take].tolist())
        out = np.zeros(1, M.OUTPUT_DTYPE)
        out["t_start_ms"] = recs["t"][0]
        return reply(f, struct.pack("<HBB", take, 1, 0) + out.tobytes())

    _fd, dev = fake(handler)
    ts = np.arange(10) * 1000
    vals = np.arange(20, dtype=np.float32).reshape(10, 2)
    vals[4, 1] = np.nan
    out = dev.push(ts, vals)
    assert [g[0] for g in got] == list(range(0, 10000, 1000))
    assert got[4][1] == 0b01 and got[5][1] == 0b11  # NaN -> not valid
    assert list(out["t_start_ms"]) == [0, 3000, 6000, 9000]


def test_push_rejects_inconsistent_answers(fake):
    _fd, dev = fake(lambda f: reply(f, struct.pack("<HBB", 0, 0, 0)))
    with pytest.raises(ToolkitError, match="inconsistent PUSH"):
        dev.push([0], [[1.0]])
    with pytest.raises(ToolkitError, match="samples, channels"):
        dev.push([0], [1.0])


@pytest.mark.qemu
def test_hil_suite_runs_unchanged_over_the_serial_transport(tmp_path):
    """hil_tests with --transport serial against a board behind a pyserial URL (here QEMU's
    UART socket, started outside the suite): the same test code as on QEMU."""
    import shutil
    import subprocess
    import sys

    from aiot import paths
    from aiot.target.boards import get_board
    from aiot.codegen import generate
    from aiot.target.firmware import build
    from aiot.device.hil import QemuTransport

    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    board = get_board("mps2-an386")
    generate(paths.ROOT / "hil_tests" / "fixtures" / "ae24" / "model.tflite", tmp_path / "c", name="ae24")
    elf = build(board, tmp_path / "fw", tmp_path / "c").elf
    qemu = QemuTransport(board, elf)
    try:
        qemu._link.close()  # hand the UART socket over to the suite's serial transport
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(paths.ROOT / "hil_tests"),
             "--board", board.name, "--transport", "serial", "--port", qemu.qemu.url, "--firmware", str(elf),
             "--soak-frames", "300", "-k", "info or tflite_micro or corrupted_exit or soak or exit_ends"],
            capture_output=True, text=True, timeout=300, cwd=paths.ROOT)
    finally:
        qemu.close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 passed, 1 skipped" in proc.stdout  # EXIT needs a fresh QEMU: skipped on serial


def test_infer_many_pipelines_and_keeps_order(fake):
    def handler(f):
        if f.type == P.Msg.INFER:
            x = np.frombuffer(f.payload, np.int8)
            return reply(f, struct.pack("<bI", 0, 10 + int(x[0])) + (x[:2] * -1).astype(np.int8).tobytes())
        return info_handler(f)

    fd, dev = fake(handler)
    xs = np.arange(40, dtype=np.int8).reshape(10, 4)
    res = dev.infer_many(xs, depth=4)
    assert [r.ticks for r in res] == [10 + 4 * i for i in range(10)]
    assert [r.output.tolist() for r in res] == [[-4 * i, -4 * i - 1] for i in range(10)]
    infers = [f for f in fd.received if isinstance(f, P.Frame) and f.type == P.Msg.INFER]
    assert len(infers) == 10 and len({f.seq for f in infers}) == 10
    with pytest.raises(ToolkitError, match="takes 4"):
        dev.infer_many(np.zeros((2, 5), np.int8))


def test_infer_many_times_out_cleanly(fake):
    _fd, dev = fake(lambda f: info_handler(f), timeout=0.2)
    with pytest.raises(DeviceTimeout, match="INFER"):
        dev.infer_many(np.zeros((3, 4), np.int8), depth=3)


def test_error_for_another_request_type_with_our_seq_is_stray(fake):
    def handler(f):
        # Line noise answered with our seq by chance: BAD_ENCODING about "request type" 0x9C.
        noise_err = P.encode_frame(P.Msg.ERROR, f.seq, bytes([P.ErrorCode.BAD_ENCODING, 0x9C]))
        return noise_err + reply(f, P.pack_info(INFO))

    _fd, dev = fake(handler)
    assert dev.info() == INFO
    assert dev.counters.stray_frames == 1


@pytest.mark.parametrize("url", ["socket://127.0.0.1", "socket://127.0.0.1:99999", "socket://:4444",
                                 "rfc2217://127.0.0.1:0", "socket://127.0.0.1:port"])
def test_a_network_url_without_a_usable_host_and_port_is_named(url):
    with pytest.raises(ToolkitError, match="needs a host and a port 1..65535") as e:
        SerialTransport(url)
    assert url in e.value.message and "://127.0.0.1:4444" in e.value.hint


def test_nothing_listening_on_a_network_url_gets_a_network_hint_not_the_dialout_group():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port nothing serves
    with pytest.raises(ToolkitError, match="cannot open serial port") as e:
        SerialTransport(f"socket://127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in e.value.hint and "dialout" not in e.value.hint


def test_what_a_socket_sends_as_we_connect_is_kept_not_flushed(monkeypatch):
    """QEMU with wait=on boots the guest the moment we connect, and its boot banner can be on
    the socket before pyserial's open() returns; pyserial then emptied the input, and the
    banner was lost (a loaded machine made it likely). The connection is made slow here so the
    banner is always there first."""
    import serial.urlhandler.protocol_socket as ps

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.sendall(b"aiot boot mps2-an386\n")
        time.sleep(1.0)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    real = ps.socket.create_connection

    def slow_connect(*a, **k):
        s = real(*a, **k)
        time.sleep(0.3)  # the banner arrives while open() is still busy
        return s

    monkeypatch.setattr(ps.socket, "create_connection", slow_connect)
    t = SerialTransport(f"socket://127.0.0.1:{srv.getsockname()[1]}")
    try:
        got = b""
        deadline = time.monotonic() + 2
        while b"\n" not in got and time.monotonic() < deadline:
            got += t.read(0.2)
        assert got == b"aiot boot mps2-an386\n"
        t._ser.reset_input_buffer()  # the instance is pyserial's own again after open()
    finally:
        t.close()
        srv.close()


def test_an_answer_right_after_a_line_of_text_needs_no_retry(fake):
    """Firmware that prints a line (a boot banner, a log message) just before it answers: the
    answer is glued to the text with no delimiter between; it used to be lost and asked again
    after the timeout."""
    _fd, dev = fake(lambda f: b"aiot boot fake-board\n" + reply(f, P.pack_info(INFO)) if f.type == P.Msg.INFO
                    else None, timeout=1.0)
    t0 = time.monotonic()
    assert dev.info() == INFO
    assert dev.counters.retries == 0 and time.monotonic() - t0 < 0.9
    assert dev.counters.broken_frames == 1  # the text itself is no frame, and is counted as such


def test_a_model_larger_than_a_frame_on_firmware_without_chunked_infer_is_refused_clearly(fake):
    old = P.DeviceInfo(1, 0, 3, 0xDEADBEEF, 2000, 2000, 64, 0.5, -1, 0.25, 3, 25_000_000, 25_000_000, 1024, 2,
                       "0.1.0", "fake-board", "wide")
    fd, dev = fake(lambda f: reply(f, P.pack_info(old)) if f.type == P.Msg.INFO else None)
    with pytest.raises(ToolkitError, match="cannot split them") as e:
        dev.infer(np.zeros(2000, np.int8))
    assert "AIOT_FRAME_MAX_PAYLOAD" in e.value.hint and "aiot build" in e.value.hint
    assert [f.type for f in fd.received if isinstance(f, P.Frame)] == [P.Msg.INFO]  # nothing else was sent


def test_closing_a_socket_link_does_not_pause(monkeypatch):
    """pyserial's socket:// close sleeps 0.3 s ("give the server some time" for a reconnect
    we never make): every QEMU session and every `aiot run --port socket://...` paid it on
    the way out. The link is closed at once, the socket shut down."""
    import serial.urlhandler.protocol_socket as ps

    slept = []
    monkeypatch.setattr(ps, "time", type("Clock", (), {"sleep": staticmethod(slept.append),
                                                       "time": staticmethod(time.time)}))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        t = SerialTransport(f"socket://127.0.0.1:{srv.getsockname()[1]}")
        conn, _ = srv.accept()
        t.close()
        assert slept == []
        conn.settimeout(2.0)
        assert conn.recv(16) == b""  # the device side sees the link end
        conn.close()
        t.close()  # twice: nothing left to close, no error
    finally:
        srv.close()
