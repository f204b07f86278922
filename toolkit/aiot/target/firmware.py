"""Build the device firmware for a board with arm-none-eabi-gcc, and report its size.

Sources: the Cortex-M startup, the board's chip-family port, every portable module
under firmware/src/, and (optionally) the generated model C. Compiler flags, defines and
the linker script all come from the board file. Each object is compiled separately so
the size report can attribute every symbol of the final ELF to engine code, weights,
arena or the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from aiot import paths
from aiot.target import hostbuild
from aiot.target.boards import Board
from aiot.target.elf import skip_empty_sections
from aiot.errors import ToolkitError
from aiot.target.toolchain import require

# -ffp-contract=off: no fused multiply-add, whatever -std another build system puts later (a
# PlatformIO export): the host (x86-64) and every Cortex-M build then round alike
COMMON_CFLAGS = [
    "-std=c99", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections", "-fno-common",
    "-Wall", "-Wextra", "-Werror", "-g",
]
# Firmware modules each app links; engine/ is added when a model is present.
APPS = {
    "device": ["app", "protocol", "monitor"],  # the product: framed protocol + monitor
    "bench": ["bench"],                        # model timing and bit-exactness (aiot bench)
    "boardcheck": ["boardcheck"],              # port bring-up: TX, SysTick calibration, RX echo
}


@dataclass
class SizeReport:
    """Bytes of flash and RAM, split the way a user budgets them."""

    flash_total: int
    ram_total: int
    engine_code: int       # kernels + generated invoke/glue code (flash)
    weights: int           # const model data (flash)
    arena: int             # the static tensor arena (RAM)
    app_code: int          # everything else in flash: startup, port, protocol, monitor, libc
    app_ram: int           # everything else in RAM: data, bss, stack
    stack: int

    def table(self) -> str:
        return (
            f"  flash {self.flash_total:>8,} B = engine code {self.engine_code:,} + weights {self.weights:,}"
            f" + rest {self.app_code:,}\n"
            f"  RAM   {self.ram_total:>8,} B = arena {self.arena:,} + stack {self.stack:,} + rest {self.app_ram:,}"
        )


@dataclass
class BuildResult:
    board: str
    elf: Path
    bin: Path
    size: SizeReport
    defines: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"board": self.board, "elf": str(self.elf), "bin": str(self.bin), "size": asdict(self.size)}


def _sources(model_dir: Path | None, board: Board, app: str = "device") -> tuple[list[Path], set[Path]]:
    """All C files to compile, and the subset that counts as engine code."""
    fw = paths.FIRMWARE
    if app not in APPS:
        raise ToolkitError(f"unknown firmware app '{app}'", hint=f"one of: {', '.join(APPS)}")
    if app == "bench" and model_dir is None:
        raise ToolkitError("the bench app needs a model", hint="pass the generated model folder")
    srcs = [fw / "port" / "cortexm" / "startup.c", fw / "port" / "cortexm" / "rxring.c",
            *sorted((fw / "port" / board.family).glob("*.c"))]
    for d in APPS[app]:
        srcs += sorted((fw / "src" / d).glob("*.c"))
    engine: set[Path] = set()
    if model_dir is not None:
        model_c = model_dir / "model.c"
        if not model_c.is_file():
            raise ToolkitError(f"no generated model in {model_dir} (model.c missing)",
                               hint="generate it first: aiot codegen --package <pkg>")
        check_generated_model(model_dir)
        engine = {*sorted((fw / "src" / "engine").glob("*.c")), model_c}
        srcs += sorted(engine)
    return srcs, engine


_HASH_IN_H = re.compile(r"#define AIOT_MODEL_HASH 0x([0-9a-fA-F]{8})u")
_HASH_IN_C = re.compile(r"tflite crc32 0x([0-9a-fA-F]{8})")


def check_generated_model(model_dir: Path) -> int:
    """The CRC-32 of the .tflite the C in ``model_dir`` was generated from, after checking
    that model.c and model.h come from the same model and, in a package (``PKG/c``), from
    the package's current model.tflite: a re-quantized package whose C was not generated
    again would otherwise build firmware running the old model."""
    h_text = (model_dir / "model.h").read_text(errors="replace") if (model_dir / "model.h").is_file() else ""
    with (model_dir / "model.c").open(errors="replace") as f:
        c_head = f.read(4096)
    mh, mc = _HASH_IN_H.search(h_text), _HASH_IN_C.search(c_head)
    pkg = model_dir.parent if model_dir.name == "c" else None
    regen = f"aiot codegen --package {pkg}" if pkg is not None and (pkg / "model.tflite").is_file() \
        else f"aiot codegen --model MODEL.tflite --out {model_dir}"
    if not mh or not mc:
        raise ToolkitError(f"{model_dir}: model.h / model.c do not name the model they were generated from "
                           "(not written by aiot codegen, or cut short)", hint=f"generate them again: {regen}")
    if mh.group(1).lower() != mc.group(1).lower():
        raise ToolkitError(f"{model_dir}: model.c and model.h were generated from different models "
                           f"(crc32 0x{mc.group(1)} and 0x{mh.group(1)}): an interrupted aiot codegen?",
                           hint=f"generate them again: {regen}")
    crc = int(mh.group(1), 16)
    if pkg is not None and (pkg / "model.tflite").is_file():
        now = zlib.crc32((pkg / "model.tflite").read_bytes()) & 0xFFFFFFFF
        if now != crc:
            raise ToolkitError(
                f"{model_dir}: the C was generated from another model (crc32 0x{crc:08x}) than {pkg / 'model.tflite'} "
                f"(0x{now:08x}): the package was re-quantized after aiot codegen",
                hint=f"generate its C again: {regen}")
    return crc


def image_complete(elf: Path) -> bool:
    """True for an image a build finished: an ELF whose build record (build.json, written
    last) names it. A file left by an interrupted build is not one."""
    elf = Path(elf)
    record = elf.parent / "build.json"
    try:
        with elf.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
        return Path(json.loads(record.read_text()).get("elf")).name == elf.name
    except (OSError, ValueError, AttributeError):
        return False


def _replace_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def sources(board: Board, model_dir: Path | None = None, app: str = "device") -> list[Path]:
    """Every C file ``build`` compiles for this board, app and model (``aiot export`` reuses it)."""
    return _sources(model_dir, board, app)[0]


def build_defines(board: Board, model_dir: Path | None = None, defines: Iterable[str] = ()) -> dict[str, str]:
    """The -D defines of a build: the board's, then ``defines`` (NAME or NAME=VALUE) on top."""
    defs = {**board.defines(), **dict(d.split("=", 1) if "=" in d else (d, "1") for d in defines)}
    if model_dir is None:
        defs["AIOT_NO_MODEL"] = "1"
    return defs


_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def device_id_defines(board: Board, device_id: str | None) -> list[str]:
    """The define that writes ``device_id`` into the image, which INFO then reports as the
    device's id: for boards whose chip has no unique id register (the board file's
    [device_id] table names the register of those that have one)."""
    if device_id is None:
        return []
    if board.device_uid is not None:
        raise ToolkitError(f"board {board.name} reports its chip's unique id as the device id; a build-time id "
                           "would not be used", hint="leave --device-id out for this board")
    if not _DEVICE_ID.fullmatch(device_id):
        raise ToolkitError(f"device id {device_id!r}: 1 to 64 letters, digits or . _ : -",
                           hint="e.g. --device-id pump-room-3-dev1")
    return [f'AIOT_DEVICE_ID="{device_id}"']


def include_dirs(model_dir: Path | None = None) -> list[Path]:
    return [paths.FIRMWARE / "include", paths.FIRMWARE / "src"] + ([model_dir] if model_dir else [])


# Link: our own startup (no crt0), newlib-nano, no OS, unused sections dropped.
LINK_FLAGS = ["-nostartfiles", "-specs=nano.specs", "-specs=nosys.specs", "-Wl,--gc-sections"]


def _run(cmd: Sequence[str], what: str) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolkitError(f"{what} failed:\n{proc.stderr.strip() or proc.stdout.strip()}",
                           hint="the command was: " + " ".join(cmd))
    return proc.stdout


def build(
    board: Board,
    out_dir: Path,
    model_dir: Path | None = None,
    *,
    opt: str = "-O2",
    defines: Iterable[str] = (),
    stack_bytes: int | None = None,
    jobs: int = 2,
    app: str = "device",
    extra_sources: Sequence[Path] = (),
    extra_includes: Sequence[Path] = (),
) -> BuildResult:
    """Compile and link the firmware for ``board`` into ``out_dir/firmware.elf``.

    ``extra_sources``/``extra_includes``: optional modules (e.g. the model-update service
    and its crypto, aiot.lifecycle.firmware) compiled with the same flags."""
    gcc = require("arm-none-eabi-gcc")
    if stack_bytes is None:
        stack_bytes = board.stack_bytes  # the board file's stack_bytes (default 4 KiB)
    out_dir.mkdir(parents=True, exist_ok=True)
    ld = out_dir / "link.ld"
    _replace_atomically(ld, board.linker_script(stack_bytes=stack_bytes))

    defs = build_defines(board, model_dir, defines)
    incs = [*include_dirs(model_dir), *extra_includes]
    cflags = [*board.cpu_flags(), opt, *COMMON_CFLAGS, *(f"-D{k}={v}" for k, v in defs.items())]
    srcs, engine_srcs = _sources(model_dir, board, app)
    srcs = [*srcs, *extra_sources]

    # Each object comes from the cache when this board's flags compiled the same file
    # against the same headers before (the engine, the ports, the protocol: most of a
    # build); a file that reads the model's folder (model.h) is compiled for this build
    # only, into a folder removed after the link.
    private: list[Path] = []

    # a flash-tight board compiles its app code for size; the engine keeps the build's level
    app_cflags = cflags if board.app_opt is None else [board.app_opt if f == opt else f for f in cflags]

    def compile_one(src: Path) -> Path:
        what = f"compiling {src.relative_to(paths.ROOT) if src.is_relative_to(paths.ROOT) else src}"
        flags = cflags if src in engine_srcs else app_cflags
        return hostbuild.cached_object(gcc, src, flags, incs, lambda args: _run([gcc, *args], what), private)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            objs = list(pool.map(compile_one, srcs))
    except BaseException:
        _remove(private)
        raise

    # Everything is made under a private name and renamed into place, the image last and
    # its record (build.json) after it: a build killed at any point leaves the previous
    # image or none, never a 0-byte or half-linked firmware.elf a later run would take.
    elf, binf, record = out_dir / "firmware.elf", out_dir / "firmware.bin", out_dir / "build.json"
    record.unlink(missing_ok=True)  # from here the folder holds no complete build until the end
    tmp_elf = out_dir / f".firmware.elf.{os.getpid()}.tmp"
    tmp_bin = out_dir / f".firmware.bin.{os.getpid()}.tmp"
    try:
        try:
            _run([gcc, *board.cpu_flags(), opt, *LINK_FLAGS, f"-T{ld}", f"-Wl,-Map={out_dir / 'firmware.map'}",
                  "-o", str(tmp_elf), *map(str, objs), "-lm"], f"linking {elf.name} for {board.name}")
        except ToolkitError as e:
            raise _does_not_fit(e, board) or e from None
        # An empty section keeps its RAM address as its load address (ld places no bytes in
        # flash for it); -O binary would pad the image from flash up to RAM (512 MB and more).
        _run([require("arm-none-eabi-objcopy"), "-O", "binary", "--gap-fill", "0xff", *skip_empty_sections(tmp_elf),
              str(tmp_elf), str(tmp_bin)], "objcopy")
        engine_objs = {o for s, o in zip(srcs, objs) if s in engine_srcs}
        size = _size_report(tmp_elf, objs, engine_objs, stack_bytes)
        os.replace(tmp_bin, binf)
        os.replace(tmp_elf, elf)
    finally:
        tmp_elf.unlink(missing_ok=True)
        tmp_bin.unlink(missing_ok=True)
        _remove(private)
    result = BuildResult(board=board.name, elf=elf, bin=binf, size=size, defines=defs)
    _replace_atomically(record, json.dumps(result.to_json(), indent=2))
    return result


def _remove(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _size(n: int) -> str:
    """``n`` bytes for a message: whole KB as KB, anything else (16 bytes, 1.5 KB) exactly."""
    return f"{n // 1024:,} KB" if n >= 1024 and n % 1024 == 0 else f"{n:,} bytes"


class DoesNotFit(ToolkitError):
    """The image is larger than the board's flash or RAM (raised instead of the linker dump)."""

    def __init__(self, board: Board, region: str, overflow: int):
        size = board.flash.length if region == "FLASH" else board.ram.length
        what = "flash" if region == "FLASH" else "RAM"
        super().__init__(
            f"the firmware does not fit {board.name}: it needs {overflow:,} bytes more {what} than the board's "
            f"{_size(size)}",
            hint=("generate the model with --optimize size (packed int8 weights), use a smaller model, or pick a "
                  "board with more memory (aiot boards)") if region == "FLASH" else
                 ("a smaller model (arena) or a board with more RAM (aiot boards); the stack size is set by "
                  "stack_bytes in the board file"))
        self.region = region
        self.overflow = overflow


def _does_not_fit(err: ToolkitError, board: Board) -> DoesNotFit | None:
    m = re.search(r"region [`']?(FLASH|RAM)'? overflowed by (\d+) bytes", err.message)
    return DoesNotFit(board, m.group(1), int(m.group(2))) if m else None


def _symbols(nm_out: str) -> list[tuple[str, int, str]]:
    """(name, size, type letter) for every sized symbol of `nm -S` output."""
    syms = []
    for line in nm_out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            _addr, size, kind, name = parts
            syms.append((name, int(size, 16), kind))
    return syms


def _size_report(elf: Path, objs: list[Path], engine_objs: set[Path], stack_bytes: int) -> SizeReport:
    nm = require("arm-none-eabi-nm")
    sz = require("arm-none-eabi-size")
    text, data, bss = _section_totals(_run([sz, "-B", "-d", str(elf)], "size"))
    flash_total, ram_total = text + data, data + bss

    # Classify by the symbol's section in its object file: in the ELF, .rodata is merged
    # into the .text output section, so the final symbol type cannot tell code from weights.
    engine_kinds: dict[str, str] = {}
    for obj in engine_objs:
        for name, _size, kind in _symbols(_run([nm, "-S", str(obj)], "nm")):
            if kind.upper() != "U":
                engine_kinds[name] = kind.upper()

    engine_code = weights = arena = 0
    for name, size, _kind in _symbols(_run([nm, "-S", str(elf)], "nm")):
        k = engine_kinds.get(name)
        if k == "T":
            engine_code += size
        elif k in ("R", "D"):
            weights += size  # model constants: weights, biases, requantization tables
        elif k in ("B", "C"):
            arena += size
    stack = stack_bytes
    return SizeReport(
        flash_total=flash_total, ram_total=ram_total, engine_code=engine_code, weights=weights, arena=arena,
        app_code=flash_total - engine_code - weights, app_ram=ram_total - arena - stack, stack=stack,
    )


def _section_totals(berkeley: str) -> tuple[int, int, int]:
    line = berkeley.strip().splitlines()[-1].split()
    return int(line[0]), int(line[1]), int(line[2])
