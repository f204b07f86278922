"""Firmware images for MCUboot: link the firmware at the primary slot + image header
(the board file's [mcuboot] table, checked by aiot.target.layout) and sign the binary with
imgtool, so the board's MCUboot verifies it before it runs (docs/lifecycle.md says how to
boot it per board)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiot.errors import ToolkitError
from aiot.lifecycle import package as P
from aiot.target.boards import Board, Region, list_boards
from aiot.target.layout import TRAILER_ROOM, McubootLayout

__all__ = ["TRAILER_ROOM", "mcuboot_layout", "slot_board", "sign_firmware"]


def mcuboot_layout(board: Board) -> McubootLayout:
    if board.mcuboot is None:
        with_one = ", ".join(b.name for b in list_boards() if b.mcuboot is not None)
        raise ToolkitError(f"board {board.name} has no [mcuboot] table (slot layout) in {board.source}",
                           hint=f"boards with one: {with_one}; docs/lifecycle.md shows the keys")
    return board.mcuboot


def slot_board(board: Board) -> Board:
    """The same board with its firmware flash region moved into the primary slot, after
    the image header and before the trailer (and, with swap-move, the sector MCUboot moves
    through): what MCUboot jumps to."""
    lay = mcuboot_layout(board)
    return dataclasses.replace(board, flash=Region(lay.slot0 + lay.header_size, lay.image_room), vectors=None)


def sign_firmware(board: Board, binary: Path, key: Path, *, version: str, out: Path) -> Path:
    lay = mcuboot_layout(board)
    P._run_imgtool(["sign", "-k", str(key), "--header-size", hex(lay.header_size), "--pad-header",
                    "--slot-size", hex(lay.slot_size), "--align", str(lay.align), "--version", version,
                    str(binary), str(out)], "sign (firmware)")
    return out
