"""QEMU's UART port: picked free, then bound by QEMU; a port another process takes in between
is not mistaken for QEMU's (aiot.target.qemu.Qemu.start)."""

from __future__ import annotations

import socket

import pytest

from aiot.target import qemu
from aiot.target.boards import get_board
from aiot.testing import requires_arm, requires_qemu


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_a_port_another_process_listens_on_first_is_not_taken_for_qemus(tmp_path, monkeypatch):
    # under pytest-xdist another worker (or its QEMU) can take the free port before QEMU binds
    # it: QEMU then exits with "Address already in use", and someone else's listening socket
    # must not pass for QEMU's (the link would meet a firmware that is not running)
    from aiot.target.firmware import build

    board = get_board("mps2-an386")
    elf = build(board, tmp_path / "fw").elf
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        first = [taken.getsockname()[1]]
        real = qemu.free_port
        monkeypatch.setattr(qemu, "free_port", lambda: first.pop() if first else real())
        with qemu.Qemu(board, elf) as q:
            assert q.port != taken.getsockname()[1]
            assert q.proc.poll() is None and qemu._is_listening(q.port, q.proc.pid)


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_a_firmware_path_relative_to_where_the_user_is_boots_whatever_qemus_folder(tmp_path, monkeypatch):
    # `aiot gateway --qemu mps2-an386 --elf cm/firmware.elf` runs QEMU in its own folder (the
    # update region's): the relative path must not be read from there ("Could not load kernel")
    from aiot.device.hil import Device, make_transport
    from aiot.target.firmware import build

    board = get_board("mps2-an386")
    (tmp_path / "user").mkdir()
    (tmp_path / "qemu-folder").mkdir()
    build(board, tmp_path / "user" / "cm")
    monkeypatch.chdir(tmp_path / "user")
    t = make_transport("qemu", board=board, elf="cm/firmware.elf", cwd=tmp_path / "qemu-folder")
    try:
        assert Device(t, timeout=10.0).info()  # the firmware answers: QEMU found it
    finally:
        t.close()
