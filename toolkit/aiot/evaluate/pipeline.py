"""Run an evaluation: model (fleet, cached by content), per-file commissioning, streaming
through a device, then scoring file by file and pooled. Files run in parallel processes."""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from aiot.data import Series
from aiot.errors import ToolkitError
from aiot.paths import cache_dir, private_build_dir, publish_cache_dir
from aiot.evaluate import events as device_events
from aiot.evaluate import incidents as inc
from aiot.evaluate.device import AlertRule, Outputs, make_device
from aiot.installation import TRAINING_MODULES, hash_training_code  # noqa: F401  (the model caches' key)
from aiot.evaluate.metrics import (PHASES, Confusion, NabFile, PhaseCounts, confusion, nab_file_score, nab_normalized,
                      nab_probation_rows, normal_phases, runs)
from aiot.data.readers import Dataset, Recording, skip_reason

#: Each format's own commissioning protocol: SKAB trains on the first 400 rows, NAB on its
#: probationary period (the first 15 %, at most 750 rows: metrics.nab_probation_rows), so
#: every window NAB scores is scored; generic files on their first 15 %.
PROTOCOL = {"skab": {"train_rows": 400}, "nab": {"probation": True}, "generic": {"train_fraction": 0.15},
            "tep": {"train_rows": 100}}  # TEP: rows 0..99 of each file (data/tep.py)


@dataclass
class Settings:
    """Everything that decides the result; written whole into report.json."""

    format: str
    target: str = "reference"
    train_rows: int | None = None
    train_fraction: float | None = None
    window: int = 8
    hidden: tuple[int, ...] = (16, 8)
    epochs: int = 30
    seed: int = 0
    jobs: int = 2
    rule: AlertRule = field(default_factory=AlertRule)  #: the reference target's alert rule
    knobs: dict = field(default_factory=dict)  #: monitor config overrides (host / qemu targets)
    firmware: str | None = None  #: qemu targets: the ELF built once for the whole run
    #: an alert up to this many seconds before a labelled onset detects it (an early warning);
    #: those rows are neither normal nor fault in the row metrics (incidents.lead_rows)
    early_warning_s: float = 0.0

    def commissioning_rows(self, rows: int) -> int:
        if self.train_rows is not None:
            return int(self.train_rows)
        if self.train_fraction is None and PROTOCOL[self.format].get("probation"):
            return nab_probation_rows(rows)
        frac = self.train_fraction if self.train_fraction is not None else PROTOCOL[self.format].get("train_fraction")
        if frac is None:
            return int(PROTOCOL[self.format]["train_rows"])
        return int(math.floor(frac * rows))

    def to_json(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class FileResult:
    recording: Recording
    start: int  #: first streamed row (= commissioning rows)
    outputs: Outputs
    commissioning: dict
    confusion: Confusion
    confusion_all_rows: Confusion  #: commissioning rows counted as silent (SKAB notebooks' convention)
    nab: NabFile | None  #: detections = alert onsets (the row where the device raises an alert)
    nab_rows: NabFile | None  #: detections = every alert row
    incidents: list[inc.Incident]
    alerts: list[inc.Alert]
    #: test rows' false alarms by where they fall (before / between / after the faults)
    phases: dict[str, PhaseCounts] = field(default_factory=dict)
    #: test rows within the early-warning lead before an onset, and how many alerted
    early_warning: PhaseCounts = field(default_factory=PhaseCounts)
    early_warning_s: float = 0.0  #: the lead they were counted with (Settings.early_warning_s)

    @property
    def alert_column(self) -> np.ndarray:
        """alert per row over the whole file (0 while commissioning)."""
        a = np.zeros(self.recording.series.rows, np.int8)
        a[self.start :] = self.outputs.alert
        return a


# -- model --------------------------------------------------------------------------


def _model_key(series: Series, settings: Settings, rows: int) -> str:
    h = hashlib.sha256(series.digest(rows).encode())
    h.update(json.dumps([series.channels, settings.window, list(settings.hidden), settings.epochs, settings.seed]).encode())
    hash_training_code(h)
    return h.hexdigest()[:16]


def _train_package(series: Series, rows: int, settings: Settings, out: Path, name: str) -> Path:
    """Train + int8-quantize on ``series[:rows]``; ``out`` only ever holds a complete package."""
    if (out / "model.tflite").is_file() and (out / "manifest.json").is_file():
        return out
    from aiot.model.quantize import quantize
    from aiot.model.train import train

    tmp = private_build_dir(out)
    train(series, tmp, window=settings.window, epochs=settings.epochs, seed=settings.seed,
          train_rows=rows, hidden=settings.hidden, name=name, progress=False)
    quantize(tmp, progress=False)
    return publish_cache_dir(tmp, out, "model.tflite")


def fleet_package(fleet: Series, source: Path | None, settings: Settings, cache: Path | None = None) -> Path:
    """The fleet model on normal data, cached under build/ by content and settings."""
    from aiot.progress import step

    # the last 10 % stay out of training: quantize compares float and int8 on them
    rows = int(0.9 * fleet.rows)
    key = _model_key(fleet, settings, fleet.rows)
    out = (cache or cache_dir() / "models") / f"fleet-{key}"
    if (out / "model.tflite").is_file():
        return out
    with step(f"fleet model on {fleet.rows} normal rows ({source.name if source else 'data'}), cached as {out.name}"):
        return _train_package(fleet, rows, settings, out, "fleet")


#: The share of a file's commissioning rows its own reference model trains on (the rest calibrate).
OWN_FIT_SHARE = 0.8


def file_package(rec: Recording, start: int, settings: Settings, cache: Path | None = None) -> Path:
    """A model of this installation alone, trained on its commissioning rows (no fleet data)."""
    key = _model_key(rec.series, settings, start)
    out = (cache or cache_dir() / "models") / f"file-{key}"
    # the last 20 % of the commissioning rows calibrate; no test row is ever seen
    return _train_package(rec.series.head(start), int(OWN_FIT_SHARE * start), settings, out, Path(rec.name).stem)


def installation_model(rec: Recording, start: int, settings: Settings) -> tuple[Path, str | None]:
    """(model, firmware) of one installation trained on its own ``start`` commissioning rows:
    the reference target's package, or the device targets' noise-unit model (and, on QEMU,
    the firmware image built with it). A model that cannot be trained names the file."""
    try:
        if settings.target == "reference":
            return file_package(rec, start, settings), None
        from aiot.evaluate.monitor_device import FLOOR_KNOB, device_file_model, firmware_elf

        model = device_file_model(rec.series.head(start), settings.window, settings.epochs, settings.seed,
                                  settings.hidden, noise_floor=float(settings.knobs.get(FLOOR_KNOB, 0.0)),
                                  name=Path(rec.name).stem)
        if settings.target.startswith("qemu:"):
            return model, str(firmware_elf(model, settings.target.split(":", 1)[1], build=True, quiet=True))
        return model, None
    except ToolkitError as e:
        raise ToolkitError(f"{rec.name}: its own model on its {start} commissioning rows: {e.message}",
                           hint=e.hint, exit_code=e.exit_code) from None


def _own_model_info(package: Path, firmware: str | None) -> dict:
    """What report.json records of a file's own model: where it is, its hash and size (and
    the firmware image's size, on QEMU)."""
    from aiot.data import sha256_file

    tfl = Path(package) / "model.tflite"
    info = {"package": str(package), "sha256": sha256_file(tfl), "tflite_bytes": tfl.stat().st_size}
    if firmware:
        from aiot.evaluate.monitor_device import firmware_size

        size = firmware_size(firmware)
        if size is not None:
            info["firmware"] = size
    return info


# -- one file -----------------------------------------------------------------------


def _more(bad: list, recordings: list) -> str:
    if len(bad) == 1:
        return ""
    return f" (so do all {len(bad)} files)" if len(bad) == len(recordings) else f" ({len(bad) - 1} more file(s) too)"


def own_model_rows(window: int) -> int:
    """The fewest commissioning rows the reference target's own model of a file trains on
    (:func:`file_package`): its first OWN_FIT_SHARE must hold train.MIN_FIT_WINDOWS complete
    windows besides the ones kept for calibration."""
    from aiot.model.train import CALIBRATION_FRACTION, MIN_FIT_WINDOWS

    rows = 2 * window
    while True:
        usable = int(OWN_FIT_SHARE * rows) - window + 1  # windows (stride 1) that end in the training rows
        if usable > 0 and usable - max(1, int(round(CALIBRATION_FRACTION * usable))) >= MIN_FIT_WINDOWS:
            return rows
        rows += 1


def min_commissioning_rows(settings: Settings, per_file: bool = False) -> int:
    """The fewest commissioning rows a file can be commissioned on: a window for the
    reference target (with its own model, ``per_file``, what that model trains on:
    :func:`own_model_rows`); on the monitor, enough for its noise profile plus its 4
    calibration windows (:func:`.monitor_device.monitor_knobs`)."""
    if settings.target == "reference":
        return own_model_rows(settings.window) if per_file else settings.window
    from aiot.evaluate.monitor_device import min_commissioning_rows as monitor_min

    return monitor_min(settings.window)


def check_commissioning(recordings: list[Recording], settings: Settings, per_file: bool = False) -> None:
    """Every file can be commissioned on its commissioning rows and still stream some:
    checked before any model is trained (fleet or per file), naming the first file that
    cannot, and how many more there are. Too few commissioning rows (fewer than the target
    learns from: :func:`min_commissioning_rows`) is said as such, with the minimum; on the
    device targets, so is a sample period the monitor cannot count in whole milliseconds
    (:func:`.monitor_device.installation_period_ms`)."""
    need = min_commissioning_rows(settings, per_file)
    few = [(r, start) for r in recordings if (start := settings.commissioning_rows(r.series.rows)) < need]
    if few:
        rec, start = few[0]
        where = "" if settings.train_rows is not None else f" (of its {rec.series.rows})"
        more = _more(few, recordings)
        raise ToolkitError(
            f"{rec.name}: {start} commissioning rows{where} are too few: the {settings.target} target needs at "
            f"least {need} at window {settings.window}{more}",
            hint=f"commission on {need} rows or more (--train-rows {need}, or a larger --train-fraction)",
        )
    short = [(r, settings.commissioning_rows(r.series.rows)) for r in recordings]
    short = [(r, start) for r, start in short if start >= r.series.rows]
    if short:
        rec, start = short[0]
        shortest = min(r.series.rows for r in recordings)
        more = _more(short, recordings)
        raise ToolkitError(
            f"{rec.name}: {rec.series.rows} rows, cannot commission on {start} and stream the rest{more}",
            hint=f"lower --train-rows/--train-fraction below the shortest file's {shortest} rows, "
                 "or leave the short files out",
        )
    if settings.target != "reference":  # the monitor counts time in whole milliseconds
        from aiot.evaluate.monitor_device import installation_period_ms

        bad = []
        for r in recordings:
            try:
                installation_period_ms(r.series.head(settings.commissioning_rows(r.series.rows)), r.name)
            except ToolkitError as e:
                bad.append((r, e))
        if bad:
            first = bad[0][1]
            raise ToolkitError(first.message + _more(bad, recordings), hint=first.hint)


class NotCommissioned(ToolkitError):
    """A file that cannot be commissioned: its own model cannot be trained on its commissioning
    rows, or the device refuses them (a sensor with no valid sample there). ``run`` with a
    ``skipped`` list leaves such a file out instead of stopping."""


def _not_commissioned(rec: Recording, start: int, e: ToolkitError) -> NotCommissioned:
    named = e.message if e.message.startswith(f"{rec.name}: ") else \
        f"{rec.name}: cannot be commissioned on its {start} commissioning rows: {e.message}"
    return NotCommissioned(named, hint=e.hint, exit_code=e.exit_code)


def _run_file(rec: Recording, package: Path | None, settings: Settings) -> FileResult:
    s = rec.series
    start = settings.commissioning_rows(s.rows)
    check_commissioning([rec], settings, per_file=package is None)  # window <= start < rows, and enough to learn
    firmware = settings.firmware
    own_model = package is None
    if own_model:
        try:
            package, firmware = installation_model(rec, start, settings)
        except ToolkitError as e:
            raise _not_commissioned(rec, start, e) from None
    device = make_device(settings.target, package, settings.rule, settings.knobs, firmware)
    try:
        info = device.commission(s.head(start))
    except ToolkitError as e:
        raise _not_commissioned(rec, start, e) from None
    if own_model:
        info["model"] = _own_model_info(package, firmware)
    out = device.stream(s, start)
    if len(out.alert) != s.rows - start:
        raise ToolkitError(f"{rec.name}: the device answered {len(out.alert)} rows for {s.rows - start} pushed")
    labels = rec.labels
    full_alert = np.zeros(s.rows, np.int8)
    full_alert[start:] = out.alert
    info["commissioning_rows"] = start
    info["labelled_rows_in_commissioning"] = int(labels[:start].sum())
    info["incidents_in_commissioning"] = sum(1 for _, end in runs(labels) if end < start)
    nab = nab_rows = None
    windows = rec.windows
    probation = max(start, nab_probation_rows(s.rows)) if windows is not None else start
    if windows is None and labels.any():  # labelled runs double as windows when the format has none
        windows = runs(labels)
    if rec.windows is not None:  # NAB windows wholly inside the rows no detection counts on
        info["windows_not_scored"] = sum(1 for _, right in rec.windows if right < probation)
    if windows is not None:
        onsets = np.diff(np.concatenate(([0], full_alert))) == 1
        nab = nab_file_score(onsets, windows, probation_rows=probation)
        nab_rows = nab_file_score(full_alert, windows, probation_rows=probation)
    lead_s = settings.early_warning_s
    test_alerts = inc.alerts(labels[start:], out.alert, out.channel_scores, s.channels,
                             timestamps=s.timestamps[start:], lead_s=lead_s)
    for a in test_alerts:  # back to whole-file row numbers
        a.start += start
        a.end += start
    test_incidents = [i for i in inc.incidents(labels, full_alert, s.timestamps, lead_s=lead_s) if i.end >= start]
    lead = inc.lead_rows(labels, s.timestamps, lead_s)
    return FileResult(
        recording=rec, start=start, outputs=out, commissioning=info,
        confusion=confusion(labels[start:], out.alert, ignore=lead[start:]),
        confusion_all_rows=confusion(labels, full_alert, ignore=lead),
        nab=nab, nab_rows=nab_rows, incidents=test_incidents, alerts=test_alerts,
        phases=normal_phases(labels, full_alert, start, ignore=lead),
        early_warning=PhaseCounts(int(lead[start:].sum()), int((lead[start:] & (out.alert > 0)).sum())),
        early_warning_s=lead_s,
    )


def quiet_worker() -> None:
    """In a worker process that trains many small models: no TensorFlow chatter (its C++
    start-up lines, and the "retracing" advice that training model after model triggers)."""
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _worker(args: tuple) -> FileResult | tuple:
    quiet_worker()
    try:
        return _run_file(*args)
    except ToolkitError as e:  # sent back whole: a pickled exception would lose its hint
        return ("error", e.message, e.hint, e.exit_code, isinstance(e, NotCommissioned))


def run(dataset: Dataset, settings: Settings, package: Path | None,
        skipped: list[tuple[str, str]] | None = None, mapper=None) -> list[FileResult]:
    """Commission and stream every file; results keep the dataset's order.

    ``package`` None trains one model per file on its commissioning rows. ``skipped`` (a
    list): a file that cannot be commissioned (:class:`NotCommissioned`) is put there (name,
    why) and left out of the results; otherwise it stops the run. ``mapper(fn, tasks)``
    runs the per-file tasks elsewhere (a Dask cluster: aiot.fleet.dask_runner), yielding
    their outcomes in order; default: ``settings.jobs`` local processes.
    """
    from aiot.progress import Bar

    jobs = max(1, min(settings.jobs, len(dataset.recordings)))
    tasks = [(r, package, settings) for r in dataset.recordings]
    results: list[FileResult] = []
    with Bar(len(tasks), "files") as bar:
        if mapper is not None:
            outcomes = mapper(_worker, tasks)
        elif jobs == 1:
            outcomes = (_worker_here(t) for t in tasks)
        else:
            outcomes = spawn_map(_worker, tasks, jobs)
        for t, res in zip(tasks, outcomes):
            if isinstance(res, tuple):
                _, message, hint, code, not_commissioned = res
                if not (not_commissioned and skipped is not None):
                    raise (NotCommissioned if not_commissioned else ToolkitError)(message, hint=hint, exit_code=code)
                skipped.append((t[0].name, skip_reason(message, hint)))
            else:
                results.append(res)
            bar.update()
    return results


def _worker_here(args: tuple) -> FileResult | tuple:
    """:func:`_worker` in this process (one job): the same answers, without its quieting."""
    try:
        return _run_file(*args)
    except NotCommissioned as e:
        return ("error", e.message, e.hint, e.exit_code, True)


def spawn_map(fn, items: list, jobs: int, initializer=None, initargs: tuple = ()):
    """``fn`` over ``items``, the results yielded in order: on ``jobs`` processes started with
    spawn, not fork (TensorFlow / tflite-micro state must not be forked), or in this process
    when ``jobs`` <= 1 (``initializer`` then runs here, once)."""
    if jobs <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=initializer,
                             initargs=initargs) as pool:
        yield from pool.map(fn, items)


def not_scored(results: list[FileResult]) -> list[str]:
    """Labels the run cannot score, in words, one line per kind: labelled rows inside the
    commissioning rows (never streamed, so neither detected nor missed), NAB windows wholly
    inside the commissioning / probation rows, and label windows outside a file's time range
    (that file then counts as one without a fault). Empty when every label is scored."""
    def files(items: list[tuple[str, str]]) -> str:
        shown = ", ".join(f"{name} ({what})" for name, what in items[:5])
        return shown + (f" and {len(items) - 5} more file(s)" if len(items) > 5 else "")

    out = []
    rows = [(r.recording.name, r.commissioning.get("labelled_rows_in_commissioning", 0),
             r.commissioning.get("incidents_in_commissioning", 0), r.start) for r in results]
    rows = [x for x in rows if x[1]]
    if rows:
        total, whole = sum(x[1] for x in rows), sum(x[2] for x in rows)
        out.append(f"{total} labelled row(s) fall inside commissioning rows and are not scored"
                   + (f"; {whole} incident(s) lie wholly there and are not counted at all" if whole else "")
                   + ": " + files([(n, f"{k} of its first {s} rows" + (f", {w} whole incident(s)" if w else ""))
                                   for n, k, w, s in rows])
                   + " (commissioning rows are never scored, and labelled ones are not learnt from either: the "
                     "installation commissions on its normal rows; commission on fewer rows to score them)")
    wins = [(r.recording.name, r.commissioning.get("windows_not_scored", 0)) for r in results]
    wins = [(n, f"{k} window(s)") for n, k in wins if k]
    if wins:
        out.append("label windows wholly inside the commissioning / NAB probation rows are not scored: " + files(wins))
    outside = [(r.recording.name, w) for r in results for w in r.recording.meta.get("windows_outside_data", [])]
    if outside:
        out.append(f"{len(outside)} label window(s) lie wholly outside their file's time range and are not scored "
                   "(such a file counts as one without a fault): "
                   + files([(n, f"{a} .. {b}") for n, (a, b) in outside])
                   + " (check the labels file belongs to this data)")
    between = [(r.recording.name, len(r.recording.meta.get("windows_without_rows", []))) for r in results]
    between = [(n, f"{k} window(s)") for n, k in between if k]
    if between:
        out.append("label windows that fall between two samples hold no row and are not scored: " + files(between))
    return out


def aggregate(results: list[FileResult]) -> dict:
    """Pooled metrics over all test rows, as SKAB computes them (counts summed, then divided)."""
    total = sum((r.confusion for r in results), Confusion())
    total_all = sum((r.confusion_all_rows for r in results), Confusion())
    incs = [i for r in results for i in r.incidents]
    alerts = [a for r in results for a in r.alerts]
    delays = [i.delay_s for i in incs if i.delay_s is not None]
    nabs = [r.nab for r in results if r.nab is not None]
    nab_rows = [r.nab_rows for r in results if r.nab_rows is not None]
    # runs to failure: does the device still alert on the last row of a recording that ends
    # inside a labelled fault (the failure not repaired when the recording stops)?
    ending = [r for r in results if r.recording.labels[-1:].any()]
    silent = [r.recording.name for r in ending if not r.outputs.alert[-1:].any()]
    return {
        "test_rows": total.as_dict(),
        "skab_notebook_convention": {
            **total_all.as_dict(),
            "note": "SKAB's published notebooks score every row of each file, commissioning rows included "
                    "(predicted 0); this is that convention, for comparison with their leaderboard",
        },
        "nab_standard": nab_normalized(nabs) if nabs else None,
        "nab_standard_every_alert_row": nab_normalized(nab_rows) if nab_rows else None,
        "nab_note": "nab_standard counts each alert onset as one detection (a raised alert, like NAB's "
                    "spiking detectors); nab_standard_every_alert_row counts every row of a latched alert",
        "incidents": len(incs),
        "incidents_detected": sum(i.detected for i in incs),
        "median_delay_s": float(np.median(delays)) if delays else None,
        "alerts": len(alerts),
        "false_alerts": sum(not a.true for a in alerts),
        "files": len(results),
        "files_without_false_alert": sum(all(a.true for a in r.alerts) for r in results),
        "false_alarms_by_phase": pooled_phases(results),
        "early_warning_rows": sum((r.early_warning for r in results), PhaseCounts()).as_dict(),
        "ending_on_a_fault": {"files": len(ending), "alerting_at_the_end": len(ending) - len(silent)},
        "ending_on_a_fault_silent": silent,
        "early_warning_s": max((r.early_warning_s for r in results), default=0.0),
        "labels_not_scored": not_scored(results),
        "phases_note": "test rows labelled normal, by where they fall in their file: before its first "
                       "labelled fault, between faults, after its last one (a fault's fading tail counts "
                       "here), or in a file without faults; alerting = false-alarm rows (FAR's numerator)",
        "device_events": device_events.pooled(results),
    }


def pooled_phases(results: list[FileResult]) -> dict[str, dict]:
    """The false alarms of all files by phase (:func:`metrics.normal_phases`), counts summed."""
    return {name: sum((r.phases.get(name, PhaseCounts()) for r in results), PhaseCounts()).as_dict()
            for name in PHASES}
