"""`aiot codegen`: int8 .tflite -> model.c/model.h over the aiot engine."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.errors import ToolkitError
from aiot.commands import Command, OutPath


def _package_name(package: Path) -> str:
    """The model name a package's manifest gives (what train, validate and run call it); the
    folder's name when the manifest cannot be read (codegen itself needs only model.tflite)."""
    from aiot.model.package import load_package

    try:
        name = load_package(package).manifest.get("name")
    except (ToolkitError, OSError):  # OSError: a manifest the system cannot read (permissions, I/O)
        name = None
    if isinstance(name, str) and name.strip():
        return name
    return package.resolve().name  # a name of null, 42 or "" is none; and '.' has no name of its own


def _c_stem(name: str) -> str:
    """The C name stem of ``--format tflm`` for a name the user did not give (the manifest's or
    the file's; SKAB's files are 0.csv, 1.csv ...): letters, digits and _ only, not leading
    with a digit, at most 64 characters (the files are <stem>_data.h/.cc)."""
    import re

    stem = re.sub(r"[^A-Za-z0-9_]", "_", name)[:64]
    return stem if stem and not stem[0].isdigit() else f"model_{stem}".rstrip("_")


@click.command("codegen", cls=Command)
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="int8 (or 16x8: int16 activations) .tflite to compile.")
@click.option("--out", "out_dir", type=OutPath(),
              help="Folder for model.c and model.h [default: PKG/c with --package (PKG/tflm with --format tflm); "
                   "needed with --model].")
@click.option(
    "--package", "package", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model package directory: reads DIR/model.tflite, writes DIR/c/.",
)
@click.option("--name", default=None,
              help="Model name stored in aiot_model_info [default: the package manifest's name, or the .tflite "
                   "file's stem].")
@click.option("--compare-tflm", is_flag=True, help="Also measure the arena TFLite Micro needs (slower).")
@click.option("--format", "fmt", type=click.Choice(["aiot", "tflm"]), default="aiot", show_default=True,
              help="aiot: interpreter-free C; tflm: the .tflite as an aligned C array (<name>_data.cc/.h) "
                   "for TensorFlow Lite Micro.")
@click.option("--optimize", type=click.Choice(["speed", "size"]), default="speed", show_default=True,
              help="speed: FULLY_CONNECTED/CONV_2D weights pre-widened to int16 for SIMD (about 2x weight "
                   "flash; 1.3-1.5x faster on Cortex-M4/M7/M33, little gain on M0/M3); size: weights packed "
                   "int8 (unpacked at run time).")
def command(model_path: Path | None, out_dir: Path | None, package: Path | None, name: str | None,
            compare_tflm: bool, fmt: str = "aiot", optimize: str = "speed") -> None:
    """Generate interpreter-free C for an int8 (or 16x8) .tflite model.

    \b
    Examples:
      aiot codegen --model build/pkg/model.tflite --out build/pkg/c
      aiot codegen --package build/pkg
      aiot codegen --package build/pkg --optimize size   # half the weight flash, slower
    """
    from aiot import codegen
    from aiot.outputs import output_folder

    if package is not None:
        if model_path is not None:
            raise ToolkitError("--package and --model are mutually exclusive", hint="use one of them")
        model_path = package / "model.tflite"
        out_dir = out_dir or package / ("tflm" if fmt == "tflm" else "c")
        if not model_path.is_file():
            raise ToolkitError(f"no model.tflite in package {package}", hint="run aiot quantize --package first")
    if model_path is None or out_dir is None:
        raise ToolkitError("need --model and --out (or --package)",
                           hint="aiot codegen --model model.tflite --out DIR")
    given = name is not None
    if name is None:
        name = _package_name(package) if package is not None else model_path.stem
    if fmt == "tflm":  # the TFLite Micro route (toolkit/aiot/target/export.py)
        import re

        from aiot.target.export import export_tflm

        if not model_path.is_file():
            raise ToolkitError(f"model not found: {model_path}")
        stem = re.sub(r"\W", "_", name) if given else _c_stem(name)
        with output_folder(out_dir, "aiot codegen --format tflm") as run:
            files = export_tflm(model_path.read_bytes(), run.folder, stem, source=model_path.name)
        for f in files:
            click.echo(f"wrote {run.final(f)}")
        return
    # model.c and model.h appear together when both are written (a build never sees one
    # model's .c beside another's .h), and one codegen at a time writes the folder
    with output_folder(out_dir, "aiot codegen") as run:
        res = codegen.generate(model_path, run.folder, name=name, optimize=optimize)
    click.echo(f"{'layer':<28}{'output':<20}{'MACs':>10}")
    for li in res.layer_info:
        click.echo(f"{li.name:<28}{str(list(li.output_shape)):<20}{li.macs:>10}")
    click.echo(f"layers:  {len(res.layers)}")
    click.echo(f"arena:   {res.arena_bytes} bytes")
    click.echo(f"weights: {res.weights_bytes} bytes")
    click.echo(f"MACs:    {res.macs}")
    if "int16" in (res.input_dtype, res.output_dtype):  # TFLite's 16x8 mode
        click.echo(f"16x8:    int16 activations; input {res.input_bytes} bytes, output {res.output_bytes} bytes "
                   "(two per element, little-endian)")
    if len(res.input_shapes) > 1 or len(res.output_shapes) > 1:  # aiot_model_input_n / _output_n, in this order
        click.echo(f"inputs:  {', '.join(str(list(s)) for s in res.input_shapes)}")
        click.echo(f"outputs: {', '.join(str(list(s)) for s in res.output_shapes)}")
    if compare_tflm:
        from aiot.model.reference import tflm_arena_usage

        u = tflm_arena_usage(model_path)
        click.echo(f"TFLM arena for the same model: {u['total']} bytes ({u['head']} tensors + {u['tail']} run-time data)")
    for f in res.files:
        click.echo(f"wrote {run.final(f)}")
