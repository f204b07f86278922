"""The 16x8 mode (int16 activations, int8 weights): emitters for the layers whose
arithmetic differs from the int8 path (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: no zero
points, an int64 or int32 accumulator chosen by the bias type, TFLM's 64-bit
requantization). The element-wise ops and pooling share the int8 emitters in ops.py, which
pick the int16 kernel by the output type.

What TFLM does, per op (its reference kernels, the golden reference here):
- CONV_2D: an int32 bias (or none) accumulates in int32 and requantizes with the int32
  MultiplyByQuantizedMultiplier; an int64 bias (the converter's default) in int64 with
  the 64-bit one.
- DEPTHWISE_CONV_2D and FULLY_CONNECTED: always int64 (the kernels read the bias as int64).
"""

from __future__ import annotations

import numpy as np

from aiot.codegen.ops import (
    Ctx,
    Layer,
    _c_array,
    _fail,
    _need_int8_weights,
    _qp,
    conv_geometry,
    emit_add,
    emit_avg_pool,
    emit_concat,
    emit_max_pool,
    emit_mul,
    emit_quantize,
)
from aiot.codegen.quant import activation_range, conv_multipliers
from aiot.model.tflite import Graph, Operator, Tensor


def _zero_points(g: Graph, op: Operator, *ts: Tensor) -> None:
    for t in ts:
        if _qp(t)[1] != 0:
            raise _fail(g, op, f"int16 tensor '{t.name}' has zero point {_qp(t)[1]}",
                        "TFLite's 16x8 mode makes int16 activations symmetric (zero point 0); re-export "
                        "with the converter's EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8")


def _bias64(g: Graph, op: Operator, idx: int, n: int, allow32: bool) -> tuple[np.ndarray | None, bool]:
    """(bias as int64 or None, acc64): TFLM's accumulator width follows the bias type."""
    b = g.tensor(idx) if idx >= 0 else None
    if b is None:
        return None, not allow32  # CONV_2D without a bias accumulates in int32
    ok = b.is_const and b.size == n and (b.dtype == "int64" or (allow32 and b.dtype == "int32"))
    if not ok:
        want = "int64 (or int32)" if allow32 else "int64 (TFLite Micro reads it as int64 in the 16x8 mode)"
        raise _fail(g, op, f"bias must be a constant {want} vector of {n} values (got {b.dtype} {list(b.shape)})",
                    "re-export with the converter's 16x8 mode (EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8) "
                    "and its default int64 biases")
    return np.asarray(b.data, dtype=np.int64).ravel(), b.dtype == "int64"


def _emit16(ctx: Ctx, op: Operator, name: str, kind: str) -> Layer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.dtype != "int16" or out.dtype != "int16":
        raise _fail(g, op, f"{x.dtype} input, {out.dtype} output", "the 16x8 mode needs int16 input and output")
    w = _need_int8_weights(g, op, g.tensor(op.inputs[1]))
    _zero_points(g, op, x, out)
    o = op.options
    if kind == "fc":
        if len(w.shape) != 2:
            raise _fail(g, op, f"weights have shape {list(w.shape)}, expected [out, in]", "use a Dense layer")
        out_c, in_c = w.shape
        if x.size % in_c or out.size != x.size // in_c * out_c:
            raise _fail(g, op, f"input {list(x.shape)} / output {list(out.shape)} do not fit weights {list(w.shape)}",
                        "re-export the model with a fixed batch size of 1")
        in_h, in_w, out_h, out_w = x.size // in_c, 1, x.size // in_c, 1
        k_h = k_w = sh = sw = dh = dw = 1
        pad_t = pad_l = dm = 0
        qdim = 0
    else:
        in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, sh, sw, dh, dw, pad_t, pad_l = conv_geometry(g, op, x, out, w)
        if kind == "dw":
            if w.shape[0] != 1 or w.shape[3] != out_c or out_c % max(in_c, 1):
                raise _fail(g, op, f"filter {list(w.shape)} does not match {in_c} -> {out_c} channels",
                            "re-export the model")
            dm, qdim = out_c // in_c, 3
        else:
            if w.shape[0] != out_c or w.shape[3] != in_c:
                raise _fail(g, op, f"filter {list(w.shape)} does not match {in_c} -> {out_c} channels "
                            "(grouped convs are not supported)", "use a regular or depthwise convolution")
            dm, qdim = 0, 0
    if w.per_channel and (len(w.scale) != out_c or w.quantized_dimension != qdim):
        raise _fail(g, op, "per-channel scales do not match the output channels", "re-export the model")
    (in_s, _), (out_s, out_zp) = _qp(x), _qp(out)
    mults, shifts = conv_multipliers(in_s, w.scale if w.per_channel else w.scale[:1], out_s)
    if any(s >= 8 for s in shifts):
        raise _fail(g, op, "a requantization scale of 2^8 or more", "the layer's scales are out of TFLite's range")
    lo, hi = activation_range(o.get("activation", "NONE"), out_s, out_zp, "int16")
    bias, acc64 = _bias64(g, op, op.inputs[2] if len(op.inputs) > 2 else -1, out_c, allow32=kind == "conv")
    decls = [
        _c_array("int32_t", f"{name}_mult", np.array(mults)),
        _c_array("int32_t", f"{name}_shift", np.array(shifts)),
        _c_array("int8_t", f"{name}_w", w.data),
        *([_c_array("int64_t", f"{name}_b", bias)] if bias is not None else []),
        f"static const aiot_conv16_params_t {name}_p = {{ {{ {in_h}, {in_w}, {in_c}, {out_h}, {out_w}, {out_c}, "
        f"{k_h}, {k_w}, {sh}, {sw}, {dh}, {dw}, {pad_t}, {pad_l}, {dm}, 0, 0, {{ NULL, NULL, 0, 0, 0, 0, NULL }}, NULL }}, {int(kind == 'dw')}, "
        f"{{ {name}_mult, {name}_shift, {lo}, {hi}, {int(len(mults) > 1)}, {int(acc64)} }} }};",
    ]
    call = (f"aiot_conv2d_s16(&{name}_p, (const int16_t *){ctx.p(x.index)}, {name}_w, "
            f"{f'{name}_b' if bias is not None else 'NULL'}, (int16_t *){ctx.p(out.index)})")
    macs = out_h * out_w * out_c * k_h * k_w * (1 if kind == "dw" else in_c)
    return Layer(op.op, op.index, call, decls, macs=macs,
                 weights_bytes=w.size + (8 * out_c if bias is not None else 0) + 8 * len(mults))


def emit_conv2d_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _emit16(ctx, op, name, "conv")


def emit_depthwise_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _emit16(ctx, op, name, "dw")


def emit_fully_connected_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _emit16(ctx, op, name, "fc")


#: The ops the engine runs with int16 activations (16x8 mode); RESHAPE, SQUEEZE and
#: EXPAND_DIMS alias their input in any type.
EMITTERS16 = {
    "FULLY_CONNECTED": emit_fully_connected_16,
    "CONV_2D": emit_conv2d_16,
    "DEPTHWISE_CONV_2D": emit_depthwise_16,
    "ADD": emit_add,
    "MUL": emit_mul,
    "AVERAGE_POOL_2D": emit_avg_pool,
    "MAX_POOL_2D": emit_max_pool,
    "QUANTIZE": emit_quantize,
    "CONCATENATION": emit_concat,
}


def is_16x8(g: Graph, op: Operator) -> bool:
    """Whether a node runs in the 16x8 mode: an int16 activation in or out."""
    ts = [g.tensor(i) for i in (*op.inputs, *op.outputs)]
    return any(t is not None and t.dtype == "int16" and not t.is_const for t in ts)
