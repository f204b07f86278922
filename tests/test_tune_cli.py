"""`aiot tune`: the picks it saves are the ones `aiot evaluate --alert-settings` reads, and
bad arguments are usage errors. Runs the reference grid on a short synthetic recording."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiot.data import synth
from aiot.cli import main
from aiot.evaluate import alert_settings


@pytest.fixture
def normal_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    path = tmp_path / "normal.csv"
    synth.write_csv(path, synth.pump_dataset(seed=1, hours=1, faults=False, dropout=False))  # 3,600 rows
    return path


def test_saved_pick_is_what_evaluate_reads(normal_csv, tmp_path):
    out = tmp_path / "picks"
    r = CliRunner().invoke(main, ["tune", str(normal_csv), "--target", "reference", "--seeds", "1",
                                  "--far-budget", "60", "--save", str(out)])
    assert r.exit_code == 0, r.output
    [path] = sorted(p for p in out.iterdir() if not p.name.startswith(".aiot"))  # beside the folder's lock file
    assert path.name == "reference-w8-far60.json"
    settings = alert_settings.load(path)  # the loader behind evaluate --alert-settings
    assert settings.target == "reference" and settings.window == 8 and settings.rule is not None
    doc = json.loads(path.read_text())
    assert doc["picked_by"]["far_budget"] == 0.6 and doc["picked_by"]["validation"]["far"] <= 0.6
    # the printed pick is the saved one, and where its alerts fall is reported
    printed = next(line for line in r.output.splitlines() if line.startswith("window 8 pick at FAR <= 60 %"))
    assert json.loads(printed.split(": ", 1)[1].split(" (validation")[0]) == settings.rule.to_json()
    assert "of the normal rows before the fault" in r.output


@pytest.mark.parametrize("args, message", [
    (["missing.csv"], "does not exist"),
    (["{normal}", "--far-budget", "0"], "--far-budget"),
    (["{normal}", "--far-budget", "100"], "--far-budget"),
    (["{normal}", "--seeds", "0"], "--seeds"),
    (["{normal}", "--target", "qemu"], "--target"),
    (["{normal}", "--warmup", "no-such-dir"], "--warmup"),
    (["{normal}", "--target", "reference", "--level-only"], "it goes with --target device"),
])
def test_bad_arguments_are_usage_errors(normal_csv, tmp_path, args, message):
    r = CliRunner().invoke(main, ["tune", *[a.format(normal=normal_csv) for a in args]])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_too_short_a_recording_is_refused_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    short = tmp_path / "short.csv"
    synth.write_csv(short, synth.pump_dataset(seed=1, hours=1, faults=False, dropout=False))
    rows = short.read_text().splitlines()
    short.write_text("\n".join(rows[:2300]) + "\n")  # header + 2,299 rows: one short of the minimum
    r = CliRunner().invoke(main, ["tune", str(short), "--target", "reference", "--seeds", "1"])
    assert r.exit_code == 2 and "2299 rows of normal operation" in r.output and "at least 2300" in r.output
    assert "record longer normal operation" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "build").exists()  # refused before any model was trained


def test_a_recording_with_labelled_faults_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    faulty = tmp_path / "faulty.csv"
    ds = synth.write_csv(faulty, synth.pump_dataset(seed=1, hours=1))  # with its faults labelled
    r = CliRunner().invoke(main, ["tune", str(faulty)])
    assert r.exit_code == 2 and f"{int(ds.series.labels.sum())} rows are labelled as faults" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "build").exists()
