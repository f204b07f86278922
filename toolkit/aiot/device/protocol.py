"""Host side of the framed serial protocol (docs/protocol.md).

A frame before encoding is ``type u8 | seq u8 | length u16 LE | payload | crc32 u32 LE``
(zlib CRC-32 over type..payload), COBS-encoded and terminated by one 0x00. This module is
an independent implementation of firmware/src/protocol/ (the tests check one against the
other), plus the packing and unpacking of every request and response payload."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

PROTO_MAJOR = 1
PROTO_MINOR = 3  # 1.1: CONFIG_PART, CONFIG_GET by offset; INFO ends with the device id
#                  1.2: every input and output: INFO's tensor table, INFER carries them all
#                  1.3: STATS [first channel u8]: the channel records past the first answer
HEADER = 4
CRC = 4
OVERHEAD = HEADER + CRC
DEFAULT_MAX_PAYLOAD = 1024  # AIOT_FRAME_MAX_PAYLOAD in firmware/include/aiot/protocol.h


class Msg(IntEnum):
    INFO = 0x01
    INFER = 0x02
    PUSH = 0x03
    EVENTS = 0x04
    STATS = 0x05
    CONFIG_GET = 0x06
    CONFIG_SET = 0x07
    RESET_BASELINE = 0x08
    INFER_INPUT = 0x09   # one chunk of an input larger than a frame: offset u32 | bytes
    INFER_OUTPUT = 0x0A  # part of the last INFER's output: offset u32 | length u16
    CONFIG_PART = 0x0B   # one part of a monitor configuration larger than a frame (1.1)
    EXIT = 0x0F
    ERROR = 0x7F


RESPONSE = 0x80


#: CONFIG_PART: ``offset u16 | total u16 | crc32 u32 | flags u8 | 0 u8 | bytes`` (docs/protocol.md)
CONFIG_PART_HEAD = struct.Struct("<HHIBB")
CONFIG_PART_FRESH, CONFIG_PART_LAST = 0x01, 0x02


def config_parts(data: bytes, part_bytes: int, fresh: bool = False) -> list[bytes]:
    """The CONFIG_PART payloads that carry configuration ``data`` in order, each with at
    most ``part_bytes`` of it; the last is flagged (and carries ``fresh``)."""
    if part_bytes < 1:
        raise ValueError("a configuration part needs room for at least one byte")
    crc = zlib.crc32(data)
    out = []
    for offset in range(0, len(data), part_bytes):
        last = offset + part_bytes >= len(data)
        flags = (CONFIG_PART_LAST | (CONFIG_PART_FRESH if fresh else 0)) if last else 0
        out.append(CONFIG_PART_HEAD.pack(offset, len(data), crc, flags, 0) + data[offset : offset + part_bytes])
    return out


class ErrorCode(IntEnum):
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    BAD_PAYLOAD = 4
    TOO_LARGE = 5
    MODEL_ERROR = 6
    NO_MODEL = 7
    BAD_ENCODING = 8
    NO_MONITOR = 9
    MONITOR_ERROR = 10


def msg_name(t: int) -> str:
    base = t & ~RESPONSE if t != Msg.ERROR else t
    try:
        name = Msg(base).name
    except ValueError:
        name = f"0x{base:02X}"
    return name + (" response" if t & RESPONSE else "")


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


# --- COBS ------------------------------------------------------------------------------


class CobsError(ValueError):
    pass


def cobs_encode(data: bytes) -> bytes:
    """COBS without the delimiter; canonical form (no empty block after a final full one)."""
    out = bytearray()
    block = bytearray()
    for i, b in enumerate(data):
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(b)
        if len(block) == 254:
            out.append(0xFF)
            out += block
            block.clear()
            if i == len(data) - 1:
                return bytes(out)
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; raises CobsError on a zero byte or a block past the end."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError(f"zero byte inside COBS data at offset {i}")
        end = i + code
        if end > n:
            raise CobsError(f"COBS block at offset {i} needs {code - 1} bytes, only {n - i - 1} left")
        chunk = data[i + 1 : end]
        if 0 in chunk:
            raise CobsError(f"zero byte inside COBS data at offset {i + 1 + chunk.index(0)}")
        out += chunk
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes

    @property
    def is_error(self) -> bool:
        return self.type == Msg.ERROR

    def __repr__(self) -> str:
        return f"Frame({msg_name(self.type)}, seq={self.seq}, {len(self.payload)} B)"


@dataclass(frozen=True)
class BrokenFrame:
    """What the decoder saw between two delimiters when it was not a valid frame."""

    error: ErrorCode
    raw: bytes  # the encoded bytes, for diagnostics
    detail: str

    def __repr__(self) -> str:
        return f"BrokenFrame({self.error.name}: {self.detail})"


def encode_frame(type_: int, seq: int, payload: bytes = b"", max_payload: int = 65535) -> bytes:
    """The bytes to put on the wire for one frame, delimiter included."""
    if not 0 <= type_ <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"type and seq must be bytes (got type={type_}, seq={seq})")
    if len(payload) > max_payload:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the maximum of {max_payload}")
    body = struct.pack("<BBH", type_, seq, len(payload)) + bytes(payload)
    body += struct.pack("<I", zlib.crc32(body))
    return cobs_encode(body) + b"\x00"


def decode_frame(encoded: bytes, max_payload: int = 65535) -> Frame | BrokenFrame:
    """Decode the bytes between two delimiters (delimiter excluded)."""
    try:
        body = cobs_decode(encoded)
    except CobsError as e:
        return BrokenFrame(ErrorCode.BAD_ENCODING, encoded, str(e))
    if len(body) > max_payload + OVERHEAD:
        return BrokenFrame(ErrorCode.TOO_LARGE, encoded, f"{len(body)} bytes decoded, limit {max_payload + OVERHEAD}")
    if len(body) < OVERHEAD:
        return BrokenFrame(ErrorCode.BAD_LENGTH, encoded, f"{len(body)} bytes is shorter than header + CRC")
    (crc,) = struct.unpack_from("<I", body, len(body) - CRC)
    if zlib.crc32(body[:-CRC]) != crc:
        return BrokenFrame(ErrorCode.BAD_CRC, encoded, f"CRC {crc:08X} != computed {zlib.crc32(body[:-CRC]):08X}")
    type_, seq, length = struct.unpack_from("<BBH", body)
    if length != len(body) - OVERHEAD:
        return BrokenFrame(ErrorCode.BAD_LENGTH, encoded, f"length field {length} != {len(body) - OVERHEAD} payload bytes")
    return Frame(type_, seq, bytes(body[HEADER:-CRC]))


#: How many line ends a broken chunk is searched at for a valid frame after them.
MAX_TEXT_LINES = 16


def _after_text(encoded: bytes, max_payload: int) -> tuple[bytes, Frame] | None:
    """(text, frame) when ``encoded`` is lines of text followed by a whole frame: a device
    that prints a boot banner (or a log line) ends it with a newline, not with a delimiter,
    so the next frame arrives glued to it. Only the positions right after a line end are
    tried (a few), so a stray suffix passing the CRC-32 by chance is out of the question
    in practice, and garbage costs little."""
    tried = 0
    pos = encoded.find(b"\n")
    while pos >= 0 and tried < MAX_TEXT_LINES:
        f = decode_frame(encoded[pos + 1 :], max_payload) if pos + 1 < len(encoded) else None
        if isinstance(f, Frame):
            return encoded[: pos + 1], f
        tried += 1
        pos = encoded.find(b"\n", pos + 1)
    return None


class StreamDecoder:
    """Turn a byte stream into frames; resynchronizes on every 0x00.

    ``feed()`` returns what completed: Frame for a valid frame, BrokenFrame otherwise.
    Empty frames (consecutive delimiters) are skipped. Bytes beyond the maximum encoded
    size are dropped until the next delimiter so garbage cannot grow memory without bound.
    Text that ends in a newline right before a frame (a boot banner) comes out as a
    BrokenFrame of its own, and the frame after it is kept (:func:`_after_text`).
    """

    def __init__(self, max_payload: int = 65535):
        self.max_payload = max_payload
        self._limit = max_payload + OVERHEAD + (max_payload + OVERHEAD) // 254 + 2
        self._buf = bytearray()
        self._overflow = 0
        self.garbage_bytes = 0  # bytes that ended up in broken frames, for diagnostics

    @property
    def pending(self) -> int:
        return len(self._buf) + self._overflow

    def feed(self, data: bytes) -> list[Frame | BrokenFrame]:
        out: list[Frame | BrokenFrame] = []
        start = 0
        while True:
            i = data.find(b"\x00", start)
            chunk = data[start:] if i < 0 else data[start:i]
            room = self._limit - len(self._buf)
            self._buf += chunk[:room]
            self._overflow += max(0, len(chunk) - room)
            if i < 0:
                return out
            if self._overflow:
                out.append(BrokenFrame(ErrorCode.TOO_LARGE, bytes(self._buf[:64]),
                                       f"{len(self._buf) + self._overflow} bytes before the delimiter"))
                self.garbage_bytes += len(self._buf) + self._overflow
            elif self._buf:
                f = decode_frame(bytes(self._buf), self.max_payload)
                glued = _after_text(bytes(self._buf), self.max_payload) if isinstance(f, BrokenFrame) else None
                if glued is not None:
                    text, f = glued
                    self.garbage_bytes += len(text)
                    out.append(BrokenFrame(ErrorCode.BAD_ENCODING, text, f"{len(text)} bytes of text before a frame"))
                elif isinstance(f, BrokenFrame):
                    self.garbage_bytes += len(self._buf)
                out.append(f)
            self._buf.clear()
            self._overflow = 0
            start = i + 1


# --- payloads ----------------------------------------------------------------------------

_INFO_FIXED = struct.Struct("<BBHIIIIfifiIIHH")

#: TFLite's TensorType codes of the tensors a device serves (INFO's tensor table, protocol 1.2)
TENSOR_TYPES = {9: "int8", 7: "int16"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of the model a device serves: its TFLite TensorType code
    and its size in bytes (two per element of an int16 tensor, little-endian)."""

    type: int
    bytes: int

    @property
    def dtype(self) -> np.dtype:
        """The tensor's numpy type (little-endian); ValueError for a type this host does not know."""
        if self.type not in TENSOR_TYPES:
            raise ValueError(f"tensor type {self.type} (TFLite TensorType) is not one this host reads "
                             f"({', '.join(f'{k} {v}' for k, v in TENSOR_TYPES.items())})")
        return np.dtype(TENSOR_TYPES[self.type]).newbyteorder("<")

    @property
    def elements(self) -> int:
        return self.bytes // self.dtype.itemsize

    @classmethod
    def of(cls, dtype, elements: int) -> "TensorSpec":
        """The spec of a tensor of ``elements`` values of ``dtype`` ("int8" or "int16")."""
        name = np.dtype(dtype).name
        code = {v: k for k, v in TENSOR_TYPES.items()}.get(name)
        if code is None:
            raise ValueError(f"a device serves int8 and int16 tensors, not {name}")
        return cls(code, int(elements) * np.dtype(name).itemsize)


_TENSOR_ENTRY = struct.Struct("<BI")


@dataclass(frozen=True)
class DeviceInfo:
    proto_major: int
    proto_minor: int
    flags: int
    model_hash: int
    input_bytes: int
    output_bytes: int
    arena_bytes: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    tick_hz: int
    cpu_hz: int
    max_payload: int
    num_layers: int
    firmware_version: str
    board: str
    model_name: str
    #: the device's id (protocol 1.1): "uid:<hex>" from the chip's unique id register, or the
    #: value its firmware was built with; "" when it has none (or speaks protocol 1.0)
    device_id: str = ""
    #: every input / output tensor of the model, in the .tflite's order (protocol 1.2); empty
    #: from an older device, whose model has one of each (see input_tensors / output_tensors)
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    FLAG_MODEL = 0x1
    FLAG_MONITOR = 0x2
    FLAG_SLEEPS = 0x4  #: receive is interrupt driven; the core sleeps (WFI) between requests
    FLAG_CHUNKED_INFER = 0x8  #: INFER_INPUT / INFER_OUTPUT: inputs and outputs larger than a frame

    @property
    def has_model(self) -> bool:
        return bool(self.flags & self.FLAG_MODEL)

    @property
    def has_monitor(self) -> bool:
        return bool(self.flags & self.FLAG_MONITOR)

    @property
    def sleeps_when_idle(self) -> bool:
        return bool(self.flags & self.FLAG_SLEEPS)

    @property
    def chunked_infer(self) -> bool:
        return bool(self.flags & self.FLAG_CHUNKED_INFER)

    @property
    def lists_tensors(self) -> bool:
        """INFO carried the tensor table (protocol 1.2 and later)."""
        return (self.proto_major, self.proto_minor) >= (1, 2)

    @property
    def pages_stats(self) -> bool:
        """STATS takes the first channel record wanted (protocol 1.3 and later)."""
        return (self.proto_major, self.proto_minor) >= (1, 3)

    @property
    def input_tensors(self) -> tuple[TensorSpec, ...]:
        """The inputs INFER takes, one after the other: the table of a 1.2 device; from an
        older one (which serves one input) a single tensor of ``input_bytes``, its type not
        said (taken as int8: the bytes move unchanged either way)."""
        if self.lists_tensors or not self.has_model:
            return self.inputs
        return (TensorSpec(9, self.input_bytes),)

    @property
    def output_tensors(self) -> tuple[TensorSpec, ...]:
        """The outputs INFER answers, one after the other (as :attr:`input_tensors`)."""
        if self.lists_tensors or not self.has_model:
            return self.outputs
        return (TensorSpec(9, self.output_bytes),)

    def to_json(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["model_hash"] = f"{self.model_hash:08x}"
        return d


def _take_str(buf: bytes, off: int, what: str) -> tuple[str, int]:
    if off >= len(buf):
        raise ValueError(f"INFO payload ends before {what}")
    n = buf[off]
    if off + 1 + n > len(buf):
        raise ValueError(f"INFO payload truncated inside {what}")
    return buf[off + 1 : off + 1 + n].decode("utf-8", errors="replace"), off + 1 + n


def pack_str(s: str) -> bytes:
    b = s.encode("utf-8")[:255]
    return bytes([len(b)]) + b


def unpack_info(payload: bytes) -> DeviceInfo:
    """Parse an INFO response; trailing bytes (fields of a newer minor version) are ignored."""
    if len(payload) < _INFO_FIXED.size:
        raise ValueError(f"INFO payload is {len(payload)} bytes, expected at least {_INFO_FIXED.size}")
    fixed = _INFO_FIXED.unpack_from(payload)
    off = _INFO_FIXED.size
    fw, off = _take_str(payload, off, "the firmware version")
    board, off = _take_str(payload, off, "the board name")
    model, off = _take_str(payload, off, "the model name")
    # protocol 1.1 appends the device id; a 1.0 device's trailing bytes (none) are not one
    device_id, off = _take_str(payload, off, "the device id") if fixed[1] >= 1 or fixed[0] > 1 else ("", off)
    tensors: list[tuple[TensorSpec, ...]] = [(), ()]
    if (fixed[0], fixed[1]) >= (1, 2):  # 1.2: num_inputs u8, num_outputs u8, then (type u8, bytes u32) each
        if off + 2 > len(payload):
            raise ValueError("INFO payload ends before the tensor table")
        counts = payload[off], payload[off + 1]
        off += 2
        for role, n in enumerate(counts):
            if off + n * _TENSOR_ENTRY.size > len(payload):
                raise ValueError(f"INFO payload truncated inside the tensor table ({counts[0]} inputs, "
                                 f"{counts[1]} outputs)")
            tensors[role] = tuple(TensorSpec(*_TENSOR_ENTRY.unpack_from(payload, off + k * _TENSOR_ENTRY.size))
                                  for k in range(n))
            off += n * _TENSOR_ENTRY.size
    return DeviceInfo(*fixed, firmware_version=fw, board=board, model_name=model, device_id=device_id,
                      inputs=tensors[0], outputs=tensors[1])


def pack_info(info: DeviceInfo) -> bytes:
    """The INFO payload a device would send (tests and device simulators)."""
    return (
        _INFO_FIXED.pack(info.proto_major, info.proto_minor, info.flags, info.model_hash, info.input_bytes,
                         info.output_bytes, info.arena_bytes, info.input_scale, info.input_zero_point,
                         info.output_scale, info.output_zero_point, info.tick_hz, info.cpu_hz, info.max_payload,
                         info.num_layers)
        + pack_str(info.firmware_version) + pack_str(info.board) + pack_str(info.model_name)
        + (pack_str(info.device_id) if (info.proto_major, info.proto_minor) >= (1, 1) else b"")
        + (bytes([len(info.inputs), len(info.outputs)])
           + b"".join(_TENSOR_ENTRY.pack(t.type, t.bytes) for t in (*info.inputs, *info.outputs))
           if info.lists_tensors else b"")
    )


_INFER_HEAD = struct.Struct("<bI")


def unpack_infer(payload: bytes, output_bytes: int, max_payload: int | None = None) -> tuple[int, int, bytes]:
    """(status, elapsed ticks, output bytes) from an INFER response. With ``max_payload``
    (the device's, from INFO) an output that does not fit one frame comes back cut at the
    frame's end: the bytes returned are then its first part (INFER_OUTPUT reads the rest)."""
    want = _INFER_HEAD.size + output_bytes
    if max_payload is not None and want > max_payload:
        want = max_payload
    if len(payload) != want:
        raise ValueError(f"INFER response is {len(payload)} bytes, expected {want}"
                         f" (status, ticks and {want - _INFER_HEAD.size} of {output_bytes} output bytes)")
    status, ticks = _INFER_HEAD.unpack_from(payload)
    return status, ticks, payload[_INFER_HEAD.size :]


def pack_infer_input(offset: int, chunk: bytes) -> bytes:
    """An INFER_INPUT payload: ``chunk`` goes to the input tensor at ``offset``."""
    return struct.pack("<I", offset) + bytes(chunk)


def pack_infer_output(offset: int, length: int) -> bytes:
    """An INFER_OUTPUT payload: read up to ``length`` output bytes from ``offset``."""
    return struct.pack("<IH", offset, length)


#: Longest ERROR detail the protocol allows (docs/protocol.md); a longer one is cut here.
MAX_ERROR_DETAIL = 200


def unpack_error(payload: bytes) -> tuple[int, int, str]:
    """(code, request type, detail text) from an ERROR frame; tolerant of short payloads.
    The detail is the device's text and reaches terminals and logs: it is cut to
    MAX_ERROR_DETAIL bytes (marked with "..."), and anything unprintable (escape sequences,
    invalid UTF-8, control characters) is shown as an escape, never sent as is."""
    code = payload[0] if len(payload) > 0 else 0
    req = payload[1] if len(payload) > 1 else 0
    raw = payload[2:]
    text = raw[:MAX_ERROR_DETAIL].decode("utf-8", errors="backslashreplace")
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return code, req, text + ("..." if len(raw) > MAX_ERROR_DETAIL else "")
