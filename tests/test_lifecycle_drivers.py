"""The update C and the real-board flash drivers (STM32 F4/F7/G0 sector/page erase and
program, nRF52 NVMC) cross-compile warning-free (-Werror) with each board's flags."""

from __future__ import annotations

import shutil

import pytest

from aiot.lifecycle import cost
from aiot.target.boards import get_board

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")


@pytest.mark.parametrize("board", ["nucleo-f446re", "nucleo-f767zi", "nucleo-g071rb", "nrf52840-dk"])
def test_flash_driver_and_update_logic_build_warning_free(board, tmp_path):
    b = get_board(board)
    assert cost.driver_sources(b), f"{board}: no flash driver for family {b.family}"
    objs = cost.compile_objects(b, tmp_path, only=("update", "driver"))
    assert all(o.stat().st_size > 0 for files in objs.values() for o in files)


@pytest.mark.slow
def test_update_machinery_cost_is_measured(tmp_path):
    c = cost.measure(get_board("nucleo-f446re"), tmp_path)
    assert set(c.flash_bytes) == {"update", "crypto", "driver"} and all(v > 0 for v in c.flash_bytes.values())
