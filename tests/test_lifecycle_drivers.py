"""The update C and the real-board flash drivers (STM32 F4/F7/G0 sector/page erase and
program, nRF52 NVMC) cross-compile warning-free (-Wall -Wextra -Werror) with each board's
flags and its [update] layout, and a whole firmware that takes updates links on every such
board with nothing of its image inside the update areas."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from aiot.lifecycle import cost
from aiot.lifecycle.firmware import build_update_firmware, update_defines
from aiot.target.boards import get_board
from aiot.target.layout import update_areas
from aiot.testing import requires_qemu

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")

BOARDS = ["nucleo-f446re", "nucleo-f767zi", "nucleo-g071rb", "nrf52840-dk"]


@pytest.mark.parametrize("board", BOARDS)
def test_flash_driver_and_update_logic_build_warning_free(board, tmp_path):
    b = get_board(board)
    assert cost.driver_sources(b), f"{board}: no flash driver for family {b.family}"
    # with the update defines, so the driver's aiot_port_update_flash and its sector table compile too
    objs = cost.compile_objects(b, tmp_path, only=("update", "driver"), defines=tuple(update_defines(b, bytes(32))))
    assert all(o.stat().st_size > 0 for files in objs.values() for o in files)
    nm = subprocess.run(["arm-none-eabi-nm", str(objs["driver"][0])], capture_output=True, text=True, check=True).stdout
    assert re.search(r" T aiot_port_update_flash$", nm, re.M)


def _loads(elf) -> list[tuple[int, int]]:
    """(load address, bytes in the file) of every LOAD segment: what a flash tool writes."""
    out = subprocess.run(["arm-none-eabi-readelf", "-lW", str(elf)], capture_output=True, text=True, check=True).stdout
    return [(int(m.group(1), 16), int(m.group(2), 16)) for m in
            re.finditer(r"^\s*LOAD\s+\S+\s+\S+\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", out, re.M)]


@pytest.mark.slow  # a whole firmware with the crypto per board (~15 s each)
@pytest.mark.parametrize("board", BOARDS)
def test_update_firmware_links_outside_the_update_areas(board, tmp_path):
    b = get_board(board)
    res = build_update_firmware(b, tmp_path / "fw", None, public_key=bytes(32))  # -Werror, as every build
    loads = _loads(res.elf)
    assert loads and min(a for a, _ in loads) == b.flash.origin  # the vector table at the boot address
    for start, size in loads:
        assert b.flash.origin <= start and start + size <= b.flash.origin + b.flash.length
        for name, (a, n) in update_areas(b.update, b.sectors).items():
            assert not (start < a + n and a < start + size), f"{board}: image bytes {start:#x}+{size:#x} in {name}"


@pytest.mark.slow
def test_update_machinery_cost_is_measured(tmp_path):
    c = cost.measure(get_board("nucleo-f446re"), tmp_path)
    assert set(c.flash_bytes) == {"update", "crypto", "driver"} and all(v > 0 for v in c.flash_bytes.values())


@requires_qemu
@pytest.mark.slow
@pytest.mark.qemu
def test_f446_update_layout_boots_and_serves_on_qemu_stm32f405(tmp_path):
    """The split image the F446 needs (vector table alone in sector 0, code from sector 3,
    records in sectors 1-2) boots and answers: built for QEMU's STM32F405 (the same first
    512 KB of sectors, USART1 on serial0) with the F446's [update] layout. QEMU models no
    flash controller, so only the boot, the record read (erased: no release) and STATUS run."""
    import dataclasses

    from aiot.device.hil import open_device
    from aiot.lifecycle.client import NO_SLOT, UpdateClient
    from aiot.target.boards import Region

    f446 = get_board("nucleo-f446re")
    board = dataclasses.replace(get_board("netduinoplus2"), flash=Region(0x08000000, 0x80000),
                                sectors=f446.sectors, update=f446.update)
    res = build_update_firmware(board, tmp_path / "fw", None, public_key=bytes(32))
    loads = _loads(res.elf)
    assert loads[0][0] == 0x08000000 and loads[0][1] <= 0x4000  # the vectors, alone in sector 0
    assert loads[1][0] == 0x0800C000                            # the code from sector 3
    with open_device(board=board, elf=res.elf) as dev:
        st = UpdateClient(dev).status()
    assert st.ready and st.running == NO_SLOT and st.slot_size == f446.update.slot_size


def test_the_cost_measure_compiles_each_file_once_and_reuses_it(tmp_path, monkeypatch):
    """The update C, its crypto and the flash driver for the cost tables are compiled into
    the object cache the firmware builds use (same compiler, flags and headers): asked again
    (a second measure, or after a build for the board), nothing is compiled again."""
    from aiot.target import firmware

    b = get_board("nucleo-g071rb")
    first = cost.compile_objects(b, tmp_path / "a", only=("update", "driver"))
    ran: list[list[str]] = []
    real = firmware._run
    monkeypatch.setattr(firmware, "_run", lambda cmd, what: (ran.append(cmd), real(cmd, what))[1])
    again = cost.compile_objects(b, tmp_path / "b", only=("update", "driver"))
    assert ran == [], f"compiled again: {[c[-1] for c in ran]}"
    assert {k: [o.read_bytes() for o in v] for k, v in again.items()} == \
        {k: [o.read_bytes() for o in v] for k, v in first.items()}
