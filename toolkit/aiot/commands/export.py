"""`aiot export`: a standalone CMake or PlatformIO project, or the model for TFLite Micro."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, wrote


@click.command("export", cls=Command)
@click.option("--board", "-b", help="Board name (see `aiot boards`); needed for cmake and platformio.")
@click.option("--format", "fmt", type=click.Choice(["cmake", "platformio", "tflm"]), required=True,
              help="cmake: CMakeLists.txt + toolchain file; platformio: platformio.ini; "
                   "tflm: the .tflite as an aligned C array for TensorFlow Lite Micro.")
@click.option("--out", "-o", "out", type=OutPath(), required=True, help="Output folder.")
@click.option("--package", "-p", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model package: links PKG/c (aiot codegen) into the project; tflm reads PKG/model.tflite.")
@click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="tflm: the .tflite file (instead of --package).")
@click.option("--name", default="model", show_default=True, help="tflm: C name stem (g_<name>_data).")
def command(board: str | None, fmt: str, out: Path, package: Path | None, model: Path | None, name: str) -> None:
    """Write a project that builds without the toolkit: the same sources and flags as
    `aiot build`, for arm-none-eabi-gcc via CMake, or for PlatformIO.

    \b
    Examples:
      aiot export --board nucleo-f446re --format platformio --out fw-f446 --package build/pkg
      aiot export --board mps2-an386 --format cmake --out fw-cmake
      aiot export --format tflm --package build/pkg --out tflm_model
    """
    from aiot.target.boards import get_board
    from aiot.errors import ToolkitError
    from aiot.outputs import output_folder
    from aiot.target.export import check_export_folder, export_project, export_tflm, project_model_dir

    if fmt == "tflm":
        if bool(model) == bool(package):
            raise ToolkitError("tflm export needs exactly one of --model or --package")
        src = model or package / "model.tflite"
        if not src.is_file():
            raise ToolkitError(f"model not found: {src}", hint="run aiot quantize --package <pkg> first")
        with output_folder(out, "aiot export --format tflm") as run:
            h, cc = export_tflm(src.read_bytes(), run.folder, name, source=src.name)
        click.echo(f"wrote {run.final(h)} and {run.final(cc)}")
        return
    if not board:
        raise ToolkitError(f"--format {fmt} needs --board", hint="see `aiot boards`")
    b = get_board(board)
    model_dir = project_model_dir(fmt, package, model)
    check_export_folder(out)  # the folder itself: the project is written into staging
    # the project appears whole (sources, board header, linker script, build files) or not at all
    with output_folder(out, f"aiot export --format {fmt}") as run:
        export_project(b, fmt, run.folder, model_dir)
    build = "cmake -B build && cmake --build build" if fmt == "cmake" else "pio run && pio run -t upload"
    wrote(out)
    click.echo(f"exported {b.name} ({fmt}) to {out}\n  build it: cd {out} && {build}")
