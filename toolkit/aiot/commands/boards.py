"""`aiot boards`: list the boards the toolkit knows."""

from __future__ import annotations

import click

from aiot.commands import Command, json_option, write_json


@click.command("boards", cls=Command)
@json_option("the board list")
def command(json_out: str | None) -> None:
    """List supported boards (one data file each under boards/).

    \b
    Example:
      aiot boards
      aiot boards --json -            # machine-readable, on stdout
    """
    from aiot.target.boards import DEFAULT_BOARD, list_boards

    from dataclasses import asdict

    boards = list_boards()
    if json_out is not None:
        # the flash layouts as checked on load: model-update areas and MCUboot partitions (or null)
        write_json(json_out, [
            {"name": b.name, "core": b.core, "fpu": b.fpu, "family": b.family, "emulated": b.emulated,
             "flash": b.flash.length, "ram": b.ram.length, "cpu_hz": b.cpu_hz, "description": b.description,
             "update": asdict(b.update) if b.update else None,
             "mcuboot": {**asdict(b.mcuboot), "image_room": b.mcuboot.image_room} if b.mcuboot else None}
            for b in boards])
        return
    click.echo(f"{'board':<18} {'core':<14} {'fpu':<12} {'flash':>7} {'ram':>7}  {'runs in':<8} description")
    for b in boards:
        mark = " (default)" if b.name == DEFAULT_BOARD else ""
        where = "qemu" if b.emulated else "hardware"
        click.echo(f"{b.name:<18} {b.core:<14} {b.fpu:<12} {b.flash.length // 1024:>6}K {b.ram.length // 1024:>6}K"
                   f"  {where:<8} {b.description}{mark}")
