"""Reproducible model recipes (fixed seeds, tiny training on random data) and the
full-int8 conversion used by tests and benchmarks. ``build_model(name)`` caches the
.tflite under build/models/ keyed by a hash of the recipe, so each converts once."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aiot.errors import ToolkitError
from aiot.paths import cache_dir

RECIPE_VERSION = 1


def _tf():
    from aiot.quiet import import_tensorflow

    tf = import_tensorflow()  # without its start-up lines on the terminal
    try:  # the machine is shared: keep TensorFlow on one core
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    return tf


def _keras():
    """keras, after :func:`_tf` has put TensorFlow on one core (quietly)."""
    from aiot.quiet import import_keras

    _tf()
    return import_keras()


def convert_int8(model: Any, representative: np.ndarray, *, per_channel: bool = True, batch1: bool = False) -> bytes:
    """Full-int8 TFLite (int8 in/out) of a recipe model: the toolkit's converter, without
    the feature-clip calibration rows (recipes are calibrated on their own data)."""
    _tf()  # one-core TensorFlow on this shared machine
    from aiot.model.quantize import convert_int8 as _convert

    return _convert(model, representative, per_channel=per_channel, batch1=batch1, clip_rows=False)


def convert_16x8(model: Any, representative: np.ndarray, *, per_channel: bool = True, bias32: bool = False,
                 float_io: bool = False) -> bytes:
    """TFLite's 16x8 mode (int16 activations and input/output, int8 weights, int64 biases,
    or int32 ones with ``bias32``; float32 input/output around the int16 graph with
    ``float_io``, the converter's default) of a recipe model; build the model with a
    batch-1 Input for static shapes."""
    tf = _tf()
    rep = np.asarray(representative, dtype=np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int16
        conv.inference_output_type = tf.int16
    if not per_channel:
        conv._experimental_disable_per_channel = True
    if bias32:
        conv._experimental_full_integer_quantization_bias_type = tf.int32
    from aiot.quiet import captured_output

    with captured_output():
        return conv.convert()


#: A folder of conversions made before (the test suite's tests/fixtures/converted, set by
#: tests/conftest.py), looked up before converting. Its entries sit under
#: :func:`converter_fingerprint`, so a new TensorFlow, Keras or converter code finds none
#: and converts as before. With AIOT_TFLITE_SEED_WRITE=1 every conversion is added to it.
SEED_ENV = "AIOT_TFLITE_SEED_DIR"


def converter_fingerprint() -> str:
    """What the bytes of a conversion depend on besides its key: the TensorFlow and Keras
    versions, this file and the toolkit's converter (read without importing TensorFlow)."""
    from importlib import metadata

    from aiot.model import quantize

    versions = []
    for dist in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            versions.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    parts = [*versions, Path(__file__).read_text(), inspect.getsource(quantize.convert_int8)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _seeded(key: Any, build: Callable[[], bytes]) -> Path | None:
    """The seed folder's file for ``key``, named also by build()'s own code (a key alone
    may not say everything a caller's build does)."""
    seed = os.environ.get(SEED_ENV)
    if not seed:
        return None
    try:
        code = inspect.getsource(build)
    except (OSError, TypeError):
        return None  # no source to tell a changed build by: convert
    h = hashlib.sha256(json.dumps([RECIPE_VERSION, key, code], sort_keys=True, default=str).encode()).hexdigest()
    return Path(seed) / converter_fingerprint() / f"{h[:16]}.tflite"


def cached_tflite(key: Any, build: Callable[[], bytes], out_dir: Path | None = None) -> Path:
    """Return build()'s .tflite from the cache (or the seed folder, SEED_ENV), converting
    only on a miss."""
    h = hashlib.sha256(json.dumps([RECIPE_VERSION, key], sort_keys=True, default=str).encode()).hexdigest()[:16]
    d = out_dir or cache_dir() / "recipes"
    path = d / f"{h}.tflite"
    if path.exists():
        return path
    seeded, write_seed = _seeded(key, build), os.environ.get("AIOT_TFLITE_SEED_WRITE") == "1"
    if seeded is not None and seeded.is_file() and not write_seed:
        data = seeded.read_bytes()  # into the cache: the caller gets a file of its own run
    else:
        data = build()
    for target in (path, seeded) if write_seed and seeded else (path,):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")  # private: parallel runs may convert it too
        tmp.write_bytes(data)
        tmp.replace(target)
    return path


def _train(model: Any, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


def _dense_ae(sizes: list[int]) -> tuple[Any, np.ndarray]:
    keras = _keras()
    keras.utils.set_random_seed(0)
    layers = [keras.Input((sizes[0],))]
    for n in sizes[1:-1]:
        layers.append(keras.layers.Dense(n, activation="relu"))
    layers.append(keras.layers.Dense(sizes[-1]))
    m = keras.Sequential(layers)
    x = np.random.default_rng(0).normal(size=(256, sizes[0])).astype(np.float32)
    _train(m, x, x, epochs=2)
    return m, x


def ad_small() -> tuple[Any, np.ndarray]:
    """Dense autoencoder 32-16-8-16-32 (the demo model)."""
    return _dense_ae([32, 16, 8, 16, 32])


def ad_mlperf() -> tuple[Any, np.ndarray]:
    """MLPerf Tiny anomaly-detection autoencoder: 640-128x4-8-128x4-640."""
    return _dense_ae([640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640])


def conv1d() -> tuple[Any, np.ndarray]:
    """(1,128,3) NHWC -> 2x Conv2D 1x5 16 ReLU -> global average pool -> Dense 8 ReLU -> Dense 1."""
    keras = _keras()

    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [
            keras.Input((1, 128, 3)),
            keras.layers.Conv2D(16, (1, 5), activation="relu"),
            keras.layers.Conv2D(16, (1, 5), activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 1, 128, 3)).astype(np.float32)
    _train(m, x, rng.normal(size=(256, 1)).astype(np.float32), epochs=2)
    return m, x


def _conv_ae(shape: tuple[int, ...], encoder: Any, decoder: Any) -> tuple[Any, np.ndarray]:
    keras = _keras()
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input(shape), encoder(keras.layers), decoder(keras.layers)])
    x = np.random.default_rng(0).normal(size=(256, *shape)).astype(np.float32)
    _train(m, x, x, epochs=2)
    return m, x


def conv_ae() -> tuple[Any, np.ndarray]:
    """Convolutional autoencoder (16,16,8) -> Conv2D 3x3 stride 2 SAME 16 ReLU -> (8,8,16)
    -> Conv2DTranspose 3x3 stride 2 SAME 8 -> (16,16,8): both layers 73,728 MACs."""
    return _conv_ae((16, 16, 8), lambda L: L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                    lambda L: L.Conv2DTranspose(8, 3, strides=2, padding="same"))


def conv1d_ae() -> tuple[Any, np.ndarray]:
    """Time-series autoencoder (64 steps, 8 sensors) -> Conv1D 5 stride 2 SAME 16 ReLU ->
    (32,16) -> Conv1DTranspose 5 stride 2 SAME 8 -> (64,8): both layers 20,480 MACs."""
    return _conv_ae((64, 8), lambda L: L.Conv1D(16, 5, strides=2, padding="same", activation="relu"),
                    lambda L: L.Conv1DTranspose(8, 5, strides=2, padding="same"))


RECIPES: dict[str, Callable[[], tuple[Any, np.ndarray]]] = {
    "ad-small": ad_small,
    "ad-mlperf": ad_mlperf,
    "conv1d": conv1d,
    "conv-ae": conv_ae,
    "conv1d-ae": conv1d_ae,
}

BATCH1 = frozenset({"conv1d-ae"})


def build_model(name: str, out_dir: Path | None = None) -> Path:
    """Path to the cached full-int8 .tflite of recipe ``name`` (per-channel weights)."""
    if name not in RECIPES:
        raise ToolkitError(f"unknown model recipe '{name}'", hint="choose one of: " + ", ".join(RECIPES))
    fn = RECIPES[name]

    def build() -> bytes:
        model, x = fn()
        # a Keras Conv1D/Conv1DTranspose converts with run-time shape arithmetic unless
        # the batch is fixed to 1 (BATCH1 recipes)
        return convert_int8(model, x[:100], batch1=name in BATCH1)

    return cached_tflite(["recipe", name, inspect.getsource(fn)] + (["batch1"] if name in BATCH1 else []), build,
                         out_dir)
