"""`aiot quantize --keras MODEL --data CSV --out PKG`: the user's own Keras autoencoder,
calibrated on their data, to a full-int8 package the rest of the pipeline takes; and the
hints for a model this route does not take name commands that work for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.cli import main

FIX = Path(__file__).resolve().parent / "fixtures"


def test_a_float_tflite_is_sent_to_a_command_that_quantizes_from_the_keras_model(tmp_path):
    res = CliRunner().invoke(main, ["codegen", "--model", str(FIX / "tflite" / "float_model.tflite"),
                                    "--out", str(tmp_path / "c")])
    assert res.exit_code == 2
    assert "aiot quantize --keras MODEL.keras --data DATA.csv --out PKG" in res.output
    # and that command takes those options (it stops at the missing file, not at an unknown option)
    res = CliRunner().invoke(main, ["quantize", "--keras", str(tmp_path / "MODEL.keras"), "--data", "DATA.csv",
                                    "--out", str(tmp_path / "PKG")])
    assert res.exit_code == 2 and "Invalid value for '--keras'" in res.output and "does not exist" in res.output


def test_keras_needs_its_data_and_a_package_folder(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the options are checked first")
    for args, says in ((["--keras", str(model)], "--keras needs --data"),
                       (["--keras", str(model), "--data", "x.csv"], "--keras needs --data"),
                       (["--keras", str(model), "--package", str(tmp_path), "--data", "x.csv", "--out", "o"],
                        "not both"),
                       (["--package", str(tmp_path), "--data", "x.csv"], "go with --keras"),
                       ([], "--package PKG")):
        res = CliRunner().invoke(main, ["quantize", *args])
        assert res.exit_code == 2 and says in res.output, (args, res.output)


def _autoencoder(path: Path, inputs: int, outputs: int | None = None, seed: int = 0):
    from aiot.quiet import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(6, activation="relu"),
                              keras.layers.Dense(outputs or inputs)])
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.mark.slow
def test_the_users_keras_autoencoder_becomes_a_full_int8_package(tmp_path):
    from aiot.data import load_csv
    from aiot.data.synth import write_csv
    from aiot.model.features import make_windows
    from aiot.model.package import load_package
    from aiot.model.tflite import parse
    from aiot.model.train import _normalization

    csv = tmp_path / "pump.csv"
    write_csv(csv, seed=3, hours=2.0)
    series = load_csv(csv)
    c, w = len(series.channels), 4
    # the user's training, outside aiot, on the features the firmware computes
    head = series.head(series.rows // 2)
    if head.labels is not None:
        head.valid &= (head.labels == 0)[:, None]
    wins = make_windows(series.head(series.rows // 2), _normalization(head), w)
    x = wins.x[wins.complete]
    model = _autoencoder(tmp_path / "mine.keras", c * w)
    model.fit(x, x, epochs=3, batch_size=64, verbose=0)
    model.save(tmp_path / "mine.keras")

    res = CliRunner().invoke(main, ["quantize", "--keras", str(tmp_path / "mine.keras"), "--data", str(csv),
                                    "--out", str(tmp_path / "pkg"), "--json", str(tmp_path / "q.json")])
    assert res.exit_code == 0, res.output
    pkg = load_package(tmp_path / "pkg")
    assert pkg.window == w and pkg.channels == series.channels and pkg.quantized
    g = parse((tmp_path / "pkg" / "model.tflite").read_bytes())
    assert g.input.dtype == "int8" and g.output.dtype == "int8"  # full int8 in and out
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["windows"] > 0 and report["decision_agreement"] > 0.9
    assert pkg.manifest["model"]["kind"] == "keras_autoencoder"
    assert pkg.vectors()["x_int8"].shape[1] == c * w
    # the rest of the pipeline takes it
    res = CliRunner().invoke(main, ["codegen", "--package", str(tmp_path / "pkg")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pkg" / "c" / "model.c").is_file()

    # models this route does not take: the error says why and names commands that work
    _autoencoder(tmp_path / "cls.keras", c * w, outputs=2).save(tmp_path / "cls.keras")
    res = CliRunner().invoke(main, ["quantize", "--keras", str(tmp_path / "cls.keras"), "--data", str(csv),
                                    "--out", str(tmp_path / "p2")])
    assert res.exit_code != 0 and "not an autoencoder" in res.output
    assert "aiot codegen --model FILE.tflite" in res.output
    _autoencoder(tmp_path / "odd.keras", c * w + 1).save(tmp_path / "odd.keras")
    res = CliRunner().invoke(main, ["quantize", "--keras", str(tmp_path / "odd.keras"), "--data", str(csv),
                                    "--out", str(tmp_path / "p3")])
    assert res.exit_code != 0 and f"takes {c * w + 1} features" in res.output and "--channels" in res.output


@pytest.mark.slow
def test_a_garbage_sample_in_the_calibration_rows_does_not_blind_the_package(tmp_path):
    """`aiot quantize --keras --data`: the package's normalization comes from the data's first
    rows; an isolated 1e20 there made its sensor's spread 1e18 (every later value of it,
    a fault's too, normalized to ~0). Left out, and said, as `aiot train` does."""
    from aiot.data.synth import write_csv

    csv = tmp_path / "pump.csv"
    write_csv(csv, seed=3, hours=2.0)
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    col = next(i for i, h in enumerate(header) if h not in ("timestamp", "label"))
    row = lines[101].split(",")
    row[col] = "1e20"
    lines[101] = ",".join(row)
    spiked = tmp_path / "pump-spiked.csv"
    spiked.write_text("\n".join(lines) + "\n")
    from aiot.data import load_csv

    c = len(load_csv(csv).channels)
    _autoencoder(tmp_path / "mine.keras", c * 4).save(tmp_path / "mine.keras")
    stds = []
    for data, out in ((csv, "clean"), (spiked, "spiked")):
        res = CliRunner().invoke(main, ["quantize", "--keras", str(tmp_path / "mine.keras"), "--data", str(data),
                                        "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
        manifest = json.loads((tmp_path / out / "manifest.json").read_text())
        stds.append(manifest["normalization"]["std"][col - 1])
    assert "warning:" in res.output and f"{header[col]}: 1 isolated sample" in res.output and "row 101" in res.output
    assert manifest["training"]["rejected_spikes"] == {header[col]: [100]}
    assert stds[1] == pytest.approx(stds[0], rel=0.05)
