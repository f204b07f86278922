"""`aiot flash`: program a real board (pyocd by default)."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command


@click.command("flash", cls=Command)
@click.option("--board", "-b", required=True, help="Board name (see `aiot boards`; real hardware only).")
@click.option("--elf", type=click.Path(path_type=Path),
              help="Firmware to flash [default: build/fw/<board>/firmware.elf from `aiot build`].")
@click.option("--probe", help="Debug probe unique ID (a prefix is enough); for --with platformio the upload port.")
@click.option("--with", "method", type=click.Choice(["pyocd", "platformio", "msd", "command"]),
              help="Flash method [default: the board file's flash.method]. msd copies the image to the "
                   "debugger's USB drive; command runs flash.command from the board file.")
@click.option("--project", type=click.Path(path_type=Path),
              help="--with platformio: the project made by `aiot export --format platformio`.")
@click.option("--dry-run", is_flag=True, help="Print the command without running it.")
def command(board: str, elf: Path | None, probe: str | None, method: str | None, project: Path | None,
            dry_run: bool) -> None:
    """Flash firmware onto a real BOARD through its on-board debugger.

    \b
    Examples:
      aiot build --board nucleo-f767zi --package build/pkg
      aiot flash --board nucleo-f767zi
      aiot flash --board nucleo-f446re --probe 066DFF --with pyocd
      aiot flash --board nrf52840-dk --with msd          # copy to the JLINK drive
      aiot flash --board nucleo-f446re --with platformio --project fw-pio   # from aiot export
      aiot monitor --board nucleo-f767zi                  # then watch it
    """
    import shlex

    from aiot import paths
    from aiot.target.boards import get_board
    from aiot.target.flash import flash

    b = get_board(board)
    elf = elf or paths.build_dir() / "fw" / b.name / "firmware.elf"
    cmd = flash(b, elf, method=method, probe=probe, project_dir=project, dry_run=dry_run,
                echo=lambda s: click.echo(f"$ {s}"), note=lambda s: click.echo(s, err=True))
    if dry_run:
        click.echo(" ".join(shlex.quote(c) for c in cmd))
    else:
        click.echo(f"flashed {project if method == 'platformio' else elf} to {b.name}")
