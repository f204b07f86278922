"""A user's own Keras autoencoder as a model package, calibrated on their data (`aiot
quantize --keras MODEL.keras --data DATA.csv --out PKG`), ready for `aiot quantize`'s
int8 conversion and everything after it (codegen, build, run, validate).

The package format is the one `aiot train` writes, so the model must be what the firmware
runs: an autoencoder over one flat window of W x C features, time-major (oldest sample
first), each sensor standardised on the normal training rows and clipped to +-8
(aiot.model.features). C is the number of sensor columns used (--channels), W follows
from the model's input size. The data gives what the model does not carry: the
normalization, the calibration windows of the int8 ranges, the alarm threshold (a
quantile of the scores on held-out normal windows) and the test windows int8 is
checked on; the split is train.py's (split_windows)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from aiot.data import Series, sha256_file
from aiot.errors import ToolkitError
from aiot.model.features import GAP_FACTOR, make_windows
from aiot.model.package import FORMAT, MANIFEST, VECTORS, write_manifest
from aiot.model.train import (MIN_FIT_WINDOWS, REPRESENTATIVE_MAX, _even_subsample, _normalization, training_rows,
                              reconstruction_errors, split_windows)
from aiot.quiet import import_keras

#: What to run when a model is not one this route takes.
OTHER_MODELS_HINT = ("aiot packages hold autoencoders over one flat window (Dense layers, output = input); "
                     "`aiot train --data DATA.csv --out PKG` trains one, and an int8 .tflite of any other model "
                     "goes to `aiot codegen --model FILE.tflite --out DIR` and `aiot validate --model FILE.tflite`")


def load_keras_model(path: Path):
    """The Keras model at ``path`` (a .keras or .h5 file), or an error that says why not."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{path}: no such Keras model file",
                           hint="give the .keras file your training saved (model.save('model.keras'))")
    keras = import_keras()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, TypeError... for a file it cannot read
        raise ToolkitError(f"{path}: cannot be loaded as a Keras model ({type(e).__name__}: {e})",
                           hint="save it with model.save('model.keras') (Keras 3), or pass the .h5 it was saved as; "
                                + OTHER_MODELS_HINT) from e


def window_of(model, channels: int, where: Path) -> int:
    """W for a model over W x ``channels`` flat features; an error naming the shapes otherwise."""
    shape_in = tuple(getattr(model, "input_shape", ()) or ())
    shape_out = tuple(getattr(model, "output_shape", ()) or ())
    if len(shape_in) != 2 or not shape_in[1]:
        raise ToolkitError(f"{where}: model input {shape_in}; aiot needs one flat window (batch, W x C features)",
                           hint="flatten the window in front of the model (keras.layers.Flatten / Reshape) and "
                                "save it again; " + OTHER_MODELS_HINT)
    if shape_out != shape_in:
        raise ToolkitError(f"{where}: model output {shape_out} is not its input {shape_in}: not an autoencoder "
                           "(the firmware scores the reconstruction error)", hint=OTHER_MODELS_HINT)
    features = int(shape_in[1])
    if features % channels:
        raise ToolkitError(f"{where}: the model takes {features} features, not a whole number of windows of the "
                           f"data's {channels} sensor column(s)",
                           hint="pick the sensor columns it was trained on with --channels a,b,c (in its order)")
    return features // channels


def package_keras(model_path: Path, series: Series, out: Path, train_rows: int | None = None,
                  quantile: float = 0.995, name: str | None = None, data_path: Path | None = None) -> dict:
    """Write the package for the Keras model at ``model_path`` to ``out`` (manifest.json,
    model.keras, vectors.npz): normalization, threshold and windows from ``series``, split as
    `aiot train` splits (``train_rows``: default the first half). Returns the manifest."""
    model_path, out = Path(model_path), Path(out)
    if not 0.5 <= quantile < 1:
        raise ToolkitError(f"threshold quantile must be in [0.5, 1), got {quantile}", hint="e.g. 0.995")
    model = load_keras_model(model_path)
    c = len(series.channels)
    window = window_of(model, c, model_path)
    if train_rows is None:
        train_rows = series.rows // 2
    if not window <= train_rows <= series.rows:
        raise ToolkitError(f"--train-rows {train_rows}: the data has {series.rows} rows and the window is {window}",
                           hint=f"give between {window} and {series.rows} training rows")
    series, head, spikes = training_rows(series, train_rows, data_path or series.source or model_path.name)
    norm = _normalization(head)
    with np.errstate(over="ignore"):
        windows = make_windows(series, norm, window)
    fit, cal, test, skipped_incomplete, skipped_fault, test_incomplete = split_windows(windows, window, train_rows)
    if len(fit) < MIN_FIT_WINDOWS:
        raise ToolkitError(
            f"only {len(fit)} complete normal window(s) of {window} samples in the first {train_rows} rows "
            f"to calibrate the int8 ranges on; need at least {MIN_FIT_WINDOWS}",
            hint="give more rows of normal running (--train-rows, or a longer --data recording)")

    def predict(x: np.ndarray) -> np.ndarray:
        return model.predict(x, batch_size=1024, verbose=0) if len(x) else np.zeros_like(x)

    cal_scores, _ = reconstruction_errors(cal.x, predict(cal.x), c)
    threshold = float(np.quantile(cal_scores, quantile))
    test_scores, test_per_channel = reconstruction_errors(test.x, predict(test.x), c)
    if not np.isfinite(threshold):
        raise ToolkitError(f"{model_path}: the model's scores on the calibration windows are not finite",
                           hint="check the model on your data in Keras first")

    out.mkdir(parents=True, exist_ok=True)
    for stale in (MANIFEST, "model.tflite"):  # as train does: no manifest paired with another model
        (out / stale).unlink(missing_ok=True)
    keras_name = "model" + (model_path.suffix if model_path.suffix in (".keras", ".h5") else ".keras")
    if model_path.resolve() != (out / keras_name).resolve():
        shutil.copyfile(model_path, out / keras_name)
    np.savez_compressed(
        out / VECTORS,
        x=test.x.astype(np.float32), timestamps=test.timestamps, end_rows=test.end_rows,
        labels=test.labels if test.labels is not None else np.full(len(test), -1, np.int8),
        score=test_scores.astype(np.float32), per_channel=test_per_channel.astype(np.float32),
        x_representative=fit.x[_even_subsample(len(fit), REPRESENTATIVE_MAX)].astype(np.float32),
    )
    source = data_path or series.source
    manifest = {
        "format": FORMAT,
        "name": name or model_path.stem,
        "channels": list(series.channels),
        "window": window,
        "sample_period_s": series.sample_period_s,
        "normalization": norm.to_json(),
        "features": {"layout": "time-major", "formula": "clip((x - mean) / std, -clip, clip), float32",
                     "gap_factor": GAP_FACTOR, "window_label": "last_row"},
        "model": {"kind": "keras_autoencoder", "keras": keras_name, "tflite": None, "input_shape": [1, c * window],
                  "input_scale": None, "input_zero_point": None, "output_scale": None, "output_zero_point": None,
                  "source": str(model_path), "source_sha256": sha256_file(model_path)},
        "score": {"kind": "mse", "threshold": threshold, "quantile": quantile, "calibration_windows": len(cal)},
        "training": {"by": "the user (aiot quantize --keras): aiot calibrated it", "rows": train_rows,
                     "rejected_spikes": spikes,
                     "fit_windows": len(fit), "skipped_incomplete_windows": skipped_incomplete,
                     "skipped_fault_windows": skipped_fault,
                     "data": str(source) if source else None,
                     "data_sha256": sha256_file(Path(source)) if source else series.digest()},
        "test": {"windows": len(test), "incomplete_windows": test_incomplete},
        "tflite_sha256": None,
    }
    write_manifest(out, manifest)
    return manifest
