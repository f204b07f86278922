"""Boards are data: one TOML file per board under boards/ (see boards/README.md).

A board names its core, FPU, memory map, clock, console UART and chip family; the
compiler flags, the -D defines for firmware/port/<family>/ and the linker script are
all derived from it here, so a new board is a new file, not new code."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from aiot import paths
from aiot.errors import ToolkitError
from aiot.target import layout

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
    # Derived and validated by toolkit/aiot/target/ports.py from the family tables ([stm32], [clock], pins).
    family_defines: dict[str, str] = field(default_factory=dict)
    stack_bytes: int = 4096
    # The level the app, protocol, monitor and port code compile at (None: the build's own);
    # a flash-tight part sets "-Os" (ports.app_opt). The engine keeps the build's level.
    app_opt: str | None = None
    # Flash layout (aiot.target.layout): the part's erase sectors, [update] and [mcuboot].
    sectors: tuple[layout.Sector, ...] = ()
    update: layout.UpdateLayout | None = None
    mcuboot: layout.McubootLayout | None = None
    # Set on a board derived for a build that keeps out of reserved flash: the vector table's
    # own region at the boot address, when the code region starts elsewhere.
    vectors: Region | None = None

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
        uid = self.device_uid
        if uid is not None:  # INFO reports the chip's unique id (firmware/src/app/app.c device_id)
            d["AIOT_DEVICE_UID_ADDR"] = f"0x{uid[0]:08X}u"
            d["AIOT_DEVICE_UID_BYTES"] = f"{uid[1]}u"
        for key, value in self.extra.get("defines", {}).items():
            d[key] = str(value)
        return d

    @property
    def device_uid(self) -> tuple[int, int] | None:
        """(address, bytes) of the chip's unique id register, from the board file's
        [device_id] table; None when the chip has none (the id is then written at build time)."""
        t = self.extra.get("device_id")
        if t is None:
            return None
        addr, n = (t.get("address"), t.get("bytes")) if isinstance(t, dict) else (None, None)
        if not isinstance(addr, int) or not isinstance(n, int) or not 4 <= n <= 16 or n % 4:
            raise ToolkitError(f"{self.source}: [device_id] needs address (an integer) and bytes (4, 8, 12 or 16), "
                               f"got {t!r}", hint="see boards/nucleo-f446re.toml for an example")
        return addr, n

    def linker_script(self, stack_bytes: int | None = None) -> str:
        """The board's linker script, from firmware/port/cortexm/link.ld.in."""
        if stack_bytes is None:
            stack_bytes = self.stack_bytes
        template = (_FAMILIES_DIR / "cortexm" / "link.ld.in").read_text()
        v = self.vectors
        vectors_memory = f"  BOOT_FLASH (rx) : ORIGIN = 0x{v.origin:08X}, LENGTH = 0x{v.length:08X}" if v else ""
        return (
            template.replace("@VECTORS_MEMORY@", vectors_memory)
            .replace("@VECTORS_REGION@", "BOOT_FLASH" if v else "FLASH")
            .replace("@FLASH_ORIGIN@", f"0x{self.flash.origin:08X}")
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


# A board name is a file name under boards/ and a C string in the firmware: plain names only.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

# Board files are shared like code but must stay data: every string they hold can end up in
# a generated CMakeLists.txt, platformio.ini, C header or a tool's command line. The schema
# below allows exactly what a board needs (ids are ids, text is one line of text) and the
# export quotes on top of it (toolkit/aiot/target/export.py).
_TOOL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")      # PlatformIO board/platform, pyOCD target/pack, QEMU machine
_MSD_LABEL = re.compile(r"^[A-Za-z0-9_ -]{1,32}$")   # a USB drive's volume label: no path separators
_USB_ID = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")
_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ID_KEYS = ("pyocd_target", "pyocd_pack", "platformio_board", "platformio_platform")
DESCRIPTION_MAX = 200
TEXT_MAX = 1000
_CPU_HZ_MAX = 2_000_000_000
_BAUD_MAX = 20_000_000
_MISSING = object()


def _bad(src: Path, key: str, expected: str, value: Any) -> ToolkitError:
    return ToolkitError(f"board file {src}: {key} must be {expected}, got {value!r}",
                        hint="see boards/README.md for the keys of a board file and their types")


def _field(table: dict[str, Any], key: str, src: Path, where: str = "", *, kind: str = "int",
           default: Any = _MISSING, minimum: int | None = None, maximum: int | None = None) -> Any:
    """``table[key]`` checked to be of ``kind`` (int, str, bool) and within bounds; the error
    names the file, the key and what is expected."""
    value = _require(table, key, src, where) if default is _MISSING else table.get(key, default)
    name = f"{where}{key}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad(src, name, "true or false", value)
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise _bad(src, name, "a string", value)
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(src, name, "an integer", value)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        lo = "" if minimum is None else f">= {minimum}"
        hi = "" if maximum is None else f"<= 0x{maximum:X}"
        raise _bad(src, name, "an integer " + " and ".join(x for x in (lo, hi) if x), value)
    return value


def _require(table: dict[str, Any], key: str, src: Path, where: str = "") -> Any:
    if key not in table:
        raise ToolkitError(
            f"board file {src}: missing key '{where}{key}'",
            hint="see boards/README.md for the keys every board file needs",
        )
    return table[key]


_ADDR_END = 1 << 32  # Cortex-M: a 32-bit address space


def _region(table: dict[str, Any], key: str, src: Path) -> Region:
    r = _require(table, key, src, "memory.")
    if not isinstance(r, dict) or "origin" not in r or "length" not in r:
        raise ToolkitError(f"board file {src}: memory.{key} needs integer 'origin' and 'length'",
                           hint=f"e.g. {key} = {{ origin = 0x20000000, length = 0x00020000 }}")
    origin = _field(r, "origin", src, f"memory.{key}.", minimum=0, maximum=_ADDR_END - 1)
    length = _field(r, "length", src, f"memory.{key}.", minimum=1, maximum=_ADDR_END)
    if origin + length > _ADDR_END:
        raise ToolkitError(f"board file {src}: memory.{key} runs past the 32-bit address space "
                           f"(origin 0x{origin:X} + length 0x{length:X})")
    return Region(origin, length)


def _check_text(value: Any, src: Path, key: str) -> None:
    """Every string of a board file, in any table: one line, no terminal or control codes."""
    if isinstance(value, dict):
        for k, v in value.items():
            shown = k if re.match(r"^[A-Za-z0-9_-]+$", k) else repr(k)  # a key is shown, never obeyed
            _check_text(k, src, f"{key} key {shown}" if key else f"key {shown}")
            _check_text(v, src, f"{key}.{shown}" if key else shown)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, src, f"{key}[{i}]")
    elif isinstance(value, str):
        m = _CONTROL.search(value)
        if m:
            raise ToolkitError(f"board file {src}: {key} contains a control character ({m.group()!r} at position "
                               f"{m.start()}); board file strings are single lines of text",
                               hint="remove line breaks and escape codes from the value (see boards/README.md)")
        if len(value) > TEXT_MAX:
            raise _bad(src, key, f"at most {TEXT_MAX} characters", value[:40] + "...")


def _check_schema(raw: dict[str, Any], src: Path) -> None:
    """The keys whose values reach build files or command lines: their characters and types."""
    _check_text(raw, src, "")
    desc = raw.get("description", "")
    if isinstance(desc, str) and len(desc) > DESCRIPTION_MAX:
        raise _bad(src, "description", f"one line of at most {DESCRIPTION_MAX} characters", desc[:40] + "...")
    flash = raw.get("flash", {})
    if isinstance(flash, dict):
        for key in _ID_KEYS:
            if key in flash and not (isinstance(flash[key], str) and _TOOL_ID.match(flash[key])):
                raise _bad(src, f"flash.{key}", "an id of letters, digits, '.', '_' and '-' (at most 64)", flash[key])
        if "msd_label" in flash and not (isinstance(flash["msd_label"], str) and _MSD_LABEL.match(flash["msd_label"])):
            raise _bad(src, "flash.msd_label", "a drive label of letters, digits, spaces, '_' and '-' (at most 32)",
                       flash["msd_label"])
    qemu = raw.get("qemu", {})
    if isinstance(qemu, dict) and "machine" in qemu and not (isinstance(qemu["machine"], str)
                                                             and _TOOL_ID.match(qemu["machine"])):
        raise _bad(src, "qemu.machine", "a QEMU machine name (letters, digits, '.', '_' and '-')", qemu["machine"])
    uart = raw.get("uart", {})
    if isinstance(uart, dict) and "usb_ids" in uart:
        ids = uart["usb_ids"]
        if not isinstance(ids, list) or not all(isinstance(u, str) and _USB_ID.match(u) for u in ids):
            raise _bad(src, "uart.usb_ids", 'a list of USB VID:PID ids like "0483:374B"', ids)
    defines = raw.get("defines", {})
    if isinstance(defines, dict):
        for k, v in defines.items():
            if not _C_IDENT.match(k):
                raise _bad(src, "defines", f"a table keyed by C identifiers (letters, digits, _), key {k!r} is not one",
                           k)
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise _bad(src, f"defines.{k}", "a string, integer or number", v)


def load_board_file(src: Path) -> Board:
    try:
        raw = tomllib.loads(src.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ToolkitError(f"board file {src} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ToolkitError(f"board file {src} is not UTF-8 text (byte {e.start}: {e.reason})",
                           hint="TOML files are UTF-8; save the board file as UTF-8") from None
    _check_schema(raw, src)
    name = _field(raw, "name", src, kind="str", default=src.stem)
    if not _PLAIN_NAME.match(name):
        raise _bad(src, "name", "a plain name (letters, digits, - and _)", name)
    description = _field(raw, "description", src, kind="str", default="")
    core = _field(raw, "core", src, kind="str")
    if core not in _CORES:
        raise ToolkitError(f"board file {src}: core = '{core}' is not a supported core", hint=f"supported cores: {', '.join(_CORES)}")
    fpu = _field(raw, "fpu", src, kind="str", default="none")
    if fpu not in _FPUS:
        raise ToolkitError(f"board file {src}: fpu = '{fpu}' is not a known FPU", hint=f"one of: {', '.join(sorted(_FPUS))}")
    family = _field(raw, "family", src, kind="str")
    known = sorted(p.name for p in _FAMILIES_DIR.iterdir() if p.is_dir() and p.name not in ("cortexm", "host"))
    if family not in known:
        raise ToolkitError(f"board file {src}: family = '{family}' has no port in firmware/port/", hint=f"known families: {', '.join(known)}")
    mem = _require(raw, "memory", src)
    uart = _require(raw, "uart", src)
    qemu = raw.get("qemu", {})
    known_keys = {"name", "description", "core", "fpu", "family", "cpu_hz", "emulated", "memory", "uart", "qemu"}
    if not isinstance(mem, dict) or not isinstance(uart, dict) or not isinstance(qemu, dict):
        raise ToolkitError(f"board file {src}: [memory], [uart] and [qemu] must be tables")
    if core in ("cortex-m0", "cortex-m0plus", "cortex-m3") and fpu != "none":
        raise ToolkitError(f"board file {src}: fpu: a {core} has no FPU, got '{fpu}'", hint='use fpu = "none"')
    emulated = _field(raw, "emulated", src, kind="bool", default=bool(qemu))
    if emulated:
        for key in ("machine", "systick_hz"):
            if key not in qemu:
                raise ToolkitError(f"board file {src}: missing key 'qemu.{key}' (emulated = true)",
                                   hint="emulated boards name their QEMU machine and its measured SysTick clock")
    qemu_machine = _field(qemu, "machine", src, "qemu.", kind="str") if "machine" in qemu else None
    systick_hz = _field(qemu, "systick_hz", src, "qemu.", minimum=1, maximum=_CPU_HZ_MAX) \
        if "systick_hz" in qemu else None
    cpu_hz = _field(raw, "cpu_hz", src, minimum=1, maximum=_CPU_HZ_MAX)
    baud = _field(uart, "baud", src, "uart.", default=115200, minimum=1, maximum=_BAUD_MAX)
    uart_base = _field(uart, "base", src, "uart.", minimum=0, maximum=_ADDR_END - 1)
    flash = _region(mem, "flash", src)
    ram = _region(mem, "ram", src)
    extra = {k: v for k, v in raw.items() if k not in known_keys}
    for table in ("defines", "flash"):
        if table in extra and not isinstance(extra[table], dict):
            raise _bad(src, table, "a table", extra[table])
    for key, value in extra.get("flash", {}).items():
        if key in ("method", "pyocd_target", "pyocd_pack", "msd_label", "command", "platformio_board",
                   "platformio_platform") and not isinstance(value, str):
            raise _bad(src, f"flash.{key}", "a string", value)
    from aiot.target import ports

    fam_defs = ports.family_defines(family, raw, cpu_hz, baud, core, src)
    stack = ports.stack_bytes(extra, ram.length, src)
    app_opt = ports.app_opt(extra, src)
    secs = layout.sectors(mem, flash.origin, flash.length, src)
    if not emulated and not secs and ("update" in raw or "mcuboot" in raw):
        raise ToolkitError(f"board file {src}: memory.flash_sectors: missing: the [update] and [mcuboot] areas of a "
                           "real board are checked against the part's erase sectors",
                           hint="add the sector map of the part's reference manual to [memory], e.g. "
                                "flash_sectors = [[64, 0x800]]; `aiot boards` then loads it")
    upd = layout.update(raw, emulated, flash.origin, flash.length, secs, src)
    mcb = layout.mcuboot(raw, flash.origin, flash.length, secs, src)
    return Board(
        name=name,
        description=description,
        core=core,
        fpu=fpu,
        family=family,
        cpu_hz=cpu_hz,
        flash=flash,
        ram=ram,
        uart_base=uart_base,
        baud=baud,
        emulated=emulated,
        source=src,
        qemu_machine=qemu_machine,
        systick_hz=systick_hz,
        extra=extra,
        family_defines=fam_defs,
        stack_bytes=stack,
        app_opt=app_opt,
        sectors=secs,
        update=upd,
        mcuboot=mcb,
    )


def list_boards() -> list[Board]:
    return [load_board_file(p) for p in sorted(paths.BOARDS.glob("*.toml"))]


def get_board(name: str) -> Board:
    if not isinstance(name, str) or not _PLAIN_NAME.match(name):
        raise ToolkitError(f"'{name}' is not a board name: board names are plain names (letters, digits, - and _), "
                           "not paths", hint="aiot boards lists the boards; a new board is a file in "
                                             f"{paths.BOARDS} (see boards/README.md)")
    src = paths.BOARDS / f"{name}.toml"
    if src.is_file():
        return load_board_file(src)
    names = [p.stem for p in sorted(paths.BOARDS.glob("*.toml"))]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ToolkitError(f"unknown board '{name}'", hint=f"{hint}known boards: {', '.join(names)} (aiot boards lists them)")
