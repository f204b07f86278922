"""`aiot evaluate` end to end: read, pick the model, run every file, write the reports."""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

from aiot import __version__
from aiot.data import sha256_file
from aiot.errors import ToolkitError
from aiot.evaluate import pipeline, report
from aiot.data import readers
from aiot.evaluate.device import AlertRule, rule_for
from aiot.installation import VALIDATED_WINDOW, environment  # noqa: F401  (report.json's)


def resolve_target(target: str) -> str:
    if target != "auto":
        return target
    if importlib.util.find_spec("aiot.monitor") is not None:
        return "host"
    sys.stderr.write("note: aiot.monitor is not available, using --target reference (int8 via tflite-micro)\n")
    return "reference"


def evaluate(data: Path, fmt: str, out: Path, *args, **kwargs) -> dict:
    """:func:`_evaluate` holding ``out`` (aiot.outputs): a second run into it is refused, and
    its files appear together at the end or, if the run fails or is killed, not at all."""
    from aiot.outputs import OutputRun

    with OutputRun(out, f"aiot evaluate of {data}") as run:
        return _evaluate(data, fmt, out, *args, run=run, **kwargs)


def _event_capacity() -> int:
    from aiot.monitor import EVENT_CAPACITY  # AIOT_MONITOR_EVENT_CAPACITY of the builds aiot makes

    return EVENT_CAPACITY


def _evaluate(
    data: Path,
    fmt: str,
    out: Path,
    labels: Path | None = None,
    train_rows: int | None = None,
    train_fraction: float | None = None,
    fleet: Path | None = None,
    target: str = "auto",
    window: int | None = None,
    epochs: int = 30,
    jobs: int = 2,
    limit: int | None = None,
    rule: AlertRule | None = None,
    knobs: dict | None = None,
    alert_settings: Path | None = None,
    per_file: bool = False,
    skip_bad_files: bool = False,
    scheduler: str | None = None,
    run=None,
    csv_options: dict | None = None,
    knob_overrides: dict | None = None,
    package: Path | None = None,
    early_warning_s: float = 0.0,
) -> dict:
    """Run the evaluation and write OUT/predictions.csv, report.json, report.html; return the aggregate.

    ``alert_settings``: an alert-settings file (:mod:`.alert_settings`) instead of the
    validated defaults: its rule or monitor knobs, and its window unless ``window`` is given
    (which must then match it). ``per_file``: one model per file on its commissioning rows
    (SKAB's own protocol) even where the data has a fleet recording; on the device targets
    that is one noise-unit model, and on QEMU one firmware image, per installation (data
    without a fleet recording always runs this way). ``skip_bad_files``: a file that cannot be
    read, has other sensor columns or cannot be commissioned is left out (each named, with
    why, on stderr and in report.json's ``skipped_files``) instead of stopping the run.
    ``scheduler``: one Dask task per file on that cluster (``local``: a LocalCluster of
    ``jobs`` workers; aiot.fleet.dask_runner), with ``skip_bad_files`` implied: a file that
    is bad or whose task fails is reported in ``skipped_files`` and the others finish.
    ``package``: evaluate this model instead of training one (``aiot evaluate --package``,
    and ``aiot release``'s gate): an `aiot train` + `aiot quantize` package, on the reference
    target only; it runs as the fleet model does (the fleet's alert rule), at its own window."""
    from aiot.progress import step

    t0 = time.monotonic()
    if scheduler is not None:  # a fleet: a bad or failed installation is reported, the others finish
        skip_bad_files = True
    if train_rows is not None and train_fraction is not None:
        raise ToolkitError("--train-rows and --train-fraction both given", hint="commission by one of them")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"{out}: exists and is not a folder", hint="choose another --out")
    target = resolve_target("reference" if package is not None and target == "auto" else target)
    if per_file and fleet is not None:
        raise ToolkitError("--per-file and --fleet both given", hint="one model per file, or one fleet model: pick one")
    given = None
    if package is not None:
        if per_file or fleet is not None:
            raise ToolkitError(f"--package and {'--per-file' if per_file else '--fleet'} both given",
                               hint="evaluate the given model (--package), or train one (--per-file / --fleet): "
                                    "pick one")
        package = Path(package)
        given = given_model(package, target)
        if window is not None and window != given["window"]:
            raise ToolkitError(f"--window {window}, but the model in {package} takes windows of {given['window']}",
                               hint="leave --window out: a given model runs at its own window")
        window = given["window"]
    picked = None
    if alert_settings is not None:
        from aiot import alert_settings as aset

        picked = aset.load(alert_settings)
        if not picked.fits(target):
            raise ToolkitError(
                f"{alert_settings}: settings for the {picked.target} target, but --target is {target}",
                hint="reference settings drive --target reference; device settings drive --target host / qemu:BOARD",
            )
        window = picked.window_for(alert_settings, window)
        rule, knobs = picked.rule, picked.knobs
        if target != "reference":  # the validated defaults need no check; a user's file does
            _check_knobs(knobs, window, alert_settings)
    if window is None:
        window = VALIDATED_WINDOW["reference" if target == "reference" else "device"]
    if knob_overrides:
        if target == "reference":
            raise ToolkitError("--drift-rate bounds the device monitor's drift compensation; --target reference "
                               "has no monitor", hint="run it with --target host or --target qemu:BOARD")
        _check_knobs(knob_overrides, window, Path("--drift-rate"))
    if fleet is not None:
        readers.check_fleet_file(fleet)  # before the data is read
    with step(f"reading {data} ({fmt})"):
        # generic files without a fleet recording or a given model: one model per file, so
        # each installation may have its own sensors
        ds = readers.read(fmt, Path(data), labels, skip_bad=skip_bad_files, csv_options=csv_options,
                          same_sensors=fleet is not None or package is not None)
    if limit is not None and ds.skipped:
        # the first N files of the folder, as without --skip-bad-files: the bad ones among them
        # are left out (and named); a file after them was never in this run, bad or not
        scope = set(sorted([r.name for r in ds.recordings] + [name for name, _ in ds.skipped],
                           key=readers.natural_key)[:limit])
        ds.recordings = [r for r in ds.recordings if r.name in scope]
        ds.skipped = [(name, why) for name, why in ds.skipped if name in scope]
        if not ds.recordings:
            raise readers.none_left(Path(data), ds.skipped, limit)
    elif limit is not None:
        ds.recordings = ds.recordings[:limit]
    if per_file or given is not None:
        ds.fleet, ds.fleet_source = None, None
    if given is not None:
        for rec in ds.recordings:
            if list(rec.series.channels) != given["channels"]:
                raise ToolkitError(
                    f"{rec.name}: sensors {', '.join(rec.series.channels)}, but the model in {package} takes "
                    f"{', '.join(given['channels'])} (in that order)",
                    hint="evaluate it on recordings of the sensors it was trained on (the columns of its "
                         "training CSV, in the same order)")
    if fleet is not None:
        ds.fleet = readers.fleet_recording(fleet, ds.recordings[0].series.channels, csv_options)
        ds.fleet_source = Path(fleet)
    # one model per file: asked for, or no fleet recording to train one on (and no model given)
    own = ds.fleet is None and given is None
    if picked is not None:
        picked.require_model(alert_settings, per_file=own)
    # no settings file: the validated picks for this target and this kind of model
    settings = pipeline.Settings(
        format=fmt, target=target, train_rows=train_rows, train_fraction=train_fraction,
        window=window, epochs=epochs, jobs=jobs, rule=rule or rule_for(window, per_file=own),
        early_warning_s=float(early_warning_s),
    )
    if settings.target != "reference":
        from aiot.evaluate.monitor_device import validated_knobs

        settings.knobs = dict(validated_knobs(per_file=own) if knobs is None else knobs)
        settings.knobs.update(knob_overrides or {})  # --drift-rate on top of the settings
        if own:
            from aiot.installation import fleet_model_only

            fleet_model_only(settings.knobs, "one model per file (--per-file, or data without a fleet recording)")

    # before any model is trained
    if skip_bad_files:
        kept = []
        for rec in ds.recordings:
            try:
                pipeline.check_commissioning([rec], settings, per_file=own)
                kept.append(rec)
            except ToolkitError as e:
                ds.skipped.append((rec.name, readers.skip_reason(e.message, e.hint)))
        if not kept:
            raise readers.none_left(Path(data), ds.skipped)
        ds.recordings = kept
    else:
        try:
            pipeline.check_commissioning(ds.recordings, settings, per_file=own)
        except ToolkitError as e:
            raise readers.with_skip_hint(e, len(ds.recordings)) from None
    for name, why in ds.skipped:  # said now, before the long part, and again at the end
        sys.stderr.write(f"warning: skipped {name}: {why}\n")
    if given is not None:
        model_ctx = given["context"]
    elif ds.fleet is not None and settings.target != "reference":
        from aiot.evaluate.monitor_device import device_fleet_model

        src_sha = sha256_file(ds.fleet_source) if ds.fleet_source else "memory"
        rows = settings.commissioning_rows(min(r.series.rows for r in ds.recordings))
        from aiot.evaluate.monitor_device import FLOOR_KNOB, PCA_KNOB

        package = device_fleet_model(ds.fleet, src_sha, window, epochs, settings.seed, rows, settings.hidden,
                                     noise_floor=float(settings.knobs.get(FLOOR_KNOB, 0.0)),
                                     pca_variance=float(settings.knobs.get(PCA_KNOB, 0.0)))
        tfl = package / "model.tflite"
        model_ctx = {"kind": "fleet (noise-unit inputs, for the monitor)", "package": str(package),
                     "sha256": sha256_file(tfl), "tflite_bytes": tfl.stat().st_size,
                     "trained_on": str(ds.fleet_source), "trained_on_sha256": src_sha,
                     **json.loads((package / "meta.json").read_text())}
        from aiot.evaluate.monitor_device import firmware_sources_sha

        # host and QEMU results compare only when built from the same sources
        model_ctx["firmware_sources_sha256"] = firmware_sources_sha()
        if settings.target.startswith("qemu:"):
            from aiot.evaluate.monitor_device import firmware_elf, firmware_size

            elf = firmware_elf(package, settings.target.split(":", 1)[1], build=True)  # once, before the workers
            settings.firmware = str(elf)
            model_ctx["firmware_sources_sha256"] = elf.parent.name.rsplit("-", 2)[1]  # what was built
            size = firmware_size(elf)
            if size is not None:
                model_ctx["firmware"] = size
    elif ds.fleet is not None:
        package = pipeline.fleet_package(ds.fleet, ds.fleet_source, settings)
        model_ctx = _model_context(package)
        model_ctx.update(kind="fleet", trained_on=str(ds.fleet_source),
                         trained_on_sha256=sha256_file(ds.fleet_source) if ds.fleet_source else None)
    else:
        package = None
        model_ctx = {"kind": "per-file", "trained_on": "each file's own commissioning rows"}
        if settings.target != "reference":
            from aiot.evaluate.monitor_device import firmware_sources_sha

            model_ctx.update(kind="per-file (noise-unit inputs, for the monitor)",
                             firmware_sources_sha256=firmware_sources_sha(),
                             note="each file's model, tflite hash and (qemu) firmware size are in its "
                                  "commissioning record")

    met = len(ds.skipped)
    mapper = None
    if scheduler is not None:
        from aiot.fleet.dask_runner import dask_mapper

        mapper = dask_mapper(scheduler, workers=jobs)
    where = f"Dask {scheduler}" if scheduler else f"{jobs} job(s)"
    with step(f"commissioning and streaming {len(ds.recordings)} file(s) on {settings.target}, {where}"):
        try:
            results = pipeline.run(ds, settings, package, skipped=ds.skipped if skip_bad_files else None,
                                   mapper=mapper)
        except pipeline.NotCommissioned as e:
            raise readers.with_skip_hint(e, len(ds.recordings)) from None
    for name, why in ds.skipped[met:]:  # files only the device or their own model's training could refuse
        sys.stderr.write(f"warning: skipped {name}: {why}\n")
    if not results:
        raise readers.none_left(Path(data), ds.skipped, limit if limit is not None and ds.skipped else None)
    ds.recordings = [r.recording for r in results]
    summary = pipeline.aggregate(results)
    if fmt == "tep":  # the benchmark's own figures, beside the pooled row metrics
        from aiot.data.tep import benchmark

        summary["tep"] = benchmark([(r.recording.name, r.confusion.tp, r.confusion.fn, r.confusion.fp,
                                     r.confusion.tn) for r in results])
    if skip_bad_files:  # the run's scope: which files the figures leave out, and why
        summary["skipped_files"] = [{"file": name, "reason": why} for name, why in ds.skipped]
    if ds.labels_without_data:
        summary["label_entries_without_data"] = ds.labels_without_data

    out.mkdir(parents=True, exist_ok=True)
    context = {
        "tool": f"aiot {__version__}",
        "data": str(data),
        "format": fmt,
        "labels": None if labels is None else str(labels),
        "model": model_ctx,
        "protocol": (
            "per file: commission on the first rows (normalization and threshold from those rows only), "
            "then stream every later row through the device one at a time; metrics over the streamed rows, "
            "pooled over files (TP/FP/TN/FN summed). Same settings for every file; no test row is used to fit "
            "or tune anything."
        ),
        "incident_matching": incident_matching(settings.early_warning_s),
        "device_events": None if settings.target == "reference" else (
            "per file, every event the device's monitor emitted from the start of commissioning, oldest first: "
            f"its ring ({_event_capacity()} events) is drained after every window of rows pushed (host build and "
            "board alike); "
            "time = the event's device time in the file's clock, row = the file row pushed at that time, "
            "sensor = the channel's column name, value in unit (monitor.h); events_dropped = events the ring "
            "overwrote before a drain (the list lacks them)"),
        "host": platform.platform(),
        # trained models (and so the figures) depend on these: the same settings with another
        # TensorFlow / Keras can train a different model
        "environment": environment(),
        "seconds": round(time.monotonic() - t0, 1),
    }
    if picked is not None:
        context["alert_settings"] = {"file": str(alert_settings), "sha256": sha256_file(Path(alert_settings)),
                                     "picked_by": picked.picked_by}
    context["run_id"] = run.id  # every file of the folder is this run's (OUT/.aiot-run.json)
    with step(f"writing {out}"):
        report.write_predictions(run.path("predictions.csv"), results)
        report.write_json(run.path("report.json"), results, summary, settings.to_json(), context)
        report.write_html(run.path("report.html"), results, summary, settings.to_json(), context)
        run.commit()
    for line in summary["labels_not_scored"]:  # right above the summary the command prints
        sys.stderr.write(f"warning: {line}\n")
    if ds.skipped:
        sys.stderr.write(f"warning: {len(ds.skipped)} file(s) skipped, not in the results: "
                         f"{', '.join(name for name, _ in ds.skipped)} (why: report.json's skipped_files)\n")
    return summary


def given_model(package: Path, target: str) -> dict:
    """What ``evaluate(package=...)`` runs: an `aiot train` + `aiot quantize` package, on the
    reference target; its window, its sensors and what report.json says of it."""
    if target != "reference":
        raise ToolkitError(f"--package runs on the reference target (tflite-micro), not {target}",
                           hint="aiot evaluate --target reference --package PKG --data DATA --out DIR")
    from aiot.model.package import load_package

    pkg = load_package(package)
    if not pkg.quantized:
        raise ToolkitError(f"{package}: the package has no int8 model yet", hint=f"aiot quantize --package {package}")
    ctx = {**_model_context(package), "kind": "given (--package)"}
    return {"window": pkg.window, "channels": pkg.channels, "context": ctx}


def incident_matching(early_warning_s: float = 0.0) -> dict:
    """How alerts were matched to labelled incidents (:mod:`.incidents`), for report.json."""
    from aiot.evaluate.incidents import DEFAULT_TOLERANCE_ROWS

    doc = {"tolerance_rows": DEFAULT_TOLERANCE_ROWS, "early_warning_s": early_warning_s,
           "rule": "an incident is detected only by an alert that starts inside [onset - tolerance_rows, "
                   "last labelled row]; any other alert (one already on before that, or starting after "
                   "the incident) is a false alert"}
    if early_warning_s:
        doc["rule"] = ("an incident is detected only by an alert that starts inside [the earlier of onset - "
                       "tolerance_rows and the first row at most early_warning_s before the onset, last labelled "
                       "row] (never before the previous incident's end, nor across a clock step back); any other "
                       "alert is a false alert. The normal rows of that lead are neither normal nor fault in F1, "
                       "FAR and MAR (aggregate.early_warning_rows)")
    return doc


def _check_knobs(knobs: dict, window: int, source: Path) -> None:
    """Monitor knobs from ``source`` out of range fail here, before any model is trained,
    naming the file (per-sensor lists are checked when the device is set up for the data)."""
    from aiot.monitor import check_knob, default_config
    from aiot.evaluate.monitor_device import FLOOR_KNOB, PCA_KNOB

    scalar = {k: v for k, v in knobs.items() if k not in (FLOOR_KNOB, PCA_KNOB) and not isinstance(v, (list, dict))}
    try:
        for k, v in knobs.items():
            if isinstance(v, dict):  # by sensor name: the values now, the names with the data
                check_knob(k, v)
        default_config(1, window, 1000, **scalar)
    except ToolkitError as e:
        raise ToolkitError(f"{source}: {e.message}", hint=e.hint) from None


def _model_context(package: Path) -> dict:
    from aiot.model.package import load_package

    pkg = load_package(package)
    tfl = pkg.file("tflite")
    return {
        "package": str(package),
        "sha256": pkg.manifest.get("tflite_sha256"),
        "tflite_bytes": tfl.stat().st_size,
        "window": pkg.window,
        "channels": pkg.channels,
        "hidden": pkg.manifest["model"].get("hidden"),
        "quantization": pkg.manifest.get("quantization"),
    }
