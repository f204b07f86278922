"""`aiot run`: boot the firmware on a board and check it against tflite-micro."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, wrote


@click.command("run", cls=Command)
@click.option("--board", "-b", default="mps2-an386", show_default=True, help="Board name (see `aiot boards`).")
@click.option("--package", "-p", "package", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Model package (needs model.tflite, vectors.npz and generated C in PKG/c).")
@click.option("--elf", type=click.Path(path_type=Path),
              help="Prebuilt firmware [default: built from the package into build/fw/BOARD of the current folder].")
@click.option("-n", "count", type=click.IntRange(min=0), default=0, help="Check only the first N test vectors (0 = all).")
@click.option("--transport", type=click.Choice(["qemu", "serial"]), default="qemu", show_default=True,
              help="qemu boots the ELF in QEMU; serial talks to a flashed board.")
@click.option("--port", help="Serial port or pyserial URL for --transport serial (e.g. /dev/ttyACM0).")
@click.option("--baud", type=int, help="Baud rate for --transport serial [default: the board's].")
def command(board: str, package: Path, elf: Path | None, count: int, transport: str, port: str | None,
            baud: int | None) -> None:
    """Stream the package's test vectors through the device; every output byte is
    compared with TFLite Micro's reference interpreter. Exits 1 on any mismatch.

    \b
    Examples:
      aiot run --board mps2-an386 --package build/pkg
      aiot run --board nucleo-f446re --package build/pkg --transport serial --port /dev/ttyACM0
    """
    import sys

    from aiot import paths
    from aiot.target.boards import get_board
    from aiot.target.firmware import build
    from aiot.device.hil import open_device
    from aiot.model.package import load_package
    from aiot.device.parity import check_parity

    b = get_board(board)
    if transport == "qemu":
        b.qemu_args()  # real hardware stops here, before its firmware folder is rebuilt
    pkg = load_package(package)
    if elf is None and transport == "qemu":
        from aiot.outputs import output_folder

        # as aiot build: built in staging and moved into place whole, one run at a time
        with output_folder(paths.build_dir() / "fw" / b.name, "aiot run") as run:
            res = build(b, run.folder, pkg.path / "c")
            run.relocate("build.json")  # it names the image where it will be
        elf = run.final(res.elf)
        wrote(elf)
    x = pkg.vectors()["x_int8"]
    if count:
        x = x[:count]
    with open_device(board=b.name, elf=elf, transport=transport, port=port, baud=baud) as dev:
        tflite = pkg.tflite_bytes()  # read and checked against the manifest's hash once
        info = dev.require_model(tflite, str(pkg.path))
        click.echo(f"device: {info.board}, firmware {info.firmware_version}, model {info.model_name!r} "
                   f"(hash {info.model_hash:08x}, {info.input_bytes} B in, {info.output_bytes} B out)")
        rep = check_parity(dev, b, tflite, x)
    click.echo(f"{rep.windows} inferences, {rep.mismatched_windows} mismatching ({rep.mismatched_bytes} bytes, "
               f"max |error| {rep.max_abs_error}); instructions per inference: {rep.instructions_text()}")
    link = dev.link_report()  # said only when the link needed retries or dropped frames
    if link:
        click.secho(f"link: {link[0]}\n  {link[1]}", fg="yellow")
    if not rep.ok:
        click.secho(f"MISMATCH against tflite-micro (first at vector {rep.first_mismatch})", fg="red", err=True)
        sys.exit(1)
