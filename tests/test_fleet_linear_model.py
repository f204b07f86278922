"""The linear fleet model of the window means (``fleet_pca_variance``, installation.py): what
it keeps of the fleet's recording, what its residual shows, and where it is refused. Its
pooled residual (monitor.h residual_score 4) is tested on the C monitor in test_monitor.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiot.data import Series
from aiot.errors import ToolkitError

W = 8


def _plant(rows: int, seed: int = 0) -> Series:
    """12 sensors driven by 3 slow process variables (each sensor its own mix of them) plus a
    little noise of its own: 9 relations hold among them in normal running."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float64)
    drivers = np.stack([np.sin(t / 23.0), np.cos(t / 41.0), np.sin(t / 67.0 + 1.0)], axis=1)
    mix = rng.normal(0.0, 1.0, (3, 12))
    v = 20.0 + 3.0 * drivers @ mix + 0.05 * rng.normal(size=(rows, 12))
    return Series(timestamps=t, values=v, valid=np.ones_like(v, bool), labels=None,
                  channels=[f"s{i}" for i in range(12)])


def plant_csv(path, rows: int, start: int = 0, broken: tuple[int, int | None] | None = None,
              labelled: bool = False) -> None:
    """Rows ``start``.. of the plant (:func:`_plant`) as a CSV, 1 s apart; ``broken``: sensor s5
    3 units (about one commissioned noise unit) off its relations over those rows (to the end
    with None); ``labelled``: a label column, 1 there."""
    v = _plant(start + rows, seed=0).values[start:].copy()
    y = np.zeros(rows, int)
    if broken is not None:
        v[broken[0] : broken[1], 5] += 3.0
        y[broken[0] : broken[1]] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "timestamp," + ",".join(f"s{k}" for k in range(12)) + (",label" if labelled else "")
    path.write_text(header + "\n" + "".join(f"{i}," + ",".join(f"{x:.5f}" for x in row)
                                             + (f",{lab}" if labelled else "") + "\n"
                                             for i, (row, lab) in enumerate(zip(v, y))))


def _window_mean_residual(model_dir, x: np.ndarray) -> np.ndarray:
    """Each sensor's window-mean residual (noise units) of noise-unit windows ``x`` (N, W*C)
    through the int8 model, with tflite-micro (the golden reference)."""
    from test_evaluate_installation_models import reconstruction

    return (x - reconstruction(model_dir, x)).reshape(len(x), W, -1).mean(axis=1)


@pytest.mark.slow
def test_the_linear_model_keeps_the_fleets_relations_and_its_residual_shows_a_broken_one(tmp_path, monkeypatch):
    from aiot.installation import device_fleet_model, monitor_knobs

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    fleet = _plant(1100)  # one segment (installation.SEGMENT_ROWS): one set of noise units
    model = device_fleet_model(fleet, "plant", window=W, epochs=1, seed=0, commissioning_rows=400, pca_variance=0.99)
    meta = json.loads((model / "meta.json").read_text())
    assert meta["pca_components"] == 3 and meta["pca_variance"] == 0.99  # the three process variables
    assert (model / "c" / "model.c").is_file()
    # later normal running of the same plant, in the noise units its commissioning rows gave
    head = monitor_knobs(W, 400)["commission_samples"]
    base, sd = fleet.values[:head].mean(axis=0), fleet.values[:head].std(axis=0, ddof=1)
    z = (_plant(2400, seed=0).values[1600:] - base) / sd
    windows = np.stack([z[i : i + W].ravel() for i in range(0, len(z) - W, W)])
    normal = _window_mean_residual(model, windows)
    broken = windows.copy()
    broken.reshape(len(broken), W, 12)[:, :, 5] += 0.5  # sensor 5 half a noise unit off its relations
    off = _window_mean_residual(model, broken)
    # normal running: the relations hold, each window mean within a tenth of a noise unit
    assert np.abs(normal).mean() < 0.1
    # sensor 5 off: its residual moves by the part of the offset its relations do not explain
    # (1 - its leverage; a linear model spreads the rest over the sensors it relates it to,
    # which is why the monitor isolates by removal), and the residual energy grows
    change = np.abs((off - normal).mean(axis=0))
    assert change[5] > 0.1
    assert (off ** 2).mean() > 2.0 * (normal ** 2).mean()


@pytest.mark.slow
def test_the_linear_model_leaves_at_least_four_directions_to_its_residual(tmp_path, monkeypatch):
    # The pooled residual needs four sensors' worth; on 6 sensors at most 2 components are kept
    from aiot.installation import PCA_LEFT_OUT, device_fleet_model

    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    six = _plant(1600)
    six = Series(timestamps=six.timestamps, values=six.values[:, :6].copy(), valid=six.valid[:, :6].copy(),
                 labels=None, channels=six.channels[:6])
    model = device_fleet_model(six, "six", window=W, epochs=1, seed=0, commissioning_rows=400, pca_variance=0.999)
    assert json.loads((model / "meta.json").read_text())["pca_components"] == 6 - PCA_LEFT_OUT


def test_one_model_per_installation_refuses_the_linear_fleet_model():
    from aiot.installation import fleet_model_only

    fleet_model_only({"fleet_pca_variance": 0.0}, "aiot commission")  # the autoencoder: fine
    with pytest.raises(ToolkitError, match="fleet_pca_variance 0.99 chooses the fleet model.*aiot commission"):
        fleet_model_only({"fleet_pca_variance": 0.99}, "aiot commission")


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.99", True])
def test_an_alert_settings_file_refuses_a_fleet_pca_variance_out_of_range(tmp_path, value):
    from aiot import alert_settings

    f = tmp_path / "s.json"
    f.write_text(json.dumps({"aiot_alert_settings": 1, "target": "device", "window": 8,
                             "knobs": {"alert_margin": 3.0, "fleet_pca_variance": value}, "picked_by": {}}))
    with pytest.raises(ToolkitError, match="fleet_pca_variance.*in \\[0, 1\\)"):
        alert_settings.load(f)


def test_a_model_built_without_the_linear_model_is_not_run_as_one(tmp_path):
    from aiot.installation import config_knobs

    (tmp_path / "meta.json").write_text(json.dumps({"noise_floor": 0.0}))
    assert config_knobs(tmp_path, {"alert_margin": 3.0}) == {"alert_margin": 3.0}
    with pytest.raises(ToolkitError, match="fleet_pca_variance 0.0, run asks for 0.99"):
        config_knobs(tmp_path, {"fleet_pca_variance": 0.99})


def test_evaluate_per_file_with_the_linear_fleet_model_stops_with_the_reason(tmp_path):
    # A pick that aiot tune made with the fleet model says so (picked_by.model) and is refused
    # with --per-file as any fleet pick is; one that claims per-file models but carries the
    # knob is refused for the knob, before any model is trained.
    from pathlib import Path

    from click.testing import CliRunner

    from aiot.cli import main

    data = Path(__file__).parent / "fixtures" / "eval" / "skab_mini"
    for model, said in (("fleet", "picked with the fleet model"),
                        ("per-file", "fleet_pca_variance 0.99 chooses the fleet model")):
        f = tmp_path / f"{model}.json"
        f.write_text(json.dumps({"aiot_alert_settings": 1, "target": "device", "window": 2,
                                 "knobs": {"alert_margin": 3.0, "fleet_pca_variance": 0.99},
                                 "picked_by": {"model": model}}))
        r = CliRunner().invoke(main, ["evaluate", "--data", str(data), "--format", "skab", "--per-file", "--target",
                                      "host", "--train-rows", "4", "--window", "2", "--alert-settings", str(f),
                                      "--jobs", "1", "--out", str(tmp_path / model)])
        assert r.exit_code != 0 and said in " ".join(r.output.split()), r.output
