"""`aiot release`: package a model with its golden vectors, gate it against the current
release on the installation's own evaluation, sign it (imgtool) and record it in the registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from aiot.commands import Command


def _load_report(path: Path, what: str) -> dict:
    from aiot.errors import ToolkitError

    try:
        doc = json.loads(path.read_text())
        doc["files"]
        return doc
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ToolkitError(f"{what} {path}: not an aiot evaluate report.json ({e})",
                           hint="make it with aiot evaluate ... --out DIR (DIR/report.json)") from e


@click.command("release", cls=Command)
@click.option("--model", "model", required=True, type=click.Path(path_type=Path, exists=True), help="int8 .tflite")
@click.option("--vectors", required=True, type=click.Path(path_type=Path, exists=True),
              help=".npz with x_int8: inputs for the golden vectors (outputs come from tflite-micro).")
@click.option("--golden", default=8, show_default=True, help="How many golden vectors the package carries.")
@click.option("--channels", required=True, help="Sensor names in input order, comma-separated (the schema).")
@click.option("--window", required=True, type=int, help="Samples per window (the schema).")
@click.option("--name", required=True, help="Release name, e.g. pump-ae.")
@click.option("--version", "version", required=True, help="Release version (MAJOR.MINOR.REVISION).")
@click.option("--key", required=True, type=click.Path(path_type=Path), help="Ed25519 signing key (PEM).")
@click.option("--new-key", is_flag=True, help="Create --key first (refuses to overwrite one).")
@click.option("--monitor-config", type=click.Path(path_type=Path, exists=True),
              help="The installation's monitor settings as the target firmware's CONFIG_SET takes them "
                   "(aiot.monitor.pack_config(cfg, its AIOT_MONITOR_MAX_CHANNELS)); a size the device does not "
                   "take fails the trial, which reverts.")
@click.option("--data-hash", help="Hash of the training data (lineage) [default: SHA-256 of --vectors].")
@click.option("--settings", "settings_json", help="Training/alert settings as JSON (lineage).")
@click.option("--parent", help="Release this one replaces (registry id, e.g. pump-ae-1.2.0).")
@click.option("--report", type=click.Path(path_type=Path), help="aiot evaluate report.json of this candidate.")
@click.option("--baseline-report", type=click.Path(path_type=Path),
              help="report.json of the current release on the same history [default: the parent's stored report].")
@click.option("--accept-regression", help="Sign even if the gate fails; the reason is recorded in the registry.")
@click.option("--registry", type=click.Path(path_type=Path), help="Registry folder [default: build/registry].")
def command(model, vectors, golden, channels, window, name, version, key, new_key, monitor_config, data_hash,
            settings_json, parent, report, baseline_report, accept_regression, registry) -> None:
    """Make a signed model release, refused if it is worse than the current one.

    \b
    The gate compares incident by incident, on the installation's recorded history:
    the candidate must catch every incident the current release caught and raise no
    more false alarms, unless --accept-regression "why" (kept in the registry).
    \b
    Example:
      aiot release --model m.tflite --vectors v.npz --channels p,q,t --window 8 \\
          --name pump-ae --version 1.3.0 --key keys/release.pem --parent pump-ae-1.2.0 \\
          --report eval-1.3.0/report.json
    """
    import numpy as np

    from aiot import paths
    from aiot.errors import ToolkitError
    from aiot.lifecycle import package as P
    from aiot.lifecycle.registry import Registry, gate
    from aiot.model.reference import TflmReference

    reg = Registry(registry or paths.build_dir() / "registry")
    if new_key:
        P.generate_key(key)
    if not Path(key).is_file():
        raise ToolkitError(f"--key {key}: no such file", hint="create one with --new-key (keep it secret, back it up)")
    cand = _load_report(report, "--report") if report else None
    verdict: dict = {"checked": False}
    if parent:
        base = _load_report(baseline_report, "--baseline-report") if baseline_report else reg.get(parent).get("report")
        if cand is None or base is None:
            if not accept_regression:
                raise ToolkitError(f"cannot gate {name}-{version} against {parent}: "
                                   + ("no --report for the candidate" if cand is None else f"no report stored for {parent}"),
                                   hint="evaluate both on the installation's history (aiot evaluate), pass --report "
                                        "and --baseline-report, or --accept-regression \"why\"")
        else:
            verdict = {"checked": True, "against": parent, **gate(cand, base)}
        if not verdict.get("passed", False):
            if not accept_regression:
                missed = ", ".join(f"{m['file']} rows {m['start_row']}-{m['end_row']}" for m in verdict.get("missed", []))
                fa = verdict.get("false_alarms", {})
                raise ToolkitError(
                    f"{name}-{version} is worse than {parent} on this installation's history: "
                    + (f"misses {missed}" if missed else "")
                    + (f"{'; ' if missed else ''}false alarms {fa.get('candidate')} > {fa.get('current')}"
                       if fa and fa.get("candidate", 0) > fa.get("current", 0) else ""),
                    hint="fix the model, or sign anyway with --accept-regression \"reason\" (recorded)")
            verdict["accepted_regression"] = accept_regression
    tfl = Path(model).read_bytes()
    x = np.load(vectors)["x_int8"]
    x = x.reshape(len(x), -1)[:golden]
    y = TflmReference(tfl).run(x)
    from aiot.lifecycle.plan import build_plan

    try:  # the model as data, so the device's trial runs the package's own network
        plan = build_plan(tfl)
    except ToolkitError as e:
        plan = b""
        click.echo(f"note: no model-as-data plan in this release ({e.message}); the device checks its golden "
                   "vectors on its compiled-in model", err=True)
    names = [c.strip() for c in channels.split(",") if c.strip()]
    meta = {"name": name, "version": version, "data_hash": data_hash or hashlib.sha256(Path(vectors).read_bytes()).hexdigest(),
            "settings": json.loads(settings_json) if settings_json else None, "channels": names, "window": window,
            "parent": parent, "tflite_sha256": hashlib.sha256(tfl).hexdigest()}
    body = P.build_container(meta, tflite=tfl, monitor_config=Path(monitor_config).read_bytes() if monitor_config else b"",
                             golden=list(zip(x, y)), plan=plan, schema=P.schema_id(names, window),
                             model_version=int(version.split(".")[1]) if version.count(".") >= 1 else 0)
    out = reg.root / ".signing" / f"{name}-{version}.bin"
    image = P.sign(body, key, version=version, out=out)
    out.unlink()
    rel = reg.add(image, name=name, version=version, parent=parent, report=cand, gate=verdict)
    click.echo(f"release {rel.id}: {reg.root / rel.entry['file']} ({len(image):,} bytes, digest {rel.entry['digest'][:16]})")
    if verdict.get("checked"):
        c = verdict["caught"]
        click.echo(f"gate vs {parent}: caught {c['candidate']}/{c['incidents']} (current {c['current']}), false alarms "
                   f"{verdict['false_alarms']['candidate']} (current {verdict['false_alarms']['current']})"
                   + (" - PASSED" if verdict["passed"] else f" - FAILED, accepted: {accept_regression}"))
