"""Firmware images for MCUboot: link the firmware at the primary slot + image header
(the board file's [mcuboot] table) and sign the binary with imgtool, so the board's
MCUboot verifies it before it runs (docs/lifecycle.md says how to boot it per board)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiot.errors import ToolkitError
from aiot.lifecycle import package as P
from aiot.target.boards import Board, Region

#: MCUboot image trailer room left at the end of a slot (swap status + magic; imgtool
#: refuses an image that does not leave it). 0x1000 covers the default max-sectors 128.
TRAILER_ROOM = 0x1000


def mcuboot_layout(board: Board) -> dict[str, int]:
    t = board.extra.get("mcuboot")
    if not isinstance(t, dict):
        raise ToolkitError(f"board {board.name} has no [mcuboot] table (slot layout) in {board.source}",
                           hint="boards with one: mps2-an386, nucleo-f446re; docs/lifecycle.md shows the keys")
    out = {}
    for key in ("slot0", "slot1", "slot_size", "header_size"):
        v = t.get(key)
        if not isinstance(v, int) or v <= 0 and key != "slot0":
            raise ToolkitError(f"{board.source}: [mcuboot] {key} must be an integer, got {v!r}",
                               hint="see boards/nucleo-f446re.toml")
        out[key] = v
    out["align"] = int(t.get("align", 4))
    fl = board.flash
    for key in ("slot0", "slot1"):
        if not (fl.origin <= out[key] and out[key] + out["slot_size"] <= fl.origin + fl.length):
            raise ToolkitError(f"{board.source}: [mcuboot] {key} 0x{out[key]:08x} + slot_size leaves the board's flash",
                               hint="slots must lie inside [memory] flash")
    return out


def slot_board(board: Board) -> Board:
    """The same board with its firmware flash region moved into the primary slot, after
    the image header and before the trailer: what MCUboot jumps to."""
    lay = mcuboot_layout(board)
    return dataclasses.replace(board, flash=Region(lay["slot0"] + lay["header_size"],
                                                   lay["slot_size"] - lay["header_size"] - TRAILER_ROOM))


def sign_firmware(board: Board, binary: Path, key: Path, *, version: str, out: Path) -> Path:
    lay = mcuboot_layout(board)
    P._run_imgtool(["sign", "-k", str(key), "--header-size", hex(lay["header_size"]), "--pad-header",
                    "--slot-size", hex(lay["slot_size"]), "--align", str(lay["align"]), "--version", version,
                    str(binary), str(out)], "sign (firmware)")
    return out
