"""`aiot evaluate`: incident-by-incident evaluation of the device pipeline on recordings."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, FloatRange, OutPath, wrote
from aiot.commands._options import (  # noqa: F401  (tune imported them from here)
    Duration, csv_options, drift_rate_knobs, drift_rate_option, reading_options)


@click.command("evaluate", cls=Command)
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="One CSV or a folder of them (one file = one installation).")
@click.option("--format", "fmt", type=click.Choice(["skab", "nab", "tep", "generic"]), default="generic",
              show_default=True,
              help="skab: SKAB's ';' files; nab: NAB's data folder + --labels; tep: the Tennessee Eastman folder "
                   "(normal.csv + test/dNN.csv); generic: timestamp, sensors, optional label.")
@click.option("--labels", "labels", type=click.Path(path_type=Path), default=None,
              help="NAB-style windows JSON {\"folder/file.csv\": [[start, end], ...]} (nab: required).")
@click.option("--train-rows", type=click.IntRange(min=1), default=None,
              help="Commission each file on its first N rows (SKAB's protocol: 400).")
@click.option("--train-fraction", type=FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Commission on the first fraction of each file [default: generic 0.15; nab: NAB's "
                   "probation, 0.15 of the file but at most 750 rows].")
@click.option("--fleet", "fleet", type=click.Path(path_type=Path), default=None,
              help="Normal-operation CSV for the fleet model (skab: anomaly-free/anomaly-free.csv by default).")
@click.option("--target", default="auto", show_default=True,
              help="host (monitor C built for the host), qemu:BOARD, or reference (int8 via tflite-micro); "
                   "auto = host when available, else reference (with --package: reference).")
@click.option("--out", "out", required=True, type=OutPath(), help="Output folder.")
@click.option("--window", type=click.IntRange(2, 256), default=None,
              help="Window length in samples (default: the validated one per target: reference 32, host/qemu 8).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Training passes of each model (part of its cache key).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Files evaluated in parallel.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N files (quick look).")
@click.option("--alert-settings", "alert_settings", type=click.Path(path_type=Path), default=None,
              help="Run at another operating point: an alert-settings JSON picked on the validation harness "
                   "(aiot tune --data NORMAL.csv --far-budget PCT --out DIR). Default: the validated "
                   "picks (FAR budget 10 %).")
@click.option("--package", "package", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Evaluate this model instead of training one, on --target reference: a package made by "
                   "aiot train + aiot quantize. It runs as the fleet model does, at its own window; the recordings "
                   "must have its sensors, in its order.")
@click.option("--per-file", "per_file", is_flag=True,
              help="One model per file, trained on its commissioning rows (SKAB's own protocol), instead of "
                   "the fleet model. On host / qemu:BOARD: one noise-unit model (and on QEMU one firmware "
                   "image) per installation. Data without a fleet recording always runs this way.")
@click.option("--skip-bad-files", "skip_bad_files", is_flag=True,
              help="Leave out a file that cannot be read, has other sensor columns than most files or cannot be "
                   "commissioned (too short, odd sample period) instead of stopping; each is named with why, on "
                   "the terminal and in report.json (aggregate.skipped_files). With --limit N, the bad ones "
                   "among the first N files. Default: the first stops the run.")
@click.option("--scheduler", default=None,
              help="Run one task per file on a Dask cluster: tcp://HOST:8786, or local (a LocalCluster of --jobs "
                   "workers). A file whose task fails is reported and the others finish. Needs the fleet extra.")
@click.option("--early-warning", "early_warning", type=Duration(), default=0.0, metavar="DURATION",
              help="Labels that mark the failure itself (a BROKEN row, the end of a run to failure): an alert that "
                   "starts up to DURATION before a labelled onset detects it, as an early warning, instead of "
                   "counting as a false alert; the rows of that lead are neither normal nor fault in F1, FAR and "
                   "MAR (counted apart in report.json: aggregate.early_warning_rows). 90s, 30min, 12h, 2d. "
                   "Default 0: labels mark the onset (only the 2-row tolerance).")
@reading_options
@drift_rate_option
def command(data: Path, fmt: str, labels: Path | None, train_rows: int | None, train_fraction: float | None,
            fleet: Path | None, target: str, out: Path, window: int | None, epochs: int, jobs: int, limit: int | None,
            alert_settings: Path | None, package: Path | None, per_file: bool, skip_bad_files: bool,
            scheduler: str | None, strict_time: bool, time_format: str | None, label_column: str,
            label_map: str | None, early_warning: float = 0.0, drift_rates: tuple[str, ...] = ()) -> None:
    """Did it flag each labelled incident, and did it keep quiet otherwise?

    Each file is one installation: commissioned on its first rows, then streamed through
    the device pipeline row by row. Writes OUT/predictions.csv, OUT/report.json and
    OUT/report.html.

    \b
    Examples:
      aiot evaluate --data ../shared/data/skab --format skab --out build/skab
      aiot evaluate --data ../shared/data/skab --format skab --target qemu:mps2-an386 --out build/skab-qemu
      aiot evaluate --data NAB/data --format nab --labels NAB/labels/combined_windows.json --out build/nab
      aiot evaluate --data ../shared/data/skab --format skab --target reference \\
          --alert-settings build/picks/reference-w32-far20.json --out build/skab-far20
      aiot evaluate --data ../shared/data/skab --format skab --target host --per-file --out build/skab-own
      aiot evaluate --data pump7-history.csv --package build/pkg --target reference --out build/pkg-on-pump7
      aiot evaluate --data ../shared/data/tep --format tep --out build/tep
      aiot evaluate --data pump.csv --label-column machine_status --label-map NORMAL=0,BROKEN=1,RECOVERING=1 \\
          --time-format '%d/%m/%Y %H:%M' --train-fraction 0.2 --out build/pump
      aiot evaluate --data site/ --drift-rate bearing_temp=0.05 --drift-rate '*=0.25' --out build/site
      aiot evaluate --data runs-to-failure/ --early-warning 24h --out build/rtf
    """
    from aiot.evaluate.events import summary_line
    from aiot.evaluate.report import phases_text
    from aiot.evaluate.run import evaluate

    summary = evaluate(
        data=data, fmt=fmt, labels=labels, train_rows=train_rows, train_fraction=train_fraction,
        fleet=fleet, target=target, out=out, window=window, epochs=epochs, jobs=jobs, limit=limit,
        alert_settings=alert_settings, package=package, per_file=per_file, skip_bad_files=skip_bad_files,
        scheduler=scheduler,
        csv_options=csv_options(strict_time, time_format, label_column, label_map),
        knob_overrides=drift_rate_knobs(drift_rates), early_warning_s=early_warning,
    )
    phases = phases_text(summary.get("false_alarms_by_phase", {}))
    click.echo(summary_text(summary, phases))
    tep = summary.get("tep")
    if tep:
        click.echo(tep_text(tep))
    said = summary_line(summary.get("device_events"))
    if said:  # a sensor to service, a clock to fix: said, not buried
        click.echo(said)
    click.echo(f"report: {out / 'report.html'}")
    wrote(out, "report.json, report.html")


def summary_text(summary: dict, phases: str = "") -> str:
    """The lines printed after a run: episode counts (incidents, alerts) and row rates (F1,
    FAR, MAR), each named as what it counts so that they never seem to disagree."""
    from aiot.evaluate.incidents import DEFAULT_TOLERANCE_ROWS
    from aiot.evaluate.report import duration, early_warning_text, ending_text

    t = summary["test_rows"]

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %"

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    alerts, false = summary["alerts"], summary["false_alerts"]
    ending = ending_text(summary)  # runs to failure: still alerting at their end?
    early = early_warning_text(summary)
    lead_s = summary.get("early_warning_s") or 0.0
    within = (f"within {DEFAULT_TOLERANCE_ROWS} rows or up to {duration(lead_s)} before an incident's onset "
              "(an early warning)" if lead_s else f"within {DEFAULT_TOLERANCE_ROWS} rows before an incident's onset")
    return (
        f"files {summary['files']}, incidents detected {summary['incidents_detected']}/{summary['incidents']}, "
        f"alerts {alerts}: {alerts - false} true, {false} false (true = started {within} or inside it)\n"
        f"F1 {num(t['f1'], '.3f')}  FAR {pct(t['far'])} ({t['fp']:,} of {t['fp'] + t['tn']:,} normal rows alerting)  "
        f"MAR {pct(t['mar'])}  NAB {num(summary['nab_standard'], '.1f')}  (all test rows, pooled)"
        + (f"\nnormal rows alerting: {phases}" if phases else "")
        + (f"\nearly warning: {early}" if early else "")
        + (f"\n{ending}" if ending else "")
    )



def tep_text(tep: dict) -> str:
    """The Tennessee Eastman figures (:func:`aiot.data.tep.benchmark`) in one line."""
    def rate(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    far = "n/a" if tep["false_alarm_rate"] is None else f"{100 * tep['false_alarm_rate']:.2f} %"
    return (f"TEP: mean detection rate {rate(tep['detection_rate'])} over {tep['faults']} faults "
            f"({rate(tep['detection_rate_without_3_9_15'])} without faults 3, 9, 15), false alarms {far} of normal rows")
