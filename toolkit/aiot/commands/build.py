"""`aiot build`: compile the firmware for a board, with or without a model."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, wrote


@click.command("build", cls=Command)
@click.option("--board", "-b", default="mps2-an386", show_default=True, help="Board name (see `aiot boards`).")
@click.option("--package", "-p", "package", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model package folder; its generated C (PKG/c, made by `aiot codegen`) is linked in.")
@click.option("--model-c", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with a generated model.c/model.h instead.")
@click.option("--out", "-o", type=OutPath(), help="Output folder [default: build/fw/BOARD under the current folder].")
@click.option("--opt", default="-O2", show_default=True, type=click.Choice(["-O0", "-O1", "-O2", "-O3", "-Os"]),
              help="Optimization level.")
@click.option("--profile", is_flag=True, help="Record per-layer tick counts (AIOT_PROFILE).")
def command(board: str, package: Path | None, model_c: Path | None, out: Path | None, opt: str, profile: bool) -> None:
    """Build firmware for BOARD with arm-none-eabi-gcc and print its flash/RAM split.

    \b
    Examples:
      aiot build --board mps2-an386 --package build/pkg
      aiot build --board microbit                # no model: protocol + monitor only
    """
    from aiot import paths
    from aiot.target.boards import get_board
    from aiot.errors import ToolkitError
    from aiot.target.firmware import build

    b = get_board(board)
    if package and model_c:
        raise ToolkitError("give either --package or --model-c, not both")
    model_dir = model_c or (package / "c" if package else None)
    out = out or paths.build_dir() / "fw" / b.name
    res = build(b, out, model_dir, opt=opt, defines=["AIOT_PROFILE"] if profile else [])
    click.echo(f"built {res.elf} for {b.name} ({b.core})")
    click.echo(res.size.table())
    wrote(res.elf)
