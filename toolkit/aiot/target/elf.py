"""Is a file plausibly firmware for our boards? One check for every command that takes an ELF.

`aiot run` (QEMU) and `aiot flash` both refuse, before starting any emulator, probe or
tool, a firmware path that is missing, a folder, not an ELF, an ELF for another CPU (not
32-bit little-endian ARM), or an ELF cut short (its program or section headers lie beyond
the end of the file). Only the ELF header is read; nothing else is parsed.

    from aiot.target.elf import check_elf
    check_elf(Path("build/fw/mps2-an386/firmware.elf"), "mps2-an386")
"""

from __future__ import annotations

from pathlib import Path

from aiot.errors import ToolkitError

#: e_machine of 32-bit ARM in an ELF header
EM_ARM = 40
#: size of an ELF32 header
ELF32_HEADER_SIZE = 52


def check_elf(elf: Path | str, board: str) -> None:
    """Refuse a firmware path that is missing, a folder, or not a whole 32-bit ARM ELF, with
    a one-line error whose hint names the build command for ``board``. QEMU would refuse such
    a file with a terse message or boot garbage and leave the caller waiting for an answer
    that never comes; a flash tool would fail late, or program garbage."""
    p = Path(elf)
    build = f"aiot build --board {board}"
    if p.is_dir():
        raise ToolkitError(f"{p}: a folder, not a firmware file", hint=f"give the .elf inside it, or build one: {build}")
    if not p.is_file():
        raise ToolkitError(f"firmware not found: {p}", hint=f"build it first: {build}")
    with p.open("rb") as f:
        head = f.read(ELF32_HEADER_SIZE)
    if head[:4] != b"\x7fELF":
        raise ToolkitError(f"{p}: not an ELF file (it starts {head[:4]!r}, an ELF starts b'\\x7fELF')",
                           hint=f"give the firmware.elf a build wrote, e.g. {build}")
    if (len(head) < ELF32_HEADER_SIZE or head[4] != 1 or head[5] != 1
            or int.from_bytes(head[18:20], "little") != EM_ARM):
        raise ToolkitError(f"{p}: an ELF file, but not 32-bit little-endian ARM firmware (built for another CPU, "
                           "or cut short)", hint=f"rebuild it: {build}")

    def u(off: int, n: int) -> int:
        return int.from_bytes(head[off : off + n], "little")

    # the program headers (what QEMU and the flash tools load) and the section headers must lie inside the file
    need = max(u(28, 4) + u(44, 2) * u(42, 2), u(32, 4) + u(48, 2) * u(46, 2))
    size = p.stat().st_size
    if size < need:
        raise ToolkitError(f"{p}: truncated ELF ({size} bytes; its headers reach byte {need})",
                           hint=f"copy it again, or rebuild it: {build}")


def skip_empty_sections(elf: Path) -> list[str]:
    """objcopy options leaving out ``elf``'s empty sections. An empty section keeps its RAM
    address as its load address (ld places no bytes in flash for it), and ``-O binary`` would
    pad the image from flash up to RAM (512 MB and more for an app without initialised data).
    Nothing when arm-none-eabi-size is missing or cannot read the file (objcopy then says why)."""
    import subprocess

    from aiot.target.toolchain import require

    try:
        out = subprocess.run([require("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True).stdout
    except (ToolkitError, OSError):
        return []
    rows = [line.split() for line in out.splitlines()]
    return [f"--remove-section={r[0]}" for r in rows if len(r) == 3 and r[0].startswith(".") and r[1] == "0"]
