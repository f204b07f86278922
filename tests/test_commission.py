"""`aiot commission`: an installation's own model and a firmware image that boots with its
whole monitor configuration. The QEMU test checks the image against the host build of the
same monitor C fed the same samples (what `aiot evaluate --per-file --target host` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.testing import requires_arm, requires_qemu


def _installation(path, rows: int = 900, fault: tuple[int, int] = (600, 700), labelled: bool = False) -> None:
    """Three sensors; sensor b 15 sigma off over ``fault``; ``labelled``: a label column, 1 there."""
    rng = np.random.default_rng(1)
    t = np.arange(rows)
    v = np.stack([10 + 0.5 * np.sin(t / 7) + 0.1 * rng.normal(size=rows), 5 + 0.2 * rng.normal(size=rows),
                  0.3 * rng.normal(size=rows)], axis=1)
    v[fault[0] : fault[1], 1] += 3.0  # 15 sigma of sensor b
    rows_text = [f"{i},{a:.5f},{b:.5f},{c:.5f}" for i, (a, b, c) in enumerate(v)]
    header = "timestamp,a,b,c"
    if labelled:
        header += ",label"
        rows_text = [f"{r},{int(fault[0] <= i < fault[1])}" for i, r in enumerate(rows_text)]
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows_text))


def _cli(*args):
    return CliRunner().invoke(main, ["commission", *map(str, args)])


@pytest.mark.slow
@pytest.mark.qemu
@requires_arm
@requires_qemu
def test_the_image_boots_with_its_installation_and_monitors_it_as_the_host_build_does(tmp_path, monkeypatch):
    from aiot.target.boards import get_board
    from aiot.data import load_csv
    from aiot.installation import PER_FILE_KNOBS
    from aiot.evaluate.monitor_device import MonitorDevice, _rows_from_windows, config_knobs, installation_config
    from aiot.device.hil import open_device

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _installation(tmp_path / "pump7.csv")
    r = _cli("--data", tmp_path / "pump7.csv", "--rows", 400, "--board", "mps2-an386", "--out", tmp_path / "fw")
    assert r.exit_code == 0, r.output
    assert "3 sensors x window 8, trained on 400 rows" in r.output and "is emulated" in r.output
    assert f"aiot gateway --qemu mps2-an386 --elf {tmp_path / 'fw' / 'firmware.elf'} --replay" in r.output
    # the defaults cross-validated with one model per installation, and the way to the better fleet model: said
    assert "runs the defaults cross-validated with such models" in r.output and "--fleet-data" in r.output
    doc = json.loads((tmp_path / "fw" / "commission.json").read_text())
    assert doc["alert_settings"]["knobs"] == PER_FILE_KNOBS and doc["commissioning_rows"] == 400
    assert doc["environment"]["numpy"] == np.__version__ and "keras" in doc["environment"]

    series = load_csv(tmp_path / "pump7.csv")
    head = series.head(400)
    model = doc["model"]["dir"]
    expected_cfg = installation_config(head, 8, config_knobs(model, PER_FILE_KNOBS))
    ts = np.round((series.timestamps - series.timestamps[0]) * 1000).astype(np.int64)

    with open_device(get_board("mps2-an386"), tmp_path / "fw" / "firmware.elf") as dev:
        assert bytes(dev.config) == bytes(expected_cfg)  # configured at boot, nothing sent
        outs = dev.push(ts, series.values)  # commissioning rows, then the rest
    on_device = _rows_from_windows(ts[400:], outs, 3)

    host = MonitorDevice(model, 8, "host", PER_FILE_KNOBS)
    host.commission(head)
    on_host = host.stream(series, 400)
    assert on_device.state == on_host.state
    assert np.array_equal(on_device.alert, on_host.alert)
    assert np.array_equal(on_device.score, on_host.score, equal_nan=True)
    # and it does the job: quiet before the fault, flags it
    alert = on_device.alert
    assert not alert[: 600 - 400].any() and alert[600 - 400 : 700 - 400 + 40].any()


def test_settings_picked_for_the_fleet_model_are_refused_without_the_fleets_recording(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _installation(tmp_path / "p.csv")
    fleet_pick = tmp_path / "device-w8-far10.json"
    fleet_pick.write_text(json.dumps({"aiot_alert_settings": 1, "target": "device", "window": 8,
                                      "knobs": {"alert_margin": 1.25}, "picked_by": {"model": "fleet"}}))
    r = _cli("--data", tmp_path / "p.csv", "--board", "mps2-an386", "--out", tmp_path / "o",
             "--alert-settings", fleet_pick)
    assert r.exit_code == 2 and "picked with the fleet model" in r.output and "--per-file" in r.output
    assert "--fleet-data" in r.output  # how to run it: with the fleet's normal recording
    assert not (tmp_path / "build").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--board", "no-such-board"], "no-such-board"),
    (["--board", "mps2-an386", "--rows", "5000"], "--rows 5000, but the recording has 900 rows"),
    (["--board", "mps2-an386", "--rows", "30"], "30 commissioning rows leave 1 calibration"),
    (["--board", "mps2-an386", "--timestamp-column", "when"], "when"),
])
def test_bad_requests_say_what_and_where_before_any_training(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _installation(tmp_path / "p.csv")
    r = _cli("--data", tmp_path / "p.csv", "--out", tmp_path / "o", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert "--train-rows" not in r.output  # evaluate's option; commission's is --rows
    assert not any((tmp_path / "build").rglob("model.tflite")) if (tmp_path / "build").exists() else True


def test_non_finite_configuration_values_never_reach_the_header():
    from aiot import monitor as M
    from aiot.commission import render_boot_config
    from aiot.errors import ToolkitError

    cfg = M.default_config(2, 8, 1000)
    cfg.alert_margin = float("nan")
    with pytest.raises(ToolkitError, match="not a finite number"):
        render_boot_config(cfg)


@pytest.mark.slow
@requires_arm
@pytest.mark.parametrize("rows, fault", [(500, (100, 150)), (3000, (1700, 1800))], ids=["500-rows", "3000-rows"])
def test_a_label_column_is_not_a_sensor_and_its_faulty_rows_stay_out_of_training(tmp_path, monkeypatch, rows, fault):
    # 3000 rows: more than the fleet model's 1,150-row segments (this once ended in a numpy
    # broadcast error, and then trained on 2,300 of the rows)
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _installation(tmp_path / "p.csv", rows=rows, fault=fault, labelled=True)
    r = _cli("--data", tmp_path / "p.csv", "--board", "mps2-an386", "--out", tmp_path / "fw", "--epochs", 1)
    assert r.exit_code == 0, r.output
    n = fault[1] - fault[0]
    assert "Traceback" not in r.output and f"{n} rows labelled as faults kept out of training" in r.output
    doc = json.loads((tmp_path / "fw" / "commission.json").read_text())
    assert doc["channels"] == ["a", "b", "c"] and doc["monitor_config"]["num_channels"] == 3
    assert doc["commissioning_rows"] == rows and doc["labelled_fault_rows"] == n
    assert (tmp_path / "fw" / "firmware.elf").is_file()
    training = json.loads((Path(doc["model"]["dir"]) / "pkg" / "manifest.json").read_text())["training"]
    assert training["rows"] == rows  # every commissioning row trains
    # exactly the windows touching the faulty rows are left out, by their labels
    assert training["skipped_fault_windows"] == n + 7 and training["skipped_incomplete_windows"] == 0


def test_commissioning_rows_whose_baseline_rows_are_all_faults_are_refused_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _installation(tmp_path / "p.csv", rows=400, fault=(0, 250), labelled=True)
    r = _cli("--data", tmp_path / "p.csv", "--board", "mps2-an386", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "labelled as a fault in the first 200 commissioning rows" in r.output and "a, b, c" in r.output
    assert not any((tmp_path / "build").rglob("model.tflite")) if (tmp_path / "build").exists() else True


def _with_period(path, period_s: float, rows: int = 900) -> None:
    _installation(path, rows=rows)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [f"{i * period_s!r},{row.split(',', 1)[1]}"
                                            for i, row in enumerate(lines[1:])]) + "\n")


@pytest.mark.parametrize("period_s, shown", [(0.0001, "0.0001 s"), (0.0015, "0.0015 s"), (5e6, "5e+06 s"),
                                             (1e-5, "1e-05 s")])
def test_a_sample_period_that_is_no_whole_number_of_milliseconds_is_refused_before_any_training(
        tmp_path, monkeypatch, period_s, shown):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _with_period(tmp_path / "p.csv", period_s)
    r = _cli("--data", tmp_path / "p.csv", "--board", "mps2-an386", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"p.csv: sample period {shown}" in r.output and "whole" in r.output and "milliseconds" in r.output
    assert not any((tmp_path / "build").rglob("model.tflite")) if (tmp_path / "build").exists() else True


@pytest.mark.parametrize("period_s, ms", [(1.0, 1000), (0.01, 10), (0.001, 1), (0.0100004, 10), (3600.0, 3_600_000),
                                          (4_294_967.295, 4_294_967_295)])
def test_whole_millisecond_sample_periods_are_the_monitors(tmp_path, period_s, ms):
    from aiot.data import load_csv
    from aiot.evaluate.monitor_device import installation_period_ms

    _with_period(tmp_path / "p.csv", period_s, rows=20)
    assert installation_period_ms(load_csv(tmp_path / "p.csv"), tmp_path / "p.csv") == ms


@requires_arm
def test_an_installation_of_more_than_eight_sensors_gets_an_image_that_holds_them(tmp_path, monkeypatch):
    """12 sensors: the image was built for the monitor's default 8 channels and gcc refused the
    installation's configuration ("excess elements in array initializer")."""
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    rng = np.random.default_rng(3)
    v = 5 + 0.1 * rng.normal(size=(800, 12))
    (tmp_path / "p.csv").write_text("timestamp," + ",".join(f"s{k}" for k in range(12)) + "\n" + "".join(
        f"{i}," + ",".join(f"{x:.4f}" for x in row) + "\n" for i, row in enumerate(v)))
    r = _cli("--data", tmp_path / "p.csv", "--board", "mps2-an386", "--out", tmp_path / "fw", "--epochs", 1)
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "fw" / "commission.json").read_text())
    assert doc["monitor_config"]["num_channels"] == 12 and (tmp_path / "fw" / "firmware.elf").is_file()


# ---- the fleet model: what `aiot evaluate` cross-validated, on a board in one verb ----------

def _plant_csv(path, rows: int, start: int = 0, broken_from: int | None = None) -> None:
    """Rows ``start``.. of the 12-sensor plant of test_fleet_linear_model (3 process variables);
    ``broken_from``: sensor s5 off its relations from that row on."""
    from test_fleet_linear_model import plant_csv

    plant_csv(path, rows, start, None if broken_from is None else (broken_from, None))


def _pick(path, knobs: dict, model: str = "fleet"):
    path.write_text(json.dumps({"aiot_alert_settings": 1, "target": "device", "window": 8, "knobs": knobs,
                                "picked_by": {"model": model}}))
    return path


PCA_PICK = {"fleet_noise_floor": 1.0, "fleet_pca_variance": 0.99, "residual_score": 4}


def _evaluations_model(normal, head, knobs: dict, epochs: int = 30):
    """The fleet model `aiot evaluate --fleet NORMAL --target host|qemu:BOARD` builds for files
    commissioned on ``head`` (evaluate/run.py's call, seed 0)."""
    from aiot.data import load_csv, sha256_file
    from aiot.installation import device_fleet_model

    fleet = load_csv(normal, channels=list(head.channels), label_column=None)
    return device_fleet_model(fleet, sha256_file(normal), 8, epochs, 0, head.rows,
                              noise_floor=float(knobs.get("fleet_noise_floor", 0.0)),
                              pca_variance=float(knobs.get("fleet_pca_variance", 0.0)))


@pytest.mark.slow
@pytest.mark.qemu
@requires_arm
@requires_qemu
def test_a_fleet_pick_boots_with_the_fleet_model_and_monitors_as_the_evaluation_does(tmp_path, monkeypatch):
    """`--fleet-data` + a pick of the linear fleet model (fleet_pca_variance, residual_score
    4): the image runs the model and configuration `aiot evaluate` scores, byte for byte."""
    from aiot.target.boards import get_board
    from aiot.data import load_csv
    from aiot.evaluate.monitor_device import MonitorDevice, _rows_from_windows
    from aiot.device.hil import open_device

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _plant_csv(tmp_path / "normal.csv", 1100)
    _plant_csv(tmp_path / "unit4.csv", 1200, start=1100, broken_from=800)
    pick = _pick(tmp_path / "device-w8-cv-far5.json", PCA_PICK)
    r = _cli("--data", tmp_path / "unit4.csv", "--rows", 400, "--fleet-data", tmp_path / "normal.csv",
             "--alert-settings", pick, "--board", "mps2-an386", "--out", tmp_path / "fw")
    assert r.exit_code == 0, r.output
    assert "the fleet model of normal.csv" in r.output and "12 sensors x window 8" in r.output
    doc = json.loads((tmp_path / "fw" / "commission.json").read_text())
    series = load_csv(tmp_path / "unit4.csv")
    head = series.head(400)
    model = _evaluations_model(tmp_path / "normal.csv", head, PCA_PICK)
    assert doc["model"]["dir"] == str(model) and doc["model"]["kind"] == "fleet"
    assert doc["model"]["trained_on"] == str(tmp_path / "normal.csv")
    assert json.loads((model / "meta.json").read_text())["pca_components"] == 3
    assert doc["alert_settings"]["knobs"] == PCA_PICK and doc["monitor_config"]["residual_score"] == 4

    host = MonitorDevice(model, 8, "host", PCA_PICK)  # what the evaluation streams a file through
    host.commission(head)
    on_host = host.stream(series, 400)
    ts = np.round((series.timestamps - series.timestamps[0]) * 1000).astype(np.int64)
    with open_device(get_board("mps2-an386"), tmp_path / "fw" / "firmware.elf") as dev:
        assert bytes(dev.config) == bytes(host.config)  # configured at boot, nothing sent
        outs = dev.push(ts, series.values)
    on_device = _rows_from_windows(ts[400:], outs, 12)
    assert on_device.state == on_host.state
    assert np.array_equal(on_device.alert, on_host.alert)
    assert np.array_equal(on_device.score, on_host.score, equal_nan=True)
    # quiet while the plant keeps its relations, alerting once s5 leaves them
    alert = on_device.alert
    assert not alert[: 800 - 400].any() and alert[800 - 400 :].any()


@pytest.mark.slow
@requires_arm
def test_the_shipped_defaults_with_the_fleets_recording_build_the_evaluations_fleet_model(tmp_path, monkeypatch):
    """No settings file: the shipped defaults, cross-validated with the fleet autoencoder, get
    that autoencoder; with --fleet, every installation of a folder gets the same model."""
    from aiot.data import load_csv
    from aiot.evaluate.monitor_device import EVAL_KNOBS, config_knobs, installation_config

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _plant_csv(tmp_path / "normal.csv", 1100)
    (tmp_path / "site").mkdir()
    _plant_csv(tmp_path / "site" / "unit1.csv", 500, start=1100)
    _plant_csv(tmp_path / "site" / "unit2.csv", 500, start=1700)
    r = _cli("--data", tmp_path / "site" / "unit1.csv", "--fleet-data", tmp_path / "normal.csv", "--epochs", 1,
             "--board", "mps2-an386", "--out", tmp_path / "fw")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "fw" / "commission.json").read_text())
    head = load_csv(tmp_path / "site" / "unit1.csv").head(500)
    model = _evaluations_model(tmp_path / "normal.csv", head, EVAL_KNOBS, epochs=1)
    assert doc["model"]["dir"] == str(model) and doc["alert_settings"]["knobs"] == EVAL_KNOBS
    assert doc["monitor_config"] == installation_config(head, 8, config_knobs(model, EVAL_KNOBS)).as_dict()
    assert "kept out of training" not in r.output  # the installation's rows train nothing
    assert "chosen with the fleet model, not" not in r.output

    # two at once: both find no model cached for their 500 rows (--epochs 1 here is another key), both build
    # it; the later never removes the entry the earlier published while it is being copied
    r = _cli("--data", tmp_path / "site", "--fleet", "--fleet-data", tmp_path / "normal.csv", "--epochs", 2,
             "--jobs", 2, "--board", "mps2-an386", "--out", tmp_path / "registry")
    assert r.exit_code == 0, r.output
    images = json.loads((tmp_path / "registry" / "registry.json").read_text())["images"]
    assert sorted(images) == ["unit1", "unit2"]
    from aiot.data import sha256_file

    shared = _evaluations_model(tmp_path / "normal.csv", head, EVAL_KNOBS, epochs=2)  # cached by the run: its own
    assert {i["model_sha256"] for i in images.values()} == {sha256_file(shared / "model.tflite")}


@pytest.mark.parametrize("case", ["sensor-missing", "sensor-empty", "per-file-pick", "not-a-file", "too-short"])
def test_a_fleet_recording_that_cannot_serve_the_installation_is_refused_before_any_training(
        tmp_path, monkeypatch, case):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _plant_csv(tmp_path / "unit.csv", 500)
    _plant_csv(tmp_path / "normal.csv", 1100)
    args = ["--fleet-data", tmp_path / "normal.csv"]
    if case == "sensor-missing":
        lines = (tmp_path / "normal.csv").read_text().splitlines()
        (tmp_path / "normal.csv").write_text("\n".join(",".join(l.split(",")[:-1]) for l in lines) + "\n")
        expected = ["normal.csv", "s11"]
    elif case == "sensor-empty":  # the column is there, never a value in it
        lines = (tmp_path / "normal.csv").read_text().splitlines()
        (tmp_path / "normal.csv").write_text("\n".join([lines[0]] + [",".join(l.split(",")[:-1]) + ","
                                                                      for l in lines[1:]]) + "\n")
        expected = ["normal.csv", "s11", "no value"]
    elif case == "per-file-pick":
        args += ["--alert-settings", _pick(tmp_path / "pf.json", {"alert_margin": 2.0}, model="per-file")]
        expected = ["picked with one model per file", "--fleet-data"]
    elif case == "not-a-file":
        args = ["--fleet-data", tmp_path]
        expected = [str(tmp_path), "not a file"]
    else:  # the model learns noise units from the first half of the 500 commissioning rows, as the device
        _plant_csv(tmp_path / "normal.csv", 250)
        expected = ["normal.csv: 250 normal rows", "first 250 commissioning rows", "--rows"]
    r = _cli("--data", tmp_path / "unit.csv", "--board", "mps2-an386", "--out", tmp_path / "o", *args)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert all(e in r.output for e in expected) and "--train-rows" not in r.output, r.output
    assert "--channels" not in r.output and "RuntimeWarning" not in r.output  # options commission does not have
    assert not (tmp_path / "o").exists()
    assert not any((tmp_path / "build").rglob("model.tflite")) if (tmp_path / "build").exists() else True


@pytest.mark.slow
@requires_arm
def test_a_pick_chosen_with_another_fleet_recording_is_built_with_a_warning_that_says_so(tmp_path, monkeypatch):
    from aiot.data import sha256_file

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _plant_csv(tmp_path / "normal.csv", 1100)
    _plant_csv(tmp_path / "normal-2025.csv", 1100, start=5000)
    _plant_csv(tmp_path / "unit.csv", 500, start=1100)
    pick = json.loads(_pick(tmp_path / "p.json", PCA_PICK).read_text())
    pick["picked_by"]["fleet_recording"] = {"path": "site/normal.csv", "sha256": sha256_file(tmp_path / "normal.csv")}
    (tmp_path / "p.json").write_text(json.dumps(pick))
    base = ["--data", tmp_path / "unit.csv", "--alert-settings", tmp_path / "p.json", "--board", "mps2-an386"]
    r = _cli(*base, "--fleet-data", tmp_path / "normal-2025.csv", "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "chosen with the fleet model of site/normal.csv" in r.output
    doc = json.loads((tmp_path / "a" / "commission.json").read_text())
    assert doc["alert_settings"]["chosen_with_fleet_recording"] == pick["picked_by"]["fleet_recording"]
    r = _cli(*base, "--fleet-data", tmp_path / "normal.csv", "--out", tmp_path / "b")
    assert r.exit_code == 0 and "warning:" not in r.output, r.output


@pytest.mark.slow
@requires_arm
def test_commissioning_on_another_number_of_rows_than_the_pick_was_chosen_with_is_said(tmp_path, monkeypatch):
    """A pick's thresholds were cross-validated on installations commissioned on N rows; the
    monitor learns its calibration maximum from however many it is given: said, not refused."""
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    _plant_csv(tmp_path / "normal.csv", 1100)
    _plant_csv(tmp_path / "unit.csv", 800, start=1100)
    pick = json.loads(_pick(tmp_path / "p.json", PCA_PICK).read_text())
    pick["picked_by"]["commissioning_rows"] = {"generic": 165}
    (tmp_path / "p.json").write_text(json.dumps(pick))
    base = ["--data", tmp_path / "unit.csv", "--fleet-data", tmp_path / "normal.csv", "--alert-settings",
            tmp_path / "p.json", "--board", "mps2-an386"]
    r = _cli(*base, "--out", tmp_path / "a")  # the whole recording: 800 rows
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "commissioned on 165 rows" in r.output and "800" in r.output
    assert "--rows 165" in r.output
    r = _cli(*base, "--rows", 165, "--out", tmp_path / "b")
    assert r.exit_code == 0 and "warning:" not in r.output, r.output
