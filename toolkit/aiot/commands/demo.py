"""`aiot demo`: the end-to-end pipeline on synthetic data in QEMU."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, SEED


@click.command("demo", cls=Command)
@click.option("--board", "-b", default="mps2-an386", show_default=True, help="Emulated board to run on (see `aiot boards`).")
@click.option("--out", "-o", type=OutPath(), help="Working folder [default: build/demo under the current folder].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for data and training.")
@click.option("--hours", default=4.0, show_default=True, help="Hours of synthetic 1 Hz data.")
@click.option("--epochs", default=30, show_default=True, help="Training epochs.")
def command(board: str, out: Path | None, seed: int, hours: float, epochs: int) -> None:
    """Run the whole pipeline with no data needed: synthetic pump sensors -> trained
    autoencoder -> int8 -> C -> firmware -> QEMU, every output byte checked against
    TFLite Micro. Exits non-zero on any mismatch.

    \b
    Example:
      aiot demo                      # mps2-an386 (Cortex-M4F)
      aiot demo --board mps2-an385   # Cortex-M3, no FPU
    """
    from aiot.demo import run_demo

    run_demo(board, out, seed=seed, hours=hours, epochs=epochs, echo=click.echo)
