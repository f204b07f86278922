"""The drift compensation's rate bound, per sensor (issue 19, principle 1): from an
alert-settings file (a number, one per sensor, or by sensor name), from `aiot evaluate
--drift-rate SENSOR=RATE` and `aiot tune --drift-rate`, resolved against the recording's
sensor columns into the monitor configuration."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aiot import alert_settings as aset
from aiot import monitor as M
from aiot.cli import main
from aiot.data import load_csv
from aiot.errors import ToolkitError
from aiot.installation import installation_config

DEVICE = {"aiot_alert_settings": 1, "target": "device", "window": 8}


def _csv(tmp_path, rows: int = 200):
    p = tmp_path / "site.csv"
    p.write_text("timestamp,pump_temp,flow,vib\n" + "".join(f"{t},{20 + t % 3},{5 + t % 2},{t % 5}\n"
                                                            for t in range(rows)))
    return p


def _settings(tmp_path, rates) -> aset.AlertSettings:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({**DEVICE, "knobs": {"alert_margin": 2.0, "clear_margin": 2.0, "max_drift_rate": rates}}))
    return aset.load(p)


@pytest.mark.parametrize("rates, want", [
    (0.5, [0.5, 0.5, 0.5]),
    ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),
    ({"flow": 2.0}, [0.25, 2.0, 0.25]),  # the others keep the default
    ({"flow": 2.0, "*": 0.05}, [0.05, 2.0, 0.05]),
])
def test_an_alert_settings_file_sets_a_drift_rate_per_sensor(tmp_path, rates, want):
    knobs = _settings(tmp_path, rates).knobs
    head = load_csv(_csv(tmp_path), label_column=None)
    cfg = installation_config(head, 8, knobs)
    assert [round(x, 6) for x in cfg.max_drift_rate[:4]] == [*want, 0.0]


@pytest.mark.parametrize("rates, message", [
    ({"flow": -1.0}, "'max_drift_rate' is [-1.0]"),
    ({"flow": "fast"}, "expected a number"),
    ({"": 1.0}, "expected {sensor column: number, ...}"),
    ({}, "expected {sensor column: number, ...}"),
])
def test_bad_per_sensor_rates_name_the_file_and_the_knob(tmp_path, rates, message):
    with pytest.raises(ToolkitError) as e:
        _settings(tmp_path, rates)
    assert message in e.value.message and "s.json" in e.value.message


def test_a_rate_for_a_sensor_the_recording_lacks_names_it_and_the_sensors(tmp_path):
    head = load_csv(_csv(tmp_path), label_column=None)
    with pytest.raises(ToolkitError) as e:
        installation_config(head, 8, {"max_drift_rate": {"flw": 1.0}})
    assert "'flw'" in e.value.message and "pump_temp, flow, vib" in e.value.message


def test_named_rates_need_named_sensors():
    with pytest.raises(ToolkitError, match="given by sensor name"):
        M.default_config(2, 8, 1000, max_drift_rate={"a": 1.0})


def test_evaluate_passes_drift_rate_to_the_run(tmp_path, monkeypatch):
    import aiot.evaluate.run as run_mod

    seen = {}

    def fake(**kw):
        seen.update(kw)
        return {}

    monkeypatch.setattr(run_mod, "evaluate", fake)
    monkeypatch.setattr("aiot.commands.evaluate.summary_text", lambda *a: "")
    r = CliRunner().invoke(main, ["evaluate", "--data", str(_csv(tmp_path)), "--out", str(tmp_path / "o"),
                                  "--drift-rate", "flow=2", "--drift-rate", "*=0.05"])
    assert r.exit_code == 0, r.output
    assert seen["knob_overrides"] == {"max_drift_rate": {"flow": 2.0, "*": 0.05}}


@pytest.mark.parametrize("value", ["flow", "flow=-1", "=2", "flow=nan"])
def test_a_bad_drift_rate_is_a_usage_error(tmp_path, value):
    r = CliRunner().invoke(main, ["evaluate", "--data", str(_csv(tmp_path)), "--out", str(tmp_path / "o"),
                                  "--drift-rate", value])
    assert r.exit_code == 2 and "SENSOR=RATE" in r.output


def test_drift_rate_needs_the_device_monitor(tmp_path):
    r = CliRunner().invoke(main, ["evaluate", "--data", str(_csv(tmp_path)), "--out", str(tmp_path / "o"),
                                  "--target", "reference", "--drift-rate", "flow=2"])
    assert r.exit_code != 0 and "--target host" in r.output
    r = CliRunner().invoke(main, ["tune", "--data", str(_csv(tmp_path)), "--target", "reference",
                                  "--drift-rate", "flow=2"])
    assert r.exit_code == 2 and "--target device" in r.output


def test_every_setting_tune_tries_carries_the_rates_so_the_pick_does():
    from aiot.evaluate.tuning import monitor_grid

    fixed = {"max_drift_rate": {"flow": 2.0}}
    grid = monitor_grid(fixed=fixed)
    assert grid and all(k["max_drift_rate"] == {"flow": 2.0} for k in grid)
    assert len(grid) == len(monitor_grid())
