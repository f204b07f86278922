"""`aiot tune`: choose alert settings for a false-alarm budget on normal data only."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, FloatRange, HiddenArgument, OutPath, deprecated, renamed


@click.command("tune", cls=Command)
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A recording of normal operation (CSV: timestamp + sensor columns).")
@click.argument("normal", cls=HiddenArgument, required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", type=click.Choice(["device", "reference"]), default="device", show_default=True,
              help="device: the monitor's knobs, for `aiot evaluate --target host` and `qemu:BOARD`; "
                   "reference: the alert rule of `--target reference`.")
@click.option("--per-file", "per_file", is_flag=True,
              help="One model per pseudo-installation, trained on its own commissioning rows "
                   "(the picks `aiot evaluate --per-file` needs).")
@click.option("--far-budget", "budgets", type=FloatRange(0.0, 100.0, min_open=True, max_open=True),
              multiple=True, metavar="PCT",
              help="Pick the best F1 whose validation FAR is at most PCT % (default 10). Repeat for "
                   "several operating points.")
@click.option("--out", "save", type=OutPath(), default=None,
              help="Write each pick as DIR/<target>[-per-file]-w<window>-far<PCT>.json for "
                   "`aiot evaluate --alert-settings FILE` [default: none written; the picks are printed].")
@renamed("--save", "--out", "save", type=OutPath())
@click.option("--window", type=click.IntRange(2, 256), default=8, show_default=True, help="Samples per window.")
@click.option("--recovery/--no-recovery", default=True, show_default=True,
              help="Injected faults fade out over 30..120 rows after their label ends (a machine settling), "
                   "as real ones do, instead of vanishing at once.")
@click.option("--warmup", "warmup", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="SKAB_DIR",
              help="The pieces also drift as the experiment files under SKAB_DIR do while commissioned "
                   "(slopes from their first 400 rows only, never a test row).")
@click.option("--seeds", type=click.IntRange(min=1), default=4, show_default=True,
              help="Fault draws per pseudo-installation.")
@click.option("--level-only", "level_only", is_flag=True,
              help="Device target: only the settings that score a level shift (the monitor's level_windows), "
                   "to pick within that score when the harness prefers the other.")
def command(data: Path | None, normal: Path | None, target: str, per_file: bool, budgets: tuple[float, ...], save: Path | None, window: int,
            recovery: bool, warmup: Path | None, seeds: int, level_only: bool) -> None:
    """Choose alert settings for a false-alarm budget, without a labelled fault.

    --data is a recording of normal operation (timestamp + sensor columns). Its first half
    trains the validation fleet model; its second half is cut into pseudo-installations
    shaped like a SKAB file (400 commissioning rows, then normal, faulty and normal rows),
    each given one synthetic fault (a step, a ramp or more noise on 1..3 sensors). Every
    setting of the grid is scored on them, and the best F1 within each FAR budget is the
    pick. It prints where the pick's alerts fall: before, in and after the faults.

    \b
    Examples:
      aiot tune --data ../shared/data/skab/anomaly-free/anomaly-free.csv --far-budget 10 --far-budget 30 --out build/picks
      aiot tune --data normal.csv --target reference --window 32 --out build/picks
      aiot tune --data normal.csv --per-file --far-budget 20 --out build/picks
      aiot tune --data normal.csv --level-only --far-budget 15 --out build/picks-level
      aiot evaluate --data ../shared/data/skab --format skab --alert-settings build/picks/device-w8-far30.json --out build/skab-far30

    The device grid trains one model per noise-floor setting and takes minutes; with
    --per-file it trains one per pseudo-installation (about 25 min for SKAB's recording, on 2 cores).
    """
    if normal is not None:  # the positional spelling before --data
        if data is not None:
            raise click.UsageError("NORMAL is the old spelling of --data: give only --data")
        deprecated(click.get_current_context(), "NORMAL (a positional file)", "--data NORMAL")
        data = normal
    if data is None:
        raise click.UsageError("give the recording of normal operation: --data NORMAL.csv")
    normal = data
    if level_only and target != "device":
        raise click.UsageError("--level-only picks among the monitor's settings: it goes with --target device")
    from aiot.evaluate.pipeline import quiet_worker
    from aiot.evaluate.tuning import tune

    quiet_worker()  # no TensorFlow start-up chatter between the progress lines
    rc = tune(str(normal), "monitor" if target == "device" else "reference", window,
              tuple(p / 100.0 for p in budgets) or (0.10,), per_file=per_file, recovery=recovery,
              warmup=None if warmup is None else str(warmup), seeds=seeds,
              save=None if save is None else str(save), level_only=level_only)
    if rc:
        raise SystemExit(rc)
