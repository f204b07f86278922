"""`aiot release`: package a model with its golden vectors, gate it against the current
release by evaluating both on the installation's own recorded history (`aiot evaluate`,
incident by incident), sign it (imgtool) and record it in the registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from aiot.commands import Command
from aiot.commands.evaluate import csv_options, reading_options


def _load_report(path: Path, what: str) -> dict:
    from aiot.errors import ToolkitError

    try:
        doc = json.loads(path.read_text())
        doc["files"]
        return doc
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ToolkitError(f"{what} {path}: not an aiot evaluate report.json ({e})",
                           hint="make it with aiot evaluate ... --out DIR (DIR/report.json)") from e


def _evaluate_on(history: Path, model: Path, alert_settings: Path | None, out: Path, train_rows: int | None,
                 reading: dict) -> dict:
    """One release's model on the history through `aiot evaluate`'s own code (reference
    target: tflite-micro), written to ``out``; returns its report.json."""
    from aiot.evaluate.run import evaluate

    evaluate(data=history, fmt="generic", out=out, target="reference", package=model, alert_settings=alert_settings,
             train_rows=train_rows, jobs=1, csv_options=reading)
    return json.loads((out / "report.json").read_text())


def _refusal(rid: str, current: str, verdict: dict, where: Path | None) -> str:
    missed = ", ".join(f"{m['file']} rows {m['start_row']}-{m['end_row']}" for m in verdict.get("missed", []))
    fa = verdict.get("false_alarms", {})
    more = fa and fa.get("candidate", 0) > fa.get("current", 0)
    return (f"{rid} is worse than {current} on this installation's history: "
            + (f"misses {missed} (which {current} caught)" if missed else "")
            + (f"{'; ' if missed else ''}false alarms {fa.get('candidate')} > {fa.get('current')}" if more else "")
            + (f" (both reports: {where})" if where else ""))


@click.command("release", cls=Command)
@click.option("--package", "package", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="The candidate: an aiot train + aiot quantize package (its .tflite, test vectors, sensors, window).")
@click.option("--history", type=click.Path(path_type=Path, exists=True),
              help="The installation's recorded history: a labelled CSV (or a folder of them). The candidate and the "
                   "current release are both evaluated on it, incident by incident (aiot evaluate).")
@click.option("--current", help="The release the candidate replaces (registry id) [default: the one the registry "
                                "says --device runs].")
@click.option("--device", help="The installation (its device's INFO id, or its label): its current release is the one "
                               "to beat.")
@click.option("--alert-settings", "alert_settings", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The candidate's alert settings (a reference-target file from aiot tune) [default: the validated "
                   "ones for its window]. Kept with the release; its later gates run it with them.")
@click.option("--train-rows", type=click.IntRange(min=1), default=None,
              help="Commission each history file on its first N rows [default: the first 15 %].")
@click.option("--version", "version", required=True, help="Release version (MAJOR.MINOR.REVISION).")
@click.option("--name", help="Release name, e.g. pump-ae [default: the package's name].")
@click.option("--key", required=True, type=click.Path(path_type=Path), help="Ed25519 signing key (PEM).")
@click.option("--new-key", is_flag=True, help="Create --key first (refuses to overwrite one).")
@click.option("--golden", default=8, show_default=True, help="How many golden vectors the package carries.")
@click.option("--monitor-config", type=click.Path(path_type=Path, exists=True),
              help="The installation's monitor settings as the target firmware's CONFIG_SET takes them "
                   "(aiot.monitor.pack_config(cfg, its AIOT_MONITOR_MAX_CHANNELS)); a size the device does not "
                   "take fails the trial, which reverts.")
@click.option("--firmware", "firmware_json", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The target firmware's build.json (aiot build --update-key): the release's plan must fit its plan "
                   "arena [default: the firmware's default arena].")
@click.option("--no-plan", is_flag=True, help="Ship no model-as-data plan: the device checks the golden vectors on, "
                                               "and serves, its compiled-in model.")
@click.option("--data-hash", help="Hash of the training data (lineage) [default: the package's, else SHA-256 of the vectors].")
@click.option("--settings", "settings_json", help="Training/alert settings as JSON (lineage).")
@click.option("--accept-regression", help="Sign even if the gate fails; the reason is recorded in the registry.")
@click.option("--registry", type=click.Path(path_type=Path), help="Registry folder [default: build/registry].")
# the form before --package / --history (one release): a bare .tflite, and two report.json files the user made
@click.option("--model", "model", hidden=True, type=click.Path(path_type=Path, exists=True))
@click.option("--vectors", hidden=True, type=click.Path(path_type=Path, exists=True))
@click.option("--channels", hidden=True)
@click.option("--window", hidden=True, type=int)
@click.option("--parent", hidden=True)
@click.option("--report", hidden=True, type=click.Path(path_type=Path))
@click.option("--baseline-report", hidden=True, type=click.Path(path_type=Path))
@reading_options
def command(package, history, current, device, alert_settings, train_rows, version, name, key, new_key, golden,
            monitor_config, firmware_json, no_plan, data_hash, settings_json, accept_regression, registry, model,
            vectors, channels, window, parent, report, baseline_report, strict_time, time_format, label_column,
            label_map) -> None:
    """Make a signed model release, refused if it is worse than the current one.

    \b
    Both the candidate (--package) and the current release (--current, or the one the
    registry says --device runs) are evaluated on the installation's recorded --history,
    incident by incident (aiot evaluate, reference target: tflite-micro). The candidate must
    catch every incident the current release caught and raise no more false alarms, unless
    --accept-regression "why" (kept in the registry). Both reports are kept with the release.
    \b
    Examples:
      aiot release --package build/pkg --history pump7.csv --name pump-ae --version 1.0.0 \\
          --key keys/release.pem --new-key
      aiot release --package build/pkg2 --history pump7.csv --device pump-7 --name pump-ae \\
          --version 1.1.0 --key keys/release.pem
    """
    import numpy as np

    from aiot import paths
    from aiot.errors import ToolkitError
    from aiot.lifecycle import package as P
    from aiot.lifecycle.registry import Registry, gate
    from aiot.model.reference import TflmReference

    reg = Registry(registry or paths.build_dir() / "registry")
    if (package is None) == (model is None):
        raise ToolkitError("give the candidate as --package PKG (an aiot train + aiot quantize package)",
                           hint="aiot release --package build/pkg --history HISTORY.csv --version 1.0.0 --key K.pem")
    if current and parent and current != parent:
        raise ToolkitError(f"--current {current} and --parent {parent} differ", hint="give --current only")
    current = current or parent
    if device and not current:
        _, dev = reg.device(device)
        current = dev["release"]
    if current:
        reg.get(current)  # an unknown release fails before anything is evaluated
    if new_key:
        P.generate_key(key)
    if not Path(key).is_file():
        raise ToolkitError(f"--key {key}: no such file", hint="create one with --new-key (keep it secret, back it up)")

    settings_doc = None
    if package is not None:
        from aiot.model.package import load_package

        pkg = load_package(package)
        tfl = pkg.tflite_bytes()
        vec = pkg.vectors()
        if "x_int8" not in vec:
            raise ToolkitError(f"{package}: its vectors.npz holds no int8 inputs", hint=f"aiot quantize --package {package}")
        x_all, names, window = vec["x_int8"], pkg.channels, pkg.window
        if not len(x_all) and len(vec.get("x_representative", ())):  # no held-out window: calibration ones
            from aiot.model.features import quantize_input

            q = pkg.manifest["model"]
            x_all = quantize_input(vec["x_representative"], float(q["input_scale"]), int(q["input_zero_point"]))
        if not len(x_all):
            raise ToolkitError(f"{package}: no window to make golden vectors from (vectors.npz is empty)",
                               hint="train on more rows (aiot train --train-rows)")
        name = name or pkg.name
        data_hash = data_hash or pkg.manifest.get("training", {}).get("data_sha256")
        if alert_settings is not None:
            from aiot import alert_settings as aset

            picked = aset.load(alert_settings)
            if not picked.fits("reference"):
                raise ToolkitError(f"{alert_settings}: settings for the {picked.target} target; the release gate runs "
                                   "the reference target", hint="aiot tune --target reference --data NORMAL.csv --out DIR")
            picked.window_for(alert_settings, window)
            settings_doc = json.loads(Path(alert_settings).read_text())
    else:
        if not (vectors and channels and window and name):
            raise ToolkitError("--model needs --vectors, --channels, --window and --name",
                               hint="or give the candidate as --package PKG")
        tfl = Path(model).read_bytes()
        x_all = np.load(vectors)["x_int8"]
        names = [c.strip() for c in channels.split(",") if c.strip()]
    rid = f"{name}-{version}"
    if rid in reg.releases():
        raise ToolkitError(f"release {rid} is already in the registry {reg.root}", hint="give the new release another --version")
    earlier = sorted(r for r, e in reg.releases().items() if e["name"] == name)
    if not current and earlier and not accept_regression:  # the gate is not skipped by leaving it out
        raise ToolkitError(f"{rid}: the registry holds earlier {name} releases ({', '.join(earlier)}) but none was "
                           "named as the current one, so the gate would not run",
                           hint="name the release it replaces: --current ID, or --device DEVICE (the release that "
                                "device runs); or sign it ungated with --accept-regression \"why\"")

    # the model as data, checked against the firmware's plan arena before anything is evaluated
    from aiot.lifecycle.plan import build_plan, check_fits

    plan = b""
    if not no_plan:
        try:
            plan = build_plan(tfl)
        except ToolkitError as e:
            click.echo(f"note: no model-as-data plan in this release ({e.message}); the device checks its golden "
                       "vectors on its compiled-in model", err=True)
    if plan:
        built: dict = {}
        if firmware_json is not None:
            try:
                built = json.loads(Path(firmware_json).read_text())
                built.get("plan_arena")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
                raise ToolkitError(f"--firmware {firmware_json}: not a build.json ({e})",
                                   hint="give the build.json that aiot build --update-key wrote") from None
        check_fits(plan, rid, arena=int(built.get("plan_arena") or P.PLAN_ARENA),
                   layers=int(built.get("plan_layers") or P.PLAN_LAYERS), dense_only=built.get("plan_ops", "dense") == "dense",
                   where=str(firmware_json) if built.get("plan_arena") is not None else "the update firmware's default")

    verdict: dict = {"checked": False}
    cand = _load_report(report, "--report") if report else None
    evaluations: dict[str, Path] = {}
    where = None
    if history is not None:
        if package is None:
            raise ToolkitError("--history evaluates the candidate's package: give it as --package PKG",
                               hint="aiot release --package build/pkg --history HISTORY.csv ...")
        if report or baseline_report:
            raise ToolkitError("--history evaluates both releases itself: drop --report / --baseline-report")
        where = paths.build_dir() / "release" / rid
        reading = csv_options(strict_time, time_format, label_column, label_map)
        cur_model = None
        if current:
            cur_model = reg.model_dir(current)
            if cur_model is None and not accept_regression:
                raise ToolkitError(f"cannot gate {rid} against {current}: the registry holds no model package of "
                                   f"{current} to evaluate (it was released from a bare .tflite)",
                                   hint="release the current model again from its package (aiot release --package), "
                                        "or sign anyway with --accept-regression \"why\"")
        cand = _evaluate_on(Path(history), Path(package), alert_settings, where / "candidate", train_rows, reading)
        evaluations["candidate"] = where / "candidate"
        if cur_model is not None:
            base = _evaluate_on(Path(history), cur_model, reg.alert_settings_file(current), where / "current",
                                train_rows, reading)
            evaluations["current"] = where / "current"
            verdict = {"checked": True, "against": current, "history": str(history),
                       "history_sha256": _sha256_history(Path(history)), **gate(cand, base)}
        elif current:
            verdict = {"checked": False, "against": current, "why": f"no model package of {current} in the registry"}
        else:
            verdict = {"checked": False, "why": "no current release: the first one for this installation"}
    elif current:
        base = _load_report(baseline_report, "--baseline-report") if baseline_report else reg.get(current).get("report")
        if cand is None or base is None:
            if not accept_regression:
                raise ToolkitError(f"cannot gate {rid} against {current}: "
                                   + ("no --history to evaluate both on" if cand is None
                                      else f"no report stored for {current}"),
                                   hint="give the installation's recorded history: --history HISTORY.csv, or sign "
                                        "anyway with --accept-regression \"why\"")
        else:
            verdict = {"checked": True, "against": current, **gate(cand, base)}
    if verdict.get("checked") and not verdict["passed"]:
        if not accept_regression:
            raise ToolkitError(_refusal(rid, current, verdict, where),
                               hint="fix the model or its settings, or sign anyway with --accept-regression \"reason\" "
                                    "(recorded in the registry)")
    if accept_regression and not verdict.get("passed", False):
        verdict["accepted_regression"] = accept_regression

    x = x_all.reshape(len(x_all), -1)[:golden]
    y = TflmReference(tfl).run(x)
    meta = {"name": name, "version": version, "data_hash": data_hash or hashlib.sha256(x_all.tobytes()).hexdigest(),
            "settings": json.loads(settings_json) if settings_json else None, "alert_settings": settings_doc,
            "channels": list(names), "window": window, "parent": current, "tflite_sha256": hashlib.sha256(tfl).hexdigest()}
    body = P.build_container(meta, tflite=tfl, monitor_config=Path(monitor_config).read_bytes() if monitor_config else b"",
                             golden=list(zip(x, y)), plan=plan, schema=P.schema_id(list(names), window),
                             model_version=int(version.split(".")[1]) if version.count(".") >= 1 else 0)
    out = reg.root / ".signing" / f"{rid}.bin"
    image = P.sign(body, key, version=version, out=out)
    out.unlink()
    rel = reg.add(image, name=name, version=version, parent=current, report=cand, gate=verdict,
                  model_dir=package, alert_settings=settings_doc, evaluations=evaluations)
    click.echo(f"release {rel.id}: {reg.root / rel.entry['file']} ({len(image):,} bytes, digest {rel.entry['digest'][:16]})")
    if verdict.get("checked"):
        c = verdict["caught"]
        click.echo(f"gate vs {current}: caught {c['candidate']}/{c['incidents']} incidents (current {c['current']}), "
                   f"false alarms {verdict['false_alarms']['candidate']} (current {verdict['false_alarms']['current']})"
                   + (" - PASSED" if verdict["passed"] else f" - FAILED, accepted: {accept_regression}"))
    elif history is not None:
        agg = cand["aggregate"]
        click.echo(f"not gated ({verdict.get('why')}); on the history it caught {agg['incidents_detected']}/"
                   f"{agg['incidents']} incidents, {agg['false_alerts']} false alarm(s)")


def _sha256_history(history: Path) -> str:
    """SHA-256 over the history's CSV files (names and bytes), in order."""
    h = hashlib.sha256()
    for f in sorted(history.rglob("*.csv")) if history.is_dir() else [history]:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()
