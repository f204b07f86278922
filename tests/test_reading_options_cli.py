"""Issue 19, principle 4: every verb that reads a sensor CSV takes the same reading options
(--strict-time, --time-format, --label-column, --label-map; aiot.commands._options, declared
once). One recording as they come: 5-minute samples written '%d/%m/%Y %H:%M', a clock that
repeats an hour (read as a time reset, as the device does) and a text status column that
marks the faulty rows (labels, never a sensor)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.testing import requires_arm

ROWS, STEP_BACK_AT, BROKEN = 600, 300, (400, 410)
READING = ["--time-format", "%d/%m/%Y %H:%M", "--label-column", "machine_status",
           "--label-map", "NORMAL=0,BROKEN=1"]


@pytest.fixture(scope="module")
def site_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    t0 = dt.datetime(2026, 3, 1)
    lines = ["timestamp,a,b,machine_status"]
    for i in range(ROWS):
        j = i if i < STEP_BACK_AT else i - 12  # the clock steps back one hour (12 x 5 min) once
        status = "BROKEN" if BROKEN[0] <= i < BROKEN[1] else "NORMAL"
        lines.append(f"{(t0 + dt.timedelta(minutes=5 * j)):%d/%m/%Y %H:%M},{20 + rng.normal():.4f},"
                     f"{5 + 0.2 * rng.normal():.4f},{status}")
    path = tmp_path_factory.mktemp("site") / "site.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("verb", ["train", "commission", "quantize", "evaluate", "tune", "gateway"])
def test_every_verb_that_reads_a_sensor_csv_takes_the_reading_options(verb):
    from aiot.cli import main as cli

    cmd = cli.get_command(None, verb)
    names = {o for p in cmd.params for o in p.opts}
    assert {"--strict-time", "--time-format", "--label-column", "--label-map"} <= names


def test_train_reads_the_file_as_it_comes(site_csv, tmp_path):
    r = _run("train", "--data", site_csv, "--out", tmp_path / "pkg", "--epochs", 1, "--hidden", 4, *READING)
    assert r.exit_code == 0, r.output
    assert "time steps back" in r.output and "time reset" in r.output  # warned about, not refused
    assert f"{ROWS} rows x 2 channels (a, b)" in r.output and "labelled" in r.output
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["channels"] == ["a", "b"] and manifest["sample_period_s"] == 300
    # --strict-time refuses the repeated hour, naming the line; no --time-format: the clock is unreadable
    r = _run("train", "--data", site_csv, "--out", tmp_path / "p2", "--strict-time", *READING)
    assert r.exit_code != 0 and f"site.csv:{STEP_BACK_AT + 2}" in r.output
    r = _run("train", "--data", site_csv, "--out", tmp_path / "p3", "--label-column", "machine_status")
    assert r.exit_code != 0 and "--time-format" in r.output
    assert not (tmp_path / "p2").exists() and not (tmp_path / "p3").exists()


@pytest.mark.slow
def test_quantize_keras_reads_the_file_as_it_comes(site_csv, tmp_path):
    from aiot.quiet import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    w = 4
    model = keras.Sequential([keras.Input((2 * w,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(2 * w)])
    model.save(tmp_path / "mine.keras")
    r = _run("quantize", "--keras", tmp_path / "mine.keras", "--data", site_csv, "--out", tmp_path / "pkg", *READING)
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["channels"] == ["a", "b"] and manifest["window"] == w
    # with a package the file was read already: reading options are a usage error
    r = _run("quantize", "--package", tmp_path / "pkg", "--time-format", "%d/%m/%Y %H:%M")
    assert r.exit_code == 2 and "go with --keras" in r.output


@pytest.mark.slow
@requires_arm
def test_commission_reads_the_file_as_it_comes(site_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    r = _run("commission", "--data", site_csv, "--board", "mps2-an386", "--out", tmp_path / "fw", "--epochs", 1,
             *READING)
    assert r.exit_code == 0, r.output
    assert "time steps back" in r.output
    doc = json.loads((tmp_path / "fw" / "commission.json").read_text())
    assert doc["channels"] == ["a", "b"] and doc["sample_period_s"] == 300
    assert doc["labelled_fault_rows"] == BROKEN[1] - BROKEN[0]  # the status column: labels, kept out of training
    assert doc["monitor_config"]["sample_period_ms"] == 300_000


def test_commission_refuses_the_repeated_hour_with_strict_time_before_any_work(site_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    r = _run("commission", "--data", site_csv, "--board", "mps2-an386", "--out", tmp_path / "fw", "--strict-time",
             *READING)
    assert r.exit_code != 0 and f"site.csv:{STEP_BACK_AT + 2}" in r.output and "does not increase" in r.output
    assert not (tmp_path / "fw").exists()


def test_gateway_replays_the_file_as_it_comes(site_csv):
    """`aiot gateway --replay FILE` PUSHes the recording: the sensors only (the status column
    is labels), the repeated hour as a step back the device reads as a time reset."""
    from aiot.commands._options import csv_options
    from aiot.fleet.gateway import replay_chunks

    chunks = list(replay_chunks(site_csv, csv_options=csv_options(False, "%d/%m/%Y %H:%M", "machine_status",
                                                                  "NORMAL=0,BROKEN=1")))
    ts = np.concatenate([t for t, _ in chunks])
    values = np.concatenate([v for _, v in chunks])
    assert values.shape == (ROWS, 2) and ts[1] == 300_000
    assert ts[STEP_BACK_AT] == ts[STEP_BACK_AT - 1] - 11 * 300_000  # one hour back, then on
