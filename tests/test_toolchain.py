"""Missing external tools are reported with the Debian package that provides them."""

from __future__ import annotations

import pytest

from toolkit.boards import get_board
from toolkit.errors import ToolkitError
from toolkit.firmware import build
from toolkit.qemu import run_to_exit
from toolkit.toolchain import require


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
    elf.write_bytes(b"\x7fELF")
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
