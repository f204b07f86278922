"""Firmware that takes model updates: the device app plus firmware/src/update (service,
package check, slots), the bundled crypto and the family's flash driver, with the release
key and the board file's [update] layout compiled in.

    build_update_firmware(get_board("mps2-an386"), out, model_dir, public_key=pub)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from aiot.codegen import engine_sources
from aiot.errors import ToolkitError
from aiot.lifecycle.crypto_sources import crypto_sources, update_sources
from aiot.paths import FIRMWARE
from aiot.target import firmware
from aiot.target.boards import Board


def update_layout(board: Board) -> dict[str, int]:
    """The board file's [update] table: sector_size, slot_size (+ region_base, first_sector
    on real boards), checked."""
    t = board.extra.get("update")
    if not isinstance(t, dict):
        raise ToolkitError(
            f"board {board.name} has no [update] table (model-update slot layout) in {board.source}",
            hint="boards with one: mps2-an386; docs/lifecycle.md says how to lay out a real board's slots",
        )
    out: dict[str, int] = {}
    for key in ("sector_size", "slot_size", *(() if board.emulated else ("region_base", "first_sector"))):
        v = t.get(key)
        if not isinstance(v, int) or v < 0:
            raise ToolkitError(f"{board.source}: [update] {key} must be a non-negative integer, got {v!r}",
                               hint="see boards/mps2-an386.toml for an example")
        out[key] = v
    if out["sector_size"] <= 0 or out["slot_size"] % out["sector_size"]:
        raise ToolkitError(f"{board.source}: [update] slot_size must be a multiple of sector_size",
                           hint="a slot is erased sector by sector")
    return out


def update_defines(board: Board, public_key: bytes, *, trial_runs: int | None = None,
                   flash_file: Path | None = None) -> list[str]:
    if len(public_key) != 32:
        raise ToolkitError("the release public key must be 32 bytes (Ed25519)", hint="make keys with aiot release --new-key")
    lay = update_layout(board)
    defs = ["AIOT_APP_UPDATE", f"AIOT_UPDATE_SECTOR={lay['sector_size']}u", f"AIOT_UPDATE_SLOT_SIZE={lay['slot_size']}u",
            "AIOT_UPDATE_PUBLIC_KEY=" + ",".join(f"0x{b:02x}" for b in public_key)]
    if "region_base" in lay:
        defs += [f"AIOT_UPDATE_REGION_BASE=0x{lay['region_base']:08x}u", f"AIOT_UPDATE_FIRST_SECTOR={lay['first_sector']}u"]
    if trial_runs is not None:
        defs.append(f"AIOT_UPDATE_TRIAL_RUNS={int(trial_runs)}u")
    if flash_file is not None:
        defs.append(f'AIOT_UPDATE_FLASH_FILE="{Path(flash_file).resolve()}"')
    return defs


def build_update_firmware(board: Board, out_dir: Path, model_dir: Path | None, *, public_key: bytes,
                          trial_runs: int | None = None, flash_file: Path | None = None,
                          defines: Iterable[str] = (), opt: str = "-O2",
                          device_id: str | None = None) -> firmware.BuildResult:
    """``device_id``: the id INFO reports on a board whose chip has no unique id register
    (:func:`aiot.target.firmware.device_id_defines`)."""
    defines = [*firmware.device_id_defines(board, device_id), *defines]
    crypto = crypto_sources()
    return firmware.build(
        board, out_dir, model_dir, opt=opt,
        defines=[*update_defines(board, public_key, trial_runs=trial_runs, flash_file=flash_file),
                 *crypto.defines, *defines],
        extra_sources=[*update_sources()[:3], FIRMWARE / "src" / "update" / "service.c",
                       FIRMWARE / "src" / "update" / "plan.c", *crypto.sources,
                       # the plan walks the engine's kernels; a build with a model compiles them already
                       *(engine_sources() if model_dir is None else [])],
        extra_includes=list(crypto.include_dirs),
    )
