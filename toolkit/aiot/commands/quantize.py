"""`aiot quantize`: full-int8 model for a package (or for the user's own Keras model,
calibrated on their data), checked against the float model."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, json_option, write_json, wrote
from aiot.commands._options import csv_options, reading_options


@click.command("quantize", cls=Command)
@click.option("--package", "package", type=click.Path(file_okay=False, path_type=Path),
              help="Package folder from `aiot train` (model.tflite is written into it).")
@click.option("--keras", "keras_model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your own Keras autoencoder (.keras/.h5) instead: calibrated on --data, packaged into --out.")
@click.option("--data", "data", type=click.Path(path_type=Path),
              help="With --keras: CSV of your sensors (the first --train-rows rows are normal running).")
@click.option("--out", "out", type=OutPath(),
              help="With --keras: the package folder to write [default: none written without --keras; needed with it].")
@click.option("--channels", default=None,
              help="With --keras: comma-separated sensor columns, in the model's order [default: all but "
                   "time/labels].")
@click.option("--train-rows", type=click.IntRange(min=1), default=None,
              help="With --keras: rows of normal running that calibrate it [default: first half].")
@click.option("--quantile", type=click.FloatRange(0.5, 1.0, max_open=True), default=0.995, show_default=True,
              help="With --keras: alarm threshold = this quantile of the held-out normal windows' scores.")
@click.option("--timestamp-column", default="auto", show_default=True, help="With --keras: time column, or 'none'.")
@reading_options
@json_option("the float vs int8 report")
def command(package: Path | None, keras_model: Path | None, data: Path | None, out: Path | None,
            channels: str | None, train_rows: int | None, quantile: float, timestamp_column: str,
            strict_time: bool, time_format: str | None, label_column: str, label_map: str | None,
            json_out: str | None) -> None:
    """Quantize to int8 (TFLite) and compare float vs int8 anomaly scores (tflite-micro).

    Writes PKG/model.tflite (int8 in and out, int8 kernels only), fills the manifest's
    quantization parameters and the int8 test vectors, and prints how well the int8
    scores and decisions agree with the float model on the held-out windows.

    With --keras, the model is yours: an autoencoder over one flat window of W x C
    features (time-major, each sensor standardised on the normal rows, clipped to +-8).
    Its package is made in --out from --data (normalization, int8 calibration windows,
    threshold, test windows), then quantized the same way.

    \b
    Examples:
      aiot quantize --package build/pkg
      aiot quantize --package build/pkg --json agreement.json
      aiot quantize --keras my_autoencoder.keras --data pump.csv --out build/mine
    """
    from aiot.model.quantize import quantize

    if keras_model is not None:
        if package is not None:
            raise click.UsageError("--keras makes a new package in --out: give --keras or --package, not both")
        if data is None or out is None:
            raise click.UsageError("--keras needs --data (the CSV it is calibrated on) and --out (the package folder)")
        from aiot.data import load_csv, parse_channels
        from aiot.model.keras_package import package_keras
        from aiot.progress import step

        def none(v: str) -> str | None:
            return None if v.lower() == "none" else v

        with step(f"loading {data}"):
            series = load_csv(data, channels=parse_channels(channels), timestamp_column=none(timestamp_column),
                              **csv_options(strict_time, time_format, label_column, label_map))
        from aiot.outputs import output_folder

        # the new package is made and quantized in staging, and appears whole when both are done
        with output_folder(out, "aiot quantize --keras") as run:
            with step(f"packaging {keras_model.name} with {data.name}: normalization, threshold, "
                      "calibration windows"):
                package_keras(keras_model, series, run.folder, train_rows=train_rows, quantile=quantile,
                              data_path=data)
            report = quantize(run.folder, progress=json_out != "-")
        report.package = out  # where the package is now, not where it was made
        _report(report, out, json_out)
        return
    elif package is None:
        raise click.UsageError("give the model: --package PKG (from aiot train), or --keras MODEL.keras with "
                               "--data DATA.csv --out PKG")
    elif any(v is not None for v in (data, out, channels, train_rows, time_format, label_map)) or strict_time \
            or label_column != "auto":
        raise click.UsageError("--data, --out, --channels, --train-rows and the reading options (--strict-time, "
                               "--time-format, --label-column, --label-map) go with --keras; a --package already "
                               "has its data")

    import shutil

    from aiot.model.package import require_package_folder
    from aiot.outputs import output_folder

    require_package_folder(package)  # refused before output_folder would lock (and make) it
    # quantized from a copy of the package's files, which replace the package's when done: a
    # killed run leaves the package as aiot train wrote it (its c/ and other subfolders stay)
    with output_folder(package, "aiot quantize", adds=True) as run:
        for f in sorted(package.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                shutil.copy2(f, run.folder / f.name)
        report = quantize(run.folder, progress=json_out != "-")
    report.package = package
    _report(report, package, json_out)


def _report(report, package: Path, json_out: str | None) -> None:
    write_json(json_out, report.to_json())
    if json_out != "-":
        click.echo(report.summary())
        wrote(Path(package) / "model.tflite")
        click.echo(f"next: aiot codegen --package {package}")
