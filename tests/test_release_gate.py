"""`aiot release --package CANDIDATE --history RECORDING.csv`: the release gate evaluates the
candidate and the current release itself, on the installation's recorded history, through
`aiot evaluate`'s code (reference target: tflite-micro), and refuses a candidate that
misses an incident the current release caught or raises more false alarms, unless the
regression is accepted (the reason is then in the registry). Both reports are kept.

One small labelled recording (900 rows, 3 sensors, one incident on rows 600-639) and one
model (trained once with 3 epochs, cached by content like every evaluation model); the
candidates differ by their alert settings, which the release carries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("imgtool")

from aiot.cli import main  # noqa: E402
from aiot.lifecycle.registry import Registry  # noqa: E402

INCIDENT = (600, 639)


def _history(path):
    rng = np.random.default_rng(7)
    n, t = 900, np.arange(900)
    a = 2.0 + 0.3 * np.sin(t / 15) + 0.05 * rng.standard_normal(n)
    b = 5.0 + 0.2 * np.cos(t / 11) + 0.05 * rng.standard_normal(n)
    c = 30 + 0.1 * rng.standard_normal(n)
    label = np.zeros(n, int)
    label[INCIDENT[0] : INCIDENT[1] + 1] = 1
    a[INCIDENT[0] : INCIDENT[1] + 1] += 1.5  # the vibration steps up while the fault lasts
    rows = [f"{i},{a[i]:.4f},{b[i]:.4f},{c[i]:.4f},{label[i]}" for i in range(n)]
    path.write_text("timestamp,vib,current,temp,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """(recording, model package): the model trained on the first 500 rows (normal only)."""
    from aiot.data import load_csv
    from aiot.evaluate import pipeline

    d = tmp_path_factory.mktemp("history")
    csv = _history(d / "pump7.csv")
    pkg = pipeline.fleet_package(load_csv(csv).head(500), None,
                                 pipeline.Settings(format="generic", window=8, epochs=3))
    return csv, pkg


def _settings(path, margin):
    path.write_text(json.dumps({"aiot_alert_settings": 1, "target": "reference", "window": 8,
                                "rule": {"threshold_margin": margin}, "picked_by": {"by": "test"}}))
    return path


@pytest.fixture
def release(tmp_path, history, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the gate's two evaluations go to ./build/release/ID
    monkeypatch.delenv("AIOT_BUILD_DIR", raising=False)  # (under xdist each worker sets one; here: ./build)
    csv, pkg = history
    runner = CliRunner()
    reg, key = tmp_path / "registry", tmp_path / "release.pem"

    def run(version, *extra, package=pkg):
        args = ["release", "--package", str(package), "--history", str(csv), "--name", "pump-ae", "--version",
                version, "--key", str(key), "--registry", str(reg), *extra]
        return runner.invoke(main, args + ([] if key.exists() else ["--new-key"]), catch_exceptions=False)

    def cli(*args):
        return runner.invoke(main, [*args, "--registry", str(reg)], catch_exceptions=False)

    return run, cli, reg


def test_the_gate_evaluates_both_releases_on_the_history(release, tmp_path):
    run, cli, reg = release
    first = run("1.0.0")
    assert first.exit_code == 0, first.output
    assert "not gated (no current release" in first.output and "caught 1/1 incidents, 0 false alarm" in first.output
    # leaving the current release out does not skip the gate
    unnamed = run("1.1.0")
    assert unnamed.exit_code == 2 and "none was named as the current one" in unnamed.output, unnamed.output
    assert "--device" in unnamed.output and "pump-ae-1.1.0" not in Registry(reg).releases()
    assert cli("models", "promote", "--release", "pump-ae-1.0.0", "--device", "pump-7", "--firmware-abi", "1").exit_code == 0

    # settings that mute the incident: refused, naming it; nothing signed or recorded
    mute = _settings(tmp_path / "mute.json", 50.0)
    muted = run("1.1.0", "--device", "pump-7", "--alert-settings", str(mute))
    assert muted.exit_code == 2, muted.output
    assert "misses pump7.csv rows 600-639 (which pump-ae-1.0.0 caught)" in muted.output
    assert "--accept-regression" in muted.output
    assert "pump-ae-1.1.0" not in Registry(reg).releases() and not (reg / "pump-ae-1.1.0.bin").exists()
    cand = json.loads((tmp_path / "build/release/pump-ae-1.1.0/candidate/report.json").read_text())
    cur = json.loads((tmp_path / "build/release/pump-ae-1.1.0/current/report.json").read_text())
    assert [i["detected"] for f in cand["files"] for i in f["incidents"]] == [False]
    assert [i["detected"] for f in cur["files"] for i in f["incidents"]] == [True]

    # settings that alert on normal running: refused for its false alarms
    noisy = run("1.1.0", "--device", "pump-7", "--alert-settings", str(_settings(tmp_path / "noisy.json", 0.5)))
    assert noisy.exit_code == 2 and "false alarms" in noisy.output and "> 0" in noisy.output, noisy.output

    # the muted one with the regression accepted: signed, the reason recorded and shown
    why = "valve 3 replaced; its incident no longer applies (ops ticket 812)"
    accepted = run("1.1.0", "--device", "pump-7", "--alert-settings", str(mute), "--accept-regression", why)
    assert accepted.exit_code == 0 and "FAILED, accepted" in accepted.output, accepted.output
    rel = Registry(reg).get("pump-ae-1.1.0")
    assert rel["gate"]["accepted_regression"] == why and not rel["gate"]["passed"]
    assert rel["gate"]["missed"] == [{"file": "pump7.csv", "start_row": 600, "end_row": 639}]
    assert rel["parent"] == "pump-ae-1.0.0" and rel["alert_settings"]["rule"] == {"threshold_margin": 50.0}
    shown = cli("models", "show", "--release", "pump-ae-1.1.0")
    assert shown.exit_code == 0 and why in shown.output
    for which, detected in (("candidate", False), ("current", True)):  # both reports kept with the release
        doc = json.loads((reg / "pump-ae-1.1.0" / "evaluation" / which / "report.json").read_text())
        assert [i["detected"] for f in doc["files"] for i in f["incidents"]] == [detected]

    # as good as the current release: signed, PASSED (against --current, explicitly)
    equal = run("1.2.0", "--current", "pump-ae-1.0.0")
    assert equal.exit_code == 0 and "PASSED" in equal.output, equal.output
    assert Registry(reg).get("pump-ae-1.2.0")["gate"]["passed"]
    # better than the muted 1.1.0, whose own settings its gate runs it with
    better = run("1.3.0", "--current", "pump-ae-1.1.0")
    assert better.exit_code == 0 and "caught 1/1 incidents (current 0)" in better.output, better.output


def test_the_plan_must_fit_the_firmware_arena(release, tmp_path):
    run, _, reg = release
    small = tmp_path / "build.json"
    small.write_text(json.dumps({"board": "mps2-an386", "model_abi": 1, "plan_arena": 32}))
    refused = run("2.0.0", "--firmware", str(small))
    assert refused.exit_code == 2, refused.output
    assert "the target firmware's plan arena is 32 bytes" in refused.output and "--no-plan" in refused.output
    assert not Registry(reg).releases()
    assert run("2.0.0", "--firmware", str(small), "--no-plan").exit_code == 0
    from aiot.lifecycle import package as P

    body = Registry(reg).image("pump-ae-2.0.0")[P.IMAGE_HEADER_SIZE:]
    assert P.PLAN not in P.read_container(body)  # no plan section


def test_the_plan_must_fit_the_firmware_layer_table(release, tmp_path):
    """A firmware built with room for fewer layers than the plan has (aiot build
    --plan-layers) does not get it: refused with the build option that fits."""
    run, _, reg = release
    few = tmp_path / "build.json"
    few.write_text(json.dumps({"board": "mps2-an386", "model_abi": 1, "plan_arena": 4096, "plan_layers": 1}))
    refused = run("2.0.0", "--firmware", str(few))
    assert refused.exit_code == 2, refused.output
    assert "takes at most 1" in refused.output and "--plan-layers" in refused.output
    assert not Registry(reg).releases()
    roomy = tmp_path / "roomy.json"
    roomy.write_text(json.dumps({"board": "mps2-an386", "model_abi": 1, "plan_arena": 4096, "plan_layers": 16}))
    assert run("2.0.0", "--firmware", str(roomy)).exit_code == 0


def test_evaluate_a_given_package(history, tmp_path):
    """`aiot evaluate --package PKG` (what the gate runs): the package itself, at its window;
    recordings of other sensors, another kind of model or target are refused by name."""
    csv, pkg = history
    runner = CliRunner()

    def evaluate(*args, data=csv):
        return runner.invoke(main, ["evaluate", "--data", str(data), "--package", str(pkg), "--jobs", "1", *args],
                             catch_exceptions=False)

    ok = evaluate("--out", str(tmp_path / "ok"))
    assert ok.exit_code == 0 and "incidents detected 1/1" in ok.output, ok.output
    doc = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert doc["model"]["kind"] == "given (--package)" and doc["model"]["package"] == str(pkg)
    assert doc["settings"]["target"] == "reference" and doc["settings"]["window"] == 8
    other = tmp_path / "other.csv"
    other.write_text(csv.read_text().replace("vib,current,temp", "vib,pressure,temp", 1))
    r = evaluate("--out", str(tmp_path / "o"), data=other)
    assert r.exit_code == 2 and "sensors vib, pressure, temp, but the model" in r.output, r.output
    r = evaluate("--out", str(tmp_path / "o"), "--per-file")
    assert r.exit_code == 2 and "--package and --per-file both given" in r.output
    r = evaluate("--out", str(tmp_path / "o"), "--window", "16")
    assert r.exit_code == 2 and "takes windows of 8" in r.output
    r = evaluate("--out", str(tmp_path / "o"), "--target", "host")
    assert r.exit_code == 2 and "reference target" in r.output


def test_a_firmware_record_that_is_not_one_is_refused(release, tmp_path):
    run, _, reg = release
    bad = tmp_path / "build.json"
    bad.write_text("[1, 2")
    r = run("3.0.0", "--firmware", str(bad))
    assert r.exit_code == 2 and "not a build.json" in r.output and not Registry(reg).releases()
