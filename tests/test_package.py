"""Model package folder: manifest checks and clear errors for broken packages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from aiot.errors import ToolkitError
from aiot.model.package import load_package


def _manifest(**over) -> dict:
    m = {
        "format": 1,
        "name": "pump",
        "channels": ["a", "b"],
        "window": 4,
        "sample_period_s": 1.0,
        "normalization": {"mean": [1.0, 2.0], "std": [0.5, 4.0], "clip": 8.0},
        "model": {"keras": "model.keras", "tflite": None, "input_shape": [1, 8]},
        "score": {"kind": "mse", "threshold": 0.25, "quantile": 0.995},
        "training": {"seed": 0, "epochs": 1, "rows": 10, "data": "x.csv", "data_sha256": "0" * 64},
        "tflite_sha256": None,
    }
    m.update(over)
    return m


def _write(d: Path, manifest: dict | str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (d / "manifest.json").write_text(text)
    return d


def _err(path: Path) -> ToolkitError:
    with pytest.raises(ToolkitError) as e:
        load_package(path)
    return e.value


def test_valid_manifest_reads_back(tmp_path):
    pkg = load_package(_write(tmp_path / "p", _manifest()))
    assert pkg.name == "pump" and pkg.channels == ["a", "b"] and pkg.window == 4
    assert pkg.threshold == 0.25 and not pkg.quantized
    assert pkg.normalization.std.tolist() == [0.5, 4.0]


def test_missing_folder(tmp_path):
    e = _err(tmp_path / "nope")
    assert "nope" in e.message and "aiot train" in e.hint


def test_folder_without_manifest(tmp_path):
    (tmp_path / "p").mkdir()
    assert "no manifest.json" in _err(tmp_path / "p").message


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "not a folder" in _err(tmp_path / "f").message


def test_manifest_not_json(tmp_path):
    e = _err(_write(tmp_path / "p", "{ not json"))
    assert "not valid JSON" in e.message and "manifest.json" in e.message


def test_manifest_not_an_object(tmp_path):
    assert "JSON object" in _err(_write(tmp_path / "p", "[1, 2]")).message


@pytest.mark.parametrize("fmt", [2, 0, None, "1"])
def test_wrong_format_version(tmp_path, fmt):
    e = _err(_write(tmp_path / "p", _manifest(format=fmt)))
    assert "format" in e.message and "reads format 1" in e.message


def test_missing_fields_are_listed(tmp_path):
    m = _manifest()
    del m["window"], m["score"]
    e = _err(_write(tmp_path / "p", m))
    assert "window" in e.message and "score" in e.message


def test_normalization_must_match_channels(tmp_path):
    e = _err(_write(tmp_path / "p", _manifest(normalization={"mean": [0.0], "std": [1.0]})))
    assert "one mean and one std per channel (2)" in e.message


@pytest.mark.parametrize("field, value, says", [
    ("window", "x", "window must be a positive integer, not 'x'"),
    ("window", 0, "window must be a positive integer, not 0"),
    ("window", 4.5, "window must be a positive integer, not 4.5"),
    ("window", True, "window must be a positive integer, not True"),
    ("sample_period_s", None, "sample_period_s must be a positive number, not None"),
    ("channels", "a,b", "channels must be a non-empty list of sensor names"),
    ("channels", [], "channels must be a non-empty list of sensor names"),
    ("score", [0.25], "score must be a JSON object"),
])
def test_hand_edited_fields_of_the_wrong_type_are_named(tmp_path, field, value, says):
    e = _err(_write(tmp_path / "p", _manifest(**{field: value})))
    assert "manifest.json" in e.message and says in e.message
    assert "aiot train" in e.hint


def test_missing_model_files(tmp_path):
    pkg = load_package(_write(tmp_path / "p", _manifest()))
    with pytest.raises(ToolkitError, match="model.keras: missing"):
        pkg.file("keras")
    with pytest.raises(ToolkitError, match="no tflite model yet") as e:
        pkg.tflite_bytes()
    assert "aiot quantize" in e.value.hint
    with pytest.raises(ToolkitError, match="vectors.npz: missing"):
        pkg.vectors()


def test_tflite_hash_is_checked(tmp_path):
    d = tmp_path / "p"
    data = b"TFL3 pretend model"
    good = hashlib.sha256(data).hexdigest()
    m = _manifest(tflite_sha256=good)
    m["model"]["tflite"] = "model.tflite"
    _write(d, m)
    (d / "model.tflite").write_bytes(data)
    assert load_package(d).tflite_bytes() == data
    (d / "model.tflite").write_bytes(data + b"!")
    with pytest.raises(ToolkitError, match="does not match tflite_sha256"):
        load_package(d).tflite_bytes()


def test_corrupt_vectors(tmp_path):
    d = _write(tmp_path / "p", _manifest())
    (d / "vectors.npz").write_bytes(b"not a zip")
    with pytest.raises(ToolkitError, match="vectors.npz: unreadable"):
        load_package(d).vectors()


def test_vectors_round_trip(tmp_path):
    d = _write(tmp_path / "p", _manifest())
    np.savez(d / "vectors.npz", x=np.ones((3, 8), np.float32))
    assert load_package(d).vectors()["x"].shape == (3, 8)


def test_save_rewrites_manifest_atomically(tmp_path):
    pkg = load_package(_write(tmp_path / "p", _manifest()))
    pkg.manifest["score"]["threshold"] = 0.5
    pkg.save()
    assert load_package(tmp_path / "p").threshold == 0.5
    assert not list((tmp_path / "p").glob("*.tmp"))
