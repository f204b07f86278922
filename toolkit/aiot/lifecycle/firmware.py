"""Firmware that takes model updates: the device app plus firmware/src/update (service,
package check, slots), the bundled crypto and the family's flash driver, with the release
key and the board file's [update] layout compiled in.

    build_update_firmware(get_board("mps2-an386"), out, model_dir, public_key=pub)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from aiot.codegen import engine_sources
from aiot.errors import ToolkitError
from aiot.lifecycle.crypto_sources import crypto_sources, update_sources
from aiot.paths import FIRMWARE
from aiot.target import firmware
from aiot.target.boards import Board, Region, list_boards
from aiot.target.layout import UpdateLayout, image_regions, mcuboot_areas, update_areas


def update_layout(board: Board) -> UpdateLayout:
    """The board file's [update] table (checked when the board file loaded)."""
    if board.update is None:
        with_one = ", ".join(b.name for b in list_boards() if b.update is not None)
        raise ToolkitError(
            f"board {board.name} has no [update] table (model-update slot layout) in {board.source}",
            hint=f"boards with one: {with_one}; docs/lifecycle.md (Slot layouts) says how to lay out a board's slots",
        )
    return board.update


def update_board(board: Board, *, signed: bool = False) -> Board:
    """The board a firmware that takes model updates links for (``board`` as loaded from its
    file). On a real board the code keeps out of the [update] areas: the vector table stays
    at the boot address, in a region of its own when the areas cut the flash short. With
    ``signed`` the image goes into the MCUboot primary slot
    (aiot.lifecycle.signed_image.slot_board), and the areas must lie outside every MCUboot
    partition (the bootloader, both slots, the scratch area)."""
    from aiot.lifecycle.signed_image import mcuboot_layout, slot_board

    lay = update_layout(board)
    if signed:
        boot = mcuboot_layout(board)
        if lay.records is not None:
            parts = mcuboot_areas(boot, board.flash.origin)
            for name, (a, n) in update_areas(lay, board.sectors).items():
                for part, (p, m) in parts.items():
                    if a < p + m and p < a + n:
                        raise ToolkitError(
                            f"{board.source}: [update] {name} ({a:#010x}) lies in MCUboot's {part} ({p:#010x}+{m:#x}): "
                            f"{board.name} cannot take model updates and run under MCUboot with this layout",
                            hint=f"build one of the two (aiot build --board {board.name} --update-key KEY, or "
                                 "--signed KEY), or move the [update] areas outside the [mcuboot] partitions")
        return slot_board(board)
    if lay.records is None:
        return board  # emulated: the region is a host file, not in the memory map
    code, vectors = image_regions(board.flash.origin, board.flash.length,
                                  list(update_areas(lay, board.sectors).values()))
    return dataclasses.replace(board, flash=Region(*code), vectors=Region(*vectors) if vectors else None)


def region_sectors(board: Board) -> list[tuple[int, int, int]]:
    """(offset from the region's base, size, controller number) of every sector of the
    [update] areas, in address order: the table the flash drivers, the QEMU boards' flash
    and the host simulation check erases and programs against (firmware/include/aiot/flash_map.h)."""
    lay = update_layout(board)
    if lay.records is None:  # emulated: a host file of equal sectors
        n = (2 * lay.sector_size + 2 * lay.slot_size) // lay.sector_size
        return [(i * lay.sector_size, lay.sector_size, i) for i in range(n)]
    out = []
    for start, size in update_areas(lay, board.sectors).values():
        out += [(s.start - lay.base, s.size, s.number) for s in board.sectors if start <= s.start < start + size]
    return sorted(out)


def layout_defines(board: Board) -> list[str]:
    """The -D defines that place the [update] areas (update.h, flash_map.h)."""
    lay = update_layout(board)
    defs = ["AIOT_UPDATE_AREAS=" + ",".join(f"0x{o:x}u" for o in lay.offsets()),
            "AIOT_UPDATE_SECTORS=" + ",".join(f"{{0x{o:x}u,0x{n:x}u,{k}u}}" for o, n, k in region_sectors(board))]
    if lay.records is not None:
        defs.append(f"AIOT_UPDATE_REGION_BASE=0x{lay.base:08x}u")
    return defs


def update_defines(board: Board, public_key: bytes, *, trial_runs: int | None = None,
                   flash_file: Path | None = None) -> list[str]:
    if len(public_key) != 32:
        raise ToolkitError("the release public key must be 32 bytes (Ed25519)", hint="make keys with aiot release --new-key")
    lay = update_layout(board)
    defs = ["AIOT_APP_UPDATE", f"AIOT_UPDATE_SECTOR={lay.sector_size}u", f"AIOT_UPDATE_SLOT_SIZE={lay.slot_size}u",
            "AIOT_UPDATE_PUBLIC_KEY=" + ",".join(f"0x{b:02x}" for b in public_key)]
    defs += layout_defines(board)
    if trial_runs is not None:
        defs.append(f"AIOT_UPDATE_TRIAL_RUNS={int(trial_runs)}u")
    if flash_file is not None:
        defs.append(f'AIOT_UPDATE_FLASH_FILE="{Path(flash_file).resolve()}"')
    return defs


def build_update_firmware(board: Board, out_dir: Path, model_dir: Path | None, *, public_key: bytes,
                          trial_runs: int | None = None, flash_file: Path | None = None,
                          defines: Iterable[str] = (), opt: str = "-O2", signed: bool = False,
                          device_id: str | None = None, plan_ops: str = "dense") -> firmware.BuildResult:
    """``board`` as its file describes it; the image is linked for ``update_board(board, signed=signed)``.
    ``plan_ops``: "dense" (default) walks FULLY_CONNECTED plans only and links no other kernel;
    "all" (AIOT_PLAN_ALL_OPS) runs conv plans too, about 18 KB more flash.
    ``device_id``: the id INFO reports on a board whose chip has no unique id register
    (:func:`aiot.target.firmware.device_id_defines`)."""
    if plan_ops not in ("dense", "all"):
        raise ToolkitError(f"plan ops {plan_ops!r}: not dense or all", hint="aiot build --update-key KEY --plan-ops all")
    defines = [*firmware.device_id_defines(board, device_id), *(["AIOT_PLAN_ALL_OPS"] if plan_ops == "all" else []),
               *defines]
    crypto = crypto_sources()
    return firmware.build(
        update_board(board, signed=signed), out_dir, model_dir, opt=opt,
        defines=[*update_defines(board, public_key, trial_runs=trial_runs, flash_file=flash_file),
                 *crypto.defines, *defines],
        extra_sources=[*update_sources()[:3], FIRMWARE / "src" / "update" / "service.c",
                       FIRMWARE / "src" / "update" / "plan.c", *crypto.sources,
                       # the plan walks the engine's kernels; a build with a model compiles them already
                       *(engine_sources() if model_dir is None else [])],
        extra_includes=list(crypto.include_dirs),
    )
