"""Missing external tools are reported with the Debian package that provides them."""

from __future__ import annotations

import pytest

from aiot.target.boards import get_board
from aiot.errors import ToolkitError
from aiot.target.firmware import build
from aiot.target.qemu import run_to_exit
from aiot.testing import requires_arm
from aiot.target.toolchain import require


def test_require_finds_a_tool_on_path():
    assert require("sh").endswith("/sh")


def test_missing_compiler_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(ToolkitError) as e:
        build(get_board("mps2-an386"), tmp_path / "fw")
    assert "arm-none-eabi-gcc" in e.value.message
    assert "apt-get install gcc-arm-none-eabi" in e.value.hint


def test_missing_qemu_names_the_apt_package(monkeypatch, tmp_path):
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(_elf32_header(40) + bytes(32))  # a well-formed ARM ELF header: only QEMU is missing
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolkitError) as e:
        run_to_exit(get_board("mps2-an386"), elf)
    assert "qemu-system-arm" in e.value.message
    assert "apt-get install qemu-system-arm" in e.value.hint


def test_missing_firmware_file_is_reported(tmp_path):
    with pytest.raises(ToolkitError) as e:
        run_to_exit(get_board("mps2-an386"), tmp_path / "nope.elf")
    assert "nope.elf" in e.value.message
    assert "aiot build" in e.value.hint


def _elf32_header(machine: int, *, klass: int = 1, data: int = 1) -> bytes:
    """An ELF32 header by the spec: ident, type EXEC, machine, version, entry, phoff 52,
    shoff 0, flags, ehsize 52, one 32-byte program header, no sections."""
    import struct

    ident = b"\x7fELF" + bytes([klass, data, 1]) + bytes(9)
    return ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0, 52, 0, 0, 52, 32, 1, 40, 0, 0)


@pytest.mark.parametrize("content, says", [
    (b"", "not an ELF file"),
    (b"\x00" * 64, "not an ELF file"),
    (b"#!/bin/sh\necho not firmware\n", "not an ELF file"),
    (_elf32_header(62) + bytes(32), "not 32-bit little-endian ARM"),   # x86-64's machine number
    (_elf32_header(40, klass=2) + bytes(32), "not 32-bit little-endian ARM"),
    (_elf32_header(40)[:40], "not 32-bit little-endian ARM"),           # cut inside the header
    (_elf32_header(40) + bytes(10), "truncated ELF (62 bytes; its headers reach byte 84)"),
])
def test_a_file_that_is_not_arm_firmware_is_refused_before_qemu_starts(tmp_path, content, says):
    from aiot.target.qemu import check_elf

    f = tmp_path / "firmware.elf"
    f.write_bytes(content)
    with pytest.raises(ToolkitError) as e:
        check_elf(f, "mps2-an386")
    assert says in e.value.message and str(f) in e.value.message
    assert "aiot build --board mps2-an386" in e.value.hint
    check_elf_ok = _elf32_header(40) + bytes(32)  # the same header, whole: accepted
    f.write_bytes(check_elf_ok)
    check_elf(f, "mps2-an386")


def test_a_folder_given_as_firmware_is_named_as_a_folder(tmp_path):
    from aiot.target.qemu import check_elf

    with pytest.raises(ToolkitError, match="a folder, not a firmware file"):
        check_elf(tmp_path, "mps2-an386")


@requires_arm
def test_a_real_build_passes_and_its_truncated_copy_does_not(tmp_path):
    from aiot.target.qemu import check_elf

    elf = build(get_board("mps2-an386"), tmp_path / "fw").elf
    check_elf(elf, "mps2-an386")
    cut = tmp_path / "cut.elf"
    cut.write_bytes(elf.read_bytes()[:1000])
    with pytest.raises(ToolkitError, match="truncated ELF"):
        check_elf(cut, "mps2-an386")
