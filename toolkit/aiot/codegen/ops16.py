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
    _cast,
    _fail,
    _need_int8_weights,
    _qp,
    _same_size,
    conv_geometry,
    emit_abs,
    emit_add,
    emit_avg_pool,
    emit_batch_matmul,
    emit_concat,
    emit_leaky_relu,
    emit_lstm,
    emit_max_pool,
    emit_maximum,
    emit_mean,
    emit_minimum,
    emit_mul,
    emit_pack,
    emit_pad,
    emit_quantize,
    emit_relu,
    emit_relu6,
    emit_rsqrt,
    emit_split,
    emit_squared_difference,
    emit_strided_slice,
    emit_sub,
    emit_transpose,
    transpose_conv_geometry,
)
from aiot.codegen.quant import activation_range, conv_multipliers, quantize_multiplier, round_half_away
from aiot.model.tflite import Graph, Operator, Tensor, activation_types


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


def _operands16(ctx: Ctx, op: Operator, x_input: int) -> tuple[Graph, Tensor, Tensor, Tensor]:
    """(graph, int16 input, int16 output, int8 weights) of a 16x8 matmul-like layer, checked."""
    g = ctx.g
    x, out = ctx.t(op.inputs[x_input]), ctx.t(op.outputs[0])
    if x.dtype != "int16" or out.dtype != "int16":
        raise _fail(g, op, f"{x.dtype} input, {out.dtype} output", "the 16x8 mode needs int16 input and output")
    w = _need_int8_weights(g, op, g.tensor(op.inputs[1]))
    _zero_points(g, op, x, out)
    return g, x, out, w


def _emit16(ctx: Ctx, op: Operator, name: str, kind: str) -> Layer:
    g, x, out, w = _operands16(ctx, op, 0)
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
    if acc64:
        mults, shifts = reduced_multipliers(mults, shifts)
    # the speed mode sums in int32 when no sum can leave it (|x| <= 32768), or when TFLM's
    # own accumulator is a wrapping int32 (an int32 bias or none)
    w_abs = np.abs(np.asarray(w.data, np.int64)).reshape(-1, out_c) if kind == "dw" else \
        np.abs(np.asarray(w.data, np.int64)).reshape(out_c, -1).T
    bound = (np.abs(bias) if bias is not None else 0) + 32768 * w_abs.sum(axis=0)
    fits32 = not acc64 or int(np.max(bound, initial=0)) < 2**31
    # speed mode: CONV_2D/FULLY_CONNECTED weights widened to int16 and packed four channels
    # at a time (DSP cores multiply an input pair by each channel's weight pair with one
    # SMLAD); DEPTHWISE_CONV_2D (int32 sums) widened in the file's [tap][channel] order
    # (two channels per word, SMLABB/SMLATT); the size mode and other depthwise layers
    # keep the file's int8
    wide = ctx.optimize == "speed" and (kind != "dw" or fits32)
    if not wide:
        weights = np.asarray(w.data).astype(np.int8)
    else:
        weights = np.asarray(w.data).astype(np.int16).ravel() if kind == "dw" else pack16(np.asarray(w.data), out_c, k_h)
    decls = [
        _c_array("int32_t", f"{name}_mult", np.array(mults)),
        _c_array("int32_t", f"{name}_shift", np.array(shifts)),
        _c_array("int16_t" if wide else "int8_t", f"{name}_w", weights),
        *([_c_array("int64_t", f"{name}_b", bias)] if bias is not None else []),
        f"static const aiot_conv16_params_t {name}_p = {{ {{ {in_h}, {in_w}, {in_c}, {out_h}, {out_w}, {out_c}, "
        f"{k_h}, {k_w}, {sh}, {sw}, {dh}, {dw}, {pad_t}, {pad_l}, {dm}, 0, 0, {{ NULL, NULL, 0, 0, 0, 0, NULL }}, NULL }}, {int(kind == 'dw')}, "
        f"{{ {name}_mult, {name}_shift, {lo}, {hi}, {int(len(mults) > 1)}, {int(acc64)}, {int(fits32)} }}, "
        f"{int(wide)} }};",
    ]
    call = (f"aiot_conv2d_s16(&{name}_p, (const int16_t *){ctx.p(x.index)}, {name}_w, "
            f"{f'{name}_b' if bias is not None else 'NULL'}, (int16_t *){ctx.p(out.index)})")
    macs = out_h * out_w * out_c * k_h * k_w * (1 if kind == "dw" else in_c)
    return Layer(op.op, op.index, call, decls, macs=macs,
                 weights_bytes=weights.nbytes + (8 * out_c if bias is not None else 0) + 8 * len(mults))


def pack16(w: np.ndarray, out_c: int, k_h: int) -> np.ndarray:
    """Speed-mode CONV_2D/FULLY_CONNECTED weights ([out_c][k_h][k_w][in_c] int8) as conv16.c
    reads them: int16, [channel group of 4][k_h][pair of row values][channel][2], zero
    channels completing the last group and a zero weight the last pair of an odd row."""
    rows = np.asarray(w, np.int16).reshape(out_c, k_h, -1)
    groups, row = -(-out_c // 4), rows.shape[2]
    padded = np.zeros((4 * groups, k_h, row + row % 2), np.int16)
    padded[:out_c, :, :row] = rows
    return padded.reshape(groups, 4, k_h, -1, 2).transpose(0, 2, 3, 1, 4).ravel()


def reduced_multipliers(mults: list[int], shifts: list[int]) -> tuple[list[int], list[int]]:
    """What TFLM's int64 MultiplyByQuantizedMultiplier computes from each (Q31 multiplier,
    shift) on every call, done once here: the Q15 multiplier and the total right shift
    (15 - shift), the form aiot_requant16_t holds for an int64 accumulator."""
    reduced = [(m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF for m in mults]
    return reduced, [15 - s for s in shifts]


def emit_transpose_conv_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    # TFLM's 16x8 TRANSPOSE_CONV: products summed in an int64 scratch, the int64 bias, its
    # 64-bit requantization; the gather is the int8 kernel's (transpose_conv.c).
    g, x, out, w = _operands16(ctx, op, 2)
    geom = transpose_conv_geometry(g, op, x, out, w)
    in_h, in_w, in_c, out_c, k_h, k_w = geom[0], geom[1], geom[2], geom[5], geom[6], geom[7]
    mults, shifts = conv_multipliers(_qp(x)[0], w.scale if w.per_channel else w.scale[:1], _qp(out)[0])
    if any(s >= 8 for s in shifts):
        raise _fail(g, op, "a requantization scale of 2^8 or more", "the layer's scales are out of TFLite's range")
    mults, shifts = reduced_multipliers(mults, shifts)
    lo, hi = activation_range(op.options.get("activation", "NONE"), _qp(out)[0], 0, "int16")
    bias, _ = _bias64(g, op, op.inputs[3] if len(op.inputs) > 3 else -1, out_c, allow32=False)
    decls = [
        _c_array("int32_t", f"{name}_mult", np.array(mults)),
        _c_array("int32_t", f"{name}_shift", np.array(shifts)),
        _c_array("int8_t", f"{name}_w", np.asarray(w.data)),
        *([_c_array("int64_t", f"{name}_b", bias)] if bias is not None else []),
        f"static const aiot_transpose_conv16_params_t {name}_p = {{ {{ {', '.join(map(str, geom))}, 0, "
        "{ NULL, NULL, 0, 0, 0, 0, NULL } }, "
        f"{{ {name}_mult, {name}_shift, {lo}, {hi}, {int(len(mults) > 1)}, 1, 0 }} }};",
    ]
    call = (f"aiot_transpose_conv_s16(&{name}_p, {_cast(ctx, x)}, {name}_w, "
            f"{f'{name}_b' if bias is not None else 'NULL'}, {_cast(ctx, out)})")
    return Layer(op.op, op.index, call, decls, macs=in_h * in_w * in_c * out_c * k_h * k_w,
                 weights_bytes=w.size + (8 * out_c if bias is not None else 0) + 8 * len(mults))


def emit_conv2d_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _emit16(ctx, op, name, "conv")


def emit_depthwise_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _emit16(ctx, op, name, "dw")


def emit_fully_connected_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _emit16(ctx, op, name, "fc")


def _checked_log2(x: float) -> tuple[bool, int]:
    """TFLM's CheckedLog2 in float32: (whether x is a power of two within 1e-3 in log2, the rounded log2)."""
    lg = np.float32(np.log(np.float32(x))) * np.float32(np.float32(1.0) / np.float32(np.log(np.float32(2.0))))
    r = round_half_away(float(lg))
    return bool(abs(np.float32(lg) - np.float32(r)) < np.float32(1e-3)), r


def _lut16(ctx: Ctx, op: Operator, name: str, fn: str, tanh: bool) -> Layer:
    # TFLM's int16 LOGISTIC/TANH Prepare: symmetric tensors, output scale 2^-15; the input
    # rescaled to 1/(3 * 4096) per unit by a 15-bit multiplier and a right shift (or, for a
    # power-of-two input scale, by 3 alone).
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    _same_size(g, op, x, out)
    _zero_points(g, op, x, out)
    out_pot, out_log2 = _checked_log2(_qp(out)[0])
    if not out_pot or out_log2 != -15:
        raise _fail(g, op, f"output scale {_qp(out)[0]} is not 2^-15", "re-export with the converter's 16x8 mode")
    in_s = float(np.float32(_qp(x)[0]))
    pot, log2 = _checked_log2(in_s)
    shift = (15 - 3) + log2
    if pot and (shift == 0 or (tanh and shift == 1)):
        mult = 0
    else:
        m, shift = in_s * 4096.0 * 3.0, 0
        while m <= 32767.0 / 2.0 and shift <= 30:
            shift += 1
            m *= 2.0
        mult = int(m)
        if mult > 32767:
            raise _fail(g, op, f"input scale {in_s} is too large for TFLite's int16 table",
                        "re-export with the converter's 16x8 mode")
    decls = [f"static const aiot_lut16_params_t {name}_p = {{ {x.size}, {mult}, {shift} }};"]
    call = f"{fn}(&{name}_p, {_cast(ctx, x)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, decls, macs=x.size)


def emit_logistic_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _lut16(ctx, op, name, "aiot_logistic_s16", tanh=False)


def emit_tanh_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _lut16(ctx, op, name, "aiot_tanh_s16", tanh=True)


def _expf():
    """The C library's expf (what tflite-micro's std::exp(float) calls on this machine), or
    None: its tables must be the reference's to the last bit."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    if not name:
        return None
    f = ctypes.CDLL(name).expf
    f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda v: np.float32(f(float(v)))


def lut513(in_scale: float, in_zp: int, out_scale: float, out_zp: int, fn) -> np.ndarray:
    """TFLM's LUTPopulate<int16_t> in float32, step by step: 512 samples of fn over the
    input range, each biased by half the error of linear interpolation at the midpoint,
    and the end point."""
    f = np.float32
    rnd = lambda v: f(round_half_away(float(v)))  # noqa: E731  (TfLiteRound)
    in_scale, out_scale = f(in_scale), f(out_scale)
    in_min, in_max = in_scale * f(-32768 - in_zp), in_scale * f(32767 - in_zp)
    out_min, out_max = out_scale * f(-32768 - out_zp), out_scale * f(32767 - out_zp)
    step = (in_max - in_min) / f(512)
    half = step / f(2)
    inv = f(65536) / (out_max - out_min)
    lut = np.zeros(513, np.int16)
    for i in range(512):
        val = fn(in_min + f(i) * step)
        mid = fn(in_min + f(i) * step + half)
        nxt = fn(in_min + f(i + 1) * step)
        sample = rnd(val * inv)
        interp = rnd((nxt * inv + rnd(val * inv)) / f(2))
        bias = rnd((interp - rnd(mid * inv)) / f(2))
        lut[i] = int(min(max(sample - bias, f(-32768)), f(32767)))
    lut[512] = int(min(max(rnd(fn(in_max) * inv), f(-32768)), f(32767)))
    return lut


def _softmax_tables(ctx: Ctx, g: Graph, op: Operator) -> tuple[str, str]:
    """The two tables every int16 SOFTMAX shares (TFLM's Prepare fills them the same way for
    any tensor), declared once per model."""
    if not getattr(ctx, "softmax16_tables", False):
        expf = _expf()
        if expf is None:
            raise _fail(g, op, "no C library expf to build TFLM's exp table with",
                        "generate the code on a machine with a C math library (Linux, macOS)")
        f, rng = np.float32, 65535
        exp_lut = lut513(f(10.0) / f(rng), 32767, f(2.0) / f(rng), 0, expf)
        recip_lut = lut513(f(1.0) / f(rng), -32768, f(2.0) / f(rng), 0, lambda v: f(1.0) / (f(1.0) + v))
        ctx.const_decls += [_c_array("int16_t", "softmax16_exp", exp_lut), _c_array("int16_t", "softmax16_recip", recip_lut)]
        ctx.const_bytes += 2 * 2 * 513
        ctx.softmax16_tables = True
    return "softmax16_exp", "softmax16_recip"


def emit_softmax_16(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    _same_size(g, op, x, out)
    _zero_points(g, op, out)
    if abs(float(np.float32(_qp(out)[0])) - 1.0 / 32768) > 0.001 / 32768:
        raise _fail(g, op, f"output scale {_qp(out)[0]} is not 2^-15", "re-export with the converter's 16x8 mode")
    beta = float(np.float32(op.options.get("beta", 1.0)))
    mult, shift = quantize_multiplier(float(np.float32(_qp(x)[0])) * beta / (10.0 / 65535.0))
    exp_lut, recip_lut = _softmax_tables(ctx, g, op)
    depth = x.shape[-1] if x.shape else 1
    decls = [f"static const aiot_softmax16_params_t {name}_p = {{ {x.size // depth}, {depth}, {mult}, {shift}, "
             f"{exp_lut}, {recip_lut} }};"]
    call = f"aiot_softmax_s16(&{name}_p, {_cast(ctx, x)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, decls, macs=x.size)


#: The ops the engine runs with int16 activations (16x8 mode); RESHAPE, SQUEEZE and
#: EXPAND_DIMS alias their input in any type.
EMITTERS16 = {
    "FULLY_CONNECTED": emit_fully_connected_16,
    "CONV_2D": emit_conv2d_16,
    "DEPTHWISE_CONV_2D": emit_depthwise_16,
    "TRANSPOSE_CONV": emit_transpose_conv_16,
    "ADD": emit_add,
    "SUB": emit_sub,
    "SQUARED_DIFFERENCE": emit_squared_difference,
    "ABS": emit_abs,
    "RSQRT": emit_rsqrt,
    "BATCH_MATMUL": emit_batch_matmul,
    "MUL": emit_mul,
    "RELU": emit_relu,
    "RELU6": emit_relu6,
    "LEAKY_RELU": emit_leaky_relu,
    "MAXIMUM": emit_maximum,
    "MINIMUM": emit_minimum,
    "MEAN": emit_mean,
    "SUM": emit_mean,
    "PAD": emit_pad,
    "PADV2": emit_pad,
    "TRANSPOSE": emit_transpose,
    "STRIDED_SLICE": emit_strided_slice,
    "AVERAGE_POOL_2D": emit_avg_pool,
    "MAX_POOL_2D": emit_max_pool,
    "QUANTIZE": emit_quantize,
    "CONCATENATION": emit_concat,
    "PACK": emit_pack,
    "SPLIT": emit_split,
    "SPLIT_V": emit_split,
    "UNPACK": emit_split,
    "LOGISTIC": emit_logistic_16,
    "TANH": emit_tanh_16,
    "SOFTMAX": emit_softmax_16,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": emit_lstm,
}


def is_16x8(g: Graph, op: Operator) -> bool:
    """Whether a node runs in the 16x8 mode: an int16 activation in or out (an int8 SVDF's
    int16 state is not one)."""
    return "int16" in activation_types(g, op)
