"""One model per installation on the device targets: the monitor's noise-unit model trained
on a file's own commissioning rows (``aiot evaluate --per-file`` on host / qemu, and any
data without a fleet recording), and the tuning that picks its knobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiot.data import Series, load_csv
from aiot.errors import ToolkitError


def _series(rows: int, seed: int = 0, labels: np.ndarray | None = None) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float64)
    v = np.stack([10 + 0.5 * np.sin(t / 7) + 0.1 * rng.normal(size=rows),
                  5 + 0.2 * rng.normal(size=rows),
                  0.3 * rng.normal(size=rows)], axis=1)
    return Series(timestamps=t, values=v, valid=np.ones_like(v, bool), labels=labels, channels=["a", "b", "c"])


def _noise_units(head: Series, commission: int) -> tuple[np.ndarray, np.ndarray]:
    """The installation's baseline and noise as the monitor takes them (first half, ddof 1)."""
    return head.values[:commission].mean(axis=0), head.values[:commission].std(axis=0, ddof=1)


def reconstruction(model_dir, x: np.ndarray) -> np.ndarray:
    """Noise-unit windows ``x`` (N, W*C) through the int8 model with tflite-micro (the golden
    reference): quantized in, run, dequantized out."""
    from aiot.model.reference import TflmReference

    ref = TflmReference((model_dir / "model.tflite").read_bytes())
    ind, outd = ref.input_details, ref.output_details
    s_in, z_in = ind["quantization_parameters"]["scales"][0], ind["quantization_parameters"]["zero_points"][0]
    s_out, z_out = outd["quantization_parameters"]["scales"][0], outd["quantization_parameters"]["zero_points"][0]
    q = np.clip(np.round(x / s_in) + z_in, -128, 127).astype(np.int8)
    return (ref.run(q).reshape(len(x), -1).astype(np.float64) - z_out) * s_out


def _errors(model_dir, x: np.ndarray) -> np.ndarray:
    """Mean squared reconstruction error of noise-unit windows through the int8 model."""
    return ((x - reconstruction(model_dir, x)) ** 2).mean(axis=1)


@pytest.mark.slow
def test_an_installation_model_learns_its_own_commissioning_rows_in_noise_units(tmp_path, monkeypatch):
    from aiot.evaluate.monitor_device import device_file_model, monitor_knobs

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    head = _series(400)
    model = device_file_model(head, window=8, epochs=20, seed=0, name="pump7")
    meta = json.loads((model / "meta.json").read_text())
    assert meta["kind"] == "per-file" and meta["installation"] == "pump7" and meta["window"] == 8
    assert np.allclose(meta["fleet_mean"], head.values.mean(axis=0))  # its own spread, no fleet
    assert (model / "c" / "model.c").is_file()

    # in noise units: a commissioning window reconstructs; the same window with one sensor
    # 6 noise units off does not
    commission = monitor_knobs(8, 400)["commission_samples"]
    mean, sd = _noise_units(head, commission)
    z = np.clip((head.values - mean) / sd, -8, 8)
    x = np.stack([z[i : i + 8].reshape(-1) for i in range(0, 392, 4)])
    normal = _errors(model, x)
    shifted = x.reshape(len(x), 8, 3).copy()
    shifted[:, :, 1] += 6.0
    faulty = _errors(model, shifted.reshape(len(x), -1))
    assert np.median(faulty) > 5 * np.quantile(normal, 0.99)

    # cached by the commissioning rows it saw: the same rows are the same model, untouched;
    # one changed row is another model
    stamp = (model / "model.tflite").stat().st_mtime_ns
    assert device_file_model(head, window=8, epochs=20, seed=0, name="pump7") == model
    assert (model / "model.tflite").stat().st_mtime_ns == stamp
    other = _series(400)
    other.values[399, 0] += 1.0
    assert device_file_model(other, window=8, epochs=20, seed=0, name="pump7") != model


@pytest.mark.slow
def test_labelled_commissioning_rows_stay_out_of_the_training_windows_and_every_row_trains(tmp_path, monkeypatch):
    """Labelled rows are left out of training wherever they lie, and an installation's own
    rows are one segment, whatever their number: 1,500 rows used to be cut at the fleet's
    1,150-row pseudo-installation length (the rest never trained, and labels no longer lined
    up with the rows). One model serves both facts: a labelled block inside the first 1,150
    rows and one past them."""
    from aiot.evaluate.monitor_device import device_file_model

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    labels = np.zeros(1500, np.int8)
    labels[100:150] = 1
    labels[1300:1350] = 1  # past the first 1,150 rows
    model = device_file_model(_series(1500, labels=labels), window=8, epochs=1, seed=0)
    manifest = json.loads((model / "pkg" / "manifest.json").read_text())
    training = manifest["training"]
    assert training["rows"] == 1500
    # every window touching rows 100..149 (50 + 7 of them) is skipped, and so is every one
    # touching rows 1300..1349
    assert training["skipped_fault_windows"] == 57 + 57
    # every window ending in the training rows is accounted for: fitted, calibration or skipped
    calibration = manifest["score"]["calibration_windows"]
    counted = training["fit_windows"] + training["skipped_fault_windows"] + training["skipped_incomplete_windows"]
    assert counted + calibration == 1500 - 8 + 1


def _write_installation(path, rows: int, fault: tuple[int, int], seed: int) -> None:
    s = _series(rows, seed)
    s.values[fault[0] : fault[1], 1] += 3.0  # 15 sigma of sensor b
    lab = np.zeros(rows, np.int8)
    lab[fault[0] : fault[1]] = 1
    lines = ["timestamp,a,b,c,label"] + [f"{int(t)},{a:.5f},{b:.5f},{c:.5f},{y}"
                                         for t, (a, b, c), y in zip(s.timestamps, s.values, lab)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_host_target_without_a_fleet_recording_trains_each_installation_its_own_model(tmp_path, monkeypatch):
    """Data without a normal-operation file runs on the device target (it used to be refused):
    each file gets a model of its own commissioning rows, recorded in report.json, and the
    monitor with that model flags the fault and stays quiet before it."""
    from aiot.evaluate.monitor_device import FLOOR_KNOB, device_file_model, validated_knobs
    from aiot.evaluate.run import evaluate

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    data = tmp_path / "site"
    data.mkdir()
    _write_installation(data / "p1.csv", 900, (600, 700), seed=1)
    _write_installation(data / "p2.csv", 900, (650, 800), seed=2)
    # each file's model of its first 400 rows, trained here (TensorFlow is loaded in this
    # process already): the run's two spawned workers must pick exactly these from the cache,
    # so neither imports TensorFlow to train again (training inside a worker: test_fleet_dask.py)
    floor = validated_knobs()[FLOOR_KNOB]  # the per-file knobs: its model is trained with that floor
    own = {}
    for name in ("p1.csv", "p2.csv"):
        head = load_csv(data / name).head(400)
        own[name] = str(device_file_model(head, 8, 20, 0, noise_floor=floor, name=head.source.stem))
    summary = evaluate(data=data, fmt="generic", out=tmp_path / "o", train_rows=400, target="host",
                       epochs=20, jobs=2)
    assert summary["incidents"] == 2 and summary["incidents_detected"] == 2
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["model"]["kind"].startswith("per-file") and len(rep["model"]["firmware_sources_sha256"]) == 16
    models = []
    for f in rep["files"]:
        info = f["commissioning"]["model"]
        assert info["sha256"] and info["tflite_bytes"] > 1000
        models.append(info["package"])
        # the model is the one of the file's first 400 rows (the cache key is their digest and the knobs)
        assert own[f["file"].split("/")[-1]] == info["package"]
    assert models[0] != models[1]
    pred = list(csv_rows(tmp_path / "o" / "predictions.csv"))
    before = [r for r in pred if r["file"].endswith("p1.csv") and 400 <= int(float(r["timestamp"])) < 600]
    assert before and not any(r["alert"] == "1" for r in before)  # quiet before the fault


def csv_rows(path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def test_cli_per_file_on_the_host_target_is_accepted_and_still_checks_the_pick_kind(tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    pick = tmp_path / "device-w8-far10.json"
    pick.write_text(json.dumps({"aiot_alert_settings": 1, "target": "device", "window": 8,
                                "knobs": {"alert_margin": 1.5, "clear_margin": 1.5}, "picked_by": {"model": "fleet"}}))
    skab_mini = Path(__file__).parent / "fixtures" / "eval" / "skab_mini"
    r = CliRunner().invoke(main, ["evaluate", "--data", str(skab_mini), "--format", "skab", "--train-rows", "4",
                                  "--target", "host", "--per-file", "--alert-settings", str(pick),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "picked with the fleet model, but this run uses one model per file" in r.output
    # data without a fleet recording runs one model per file whether --per-file is given or not
    (tmp_path / "site").mkdir()
    _write_installation(tmp_path / "site" / "p.csv", 900, (600, 700), seed=1)
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "site"), "--target", "host",
                                  "--alert-settings", str(pick), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "picked with the fleet model, but this run uses one model per file" in r.output
    assert not (tmp_path / "o").exists()


def test_tuning_per_file_goes_with_the_reference_grid_or_the_monitor_only(tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    normal = tmp_path / "normal.csv"
    normal.write_text("timestamp,a\n0,1\n1,2\n")
    r = CliRunner().invoke(main, ["tune", str(normal), "--per-file", "--target", "reference", "--tracking"])
    assert r.exit_code == 2 and "--per-file goes with the reference rule's grid or --target device" in r.output


def test_an_installation_too_short_for_its_own_model_names_the_file_and_what_to_do(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from aiot.cli import main

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    (tmp_path / "site").mkdir()
    _write_installation(tmp_path / "site" / "short.csv", 80, (60, 70), seed=0)
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "site"), "--format", "generic",
                                  "--target", "host", "--train-rows", "30", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    # before any training: the monitor's noise profile (half the rows) + 4 calibration windows of 8
    assert "short.csv: 30 commissioning rows are too few" in r.output
    assert "at least 63 at window 8" in r.output and "--train-rows 63" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("scale, shown", [(0.0015, "0.0015 s (1.5 ms) is not a whole number"),
                                          (1e-4, "0.0001 s (0.1 ms) is outside the monitor's range")])
def test_a_sample_period_the_monitor_cannot_count_is_refused_before_any_training(tmp_path, monkeypatch, scale,
                                                                                  shown):
    """The device targets used to round the period silently (0.1 ms ran as 1 ms, so every
    sample but the first of each millisecond was rejected as early)."""
    from click.testing import CliRunner

    from aiot.cli import main
    from aiot.evaluate import monitor_device

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(monitor_device, "device_file_model", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "site").mkdir()
    for name in ("a.csv", "b.csv"):
        _write_installation(tmp_path / "site" / name, 300, (250, 260), seed=0)
        lines = (tmp_path / "site" / name).read_text().splitlines()
        (tmp_path / "site" / name).write_text("\n".join(
            [lines[0]] + [f"{i * scale!r},{row.split(',', 1)[1]}" for i, row in enumerate(lines[1:])]) + "\n")
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "site"), "--format", "generic",
                                  "--target", "host", "--train-rows", "200", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"a.csv: sample period {shown}" in r.output and "(so do all 2 files)" in r.output, r.output
    assert "whole-millisecond" in r.output or "whole milliseconds" in r.output
    assert not (tmp_path / "o").exists()


def test_a_sensor_dead_while_commissioned_is_named_before_any_training(tmp_path, monkeypatch):
    from aiot.evaluate.monitor_device import device_file_model

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    head = _series(400)
    head.valid[:250, 2] = False  # sensor c silent through the monitor's 200 baseline rows and beyond
    head.values[:250, 2] = np.nan
    with pytest.raises(ToolkitError, match=r"sensor\(s\) c sent no valid sample in the first 200") as e:
        device_file_model(head, window=8, epochs=1, seed=0)
    assert "reconnect the sensor" in e.value.hint
    assert not (tmp_path / "build").exists() or not any((tmp_path / "build").rglob("model.tflite"))


def test_without_a_settings_file_each_kind_of_model_runs_the_shipped_defaults(tmp_path, monkeypatch,
                                                                               silent_device):
    """The fleet model runs the header's defaults plus the evaluation's fleet noise floor
    (EVAL_KNOBS), one model per installation the defaults cross-validated with such models
    (PER_FILE_KNOBS); the reference target keeps its rule per kind of model; report.json says
    which."""
    from aiot.evaluate import monitor_device, pipeline
    from aiot.evaluate import run as run_mod
    from aiot.evaluate.device import rule_for
    from aiot.installation import EVAL_KNOBS, PER_FILE_KNOBS

    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "model.tflite").write_bytes(b"not trained here")
    (fake / "meta.json").write_text("{}")

    monkeypatch.setattr(monitor_device, "device_fleet_model", lambda *a, **k: fake)
    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: fake)
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    monkeypatch.setattr(pipeline, "installation_model", lambda rec, start, settings: (fake, None))
    (tmp_path / "site").mkdir()
    _write_installation(tmp_path / "site" / "p.csv", 900, (600, 700), seed=1)
    _write_installation(tmp_path / "normal.csv", 900, (0, 0), seed=2)
    got = {}
    for target in ("host", "reference"):
        for own in (False, True):
            out = tmp_path / f"{target}-{own}"
            run_mod.evaluate(data=tmp_path / "site", fmt="generic", out=out, train_rows=400, target=target, jobs=1,
                             fleet=None if own else tmp_path / "normal.csv")
            rep = json.loads((out / "report.json").read_text())
            got[target, own] = rep["settings"]
            assert rep["environment"]["numpy"] == np.__version__  # what the trained models depend on
    assert got["host", False]["knobs"] == EVAL_KNOBS and got["host", True]["knobs"] == PER_FILE_KNOBS
    assert got["reference", False]["rule"] == rule_for(32).to_json()
    assert got["reference", True]["rule"] == rule_for(32, per_file=True).to_json() != rule_for(32).to_json()


def _toolkit_imports(module: Path, root: Path, seen: set[str]) -> set[str]:
    """The aiot modules ``module`` imports, transitively (``from aiot.x import ...``)."""
    import ast

    rel = module.relative_to(root).as_posix()
    if rel in seen:
        return seen
    seen.add(rel)
    for node in ast.walk(ast.parse(module.read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("aiot"):
            continue
        base = root.joinpath(*node.module.split(".")[1:])
        cands = [base.with_suffix(".py"), base / "__init__.py"]
        cands += [base / f"{a.name}.py" for a in node.names] + [base / a.name / "__init__.py" for a in node.names]
        for cand in cands:
            if cand.is_file() and cand != root / "__init__.py":
                _toolkit_imports(cand, root, seen)
    return seen


def test_the_model_caches_are_keyed_by_every_module_that_shapes_a_model():
    """A module that changes how a model is trained or generated must be in the cache key,
    or a model cached before the change outlives it (data.py, with the gap rule, was not)."""
    import aiot
    from aiot.evaluate.pipeline import TRAINING_MODULES

    root = Path(aiot.__file__).parent
    shaping = set()
    for mod in ("model/train.py", "model/quantize.py", "codegen/__init__.py"):
        _toolkit_imports(root / mod, root, shaping)
    # read configuration, report errors and progress, check the result, or keep TensorFlow's
    # start-up lines off the terminal: no effect on the model
    not_shaping = {"errors.py", "paths.py", "progress.py", "model/package.py", "model/reference.py", "quiet.py",
                   "model/__init__.py", "target/__init__.py"}
    assert shaping - not_shaping <= set(TRAINING_MODULES), shaping - not_shaping - set(TRAINING_MODULES)
    assert {"data/__init__.py", "model/features.py"} <= shaping
    assert all((root / m).is_file() for m in TRAINING_MODULES), [m for m in TRAINING_MODULES if not (root / m).is_file()]


@pytest.mark.slow
def test_the_fleet_model_cache_tells_recordings_with_other_sensors_apart(tmp_path, monkeypatch):
    """The same fleet source id with other columns (a --fleet file read with the data's
    sensors) must not reuse a model trained on different sensors."""
    from aiot.evaluate.monitor_device import device_fleet_model

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    three = _series(1200)
    two = Series(timestamps=three.timestamps, values=three.values[:, :2].copy(), valid=three.valid[:, :2].copy(),
                 labels=None, channels=["a", "b"])
    m3 = device_fleet_model(three, "same-source", window=8, epochs=1, seed=0, commissioning_rows=400)
    m2 = device_fleet_model(two, "same-source", window=8, epochs=1, seed=0, commissioning_rows=400)
    assert m2 != m3
    assert json.loads((m2 / "pkg" / "manifest.json").read_text())["channels"] == ["a", "b"]


@pytest.mark.parametrize("name", ["device_fleet_model", "device_file_model", "normal_only", "fleet_spread",
                                  "fleet_floors", "_build_device_pca_model"])
def test_the_model_cache_key_changes_with_the_code_that_chooses_and_scales_the_training_rows(monkeypatch, name):
    # a cached model made by older code is stale: which rows train it and in what units are part
    # of what it is (a change to device_file_model's rows once served models from before it)
    from aiot import installation

    before = installation._model_dir(["k"], "device-file")

    def other(*a, **k):  # another body under the same name
        return None

    monkeypatch.setattr(installation, name, other)
    assert installation._model_dir(["k"], "device-file") != before


@pytest.mark.slow
def test_installations_with_other_sensors_each_run_their_own_model(tmp_path, monkeypatch):
    """Without a fleet recording every file is its own installation with its own model, so a
    folder of run-to-failure recordings from different machines (a test rig's 8 channels, the
    next one's 4) is evaluated file by file; it used to stop on "sensor columns differ"."""
    from aiot.cli import main
    from click.testing import CliRunner

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    data = tmp_path / "rigs"
    data.mkdir()
    _write_installation(data / "p1.csv", 900, (600, 700), seed=1)
    _write_installation(data / "p2.csv", 900, (650, 800), seed=2)
    lines = (data / "p2.csv").read_text().splitlines()  # p2: sensors b and c only, renamed
    (data / "p2.csv").write_text("\n".join(["timestamp,flow,temp,label"] + [
        ",".join(r.split(",")[0:1] + r.split(",")[2:]) for r in lines[1:]]) + "\n")
    args = ["evaluate", "--data", str(data), "--train-rows", "400", "--target", "host", "--epochs", "5",
            "--jobs", "1"]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "incidents detected 2/2" in r.output
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [f["channels"] for f in rep["files"]] == [["a", "b", "c"], ["flow", "temp"]]
    # one model for all (a fleet recording) still needs the same sensors in every file
    fleet = tmp_path / "normal.csv"
    fleet.write_text((data / "p1.csv").read_text())
    r = CliRunner().invoke(main, [*args, "--fleet", str(fleet), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "sensor columns differ" in r.output and "p2.csv" in r.output
