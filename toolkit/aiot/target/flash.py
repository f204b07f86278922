"""Put firmware on a real board: pyocd (default), PlatformIO, the debugger's USB drive, or
a command from the board file.

Every method first checks what it needs is there (a whole ARM ELF built for this board, the
tool, the probe or drive) and fails fast with a message that says what it found instead, so
`aiot flash` with no board attached is a one-line error, never a hang or a 30-second
timeout. Commands are built by pure functions (``pyocd_command`` ...) so the tests check the
exact command lines without hardware.

    from aiot.target.flash import flash
    flash(get_board("nucleo-f767zi"), Path("build/fw/nucleo-f767zi/firmware.elf"))
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from aiot.target.boards import Board
from aiot.target.elf import check_elf, skip_empty_sections
from aiot.errors import ToolkitError
from aiot.target.toolchain import require

METHODS = ("pyocd", "platformio", "msd", "command")
BOARDS_EXTRA = "pip install 'aiot-toolkit[boards]'  (or: pip install pyocd platformio)"


@dataclass(frozen=True)
class Probe:
    uid: str
    description: str

    def __str__(self) -> str:
        return f"{self.uid} ({self.description})"


@dataclass(frozen=True)
class SerialPortInfo:
    device: str
    description: str
    usb_id: str | None  # "VID:PID" in upper-case hex, None for non-USB ports

    def __str__(self) -> str:
        return f"{self.device} ({self.description}{', USB ' + self.usb_id if self.usb_id else ''})"


def flash_table(board: Board) -> dict:
    """The board's [flash] table; a clear error for emulated boards or boards without one."""
    if board.emulated:
        raise ToolkitError(f"board {board.name} runs in QEMU; there is nothing to flash",
                           hint=f"run it with: aiot run --board {board.name}")
    table = board.extra.get("flash")
    if not isinstance(table, dict) or "method" not in table:
        raise ToolkitError(f"board file {board.source}: missing key 'flash.method'",
                           hint=f"add a [flash] table with method = one of {', '.join(METHODS)} (docs/boards.md)")
    return table


# --- host discovery (the only functions that touch USB; tests replace them) ------------------


def have_pyocd() -> bool:
    return importlib.util.find_spec("pyocd") is not None


def list_probes() -> list[Probe]:
    """Debug probes pyocd can see right now (CMSIS-DAP, ST-LINK, J-Link with pylink)."""
    if not have_pyocd():
        raise ToolkitError("pyocd is not installed", hint=BOARDS_EXTRA)
    from pyocd.core.helpers import ConnectHelper

    try:
        probes = ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)
    except Exception as e:  # a USB back-end error is still "no usable probe"
        raise ToolkitError(f"pyocd could not enumerate debug probes: {e}",
                           hint="on Linux, install the udev rules (docs/boards.md, 'Flash a real board')") from None
    return [Probe(str(p.unique_id), str(p.description)) for p in probes]


def list_serial_ports() -> list[SerialPortInfo]:
    from serial.tools import list_ports

    out = []
    for p in list_ports.comports():
        usb = f"{p.vid:04X}:{p.pid:04X}" if p.vid is not None and p.pid is not None else None
        out.append(SerialPortInfo(p.device, p.description or "", usb))
    return out


def pyocd_target_available(target: str) -> bool:
    """Built into pyocd, or provided by an installed CMSIS pack."""
    from pyocd.target import TARGET
    from pyocd.target.pack import pack_target

    if target.lower() in TARGET:
        return True
    return any(t.part_number.lower() == target.lower() for t in pack_target.ManagedPacks.get_installed_targets())


def msd_roots() -> list[Path]:
    """Where USB drives get mounted (udisks on Linux, /Volumes on macOS); AIOT_MSD_ROOTS overrides."""
    env = os.environ.get("AIOT_MSD_ROOTS")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    user = os.environ.get("USER", "")
    return [Path("/media") / user, Path("/run/media") / user, Path("/media"), Path("/Volumes"), Path("/mnt")]


def find_msd(label: str, roots: Sequence[Path] | None = None) -> tuple[Path | None, list[str]]:
    """(mount point of the drive named ``label`` or None, every drive name seen)."""
    seen: list[str] = []
    for root in roots if roots is not None else msd_roots():
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.is_dir():
                seen.append(d.name)
                if d.name.upper() == label.upper():
                    return d, seen
    return None, seen


def _flash_key(board: Board, table: dict, key: str, hint: str):
    """``table[key]`` of the board's [flash] table; a clear error naming the key when it is missing or empty."""
    value = table.get(key)
    if not value:
        raise ToolkitError(f"board file {board.source}: missing key 'flash.{key}'", hint=hint)
    return value


# --- the exact commands ----------------------------------------------------------------------


def pyocd_command(board: Board, elf: Path, probe: str | None = None) -> list[str]:
    """``python -m pyocd load``: erase what is needed, program, verify, reset and run."""
    target = _flash_key(board, flash_table(board), "pyocd_target", "see `pyocd list --targets` for the names")
    cmd = [sys.executable, "-m", "pyocd", "load", "--target", str(target), "--format", "elf"]
    if probe:
        cmd += ["--uid", probe]
    return cmd + [str(elf)]


def platformio_command(board: Board, project_dir: Path, port: str | None = None) -> list[str]:
    """``pio run -t upload`` on an exported project (aiot export --format platformio)."""
    cmd = [_pio(), "run", "-d", str(project_dir), "-e", board.name, "-t", "upload"]
    if port:
        cmd += ["--upload-port", port]
    return cmd


def user_command(board: Board, elf: Path, probe: str | None = None) -> list[str]:
    """The board file's ``flash.command`` with {elf} {bin} {hex} {probe} {target} filled in."""
    table = flash_table(board)
    template = _flash_key(board, table, "command", 'e.g. command = "st-flash --reset write {bin} 0x08000000"')
    fields = {"elf": elf, "bin": elf.with_suffix(".bin"), "hex": elf.with_suffix(".hex"), "probe": probe or "",
              "target": table.get("pyocd_target", "")}
    try:
        text = template.format(**{k: shlex.quote(str(v)) if v else "" for k, v in fields.items()})
    except (KeyError, IndexError) as e:
        raise ToolkitError(f"board file {board.source}: flash.command uses an unknown field {e}",
                           hint="available: {elf} {bin} {hex} {probe} {target}") from None
    return shlex.split(text)


def _pio() -> str:
    exe = shutil.which("pio") or shutil.which("platformio")
    if exe:
        return exe
    venv = Path(sys.executable).parent / "pio"
    if venv.is_file():
        return str(venv)
    raise ToolkitError("PlatformIO (pio) is not installed", hint=BOARDS_EXTRA)


def _image_next_to(elf: Path, fmt: str, suffix: str, board: Board | None = None) -> Path:
    """``elf`` with ``suffix`` (objcopy -O ``fmt``), made from the ELF when missing or older
    than it, as `aiot build` makes it; a clear error when it cannot be made."""
    out = elf.with_suffix(suffix)
    if out.is_file() and out.stat().st_mtime >= elf.stat().st_mtime:
        return out
    rebuild = f"rebuild the firmware: aiot build --board {board.name}" if board else "rebuild it with: aiot build"
    try:
        objcopy = require("arm-none-eabi-objcopy")
    except ToolkitError as e:
        raise ToolkitError(f"{out.name} is missing next to {elf} and cannot be made from the ELF: {e.message}",
                           hint=f"{e.hint + '; or ' if e.hint else ''}{rebuild} (it writes the {suffix} next to the ELF)"
                           ) from None
    proc = subprocess.run([objcopy, "-O", fmt, *skip_empty_sections(elf), str(elf), str(out)], capture_output=True,
                          text=True)
    if proc.returncode:
        out.unlink(missing_ok=True)  # objcopy may leave a partial image behind
        raise ToolkitError(f"objcopy could not make {out.name} from {elf}: {proc.stderr.strip() or 'failed'}",
                           hint=f"is {elf.name} a complete ARM firmware ELF? {rebuild}")
    return out


def hex_file(elf: Path, board: Board | None = None) -> Path:
    """Intel HEX next to the ELF (the J-Link and DAPLink drives want HEX)."""
    return _image_next_to(elf, "ihex", ".hex", board)


def bin_file(elf: Path, board: Board | None = None) -> Path:
    """Raw binary next to the ELF (the ST-LINK drive wants .bin); `aiot build` writes it."""
    return _image_next_to(elf, "binary", ".bin", board)


# --- flash -----------------------------------------------------------------------------------


def built_for(elf: Path) -> str | None:
    """The board the toolkit built ``elf`` for, from the build.json `aiot build` writes next
    to it; None when there is no record of this ELF (built elsewhere, or renamed)."""
    record = Path(elf).parent / "build.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("board"), str):
        return None
    recorded_elf = data.get("elf")
    if isinstance(recorded_elf, str) and Path(recorded_elf).name != Path(elf).name:
        return None  # the record is of another ELF in this folder
    return data["board"]


def _check_elf(board: Board, elf: Path) -> None:
    """Refuse, before any probe or tool is touched, what is not a whole 32-bit ARM ELF (the
    check `aiot run` makes too) and an ELF whose build.json says it was built for another board."""
    check_elf(elf, board.name)
    other = built_for(elf)
    if other is not None and other != board.name:
        raise ToolkitError(
            f"{elf} was built for {other}, not {board.name} (its build.json says board {other})",
            hint=f"build it for this board: aiot build --board {board.name}, then flash that ELF")


def _project_board(project_dir: Path) -> str | None:
    """The board an exported project was made for (AIOT_BOARD_NAME in its board header)."""
    from aiot.target.export import BOARD_HEADER

    try:
        text = (Path(project_dir) / "include" / BOARD_HEADER).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r'^#define AIOT_BOARD_NAME "([^"]*)"', text, re.M)
    return m.group(1) if m else None


def _no_probe_error(board: Board, probes: list[Probe], wanted: str | None) -> ToolkitError:
    ports = [str(p) for p in list_serial_ports() if p.usb_id]
    found = ("; ".join(map(str, probes)) if probes else "no debug probe") + \
            (f"; USB serial ports: {', '.join(ports)}" if ports else "; no USB serial port either")
    if wanted:
        return ToolkitError(f"debug probe '{wanted}' is not connected (found: {found})",
                            hint="pass --probe with one of the IDs listed (a unique prefix is enough)")
    label = board.extra.get("flash", {}).get("msd_label")
    alt = f", or copy to the {label} drive: aiot flash --board {board.name} --with msd" if label else ""
    return ToolkitError(
        f"no debug probe found for {board.name} (found: {found})",
        hint="plug the board's debugger USB port in; on Linux install the udev rules and replug "
             f"(docs/boards.md, 'Flash a real board'){alt}")


def flash(board: Board, elf: Path, *, method: str | None = None, probe: str | None = None,
          project_dir: Path | None = None, dry_run: bool = False,
          run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
          echo: Callable[[str], None] = print,
          note: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[str]:
    """Program ``elf`` into ``board``; returns the command that ran (or would run, ``dry_run``).
    ``echo`` shows each command as it runs; ``note`` what a dry run would stop on.

    ``method``: pyocd | platformio | msd | command (default: the board file's flash.method).
    ``probe``: debug-probe unique ID (pyocd; a prefix is enough), or the upload port (platformio).
    """
    table = flash_table(board)
    method = method or table["method"]
    if method not in METHODS:
        raise ToolkitError(f"unknown flash method '{method}'", hint=f"one of: {', '.join(METHODS)}")
    elf = Path(elf)
    if method != "platformio":
        _check_elf(board, elf)

    if method == "pyocd":
        cmd = pyocd_command(board, elf, probe)
        missing = None
        if not have_pyocd():
            missing = ToolkitError("pyocd is not installed", hint=BOARDS_EXTRA)
        elif not pyocd_target_available(table["pyocd_target"]):
            target = table["pyocd_target"]
            pack = table.get("pyocd_pack", target)
            missing = ToolkitError(
                f"pyocd has no built-in target '{target}' and no CMSIS pack provides it",
                hint=f"install the device pack once (downloads it): pyocd pack install {pack}; "
                     f"or flash without pyocd: aiot flash --board {board.name} --with msd")
        if missing is not None:
            if not dry_run:
                raise missing
            # a dry run shows the command all the same, and what it would stop on
            note(f"note: {missing.message}; before flashing: {missing.hint}")
        if not dry_run:
            probes = list_probes()
            matching = [p for p in probes if not probe or p.uid.lower().startswith(probe.lower())]
            if not matching:
                raise _no_probe_error(board, probes, probe)
            if len(matching) > 1:
                raise ToolkitError(f"{len(matching)} debug probes are connected: {'; '.join(map(str, matching))}",
                                   hint="choose one with --probe <ID>")
            if not probe:  # pin the one we checked, so pyocd never asks interactively
                cmd = pyocd_command(board, elf, matching[0].uid)
    elif method == "platformio":
        # PlatformIO builds from sources with its own toolchain, so it flashes an exported
        # project (with the model it was exported with), not the ELF.
        if project_dir is None or not (Path(project_dir) / "platformio.ini").is_file():
            where = f"{project_dir} has no platformio.ini" if project_dir else "no --project given"
            raise ToolkitError(f"flashing with PlatformIO needs an exported project ({where})",
                               hint=f"aiot export --board {board.name} --format platformio --out fw-pio "
                                    f"[--package PKG], then: aiot flash --board {board.name} --with platformio "
                                    "--project fw-pio")
        other = _project_board(Path(project_dir))
        if other is not None and other != board.name:
            raise ToolkitError(
                f"{project_dir} was exported for {other}, not {board.name}",
                hint=f"aiot export --board {board.name} --format platformio --out <new folder> [--package PKG], "
                     "then flash that project")
        cmd = platformio_command(board, Path(project_dir), probe)
    elif method == "command":
        cmd = user_command(board, elf, probe)
        if not dry_run:  # the command may take the image in another format: make it as the build does
            template = str(table.get("command", ""))
            if "{bin}" in template:
                bin_file(elf, board)
            if "{hex}" in template:
                hex_file(elf, board)
    else:  # msd
        label = _flash_key(board, table, "msd_label",
                           "the volume name the debugger's USB drive mounts as, e.g. NODE_F446RE")
        suffix = ".hex" if board.family == "nrf5" else ".bin"
        if dry_run:  # name the image without making it
            image = elf.with_suffix(suffix)
        else:
            image = hex_file(elf, board) if suffix == ".hex" else bin_file(elf, board)
        mount, seen = find_msd(label)
        cmd = ["cp", str(image), f"{mount or '<' + label + ' drive>'}/"]
        if dry_run:
            return cmd
        if mount is None:
            raise ToolkitError(
                f"the {label} USB drive is not mounted (drives found: {', '.join(seen) or 'none'})",
                hint="plug the board's debugger USB port in and let the desktop mount it, or mount it by hand; "
                     "AIOT_MSD_ROOTS=<dir> tells the toolkit where drives are mounted")
        echo(" ".join(cmd))
        shutil.copy(image, mount / image.name)
        os.sync() if hasattr(os, "sync") else None  # the debugger programs once the file is complete
        return cmd

    if dry_run:
        return cmd
    echo(" ".join(shlex.quote(c) for c in cmd))
    proc = run(cmd)
    if proc.returncode != 0:
        raise ToolkitError(f"flashing {board.name} with {method} failed (exit code {proc.returncode})",
                           hint="the command was: " + " ".join(shlex.quote(c) for c in cmd))
    return cmd
