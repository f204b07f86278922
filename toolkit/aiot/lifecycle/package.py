"""Model packages: the AIPK container (metadata, .tflite, monitor configuration, golden
vectors) wrapped in an MCUboot image signed with imgtool (Ed25519).

    body = build_container(meta, tflite=..., monitor_config=..., golden=[(x, y), ...])
    key = generate_key(dir / "release-key.pem")
    signed = sign(body, key, version="1.2.0", out=dir / "model-1.2.0.signed.bin")

Layout of the container (little-endian; the device parses it in firmware/src/update/package.c):
``magic "AIPK" u32, format 1 u16, section count u16, model ABI u32, schema id u32,
model version u32, 0 u32``, then one ``kind u16, 0 u16, offset u32, length u32, crc32 u32``
per section, then the sections."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from aiot.errors import ToolkitError

MODEL_ABI = 1  # AIOT_MODEL_ABI in firmware/include/aiot/update.h
#: Bytes of the arena a release's plan runs in on the update firmware (AIOT_UPDATE_PLAN_ARENA's
#: default in firmware/src/update/service.c); aiot build --update-key records it in build.json.
PLAN_ARENA = 2048
#: Most layers a release's plan may have on the update firmware (AIOT_PLAN_MAX_LAYERS's default;
#: `aiot build --plan-layers` changes it).
PLAN_LAYERS = 16
META, TFLITE, MONITOR, GOLDEN, PLAN = 1, 2, 3, 4, 5
MAGIC = 0x4B504941
HEADER = struct.Struct("<IHHIIII")
SECTION = struct.Struct("<HHIII")
#: MCUboot image header size used for packages (imgtool --header-size, --pad-header).
IMAGE_HEADER_SIZE = 0x200
#: Default model slot size (imgtool --slot-size; a board file's update slot overrides it).
DEFAULT_SLOT_SIZE = 0x20000


def schema_id(channels: Sequence[str], window: int) -> int:
    """CRC-32 naming an input schema: the sensors, in order, and the window length.
    A package for another schema is refused by a device configured for this one."""
    text = f"channels={','.join(channels)};window={int(window)}"
    return zlib.crc32(text.encode()) or 1  # 0 means "any" on the device


def golden_section(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> bytes:
    pairs = [(np.asarray(x, np.int8).ravel(), np.asarray(y, np.int8).ravel()) for x, y in pairs]
    if not pairs:
        return struct.pack("<HHHH", 0, 0, 0, 0)
    n_in, n_out = pairs[0][0].size, pairs[0][1].size
    if any(x.size != n_in or y.size != n_out for x, y in pairs):
        raise ToolkitError("golden vectors differ in size", hint="give every vector the model's input and output size")
    body = b"".join(x.tobytes() + y.tobytes() for x, y in pairs)
    return struct.pack("<HHHH", len(pairs), n_in, n_out, 0) + body


def build_container(
    meta: dict,
    *,
    tflite: bytes,
    monitor_config: bytes = b"",
    golden: Iterable[tuple[np.ndarray, np.ndarray]] = (),
    plan: bytes = b"",
    abi: int = MODEL_ABI,
    schema: int,
    model_version: int,
) -> bytes:
    """The AIPK body. ``meta`` is stored as JSON (sorted keys) with abi/schema added."""
    meta = {**meta, "abi": abi, "schema_id": schema, "model_version": model_version}
    sections = [(META, json.dumps(meta, sort_keys=True).encode()), (TFLITE, bytes(tflite))]
    if monitor_config:
        sections.append((MONITOR, bytes(monitor_config)))
    sections.append((GOLDEN, golden_section(golden)))
    if plan:  # the model as data (aiot.lifecycle.plan); the device's trial runs it
        sections.append((PLAN, bytes(plan)))
    offset = HEADER.size + SECTION.size * len(sections)
    table, data = b"", b""
    for kind, blob in sections:
        pad = (-len(data)) % 4  # keep sections word-aligned for the device (the plan is read in place)
        data += b"\0" * pad
        table += SECTION.pack(kind, 0, offset + len(data), len(blob), zlib.crc32(blob))
        data += blob
    return HEADER.pack(MAGIC, 1, len(sections), abi, schema, model_version, 0) + table + data


def read_container(body: bytes) -> dict:
    """Sections of an AIPK body by kind (host side, for registry and tools); raises on damage."""
    if len(body) < HEADER.size:
        raise ToolkitError("model package body is truncated", hint="rebuild it with aiot release")
    magic, fmt, count, abi, schema, version, _ = HEADER.unpack_from(body)
    if magic != MAGIC or fmt != 1:
        raise ToolkitError("not an aiot model package (AIPK magic)", hint="build packages with aiot release")
    out: dict = {"abi": abi, "schema_id": schema, "model_version": version}
    for i in range(count):
        kind, _, off, length, crc = SECTION.unpack_from(body, HEADER.size + i * SECTION.size)
        blob = body[off : off + length]
        if len(blob) != length or zlib.crc32(blob) != crc:
            raise ToolkitError(f"model package section {kind} is corrupted", hint="rebuild it with aiot release")
        out[kind] = blob
    out["meta"] = json.loads(out[META]) if META in out else {}
    return out


# ---------------------------------------------------------------------------------------
# imgtool (MCUboot's signing tool, from PyPI)


_IMGTOOL_LOCK = threading.Lock()  # its output is captured by redirecting this process's stdout


def _imgtool(args: list[str]) -> tuple[int, str]:
    """Run imgtool's own command line (its click command) in this process: (exit code, what
    it printed). A process per call took most of a second (Python and imgtool's imports)
    for an operation of milliseconds, and a release or a signed build makes several."""
    try:
        import click
        from imgtool.main import imgtool
    except ImportError as e:
        raise ToolkitError(
            "imgtool is not installed (MCUboot's image signing tool)",
            hint="pip install 'aiot-toolkit[lifecycle]' (or pip install imgtool)",
        ) from e
    out = io.StringIO()
    with _IMGTOOL_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            imgtool.main(args=[str(a) for a in args], prog_name="imgtool", standalone_mode=False)
            code = 0
        except SystemExit as e:  # imgtool's own refusals (verify) exit
            code = e.code if isinstance(e.code, int) else 1
        except click.ClickException as e:
            e.show(out)
            code = e.exit_code
        except click.exceptions.Abort:
            code = 1
        except Exception as e:  # noqa: BLE001 -- imgtool raises what it meets (a key it cannot read)
            print(f"{type(e).__name__}: {e}", file=out)
            code = 1
    return code, out.getvalue()


def _run_imgtool(args: list[str], what: str) -> str:
    code, text = _imgtool(args)
    if code != 0:
        raise ToolkitError(f"imgtool {what} failed: {text.strip()[-600:]}",
                           hint="check the key file and the slot size (imgtool " + " ".join(args[:1]) + " --help)")
    return text


def generate_key(path: Path) -> Path:
    """A new Ed25519 signing key (PEM, unencrypted) at ``path``; refuses to overwrite."""
    path = Path(path)
    if path.exists():
        raise ToolkitError(f"{path} already exists", hint="keep the existing key, or delete it first if you mean to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    _run_imgtool(["keygen", "-k", str(path), "-t", "ed25519"], "keygen")
    return path


def public_key(key: Path) -> bytes:
    """The 32 raw bytes of the Ed25519 public key the device must trust."""
    from cryptography.hazmat.primitives import serialization

    k = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(body: bytes, key: Path, *, version: str, out: Path, slot_size: int = DEFAULT_SLOT_SIZE) -> bytes:
    """Wrap ``body`` into a signed MCUboot image at ``out`` and return its bytes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".body.bin")
    raw.write_bytes(body)
    try:
        _run_imgtool(["sign", "-k", str(key), "--header-size", hex(IMAGE_HEADER_SIZE), "--pad-header",
                      "--slot-size", hex(slot_size), "--version", version, str(raw), str(out)], "sign")
    finally:
        raw.unlink(missing_ok=True)
    return out.read_bytes()


def imgtool_verify(image: Path, key: Path) -> tuple[bool, str]:
    """imgtool's own verdict on a signed image (tests use it as an independent check)."""
    code, text = _imgtool(["verify", "-k", str(key), str(image)])
    return code == 0, text.strip()
