"""`aiot train`: train the autoencoder on a CSV and write a model package."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, SEED, wrote
from aiot.commands._options import csv_options, reading_options


#: widest layer --hidden accepts: 1024 x 1024 int8 weights are already 1 MB of flash
MAX_UNITS = 1024


@click.command("train", cls=Command)
@click.option("--data", "data", type=click.Path(path_type=Path), required=True,
              help="CSV with timestamp, sensors[, label].")
@click.option("--out", "out", type=OutPath(), required=True,
              help="Package folder to write.")
@click.option("--window", type=int, default=8, show_default=True, help="Samples per window.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Training passes over the training windows.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the weights' start and the shuffling: the same seed and data give the same model.")
@click.option("--train-rows", type=int, default=None, help="Rows used for training [default: first half].")
@click.option("--channels", default=None, help="Comma-separated sensor columns [default: all but time/labels].")
@click.option("--timestamp-column", default="auto", show_default=True, help="Time column, or 'none' (row = 1 s).")
@click.option("--quantile", type=float, default=0.995, show_default=True,
              help="Threshold quantile of calibration scores.")
@click.option("--hidden", default="16,8", show_default=True, help="Encoder layer sizes; the decoder mirrors them.")
@click.option("--name", default=None, help="Model name [default: data file name].")
@reading_options
def command(data: Path, out: Path, window: int, epochs: int, seed: int, train_rows: int | None,
            channels: str | None, timestamp_column: str, quantile: float, hidden: str,
            name: str | None, strict_time: bool, time_format: str | None, label_column: str,
            label_map: str | None) -> None:
    """Train a dense autoencoder on the normal rows of the training part of DATA.

    Windows of W samples x C channels, each channel normalized with statistics from the
    training rows; rows labelled as faults and windows with missing samples are left out
    of training (and counted). Writes a model package: manifest.json, model.keras and
    vectors.npz (held-out test windows). Next step: aiot quantize --package OUT.

    \b
    Example:
      aiot train --data build/pump.csv --out build/pkg
      aiot train --data site.csv --out build/site --train-rows 20000 --window 16 --epochs 50
      aiot train --data pump.csv --label-column machine_status --label-map NORMAL=0,BROKEN=1 \\
          --time-format '%d/%m/%Y %H:%M' --out build/pump
    """
    from aiot.data import load_csv, parse_channels
    from aiot.progress import step
    from aiot.model.train import train

    def none(v: str) -> str | None:
        return None if v.lower() == "none" else v

    chans = parse_channels(channels)
    try:
        sizes = tuple(int(h) for h in hidden.split(",") if h.strip())
    except ValueError:
        raise click.BadParameter(f"'{hidden}' is not a comma-separated list of integers", param_hint="--hidden")
    if any(not 1 <= h <= MAX_UNITS for h in sizes):
        raise click.BadParameter(f"'{hidden}': each layer takes 1..{MAX_UNITS} units (a microcontroller model "
                                 "is tens of units wide; the default is 16,8)", param_hint="--hidden")
    with step(f"loading {data}"):
        series = load_csv(data, channels=chans, timestamp_column=none(timestamp_column), min_rows=window,
                          **csv_options(strict_time, time_format, label_column, label_map))
    click.echo(
        f"data: {series.rows} rows x {len(series.channels)} channels ({', '.join(series.channels)}), "
        f"period {series.sample_period_s:g}s, {series.missing_count()} missing sample(s), "
        f"{series.gap_count()} time gap(s), {series.slip_count()} clock slip(s), "
        f"{'labelled' if series.labels is not None else 'unlabelled'}"
    )
    from aiot.outputs import output_folder

    # the package appears whole when training is done; a killed run leaves the previous one
    with output_folder(out, "aiot train") as run, step(f"training ({epochs} epochs)"):
        result = train(series, run.folder, window=window, epochs=epochs, seed=seed, train_rows=train_rows,
                       quantile=quantile, hidden=sizes, name=name or data.stem)
    click.echo(result.summary())
    wrote(out, "manifest.json, model.keras, vectors.npz")
    click.echo(f"next: aiot quantize --package {out}")
