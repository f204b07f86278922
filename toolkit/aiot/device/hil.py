"""Talk to a device running the aiot firmware: transports and a request/response client.

    with open_device(board="mps2-an386", elf="build/fw/firmware.elf") as dev:   # QEMU
        print(dev.info())
        res = dev.infer(x_int8)          # InferResult(output, ticks)
    with open_device(transport="serial", port="/dev/ttyACM0", baud=115200) as dev:
        ...

One transport interface (write bytes, read what arrived within a timeout, close), two
implementations: ``QemuTransport`` boots the firmware in QEMU and connects to its UART
socket, ``SerialTransport`` opens any pyserial URL (/dev/ttyACM0, COM3, socket://,
rfc2217://). The client never hangs: every request has a deadline, idempotent requests
are retried, and a silent or wrong device produces an error that names the port and
what was expected."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from aiot.device import protocol as P
from aiot.errors import ToolkitError

DEFAULT_TIMEOUT = 2.0
DEFAULT_BAUD = 115200


class DeviceTimeout(ToolkitError):
    """No (valid) answer within the deadline, after all retries."""


#: Error codes that say a request arrived damaged (never acted on): retried like a lost answer.
LINK_ERRORS = frozenset({P.ErrorCode.BAD_CRC, P.ErrorCode.BAD_ENCODING, P.ErrorCode.BAD_LENGTH})


class DeviceError(ToolkitError):
    """The device answered with an ERROR frame."""

    def __init__(self, message: str, code: int, request: int, detail: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.code = code
        self.request = request
        self.detail = detail


# --- transports --------------------------------------------------------------------------


class Transport(Protocol):
    name: str  # where the device is, for messages: a URL or device path

    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """Bytes that arrive within ``timeout`` seconds (returns as soon as any did; b"" if none)."""
        ...

    def diagnose(self) -> str:
        """One sentence on what may be wrong, for timeout messages."""
        ...

    def close(self) -> None: ...


def _network_url(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``socket://`` or ``rfc2217://`` URL, None for any other port;
    a missing or impossible port is a clear error here, not one from inside pyserial."""
    from urllib.parse import urlsplit

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("socket", "rfc2217"):
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port is None or not 1 <= port <= 65535:
        raise ToolkitError(f"{url}: a {scheme}:// URL needs a host and a port 1..65535",
                           hint=f"e.g. {scheme}://127.0.0.1:4444")
    return parts.hostname, port


class SerialTransport:
    """Any pyserial URL: a device path, ``socket://host:port`` or ``rfc2217://host:port``."""

    def __init__(self, url: str, baud: int = DEFAULT_BAUD):
        import serial  # pyserial; imported here so `aiot --help` stays light

        self.name = url
        self.baud = int(baud)
        self.closed = False
        self.pipeline_depth = 1
        self._serial_exc = serial.SerialException
        network = _network_url(url)  # (host, port) of socket:// and rfc2217:// URLs, checked
        try:
            self._ser = serial.serial_for_url(url, baudrate=self.baud, timeout=0.1, write_timeout=5.0,
                                              do_not_open=True)
            if url.lower().startswith("socket://"):
                # pyserial empties the input right after connecting. On a socket nothing is stale
                # then: what came is the device's first output (QEMU with wait=on boots the guest
                # as we connect, and its boot banner was lost whenever we were slower than it).
                self._ser.reset_input_buffer = lambda: None
                try:
                    self._ser.open()
                finally:
                    del self._ser.reset_input_buffer  # the class's own again
            else:
                self._ser.open()
        except (serial.SerialException, ValueError, OSError, TypeError, KeyError) as e:
            if network:
                hint = (f"is something serving {network[0]}:{network[1]} (QEMU with -serial tcp:..., ser2net)? "
                        "Check the host and port")
            else:
                hint = ("check the port name (ls /dev/ttyACM* /dev/ttyUSB*), that no other program (a serial "
                        "monitor) holds it, and that you may use it (dialout group)")
            raise ToolkitError(f"cannot open serial port {url}: {e}", hint=hint) from None

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
            self._ser.flush()
        except (self._serial_exc, OSError) as e:
            raise ToolkitError(f"writing to {self.name} failed: {e}", hint="was the device unplugged or reset?") from None

    def read(self, timeout: float) -> bytes:
        if self.closed:
            raise ToolkitError(f"{self.name} closed the connection", hint="the device (or QEMU) stopped")
        try:
            self._ser.timeout = max(timeout, 0.0)
            data = self._ser.read(1)
        except (self._serial_exc, OSError) as e:
            self.closed = True
            raise ToolkitError(f"reading from {self.name} failed: {e}", hint="was the device unplugged or reset?") from None
        if data:
            # Then everything already buffered, without waiting (timeout 0 = non-blocking).
            try:
                self._ser.timeout = 0
                data += self._ser.read(1 << 16)
            except (self._serial_exc, OSError):
                self.closed = True  # keep what arrived before the link went down (EXIT ack)
        return data

    def diagnose(self) -> str:
        return f"is the aiot firmware running and the link set to {self.baud} baud?"

    def close(self, *, linger: bool = False) -> None:
        """A socket:// link (QEMU, a test's fake device, a ser2net) is closed at once, its
        socket shut down: pyserial's own close sleeps 0.3 s after it for a quick reconnect we
        never make. ``linger=True`` keeps pyserial's close; rfc2217:// and real ports always
        take it (rfc2217's also stops its reader thread)."""
        sock = getattr(self._ser, "_socket", None)
        if (not linger and type(self._ser).__module__.endswith(".protocol_socket")
                and isinstance(sock, socket.socket)):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            self._ser._socket = None
            self._ser.is_open = False
        with contextlib.suppress(Exception):
            self._ser.close()


class QemuTransport:
    """Boot ``elf`` on an emulated ``board`` and connect to its UART over TCP."""

    def __init__(self, board, elf: Path | str, cwd: Path | None = None):
        from aiot.target.boards import Board, get_board
        from aiot.target.qemu import Qemu

        self.board: Board = board if isinstance(board, Board) else get_board(board)
        self.qemu = Qemu(self.board, Path(elf), serial="tcp", cwd=cwd).start()
        try:
            self._link = SerialTransport(self.qemu.url, self.board.baud)
        except BaseException:
            self.qemu.stop()
            raise
        self.name = f"{self.qemu.url} (QEMU {self.board.name})"
        self.pipeline_depth = 16  # QEMU's UART back-pressures: requests can queue safely
        self.exit_code: int | None = None

    def _check_alive(self) -> None:
        if self.exit_code is not None or not self.alive():
            raise ToolkitError(f"{self.name}: the firmware is not running any more ({self.diagnose()})",
                               hint="it ended (EXIT request, fault or crash); start a new session")

    def write(self, data: bytes) -> None:
        self._check_alive()
        self._link.write(data)

    def read(self, timeout: float) -> bytes:
        try:
            return self._link.read(timeout)
        except ToolkitError:
            self._check_alive()  # a dead QEMU explains a broken link better than the socket error
            raise

    def alive(self) -> bool:
        return self.qemu.proc is not None and self.qemu.proc.poll() is None

    def diagnose(self) -> str:
        if self.exit_code is not None:
            return f"QEMU exited with code {self.exit_code}"
        if not self.alive():
            code, _out, err = self.wait_exit(1.0)
            return f"QEMU exited with code {code}" + (f"; stderr: {err.strip()[-300:]!r}" if err.strip() else "")
        return "QEMU is running but the firmware does not answer; was it built for this board with the protocol app?"

    def wait_exit(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """Wait for the guest to stop (after an EXIT request): (exit code, stdout, stderr)."""
        self._link.close(linger=False)
        code, out, err = self.qemu.wait(timeout)
        self.exit_code = code
        return code, out, err

    def close(self) -> None:
        self._link.close(linger=False)
        self.qemu.stop()


# --- client ------------------------------------------------------------------------------


def model_tensors(tflite: bytes) -> tuple[tuple[P.TensorSpec, ...], tuple[P.TensorSpec, ...]]:
    """(inputs, outputs) a device serves for ``tflite``: its int8 (or int16) graph's tensors in
    the file's order; a float-interface model's float edges stay on the host (docs/engine.md)."""
    from aiot.model import tflite as T

    g = T.load(tflite, check=False)
    q, d = T.float_input_quantize(g), T.float_output_dequantize(g)
    ins = [q.outputs[0]] if q is not None else list(g.inputs)
    outs = [d.inputs[0]] if d is not None else list(g.outputs)
    spec = lambda i: P.TensorSpec.of(g.tensors[i].dtype, g.tensors[i].size)  # noqa: E731
    return tuple(spec(i) for i in ins), tuple(spec(i) for i in outs)


@dataclass(frozen=True)
class InferResult:
    #: every output's values one after the other, in the .tflite's order (as tflite-micro's
    #: reference and the host build give them): int8 (output_bytes,) for an int8 model, int16
    #: for a 16x8 one, int32 when the outputs mix the two
    output: np.ndarray
    ticks: int          # device ticks across aiot_model_invoke() only
    status: int = 0
    #: each output tensor's values, in its own type
    outputs: tuple = ()


@dataclass
class _Stats:
    """What the link cost: requests sent, attempts repeated after no (valid) answer came in
    time, frames that arrived broken (by kind: BAD_CRC, BAD_ENCODING, ...) and valid frames
    that answered nothing in flight (late answers to an earlier attempt, another sender)."""

    requests: int = 0
    retries: int = 0
    broken_frames: int = 0
    stray_frames: int = 0
    broken_kinds: collections.Counter = field(default_factory=collections.Counter)

    @property
    def clean(self) -> bool:
        return not (self.retries or self.broken_frames or self.stray_frames)

    def to_json(self) -> dict:
        return {"requests": self.requests, "retries": self.retries, "broken_frames": self.broken_frames,
                "broken_kinds": dict(self.broken_kinds.most_common()), "stray_frames": self.stray_frames,
                "clean": self.clean}


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def counts_text(counts) -> str:
    """``{"BAD_CRC": 2, "INFO": 1}`` (a Counter or a dict) as ``BAD_CRC x2, INFO x1``, most first."""
    return ", ".join(f"{k} x{n}" for k, n in collections.Counter(counts).most_common())


class Device:
    """Request/response client over a transport (one request in flight at a time)."""

    #: EVENTS requests per :meth:`events` call: a device producing events as fast as they are
    #: read still hands control back (the rest comes with the next call)
    MAX_EVENT_BATCHES = 64

    def __init__(self, transport: Transport, *, timeout: float = DEFAULT_TIMEOUT, retries: int = 2,
                 max_payload: int | None = None):
        self.transport = transport
        self.timeout = float(timeout)
        self.retries = int(retries)
        # The largest payload this host sends: the device's limit once INFO said it (at most
        # ``max_payload`` when given), the protocol's default until then.
        self._max_payload_cap = max_payload
        self.max_payload = max_payload or P.DEFAULT_MAX_PAYLOAD
        self.counters = _Stats()
        self.stray: list[P.Frame | P.BrokenFrame] = []  # frames that answered nothing we asked
        self._decoder = P.StreamDecoder()
        self._seq = 0
        self._info: P.DeviceInfo | None = None
        #: (inputs, outputs) of the model require_model() checked an older device (protocol < 1.2) runs
        self._model_tensors: tuple | None = None
        self._ack_seq: int | None = None  # last event seq received (EVENTS acknowledgement)
        self._config = None
        self.events_pending = 0
        self.events_dropped = 0
        self._undelivered: list = []  # events received by a drain that then failed: the next one returns them
        self._last_raw = b""
        self._inbox: collections.deque = collections.deque()  # frames read, not yet consumed
        # A lone delimiter ends whatever partial frame the device's parser holds (line noise,
        # an aborted previous session); an empty frame is ignored by the device.
        self.transport.write(b"\x00")

    @property
    def name(self) -> str:
        return self.transport.name

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    # -- low level, also used by the HIL tests for malformed input --

    def send_raw(self, data: bytes) -> None:
        self.transport.write(data)

    def read_frames(self, timeout: float, want: int = 1) -> list[P.Frame | P.BrokenFrame]:
        """Everything that completes within ``timeout`` (returns early once ``want`` arrived)."""
        out: list[P.Frame | P.BrokenFrame] = list(self._inbox)
        self._inbox.clear()
        deadline = time.monotonic() + timeout
        while len(out) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            data = self.transport.read(min(left, 0.2))
            if data:
                self._last_raw = (self._last_raw + data)[-64:]
                out += self._decoder.feed(data)
        return out

    def request(self, type_: int, payload: bytes = b"", *, timeout: float | None = None,
                retry: bool = False) -> P.Frame:
        """Send one request and return its response frame; raises DeviceError on an ERROR frame.

        ``retry``: the request is idempotent, so after a timeout it is sent again (with a new
        seq; a late answer to the old one is then ignored)."""
        if len(payload) > self.max_payload:
            raise ToolkitError(
                f"{P.msg_name(type_)} payload of {len(payload)} bytes exceeds the device's maximum of {self.max_payload}",
                hint="rebuild the firmware with a larger -DAIOT_FRAME_MAX_PAYLOAD",
            )
        # Big frames take time on the wire (and QEMU's UART moves only a few KB/s): allow
        # 2 ms per payload byte on top of the deadline (1 KiB: +2 s).
        timeout = (self.timeout if timeout is None else timeout) + 2e-3 * len(payload)
        attempts = 1 + (self.retries if retry else 0)
        self.counters.requests += 1
        garbage_before = self._decoder.garbage_bytes
        stray_before = len(self.stray)
        for attempt in range(attempts):
            if attempt:
                self.counters.retries += 1
            seq = self._next_seq()
            # The leading 0x00 ends any partial frame the device holds (a request whose
            # delimiter was lost on the line), so this one is never merged with it.
            self.transport.write(b"\x00" + P.encode_frame(type_, seq, payload))
            try:
                f = self._await(type_, seq, time.monotonic() + timeout)
            except DeviceError as e:
                # The device saw our request arrive corrupted and did nothing with it: an
                # idempotent request is simply sent again, like after a lost answer.
                if retry and attempt + 1 < attempts and e.code in LINK_ERRORS:
                    continue
                raise
            if f is not None:
                return f
        # Garbage = broken frames completed + bytes still waiting for a delimiter (text output).
        raise self._timeout(type_, timeout, attempts,
                            self._decoder.garbage_bytes - garbage_before + self._decoder.pending,
                            self.stray[stray_before:])

    def _next_frame(self, deadline: float) -> P.Frame | P.BrokenFrame | None:
        while not self._inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._inbox.extend(self.read_frames(left, want=1))
        return self._inbox.popleft()

    def _await(self, type_: int, seq: int, deadline: float) -> P.Frame | None:
        """The response to (type_, seq), None at the deadline; raises DeviceError on its error
        frame. Frames that answer nothing in flight are kept in ``stray`` for diagnostics."""
        while True:
            f = self._next_frame(deadline)
            if f is None:
                return None
            if isinstance(f, P.BrokenFrame):
                self.counters.broken_frames += 1
                self.counters.broken_kinds[f.error.name] += 1
                self.stray.append(f)
            elif f.seq == seq and f.type == (type_ | P.RESPONSE):
                return f
            elif f.seq == seq and f.type == P.Msg.ERROR and P.unpack_error(f.payload)[1] == type_:
                # Errors about broken frames carry the garbage's own seq byte: also matching
                # the request type makes a stray error for ours 1 in 65536, not 1 in 256.
                raise self._error(type_, f)
            else:
                self.counters.stray_frames += 1
                self.stray.append(f)

    def _error(self, type_: int, f: P.Frame) -> DeviceError:
        code, req, detail = P.unpack_error(f.payload)
        hints = {
            P.ErrorCode.NO_MODEL: "this firmware was built without a model: aiot build --board B --package PKG",
            P.ErrorCode.UNKNOWN_TYPE: "the firmware is older than this toolkit; rebuild and flash it",
            P.ErrorCode.NO_MONITOR: "this firmware was built without the monitor",
        }
        msg = f"{self.name} rejected {P.msg_name(type_)}: {P.error_name(code)}" + (f" ({detail})" if detail else "")
        return DeviceError(msg, code, req, detail, hint=hints.get(code))

    def _timeout(self, type_: int, timeout: float, attempts: int, garbage: int,
                 strays: list | None = None) -> DeviceTimeout:
        """What the device did instead of answering: valid frames that answered nothing asked
        (another program on the port, or firmware answering with other seqs), broken frames
        by kind (noise, a wrong baud rate), bytes that are no frame at all (text output)."""
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        msg = (f"no answer from {self.name} within {timeout:g} s to {P.msg_name(type_)}{tries}; "
               f"expected a frame of type 0x{type_ | P.RESPONSE:02X} with the request's seq")
        strays = strays or []
        frames = collections.Counter(P.msg_name(f.type) for f in strays if isinstance(f, P.Frame))
        broken = collections.Counter(f.error.name for f in strays if isinstance(f, P.BrokenFrame))
        hints = []
        if frames:
            msg += (f"; it sent {sum(frames.values())} valid frame(s) that answer nothing asked ("
                    + counts_text(frames) + ")")
            hints.append("another program talking to the device, or firmware answering with other seqs?")
        if broken:
            msg += f"; {sum(broken.values())} broken frame(s) ({counts_text(broken)})"
            hints.append("noise on the line or a wrong baud rate?")
        if garbage and not broken:
            msg += f"; it sent {garbage} bytes that are not aiot frames (last: {self._last_raw[-32:]!r})"
            hints.append("wrong firmware or wrong baud rate?")
        elif garbage:
            msg += f" ({garbage} bytes that are not aiot frames, last: {self._last_raw[-32:]!r})"
        return DeviceTimeout(msg, hint=" ".join([*hints, self.transport.diagnose()]).strip())

    def reset_link_counters(self) -> None:
        """Count the link's requests, retries and broken or stray frames from now on."""
        self.counters = _Stats()

    def link_trouble(self) -> tuple[str, str] | None:
        """What went wrong on the link so far, for a verb's summary: (what happened, what to
        check), or None when every request was answered at the first attempt with nothing
        broken or stray on the line. The results themselves are sound either way (answers are
        CRC-checked, lost ones asked again); a link that needs this is one step from timeouts."""
        c = self.counters
        if c.clean:
            return None
        parts = []
        if c.retries:
            parts.append(f"{_plural(c.retries, 'retry', 'retries')} in {_plural(c.requests, 'request')} "
                         "(answer lost, corrupt or late)")
        if c.broken_frames:
            parts.append(f"{_plural(c.broken_frames, 'corrupt frame')} ({counts_text(c.broken_kinds)})")
        if c.stray_frames:
            parts.append(f"{_plural(c.stray_frames, 'stray frame')} (late answers to earlier attempts, or "
                         "another program on the port)")
        if isinstance(self.transport, QemuTransport):
            hint = "QEMU has no cable: answers came late (a loaded host) or the firmware's UART lost bytes"
        else:
            baud = getattr(self.transport, "baud", None)
            rate = f"{baud} baud" if baud else "the baud rate"
            hint = (f"check the cable and its connectors, that the firmware runs at {rate} and nothing else uses "
                    "the port; if it persists, use a lower rate (the board file's [uart] baud; rebuild, flash and "
                    "pass it as --baud)")
        return "; ".join(parts), hint

    def link_report(self) -> tuple[str, str] | None:
        """:meth:`link_trouble` for the end of a verb's summary: (what happened, what it means
        and what to check); None on a clean link, nothing to say. Each verb lays it out."""
        trouble = self.link_trouble()
        if trouble is None:
            return None
        return (trouble[0], f"what came through stands (answers are CRC-checked, lost ones asked again), but the "
                            f"link is unreliable: {trouble[1]}")

    # -- requests --

    def info(self, refresh: bool = False) -> P.DeviceInfo:
        if self._info is not None and not refresh:
            return self._info
        f = self.request(P.Msg.INFO, retry=True)
        try:
            info = P.unpack_info(f.payload)
        except ValueError as e:
            raise ToolkitError(f"{self.name} sent a malformed INFO response: {e}",
                               hint="firmware and toolkit versions differ; rebuild the firmware") from None
        if info.proto_major != P.PROTO_MAJOR:
            raise ToolkitError(
                f"{self.name} speaks protocol {info.proto_major}.{info.proto_minor}, this toolkit {P.PROTO_MAJOR}.{P.PROTO_MINOR}",
                hint="rebuild and flash the firmware with this toolkit (aiot build)",
            )
        if info.max_payload:  # the device's limit: never send more (and use all of it)
            cap = self._max_payload_cap
            self.max_payload = min(cap, info.max_payload) if cap else info.max_payload
        self._info = info
        return info

    def tensors(self, info: P.DeviceInfo | None = None) -> tuple[tuple[P.TensorSpec, ...], tuple[P.TensorSpec, ...]]:
        """(inputs, outputs) of the model on the device, in the .tflite's order: from its INFO
        (protocol 1.2), or for an older device from the model :meth:`require_model` checked it
        runs (its INFO says one input and one output of so many bytes, not their type)."""
        info = info or self.info()
        if self._model_tensors is not None and not info.lists_tensors:
            return self._model_tensors
        for t in (*info.input_tensors, *info.output_tensors):
            if t.type not in P.TENSOR_TYPES:
                raise ToolkitError(f"{self.name} serves a tensor of type {t.type} (TFLite TensorType), which this "
                                   f"toolkit does not read (it reads {', '.join(P.TENSOR_TYPES.values())})",
                                   hint="use the toolkit the firmware was built with, or rebuild the firmware with "
                                        "this one (aiot build)")
        return info.input_tensors, info.output_tensors

    def _infer_input(self, x, info: P.DeviceInfo, what: str = "infer()") -> bytes:
        """``x`` as an INFER payload (every input's bytes, one after the other), after checking
        it fits the model on the device. ``x``: one array of every input's values in order
        (all inputs of its type), or a list with one array per input."""
        if not info.has_model:
            raise ToolkitError(f"the firmware on {self.name} has no model (built without one)",
                               hint="build it with a model: aiot build --board B --package PKG")
        ins = self.tensors(info)[0]
        model = f"is the firmware built from this model package? (device model: {info.model_name!r})"
        if isinstance(x, (list, tuple)):
            if len(x) != len(ins):
                raise ToolkitError(f"{what} got {len(x)} input arrays, the model on {self.name} takes {len(ins)} "
                                   "inputs", hint=model)
            parts = [np.asarray(a) for a in x]
        else:
            arr = np.asarray(x)
            types = {t.dtype for t in ins}
            if len(types) > 1:
                raise ToolkitError(f"{what}: the model on {self.name} takes inputs of several types "
                                   f"({', '.join(t.dtype.name for t in ins)})", hint="pass one array per input")
            want = types.pop() if types else np.dtype(np.int8)
            if arr.dtype != want:
                raise ToolkitError(f"{what} needs {want.name} input, got {arr.dtype}",
                                   hint="quantize with the input scale/zero point first (vectors.npz holds x_int8)")
            total = sum(t.elements for t in ins)
            if arr.size != total:
                raise ToolkitError(f"input has {arr.size} {want.name} values, the model on {self.name} takes {total}",
                                   hint=model)
            flat, parts, at = arr.ravel(), [], 0
            for t in ins:
                parts.append(flat[at : at + t.elements])
                at += t.elements
        data = []
        for k, (a, t) in enumerate(zip(parts, ins)):
            if a.dtype != t.dtype:
                raise ToolkitError(f"{what}: input {k} is {a.dtype}, the model's input {k} is {t.dtype.name}",
                                   hint="quantize with that input's scale/zero point first")
            if a.size != t.elements:
                raise ToolkitError(f"{what}: input {k} has {a.size} values, the model on {self.name} takes "
                                   f"{t.elements}", hint=model)
            data.append(np.ascontiguousarray(a, dtype=t.dtype).tobytes())
        return b"".join(data)

    def _outputs(self, out: bytes, info: P.DeviceInfo) -> tuple[np.ndarray, tuple]:
        """(every output's values, flat; each output tensor's values) from the output bytes."""
        outs, at = [], 0
        for t in self.tensors(info)[1]:
            outs.append(np.frombuffer(out[at : at + t.bytes], dtype=t.dtype).astype(t.dtype.name))
            at += t.bytes
        if not outs:
            return np.frombuffer(out, dtype=np.int8).copy(), ()
        types = {o.dtype for o in outs}
        flat = np.concatenate(outs) if len(types) == 1 else np.concatenate([o.astype(np.int32) for o in outs])
        return flat, tuple(outs)

    def _one_frame(self, info: P.DeviceInfo) -> bool:
        """Input and output of one inference each fit one frame (the plain INFER of
        protocol 1.0, which every firmware speaks), with the limits INFO announced."""
        # Firmware without INFER_OUTPUT sends any output in one (oversized) frame, as it always did.
        return info.input_bytes <= self.max_payload and (
            5 + info.output_bytes <= (info.max_payload or 65535) or not info.chunked_infer)

    def _require_chunked(self, info: P.DeviceInfo) -> None:
        if not info.chunked_infer:
            raise ToolkitError(
                f"the model on {self.name} takes {info.input_bytes} B and gives {info.output_bytes} B, more than one "
                f"frame of {self.max_payload} B, and this firmware cannot split them (no INFER_INPUT/INFER_OUTPUT: "
                "INFO flags bit 3)",
                hint="rebuild and flash the firmware with this toolkit (aiot build), or build it with a larger "
                     "-DAIOT_FRAME_MAX_PAYLOAD")

    def _send_input(self, data: bytes, timeout: float | None) -> None:
        """INFER_INPUT chunks of ``data`` in order, each at most max_payload on the wire.
        Each chunk is retried alone: a repeated chunk rewrites the same bytes."""
        step = self.max_payload - 4
        if step < 1:
            raise ToolkitError(f"{self.name} allows payloads of {self.max_payload} B: too small for INFER_INPUT",
                               hint="rebuild the firmware with a larger -DAIOT_FRAME_MAX_PAYLOAD")
        for off in range(0, len(data), step):
            part = data[off : off + step]
            f = self.request(P.Msg.INFER_INPUT, P.pack_infer_input(off, part), timeout=timeout, retry=True)
            held = struct.unpack("<I", f.payload)[0] if len(f.payload) == 4 else None
            if held != off + len(part):
                raise ToolkitError(f"{self.name} sent an inconsistent INFER_INPUT answer (holds {held} bytes after "
                                   f"a chunk of {len(part)} at offset {off})")

    def _infer_chunked(self, data: bytes, info: P.DeviceInfo, timeout: float | None) -> P.Frame:
        """The input in INFER_INPUT chunks, then an INFER without payload runs it. The run
        consumes the input (the engine may reuse its memory), so a lost answer, or a device
        that lost what it held (a reset between chunks), costs the whole sequence again."""
        self._require_chunked(info)
        for attempt in range(1 + self.retries):
            if attempt:
                self.counters.retries += 1
            running = False
            try:
                self._send_input(data, timeout)  # a chunk that timed out was retried already
                running = True
                return self.request(P.Msg.INFER, b"", timeout=timeout)
            except DeviceTimeout:
                if not running or attempt == self.retries:
                    raise
            except DeviceError as e:
                if e.code != P.ErrorCode.BAD_PAYLOAD:
                    raise
                if attempt == self.retries:
                    raise DeviceError(e.message + "; the input was sent in INFER_INPUT chunks "
                                      f"({_plural(attempt + 1, 'attempt')})", e.code, e.request, e.detail,
                                      hint=e.hint or "was the device reset, or does another program use the port?"
                                      ) from None
        raise AssertionError("unreachable")

    def _read_output(self, first: bytes, info: P.DeviceInfo, timeout: float | None) -> bytes:
        """The whole output, given the part the INFER answer carried: INFER_OUTPUT reads
        the rest (idempotent, so retried)."""
        out = bytearray(first)
        while len(out) < info.output_bytes:
            want = min(info.output_bytes - len(out), self.max_payload - 4)
            f = self.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(len(out), want), timeout=timeout, retry=True)
            off = struct.unpack_from("<I", f.payload)[0] if len(f.payload) >= 4 else None
            if off != len(out) or len(f.payload) == 4:
                raise ToolkitError(f"{self.name} sent an inconsistent INFER_OUTPUT answer ({len(f.payload)} bytes "
                                   f"at offset {off}, asked for {want} at {len(out)})")
            out += f.payload[4 : 4 + want]
        return bytes(out)

    def _infer_result(self, f: P.Frame, info: P.DeviceInfo, timeout: float | None = None) -> InferResult:
        try:
            status, ticks, out = P.unpack_infer(f.payload, info.output_bytes,
                                                info.max_payload if info.chunked_infer else None)
        except ValueError as e:
            raise ToolkitError(f"{self.name} sent a malformed INFER response: {e}") from None
        if status == 0 and len(out) < info.output_bytes:
            out = self._read_output(out, info, timeout)
        if status != 0:  # this toolkit's firmware answers a failed inference with an ERROR frame instead
            raise ToolkitError(f"{self.name} answered INFER with status {status}: the inference failed, its output "
                               "is not a result", hint="flash firmware built by this toolkit (aiot build), which "
                                                       "reports engine failures with their reason")
        flat, each = self._outputs(out, info)
        return InferResult(flat, ticks, status, each)

    def require_model(self, tflite: bytes, source: str) -> P.DeviceInfo:
        """The device's INFO, once it is known to run exactly ``tflite`` (the CRC-32 INFO
        reports): a parity check against another model would blame the engine for it."""
        info = self.info()
        crc = zlib.crc32(tflite) & 0xFFFFFFFF
        if not info.has_model:
            raise ToolkitError(f"the firmware on {self.name} has no model", hint="build and flash it with the model")
        if info.model_hash != crc:
            raise ToolkitError(
                f"{self.name} runs model '{info.model_name}' (hash {info.model_hash:08x}), not {source} ({crc:08x})",
                hint="flash the firmware built from this model (aiot build --package ...), or pass --elf")
        try:
            ins, outs = model_tensors(tflite)
        except ToolkitError:  # bytes this host cannot read as a model: checked by their hash alone
            return info
        if info.lists_tensors:
            if (info.inputs, info.outputs) != (ins, outs):  # the same file: only a broken firmware gets here
                raise ToolkitError(f"{self.name} lists the inputs/outputs {info.inputs} / {info.outputs} for "
                                   f"{source}, whose are {ins} / {outs}",
                                   hint="rebuild the firmware with this toolkit (aiot build)")
        elif len(ins) > 1 or len(outs) > 1:
            raise ToolkitError(
                f"{self.name} speaks protocol {info.proto_major}.{info.proto_minor}, which serves one input and one "
                f"output; {source} has {len(ins)} inputs and {len(outs)} outputs",
                hint="rebuild and flash the firmware with this toolkit (aiot build): protocol 1.2 serves them all")
        else:
            self._model_tensors = (ins, outs)  # the types an older INFO does not say
        return info

    def infer(self, x, timeout: float | None = None) -> InferResult:
        """One inference on the device. ``x``: every input's values one after the other in the
        .tflite's order (int8; int16 for a 16x8 model), any shape; or one array per input."""
        info = self.info()
        data = self._infer_input(x, info)
        if not self._one_frame(info):
            return self._infer_result(self._infer_chunked(data, info, timeout), info, timeout)
        # A stateless model gives the same answer twice, so a lost answer can be asked again.
        return self._infer_result(self.request(P.Msg.INFER, data, timeout=timeout, retry=True), info)

    # -- the monitor (PUSH, EVENTS, STATS, CONFIG, RESET_BASELINE) --

    def configure(self, config, fresh: bool = False, part_bytes: int | None = None) -> bool:
        """Send a monitor configuration (aiot.monitor.Config). Returns True when the device
        started a fresh installation (new structure, or ``fresh``: commissioning again, event
        ring emptied), False for a live update of the knobs.

        A configuration that fits one frame goes in one CONFIG_SET; a larger one (64 channels:
        1,116 bytes) in CONFIG_PART frames of at most ``part_bytes`` of it (default: as many as
        a frame holds), which the device applies only once the last has arrived and the whole
        checks out (docs/protocol.md). ``part_bytes`` forces the parts (tests)."""
        from aiot import monitor as M

        if not isinstance(config, ctypes.Structure) or len(bytes(config)) != ctypes.sizeof(type(config)) \
                or not hasattr(config, "num_channels"):
            raise ToolkitError(f"configure() needs a aiot.monitor.Config, got {type(config).__name__}")
        # Packed for the firmware's channel capacity (its config struct's size, from CONFIG_GET).
        data = M.pack_config(config, self._config_capacity())
        if part_bytes is None and len(data) + 1 <= self.max_payload:
            # Retrying is safe without `fresh` (the same config twice is the same state); a fresh
            # installation repeated after a lost answer would only restart commissioning again.
            f = self.request(P.Msg.CONFIG_SET, data + (b"\x01" if fresh else b""), retry=not fresh)
            reinit = f.payload[:1] == b"\x01"
        else:
            self.info()  # the device's frame limit, which the parts must respect
            reinit = self._configure_in_parts(data, fresh, part_bytes or self.max_payload - P.CONFIG_PART_HEAD.size)
        if reinit:
            self._ack_seq = None  # event seqs restart with the new installation
        self._config = M.unpack_config(data)
        return reinit

    def _configure_in_parts(self, data: bytes, fresh: bool, part_bytes: int) -> bool:
        parts = P.config_parts(data, part_bytes, fresh)
        f = None
        for i, part in enumerate(parts):
            # A part sent again rewrites the same bytes; the last one applies the whole, which
            # is safe to repeat unless it starts a fresh installation (as CONFIG_SET).
            try:
                f = self.request(P.Msg.CONFIG_PART, part, retry=not (fresh and i == len(parts) - 1))
            except DeviceError as e:
                if e.code == P.ErrorCode.UNKNOWN_TYPE:
                    raise ToolkitError(
                        f"{self.name} cannot take a monitor configuration of {len(data)} bytes: it does not fit one "
                        f"frame of {self.max_payload} B and this firmware has no CONFIG_PART (protocol 1.0)",
                        hint="rebuild the firmware with this toolkit (aiot build), or with a larger "
                             "-DAIOT_FRAME_MAX_PAYLOAD") from None
                raise
        if len(f.payload) < 4 or f.payload[2] != 1:
            raise ToolkitError(f"{self.name} did not apply the configuration sent in {len(parts)} parts "
                               f"(answer {f.payload.hex()})", hint="rebuild the firmware with this toolkit (aiot build)")
        return f.payload[3] == 1

    def _config_get(self, offset: int | None = None, length: int = 0) -> tuple[bool, int, bytes]:
        """One CONFIG_GET: (configured, the whole configuration's size, these bytes of it)."""
        payload = b"" if offset is None else struct.pack("<HH", offset, length)
        f = self.request(P.Msg.CONFIG_GET, payload, retry=True)
        if len(f.payload) < 4:
            raise ToolkitError(f"{self.name} sent a malformed CONFIG_GET response ({len(f.payload)} bytes)")
        total = int.from_bytes(f.payload[2:4], "little") or len(f.payload) - 4  # 0: protocol 1.0, all of it
        return bool(f.payload[0]), total, f.payload[4:]

    def _config_bytes(self) -> tuple[bool, bytes]:
        """The device's whole configuration, read in as many CONFIG_GETs as it takes."""
        configured, total, data = self._config_get()
        while len(data) < total:
            _, _, more = self._config_get(len(data), total - len(data))
            if not more:
                raise ToolkitError(f"{self.name} sent no configuration bytes from offset {len(data)} of {total}")
            data += more
        return configured, data[:total]

    def _config_capacity(self) -> int:
        """AIOT_MONITOR_MAX_CHANNELS of the firmware (from its config struct's size)."""
        from aiot import monitor as M

        if getattr(self, "_capacity", None) is None:
            self._capacity = M.config_capacity(self._config_get()[1])
        return self._capacity

    @property
    def config(self):
        """The device's monitor configuration (aiot.monitor.Config), or None if unconfigured."""
        from aiot import monitor as M

        configured, data = self._config_bytes()
        try:
            cfg = M.unpack_config(data)  # any channel capacity, as the host Config
        except ToolkitError:
            raise ToolkitError(f"{self.name} sent a malformed CONFIG_GET response ({len(data)} bytes)") from None
        return cfg if configured else None

    def push(self, timestamps_ms, values, valid=None) -> np.ndarray:
        """Stream samples through the device's monitor; returns its window outputs
        (aiot.monitor.OUTPUT_DTYPE), exactly what the host build of the monitor returns.
        ``values``: (N, channels) float, NaN = missing. Batches are split to fit frames;
        the device may consume fewer samples than sent (output room), the rest is re-sent."""
        from aiot import monitor as M

        vals = np.asarray(values, dtype=np.float32)
        if vals.ndim != 2:
            raise ToolkitError(f"values must be (samples, channels), got shape {vals.shape}")
        n, ch = vals.shape
        ts = np.asarray(timestamps_ms).astype(np.int64)
        if ts.shape != (n,):
            raise ToolkitError(f"{ts.size} timestamps for {n} samples")
        present = np.isfinite(vals) if valid is None else (np.asarray(valid, bool) & np.isfinite(vals))
        mask_bytes = (ch + 7) // 8  # the valid mask: one bit per channel, little-endian
        rec = np.zeros(n, dtype=np.dtype([("t", "<u4"), ("mask", "u1", (mask_bytes,)), ("v", "<f4", (ch,))]))
        rec["t"] = (ts & 0xFFFFFFFF).astype(np.uint32)
        rec["mask"] = np.packbits(present, axis=1, bitorder="little")
        rec["v"] = np.where(present, vals, 0.0)
        per_frame = max(1, (self.max_payload - 4) // rec.dtype.itemsize)
        outs: list[np.ndarray] = []
        i = 0
        self.events_pending = 0
        while i < n:
            part = rec[i : i + per_frame]
            payload = struct.pack("<HBB", len(part), ch, 0) + part.tobytes()
            # Not retried: a repeated batch would be rejected by the monitor as duplicate
            # timestamps and its outputs lost; a lost answer is an error the caller sees.
            f = self.request(P.Msg.PUSH, payload)
            if len(f.payload) < 4:
                raise ToolkitError(f"{self.name} sent a malformed PUSH response ({len(f.payload)} bytes)")
            consumed, n_out, self.events_pending = struct.unpack_from("<HBB", f.payload)
            body = f.payload[4:]
            if len(body) != n_out * M.OUTPUT_DTYPE.itemsize or consumed > len(part) or (consumed == 0 and len(part)):
                raise ToolkitError(f"{self.name} sent an inconsistent PUSH response "
                                   f"(consumed {consumed} of {len(part)}, {n_out} outputs in {len(body)} bytes)")
            outs.append(np.frombuffer(body, dtype=M.OUTPUT_DTYPE).copy())
            i += consumed
        return np.concatenate(outs) if outs else np.zeros(0, dtype=M.OUTPUT_DTYPE)

    def events(self, journal: Path | str | None = None) -> list:
        """Drain the device's event ring buffer (oldest first) as aiot.monitor.Event.

        Safe to retry: the device keeps each batch until the next request acknowledges it by
        the last event seq received, so a lost answer is sent again, never lost. Events
        received before a request fails (timeout, lost link, Ctrl-C) are kept and returned
        first by the next call: the device has deleted some of them already. ``journal``: a
        JSON-lines file each batch is appended to (and synced) before it is acknowledged, so
        not even a killed process loses an event (see :class:`EventJournal`)."""
        out, self._undelivered = self._undelivered, []
        try:
            for batch in self.event_batches(journal):
                out += batch
        except BaseException:
            self._undelivered = out
            raise
        return out

    def iter_events(self, journal: Path | str | None = None) -> Iterator:
        """The events of :meth:`events`, one at a time as they arrive: a batch is
        acknowledged only when the caller asks for the event after it, so a caller that stops
        (or dies) part-way leaves the unseen events on the device."""
        pending, self._undelivered = self._undelivered, []
        while pending:
            yield pending.pop(0)
        for batch in self.event_batches(journal):
            yield from batch

    def event_batches(self, journal: Path | str | None = None) -> Iterator[list]:
        """One list of events per EVENTS answer; the batch's acknowledgement rides on the
        next request, sent only when the consumer asks for the next batch, so a consumer
        that stores each batch before asking for the next (the fleet gateway) loses none.
        ``journal`` as in :meth:`events`. Events :meth:`events` kept from a failed call are
        not in these batches."""
        from aiot import monitor as M

        jr = EventJournal(journal, device=self.identity()) if journal is not None else None
        for _batch in range(self.MAX_EVENT_BATCHES):  # the rest waits for the next call
            ack = struct.pack("<BH", 1, self._ack_seq) if self._ack_seq is not None else b"\x00\x00\x00"
            f = self.request(P.Msg.EVENTS, ack, retry=True)
            if len(f.payload) < 8:
                raise ToolkitError(f"{self.name} sent a malformed EVENTS response ({len(f.payload)} bytes)")
            count, _pending, size, dropped = struct.unpack_from("<BBHI", f.payload)
            # the record's size; 0 from firmware whose records did not carry the confidence yet
            dtype = {0: M.EVENT_DTYPE, M.WIRE_EVENT_DTYPE.itemsize: M.WIRE_EVENT_DTYPE}.get(size)
            if dtype is None:
                raise ToolkitError(f"{self.name} sends {size}-byte event records; this host reads "
                                   f"{M.WIRE_EVENT_DTYPE.itemsize}-byte ones (and 16-byte ones, size field 0)",
                                   hint="use the aiot that built the firmware, or build and flash it again with "
                                        "this one (aiot build)")
            body = f.payload[8:]
            if len(body) != count * dtype.itemsize:
                raise ToolkitError(f"{self.name} sent an EVENTS response with {count} events in {len(body)} bytes")
            self.events_dropped = dropped
            if count == 0:
                return
            recs = np.frombuffer(body, dtype=dtype)
            if self._ack_seq is not None and int(recs[-1]["seq"]) == self._ack_seq:
                raise ToolkitError(
                    f"{self.name} sent events up to seq {self._ack_seq} again although they were acknowledged: "
                    "it does not drop acknowledged events (docs/protocol.md, EVENTS)",
                    hint="flash firmware built by this toolkit (aiot build), or check that nothing else talks to the port")
            batch = [M.Event.from_record(r) for r in recs]
            if jr is not None:
                batch = jr.append(batch)  # on disk before the device may delete them
            yield batch
            # only now, with the batch in the caller's hands: the next request acknowledges it
            self._ack_seq = int(recs[-1]["seq"])

    _event_batches = event_batches  # the name it had before it was public

    def identity(self) -> dict:
        """Which device this is and which boot of it: INFO's board, model (name and hash) and
        firmware version; the boot instant by the host's clock (now less the uptime STATS
        reports), and that uptime. An event journal keys its lines by it."""
        info = self.info()
        uptime = self.stats()["link"]["uptime_ticks"] / info.tick_hz if info.tick_hz else 0.0
        return {"board": info.board, "model": f"{info.model_name} {info.model_hash:08x}",
                "firmware": info.firmware_version, "boot": round(time.time() - uptime, 3),
                "uptime_s": round(uptime, 3)}

    @staticmethod
    def _stats_records_at() -> int:
        """Where a STATS answer's channel records begin: its 4-byte head, the monitor's stats,
        then the link counters (8 u32 and the u64 uptime ticks)."""
        from aiot import monitor as M

        return 4 + ctypes.sizeof(M.Stats) + 40

    def _stats_answer(self, first: int) -> bytes:
        """One STATS answer, its channel records from ``first`` (checked: sizes, length)."""
        from aiot import monitor as M

        f = self.request(P.Msg.STATS, bytes([first]) if first else b"", retry=True)
        p = f.payload
        if len(p) >= 4 and (p[2], p[3]) != (ctypes.sizeof(M.Stats), ctypes.sizeof(M.ChannelInfo)):
            raise ToolkitError(
                f"{self.name} has a different monitor.h: stats/channel structs of {p[2]}/{p[3]} bytes, "
                f"the toolkit expects {ctypes.sizeof(M.Stats)}/{ctypes.sizeof(M.ChannelInfo)}",
                hint="rebuild the firmware with this toolkit")
        base = self._stats_records_at()
        if len(p) < base or len(p) != base + p[1] * ctypes.sizeof(M.ChannelInfo):
            raise ToolkitError(f"{self.name} sent a malformed STATS response ({len(p)} bytes)")
        return p

    def stats(self) -> dict:
        """Link counters (frames received, broken frames by kind) and the monitor's state,
        with every channel's record: an answer holds as many as fit one frame (23 in 1 KiB),
        the rest are asked for from where it stopped (a protocol 1.2 device: the first only)."""
        from aiot import monitor as M

        p = self._stats_answer(0)
        base, size = self._stats_records_at(), ctypes.sizeof(M.ChannelInfo)
        records, last = p[base:], p
        if p[0] and p[1] and self.info().pages_stats:
            full = self.info().max_payload or P.DEFAULT_MAX_PAYLOAD
            # an answer with room for one more record was the last; channel numbers are a u8
            while len(last) + size > full and len(records) // size < 255:
                last = self._stats_answer(len(records) // size)
                if not last[1]:
                    break
                records += last[base:]
        st = M.Stats.from_buffer_copy(p, 4)
        link = struct.unpack_from("<8IQ", p, 4 + ctypes.sizeof(M.Stats))
        keys = ("frames_ok", "bad_crc", "bad_length", "bad_encoding", "too_large", "unknown_type", "bad_payload",
                "other_errors", "uptime_ticks")
        out: dict = {"link": dict(zip(keys, link)), "configured": bool(p[0])}
        if p[0]:
            out["monitor"] = {
                "phase": M.PHASES[st.phase] if st.phase < len(M.PHASES) else st.phase,
                "state": M.STATES[st.state] if st.state < len(M.STATES) else st.state,
                "alert": st.alert, "events_pending": st.events_pending, "windows": st.windows,
                "rejected_samples": st.rejected_samples, "score_errors": st.score_errors,
                "events_dropped": st.events_dropped, "time_resets": st.time_resets,
            }
            out["channels"] = [
                {k: getattr(ci, k) for k, _t in M.ChannelInfo._fields_ if k != "reserved"}
                for ci in (M.ChannelInfo.from_buffer_copy(records, c * size) for c in range(len(records) // size))
            ]
        return out

    def reset_baseline(self) -> None:
        # Not retried: a second reset after a lost answer would restart commissioning twice.
        self.request(P.Msg.RESET_BASELINE)

    def infer_many(self, xs, depth: int | None = None, timeout: float | None = None) -> list[InferResult]:
        """Many inferences, pipelined ``depth`` requests deep (responses come back in order).

        Default depth: the transport's ``pipeline_depth`` — 16 on QEMU (its UART buffers
        everything), 1 on a real serial port (a polled UART cannot receive while it sends)."""
        info = self.info()
        if isinstance(xs, (list, tuple)) and xs and isinstance(xs[0], (list, tuple)):
            vectors = list(xs)  # one array per input, per inference (inputs of several types)
        else:
            xs = np.asarray(xs)
            vectors = list(xs.reshape(len(xs), -1))
        payloads = [self._infer_input(x, info, "infer_many()") for x in vectors]
        depth = max(1, int(depth or getattr(self.transport, "pipeline_depth", 1)))
        if not self._one_frame(info):  # several requests per inference: one inference at a time
            return [self.infer(x, timeout=timeout) for x in vectors]
        if depth == 1:
            return [self._infer_result(self.request(P.Msg.INFER, d, timeout=timeout, retry=True), info)
                    for d in payloads]
        per = (self.timeout if timeout is None else timeout) + 2e-3 * info.input_bytes
        out: list[InferResult] = []
        for start in range(0, len(payloads), depth):
            chunk = payloads[start : start + depth]
            seqs = [self._next_seq() for _ in chunk]
            self.counters.requests += len(chunk)
            self.transport.write(b"".join(b"\x00" + P.encode_frame(P.Msg.INFER, s, d) for s, d in zip(seqs, chunk)))
            for s in seqs:
                f = self._await(P.Msg.INFER, s, time.monotonic() + per * len(chunk))
                if f is None:
                    raise self._timeout(P.Msg.INFER, per, 1, self._decoder.pending)
                out.append(self._infer_result(f, info))
        return out

    def exit(self, code: int = 0, timeout: float = 10.0) -> int | None:
        """Ask the firmware to stop with ``code``; returns QEMU's exit code (None on hardware)."""
        if not 0 <= code <= 255:
            raise ValueError("exit code must be 0..255")
        self.request(P.Msg.EXIT, bytes([code]))  # not retried: after a lost ack the device is gone
        wait = getattr(self.transport, "wait_exit", None)
        if wait is None:
            return None
        return wait(timeout)[0]

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventJournal:
    """An append-only JSON-lines file of monitor events (one object per line, the fields of
    aiot.monitor.Event), each batch written and fsynced before the device is told it may
    delete it.

    A process killed after writing a batch but before acknowledging it gets that batch again
    from the device (it holds it until acknowledged), possibly with more events behind it.
    So the first batch a journal is handed is compared with the journal's end: the events of
    its start that are the journal's last lines (same seq, timestamp and type) are not
    written twice. ``device`` (:meth:`Device.identity`) keys that comparison: each line
    records the device's board, model, firmware and boot instant, and only the trailing
    lines of the same boot of the same device count, so a fresh installation or a rebooted
    device whose first events equal the journal's last lines is written, not dropped. Two
    boot instants are one boot when they differ by at most ``BOOT_SLACK_S`` plus
    ``BOOT_DRIFT`` of the uptime (link latency, a device clock off from the host's); a device
    whose clock is further off gets a repeated batch written twice, never lost. Without
    ``device``, the events alone are compared."""

    BOOT_SLACK_S = 2.0
    BOOT_DRIFT = 0.01

    def __init__(self, path: Path | str, device: dict | None = None):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ToolkitError(f"{self.path}: the event journal must be a regular file",
                               hint="give a file path, e.g. --journal events.jsonl")
        self._first = True
        self.device = device
        self._stamp = None if device is None else {k: device.get(k) for k in ("board", "model", "firmware", "boot")}

    def _same_boot(self, rec) -> bool:
        """Whether a line's ``device`` record is this journal's device, in this boot."""
        if self.device is None:
            return True
        if not isinstance(rec, dict) or any(rec.get(k) != self.device.get(k) for k in ("board", "model", "firmware")):
            return False
        try:
            slack = self.BOOT_SLACK_S + self.BOOT_DRIFT * float(self.device.get("uptime_s") or 0.0)
            return abs(float(rec["boot"]) - float(self.device["boot"])) <= slack
        except (KeyError, TypeError, ValueError):
            return False

    @staticmethod
    def _key(ev) -> tuple:
        d = ev if isinstance(ev, dict) else dataclasses.asdict(ev)
        return int(d["seq"]), int(d["timestamp_ms"]), str(d["type"])

    def _tail(self, n: int) -> list[tuple]:
        """Keys of the journal's last ``n`` complete events."""
        if not self.path.is_file():
            return []
        import json

        keys = []
        with self.path.open("rb") as f:
            f.seek(max(0, self.path.stat().st_size - 512 * n))
            for line in f.read().splitlines()[-n:]:
                try:
                    d = json.loads(line)
                    key = self._key(d)
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill mid-write: that event comes again and is written whole
                if self._same_boot(d.get("device")):
                    keys.append(key)
                else:
                    keys = []  # only the lines after the last one of another device or boot count
        return keys

    def append(self, batch: list) -> list:
        """Write ``batch`` (less, for the first batch, what repeats the journal's end);
        returns the events written."""
        import json
        import os

        new = list(batch)
        if self._first:
            self._first = False
            tail = self._tail(len(batch))
            keys = [self._key(ev) for ev in batch]
            repeat = next((k for k in range(min(len(keys), len(tail)), 0, -1) if keys[:k] == tail[-k:]), 0)
            new = new[repeat:]
        if not new:
            return []
        stamp = {} if self._stamp is None else {"device": self._stamp}
        lines = "".join(json.dumps({**dataclasses.asdict(ev), "channels": list(ev.channels), **stamp}) + "\n"
                        for ev in new)
        with self.path.open("a", encoding="utf-8") as f:
            if f.tell() and not self._ends_with_newline():
                f.write("\n")  # end a line a kill cut short, so the new ones parse
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        return new

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"


def make_transport(kind: str = "qemu", *, board=None, elf: Path | str | None = None, port: str | None = None,
                   baud: int | None = None, cwd: Path | None = None) -> Transport:
    """``cwd``: QEMU's working folder (where an emulated board keeps its update region file)."""
    if kind == "qemu":
        if board is None or elf is None:
            raise ToolkitError("the qemu transport needs a board and a firmware ELF")
        return QemuTransport(board, elf, cwd=cwd)
    if kind == "serial":
        if not port:
            raise ToolkitError("the serial transport needs a port", hint="pass --port /dev/ttyACM0 (or socket://host:port)")
        if baud is None and board is not None:
            from aiot.target.boards import Board, get_board

            baud = (board if isinstance(board, Board) else get_board(board)).baud
        return SerialTransport(port, baud or DEFAULT_BAUD)
    raise ToolkitError(f"unknown transport '{kind}'", hint="use qemu or serial")


@contextlib.contextmanager
def open_device(board=None, elf: Path | str | None = None, transport: str = "qemu", port: str | None = None,
                baud: int | None = None, timeout: float = DEFAULT_TIMEOUT, retries: int = 2) -> Iterator[Device]:
    """A connected Device; QEMU is started (and always stopped) around the block."""
    t = make_transport(transport, board=board, elf=elf, port=port, baud=baud)
    try:
        dev = Device(t, timeout=timeout, retries=retries)
        if transport == "qemu":
            # Handshake before handing the link out: QEMU's STM32 USART model drops bytes
            # that arrive before the firmware has enabled the UART, and INFO is retried.
            dev.info()
            dev.reset_link_counters()  # that boot-time retry says nothing about the link: count from here
        yield dev
    finally:
        t.close()

