"""Scenario generator, CSV format (and its broken inputs), the evaluation scoring on
hand-made outputs, and the acceptance figures of the fixed suite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiot import monitor as mon
from aiot.evaluate import scenarios as ev
from aiot.data import scenarios as sc
from aiot.cli import main
from aiot.errors import ToolkitError


# ----------------------------------------------------------------- generator
def test_same_seed_same_stream_and_labels_are_separate():
    a = sc.generate(3, fault="bearing_wear", drift=True, remount=True, gaps=3, hours=12)
    b = sc.generate(3, fault="bearing_wear", drift=True, remount=True, gaps=3, hours=12)
    assert np.array_equal(a.timestamps_ms, b.timestamps_ms)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert [i.kind for i in a.incidents] == ["bearing_wear"]
    kinds = {n.kind for n in a.nuisances}
    assert {"drift", "remount"} <= kinds and kinds & {"gap", "outage"}
    learn = sc.LEARNING_HOURS * sc.HOUR_MS
    assert all(x.start_ms >= learn for x in a.incidents + a.nuisances)


def test_bearing_wear_raises_vibration_and_temperature_together():
    healthy = sc.generate(11, hours=16, gaps=0)
    worn = sc.generate(11, fault="bearing_wear", hours=16, gaps=0)
    inc = worn.incidents[0]
    late = worn.timestamps_ms > inc.start_ms + 4 * sc.HOUR_MS
    rise = np.nanmean(worn.values[late] - healthy.values[late], axis=0)
    assert rise[sc.VIB] > 1.0 and rise[sc.TEMP] > 5.0  # mm/s and degC
    assert abs(rise[sc.PRESSURE]) < 0.05


def test_gaps_are_nans_or_missing_rows_under_high_load():
    s = sc.generate(5, gaps=6, hours=12)
    assert np.isnan(s.values).any()
    steps = np.diff(s.timestamps_ms)
    outages = [n for n in s.nuisances if n.kind == "outage"]
    assert (steps > sc.SAMPLE_PERIOD_MS).sum() == len(outages) > 0


def test_unknown_fault_and_too_short_stream_are_toolkit_errors():
    with pytest.raises(ToolkitError, match="unknown fault"):
        sc.generate(1, fault="gremlins")
    with pytest.raises(ToolkitError, match="too short"):
        sc.generate(1, hours=2)


# ----------------------------------------------------------------- CSV
def test_csv_round_trip_keeps_values_gaps_and_labels(tmp_path):
    s = sc.generate(8, fault="imbalance", remount=True, gaps=4, hours=12)
    path = sc.write_csv(s, tmp_path)
    r = sc.read_csv(path)
    assert np.array_equal(r.timestamps_ms, s.timestamps_ms)
    assert np.allclose(r.values, s.values, atol=1e-4, equal_nan=True)
    assert r.incidents == s.incidents and r.nuisances == s.nuisances
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["timestamp_ms", *sc.CHANNELS, "incident", "nuisance"]
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    inc = s.incidents[0]
    flagged = [int(x[0]) for x in rows if x[-2] == "imbalance"]
    assert min(flagged) >= inc.start_ms and max(flagged) <= inc.end_ms


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("time,a\n0,1\n", "expected 'timestamp_ms'"),
        ("timestamp_ms\n0\n", "no sensor columns"),
        ("timestamp_ms,a,b\n0,1,2\n10,1\n", "row 3: 2 columns"),
        ("timestamp_ms,a,b\n0,1,2\n10,1,abc\n", "row 3, column b: 'abc' is not a number"),
        ("timestamp_ms,a\n0,1\nten,1\n", "row 3, column timestamp_ms"),
        ("timestamp_ms,a\n10,1\n10,2\n", "row 3: timestamp 10 is not after 10"),
        ("timestamp_ms,a\n", "header but no samples"),
    ],
)
def test_broken_csv_says_what_and_where(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ToolkitError, match=match):
        sc.read_csv(p)


def test_missing_csv_and_broken_labels_are_toolkit_errors(tmp_path):
    with pytest.raises(ToolkitError, match="no such file"):
        sc.read_csv(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("timestamp_ms,a\n0,1\n10,\n20,NaN\n")
    (tmp_path / "x.labels.json").write_text("{not json")
    with pytest.raises(ToolkitError, match="unreadable labels"):
        sc.read_csv(tmp_path / "x.csv")
    (tmp_path / "x.labels.json").unlink()
    s = sc.read_csv(tmp_path / "x.csv")
    assert np.isnan(s.values[1:, 0]).all()  # empty cell and NaN are both missing


# ----------------------------------------------------------------- scoring the outputs
def _out(rows):
    o = np.zeros(len(rows), dtype=mon.OUTPUT_DTYPE)
    for i, (t0, t1, state) in enumerate(rows):
        o[i]["t_start_ms"], o[i]["t_end_ms"], o[i]["state"] = t0, t1, state
    return o


def test_scoring_counts_detections_false_alerts_and_gap_coverage_by_hand():
    H = sc.HOUR_MS
    s = sc.Scenario("hand", 0, np.arange(0, 10 * H, 10_000), np.zeros((3600, 4), np.float32))
    s.incidents = [sc.Interval("imbalance", 5 * H, 6 * H)]
    s.nuisances = [sc.Interval("outage", 2 * H, 2 * H + 600_000), sc.Interval("drift", 7 * H, 10 * H)]
    N, A, G = mon.NORMAL, mon.ANOMALY, mon.NO_DATA
    out = _out([
        (0, H, N),
        (2 * H - 1000, 2 * H + 100_000, N),          # edge window, partly before the outage
        (2 * H + 110_000, 2 * H + 590_000, G),       # inside the outage
        (5 * H + 600_000, 5 * H + 760_000, A),       # detected 12.7 min after onset
        (7 * H, 7 * H + 160_000, N),
        (8 * H, 8 * H + 160_000, A),                 # alert during the drift: false
        (8 * H + 170_000, 8 * H + 330_000, G),       # NO_DATA does not end an episode
        (8 * H + 340_000, 8 * H + 500_000, A),
    ])
    r = ev.score_outputs(s, out, "x", 160_000)
    assert r.incidents[0]["detected"] and r.incidents[0]["delay_min"] == pytest.approx(12.7, abs=0.05)
    assert r.false_alerts == 1 and r.false_alerts_nuisance == 1 and r.false_alert_windows == 2
    assert (r.long_gaps, r.long_gaps_no_data) == (1, 1)
    out["state"][2] = N  # a window inside the gap said NORMAL: not covered
    assert ev.score_outputs(s, out, "x", 160_000).long_gaps_no_data == 0


def test_static_threshold_flags_a_window_mean_beyond_three_sigma():
    cfg = ev.device_config()
    rng = np.random.default_rng(0)
    n = (int(cfg.commission_samples) // cfg.window + 1 + 20) * cfg.window
    x = rng.normal(10.0, 1.0, (n, 4)).astype(np.float32)
    x[-5 * cfg.window :, 2] += 5.0  # 5 sigma on one sensor for 5 windows
    out = ev.StaticThresholdDevice(cfg).push(np.arange(n) * 10_000, x)
    states = out["state"][int(cfg.commission_samples) // cfg.window :]
    assert list(states[-5:]) == [mon.NORMAL, mon.NORMAL, mon.ANOMALY, mon.ANOMALY, mon.ANOMALY]
    assert mon.ANOMALY not in states[:-5]


# ----------------------------------------------------------------- acceptance
@pytest.mark.slow
def test_fixed_suite_acceptance_every_fault_no_false_alert_every_long_gap():
    report = ev.run_suite(20)
    host = report["detectors"]["host"]["total"]
    assert host["scenarios"] == 20 and host["faults"] == 15
    assert host["faults_detected"] == host["faults"]
    assert host["false_alerts"] == 0 and host["false_alerts_during_nuisances"] == 0
    assert host["long_gaps"] > 20 and host["long_gaps_reported_no_data"] == host["long_gaps"]
    assert ev.acceptance_failures(report) == []
    # The suite is not trivial: the classic detector trips on its nuisances and sees no gap.
    static = report["detectors"]["static-threshold"]["total"]
    assert static["false_alerts_during_nuisances"] > 0 and static["long_gaps_reported_no_data"] == 0
    # Every fault kind is in it.
    kinds = {i["kind"] for r in report["detectors"]["host"]["scenarios"] for i in r["incidents"]}
    assert kinds == set(sc.FAULTS)


# ----------------------------------------------------------------- CLI
def test_cli_generate_writes_labelled_csvs(tmp_path):
    res = CliRunner().invoke(main, ["scenarios", "generate", "--out", str(tmp_path), "--count", "2", "--hours", "12"])
    assert res.exit_code == 0, res.output
    csvs = sorted(tmp_path.glob("*.csv"))
    assert len(csvs) == 2 and all(p.with_suffix(".labels.json").is_file() for p in csvs)
    assert sc.read_csv(csvs[0]).values.shape[1] == 4


def test_cli_evaluate_writes_the_json_report(tmp_path):
    res = CliRunner().invoke(main, ["scenarios", "evaluate", "--count", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "scenario_report.json").read_text())
    assert set(rep["detectors"]) == {"host", "static-threshold"}
    assert rep["detectors"]["host"]["total"]["scenarios"] == 2
    assert "static-threshold" in res.output


# ----------------------------------------------------------------- the int8 device path
@pytest.mark.slow
def test_fixed_suite_acceptance_with_the_int8_engine_the_device_runs():
    pytest.importorskip("tensorflow")
    report = ev.run_suite(20, model="int8")
    host = report["detectors"]["host"]["total"]
    assert host["faults"] == 15 and host["faults_detected"] == 15
    assert host["false_alerts"] == 0
    assert host["long_gaps_reported_no_data"] == host["long_gaps"] > 20


def _int8_host_and_qemu(board: str):
    """The suite's configuration, its int8 fleet model, the host build's library, and a maker
    of a fresh host device (what qemu_parity compares the board with)."""
    pytest.importorskip("tensorflow")
    from aiot.testing import have_arm_toolchain, have_qemu

    if not (have_arm_toolchain() and have_qemu()):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm")
    cfg = ev.device_config()
    model_dir = ev.fleet_int8(cfg)
    lib = ev.int8_library(model_dir)
    return cfg, lib, ev.QemuDevice(model_dir, cfg, board), lambda: mon.SimulatedDevice(cfg, lib.aiot_monitor_engine_score, lib)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2-an386", "microbit"])  # Cortex-M4F, and M0 with soft float
def test_qemu_gives_the_same_states_as_the_host_build(board):
    cfg, lib, qemu, make_host = _int8_host_and_qemu(board)
    # A short stream with a remount, a drift, gaps and a fault: every state shows up.
    s = sc.generate(20_243, fault="imbalance", drift=True, remount=True, gaps=3, hours=12)
    row = ev.qemu_parity([s], qemu, make_host)["scenarios"][0]
    assert row["windows_qemu"] == row["windows_host"] > 200
    assert row["identical"] and row["max_score_diff"] == 0.0
    host = make_host().push(s.timestamps_ms, s.values)
    assert {mon.ANOMALY, mon.NO_DATA, mon.RECALIBRATING} <= set(host["state"].tolist())


@pytest.mark.qemu
@pytest.mark.slow
def test_qemu_corrects_a_gain_remount_like_the_host_build():
    """The suite's first scenario remounts the vibration sensor with a x1.20 gain: the host
    build tells it from an offset (RECAL_GAIN) and the firmware in QEMU gives the same window
    outputs, the scores too."""
    _, _, qemu, make_host = _int8_host_and_qemu("mps2-an386")
    s = sc.suite(1)[0]
    assert [n.detail for n in s.nuisances if n.kind == "remount"] == ["gain x1.20"]
    host = make_host()
    host.push(s.timestamps_ms, s.values)
    gains = [e for e in host.events() if e.type == "RECAL_GAIN"]
    assert len(gains) == 1 and gains[0].channel == 0 and gains[0].value == pytest.approx(1.2, abs=0.03)
    row = ev.qemu_parity([s], qemu, make_host)["scenarios"][0]
    assert row["windows_qemu"] == row["windows_host"] > 500
    assert row["identical"] and row["max_score_diff"] == 0.0


def test_cli_evaluates_scenario_csvs_from_a_folder(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["scenarios", "generate", "--out", str(tmp_path), "--count", "2", "--hours", "12"]).exit_code == 0
    res = runner.invoke(main, ["scenarios", "evaluate", "--data", str(tmp_path), "--model", "float", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{"):res.output.rindex("}") + 1])
    names = [r["name"] for r in rep["detectors"]["host"]["scenarios"]]
    assert names == sorted(p.stem for p in tmp_path.glob("*.csv"))
    # The same streams generated in memory give the same verdicts: the CSV loses nothing.
    direct = ev.evaluate(sc.suite(2, hours=12), ev.host_devices(ev.device_config(), ev.fleet_pca(ev.device_config())))
    for a, b in zip(rep["detectors"]["host"]["scenarios"], direct["detectors"]["host"]["scenarios"]):
        assert (a["detected"], a["false_alerts"], a["long_gaps_no_data"]) == (b["detected"], b["false_alerts"], b["long_gaps_no_data"])


def test_evaluating_a_folder_of_foreign_csvs_is_a_toolkit_error(tmp_path):
    with pytest.raises(ToolkitError, match="no scenario .csv"):
        ev.load_scenarios(tmp_path)
    (tmp_path / "pump.csv").write_text("timestamp_ms,a,b\n0,1,2\n10000,1,2\n")
    with pytest.raises(ToolkitError, match="expects vibration_mm_s"):
        ev.load_scenarios(tmp_path)
    header = ",".join(["timestamp_ms", *sc.CHANNELS])
    (tmp_path / "pump.csv").write_text(f"{header}\n0,1,2,3,4\n1000,1,2,3,4\n")
    with pytest.raises(ToolkitError, match="every 1000 ms"):
        ev.load_scenarios(tmp_path)


def test_a_binary_or_non_utf8_file_is_named_not_a_traceback(tmp_path):
    p = tmp_path / "bin.csv"
    p.write_bytes(b"timestamp_ms,a\n0,1\n\xff\xfe\x00\x01garbage\n")
    with pytest.raises(ToolkitError, match=r"bin.csv: not a UTF-8 text file \(byte 19 is 0xff\)"):
        sc.read_csv(p)


@pytest.mark.parametrize("change, says", [
    (dict(start_ms=9_000, end_ms=1_000), "ends before it starts"),
    (dict(start_ms=10**12, end_ms=10**12 + 5), "lies outside the data"),
    (dict(channels=[7]), "names channel(s) [7]"),
])
def test_labels_that_cannot_belong_to_the_csv_are_refused(tmp_path, change, says):
    s = sc.generate(seed=3, fault="imbalance", hours=12.0)
    path = sc.write_csv(s, tmp_path)
    labels = path.with_suffix(".labels.json")
    meta = json.loads(labels.read_text())
    assert meta["incidents"], "the scenario has an incident to edit"
    meta["incidents"][0].update(change)
    labels.write_text(json.dumps(meta))
    with pytest.raises(ToolkitError, match=r"incidents\[0\]") as e:
        sc.read_csv(path)
    assert says in e.value.message and str(labels) in e.value.message


def test_a_csv_that_marks_incidents_without_its_labels_file_is_refused(tmp_path):
    s = sc.generate(seed=3, fault="imbalance", hours=12.0)
    path = sc.write_csv(s, tmp_path)
    path.with_suffix(".labels.json").unlink()
    with pytest.raises(ToolkitError, match=r"labels.json: missing, but .*marks an incident \('imbalance' from row"):
        sc.read_csv(path)
    healthy = sc.write_csv(sc.generate(seed=4, hours=12.0, name="calm"), tmp_path)
    healthy.with_suffix(".labels.json").unlink()
    assert sc.read_csv(healthy).incidents == []  # nothing marked, nothing missing: still readable
