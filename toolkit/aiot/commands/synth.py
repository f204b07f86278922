"""`aiot synth`: write a labelled synthetic water-pump recording (CSV) for demos and tests."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, SEED


@click.command("synth", cls=Command)
@click.option("--out", "out", type=OutPath("file"), required=True, help="CSV file to write.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed (same seed, same data).")
@click.option("--hours", type=float, default=4.0, show_default=True, help="Length at 1 Hz; first half is normal.")
def command(out: Path, seed: int, hours: float) -> None:
    """Generate a synthetic pump dataset: vibration x2, motor current, temperature, labels.

    The first half is normal operation (train on it); the second half holds an impeller
    imbalance, a bearing wear-out and a temperature sensor dropout between normal stretches.

    \b
    Example:
      aiot synth --out build/pump.csv
      aiot synth --out build/pump-8h.csv --hours 8 --seed 3
    """
    from aiot.data.synth import write_csv

    ds = write_csv(out, seed=seed, hours=hours)
    s = ds.series
    click.echo(f"wrote {out}: {s.rows} rows x {len(s.channels)} sensors ({', '.join(s.channels)}) at 1 Hz")
    click.echo(f"  training rows  0..{ds.train_rows - 1} (normal)")
    for inc in ds.incidents:
        click.echo(f"  fault          {inc.name}: rows {inc.start_row}..{inc.stop_row - 1}")
    if ds.dropout_rows[1] > ds.dropout_rows[0]:
        click.echo(f"  missing        temperature: rows {ds.dropout_rows[0]}..{ds.dropout_rows[1] - 1}")
    click.echo(f"next: aiot train --data {out} --out build/pkg")
