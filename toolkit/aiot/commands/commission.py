"""`aiot commission`: one installation's own model, and the firmware that monitors it."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, wrote
from aiot.commands._options import csv_options, reading_options


@click.command("commission", cls=Command)
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="The installation's commissioning recording: a CSV of normal running (timestamp, one column "
                   "per sensor), the rows its model and baseline are learnt from.")
@click.option("--board", "-b", required=True, help="Board to build the firmware for (see `aiot boards`).")
@click.option("--out", "-o", "out", required=True, type=OutPath(),
              help="Output folder: firmware.elf / .bin, the model's C, commission.json.")
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Commission on the first N rows [default: the whole recording].")
@click.option("--window", type=click.IntRange(2, 32), default=None,
              help="Samples per window [default: the settings file's, else 8, the validated one].")
@click.option("--alert-settings", "alert_settings", type=click.Path(path_type=Path), default=None,
              help="Device alert settings picked for one model per installation: cross-validated on this "
                   "installation's labelled history (aiot tune --labels HISTORY.csv --folds incident --out DIR), "
                   "or on the harness (aiot tune --data NORMAL.csv --per-file --out DIR) [default: the shipped "
                   "defaults].")
@click.option("--fleet-data", "fleet_data", type=click.Path(path_type=Path), default=None, metavar="NORMAL.csv",
              help="Run the fleet model instead of one of the installation's own: built from this recording of the "
                   "fleet's normal running (the installation's sensor columns) as `aiot evaluate --fleet` builds it "
                   "(the model the shipped defaults and fleet picks of `aiot tune` were cross-validated with; "
                   "fleet_pca_variance in the settings: the linear model of the window means). --data then gives "
                   "the sensors, sample period and commissioning rows.")
@click.option("--timestamp-column", default=None,
              help="The time column [default: the one named timestamp, datetime, time or date].")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Training passes of each model (part of its cache key).")
@click.option("--fleet", "fleet", is_flag=True,
              help="--data is a folder: one image per CSV (installation) into OUT/<name>/, each registered in the "
                   "registry OUT (OUT/registry.json: aiot models list --registry OUT); a failed installation is "
                   "listed with why and the others finish.")
@click.option("--scheduler", default=None,
              help="With --fleet: one task per installation on a Dask cluster (tcp://HOST:8786, or local).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --fleet: installations in parallel (local processes, or local Dask workers).")
@reading_options
def command(data: Path, board: str, out: Path, rows: int | None, window: int | None, alert_settings: Path | None,
            timestamp_column: str | None, epochs: int, fleet_data: Path | None = None, fleet: bool = False,
            scheduler: str | None = None, jobs: int = 1, strict_time: bool = False, time_format: str | None = None,
            label_column: str = "auto", label_map: str | None = None) -> None:
    """Train an installation's own model and build the firmware that monitors it.

    The model learns this installation alone, from its commissioning rows, in the
    noise units the on-device monitor uses (what `aiot evaluate --per-file` measures on
    SKAB). The firmware gets the model and the installation's whole monitor
    configuration (sensors, sample period, alert settings, per-sensor noise floors): it
    boots commissioning on the first samples it is sent, no host set-up needed.

    With --fleet-data NORMAL.csv the image runs the fleet model built from the fleet's
    normal recording instead, the one `aiot evaluate --fleet` scores (the shipped
    defaults and fleet picks of `aiot tune` were cross-validated with it).

    \b
    Examples:
      aiot commission --data pump7-first-hour.csv --board nucleo-f446re --out build/pump7
      aiot flash --board nucleo-f446re --elf build/pump7/firmware.elf
      aiot commission --data pump7.csv --rows 400 --board mps2-an386 --out build/pump7-qemu \\
          --alert-settings build/picks/device-per-file-w8-far30.json
      aiot commission --data unit4-first-5h.csv --fleet-data plant-normal.csv \\
          --alert-settings build/cv/device-w8-cv-far5.json --board nucleo-f767zi --out build/unit4
      aiot commission --data pump7.csv --time-format '%d/%m/%Y %H:%M' --label-column status --board mps2-an386 \\
          --out build/pump7-qemu
    """
    reading = csv_options(strict_time, time_format, label_column, label_map)
    if fleet or scheduler:
        from aiot.fleet.commissioning import fleet_command

        return fleet_command(data, board, out, scheduler, jobs, rows=rows, window=window,
                             alert_settings=alert_settings, epochs=epochs, timestamp_column=timestamp_column,
                             csv_options=reading, fleet_data=fleet_data)
    from aiot.commission import commission

    doc = commission(data, board, out, rows=rows, window=window, alert_settings=alert_settings, epochs=epochs,
                     timestamp_column=timestamp_column, csv_options=reading, fleet_data=fleet_data)
    size = doc["size"]
    cfg = doc["monitor_config"]
    trained = (f"trained on {doc['commissioning_rows']} rows" if doc["model"]["kind"] == "per-file" else
               f"the fleet model of {Path(doc['model']['trained_on']).name}; commissions on its first "
               f"{doc['commissioning_rows']} rows")
    click.echo(
        f"model     {doc['model']['tflite_bytes']:,}-byte int8 .tflite ({doc['model']['sha256'][:12]}), "
        f"{len(doc['channels'])} sensors x window {doc['window']}, {trained}\n"
        f"firmware  {doc['elf']}  {size['flash_total']:,} B flash / {size['ram_total']:,} B RAM ({doc['board']})\n"
        f"settings  {doc['alert_settings']['source']}: alert_margin {cfg['alert_margin']:g}, "
        f"{cfg['persist_k']} of {cfg['persist_n']} windows, recover_ratio {cfg['recover_ratio']:g}; "
        f"commissions on its first {cfg['commission_samples']} samples + {cfg['calibration_windows']} windows"
    )
    if doc["model"]["kind"] == "per-file" and alert_settings is None:
        click.echo("note      one model of the installation's own rows runs the defaults cross-validated with such "
                   "models (held out: SKAB F1 0.462 at FAR 9.1 %, TEP detection 0.489 at 2.3 %; docs/evaluation.md); "
                   "the fleet model does better (SKAB 0.608 at 9.4 %, TEP 0.675 at 0.0 %): --fleet-data NORMAL.csv "
                   "(a recording of the fleet's normal running) builds it")
    wrote(out, "firmware.elf, firmware.bin, c/, commission.json")
    if doc["emulated"]:
        click.echo(f"next      {doc['board']} is emulated: aiot gateway --qemu {doc['board']} --elf {doc['elf']} "
                   f"--replay {data} --mqtt mqtt://127.0.0.1:1883 boots the image in QEMU, PUSHes the recording to it "
                   "and publishes its events (from Python: aiot.device.hil.open_device)")
    else:
        click.echo(f"next      aiot flash --board {doc['board']} --elf {doc['elf']}   "
                   f"(then: aiot monitor --board {doc['board']})")
