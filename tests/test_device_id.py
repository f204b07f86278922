"""The device id INFO reports (protocol 1.1), which the registry keys devices by: the chip's
unique id register where the board file names one ([device_id]), else a value written into
the image at build time. (QEMU runs the build-time path: tests/test_lifecycle_qemu.py.)"""

from __future__ import annotations

import shutil

import pytest

from aiot.errors import ToolkitError
from aiot.target.boards import get_board
from aiot.target.firmware import device_id_defines

#: Unique id registers from the reference manuals (RM0390, RM0410, RM0444; nRF52840 FICR).
UID = {"nucleo-f446re": (0x1FFF7A10, 12), "nucleo-f767zi": (0x1FF0F420, 12), "nucleo-g071rb": (0x1FFF7590, 12),
       "nrf52840-dk": (0x10000060, 8)}


@pytest.mark.parametrize("name", sorted(UID))
def test_real_boards_read_their_unique_id_register(name):
    b = get_board(name)
    addr, n = UID[name]
    assert b.device_uid == (addr, n)
    assert (b.defines()["AIOT_DEVICE_UID_ADDR"], b.defines()["AIOT_DEVICE_UID_BYTES"]) == (f"0x{addr:08X}u", f"{n}u")
    with pytest.raises(ToolkitError, match="unique id"):
        device_id_defines(b, "pump-7")  # the chip's id wins: a build-time one would never be reported


def test_boards_without_one_take_a_build_time_id():
    b = get_board("mps2-an386")
    assert b.device_uid is None and "AIOT_DEVICE_UID_ADDR" not in b.defines()
    assert device_id_defines(b, "build-00ff.a:b_c") == ['AIOT_DEVICE_ID="build-00ff.a:b_c"']
    assert device_id_defines(b, None) == []
    for bad in ("", "x" * 65, 'a"b', "a b", "ü", "ab\n"):
        with pytest.raises(ToolkitError, match="1 to 64"):
            device_id_defines(b, bad)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_the_f446_image_reads_the_uid_register(tmp_path):
    """Not run on hardware here: the image's INFO code loads the register's address."""
    from aiot.target.firmware import build

    res = build(get_board("nucleo-f446re"), tmp_path / "fw")  # -Werror
    assert (0x1FFF7A10).to_bytes(4, "little") in res.bin.read_bytes()
    plain = build(get_board("mps2-an386"), tmp_path / "plain")
    assert (0x1FFF7A10).to_bytes(4, "little") not in plain.bin.read_bytes()
