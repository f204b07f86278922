"""`aiot run` and `aiot validate` over a flaky link: the answers still come through (CRC-checked,
lost ones asked again), but the summary must say that the link needed retries and what it
dropped or corrupted, so a bad cable is not hidden behind a clean result; a clean link adds
nothing. The device is the scripted fake from test_protocol_client on a local socket."""

from __future__ import annotations

import functools
import json
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.device import hil
from aiot.device import protocol as P
from aiot.cli import main
from aiot.model.reference import TflmReference

from test_protocol_client import INFO, FakeDevice, reply

AE24 = Path(__file__).resolve().parent.parent / "hil_tests" / "fixtures" / "ae24"


def _corrupt(frame: bytes) -> bytes:
    """The same encoded frame with one byte of its checksum flipped (never into a delimiter)."""
    b = bytearray(frame)
    i = len(b) - 2  # the last byte before the delimiter
    b[i] ^= 0x55 if b[i] != 0x55 else 0xAA
    return bytes(b)


def flawed_device(info, kind: int, answer, flaw: str | None) -> tuple[FakeDevice, list[int]]:
    """A fake device that answers INFO with ``info`` and each ``kind`` request with
    ``answer(frame)`` (an encoded frame), the first of them spoilt by ``flaw``: None (a clean
    link), "corrupt" (it arrives with a bad checksum) or "lose" (it never arrives). Other
    requests go unanswered. Returns the device and the seqs of the ``kind`` requests seen."""
    seen: list[int] = []

    def handler(f):
        if f.type == P.Msg.INFO:
            return reply(f, P.pack_info(info))
        if f.type != kind:
            return None
        seen.append(f.seq)
        out = answer(f)
        if len(seen) == 1 and flaw == "corrupt":
            return _corrupt(out)
        return None if len(seen) == 1 and flaw == "lose" else out

    return FakeDevice(handler), seen


def ae24_device(flaw: str | None):
    """A fake device running the ae24 model: right INFO, tflite-micro's own outputs; the first
    INFER answer spoilt by ``flaw`` (:func:`flawed_device`)."""
    tflite = (AE24 / "model.tflite").read_bytes()
    ref = TflmReference(tflite)
    info = replace(INFO, flags=P.DeviceInfo.FLAG_MODEL, model_hash=zlib.crc32(tflite) & 0xFFFFFFFF,
                   input_bytes=24, output_bytes=24, model_name="ae24")

    def infer(f):
        out = ref.invoke(np.frombuffer(f.payload, np.int8)).reshape(-1).astype(np.int8)
        return reply(f, struct.pack("<bI", 0, 1000) + out.tobytes())

    return flawed_device(info, P.Msg.INFER, infer, flaw)[0]


@pytest.fixture
def short_timeout(monkeypatch):
    """`aiot run` has no --timeout: a lost answer costs 0.3 s here, not the default 2 s."""
    monkeypatch.setattr(hil, "open_device", functools.partial(hil.open_device, timeout=0.3))


def _package(tmp_path: Path) -> Path:
    """A minimal model package around the ae24 fixture (what `aiot run` reads)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in ("model.tflite", "vectors.npz"):
        (pkg / name).write_bytes((AE24 / name).read_bytes())
    (pkg / "manifest.json").write_text(json.dumps({
        "format": 1, "name": "ae24", "channels": ["s"], "window": 24, "sample_period_s": 1.0,
        "normalization": {"mean": [0.0], "std": [1.0]}, "model": {"tflite": "model.tflite"},
        "score": {"threshold": 1.0}, "training": {}}))
    return pkg


def _run(tmp_path: Path, flaw: str | None):
    fd = ae24_device(flaw)
    try:
        return CliRunner().invoke(main, ["run", "--board", "mps2-an386", "--package", str(_package(tmp_path)),
                                         "-n", "3", "--transport", "serial", "--port", fd.url])
    finally:
        fd.close()


def _validate(tmp_path: Path, flaw: str | None):
    fd = ae24_device(flaw)
    try:
        r = CliRunner().invoke(main, ["validate", "--board", "mps2-an386", "--model", str(AE24), "-n", "3",
                                      "--transport", "serial", "--port", fd.url, "--out", str(tmp_path / "v"),
                                      "--timeout", "0.3"])
    finally:
        fd.close()
    report = json.loads((tmp_path / "v" / "report.json").read_text()) if r.exit_code == 0 else None
    return r, report


def test_run_reports_a_corrupt_answer_and_its_retry(tmp_path, short_timeout):
    r = _run(tmp_path, "corrupt")
    assert r.exit_code == 0, r.output
    assert "3 inferences, 0 mismatching" in r.output  # the result itself is sound
    assert "link: 1 retry in 4 requests" in r.output and "1 corrupt frame (" in r.output
    assert "unreliable" in r.output and "check the cable" in r.output and "baud" in r.output


def test_run_reports_a_lost_answer(tmp_path, short_timeout):
    r = _run(tmp_path, "lose")
    assert r.exit_code == 0, r.output
    assert "link: 1 retry in 4 requests (answer lost, corrupt or late)" in r.output
    assert "corrupt frame" not in r.output and "check the cable" in r.output


def test_run_on_a_clean_link_says_nothing_about_it(tmp_path, short_timeout, monkeypatch):
    verdicts = []
    asked = hil.Device.link_trouble

    def spy(self):
        verdicts.append(asked(self))
        return verdicts[-1]

    monkeypatch.setattr(hil.Device, "link_trouble", spy)
    r = _run(tmp_path, None)
    assert r.exit_code == 0, r.output
    assert verdicts == [None]  # the verb asked, and the link was clean
    assert "3 inferences, 0 mismatching" in r.output
    assert "link:" not in r.output and "retr" not in r.output and "unreliable" not in r.output


def test_validate_reports_a_corrupt_answer_in_its_summary_and_report(tmp_path):
    r, report = _validate(tmp_path, "corrupt")
    assert r.exit_code == 0, r.output
    assert "exact match      100.00 %" in r.output
    assert "  link             1 retry in 4 requests" in r.output and "1 corrupt frame (" in r.output
    assert "unreliable" in r.output and "check the cable" in r.output
    link = report["link"]
    assert link["requests"] == 4 and link["retries"] == 1 and link["broken_frames"] == 1
    assert sum(link["broken_kinds"].values()) == 1 and link["clean"] is False
    assert "link (unreliable)" in (tmp_path / "v" / "report.html").read_text()


def test_validate_reports_a_lost_answer_in_its_summary_and_report(tmp_path):
    r, report = _validate(tmp_path, "lose")
    assert r.exit_code == 0, r.output
    assert "  link             1 retry in 4 requests (answer lost, corrupt or late)" in r.output
    assert "corrupt frame" not in r.output
    assert report["link"]["retries"] == 1 and report["link"]["broken_frames"] == 0
    assert report["link"]["clean"] is False


def test_validate_on_a_clean_link_says_nothing_about_it_but_records_the_counters(tmp_path):
    r, report = _validate(tmp_path, None)
    assert r.exit_code == 0, r.output
    assert "  link " not in r.output and "retr" not in r.output and "unreliable" not in r.output
    assert report["link"] == {"requests": 4, "retries": 0, "broken_frames": 0, "broken_kinds": {},
                              "stray_frames": 0, "clean": True}
    assert "link (unreliable)" not in (tmp_path / "v" / "report.html").read_text()


def test_stray_and_broken_frames_alone_are_link_trouble_too():
    """No retry needed, but frames for other seqs and a broken one on the line: still said."""
    def handler(f):
        stale = P.encode_frame(P.Msg.INFO | P.RESPONSE, (f.seq - 1) & 0xFF, b"old")
        other = P.encode_frame(P.Msg.ERROR, (f.seq + 5) & 0xFF, b"\x01\x01")
        return stale + other + b"\x13\x37\x00" + reply(f, P.pack_info(INFO))

    fd = FakeDevice(handler)
    dev = hil.Device(hil.SerialTransport(fd.url, 9600), timeout=0.3)
    try:
        assert dev.link_trouble() is None  # nothing asked yet
        dev.info()
        what, hint = dev.link_trouble()
    finally:
        dev.close()
        fd.close()
    assert "retr" not in what and "1 corrupt frame (" in what and "2 stray frames" in what
    assert "9600 baud" in hint and "cable" in hint
    assert dev.counters.to_json()["stray_frames"] == 2 and dev.counters.to_json()["clean"] is False


def _monitor_session(fd: FakeDevice, duration: float):
    """`aiot monitor`'s session against ``fd`` for ``duration`` s: (its transport, the lines shown)."""
    from aiot.commands import monitor as MON

    t = hil.SerialTransport(fd.url)
    lines: list[str] = []
    try:
        MON.run_monitor(t, duration=duration, interval=0.1, raw=False, echo=lines.append, timeout=0.2)
    finally:
        t.close()
        fd.close()
    return t, lines


@pytest.mark.parametrize("flaw", [None, "corrupt"])
def test_aiot_monitor_says_at_the_end_when_the_link_needed_retries(flaw):
    """A monitoring session on a real Device: the first STATS answer arrives with a bad
    checksum (asked again, answered); at the end the session names the retry and the
    corrupt frame. A clean link ends without a link line."""
    import ctypes

    from aiot import monitor as M

    info = replace(INFO, flags=P.DeviceInfo.FLAG_MONITOR)
    stats = bytes([0, 0, ctypes.sizeof(M.Stats), ctypes.sizeof(M.ChannelInfo)]) + bytes(ctypes.sizeof(M.Stats)) \
        + struct.pack("<8IQ", *([0] * 8), 0)  # not configured, no channels
    fd, answered = flawed_device(info, P.Msg.STATS, lambda f: reply(f, stats), flaw)
    t, lines = _monitor_session(fd, duration=0.6)
    assert any(ln.startswith("-- monitor: not configured") for ln in lines), lines
    link = [ln for ln in lines if ln.startswith("-- link:")]
    if flaw is None:
        assert link == [] and len(answered) >= 2
    else:
        assert link == ["-- link: 1 retry in %d requests (answer lost, corrupt or late); 1 corrupt frame (BAD_CRC x1)"
                        % (len(answered) - 1)], lines  # one request was sent twice
        assert "the link is unreliable: check the cable" in lines[-1]
        assert f"that the firmware runs at {t.baud} baud" in lines[-1]  # it said 'the baud rate


def test_aiot_monitor_says_when_no_answer_to_info_came_through_whole():
    """Every INFO answer arrives with a bad checksum: the session falls back to raw output, and
    says the link spoilt frames (cable, baud rate), not only 'no answer' as if the firmware
    did not speak the protocol."""
    fd = FakeDevice(lambda f: _corrupt(reply(f, P.pack_info(INFO))) if f.type == P.Msg.INFO else None)
    t, lines = _monitor_session(fd, duration=0.3)
    assert lines[0].endswith("no answer to INFO; showing raw output --"), lines
    assert lines[1] == "-- link: 1 retry in 1 request (answer lost, corrupt or late); 2 corrupt frames (BAD_CRC x2)"
    assert "check the cable" in lines[2] and f"runs at {t.baud} baud" in lines[2]


def test_a_qemu_session_closes_its_socket_at_once(monkeypatch):
    """pyserial's socket:// close waits 0.3 s for a quick reconnect to the same server; QEMU
    is stopped right after its session closes, so nothing reconnects: the QEMU transport
    closes its socket without that wait (every QEMU session, of the suite and of aiot run,
    paid it), and the device sees the link end."""
    import serial.urlhandler.protocol_socket as pyserial_socket

    waits: list[float] = []
    monkeypatch.setattr(pyserial_socket.time, "sleep", waits.append)
    stopped: list[bool] = []

    class StoppedQemu:  # what QemuTransport.close stops after its link: here, only noted
        proc = None

        def stop(self):
            stopped.append(True)

    fd = FakeDevice(lambda f: reply(f, P.pack_info(INFO)))
    t = hil.QemuTransport.__new__(hil.QemuTransport)  # its link and its QEMU, without booting one
    t._link, t.qemu, t.exit_code = hil.SerialTransport(fd.url), StoppedQemu(), None
    try:
        t._link.write(P.encode_frame(P.Msg.INFO, 1, b""))
        assert t._link.read(2.0)  # the link works
        t.close()
    finally:
        fd.close()
    assert waits == [], f"the QEMU link's close waited {waits} s"
    assert stopped == [True] and not t._link._ser.is_open
    fd.thread.join(2.0)
    assert not fd.thread.is_alive()  # the device saw the connection end
