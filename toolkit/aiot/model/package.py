"""The model package: one folder that carries everything later steps need.

    PKG/manifest.json   format, channels, window, normalization, quant params, threshold,
                        training provenance, hashes
    PKG/model.keras     float model (train)
    PKG/model.tflite    full-int8 model (quantize)
    PKG/vectors.npz     held-out test windows (none of their samples was trained on):
                          x (N, C*W) float32 features, timestamps / end_rows of each
                          window's last sample, labels (-1 when unlabelled), score and
                          per_channel (float model); after quantize also x_int8, y_int8
                          (tflite-micro output), score_int8, per_channel_int8.
                          x_representative: training windows used for int8 calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aiot.data import sha256_file
from aiot.errors import ToolkitError
from aiot.model.features import Normalization

FORMAT = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npz"
_REQUIRED = ("format", "name", "channels", "window", "sample_period_s", "normalization", "model", "score", "training")


@dataclass
class Package:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def channels(self) -> list[str]:
        return list(self.manifest["channels"])

    @property
    def window(self) -> int:
        return int(self.manifest["window"])

    @property
    def normalization(self) -> Normalization:
        return Normalization.from_json(self.manifest["normalization"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["score"]["threshold"])

    @property
    def quantized(self) -> bool:
        return bool(self.manifest["model"].get("tflite"))

    def file(self, key: str) -> Path:
        """Path of a model file named in the manifest (``keras`` or ``tflite``); must exist."""
        name = self.manifest["model"].get(key)
        redo = f"re-run `aiot {'quantize' if key == 'tflite' else 'train'}` for this package"
        if name is not None and not isinstance(name, str):
            raise ToolkitError(f"{self.path / MANIFEST}: model.{key} must be a file name in the package, not "
                               f"{name!r}", hint=redo + " (the manifest is written by the toolkit, not by hand)")
        if not name:
            hint = "run `aiot quantize --package %s` first" % self.path if key == "tflite" else None
            raise ToolkitError(f"{self.path}: the package has no {key} model yet", hint=hint)
        p = self.path / name
        # a package is self-contained: a manifest (shared, downloaded) never makes us read
        # another file of the machine, through .., an absolute path or a symbolic link
        root = self.path.resolve()
        if not p.resolve().is_relative_to(root):
            raise ToolkitError(f"{self.path / MANIFEST}: model.{key} = {name!r} is outside the package",
                               hint=redo + f"; the file must be inside {self.path}")
        if not p.is_file():
            raise ToolkitError(
                f"{p}: missing, but {MANIFEST} refers to it", hint="re-run `aiot train --data DATA.csv --out PKG` (and `aiot quantize --package PKG`)"
            )
        return p

    def tflite_bytes(self) -> bytes:
        """The int8 model, checked against the hash in the manifest."""
        p = self.file("tflite")
        data = p.read_bytes()
        want = self.manifest.get("tflite_sha256")
        if want and sha256_file(p) != want:
            raise ToolkitError(
                f"{p}: content does not match tflite_sha256 in {MANIFEST} (file changed after quantize)",
                hint=f"re-run `aiot quantize --package {self.path}`",
            )
        return data

    def vectors(self) -> dict[str, np.ndarray]:
        p = self.path / VECTORS
        if not p.is_file():
            raise ToolkitError(f"{p}: missing", hint="re-run `aiot train` to regenerate the test vectors")
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:
            raise ToolkitError(f"{p}: unreadable ({e})", hint="re-run `aiot train`") from e

    def save(self) -> None:
        write_manifest(self.path, self.manifest)


def write_manifest(pkg_dir: Path, manifest: dict) -> Path:
    p = Path(pkg_dir) / MANIFEST
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(p)  # atomic: a crash never leaves half a manifest
    return p


def _field_errors(m: dict) -> list[str]:
    """What is wrong with the manifest's typed fields (the ones read as numbers or lists)."""
    bad = []
    ch = m["channels"]
    if not (isinstance(ch, list) and ch and all(isinstance(c, str) for c in ch)):
        bad.append(f"channels must be a non-empty list of sensor names, not {ch!r}")
    for key in ("window", "sample_period_s"):
        v = m[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or (key == "window" and v != int(v)):
            bad.append(f"{key} must be a positive {'integer' if key == 'window' else 'number'}, not {v!r}")
    for key in ("model", "score", "training"):
        if not isinstance(m[key], dict):
            bad.append(f"{key} must be a JSON object, not {m[key]!r}")
    return bad


def require_package_folder(pkg_dir: Path | str) -> Path:
    """``pkg_dir`` if it is an existing folder, else the error that says what it is instead
    (checked before a verb locks, or would make, the folder)."""
    d = Path(pkg_dir)
    if not d.exists():
        raise ToolkitError(f"{d}: no such package folder", hint="create one with `aiot train --out DIR`")
    if not d.is_dir():
        raise ToolkitError(f"{d}: not a folder; a package is a folder with {MANIFEST}")
    return d


def load_package(pkg_dir: Path | str) -> Package:
    """Open a package folder, checking the manifest's format and fields."""
    d = require_package_folder(pkg_dir)
    mp = d / MANIFEST
    if not mp.is_file():
        raise ToolkitError(f"{d}: no {MANIFEST}, not a model package", hint="create one with `aiot train --out DIR`")
    try:
        m = json.loads(mp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{mp}: not valid JSON ({e})", hint="re-run `aiot train` to rewrite it") from e
    if not isinstance(m, dict):
        raise ToolkitError(f"{mp}: expected a JSON object at the top level")
    fmt = m.get("format")
    if fmt != FORMAT:
        raise ToolkitError(
            f"{mp}: package format {fmt!r}, this toolkit reads format {FORMAT}",
            hint="re-create the package with this toolkit version (`aiot train`)",
        )
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise ToolkitError(f"{mp}: missing field(s) {', '.join(missing)}", hint="re-run `aiot train`")
    bad = _field_errors(m)
    if bad:
        raise ToolkitError(f"{mp}: {'; '.join(bad)}", hint="re-run `aiot train` to rewrite it (the manifest is "
                                                            "written by the toolkit, not by hand)")
    norm = m["normalization"]
    c = len(m["channels"])
    if not isinstance(norm, dict) or len(norm.get("mean", [])) != c or len(norm.get("std", [])) != c:
        raise ToolkitError(f"{mp}: normalization must have one mean and one std per channel ({c})")
    return Package(path=d, manifest=m)
