"""A garbage sample (1e20 on one sensor) in the rows the host learns an installation's
statistics from: the installation's commissioning rows (`aiot commission`, `aiot evaluate
--per-file`) or the fleet's normal recording (`--fleet`, `--fleet-data`). The device rejects
such a spike when it commissions (monitor.c commission_channel); the host's per-sensor noise
floors and the model's noise units took it in, so the sensor's floor became ~1e18 and the
sensor could never alert again, silently. Now an isolated sample far beyond the sensor's
range is left out of them, and said."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.data import Series
from aiot.testing import requires_arm


def _series(v: np.ndarray) -> Series:
    t = np.arange(len(v), dtype=np.float64)
    return Series(timestamps=t, values=v, valid=np.isfinite(v), labels=None,
                  channels=[f"s{i}" for i in range(v.shape[1])], source=None)


def _noise(rows: int, seed: int = 0) -> np.ndarray:
    return 5.0 + np.random.default_rng(seed).normal(size=(rows, 4))


@pytest.mark.parametrize("rows", [100, 1100])
def test_an_isolated_garbage_sample_is_left_out_and_counted(rows):
    from aiot.data.spikes import reject_spikes

    v = _noise(rows)
    v[37, 3] = 1e20
    v[60, 1] = -1e20
    kept, rejected = reject_spikes(_series(v))
    assert rejected == {"s3": [37], "s1": [60]}
    assert not kept.valid[37, 3] and not kept.valid[60, 1]
    assert kept.valid.sum() == v.size - 2  # nothing else


def test_what_a_real_sensor_does_is_kept():
    from aiot.data.spikes import reject_spikes

    rng = np.random.default_rng(1)
    v = _noise(1000)
    # a quantized sensor, mostly one value, a single-sample blip of one step every few rows (SKAB's flow RMS)
    v[:, 0] = 32.0 + 0.5 * (rng.random(1000) < 0.17)
    # a level that switches and stays (a confirmed change, however far)
    v[500:, 1] += 1e3
    # a stuck sensor
    v[:, 2] = 7.0
    # three garbage samples in a row: confirmed by each other, a level as far as the host can tell
    v[200:203, 3] = 1e6
    kept, rejected = reject_spikes(_series(v))
    assert rejected == {} and np.array_equal(kept.valid, np.isfinite(v))


def _csv(path, v: np.ndarray) -> None:
    path.write_text("timestamp,a,b,c,d\n" + "".join(f"{i}," + ",".join(f"{x:.6g}" for x in row) + "\n"
                                                   for i, row in enumerate(v)))


@pytest.mark.slow
@requires_arm
@pytest.mark.parametrize("where", ["commissioning-rows", "fleet-recording"])
def test_a_garbage_sample_does_not_blind_the_sensor_it_is_on(tmp_path, monkeypatch, where):
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "build"))
    clean, spiked = _noise(1100, seed=2), _noise(1100, seed=2)
    spiked[300, 3] = 1e20
    floors = {}
    for name, fleet in (("clean", clean), ("spiked", spiked)):
        unit = (fleet if where == "commissioning-rows" else _noise(600, seed=3))[:600]
        _csv(tmp_path / f"unit-{name}.csv", unit)
        args = ["commission", "--data", str(tmp_path / f"unit-{name}.csv"), "--epochs", "1", "--board", "mps2-an386",
                "--out", str(tmp_path / name)]
        if where == "fleet-recording":
            _csv(tmp_path / f"normal-{name}.csv", fleet)
            args += ["--fleet-data", str(tmp_path / f"normal-{name}.csv")]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        doc = json.loads((tmp_path / name / "commission.json").read_text())
        cfg = doc["monitor_config"]
        floors[name] = cfg["noise_floor"][3], cfg["noise_floor_rel"][3]
        # what the host left out is in the record, beside the model it shaped
        assert doc["model"]["rejected_spikes"] == ({"d": [300]} if name == "spiked" else {})
        if name == "spiked":
            source = "unit-spiked.csv" if where == "commissioning-rows" else "normal-spiked.csv"
            assert "warning:" in r.output and source in r.output and "d: 1 isolated sample" in r.output, r.output
            assert "1e+20" in r.output
    # sensor d's floor is what its real noise gives (within a few per cent), not 1e18
    assert floors["spiked"][0] <= 1.05 * floors["clean"][0] + 1e-9
    assert floors["spiked"][1] <= 1.05 * floors["clean"][1]


@pytest.mark.slow
def test_a_garbage_sample_in_the_training_rows_does_not_blind_the_trained_model(tmp_path):
    """`aiot train`: its normalization took the 1e20 in (sensor d's std 4e18: every later
    value of d, a fault's too, normalized to ~0)."""
    stds = {}
    for name in ("clean", "spiked"):
        v = _noise(1000, seed=4)
        if name == "spiked":
            v[100, 3] = 1e20
        _csv(tmp_path / f"{name}.csv", v)
        r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / f"{name}.csv"), "--epochs", "1",
                                      "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        stds[name] = manifest["normalization"]["std"][3]
        if name == "spiked":
            assert "warning:" in r.output and "spiked.csv" in r.output and "d: 1 isolated sample" in r.output
            assert "row 101 (1e+20)" in r.output and "training" in r.output
            assert manifest["training"]["rejected_spikes"] == {"d": [100]}
    assert stds["spiked"] == pytest.approx(stds["clean"], rel=0.05)


def test_a_fleet_recordings_garbage_is_said_once_however_many_models_are_built_from_it(tmp_path, monkeypatch,
                                                                                        capsys):
    """`aiot tune` builds one fleet model per noise floor and model kind of its grid from the same
    recording: the warning came once per model."""
    from aiot.data.readers import Dataset
    from aiot.evaluate import tuning
    from aiot.testing import fresh_model_cache

    fresh_model_cache(monkeypatch, tmp_path / "cache")
    v = _noise(1100, seed=5)
    v[300, 3] = 1e20
    fleet = _series(v)
    fleet.source = tmp_path / "normal.csv"
    grid = [{"fleet_noise_floor": f, "fleet_pca_variance": 0.99} for f in (0.25, 1.0)]
    models = tuning.monitor_models(Dataset([], fleet, fleet.source, []), 8, grid, fleet, "normal", commission=400)
    assert len(set(models.values())) == 2
    assert capsys.readouterr().err.count("s3: 1 isolated sample") == 1
