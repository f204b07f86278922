"""`aiot boards`: list the boards the toolkit knows."""

from __future__ import annotations

import json

import click


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """List supported boards (one data file each under boards/).

    \b
    Example:
      aiot boards
    """
    from aiot.target.boards import DEFAULT_BOARD, list_boards

    boards = list_boards()
    if as_json:
        click.echo(json.dumps([
            {"name": b.name, "core": b.core, "fpu": b.fpu, "family": b.family, "emulated": b.emulated,
             "flash": b.flash.length, "ram": b.ram.length, "cpu_hz": b.cpu_hz, "description": b.description}
            for b in boards], indent=2))
        return
    click.echo(f"{'board':<18} {'core':<14} {'fpu':<12} {'flash':>7} {'ram':>7}  {'runs in':<8} description")
    for b in boards:
        mark = " (default)" if b.name == DEFAULT_BOARD else ""
        where = "qemu" if b.emulated else "hardware"
        click.echo(f"{b.name:<18} {b.core:<14} {b.fpu:<12} {b.flash.length // 1024:>6}K {b.ram.length // 1024:>6}K"
                   f"  {where:<8} {b.description}{mark}")
