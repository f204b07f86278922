"""Full-int8 quantization of a trained package, checked against the float model.

The int8 model (int8 input and output, every op int8) is produced by the TFLite
converter calibrated on the training windows kept in vectors.npz. It is then run with
tflite-micro's reference interpreter (the golden reference for our C engine) on the
held-out test windows, and its anomaly scores are compared with the float model's.

Calibration adds two constant windows at -CLIP and +CLIP to the training windows so the
int8 ranges span the whole clipped feature domain: anomalous windows (features far
outside the normal range) are then represented, not saturated, and the int8 scores
track the float scores on faults as well as on normal data (measured on the synthetic
pump: decision agreement 98.7 % -> 100 %, Spearman 0.86 -> 0.998).

Score of the int8 model = mean over the W*C features of (f - y)^2 where f is the float
feature vector (what the device computes before quantizing its input) and
y = (q_out - output_zero_point) * output_scale the dequantized reconstruction.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from aiot.data import sha256_file
from aiot.errors import ToolkitError
from aiot.model.features import CLIP, dequantize, quantize_input
from aiot.model.package import VECTORS, load_package
from aiot.quiet import captured_output, import_keras, import_tensorflow
from aiot.model.train import reconstruction_errors


@dataclass
class QuantReport:
    package: Path
    tflite_bytes: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    windows: int  #: windows compared
    source: str  #: "test" (held-out test windows) or "training" when there are none
    pearson: float
    spearman: float
    mean_abs_diff: float
    max_abs_diff: float
    decision_agreement: float  #: fraction of windows with the same normal/anomalous decision
    float_alarms: int
    int8_alarms: int
    threshold: float

    def summary(self) -> str:
        return (
            f"int8 model   {self.package / 'model.tflite'} ({self.tflite_bytes} bytes)\n"
            f"input        scale {self.input_scale:.6g}, zero point {self.input_zero_point}\n"
            f"output       scale {self.output_scale:.6g}, zero point {self.output_zero_point}\n"
            f"scores       float vs int8 (tflite-micro) on {self.windows} {self.source} windows:\n"
            f"             pearson {self.pearson:.4f}, spearman {self.spearman:.4f}, "
            f"|diff| mean {self.mean_abs_diff:.4g} max {self.max_abs_diff:.4g}\n"
            f"decisions    {100 * self.decision_agreement:.2f}% identical at threshold {self.threshold:.4g} "
            f"(alarms: float {self.float_alarms}, int8 {self.int8_alarms})"
            + (
                "\nwarning      int8 scores diverge from the float model; train longer (--epochs) or on "
                "more varied normal data, and check the data for outliers"
                if self.diverges else ""
            )
        )

    @property
    def diverges(self) -> bool:
        """int8 decisions or score ranking differ noticeably from the float model."""
        return self.decision_agreement < 0.99 or not self.spearman > 0.95

    def to_json(self) -> dict:
        d = asdict(self)
        d["package"] = str(self.package)
        return d


def rank(a: np.ndarray) -> np.ndarray:
    """Ranks 1..N, ties get their average rank (as Spearman's rho needs)."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    # start of each run of equal values
    starts = np.r_[0, np.nonzero(np.diff(sorted_a))[0] + 1]
    ends = np.r_[starts[1:], a.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of ranks s+1..e
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def convert_int8(keras_model, representative: np.ndarray, *, per_channel: bool = True, batch1: bool = True,
                 clip_rows: bool = True) -> bytes:
    """Keras model -> full-int8 .tflite bytes (int8 input/output, int8 builtin ops only).

    ``batch1`` traces the model with a fixed batch of 1 so the graph has static shapes:
    with a dynamic batch the converter leaves SHAPE/PACK arithmetic around reshapes
    (which tflite-micro cannot allocate) and turns dilated convolutions into
    SPACE_TO_BATCH_ND. ``clip_rows`` adds the two saturated windows described above (for
    models fed with clipped features). ``per_channel=False`` gives per-tensor weights."""
    tf = import_tensorflow()

    rep = np.asarray(representative, dtype=np.float32)
    if clip_rows:
        row = rep.shape[1:]
        rep = np.concatenate([rep, np.full((1, *row), -CLIP, np.float32), np.full((1, *row), CLIP, np.float32)])

    def dataset() -> Iterator[list[np.ndarray]]:
        for i in range(rep.shape[0]):
            yield [rep[i : i + 1]]

    if batch1:
        # Trace a batch-1 signature instead of cloning the model: a clone gets fresh
        # global Keras tensor names, which would make the .tflite bytes depend on how many
        # models the process built before (conversion must be reproducible).
        # The tf.Module tracks the model's variables (Keras 3 keeps the tf.Variable in
        # .value) so the converter can freeze them into constants.
        holder = tf.Module()
        holder.model = keras_model
        holder.weights = [getattr(v, "value", v) for v in keras_model.weights]
        spec = tf.TensorSpec([1, *keras_model.inputs[0].shape[1:]], tf.float32)
        holder.serve = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec])
        converter = tf.lite.TFLiteConverter.from_concrete_functions([holder.serve.get_concrete_function()], holder)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    log: list[str] = []
    try:
        with captured_output() as log:
            return converter.convert()
    except Exception as e:
        tail = "\n".join((log[0] if log else "").strip().splitlines()[-5:])
        raise ToolkitError(
            f"the TFLite converter failed: {e}" + (f"\n{tail}" if tail else ""),
            hint="the model must use ops with int8 kernels (Dense, ReLU); re-train with `aiot train`",
        ) from e


def quantize(pkg_dir: Path | str, progress: bool = True) -> QuantReport:
    """Write PKG/model.tflite (full int8), its quant params and test vectors; compare scores."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide tf.data C++ chatter
    from aiot.progress import step
    from aiot.model.reference import TflmReference

    pkg = load_package(pkg_dir)
    vec = pkg.vectors()
    for key in ("x", "x_representative"):
        if key not in vec:
            raise ToolkitError(f"{pkg.path / VECTORS}: no '{key}' array", hint="re-run `aiot train`")
    rep = vec["x_representative"]
    if rep.ndim != 2 or rep.shape[0] == 0:
        raise ToolkitError(
            f"{pkg.path / VECTORS}: no training windows to calibrate int8 ranges", hint="re-run `aiot train`"
        )
    c, w = len(pkg.channels), pkg.window
    if rep.shape[1] != c * w:
        raise ToolkitError(
            f"{pkg.path / VECTORS}: windows have {rep.shape[1]} features, the manifest says {c} channels x {w}",
            hint="re-run `aiot train`",
        )

    keras = import_keras()
    keras_path = pkg.file("keras")
    try:
        model = keras.models.load_model(keras_path, compile=False)
    except Exception as e:
        raise ToolkitError(f"{keras_path}: cannot be loaded ({e})", hint="re-run `aiot train`") from e

    shape = tuple(getattr(model, "input_shape", ()) or ())
    if len(shape) != 2 or shape[1] != c * w:
        raise ToolkitError(
            f"{keras_path}: model input {shape} does not match the manifest ({c} channels x {w} samples = {c * w})",
            hint="the package files come from different trainings; re-run `aiot train`",
        )
    if vec["x"].ndim != 2 or vec["x"].shape[1] != c * w:
        raise ToolkitError(f"{pkg.path / VECTORS}: test windows have shape {vec['x'].shape}, expected (N, {c * w})",
                           hint="re-run `aiot train`")
    ctx = step("int8 conversion") if progress else nullcontext()
    with ctx:
        tflite = convert_int8(model, rep)
    tflite_path = pkg.path / "model.tflite"
    try:
        tflite_path.write_bytes(tflite)
    except OSError as e:
        raise ToolkitError(f"{tflite_path}: cannot write ({e.strerror})", hint="check the package folder") from e

    ref = TflmReference(tflite)
    ind, outd = ref.input_details, ref.output_details
    if ind["dtype"] != np.int8 or outd["dtype"] != np.int8:
        raise ToolkitError(f"{tflite_path}: converter produced {ind['dtype']} in / {outd['dtype']} out, expected int8")
    in_scale = float(ind["quantization_parameters"]["scales"][0])
    in_zp = int(ind["quantization_parameters"]["zero_points"][0])
    out_scale = float(outd["quantization_parameters"]["scales"][0])
    out_zp = int(outd["quantization_parameters"]["zero_points"][0])

    x, source = vec["x"], "test"
    if x.shape[0] == 0:
        x, source = rep, "training"
    ctx = step(f"float vs int8 on {x.shape[0]} {source} windows (tflite-micro)") if progress else nullcontext()
    with ctx:
        x_int8 = quantize_input(x, in_scale, in_zp)
        y_int8 = ref.run(x_int8).reshape(x.shape[0], -1).astype(np.int8)
        score_q, per_channel_q = reconstruction_errors(x, dequantize(y_int8, out_scale, out_zp), c)
        score_f, _ = reconstruction_errors(x, model.predict(x, batch_size=1024, verbose=0), c)

    thr = pkg.threshold
    alarm_f, alarm_q = score_f > thr, score_q > thr
    diff = np.abs(score_f - score_q)
    report = QuantReport(
        package=pkg.path,
        tflite_bytes=len(tflite),
        input_scale=in_scale,
        input_zero_point=in_zp,
        output_scale=out_scale,
        output_zero_point=out_zp,
        windows=int(x.shape[0]),
        source=source,
        pearson=_pearson(score_f, score_q),
        spearman=_pearson(rank(score_f), rank(score_q)),
        mean_abs_diff=float(diff.mean()),
        max_abs_diff=float(diff.max()),
        decision_agreement=float((alarm_f == alarm_q).mean()),
        float_alarms=int(alarm_f.sum()),
        int8_alarms=int(alarm_q.sum()),
        threshold=thr,
    )

    out = dict(vec)
    if source == "test":
        out.update(
            x_int8=x_int8, y_int8=y_int8, score=score_f.astype(np.float32), score_int8=score_q.astype(np.float32),
            per_channel_int8=per_channel_q.astype(np.float32),
        )
    else:
        out.update(x_int8=np.zeros((0, c * w), np.int8), y_int8=np.zeros((0, c * w), np.int8))
    np.savez_compressed(pkg.path / VECTORS, **out)

    m = pkg.manifest
    m["model"].update(
        tflite=tflite_path.name,
        input_shape=[int(d) for d in ind["shape"]],
        input_scale=in_scale,
        input_zero_point=in_zp,
        output_scale=out_scale,
        output_zero_point=out_zp,
    )
    m["tflite_sha256"] = sha256_file(tflite_path)
    m["quantization"] = {k: v for k, v in report.to_json().items() if k != "package"}
    pkg.save()
    return report
