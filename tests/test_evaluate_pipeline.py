"""The evaluation pipeline and its reports, driven by a scripted device whose answers are
known, so every count below is worked out by hand from the fixture's labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.errors import ToolkitError
from aiot.evaluate import device as dev
from aiot.evaluate import pipeline, report
from aiot.data import readers

FIX = Path(__file__).parent / "fixtures" / "eval"
SKAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"


class ScriptedDevice:
    """Alerts on the rows listed per file; 'score' is the row number (easy to check)."""

    target = "scripted"
    plan: dict[int, list[int]] = {}  # file rows -> alert rows (keyed by file length)

    def __init__(self, *args, **kwargs):
        self.head_rows = None

    def commission(self, head):
        self.head_rows = head.rows
        return {"threshold": 1.0}

    def stream(self, series, start):
        n = series.rows - start
        alert = np.zeros(n, np.int8)
        for row in self.plan.get(series.source.name, []):
            alert[row - start] = 1
        score = np.arange(start, series.rows, dtype=float)
        state = ["anomaly" if a else "normal" for a in alert]
        return dev.Outputs(state, score, alert.astype(float), alert, np.tile([0.9, 0.1], (n, 1)))


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(pipeline, "make_device", lambda *a, **k: ScriptedDevice())
    # skab_mini: 0.csv incident rows 8..10, 10.csv incident rows 6..7, 2.csv none; 12 rows each
    ScriptedDevice.plan = {"0.csv": [9, 10, 11], "10.csv": [], "2.csv": [5]}
    return ScriptedDevice


def _run(train_rows=4):
    ds = readers.read("skab", FIX / "skab_mini")
    st = pipeline.Settings(format="skab", train_rows=train_rows, jobs=1, window=2)
    return ds, st, pipeline.run(ds, st, package=Path("unused"))


def test_per_file_and_pooled_metrics(scripted):
    ds, st, res = _run()
    by = {r.recording.name: r for r in res}
    # 0.csv test rows 4..11: labels 1 on 8,9,10; alerts 9,10,11 -> TP 2 (9,10), FP 1 (11), FN 1 (8), TN 4
    c = by["valve1/0.csv"].confusion
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 4)
    # 10.csv: labels 6,7, no alert -> FN 2, TN 6;  2.csv: alert on 5, no label -> FP 1, TN 7
    c10, c2 = by["valve1/10.csv"].confusion, by["valve1/2.csv"].confusion
    assert (c10.tp, c10.fp, c10.fn, c10.tn) == (0, 0, 2, 6)
    assert (c2.tp, c2.fp, c2.fn, c2.tn) == (0, 1, 0, 7)
    agg = pipeline.aggregate(res)
    t = agg["test_rows"]
    assert (t["tp"], t["fp"], t["fn"], t["tn"]) == (2, 2, 3, 17)
    assert t["f1"] == pytest.approx(2 / (2 + 2.5))
    assert t["far"] == pytest.approx(2 / 19)
    assert t["mar"] == pytest.approx(3 / 5)
    # SKAB notebook convention adds the 3 x 4 commissioning rows as silent normal rows
    assert agg["skab_notebook_convention"]["tn"] == 17 + 12
    assert (agg["incidents"], agg["incidents_detected"], agg["alerts"], agg["false_alerts"]) == (2, 1, 2, 1)
    assert agg["median_delay_s"] == 1.0  # 0.csv: incident starts row 8, first alert row 9, 1 s apart
    # false alarms by phase (test rows 4..11): 0.csv before 4..7, after 11 (alert);
    # 10.csv before 4..5, after 8..11; 2.csv has no fault: 8 rows, alert on 5
    ph = {k: (v["rows"], v["alerting"]) for k, v in agg["false_alarms_by_phase"].items()}
    assert ph == {"before_fault": (6, 0), "between_faults": (0, 0), "after_fault": (5, 1), "no_fault_in_file": (8, 1)}
    # NAB with labelled runs as windows, probation = commissioning rows:
    # 0.csv window 8..10 (width 3), first hit row 9: pos -(10-9+1)/3 -> 0.9719 / 0.98661;
    # row 11: |11-10| / (3-1) = 0.5 -> -0.848284 * 0.11.   10.csv: missed -> -1.   2.csv: no window.
    s09 = (2 / (1 + np.exp(-10 / 3)) - 1) / (2 / (1 + np.exp(-5)) - 1)
    raw = s09 - 0.848284 * 0.11 - 1.0
    assert agg["nab_standard_every_alert_row"] == pytest.approx(100 * (raw + 2) / 4, abs=1e-3)
    # counting alert onsets only, row 11 is not a detection of its own (same alert as row 9)
    assert agg["nab_standard"] == pytest.approx(100 * (s09 - 1.0 + 2) / 4, abs=1e-3)


def test_commissioning_rows_are_the_only_rows_the_device_learns_from(scripted, monkeypatch):
    seen = []
    real = ScriptedDevice.commission

    def spy(self, head):
        seen.append((head.rows, int(head.labels.sum())))
        return real(self, head)

    monkeypatch.setattr(ScriptedDevice, "commission", spy)
    _run(train_rows=5)
    assert seen == [(5, 0)] * 3


def test_alerts_and_incidents_in_file_rows_with_sensors(scripted):
    _, _, res = _run()
    r0 = next(r for r in res if r.recording.name == "valve1/0.csv")
    assert [(a.start, a.end, a.true, a.sensors) for a in r0.alerts] == [(9, 11, True, ["s1"])]
    assert [(i.start, i.end, i.detected, i.delay_rows) for i in r0.incidents] == [(8, 10, True, 1)]


def test_reports_written(scripted, tmp_path):
    ds, st, res = _run()
    agg = pipeline.aggregate(res)
    report.write_predictions(tmp_path / "p.csv", res)
    report.write_json(tmp_path / "r.json", res, agg, st.to_json(), {"data": "x"})
    report.write_html(tmp_path / "r.html", res, agg, st.to_json(), {"data": "x"})
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 36  # every row of the 3 files, commissioning rows included
    r0 = [r for r in rows if r["file"] == "valve1/0.csv"]
    assert [r["state"] for r in r0[:4]] == ["commissioning"] * 4
    assert [int(r["alert"]) for r in r0] == [0] * 9 + [1, 1, 1]
    assert r0[9]["timestamp"] == "2020-03-09T10:00:09Z" and r0[9]["score"] == "9"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["settings"]["train_rows"] == 4 and doc["settings"]["rule"]["raise_after"] == 3
    f0 = doc["files"][0]
    assert f0["incidents"][0] == {
        "start": "2020-03-09T10:00:08Z", "end": "2020-03-09T10:00:10Z", "start_row": 8, "end_row": 10,
        "detected": True, "first_alert": "2020-03-09T10:00:09Z", "delay_rows": 1, "delay_s": 1.0,
    }
    assert f0["false_alarms_by_phase"]["after_fault"] == {"rows": 1, "alerting": 1, "share": 1.0}
    html = (tmp_path / "r.html").read_text()
    assert html.count("<svg") == 3 and "MISSED" in html  # 10.csv's incident is missed
    assert "after the last fault 20.00 % of 5 rows" in html and "between faults" not in html
    assert "one model per file" in html and "Own model" not in html  # no model context, none recorded

    # one model per file: each file's section names its own model (and, on QEMU, its image)
    res[0].commissioning["model"] = {"sha256": "ab" * 32, "tflite_bytes": 7888,
                                     "firmware": {"flash_total": 22720, "ram_total": 12344}}
    res[1].commissioning["model"] = {"sha256": "cd" * 32, "tflite_bytes": 7888}
    report.write_html(tmp_path / "r2.html", res, agg, st.to_json(), {"data": "x", "model": {"kind": "per-file"}})
    html = (tmp_path / "r2.html").read_text()
    assert "Own model abababababab, 7,888-byte .tflite; firmware image 22,720 bytes flash / 12,344 bytes RAM." in html
    assert "Own model cdcdcdcdcdcd, 7,888-byte .tflite.</p>" in html and html.count("Own model") == 2
    report.write_html(tmp_path / "r3.html", res, agg, st.to_json(), {"data": "x", "model": {"sha256": "ef" * 32}})
    assert "model efefefefefef." in (tmp_path / "r3.html").read_text()


def test_commissioning_longer_than_file_is_a_user_error(scripted):
    with pytest.raises(ToolkitError, match="12 rows, cannot commission on 12"):
        _run(train_rows=12)


def test_protocol_defaults():
    assert pipeline.Settings(format="skab").commissioning_rows(1147) == 400
    assert pipeline.Settings(format="nab").commissioning_rows(1000) == 150
    # NAB's probation is 15 % of the file capped at 15 % of 5000 rows: a machine-temperature
    # file of 22,695 rows commissions on 750, so a failure on its eighth day is scored, as in NAB
    assert pipeline.Settings(format="nab").commissioning_rows(22695) == 750
    assert pipeline.Settings(format="nab", train_fraction=0.15).commissioning_rows(22695) == 3404
    assert pipeline.Settings(format="generic").commissioning_rows(22695) == 3404
    assert pipeline.Settings(format="nab", train_rows=7).commissioning_rows(1000) == 7


def test_alert_rule_raise_and_clear_by_hand():
    rule = dev.AlertRule(raise_after=2, clear_after=2, confidence_span=2)
    scores = np.array([2, 0, 2, 2, 2, 0, 2, 0, 0, np.nan, 2])
    alert, conf = dev.apply_rule(scores, 1.0, rule)
    # one hot window is not enough; two in a row raise; one cool window does not clear; two do
    assert alert.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert conf.tolist() == [0.5, 0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5]


def test_alert_rule_recovering_by_hand():
    """Threshold 1, raise after 3, clear after 5, recover_ratio 0.7: a peak of 3 makes 2.1
    the recovering level."""
    scores = np.array([0.5] * 3 + [3.0] * 6 + [2.0] * 9 + [0.5] * 6)
    codes, _ = dev.rule_states(scores, 1.0, dev.AlertRule(raise_after=3, clear_after=5, recover_ratio=0.7))
    # raised on the third hot window (row 5); rows 9-13 are five at or under 2.1, so row 13
    # recovers (2.0 is still over the threshold); five rows under 1 (18-22) end it at row 22
    want = [dev.NORMAL] * 5 + [dev.ALERT] * 8 + [dev.RECOVERING] * 9 + [dev.NORMAL] * 2
    assert codes.tolist() == want
    # without the ratio the same scores alert until five rows under the threshold
    alert, _ = dev.apply_rule(scores, 1.0, dev.AlertRule(raise_after=3, clear_after=5))
    assert alert.tolist() == [0] * 5 + [1] * 17 + [0] * 2


def test_alert_rule_recovering_reraises_above_its_level_only():
    rule = dev.AlertRule(raise_after=3, clear_after=5, recover_ratio=0.7)
    base = [3.0] * 3 + [2.0] * 5  # alert on row 2, recovering on row 7 (level 2.1)
    codes, _ = dev.rule_states(np.array(base + [2.05] * 4 + [2.5] * 3), 1.0, rule)
    assert codes.tolist()[7:] == [dev.RECOVERING] * 7 + [dev.ALERT]  # 2.05 < 2.1 never re-raises
    # the reference target writes the state per row
    assert dev._states(np.ones(3), np.array([dev.ALERT, dev.RECOVERING, dev.NORMAL]), 10, 4) == [
        "anomaly", "recovering", "normal"]


def test_cli_reports_user_errors_without_traceback(tmp_path):
    from aiot.cli import main

    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "none"), "--format", "skab",
                                  "--out", str(tmp_path / "o"), "--target", "reference"])
    assert r.exit_code == 2 and "no such file or folder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["evaluate", "--data", str(FIX / "skab_mini"), "--format", "skab",
                                  "--train-rows", "4", "--train-fraction", "0.5", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "both given" in r.output


def test_unknown_and_unavailable_targets():
    with pytest.raises(ToolkitError, match="unknown --target"):
        dev.make_device("fpga", Path("x"), dev.AlertRule())


@pytest.mark.slow
@pytest.mark.skipif(not (SKAB / "valve1" / "0.csv").is_file(), reason="SKAB data not present")
def test_skab_one_file_end_to_end_with_int8_model(tmp_path, monkeypatch):
    """Real fleet model (few epochs) through tflite-micro on SKAB's first file (other/1.csv,
    a fluid leak): the incident must be detected and the outputs must be self-consistent."""
    from aiot.evaluate.run import evaluate

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    agg = evaluate(data=SKAB, fmt="skab", out=tmp_path / "o", target="reference", epochs=3, jobs=1, limit=1)
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["model"]["kind"] == "fleet" and doc["model"]["tflite_bytes"] < 64 * 1024
    rows = list(csv.DictReader(open(tmp_path / "o" / "predictions.csv")))
    f = doc["files"][0]
    assert len(rows) == f["rows"] and f["commissioning_rows"] == 400
    alerts = np.array([int(r["alert"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    # the report's counts are re-derived from predictions.csv, independently of the pipeline
    tp = int(((alerts == 1) & (labels == 1))[400:].sum())
    assert agg["test_rows"]["tp"] == tp
    # the incident and its verdict re-derived from predictions.csv by the matching rule of
    # report.json: detected only by an alert that starts inside [onset - tolerance, end]
    # (with 3 epochs this model's alert starts 19 rows before the leak's labelled onset)
    tol = doc["incident_matching"]["tolerance_rows"]
    onset, end = (int(i) for i in np.flatnonzero(labels[400:] == 1)[[0, -1]] + 400)
    starts = [i for i in range(400, len(alerts)) if alerts[i] == 1 and (i == 400 or alerts[i - 1] == 0)]
    detected = any(onset - tol <= s <= end for s in starts)
    false_alerts = sum(not (onset - tol <= s <= end) for s in starts)
    assert alerts[onset] == 1 and starts, "the model must alert on the leak"
    assert (agg["incidents"], agg["incidents_detected"], agg["false_alerts"]) == (1, int(detected), false_alerts)
    # level tracking with an (almost) infinite time constant must equal fixed levels
    from aiot.data.readers import read

    rec = read("skab", SKAB / "other" / "1.csv").recordings[0]
    outs = []
    for tau in (0, 10**9):
        d = dev.ReferenceDevice(Path(doc["model"]["package"]), dev.AlertRule(track_tau=tau))
        d.commission(rec.series.head(400))
        outs.append(d.stream(rec.series, 400))
    assert np.allclose(outs[0].score, outs[1].score, equal_nan=True, rtol=1e-9, atol=1e-12)
    assert outs[0].alert.tolist() == outs[1].alert.tolist()


def test_gap_neither_votes_for_nor_against():
    rule = dev.AlertRule(raise_after=2, clear_after=2)
    alert, _ = dev.apply_rule(np.array([2.0, np.nan, 2.0, 0.0, np.nan, 0.0]), 1.0, rule)
    assert alert.tolist() == [0, 0, 1, 1, 1, 0]


def test_window_completeness_tolerates_one_sample_clock_slip_only():
    from aiot.data import Series

    ts = np.array([0, 1, 2, 4, 5, 6, 10, 11.0])  # a 2 s slip at row 3, a 4 s gap at row 6
    valid = np.ones((8, 1), bool)
    valid[5] = False
    s = Series(ts, np.ones((8, 1)), valid, None, ["a"])
    got = dev._complete(s, np.arange(1, 8), window=2, max_slip=dev.AlertRule().max_slip)
    # windows (0,1) (1,2) (2,3) (3,4) (4,5) (5,6) (6,7): row 5 missing kills two, the 4 s gap is inside (5,6)
    assert got.tolist() == [True, True, True, True, False, False, True]


def test_window_completeness_follows_the_datas_gap_rule():
    from aiot.data import Series

    # steps of 2.4 and 2.6 periods: the data calls the second a gap (Series.gap_count) and the
    # first a slip, and so does the reference device's window check
    ts = np.array([0, 1, 3.4, 4.4, 7.0, 8.0])
    s = Series(ts, np.ones((6, 1)), np.ones((6, 1), bool), None, ["a"])
    assert (s.gap_count(), s.slip_count()) == (1, 1)
    got = dev._complete(s, np.arange(1, 6), window=2, max_slip=dev.AlertRule().max_slip)
    assert got.tolist() == [True, True, True, False, True]


def test_smoothing_is_a_causal_trailing_mean():
    assert dev._smooth(np.array([3.0, 0.0, 3.0, 6.0]), 2).tolist() == [3.0, 1.5, 1.5, 4.5]


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.skipif(not (SKAB / "valve1" / "0.csv").is_file(), reason="SKAB data not present")
@pytest.mark.parametrize("per_file", [False, True], ids=["fleet-model", "installation-model"])
def test_skab_file_host_and_qemu_agree_row_by_row(tmp_path, monkeypatch, per_file):
    """The monitor + int8 engine built for the host and the same firmware in QEMU must
    give byte-identical predictions for one SKAB file, with the fleet model and with the
    installation's own model (its own firmware image)."""
    import shutil

    from aiot.evaluate.run import evaluate

    if not shutil.which("qemu-system-arm") or not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    common = dict(data=SKAB, fmt="skab", epochs=2, jobs=1, limit=1, per_file=per_file)
    evaluate(out=tmp_path / "host", target="host", **common)
    evaluate(out=tmp_path / "qemu", target="qemu:mps2-an386", **common)
    host = (tmp_path / "host" / "predictions.csv").read_text()
    assert host.count("\n") > 700
    assert (tmp_path / "qemu" / "predictions.csv").read_text() == host
    # and the same events, drained over the serial protocol, at the same rows
    events = [json.loads((tmp_path / t / "report.json").read_text())["files"][0]["events"] for t in ("host", "qemu")]
    assert events[0] == events[1] and events[0][0]["type"] == "COMMISSIONED"
    # both reports name the same firmware sources (QEMU's read back from the build it used)
    shas = [json.loads((tmp_path / t / "report.json").read_text())["model"]["firmware_sources_sha256"]
            for t in ("host", "qemu")]
    assert shas[0] == shas[1] and len(shas[0]) == 16
    if per_file:  # one model, trained once (the QEMU run found the host run's in the cache)
        models = [json.loads((tmp_path / t / "report.json").read_text())["files"][0]["commissioning"]["model"]
                  for t in ("host", "qemu")]
        assert models[0]["sha256"] == models[1]["sha256"]
        assert models[1]["firmware"]["flash_total"] > 10_000 and "firmware" not in models[0]


def test_worker_errors_keep_their_hint():
    ds = readers.read("skab", FIX / "skab_mini")
    st = pipeline.Settings(format="skab", train_rows=12, jobs=2, window=2)
    with pytest.raises(ToolkitError, match="cannot commission on 12") as e:
        pipeline.run(ds, st, package=Path("unused"))
    assert "lower --train-rows" in (e.value.hint or "")


def test_svg_points_stay_inside_the_plot_even_for_zero_scores(scripted):
    import re

    _, _, res = _run()
    r = res[0]
    r.outputs.score[:2] = [0.0, np.nan]  # the rest are row numbers >= 6
    svg = report._svg(r)
    # the score trace: a line through the rows ("M x y L x y ..."; a long file: one vertical
    # stroke per pixel column, "M x y1 V y2")
    [d] = re.findall(r'<path class="score" d="([^"]+)"', svg)
    ys = [float(v) for v in re.findall(r"[ML][\d.]+ ([\d.]+)", d) + re.findall(r"V([\d.]+)", d)]
    top, bottom = report._CAPTION, report._CAPTION + report._SCORE_H
    assert ys and all(top <= y <= bottom for y in ys)


def test_monitor_config_noise_floors_set_the_commissioned_noise():
    """noise_floor / noise_floor_rel (aiot_monitor_config_t): the monitor (same C as the
    firmware) ends commissioning with noise = max(own spread, absolute, relative x |level|)."""
    from aiot import monitor as M

    rng = np.random.default_rng(1)
    n, commission = 200, 100
    x = np.column_stack([30.0 + 0.01 * rng.standard_normal(n),  # quiet: the relative floor wins
                         5.0 + 2.0 * rng.standard_normal(n),  # noisy: its own spread stays
                         0.1 + 0.01 * rng.standard_normal(n)])  # near zero: the absolute floor wins
    cfg = M.default_config(3, 4, 1000, commission_samples=commission, calibration_windows=8,
                           noise_floor=[0.0, 0.0, 0.25], noise_floor_rel=[0.02, 0.02, 0.0])
    assert cfg.as_dict()["noise_floor_rel"] == pytest.approx([0.02, 0.02, 0.0])
    mon = M.Monitor(cfg, scorer=lambda w: np.zeros_like(w))
    mon.run(np.arange(n) * 1000, x.astype(np.float32))
    own = x[:commission].std(axis=0, ddof=1)
    assert mon.channel(0).noise == pytest.approx(0.02 * x[:commission, 0].mean(), rel=1e-3)
    assert mon.channel(1).noise == pytest.approx(own[1], rel=1e-3)
    assert mon.channel(2).noise == pytest.approx(0.25, rel=1e-3)
    # the defaults keep the old guard only: 1e-3 x |level| (0.03 here), no absolute floor
    plain = M.Monitor(M.default_config(3, 4, 1000, commission_samples=commission, calibration_windows=8),
                      scorer=lambda w: np.zeros_like(w))
    plain.run(np.arange(n) * 1000, x.astype(np.float32))
    assert plain.channel(0).noise == pytest.approx(1e-3 * x[:commission, 0].mean(), rel=1e-3)
    assert plain.channel(2).noise == pytest.approx(own[2], rel=1e-3)


def test_monitor_rejects_bad_noise_floors():
    from aiot import monitor as M

    for bad in ({"noise_floor": [-1.0, 0.0]}, {"noise_floor_rel": [0.0, float("nan")]}, {"noise_floor": [1.0, 2.0, 3.0]}):
        with pytest.raises(ToolkitError):
            M.default_config(2, 4, 1000, **bad)


def test_fleet_floors_carry_the_fleets_spread_to_another_operating_point():
    from aiot.evaluate.device import fleet_floors, floored_noise

    fleet_mean, fleet_std = np.array([120.0, 0.1, -50.0]), np.array([1.5, 0.25, 2.0])
    absolute, relative = fleet_floors(fleet_mean, fleet_std, 0.5)
    # at the fleet's own level every sensor's floor is 0.5 x its fleet spread
    assert floored_noise(np.zeros(3), fleet_mean, absolute, relative) == pytest.approx(0.5 * fleet_std)
    # a quarter of the flow -> a quarter of its floor; the near-zero sensor keeps its absolute floor
    at = floored_noise(np.zeros(3), np.array([30.0, 0.4, -25.0]), absolute, relative)
    assert at == pytest.approx([0.5 * 1.5 / 4, 0.5 * 0.25, 0.5 * 2.0 / 2])
    # floor 0: the monitor's defaults (no absolute floor, 1e-3 relative)
    a0, r0 = fleet_floors(fleet_mean, fleet_std, 0.0)
    assert a0.tolist() == [0.0] * 3 and r0 == pytest.approx([1e-3] * 3)


def test_calib_split_fits_levels_on_the_first_rows_and_the_threshold_on_the_rest(monkeypatch):
    """calib_split 0.5: normalization from the first half of the commissioning rows only;
    the threshold from windows lying entirely in the second half."""
    from aiot.data import Series

    n, W = 40, 4
    x = np.concatenate([np.zeros(20), np.arange(20, dtype=float)])[:, None]  # flat, then a drift
    s = Series(np.arange(n, dtype=float), x, np.ones((n, 1), bool), None, ["a"])
    d = dev.ReferenceDevice.__new__(dev.ReferenceDevice)
    d.rule = dev.AlertRule(calib_split=0.5, smooth=1, threshold_quantile=1.0, threshold_margin=1.0, noise_floor=0.0)
    d.pkg = type("P", (), {"window": W})()
    seen = {}

    def fake_scores(series, rows=None):
        seen["rows"] = rows
        end = np.arange(W - 1, series.rows)
        if rows is not None:
            end = end[end >= rows]
        err = series.values[end, 0].astype(float)  # score = the newest raw value of the window
        return end, err, err[:, None]

    d._scores = fake_scores
    info = d.commission(s)
    assert d.norm.mean[0] == pytest.approx(0.0)  # levels from rows 0..19 only (all zeros)
    assert seen["rows"] == 20 + W - 1  # first window entirely after row 19 ends at row 23
    assert info["threshold"] == pytest.approx(19.0)  # max over windows ending at rows 23..39
    assert info["commissioning_windows"] == 17


@pytest.mark.parametrize("per_file", [False, True])
def test_commissioning_longer_than_every_file_fails_before_any_model_is_trained(tmp_path, monkeypatch, per_file):
    """The fleet path used to reach the device model's training and crash in numpy; both
    paths now name the file, its rows and what to do, before training anything."""
    from aiot.evaluate import monitor_device
    from aiot.evaluate.run import evaluate

    def no_training(*a, **k):
        pytest.fail("a model was trained")

    monkeypatch.setattr(monitor_device, "device_fleet_model", no_training)
    monkeypatch.setattr(monitor_device, "device_file_model", no_training)
    with pytest.raises(ToolkitError) as e:  # skab_mini: three 12-row files
        evaluate(data=FIX / "skab_mini", fmt="skab", out=tmp_path / "o", train_rows=100, target="host", jobs=1,
                 per_file=per_file)
    assert "valve1/0.csv: 12 rows, cannot commission on 100" in e.value.message
    assert "so do all 3 files" in e.value.message and "shortest file's 12 rows" in e.value.hint
    assert not (tmp_path / "o").exists()


def test_a_fleet_recording_shorter_than_the_commissioning_is_named():
    from aiot.data import load_csv
    from aiot.evaluate.monitor_device import _device_normalized

    fleet = load_csv(FIX / "skab_mini" / "anomaly-free" / "anomaly-free.csv", label_column=None)  # 10 rows
    zero = np.zeros(len(fleet.channels))
    with pytest.raises(ToolkitError, match="anomaly-free.csv: 10 normal rows.*first 10 commissioning rows"):
        _device_normalized(fleet, 10, (zero, zero))


@pytest.mark.parametrize("per_file", [False, True])
def test_too_few_commissioning_rows_say_so_with_the_minimum(tmp_path, monkeypatch, per_file):
    """--train-rows 1: not "cannot commission on 1 and stream the rest" (per file) nor
    "leave -1 calibration windows" (fleet). The monitor needs half the rows for its noise
    profile and 4 calibration windows in the other half: 4 x 2 samples at window 2, so 2 x 8
    - 1 = 15 rows (7 + 8) at the least."""
    from aiot.evaluate import monitor_device
    from aiot.evaluate.run import evaluate

    monkeypatch.setattr(monitor_device, "device_fleet_model", lambda *a, **k: pytest.fail("trained"))
    monitor_device.monitor_knobs(2, 15)  # the minimum worked out above is what the monitor takes
    with pytest.raises(ToolkitError, match="calibration windows"):
        monitor_device.monitor_knobs(2, 14)
    with pytest.raises(ToolkitError) as e:
        evaluate(data=FIX / "skab_mini", fmt="skab", out=tmp_path / "o", train_rows=1, target="host", jobs=1,
                 window=2, per_file=per_file)
    assert "valve1/0.csv: 1 commissioning rows are too few" in e.value.message
    assert "at least 15" in e.value.message and "--train-rows 15" in e.value.hint


def test_a_missing_fleet_file_names_the_fleet_option(tmp_path):
    from aiot.evaluate.run import evaluate

    with pytest.raises(ToolkitError) as e:
        evaluate(data=FIX / "skab_mini", fmt="skab", out=tmp_path / "o", fleet=tmp_path / "nope.csv",
                 target="reference", jobs=1)
    assert str(tmp_path / "nope.csv") in e.value.message and "--fleet" in e.value.hint
    assert "--data" not in e.value.hint


def test_labels_inside_the_commissioning_rows_are_warned_about_not_dropped_silently(scripted, tmp_path, monkeypatch,
                                                                                    capsys):
    # skab_mini: 0.csv incident rows 8..10, 10.csv rows 6..7, 2.csv none; commissioning on 11
    # rows hides both incidents wholly (3 + 2 labelled rows), leaving "0/0 incidents"
    scripted.plan = {}  # a silent device
    _, _, res = _run(train_rows=11)
    agg = pipeline.aggregate(res)
    assert agg["incidents"] == 0  # the results stay as they were: unscored, not invented
    [line] = agg["labels_not_scored"]
    assert line.startswith("5 labelled row(s) fall inside commissioning rows")
    assert "2 incident(s) lie wholly there" in line
    assert "valve1/0.csv (3 of its first 11 rows, 1 whole incident(s))" in line
    assert "valve1/10.csv (2 of its first 11 rows, 1 whole incident(s))" in line and "2.csv (" not in line
    # on 7 rows only 10.csv's row 6 is hidden; its incident (6..7) is still scored
    [line] = pipeline.aggregate(_run(train_rows=7)[2])["labels_not_scored"]
    assert line.startswith("1 labelled row(s)") and "wholly" not in line and "valve1/10.csv (1 of its first 7" in line
    assert pipeline.aggregate(_run(train_rows=4)[2])["labels_not_scored"] == []
    # the run prints it, and report.json / report.html carry it
    from aiot.evaluate import run as run_mod

    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    run_mod.evaluate(data=FIX / "skab_mini", fmt="skab", out=tmp_path / "o", train_rows=11, target="reference",
                     window=2, jobs=1)
    err = capsys.readouterr().err
    assert "warning: 5 labelled row(s) fall inside commissioning rows" in err
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["aggregate"]["labels_not_scored"][0].startswith("5 labelled row(s)")
    assert "Warning:</b> 5 labelled row(s)" in (tmp_path / "o" / "report.html").read_text()


def test_nab_windows_outside_the_data_or_inside_commissioning_are_warned_about(scripted, tmp_path):
    # a.csv: 20 rows, one a minute from 2014-04-10 07:00
    scripted.plan = {}
    (tmp_path / "labels.json").write_text(json.dumps({"realKnown/a.csv": [
        ["2014-04-10 07:01:00", "2014-04-10 07:02:00"],  # rows 1..2: inside 4 commissioning rows
        ["2014-04-10 07:10:00", "2014-04-10 07:14:00"],  # rows 10..14: scored
        ["2015-01-01 00:00:00", "2015-01-01 01:00:00"]]}))  # a year later: no row at all
    ds = readers.read("nab", FIX / "nab_mini", tmp_path / "labels.json")
    st = pipeline.Settings(format="nab", train_rows=4, jobs=1, window=2)
    res = pipeline.run(ds, st, package=Path("unused"))
    lines = pipeline.aggregate(res)["labels_not_scored"]
    assert any(ln.startswith("label windows wholly inside the commissioning / NAB probation rows")
               and "realKnown/a.csv (1 window(s))" in ln for ln in lines)
    outside = [ln for ln in lines if "outside their file's time range" in ln]
    assert outside and "realKnown/a.csv (2015-01-01T00:00:00Z .. 2015-01-01T01:00:00Z)" in outside[0]
    assert res[0].recording.meta["windows_outside_data"] == [["2015-01-01T00:00:00Z", "2015-01-01T01:00:00Z"]]


def _skab_with_bad_files(root: Path) -> Path:
    """skab_mini plus three files that cannot be evaluated: a cell that is no number, a
    missing sensor column, and too few rows to commission on 4 and stream the rest."""
    import shutil

    shutil.copytree(FIX / "skab_mini", root)
    good = (root / "valve1" / "0.csv").read_text().splitlines()
    (root / "valve1" / "3.csv").write_text("\n".join(good[:5] + [good[5].replace(";1.0", ";oops", 1)] + good[6:]) + "\n")
    (root / "valve1" / "4.csv").write_text("\n".join(
        ";".join(c for i, c in enumerate(line.split(";")) if i != 2) for line in good) + "\n")  # no s2
    (root / "valve1" / "5.csv").write_text("\n".join(good[:4]) + "\n")  # 3 rows
    return root


def test_a_bad_file_stops_a_folder_run_and_says_skip_bad_files_would_leave_it_out(scripted, tmp_path):
    from aiot.evaluate.run import evaluate

    data = _skab_with_bad_files(tmp_path / "skab")
    with pytest.raises(ToolkitError) as e:
        evaluate(data=data, fmt="skab", out=tmp_path / "o", train_rows=4, target="reference", window=2, jobs=1)
    assert "valve1/3.csv:6: column 's1': 'oops" in e.value.message
    assert "--skip-bad-files" in e.value.hint and "number" in e.value.hint  # the CSV hint stays, the option is added
    (data / "valve1" / "3.csv").unlink()
    with pytest.raises(ToolkitError) as e:
        evaluate(data=data, fmt="skab", out=tmp_path / "o", train_rows=4, target="reference", window=2, jobs=1)
    assert e.value.message.startswith("valve1/4.csv: sensor columns differ") and "--skip-bad-files" in e.value.hint
    (data / "valve1" / "4.csv").unlink()
    with pytest.raises(ToolkitError) as e:
        evaluate(data=data, fmt="skab", out=tmp_path / "o", train_rows=4, target="reference", window=2, jobs=1)
    assert e.value.message.startswith("valve1/5.csv: 3 rows, cannot commission on 4") and "--skip-bad-files" in e.value.hint
    assert not (tmp_path / "o").exists()


def test_skip_bad_files_leaves_them_out_names_them_and_scores_the_rest_as_alone(scripted, tmp_path, monkeypatch,
                                                                               capsys):
    from aiot.evaluate import run as run_mod

    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    common = dict(fmt="skab", train_rows=4, target="reference", window=2, jobs=1)
    alone = run_mod.evaluate(data=FIX / "skab_mini", out=tmp_path / "alone", **common)
    capsys.readouterr()
    data = _skab_with_bad_files(tmp_path / "skab")
    summary = run_mod.evaluate(data=data, out=tmp_path / "o", skip_bad_files=True, **common)
    err = capsys.readouterr().err
    skipped = summary.pop("skipped_files")
    assert [s["file"] for s in skipped] == ["valve1/3.csv", "valve1/4.csv", "valve1/5.csv"]
    assert "'oops" in skipped[0]["reason"] and "missing 's2'" in skipped[1]["reason"]
    assert "cannot commission on 4" in skipped[2]["reason"]
    assert summary == alone  # the three good files, scored exactly as on their own
    for s in skipped:
        assert f"warning: skipped {s['file']}: {s['reason']}" in err
    assert "warning: 3 file(s) skipped, not in the results: valve1/3.csv, valve1/4.csv, valve1/5.csv" in err
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["aggregate"]["skipped_files"] == skipped
    assert [f["file"] for f in doc["files"]] == ["valve1/0.csv", "valve1/2.csv", "valve1/10.csv"]
    page = (tmp_path / "o" / "report.html").read_text()
    assert "3 file(s) skipped" in page and "valve1/4.csv: " in page


def test_skip_bad_files_with_nothing_left_is_an_error_naming_the_first(tmp_path):
    from aiot.evaluate.run import evaluate

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("timestamp,x\n0,1\n1,what\n")
    (tmp_path / "d" / "b.csv").write_text("")
    with pytest.raises(ToolkitError) as e:
        evaluate(data=tmp_path / "d", fmt="generic", out=tmp_path / "o", target="reference", jobs=1,
                 skip_bad_files=True)
    assert e.value.message.startswith(f"{tmp_path / 'd'}: every file was left out (2); the first, a.csv: ")
    assert "'what'" in e.value.message


def test_skip_bad_files_keeps_nab_label_entries_of_the_files_it_left_out(tmp_path):
    import shutil

    shutil.copytree(FIX / "nab_mini", tmp_path / "nab")
    data, labels = tmp_path / "nab" / "data", tmp_path / "nab" / "labels.json"
    shutil.copy(data / "realKnown" / "a.csv", data / "realKnown" / "b.csv")
    (data / "realKnown" / "a.csv").write_text("timestamp,value\nnot a time,1\n")
    labels.write_text(json.dumps({**json.loads(labels.read_text()), "realKnown/b.csv": []}))
    with pytest.raises(ToolkitError) as e:
        readers.read("nab", data, labels)
    assert "a.csv:2" in e.value.message and "--skip-bad-files" in e.value.hint
    ds = readers.read("nab", data, labels, skip_bad=True)
    assert [name for name, _ in ds.skipped] == ["realKnown/a.csv"]  # its labels entry is no "unknown file"
    assert [r.name for r in ds.recordings] == ["realKnown/b.csv"]


def test_the_cli_takes_skip_bad_files(scripted, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from aiot.cli import main
    from aiot.evaluate import run as run_mod

    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    data = _skab_with_bad_files(tmp_path / "skab")
    args = ["evaluate", "--data", str(data), "--format", "skab", "--train-rows", "4", "--target", "reference",
            "--window", "2", "--jobs", "1", "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--skip-bad-files" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, [*args, "--skip-bad-files"])
    assert r.exit_code == 0, r.output
    assert "warning: 3 file(s) skipped" in r.output and "files 3," in r.output


def _swap_s1_s2(path: Path) -> None:
    """The same recording with its s1 and s2 columns swapped (header and values)."""
    rows = [line.split(";") for line in path.read_text().splitlines()]
    path.write_text("\n".join(";".join([r[0], r[2], r[1], *r[3:]]) for r in rows) + "\n")


def test_the_odd_file_is_the_one_left_out_even_when_it_comes_first(tmp_path):
    """The files' columns are checked against those most files have, not the first file's: one
    odd file named a.csv left the three good ones out (skipped) or was the reference they
    'differed' from (without the option)."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.csv").write_text("timestamp,x,y,extra\n" + "".join(f"{t},1,2,3\n" for t in range(20)))
    for name in ("b.csv", "c.csv", "e.csv"):
        (d / name).write_text("timestamp,x,y\n" + "".join(f"{t},1,2\n" for t in range(20)))
    ds = readers.read("generic", d, skip_bad=True)
    assert [r.name for r in ds.recordings] == ["b.csv", "c.csv", "e.csv"]
    assert [name for name, _ in ds.skipped] == ["a.csv"]
    assert "extra 'extra' (b.csv has x, y)" in ds.skipped[0][1]
    with pytest.raises(ToolkitError) as e:
        readers.read("generic", d)
    assert e.value.message.startswith("a.csv: sensor columns differ from b.csv's")
    # SKAB with its fleet recording: every file has the fleet's columns, the first in another order
    import shutil

    shutil.copytree(FIX / "skab_mini", tmp_path / "skab")
    _swap_s1_s2(tmp_path / "skab" / "valve1" / "0.csv")
    ds = readers.read("skab", tmp_path / "skab", skip_bad=True)
    assert [r.name for r in ds.recordings] == ["valve1/2.csv", "valve1/10.csv"]
    assert [name for name, _ in ds.skipped] == ["valve1/0.csv"] and "another order" in ds.skipped[0][1]
    assert ds.fleet.channels == ["s1", "s2"]


def test_skip_bad_files_leaves_out_a_file_the_system_cannot_read(tmp_path, monkeypatch):
    """No permission, an I/O error, a link to nowhere: files that cannot be read like any
    other (named, and left out with the option); the link was passed over without a word and
    the OSError stopped even a run with the option (an I/O error with a traceback)."""
    import errno

    d = tmp_path / "d"
    d.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (d / name).write_text("timestamp,x\n" + "".join(f"{t},1\n" for t in range(20)))
    (d / "gone.csv").symlink_to(tmp_path / "unmounted" / "gone.csv")
    real = readers.load_csv

    def load(path, **kw):
        if Path(path).name == "b.csv":
            raise OSError(errno.EIO, "Input/output error")  # as a read() on a failing disk: no filename
        if Path(path).name == "c.csv":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, **kw)

    monkeypatch.setattr(readers, "load_csv", load)
    ds = readers.read("generic", d, skip_bad=True)
    assert [r.name for r in ds.recordings] == ["a.csv"]
    why = dict(ds.skipped)
    assert list(why) == ["b.csv", "c.csv", "gone.csv"]
    assert why["b.csv"].startswith(f"{d / 'b.csv'}: cannot be read (Input/output error) (to fix: ")
    assert why["c.csv"].startswith(f"{d / 'c.csv'}: cannot be read (Permission denied) (to fix: ")
    assert why["gone.csv"].startswith(
        f"{d / 'gone.csv'}: a link to {tmp_path / 'unmounted' / 'gone.csv'}, which does not exist")
    with pytest.raises(ToolkitError) as e:
        readers.read("generic", d)
    assert why["b.csv"].startswith(e.value.message + " (to fix: ") and "permissions" in e.value.hint
    assert "--skip-bad-files" in e.value.hint


def test_limit_with_skip_bad_files_is_the_folders_first_files(scripted, tmp_path, monkeypatch, capsys):
    """--limit N is the folder's first N files, as without the option; the bad ones among them
    are left out and named. A bad file after them is no 'skipped' file of this run (it was
    listed as one), and a file left out does not make room for a later one."""
    from aiot.evaluate import run as run_mod

    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    data = _skab_with_bad_files(tmp_path / "skab")  # valve1/ 0, 2, 3 (bad), 4 (bad), 5 (bad), 10
    common = dict(data=data, fmt="skab", train_rows=4, target="reference", window=2, jobs=1, skip_bad_files=True)
    summary = run_mod.evaluate(out=tmp_path / "o", limit=3, **common)
    assert [s["file"] for s in summary["skipped_files"]] == ["valve1/3.csv"]
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [f["file"] for f in doc["files"]] == ["valve1/0.csv", "valve1/2.csv"]
    assert "valve1/4.csv" not in capsys.readouterr().err
    summary = run_mod.evaluate(out=tmp_path / "o5", limit=5, **common)  # the commissioning check too
    assert [s["file"] for s in summary["skipped_files"]] == ["valve1/3.csv", "valve1/4.csv", "valve1/5.csv"]
    (data / "valve1" / "0.csv").write_text("")
    with pytest.raises(ToolkitError) as e:
        run_mod.evaluate(out=tmp_path / "o1", limit=1, **common)
    assert "each of the first 1 file(s) (--limit 1) was left out (1); the first, valve1/0.csv:" in e.value.message


def test_skip_bad_files_leaves_out_a_file_the_device_cannot_commission(scripted, tmp_path, monkeypatch, capsys):
    """A file the checks before training pass, but whose commissioning the device (or the
    training of its own model) refuses, e.g. a sensor with no valid sample in those rows:
    it stopped the run after the other files' work, --skip-bad-files or not, and without
    the option its error did not say the option exists."""
    from aiot.evaluate import run as run_mod

    class Refuses(scripted):
        def commission(self, head):
            if head.source.name == "2.csv":
                raise ToolkitError("sensor(s) s1 sent no valid sample in the first 2 commissioning rows",
                                   hint="fix or reconnect the sensor")
            return super().commission(head)

    monkeypatch.setattr(pipeline, "make_device", lambda *a, **k: Refuses())
    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    common = dict(data=FIX / "skab_mini", fmt="skab", train_rows=4, target="reference", window=2, jobs=1)
    with pytest.raises(ToolkitError) as e:
        run_mod.evaluate(out=tmp_path / "o", **common)
    assert e.value.message == ("valve1/2.csv: cannot be commissioned on its 4 commissioning rows: sensor(s) s1 "
                               "sent no valid sample in the first 2 commissioning rows")
    assert "reconnect" in e.value.hint and "--skip-bad-files" in e.value.hint
    summary = run_mod.evaluate(out=tmp_path / "o", skip_bad_files=True, **common)
    reason = f"{e.value.message} (to fix: fix or reconnect the sensor)"  # the error and its own hint
    assert summary["skipped_files"] == [{"file": "valve1/2.csv", "reason": reason}]
    assert f"warning: skipped valve1/2.csv: {reason}" in capsys.readouterr().err
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [f["file"] for f in doc["files"]] == ["valve1/0.csv", "valve1/10.csv"]
    monkeypatch.setattr(pipeline, "make_device", lambda *a, **k: Refuses())
    with pytest.raises(ToolkitError) as e:
        run_mod.evaluate(out=tmp_path / "o2", skip_bad_files=True, **{**common, "data": FIX / "skab_mini" / "valve1" / "2.csv",
                                                                     "fmt": "generic"})
    assert "every file was left out (1); the first, 2.csv: 2.csv: " in e.value.message  # its own model, here


def test_reference_per_file_needs_the_rows_its_own_model_trains_on(tmp_path, monkeypatch):
    """It asked for 2 windows (16 rows) and then failed in training. By hand, window 8: 80 % of
    the rows train, and 40 windows (stride 1) must end in them, 32 to fit and 8 to calibrate:
    int(0.8 r) - 7 >= 40, so r >= 59."""
    from aiot.evaluate.run import evaluate

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    rng = np.random.default_rng(0)
    (tmp_path / "site").mkdir()
    for name in ("a.csv", "b.csv"):
        rows = [f"{i},{x:.4f},{y:.4f},{int(80 <= i < 90)}" for i, (x, y) in enumerate(rng.normal(size=(100, 2)))]
        (tmp_path / "site" / name).write_text("timestamp,s1,s2,label\n" + "\n".join(rows) + "\n")
    common = dict(data=tmp_path / "site", fmt="generic", target="reference", window=8, jobs=1, epochs=1,
                  per_file=True)
    with pytest.raises(ToolkitError) as e:
        evaluate(out=tmp_path / "o58", train_rows=58, **common)
    assert "a.csv: 58 commissioning rows are too few" in e.value.message and "at least 59 at window 8" in e.value.message
    summary = evaluate(out=tmp_path / "o59", train_rows=59, **common)  # the minimum trains
    assert summary["files"] == 2


def test_an_alert_latched_before_an_incident_neither_detects_it_nor_counts_as_true(scripted):
    # issue 19: 0.csv alerts on every test row 4..11, its incident is rows 8..10. The alert
    # started 4 rows before the onset, beyond the default tolerance (2 rows): the incident is
    # missed, the alert is false, and the summary's counts say so next to FAR
    from aiot.evaluate import incidents as inc

    assert inc.DEFAULT_TOLERANCE_ROWS == 2
    scripted.plan = {"0.csv": list(range(4, 12)), "10.csv": [], "2.csv": []}
    _, _, res = _run()
    r0 = next(r for r in res if r.recording.name == "valve1/0.csv")
    assert [i.detected for i in r0.incidents] == [False]
    assert [(a.start, a.end, a.true) for a in r0.alerts] == [(4, 11, False)]
    agg = pipeline.aggregate(res)
    assert (agg["incidents_detected"], agg["alerts"], agg["false_alerts"]) == (0, 1, 1)
    assert agg["test_rows"]["fp"] == 5  # rows 4..7 and 11
    from aiot.commands.evaluate import summary_text

    text = summary_text(agg)  # 24 test rows, 5 labelled (0.csv 8..10, 10.csv 6..7): 19 normal
    assert "incidents detected 0/2, alerts 1: 0 true, 1 false" in text
    assert "FAR 26.32 % (5 of 19 normal rows alerting)" in text


def test_an_early_warning_lead_counts_an_alert_raised_before_the_labelled_onset(scripted):
    # the same latched alert (0.csv rows 4..11, incident 8..10, rows 1 s apart), with a lead of
    # 4 s: it started 4 s before the onset, a warning, so it detects the incident and is true;
    # rows 4..7 (the lead) are neither normal nor fault: FAR counts only row 11 of 19 - 4 rows
    from aiot.commands.evaluate import summary_text

    scripted.plan = {"0.csv": list(range(4, 12)), "10.csv": [], "2.csv": []}
    ds = readers.read("skab", FIX / "skab_mini")
    st = pipeline.Settings(format="skab", train_rows=4, jobs=1, window=2, early_warning_s=4.0)
    res = pipeline.run(ds, st, package=Path("unused"))
    r0 = next(r for r in res if r.recording.name == "valve1/0.csv")
    assert [(i.detected, i.delay_rows) for i in r0.incidents] == [(True, -4)]
    assert [(a.start, a.end, a.true) for a in r0.alerts] == [(4, 11, True)]
    agg = pipeline.aggregate(res)
    assert (agg["incidents_detected"], agg["alerts"], agg["false_alerts"]) == (1, 1, 0)
    # lead rows among the test rows: 0.csv 4..7 (all alerting); 10.csv's onset 6: rows 4, 5
    assert agg["early_warning_rows"] == {"rows": 6, "alerting": 4, "share": 4 / 6}
    assert agg["test_rows"]["fp"] == 1 and agg["test_rows"]["tn"] == 12
    text = summary_text(agg)
    assert "incidents detected 1/2, alerts 1: 1 true, 0 false" in text
    assert "up to 4 s before an incident's onset" in text
    assert "FAR 7.69 % (1 of 13 normal rows alerting)" in text
    assert "6 rows within the lead before an onset (4 alerting) are neither" in text
    # and without a lead the figures are those of the default rule (the test above)
    st0 = pipeline.Settings(format="skab", train_rows=4, jobs=1, window=2)
    agg0 = pipeline.aggregate(pipeline.run(ds, st0, package=Path("unused")))
    assert (agg0["false_alerts"], agg0["test_rows"]["fp"], agg0["early_warning_rows"]["rows"]) == (1, 5, 0)


def test_the_cli_takes_an_early_warning_duration_and_writes_it_into_the_report(scripted, tmp_path, monkeypatch):
    from aiot.cli import main
    from aiot.evaluate import run as run_mod

    monkeypatch.setattr(pipeline, "fleet_package", lambda *a, **k: tmp_path / "no-model")
    monkeypatch.setattr(run_mod, "_model_context", lambda package: {"package": str(package)})
    scripted.plan = {"0.csv": list(range(4, 12)), "10.csv": [], "2.csv": []}
    args = ["evaluate", "--data", str(FIX / "skab_mini"), "--format", "skab", "--train-rows", "4", "--target",
            "reference", "--window", "2", "--jobs", "1"]
    for bad in ("soon", "-3h", "12 parsecs", "nan"):
        r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "bad"), "--early-warning", bad])
        assert r.exit_code == 2 and "--early-warning" in r.output and "12h" in r.output, (bad, r.output)
        assert "Traceback" not in r.output
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o"), "--early-warning", "0.5min"])
    assert r.exit_code == 0, r.output
    assert "1 true, 0 false" in r.output and "up to 30 s before an incident's onset" in r.output
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["settings"]["early_warning_s"] == 30.0 and doc["incident_matching"]["early_warning_s"] == 30.0
    assert doc["aggregate"]["early_warning_rows"]["rows"] > 0
    page = (tmp_path / "o" / "report.html").read_text()
    assert "detected 4 s before its onset" in page
    assert "an alert that starts up to 30 s before a labelled onset detects it" in page
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o0")])  # the default: labels mark the onset
    assert r.exit_code == 0 and "0 true, 1 false" in r.output and "early warning" not in r.output
    assert json.loads((tmp_path / "o0" / "report.json").read_text())["incident_matching"]["early_warning_s"] == 0.0


def test_recordings_that_end_on_a_fault_say_whether_the_alert_is_still_on(scripted, tmp_path):
    # a run to failure: 10.csv labelled from row 9 to its end (row 11). Is the device still
    # alerting on its last row? Said per file, pooled and on the summary line.
    import shutil

    from aiot.commands.evaluate import summary_text

    root = tmp_path / "skab"
    shutil.copytree(FIX / "skab_mini", root)
    f = root / "valve1" / "10.csv"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:10] + [ln.replace(";0.0;0.0", ";1.0;0.0") for ln in lines[10:]]) + "\n")
    ds = readers.read("skab", root)
    st = pipeline.Settings(format="skab", train_rows=4, jobs=1, window=2)
    scripted.plan = {"0.csv": [9, 10], "10.csv": [9, 10, 11], "2.csv": []}
    agg = pipeline.aggregate(pipeline.run(ds, st, package=Path("unused")))
    assert agg["ending_on_a_fault"] == {"files": 1, "alerting_at_the_end": 1}
    assert "1 recording(s) end on a labelled fault: the alert is still on at the end of 1" in summary_text(agg)
    scripted.plan = {"0.csv": [9, 10], "10.csv": [9, 10], "2.csv": []}  # the alert ended a row early
    agg = pipeline.aggregate(pipeline.run(ds, st, package=Path("unused")))
    assert agg["ending_on_a_fault"] == {"files": 1, "alerting_at_the_end": 0}
    assert "the alert is still on at the end of 0 (not: valve1/10.csv)" in summary_text(agg)
    page = report.write_html(tmp_path / "r.html", pipeline.run(ds, st, package=Path("unused")), agg,
                             st.to_json(), {"data": str(root)}).read_text()
    assert "Runs to failure:</b> 1 recording(s) end on a labelled fault: the alert is still on at the end of 0" in page
    # no file ends on a fault: nothing said
    agg = pipeline.aggregate(pipeline.run(readers.read("skab", FIX / "skab_mini"), st, package=Path("unused")))
    assert agg["ending_on_a_fault"]["files"] == 0 and "end on a labelled fault" not in summary_text(agg)
