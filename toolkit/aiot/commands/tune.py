"""`aiot tune`: choose alert settings for a false-alarm budget: by cross-validation on labelled
recordings (--labels DATA), or on normal data only (the validation harness, --data)."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, FloatRange, HiddenArgument, OutPath, deprecated, renamed
from aiot.commands._options import Duration, csv_options, drift_rate_knobs, drift_rate_option, reading_options


class _Folds(click.ParamType):
    """--folds: folder, file, incident, or a number of groups (2 or more)."""

    name = "folds"

    def convert(self, value, param, ctx):
        v = str(value).strip().lower()
        if v in ("folder", "file", "incident") or (v.isdigit() and int(v) >= 2):
            return v
        self.fail(f"'{value}' is not folder, file, incident or a number of groups of 2 or more (e.g. --folds 3)",
                  param, ctx)


FOLDS = _Folds()


@click.command("tune", cls=Command)
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A recording of normal operation (CSV: timestamp + sensor columns).")
@click.argument("normal", cls=HiddenArgument, required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--labels", "labelled", type=click.Path(exists=True, path_type=Path), multiple=True, metavar="DATA",
              help="Labelled recordings (a SKAB or TEP folder, or generic labelled CSVs with --format): choose by "
                   "cross-validation on them instead of the harness; no file is scored with settings chosen on it. "
                   "Repeat (with one --format each) to choose across several data sets at once.")
@click.option("--format", "fmts", type=click.Choice(["skab", "tep", "generic"]), multiple=True,
              help="With --labels: how each DATA is laid out (as aiot evaluate --format), in the same order "
                   "[default: skab].")
@click.option("--folds", "folds", type=FOLDS, multiple=True, metavar="folder|file|incident|N",
              help="With --labels: leave one folder out (SKAB: valve1, valve2, other), one file out, one incident "
                   "out (each file cut halfway between its labelled incidents: one long history is enough), or one "
                   "of N groups of files dealt in turn in name order (TEP: by fault number, k mod N); one per "
                   "--labels or one for all [default: folder; TEP: 3].")
@click.option("--fleet", "fleets", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              metavar="NORMAL.csv",
              help="With --labels: the fleet's normal recording (the files' sensor columns); the fleet model is "
                   "built from it, as `aiot evaluate --fleet` builds it, and the picks are for that model "
                   "(`aiot commission --fleet-data`). One per --labels, in the same order [default: the data set's "
                   "own (SKAB anomaly-free, TEP normal.csv); generic data without it: one model per file].")
@click.option("--early-warning", "early_warning", type=Duration(), default=0.0, metavar="DURATION",
              help="With --labels that mark the failure itself (a BROKEN row, the end of a run to failure): the rows "
                   "up to DURATION before each labelled onset are neither normal nor fault, so a setting that warns "
                   "early is not charged false alarms for it (as aiot evaluate --early-warning). 90s, 30min, 12h, "
                   "2d. Default 0.")
@reading_options
@drift_rate_option
@click.option("--tracking", is_flag=True,
              help="Reference target: the rule with level tracking (its alerts feed back into the model input).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes scoring the device grid.")
@click.option("--target", type=click.Choice(["device", "reference"]), default="device", show_default=True,
              help="device: the monitor's knobs, for `aiot evaluate --target host` and `qemu:BOARD`; "
                   "reference: the alert rule of `--target reference`.")
@click.option("--per-file", "per_file", is_flag=True,
              help="One model per (pseudo-)installation, trained on its own commissioning rows, as `aiot "
                   "commission` makes it (the picks `aiot evaluate --per-file` needs). With --labels: so even "
                   "when a normal recording is there; labelled data without one always does.")
@click.option("--far-budget", "budgets", type=FloatRange(0.0, 100.0, min_open=True, max_open=True),
              multiple=True, metavar="PCT",
              help="Pick the best F1 whose validation FAR is at most PCT % (default 10). Repeat for "
                   "several operating points. With --labels: each data set's own budget, one per --labels "
                   "or one for all [default: 10; TEP: 5].")
@click.option("--out", "save", type=OutPath(), default=None,
              help="Write each pick as DIR/<target>[-per-file]-w<window>-far<PCT>.json for "
                   "`aiot evaluate --alert-settings FILE` [default: none written; the picks are printed].")
@renamed("--save", "--out", "save", type=OutPath())
@click.option("--window", "windows", type=click.IntRange(2, 256), multiple=True, default=(8,), show_default=True,
              help="Samples per window. With --labels, repeat to let the cross-validation choose the window too.")
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
@click.option("--scenario-gate/--no-scenario-gate", "scenario_gate", default=True, show_default=True,
              help="With --labels on the device: pick only settings under which the seeded scenario suite still "
                   "passes (every fault, no false alert, every gap NO_DATA; `aiot scenarios evaluate --strict`), "
                   "its verdict on the settings gated out in crossval.json.")
def command(data: Path | None, normal: Path | None, labelled: tuple[Path, ...], fmts: tuple[str, ...],
            folds: tuple[str, ...], fleets: tuple[Path, ...], strict_time: bool, time_format: str | None,
            label_column: str, label_map: str | None, tracking: bool, jobs: int, target: str, per_file: bool,
            budgets: tuple[float, ...], save: Path | None, windows: tuple[int, ...], recovery: bool,
            warmup: Path | None, seeds: int, level_only: bool, scenario_gate: bool = True,
            early_warning: float = 0.0, drift_rates: tuple[str, ...] = ()) -> None:
    """Choose alert settings for a false-alarm budget.

    With --labels DATA (labelled recordings; trust them over the harness): every setting of
    the grid runs on every file, the files are split into folds (--folds), and each fold is
    scored with the setting that was best on the other folds. Several --labels (each with
    its --format) are one cross-validation: each data set keeps its own figure (pooled F1;
    TEP: mean detection rate over its faults) and its own --far-budget, and the pick is the
    best mean of the figures among the settings within every budget. It prints every fold
    and the held-out figure (each file once, scored blind), and with --out writes
    DIR/crossval.json and the settings chosen on all files. On the device, a fold may only
    pick settings under which the seeded scenario suite still passes (--no-scenario-gate:
    off); the ones it gated out, and why, are in the fold table and crossval.json.

    Without labels, --data is a recording of normal operation (timestamp + sensor columns). Its first half
    trains the validation fleet model; its second half is cut into pseudo-installations
    shaped like a SKAB file (400 commissioning rows, then normal, faulty and normal rows),
    each given one synthetic fault (a step, a ramp or more noise on 1..3 sensors). Every
    setting of the grid is scored on them, and the best F1 within each FAR budget is the
    pick. It prints where the pick's alerts fall: before, in and after the faults.

    \b
    Examples:
      aiot tune --labels ../shared/data/skab --format skab --out build/cv-skab
      aiot tune --labels ../shared/data/tep --format tep --folds file --target reference --window 4 --window 8 \\
          --window 16 --window 32 --far-budget 5 --out build/cv-tep
      aiot tune --labels ../shared/data/skab --format skab --far-budget 10 --labels ../shared/data/tep --format tep \\
          --far-budget 5 --out build/cv-both
      aiot tune --data ../shared/data/skab/anomaly-free/anomaly-free.csv --far-budget 10 --far-budget 30 --out build/picks
      aiot tune --data normal.csv --target reference --window 32 --out build/picks
      aiot tune --data normal.csv --per-file --far-budget 20 --out build/picks
      aiot tune --data normal.csv --level-only --far-budget 15 --out build/picks-level
      aiot tune --labels site/ --format generic --folds file --drift-rate bearing_temp=0.05 --out build/cv-site
      aiot tune --labels pump7-history.csv --format generic --folds incident --out build/cv-pump7
      aiot tune --labels site/ --format generic --folds file --fleet fleet-normal.csv --out build/cv-site
      aiot tune --labels runs-to-failure/ --format generic --folds file --early-warning 24h --out build/cv-rtf
      aiot evaluate --data ../shared/data/skab --format skab --alert-settings build/picks/device-w8-far30.json --out build/skab-far30

    The device grid trains one model per noise-floor setting and takes minutes; with
    --per-file it trains one per pseudo-installation (about 25 min for SKAB's recording, on 2 cores).
    """
    if normal is not None:  # the positional spelling before --data
        if data is not None:
            raise click.UsageError("NORMAL is the old spelling of --data: give only --data")
        deprecated(click.get_current_context(), "NORMAL (a positional file)", "--data NORMAL")
        data = normal
    if level_only and target != "device":
        raise click.UsageError("--level-only picks among the monitor's settings: it goes with --target device")
    if tracking and target != "reference":
        raise click.UsageError("--tracking is a reference rule: it goes with --target reference")
    if per_file and tracking:
        raise click.UsageError("--per-file goes with the reference rule's grid or --target device, not --tracking")
    fixed = drift_rate_knobs(drift_rates)  # every setting of the grid carries them, and so does the pick
    if fixed and target != "device":
        raise click.UsageError("--drift-rate bounds the monitor's drift compensation: it goes with --target device")
    from aiot.evaluate.pipeline import quiet_worker

    if fleets and not labelled:
        raise click.UsageError("--fleet goes with --labels DATA (the fleet model of the cross-validation); the "
                               "harness (--data NORMAL.csv) trains its fleet model on that recording's first half")
    if early_warning and not labelled:
        raise click.UsageError("--early-warning says how the labels of --labels DATA are counted; the harness "
                               "(--data NORMAL.csv) makes its own faults, whose onsets are exact")
    if not scenario_gate and not labelled:
        raise click.UsageError("--no-scenario-gate turns off the scenario gate of the cross-validation: it goes with "
                               "--labels DATA")
    if labelled:
        if data is not None:
            raise click.UsageError("give --data NORMAL.csv (the harness) or --labels DATA (cross-validation), not both")
        if tracking or recovery is False or warmup is not None:
            raise click.UsageError("--tracking, --no-recovery and --warmup belong to the harness (--data NORMAL.csv), "
                                   "not to --labels")
        for what, given in (("--folds", folds), ("--far-budget", budgets)):
            if len(given) > 1 and len(given) != len(labelled):
                raise click.UsageError(f"{len(given)} {what} for {len(labelled)} --labels: give one per --labels "
                                       "(in the same order), one for all, or none")
        if fleets and len(fleets) != len(labelled):
            raise click.UsageError(f"{len(fleets)} --fleet for {len(labelled)} --labels: give one per --labels, in "
                                   "the same order (each data set's own sensors), or none")
        if fleets and per_file:
            raise click.UsageError("--fleet and --per-file both given: one fleet model built from the recording, or "
                                   "one model per file: pick one")
        from aiot.evaluate import crossval

        quiet_worker()
        fmts = fmts or ("skab",) * len(labelled)
        folds = folds * len(labelled) if len(folds) == 1 else (folds or (None,) * len(labelled))
        budgets = budgets * len(labelled) if len(budgets) == 1 else (budgets or (None,) * len(labelled))
        with _holding(save, f"aiot tune --labels {' '.join(map(str, labelled))}"):
            crossval.run(list(labelled), list(fmts), target, windows,
                         [None if b is None else b / 100.0 for b in budgets], list(folds),
                         save, jobs=jobs, level_only=level_only,
                         csv_options=csv_options(strict_time, time_format, label_column, label_map), fixed_knobs=fixed,
                         scenario_gate=scenario_gate, per_file=per_file, fleets=list(fleets) or None,
                         early_warning_s=early_warning)
        return
    if data is None:
        raise click.UsageError("give the recording of normal operation: --data NORMAL.csv (the validation harness), "
                               "or labelled recordings: --labels DATA (cross-validation)")
    normal = data
    if len(windows) > 1:
        raise click.UsageError("one --window for the harness (--data NORMAL.csv); several go with --labels DATA")
    window = windows[0]
    from aiot.evaluate.tuning import tune

    quiet_worker()  # no TensorFlow start-up chatter between the progress lines
    kind = "monitor" if target == "device" else ("tracking" if tracking else "reference")
    with _holding(save, f"aiot tune --data {normal}"):
        rc = tune(str(normal), kind, window,
                  tuple(p / 100.0 for p in budgets) or (0.10,), per_file=per_file, recovery=recovery,
                  warmup=None if warmup is None else str(warmup), seeds=seeds,
                  save=None if save is None else str(save), level_only=level_only, fixed_knobs=fixed)
    if rc:
        raise SystemExit(rc)


def _holding(out: Path | None, what: str):
    """The --out folder's lock (aiot.outputs) for the whole run, taken before any training: a
    second run into it is refused naming this one. The picks are written straight into it."""
    from contextlib import nullcontext

    from aiot.outputs import OutputRun

    return nullcontext() if out is None else OutputRun(out, what)
