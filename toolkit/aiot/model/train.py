"""Train the dense autoencoder anomaly model and write a model package.

Model: C*W -> 16 -> 8 -> 16 -> C*W dense autoencoder (ReLU inside, linear output),
trained to reconstruct windows of NORMAL operation (aiot.model.features). Windows it cannot
reconstruct well are anomalous.

Anomaly score of a window = mean squared reconstruction error over its W*C features
(per-channel error = the same mean taken over the W time steps of one channel, which
tells which sensors contributed). Threshold = the ``quantile`` (default 0.995) of the
scores of *calibration* windows: the last 20 % (in time) of the normal training windows,
held out from fitting so that the threshold is not biased low by over-fitting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from aiot.data import Series, format_time, load_csv, sha256_file
from aiot.errors import ToolkitError
from aiot.model.features import GAP_FACTOR, Normalization, Windows, fit_normalization, make_windows
from aiot.model.package import FORMAT, MANIFEST, VECTORS, write_manifest
from aiot.quiet import import_keras, import_tensorflow

CALIBRATION_FRACTION = 0.2
MIN_FIT_WINDOWS = 32
REPRESENTATIVE_MAX = 1000  #: training windows kept in vectors.npz for int8 calibration


@dataclass
class TrainResult:
    package: Path
    fit_windows: int
    calibration_windows: int
    skipped_incomplete: int  #: training windows with missing samples or time gaps
    skipped_fault: int  #: training windows touching a labelled fault
    test_windows: int
    test_incomplete: int
    threshold: float
    quantile: float
    final_loss: float
    seconds: float
    test_fault_windows: int = 0  #: labelled test windows whose last row is a fault
    test_fault_flagged: int = 0  #: ... of which the float model scores above the threshold
    test_normal_windows: int = 0  #: labelled test windows with no faulty row at all
    test_normal_flagged: int = 0

    def summary(self) -> str:
        return (
            f"package      {self.package}\n"
            f"windows      fit {self.fit_windows}, calibration {self.calibration_windows}, "
            f"test {self.test_windows}\n"
            f"skipped      {self.skipped_incomplete} training window(s) with missing samples or time gaps, "
            f"{self.skipped_fault} touching a labelled fault, {self.test_incomplete} incomplete test window(s)\n"
            f"loss         {self.final_loss:.5f} (final epoch, mse)\n"
            f"threshold    {self.threshold:.5f} (q{self.quantile:g} of calibration scores)\n"
            + (
                f"test (float) {self.test_fault_flagged}/{self.test_fault_windows} fault windows flagged, "
                f"{self.test_normal_flagged}/{self.test_normal_windows} normal windows flagged\n"
                if self.test_fault_windows or self.test_normal_windows else ""
            )
            + f"time         {self.seconds:.1f}s"
        )


def reconstruction_errors(x: np.ndarray, recon: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(score (N,), per-channel error (N, C)) for time-major windows ``x`` and their reconstructions."""
    x = np.asarray(x, dtype=np.float64)
    err = (x - np.asarray(recon, dtype=np.float64).reshape(x.shape)) ** 2
    n, features = err.shape
    per_channel = err.reshape(n, features // channels, channels).mean(axis=1)
    return err.mean(axis=1), per_channel


def build_model(inputs: int, hidden: Sequence[int] = (16, 8), seed: int = 0):
    """The autoencoder: ``inputs`` -> hidden... -> mirrored hidden -> ``inputs``.

    Each layer's initializer gets its seed from ``seed`` alone. Left unseeded, Keras draws
    it from Python's process-wide ``random``, which any other thread of the process may
    draw from between ``set_random_seed`` and the layers (a Dask worker's comm thread does,
    sampling each payload it sends): the same data then trained another model now and then.
    The seeds are the ones Keras drew when nothing came between (``randint(1, 10**9)`` of a
    generator seeded with ``seed``, in layer order), so models trained before are unchanged.
    """
    import random

    keras = import_keras()

    keras.utils.set_random_seed(seed)
    draws = random.Random(seed)
    layers = [keras.Input(shape=(inputs,), name="window")]
    sizes = [*hidden, *hidden[-2::-1], inputs]  # (16, 8) -> 16, 8, 16, then the reconstruction
    for i, n in enumerate(sizes):
        last = i == len(sizes) - 1
        init = keras.initializers.GlorotUniform(seed=draws.randint(1, int(1e9)))
        layers.append(keras.layers.Dense(int(n), activation=None if last else "relu",
                                         name="reconstruction" if last else f"dense_{i}", kernel_initializer=init))
    return keras.Sequential(layers, name="autoencoder")


def _even_subsample(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.linspace(0, n - 1, k).round().astype(np.int64)


def split_windows(
    windows: Windows, window: int, train_rows: int
) -> tuple[Windows, Windows, Windows, int, int, int]:
    """(fit, calibration, test, skipped_incomplete, skipped_fault, test_incomplete).

    Training windows end before ``train_rows``; test windows start at or after it, so
    no test window shares a sample with training.
    """
    in_train = windows.end_rows < train_rows
    fault = windows.any_fault if windows.any_fault is not None else np.zeros(len(windows), bool)
    skipped_incomplete = int((in_train & ~windows.complete).sum())
    skipped_fault = int((in_train & windows.complete & fault).sum())
    usable = np.nonzero(in_train & windows.complete & ~fault)[0]
    n_cal = max(1, int(round(CALIBRATION_FRACTION * usable.size)))
    fit_idx, cal_idx = usable[:-n_cal], usable[-n_cal:]
    in_test = windows.end_rows - (window - 1) >= train_rows
    test_incomplete = int((in_test & ~windows.complete).sum())
    test_mask = in_test & windows.complete
    fit_mask = np.zeros(len(windows), bool)
    fit_mask[fit_idx] = True
    cal_mask = np.zeros(len(windows), bool)
    cal_mask[cal_idx] = True
    return (windows.select(fit_mask), windows.select(cal_mask), windows.select(test_mask),
            skipped_incomplete, skipped_fault, test_incomplete)


def train(
    data: Series | Path | str,
    out_dir: Path | str,
    window: int = 8,
    epochs: int = 30,
    seed: int = 0,
    train_rows: int | None = None,
    hidden: Sequence[int] = (16, 8),
    quantile: float = 0.995,
    batch_size: int = 64,
    name: str | None = None,
    progress: bool = True,
    reject_garbage: bool = True,
) -> TrainResult:
    """Train on the normal rows of ``data[:train_rows]`` (default: first half) and write
    the package to ``out_dir`` (model.keras, vectors.npz, manifest.json). ``reject_garbage``:
    an isolated garbage sample of the training rows (:func:`aiot.data.spikes.reject_spikes`)
    is left out of the normalization and the training windows, and said; off for data the
    caller has cleaned and clipped already."""
    t0 = time.monotonic()
    if isinstance(data, (str, Path)):
        series = load_csv(data, min_rows=window)
        data_ref, data_sha = str(data), sha256_file(data)
    else:
        series = data
        data_ref = str(series.source) if series.source else f"<memory:{series.meta.get('generator', 'series')}>"
        data_sha = sha256_file(series.source) if series.source else series.digest()
    _check_args(series, window, epochs, train_rows, hidden, quantile, batch_size)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"{out}: exists and is not a folder", hint="choose another --out")
    if train_rows is None:
        train_rows = series.rows // 2

    # Statistics from normal training samples only: a fault must not shift the baseline.
    series, head, spikes = training_rows(series, train_rows, data_ref, reject_garbage)
    norm = _normalization(head)
    with np.errstate(over="ignore"):  # a value beyond float32 after the training rows: +-inf, clipped
        windows = make_windows(series, norm, window)
    fit, cal, test, skipped_incomplete, skipped_fault, test_incomplete = split_windows(windows, window, train_rows)
    if len(fit) < MIN_FIT_WINDOWS:
        raise ToolkitError(
            f"only {len(fit)} complete normal training window(s) of {window} samples in the first "
            f"{train_rows} rows (skipped {skipped_incomplete} with missing samples, {skipped_fault} with faults); "
            f"need at least {MIN_FIT_WINDOWS}",
            hint="train on more rows (--train-rows) or use a smaller --window",
        )

    try:  # before training, not after it
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ToolkitError(f"{out}: cannot create the package folder ({e.strerror})",
                           hint="choose a writable --out folder") from e

    tf = import_tensorflow()  # no C++ start-up chatter on the terminal
    keras = import_keras()

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    c = len(series.channels)
    model = build_model(c * window, hidden, seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=2e-3), loss="mse")
    callbacks = [_EpochBar(epochs)] if progress else []
    hist = model.fit(
        fit.x, fit.x, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=callbacks
    )
    final_loss = float(hist.history["loss"][-1])
    if not np.isfinite(final_loss):
        raise ToolkitError("training diverged (loss is not finite)", hint="check the data for extreme values")

    def predict(x: np.ndarray) -> np.ndarray:
        return model.predict(x, batch_size=1024, verbose=0) if len(x) else np.zeros_like(x)

    cal_scores, _ = reconstruction_errors(cal.x, predict(cal.x), c)
    threshold = float(np.quantile(cal_scores, quantile))
    test_scores, test_per_channel = reconstruction_errors(test.x, predict(test.x), c)

    flagged = test_scores > threshold
    fault_end = test.labels == 1 if test.labels is not None else np.zeros(len(test), bool)
    clean = ~test.any_fault if test.any_fault is not None else np.zeros(len(test), bool)

    # The manifest goes first and comes back last: an interrupted re-training leaves no
    # package that pairs an old manifest with a new model. An old int8 model is stale too.
    for stale in (MANIFEST, "model.tflite"):
        (out / stale).unlink(missing_ok=True)
    model.save(out / "model.keras")
    repr_idx = _even_subsample(len(fit), REPRESENTATIVE_MAX)
    np.savez_compressed(
        out / VECTORS,
        x=test.x.astype(np.float32),
        timestamps=test.timestamps,
        end_rows=test.end_rows,
        labels=test.labels if test.labels is not None else np.full(len(test), -1, np.int8),
        score=test_scores.astype(np.float32),
        per_channel=test_per_channel.astype(np.float32),
        x_representative=fit.x[repr_idx].astype(np.float32),
    )
    manifest = {
        "format": FORMAT,
        "name": name or (series.source.stem if series.source else "pump_autoencoder"),
        "channels": list(series.channels),
        "window": window,
        "sample_period_s": series.sample_period_s,
        "normalization": norm.to_json(),
        "features": {  # the formula of aiot.model.features, for code that re-implements it
            "layout": "time-major",  # [t0c0, t0c1, ..., t(W-1)c(C-1)], oldest sample first
            "formula": "clip((x - mean) / std, -clip, clip), float32",
            "gap_factor": GAP_FACTOR,
            "window_label": "last_row",
        },
        "model": {
            "kind": "dense_autoencoder",
            "hidden": [int(h) for h in hidden],
            "keras": "model.keras",
            "tflite": None,
            "input_shape": [1, c * window],
            "input_scale": None,
            "input_zero_point": None,
            "output_scale": None,
            "output_zero_point": None,
        },
        "score": {
            "kind": "mse",
            "threshold": threshold,
            "quantile": quantile,
            "calibration_windows": len(cal),
        },
        "training": {
            "seed": seed,
            "epochs": epochs,
            "batch_size": batch_size,
            "rows": train_rows,
            "fit_windows": len(fit),
            "skipped_incomplete_windows": skipped_incomplete,
            "skipped_fault_windows": skipped_fault,
            "rejected_spikes": spikes,
            "final_loss": final_loss,
            "data": data_ref,
            "data_sha256": data_sha,
        },
        "test": {"windows": len(test), "incomplete_windows": test_incomplete},
        "tflite_sha256": None,
    }
    write_manifest(out, manifest)
    return TrainResult(
        package=out,
        fit_windows=len(fit),
        calibration_windows=len(cal),
        skipped_incomplete=skipped_incomplete,
        skipped_fault=skipped_fault,
        test_windows=len(test),
        test_incomplete=test_incomplete,
        threshold=threshold,
        quantile=quantile,
        final_loss=final_loss,
        seconds=time.monotonic() - t0,
        test_fault_windows=int(fault_end.sum()),
        test_fault_flagged=int((flagged & fault_end).sum()),
        test_normal_windows=int(clean.sum()),
        test_normal_flagged=int((flagged & clean).sum()),
    )


def training_rows(series: Series, train_rows: int, where, reject_garbage: bool = True
                  ) -> tuple[Series, Series, dict[str, list[int]]]:
    """(series, head, rejected): ``head`` the first ``train_rows`` of ``series`` with the rows
    labelled as faults masked (a fault must not shift the baseline); with ``reject_garbage``,
    isolated garbage samples there (:func:`aiot.data.spikes.reject_spikes`: a 1e20 would make
    its sensor's spread 1e18, blind, silently) masked in ``head`` and in the returned copy of
    ``series`` (out of the training windows too), and said, naming ``where``."""
    head = series.head(train_rows)
    if head.labels is not None:
        head.valid &= (head.labels == 0)[:, None]
    if not reject_garbage:
        return series, head, {}
    from aiot.data.spikes import reject_spikes, say_spikes

    head, spikes = reject_spikes(head)
    if spikes:
        say_spikes(series, spikes, where, "the training normalization and windows")
        series = series.slice(0, series.rows)
        for ch, rows in spikes.items():
            series.valid[rows, series.channels.index(ch)] = False
    return series, head, spikes


def _normalization(head: Series) -> Normalization:
    """fit_normalization of the training rows, or an error naming each channel whose mean or
    standard deviation is not a finite float32 (a value too large to normalize) and its
    largest value, with the row (of the data) it is in."""
    with np.errstate(over="ignore", invalid="ignore"):
        norm = fit_normalization(head)
    bad = np.nonzero(~(np.isfinite(norm.mean) & np.isfinite(norm.std)))[0]
    if bad.size:
        where = []
        for j in bad:
            i = int(np.argmax(np.where(head.valid[:, j], np.abs(head.values[:, j]), -1.0)))
            t = format_time(head.timestamps[i]) if head.iso_time else f"{head.timestamps[i]:g}"
            where.append(f"{head.channels[j]} ({head.values[i, j]:g} at row {i}, time {t})")
        raise ToolkitError(
            f"{f'{head.source}: ' if head.source else ''}channel(s) {'; '.join(where)}: value too large to normalize - the mean or spread of the channel's normal training "
            f"rows overflows float32 (beyond about {float(np.finfo(np.float32).max):.1e})",
            hint="fix the value (leave the cell empty for a missing sample) or leave the channel out (--channels)",
        )
    return norm


#: channels x window: with the default hidden sizes the input and output layers hold
#: 2 x 16 x 8192 weights, 1 MB as int16 (codegen --optimize speed): a 2 MB-flash board
MAX_MODEL_INPUTS = 8192


def _check_args(series: Series, window: int, epochs: int, train_rows: int | None, hidden: Sequence[int],
                quantile: float, batch_size: int) -> None:
    if not 1 <= window <= 256:
        raise ToolkitError(f"--window must be between 1 and 256 samples, got {window}")
    inputs = len(series.channels) * window
    if inputs > MAX_MODEL_INPUTS:  # refused here, not by the compiler after training and codegen
        raise ToolkitError(
            f"{len(series.channels):,} channels x window {window} = {inputs:,} model inputs, more than the "
            f"{MAX_MODEL_INPUTS:,} a model for a microcontroller may take (its first layer alone would not fit "
            "the flash)", hint="pick the sensors that matter with --channels a,b,c, or a shorter --window")
    if epochs < 1:
        raise ToolkitError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ToolkitError(f"batch size must be at least 1, got {batch_size}")
    if not 0.5 <= quantile < 1.0:
        raise ToolkitError(f"threshold quantile must be in [0.5, 1), got {quantile}", hint="e.g. 0.995")
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ToolkitError(f"hidden layer sizes must be positive, got {list(hidden)}")
    if train_rows is not None and not window <= train_rows <= series.rows:
        raise ToolkitError(
            f"--train-rows must be between the window ({window}) and the number of rows ({series.rows}), "
            f"got {train_rows}"
        )
    if series.labels is not None and len(series.labels) != series.rows:  # e.g. labels of other rows
        raise ToolkitError(f"the series has {len(series.labels)} label(s) for {series.rows} row(s)",
                           hint="one label per row: label the rows the model trains on")
    if series.rows < 2 * window:
        raise ToolkitError(
            f"{series.rows} row(s) is too few to train windows of {window} samples",
            hint="use a longer recording or a smaller --window",
        )


class _EpochBar:
    """Keras callback that drives a aiot.progress.Bar, one tick per epoch."""

    def __new__(cls, epochs: int):
        from aiot.progress import Bar

        keras = import_keras()

        class _Cb(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.bar = Bar(epochs, "epochs")

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                self.bar.update(1)

        return _Cb()
