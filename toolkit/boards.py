"""Boards are data: one TOML file per board under boards/ (see boards/README.md).

A board names its core, FPU, memory map, clock, console UART and chip family; the
compiler flags, the -D defines for firmware/port/<family>/ and the linker script are
all derived from it here, so a new board is a new file, not new code."""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import paths
from .errors import ToolkitError

DEFAULT_BOARD = "mps2-an386"

# core -> (arch as the compiler knows it, has DSP extension, has optional FPU)
_CORES: dict[str, tuple[str, bool]] = {
    "cortex-m0": ("armv6-m", False),
    "cortex-m0plus": ("armv6-m", False),
    "cortex-m3": ("armv7-m", False),
    "cortex-m4": ("armv7e-m", True),
    "cortex-m7": ("armv7e-m", True),
    "cortex-m33": ("armv8-m.main", True),
}
_FPUS = {"none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16"}
_FAMILIES_DIR = paths.FIRMWARE / "port"


@dataclass(frozen=True)
class Region:
    origin: int
    length: int


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    fpu: str
    family: str
    cpu_hz: int
    flash: Region
    ram: Region
    uart_base: int
    baud: int
    emulated: bool
    source: Path
    qemu_machine: str | None = None
    systick_hz: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Derived and validated by toolkit/ports.py from the family tables ([stm32], [clock], pins).
    family_defines: dict[str, str] = field(default_factory=dict)
    stack_bytes: int = 4096

    @property
    def arch(self) -> str:
        return _CORES[self.core][0]

    @property
    def has_dsp(self) -> bool:
        return _CORES[self.core][1]

    @property
    def has_fpu(self) -> bool:
        return self.fpu != "none"

    def cpu_flags(self) -> list[str]:
        """Code-generation flags for arm-none-eabi-gcc."""
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.has_fpu:
            flags += ["-mfloat-abi=hard", f"-mfpu={self.fpu}"]
        else:
            flags += ["-mfloat-abi=soft"]
        return flags

    def defines(self) -> dict[str, str]:
        """-D defines that parameterize the chip family's port for this board."""
        d = {
            "AIOT_BOARD_NAME": f'"{self.name}"',
            "AIOT_CPU_HZ": f"{self.cpu_hz}u",
            "AIOT_UART_BASE": f"0x{self.uart_base:08X}u",
            "AIOT_UART_BAUD": f"{self.baud}u",
            "AIOT_SEMIHOSTING": "1" if self.emulated else "0",
            "AIOT_RAM_END": f"0x{self.ram.origin + self.ram.length:08X}u",
            **self.family_defines,
        }
        for key, value in self.extra.get("defines", {}).items():
            d[key] = str(value)
        return d

    def linker_script(self, stack_bytes: int | None = None) -> str:
        """The board's linker script, from firmware/port/cortexm/link.ld.in."""
        if stack_bytes is None:
            stack_bytes = self.stack_bytes
        template = (_FAMILIES_DIR / "cortexm" / "link.ld.in").read_text()
        return (
            template.replace("@FLASH_ORIGIN@", f"0x{self.flash.origin:08X}")
            .replace("@FLASH_LENGTH@", f"0x{self.flash.length:08X}")
            .replace("@RAM_ORIGIN@", f"0x{self.ram.origin:08X}")
            .replace("@RAM_LENGTH@", f"0x{self.ram.length:08X}")
            .replace("@STACK_BYTES@", f"0x{stack_bytes:X}")
            .replace("@BOARD@", self.name)
        )

    def qemu_args(self) -> list[str]:
        if not self.qemu_machine:
            raise ToolkitError(
                f"board {self.name} is real hardware; QEMU cannot run it",
                hint=f"run on an emulated board ({', '.join(b.name for b in list_boards() if b.emulated)}) "
                f"or flash it with: aiot flash --board {self.name}",
            )
        return ["-machine", self.qemu_machine]


def _require(table: dict[str, Any], key: str, src: Path, where: str = "") -> Any:
    if key not in table:
        raise ToolkitError(
            f"board file {src}: missing key '{where}{key}'",
            hint="see boards/README.md for the keys every board file needs",
        )
    return table[key]


def _region(table: dict[str, Any], key: str, src: Path) -> Region:
    r = _require(table, key, src, "memory.")
    try:
        return Region(int(r["origin"]), int(r["length"]))
    except (KeyError, TypeError, ValueError):
        raise ToolkitError(f"board file {src}: memory.{key} needs integer 'origin' and 'length'") from None


def load_board_file(src: Path) -> Board:
    try:
        raw = tomllib.loads(src.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ToolkitError(f"board file {src} is not valid TOML: {e}") from None
    core = _require(raw, "core", src)
    if core not in _CORES:
        raise ToolkitError(f"board file {src}: core = '{core}' is not a supported core", hint=f"supported cores: {', '.join(_CORES)}")
    fpu = raw.get("fpu", "none")
    if fpu not in _FPUS:
        raise ToolkitError(f"board file {src}: fpu = '{fpu}' is not a known FPU", hint=f"one of: {', '.join(sorted(_FPUS))}")
    family = _require(raw, "family", src)
    if not (_FAMILIES_DIR / family).is_dir():
        known = sorted(p.name for p in _FAMILIES_DIR.iterdir() if p.is_dir() and p.name not in ("cortexm", "host"))
        raise ToolkitError(f"board file {src}: family = '{family}' has no port in firmware/port/", hint=f"known families: {', '.join(known)}")
    mem = _require(raw, "memory", src)
    uart = _require(raw, "uart", src)
    qemu = raw.get("qemu", {})
    known_keys = {"name", "description", "core", "fpu", "family", "cpu_hz", "emulated", "memory", "uart", "qemu"}
    if not isinstance(mem, dict) or not isinstance(uart, dict) or not isinstance(qemu, dict):
        raise ToolkitError(f"board file {src}: [memory], [uart] and [qemu] must be tables")
    if core in ("cortex-m0", "cortex-m0plus", "cortex-m3") and fpu != "none":
        raise ToolkitError(f"board file {src}: fpu: a {core} has no FPU, got '{fpu}'", hint='use fpu = "none"')
    emulated = bool(raw.get("emulated", bool(qemu)))
    if emulated:
        for key in ("machine", "systick_hz"):
            if key not in qemu:
                raise ToolkitError(f"board file {src}: missing key 'qemu.{key}' (emulated = true)",
                                   hint="emulated boards name their QEMU machine and its measured SysTick clock")
    cpu_hz = int(_require(raw, "cpu_hz", src))
    baud = int(uart.get("baud", 115200))
    ram = _region(mem, "ram", src)
    extra = {k: v for k, v in raw.items() if k not in known_keys}
    from . import ports  # family knowledge; imported here to keep this module's import light

    fam_defs = ports.family_defines(family, raw, cpu_hz, baud, core, src)
    stack = ports.stack_bytes(extra, ram.length, src)
    return Board(
        name=raw.get("name", src.stem),
        description=raw.get("description", ""),
        core=core,
        fpu=fpu,
        family=family,
        cpu_hz=cpu_hz,
        flash=_region(mem, "flash", src),
        ram=ram,
        uart_base=int(_require(uart, "base", src, "uart.")),
        baud=baud,
        emulated=emulated,
        source=src,
        qemu_machine=qemu.get("machine"),
        systick_hz=qemu.get("systick_hz"),
        extra=extra,
        family_defines=fam_defs,
        stack_bytes=stack,
    )


def list_boards() -> list[Board]:
    return [load_board_file(p) for p in sorted(paths.BOARDS.glob("*.toml"))]


def get_board(name: str) -> Board:
    src = paths.BOARDS / f"{name}.toml"
    if src.is_file():
        return load_board_file(src)
    names = [p.stem for p in sorted(paths.BOARDS.glob("*.toml"))]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ToolkitError(f"unknown board '{name}'", hint=f"{hint}known boards: {', '.join(names)} (aiot boards lists them)")
