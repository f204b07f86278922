"""Soak: thousands of frames with 1 % of their bytes corrupted on the way to the device.

Checked: no corrupted request is ever acted on (no response of any kind except error frames
comes back for one; a corrupted EXIT never ends the firmware; the device's count of valid
frames equals the number of intact frames sent), and every intact request is answered
correctly (INFER outputs equal tflite-micro, INFO and CONFIG_GET byte-identical)."""

from __future__ import annotations

import random
import time

import pytest

from aiot.device import protocol as P

CORRUPT_P = 0.01


def _corrupt(rng: random.Random, wire: bytes) -> bytes:
    out = bytearray(wire)
    for i in range(len(out)):
        if rng.random() < CORRUPT_P:
            out[i] ^= rng.randint(1, 255)  # always a different byte (may create or remove a 0x00)
    return bytes(out)


def test_soak_corrupted_frames(device, board, require_model, hil_model, pytestconfig, transport_kind, capsys):
    from aiot.model.reference import TflmReference

    if board.name != "mps2-an386" and not pytestconfig.getoption("--soak-all"):
        pytest.skip("the soak runs on mps2-an386 only (pass --soak-all for every board)")
    n_frames = pytestconfig.getoption("--soak-frames")
    rng = random.Random(1234)
    ref = TflmReference(hil_model.tflite)
    vectors = hil_model.x_int8[:16]
    expected_out = [ref.invoke(x).reshape(-1).tobytes() for x in vectors]
    info_payload = device.request(P.Msg.INFO).payload
    config_payload = device.request(P.Msg.CONFIG_GET).payload
    before = device.stats()["link"]

    frames = []  # (index, seq, request type, payload, wire bytes sent, intact?)
    for i in range(n_frames):
        seq = i & 0xFF
        kind = rng.random()
        if kind < 0.05:
            # An EXIT that is always corrupted: if it were ever executed, the firmware would stop.
            req, payload = P.Msg.EXIT, b"\x5a"
        elif kind < 0.15:  # INFER frames are 3x longer; QEMU's UART moves ~5 KB/s
            req, payload = P.Msg.INFER, vectors[rng.randrange(len(vectors))].tobytes()
        elif kind < 0.60:
            req, payload = P.Msg.INFO, b""
        else:
            req, payload = P.Msg.CONFIG_GET, b""
        wire = b"\x00" + P.encode_frame(req, seq, payload)
        bad = _corrupt(rng, wire)
        while req == P.Msg.EXIT and bad == wire:
            bad = _corrupt(rng, wire)
        frames.append((i, seq, req, payload, bad, bad == wire))
    expected = {P.Msg.INFO: lambda p: info_payload, P.Msg.CONFIG_GET: lambda p: config_payload}

    # QEMU buffers the UART: pipeline 32 frames at a time (responses come back in order).
    # A polled UART on real hardware cannot receive while it transmits: one at a time there.
    window = 32 if transport_kind == "qemu" else 1
    answered = stray_errors = 0
    t0 = time.monotonic()
    for w in range(0, n_frames, window):
        batch = frames[w : w + window]
        device.send_raw(b"".join(f[4] for f in batch))
        pending = [f for f in batch if f[5]]
        deadline = time.monotonic() + 10.0
        while pending:
            i, seq, req, payload, _wire, _ok = pending[0]
            assert time.monotonic() < deadline, f"frame {i} ({P.msg_name(req)}, seq {seq}) was never answered"
            for f in device.read_frames(deadline - time.monotonic(), want=1):
                if isinstance(f, P.BrokenFrame):
                    pytest.fail(f"the device sent a broken frame: {f}")
                if f.type == P.Msg.ERROR:
                    stray_errors += 1  # the answer to a corrupted request
                    continue
                i, seq, req, payload, _wire, _ok = pending.pop(0)
                assert (f.seq, f.type) == (seq, req | P.RESPONSE), \
                    f"got {f} while expecting {P.msg_name(req)} seq {seq}: a corrupted request was acted on"
                if req == P.Msg.INFER:
                    status, _ticks, out = P.unpack_infer(f.payload, len(expected_out[0]))
                    want = expected_out[[x.tobytes() for x in vectors].index(payload)]
                    assert status == 0 and out == want, f"frame {i}: wrong INFER output"
                else:
                    assert f.payload == expected[req](payload), f"frame {i}: {P.msg_name(req)} answer changed"
                answered += 1
    sent_ok = sum(1 for f in frames if f[5])
    corrupted = n_frames - sent_ok
    corrupted_exits = sum(1 for f in frames if f[2] == P.Msg.EXIT)
    device.send_raw(b"\x00")
    elapsed = time.monotonic() - t0
    after = device.stats()["link"]  # the firmware is alive: no corrupted EXIT was executed

    assert answered == sent_ok
    # Valid frames the device saw = the intact ones we sent + the final STATS: none of the
    # corrupted ones passed the CRC.
    assert after["frames_ok"] - before["frames_ok"] == sent_ok + 1
    rejected = sum(after[k] - before[k] for k in ("bad_crc", "bad_length", "bad_encoding", "too_large"))
    assert rejected >= 1
    with capsys.disabled():  # figures in the test output
        print(f"\nsoak on {board.name}: {n_frames} frames in {elapsed:.1f} s, {corrupted} corrupted "
              f"({corrupted_exits} EXIT), {sent_ok} intact all answered correctly; device rejected {rejected} "
              f"(crc {after['bad_crc'] - before['bad_crc']}, length {after['bad_length'] - before['bad_length']}, "
              f"cobs {after['bad_encoding'] - before['bad_encoding']}, too large {after['too_large'] - before['too_large']}); "
              f"{stray_errors} error frames read, 0 corrupted requests acted on")
