"""Frame codec: the firmware's C (built for the host) against the independent Python codec,
both against hand-made vectors (COBS from Cheshire & Baker / Wikipedia, CRC-32 check value)
and against each other on random data, plus every malformed-frame fixture."""

from __future__ import annotations

import ctypes
import json
import random
import struct
import zlib
from pathlib import Path

import pytest

from aiot.target import hostbuild
from aiot import paths
from aiot.device import protocol as P

FIXTURES = Path(__file__).parent / "fixtures" / "frames"
MAX_PAYLOAD = 1024  # the firmware default (AIOT_FRAME_MAX_PAYLOAD)


class CFrame(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint8), ("seq", ctypes.c_uint8), ("length", ctypes.c_uint16),
                ("payload", ctypes.POINTER(ctypes.c_uint8)), ("error", ctypes.c_uint8)]


@pytest.fixture(scope="module")
def lib():
    srcs = sorted((paths.FIRMWARE / "src" / "protocol").glob("*.c"))
    so = hostbuild.compile_shared(srcs, name="aiot_protocol")
    L = hostbuild.load(so)
    L.aiot_crc32_update.restype = ctypes.c_uint32
    L.aiot_crc32_update.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    L.aiot_cobs_encode.restype = ctypes.c_size_t
    L.aiot_cobs_encode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    L.aiot_cobs_decode.restype = ctypes.c_long
    L.aiot_cobs_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    L.aiot_frame_encode.restype = ctypes.c_size_t
    L.aiot_frame_encode.argtypes = [ctypes.c_uint8, ctypes.c_uint8, ctypes.c_char_p, ctypes.c_size_t,
                                    ctypes.c_char_p, ctypes.c_size_t]
    L.aiot_frame_rx_push.restype = ctypes.c_int
    L.aiot_frame_rx_push.argtypes = [ctypes.c_void_p, ctypes.c_uint8, ctypes.POINTER(CFrame)]
    L.aiot_frame_rx_init.argtypes = [ctypes.c_void_p]
    return L


def c_encode(lib, data: bytes, cap: int | None = None) -> bytes | None:
    cap = len(data) + len(data) // 254 + 2 if cap is None else cap
    out = ctypes.create_string_buffer(max(cap, 1))
    n = lib.aiot_cobs_encode(data, len(data), out, cap)
    return out.raw[:n] if n else None


def c_decode(lib, data: bytes, cap: int = 4096) -> bytes | None:
    out = ctypes.create_string_buffer(cap)
    n = lib.aiot_cobs_decode(data, len(data), out, cap)
    return None if n < 0 else out.raw[:n]


class CReceiver:
    """The firmware's streaming receiver, byte by byte."""

    def __init__(self, lib):
        self.lib = lib
        self.state = ctypes.create_string_buffer(4096)  # > sizeof(aiot_frame_rx_t)
        lib.aiot_frame_rx_init(self.state)

    def feed(self, data: bytes) -> list[tuple]:
        out = []
        f = CFrame()
        for b in data:
            r = self.lib.aiot_frame_rx_push(self.state, b, ctypes.byref(f))
            if r == 1:
                out.append(("frame", f.type, f.seq, ctypes.string_at(f.payload, f.length)))
            elif r == 2:
                out.append(("error", P.ErrorCode(f.error).name, f.type, f.seq))
        return out


# --- hand-made vectors -----------------------------------------------------------------

r254 = bytes(range(1, 255))
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (r254, b"\xff" + r254),                                   # one full block, no empty tail
    (b"\x00" + r254, b"\x01\xff" + r254),
    (bytes(range(1, 256)), b"\xff" + r254 + b"\x02\xff"),      # 255 non-zero bytes
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
    (r254 + b"\x00", b"\xff" + r254 + b"\x01\x01"),            # full block then a zero
    (b"\x01" * 508, b"\xff" + b"\x01" * 254 + b"\xff" + b"\x01" * 254),
]


@pytest.mark.parametrize("raw,enc", COBS_VECTORS, ids=[f"v{i}" for i in range(len(COBS_VECTORS))])
def test_cobs_vectors_python(raw, enc):
    assert P.cobs_encode(raw) == enc
    assert P.cobs_decode(enc) == raw


@pytest.mark.parametrize("raw,enc", COBS_VECTORS, ids=[f"v{i}" for i in range(len(COBS_VECTORS))])
def test_cobs_vectors_c(lib, raw, enc):
    assert c_encode(lib, raw) == enc
    assert c_decode(lib, enc) == raw


def test_cobs_decoders_accept_the_non_canonical_tail(lib):
    # Some encoders add an empty 0x01 block after a final full block; it decodes to nothing.
    assert P.cobs_decode(b"\xff" + r254 + b"\x01") == r254
    assert c_decode(lib, b"\xff" + r254 + b"\x01") == r254


@pytest.mark.parametrize("bad", [b"\x00", b"\x03\x11", b"\x02\x00", b"\x05\x01\x02\x03", b"\xff" + b"\x01" * 253])
def test_cobs_decoders_reject_malformed(lib, bad):
    with pytest.raises(P.CobsError):
        P.cobs_decode(bad)
    assert c_decode(lib, bad) is None


def test_c_cobs_respects_capacity(lib):
    assert c_encode(lib, b"\x11" * 10, cap=10) is None  # needs 11
    assert c_encode(lib, b"\x11" * 10, cap=11) == b"\x0b" + b"\x11" * 10
    assert c_decode(lib, b"\x05\x11\x22\x33\x44", cap=3) is None


def test_crc32_check_value_and_chaining(lib):
    assert lib.aiot_crc32_update(0, b"123456789", 9) == 0xCBF43926  # the CRC-32/ISO-HDLC check value
    rng = random.Random(1)
    data = bytes(rng.getrandbits(8) for _ in range(1000))
    assert lib.aiot_crc32_update(0, data, len(data)) == zlib.crc32(data)
    part = lib.aiot_crc32_update(0, data[:333], 333)
    assert lib.aiot_crc32_update(part, data[333:], 667) == zlib.crc32(data)


def test_cobs_cross_random(lib):
    rng = random.Random(2)
    for n in list(range(0, 520)) + [1000, 1031, 1032, 2000]:
        for density in (0.0, 0.02, 0.5):
            data = bytes(0 if rng.random() < density else rng.randint(1, 255) for _ in range(n))
            enc_c, enc_py = c_encode(lib, data), P.cobs_encode(data)
            assert enc_c == enc_py, (n, density)
            assert 0 not in enc_py
            assert P.cobs_decode(enc_c) == data
            assert c_decode(lib, enc_py) == data


# --- frames ------------------------------------------------------------------------------


def test_frame_layout_by_hand():
    # INFO, seq 5, empty payload: header 01 05 00 00, CRC-32 LE of the header, COBS, 0x00.
    body = b"\x01\x05\x00\x00" + struct.pack("<I", zlib.crc32(b"\x01\x05\x00\x00"))
    assert P.encode_frame(0x01, 5) == P.cobs_encode(body) + b"\x00"
    assert P.cobs_encode(body)[:4] == b"\x03\x01\x05\x01"  # 01 05 | 00 | 00 ...


def test_c_and_python_frame_encoders_agree(lib):
    rng = random.Random(3)
    out = ctypes.create_string_buffer(4096)
    for n in list(range(0, 300)) + [507, 508, 509, 1023, 1024]:
        payload = bytes(rng.choice((0, rng.randint(0, 255))) for _ in range(n))
        t, s = rng.randint(0, 255), rng.randint(0, 255)
        size = lib.aiot_frame_encode(t, s, payload, n, out, 4096)
        assert out.raw[:size] == P.encode_frame(t, s, payload), n
    assert lib.aiot_frame_encode(1, 1, b"\x00" * 1025, 1025, out, 4096) == 0  # > AIOT_FRAME_MAX_PAYLOAD
    assert lib.aiot_frame_encode(1, 1, b"\x00" * 10, 10, out, 12) == 0         # does not fit


def test_c_receiver_decodes_python_frames_in_one_stream(lib):
    rng = random.Random(4)
    rx = CReceiver(lib)
    frames = [(rng.randint(0, 255), i, bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 253, 254, 255, 600, 1024]))))
              for i in range(40)]
    stream = b"".join(P.encode_frame(t, s, p) for t, s, p in frames)
    assert rx.feed(stream) == [("frame", t, s, p) for t, s, p in frames]


def test_python_stream_decoder_any_chunking():
    rng = random.Random(5)
    frames = [(rng.randint(0, 255), i, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 700)))) for i in range(30)]
    stream = b"\x00\x00" + b"".join(P.encode_frame(t, s, p) for t, s, p in frames)
    dec = P.StreamDecoder(max_payload=MAX_PAYLOAD)
    got = []
    i = 0
    while i < len(stream):
        step = rng.randint(1, 300)
        got += dec.feed(stream[i : i + step])
        i += step
    assert got == [P.Frame(t, s, p) for t, s, p in frames]
    assert dec.pending == 0 and dec.garbage_bytes == 0


def _fixture_frames():
    doc = json.loads((FIXTURES / "malformed.json").read_text())
    out = []
    for f in doc["frames"]:
        wire = bytes.fromhex(f["hex"]) if f["hex"] else P.cobs_encode(bytes.fromhex(f["body"])) + b"\x00"
        out.append(pytest.param(wire, f["error"], id=f["name"]))
    return out


@pytest.mark.parametrize("wire,error", _fixture_frames())
def test_malformed_fixtures_c_receiver(lib, wire, error):
    rx = CReceiver(lib)
    good = P.encode_frame(0x01, 0x42, b"after")
    # Reported once, never delivered as a frame, and the next frame still decodes (resync).
    assert rx.feed(wire + good) == [("error", error, *rx_header(wire)), ("frame", 0x01, 0x42, b"after")]


def rx_header(wire: bytes) -> tuple[int, int]:
    """type and seq as the receiver sees them: the first decoded bytes, 0 if absent."""
    try:
        body = P.cobs_decode(wire[:-1])
    except P.CobsError:
        body = _lenient_decode(wire[:-1])
    return (body[0] if body else 0, body[1] if len(body) > 1 else 0)


def _lenient_decode(enc: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(enc):
        code = enc[i]
        out += enc[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


@pytest.mark.parametrize("wire,error", _fixture_frames())
def test_malformed_fixtures_python_decoder(wire, error):
    dec = P.StreamDecoder(max_payload=MAX_PAYLOAD)
    got = dec.feed(wire + P.encode_frame(0x01, 0x42, b"after"))
    assert len(got) == 2
    assert isinstance(got[0], P.BrokenFrame) and got[0].error.name == error
    assert got[1] == P.Frame(0x01, 0x42, b"after")


def test_oversized_frame_is_reported_and_followed(lib):
    big = P.encode_frame(0x02, 9, b"\x01" * (MAX_PAYLOAD + 1))
    good = P.encode_frame(0x01, 10)
    assert CReceiver(lib).feed(big + good) == [("error", "TOO_LARGE", 0x02, 9), ("frame", 0x01, 10, b"")]
    dec = P.StreamDecoder(max_payload=MAX_PAYLOAD)
    got = dec.feed(big + good)
    assert got[0].error == P.ErrorCode.TOO_LARGE and got[1] == P.Frame(0x01, 10, b"")
    # Endless garbage without a delimiter must not grow the Python decoder's buffer.
    dec.feed(b"\x01" * 100_000)
    assert len(dec._buf) <= MAX_PAYLOAD + 20
    assert dec.feed(b"\x00" + good)[-1] == P.Frame(0x01, 10, b"")


def test_largest_frame_fits_exactly(lib):
    payload = bytes(range(256)) * 4  # 1024 bytes with zeros
    assert CReceiver(lib).feed(P.encode_frame(0x02, 1, payload)) == [("frame", 0x02, 1, payload)]


def test_empty_frames_are_ignored(lib):
    assert CReceiver(lib).feed(b"\x00" * 10) == []
    assert P.StreamDecoder().feed(b"\x00" * 10) == []


def test_every_single_byte_corruption_is_caught(lib):
    """Flip each bit of a frame in turn: never delivered as that frame, or as any frame."""
    wire = P.encode_frame(0x02, 0x33, bytes(range(40)) + b"\x00\x00\x01")
    rx = CReceiver(lib)
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            got = rx.feed(bytes(bad) + b"\x00")  # the extra 0x00 ends a frame a flip may have split
            assert not [g for g in got if g[0] == "frame"], (i, bit, got)
            py = P.StreamDecoder().feed(bytes(bad) + b"\x00")
            assert not [g for g in py if isinstance(g, P.Frame)], (i, bit)


def test_encode_frame_rejects_bad_arguments():
    with pytest.raises(ValueError):
        P.encode_frame(256, 0)
    with pytest.raises(ValueError):
        P.encode_frame(1, -1)
    with pytest.raises(ValueError, match="exceeds"):
        P.encode_frame(1, 0, b"x" * 11, max_payload=10)


# --- payloads ----------------------------------------------------------------------------

# An INFO payload written out by hand from docs/protocol.md (not by pack_info).
INFO_HAND = bytes.fromhex(
    "01 00 01 00"        # protocol 1.0, flags: has model
    " 78 56 34 12"       # model hash 0x12345678
    " 10 00 00 00"       # input bytes 16
    " 02 00 00 00"       # output bytes 2
    " 00 01 00 00"       # arena 256
    " 00 00 80 3e"       # input scale 0.25
    " f6 ff ff ff"       # input zero point -10
    " 00 00 00 3f"       # output scale 0.5
    " 80 ff ff ff"       # output zero point -128
    " 40 78 7d 01"       # tick_hz 25 MHz
    " 40 78 7d 01"       # cpu_hz 25 MHz
    " 00 04"             # max payload 1024
    " 03 00"             # 3 layers
    " 05 30 2e 31 2e 30" # "0.1.0"
    " 02 62 31"          # "b1"
    " 01 6d"             # "m"
)


def test_unpack_info_hand_made():
    i = P.unpack_info(INFO_HAND)
    assert (i.proto_major, i.proto_minor, i.has_model, i.has_monitor) == (1, 0, True, False)
    assert (i.model_hash, i.input_bytes, i.output_bytes, i.arena_bytes) == (0x12345678, 16, 2, 256)
    assert (i.input_scale, i.input_zero_point, i.output_scale, i.output_zero_point) == (0.25, -10, 0.5, -128)
    assert (i.tick_hz, i.cpu_hz, i.max_payload, i.num_layers) == (25_000_000, 25_000_000, 1024, 3)
    assert (i.firmware_version, i.board, i.model_name) == ("0.1.0", "b1", "m")
    assert P.pack_info(i) == INFO_HAND
    assert P.unpack_info(INFO_HAND + b"\x99\x98") == i  # a newer minor version's extra fields


# Protocol 1.1: the same, then the device id (a fourth string), by hand again.
INFO_HAND_1_1 = bytes([1, 1]) + INFO_HAND[2:] + bytes.fromhex("0c 75 69 64 3a 30 31 32 33 61 62 63 64")  # "uid:0123abcd"


def test_unpack_info_device_id():
    i = P.unpack_info(INFO_HAND_1_1)
    assert (i.proto_minor, i.model_name, i.device_id) == (1, "m", "uid:0123abcd")
    assert P.pack_info(i) == INFO_HAND_1_1
    assert P.unpack_info(INFO_HAND_1_1 + b"\x99\x98") == i  # a later minor version's extra fields
    assert P.unpack_info(INFO_HAND).device_id == ""  # a 1.0 device has none
    with pytest.raises(ValueError, match="device id"):
        P.unpack_info(INFO_HAND_1_1[:-3])


@pytest.mark.parametrize("cut", [0, 10, 47, 48, 50, len(INFO_HAND) - 1])
def test_unpack_info_truncated(cut):
    with pytest.raises(ValueError):
        P.unpack_info(INFO_HAND[:cut])


def test_unpack_infer_and_error():
    assert P.unpack_infer(b"\x00\x10\x27\x00\x00\x05\xfb", 2) == (0, 10000, b"\x05\xfb")
    with pytest.raises(ValueError, match="expected 7"):
        P.unpack_infer(b"\x00\x10\x27\x00\x00\x05", 2)
    assert P.unpack_error(b"\x07\x02no model") == (7, 2, "no model")
    assert P.unpack_error(b"") == (0, 0, "")


def test_a_frame_glued_to_a_line_of_text_is_kept_and_the_text_reported():
    """A device that prints a boot banner ends it with a newline, not a delimiter: the first
    answer arrived glued to it and was lost as one broken frame (a 2 s retry)."""
    frame = P.encode_frame(0x81, 3, b"in\nfo\x00")  # a newline and a zero inside the payload too
    dec = P.StreamDecoder()
    got = dec.feed(b"aiot boot mps2-an386\r\ncalib 1 2 3\nready\n" + frame)
    assert len(got) == 2 and got[1] == P.Frame(0x81, 3, b"in\nfo\x00")
    assert isinstance(got[0], P.BrokenFrame) and got[0].raw == b"aiot boot mps2-an386\r\ncalib 1 2 3\nready\n"
    assert "bytes of text before a frame" in got[0].detail and dec.garbage_bytes == len(got[0].raw)


@pytest.mark.parametrize("wire", [
    b"no newline here" + P.encode_frame(0x81, 3, b"x"),  # text without a line end: one broken chunk
    b"banner\n" + P.encode_frame(0x81, 3, b"x")[:-3] + b"\x55\x00",  # text, then a frame with a bad CRC
    b"\n" * 40 + P.encode_frame(0x81, 3, b"x"),  # more line ends than are searched
])
def test_text_before_something_that_is_no_whole_frame_stays_one_broken_chunk(wire):
    got = P.StreamDecoder().feed(wire)
    assert len(got) == 1 and isinstance(got[0], P.BrokenFrame)
