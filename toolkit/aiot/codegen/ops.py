"""One emitter per TFLite op: precompute what TFLM's Prepare() would, emit the C call.

Each emitter returns a Layer (kernel call + its constant data), or None for ops that
cost nothing at run time because the memory plan aliases them (RESHAPE and friends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from aiot.errors import ToolkitError
from aiot.model.tflite import Graph, Operator, Tensor
from aiot.codegen.quant import (
    activation_range,
    conv_multipliers,
    quantize_multiplier,
    round_half_away,
)

#: Ops whose output is the input buffer re-labelled.
ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
#: Element-wise unary ops that may write over their input.
INPLACE_OPS = frozenset({"RELU", "RELU6", "QUANTIZE", "LOGISTIC", "TANH", "LEAKY_RELU"})


@dataclass
class Layer:
    op: str
    node: int
    call: str  # C expression returning aiot_status_t; {in0} {out0}... filled by the generator
    decls: list[str] = field(default_factory=list)
    macs: int = 0
    weights_bytes: int = 0
    #: C statements of aiot_model_reset(): a stateful op (SVDF) puts its state back as
    #: tflite-micro's ResetVariableTensors does
    reset: list[str] = field(default_factory=list)


class Ctx:
    """What emitters need: the graph, C names for constants, and a unique prefix per layer."""

    def __init__(self, graph: Graph, optimize: str = "speed"):
        self.g = graph
        self.optimize = optimize  # "speed": wide int16 weights; "size": packed int8
        # size mode, when the weights would outgrow the .tflite: per-tensor requantization
        # as one generic entry instead of one fast entry per channel
        self.compact_requant = False
        self.ptr: dict[int, str] = {}  # tensor index -> C pointer expression (filled by generator)
        self.const_decls: list[str] = []
        self.const_bytes = 0

    def t(self, idx: int) -> Tensor:
        return self.g.tensors[idx]

    def p(self, idx: int) -> str:
        """Pointer to a tensor: into the arena, or a constant array emitted on first use."""
        if idx not in self.ptr:
            t = self.g.tensors[idx]
            if not t.is_const or t.dtype not in ("int8", "int16"):
                raise ToolkitError(f"{self.g.source}: tensor {idx} '{t.name}' ({t.dtype}) has no storage",
                                   hint="this model layout is not supported; please report it")
            name = f"const_t{idx}"
            self.const_decls.append(_c_array(f"{t.dtype}_t", name, t.data))
            self.const_bytes += t.size * (2 if t.dtype == "int16" else 1)
            self.ptr[idx] = name
        return self.ptr[idx]


def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    flat = [int(v) for v in np.asarray(values).ravel()]
    if not flat:
        flat = [0]
    lines = []
    for i in range(0, len(flat), per_line):
        lines.append("    " + ", ".join(str(v) for v in flat[i : i + per_line]) + ",")
    body = "\n".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] __attribute__((aligned(4))) = {{\n{body}\n}};"


def _c_float(x: float) -> str:
    """Exact C99 hex float literal of a float32 value."""
    return float(np.float32(x)).hex() + "f"


def _pack_groups(w: np.ndarray, rows: int, segments: int, seg_len: int, order: list[int]) -> list[np.ndarray]:
    """The first ``rows`` rows (a multiple of four) of [rows][segments * seg_len] weights,
    per group of four rows and per segment: blocks of 4 columns x 4 rows, each row's four
    columns in ``order``, then the segment's tail columns row by row."""
    len4 = seg_len - seg_len % 4
    parts = []
    for g in range(0, rows, 4):
        group = w[g : g + 4].reshape(4, segments, seg_len)
        for s in range(segments):
            seg = group[:, s, :]
            parts.append(seg[:, :len4].reshape(4, len4 // 4, 4)[:, :, order].transpose(1, 0, 2).ravel())
            parts.append(seg[:, len4:].ravel())
    return parts


def pack_weights(w: np.ndarray, segments: int, seg_len: int) -> np.ndarray:
    """Arrange [rows][segments * seg_len] int8 weights for aiot_dot4_s8 (see engine.h):
    rows in groups of four, per segment 16-byte blocks of 4 columns x 4 rows, then the
    tail columns row by row; rows past the last full group stay plain."""
    w = np.asarray(w, dtype=np.int8).reshape(w.shape[0], segments * seg_len)
    full = w.shape[0] - w.shape[0] % 4
    return np.concatenate(_pack_groups(w, full, segments, seg_len, [0, 1, 2, 3]) + [w[full:].ravel()])


def pack_weights_wide(w: np.ndarray, segments: int, seg_len: int) -> np.ndarray:
    """Arrange [rows][segments * seg_len] int8 weights as int16 for aiot_dot4_s16w (see
    engine.h): rows zero-padded to a multiple of four; per group and segment, blocks of 4
    columns hold for each row (w[k], w[k+2], w[k+1], w[k+3]), then the tail columns row
    by row."""
    w = np.asarray(w, dtype=np.int8).reshape(w.shape[0], segments * seg_len).astype(np.int16)
    rows = -(-w.shape[0] // 4) * 4
    w = np.concatenate([w, np.zeros((rows - w.shape[0], w.shape[1]), np.int16)])
    parts = _pack_groups(w, rows, segments, seg_len, [0, 2, 1, 3])
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def pack_depthwise_wide(w: np.ndarray) -> np.ndarray:
    """[1][k_h][k_w][c] int8 depthwise weights as int16 for aiot_depthwise_conv2d_s8_wide
    (see engine.h): per group of four channels and per tap, (w[c], w[c+2], w[c+1],
    w[c+3]); then the c % 4 tail channels per tap."""
    w = np.asarray(w, dtype=np.int8).reshape(-1, w.shape[-1]).astype(np.int16)  # [taps][c]
    full = w.shape[1] - w.shape[1] % 4
    groups = w[:, :full].reshape(w.shape[0], full // 4, 4)[:, :, [0, 2, 1, 3]].transpose(1, 0, 2).ravel()
    return np.concatenate([groups, w[:, full:].ravel()])


def _pad_cols(w: np.ndarray, seg: int) -> np.ndarray:
    """[oc][kh][kw][ic] -> [oc][kh][seg] with zero weights after the k_w*in_c real columns."""
    oc, kh = w.shape[0], w.shape[1]
    flat = np.asarray(w, dtype=np.int8).reshape(oc, kh, -1)
    out = np.zeros((oc, kh, seg), dtype=np.int8)
    out[:, :, : flat.shape[2]] = flat
    return out


def _fail(g: Graph, op: Operator, what: str, hint: str) -> ToolkitError:
    return ToolkitError(f"{g.source}: node {op.index} ({op.op}): {what}", hint=hint)


def _same_size(g: Graph, op: Operator, a: Tensor, b: Tensor) -> None:
    if a.size != b.size:
        raise _fail(g, op, f"input has {a.size} values but output '{b.name}' has {b.size}",
                    "the file is corrupt or was not produced by the TFLite converter; re-export it")


def _qp(t: Tensor) -> tuple[float, int]:
    return t.qparams()


#: |accumulator| bound under which the fast requantization is exact (2 * acc fits int32).
FAST_REQUANT_LIMIT = 2**30


def requant_form(mults: list[int], shifts: list[int], acc_bound: int | None, channels: int,
                 compact: bool = False) -> tuple[bool, list[int], list[int]]:
    """(fast, multipliers, shifts) of a layer's requantization tables: the proven fast form
    (one aiot_rq_ch_t per channel, shifts as r - 1) when ``acc_bound`` allows it, the
    multipliers repeated per channel; else the generic tables as given. The generated C
    and the model-as-data plan (aiot.lifecycle.plan) both take it from here."""
    if compact and len(mults) == 1 and channels > 1:
        acc_bound = None
    if acc_bound is not None and acc_bound < FAST_REQUANT_LIMIT and all(s <= -1 for s in shifts) and all(m >= 0 for m in mults):
        if len(mults) == 1:
            mults, shifts = mults * channels, shifts * channels
        return True, list(mults), list(shifts)
    return False, list(mults), list(shifts)


def _requant_decl(name: str, mults: list[int], shifts: list[int], out_zp: int, lo: int, hi: int,
                  acc_bound: int | None = None, channels: int = 1,
                  compact: bool = False) -> tuple[list[str], str, int]:
    """Requantization tables, the aiot_requant_t initializer and the tables' bytes.
    ``acc_bound`` bounds |accumulator| over every channel and every int8 input; when it
    is below 2**30 and every shift is a right shift, the proven fast form (aiot_rq_ch_t,
    one entry per channel, a per-tensor entry repeated, so the kernels index it without a
    stride) replaces the generic multiplier/shift tables. ``compact`` (size mode) keeps a
    per-tensor layer at one generic entry instead of repeating it per channel, so the
    weight flash stays within the .tflite's."""
    fast, mults, shifts = requant_form(mults, shifts, acc_bound, channels, compact)
    if fast:
        rows = "\n".join(f"    {{ {m}, {-s - 1} }}," for m, s in zip(mults, shifts))
        decls = [f"static const aiot_rq_ch_t {name}_rq[{len(mults)}] = {{\n{rows}\n}};"]
        return decls, f"{{ NULL, NULL, {out_zp}, {lo}, {hi}, 1, {name}_rq }}", 8 * len(mults)
    decls = [
        _c_array("int32_t", f"{name}_mult", np.array(mults)),
        _c_array("int32_t", f"{name}_shift", np.array(shifts)),
    ]
    init = f"{{ {name}_mult, {name}_shift, {out_zp}, {lo}, {hi}, {1 if len(mults) > 1 else 0}, NULL }}"
    return decls, init, 8 * len(mults)


def _acc_bound(bias: np.ndarray, w_abs_sums: np.ndarray) -> int:
    """Largest |bias + sum w * x| over int8 inputs x (|x| <= 128), over all channels."""
    return int(np.max(np.abs(bias) + 128 * w_abs_sums)) if len(bias) else 0


def _need_int8_weights(g: Graph, op: Operator, w: Tensor | None) -> Tensor:
    if w is None or not w.is_const:
        raise _fail(g, op, "weights are not a constant tensor", "the engine compiles models with constant weights only")
    if w.dtype != "int8" or w.scale is None:
        raise _fail(g, op, f"weights are {w.dtype}, expected int8", "quantize the whole model to int8 (aiot quantize --keras MODEL.keras --data DATA.csv --out PKG)")
    if w.zero_point is not None and np.any(w.zero_point != 0):
        raise _fail(g, op, "weights have a non-zero zero point", "int8 weights must be symmetric (TFLite default)")
    return w


def _bias(g: Graph, op: Operator, idx: int, n: int) -> np.ndarray:
    b = g.tensor(idx) if idx >= 0 else None
    if b is None:
        return np.zeros(n, dtype=np.int64)
    if not b.is_const or b.dtype != "int32" or b.size != n:
        raise _fail(g, op, f"bias must be a constant int32 vector of {n} values (got {b.dtype} {list(b.shape)})",
                    "re-export with full-integer quantization (aiot quantize --keras MODEL.keras --data DATA.csv --out PKG)")
    return b.data.astype(np.int64).ravel()


def _i32(values: np.ndarray, g: Graph, op: Operator) -> np.ndarray:
    if np.any(values > 2**31 - 1) or np.any(values < -(2**31)):
        raise _fail(g, op, "folded bias overflows int32", "the layer's weights or input zero point are out of range")
    return values.astype(np.int64)


@dataclass
class FcLayer:
    """Everything one FULLY_CONNECTED layer needs, as data: the C emitter prints it, the
    model-package plan (aiot.lifecycle.plan) serializes it, so both run the same numbers."""

    batches: int
    n_in: int
    n_out: int
    mults: list[int]
    shifts: list[int]
    out_zp: int
    lo: int
    hi: int
    bias: np.ndarray          # int64 values that fit int32, input zero point folded in
    acc_bound: int            # largest |accumulator| (decides the fast requantization form)
    weights: np.ndarray       # int8 [n_out, n_in]
    x: Tensor
    out: Tensor


def fully_connected_layer(ctx: Ctx, op: Operator) -> FcLayer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.dtype != "int8" or out.dtype != "int8":  # a 16x8 layer has its own emitter (ops16)
        raise _fail(g, op, f"{x.dtype} input, {out.dtype} output: not an int8 layer",
                    "compile a 16x8 model into the firmware (aiot codegen --model FILE.tflite --out DIR); "
                    "the model-as-data plan runs int8 layers only")
    w = _need_int8_weights(g, op, g.tensor(op.inputs[1]))
    if len(w.shape) != 2:
        raise _fail(g, op, f"weights have shape {list(w.shape)}, expected [out, in]", "use a Dense layer")
    n_out, n_in = w.shape
    if x.size % n_in:
        raise _fail(g, op, f"input of {x.size} values is not a multiple of {n_in} features", "check the layer shapes")
    batches = x.size // n_in
    if out.size != batches * n_out:
        raise _fail(g, op, f"output tensor '{out.name}' has {out.size} values, the layer computes {batches * n_out}",
                    "re-export the model with a fixed batch size of 1")
    if w.per_channel and (len(w.scale) != n_out or w.quantized_dimension != 0):
        raise _fail(g, op, "per-channel scales do not match the output features", "re-export the model")
    in_s, in_zp = _qp(x)
    out_s, out_zp = _qp(out)
    if w.per_channel:
        mults, shifts = conv_multipliers(in_s, w.scale, out_s)
    else:
        mults, shifts = conv_multipliers(in_s, w.scale[:1], out_s)
    lo, hi = activation_range(op.options.get("activation", "NONE"), out_s, out_zp)
    wq = w.data.astype(np.int64)
    bias = _i32(_bias(g, op, op.inputs[2] if len(op.inputs) > 2 else -1, n_out) - in_zp * wq.sum(axis=1), g, op)
    return FcLayer(batches, n_in, n_out, list(mults), list(shifts), out_zp, lo, hi, bias,
                   _acc_bound(bias, np.abs(wq).sum(axis=1)), w.data, x, out)


def emit_fully_connected(ctx: Ctx, op: Operator, name: str) -> Layer:
    fc = fully_connected_layer(ctx, op)
    batches, n_in, n_out = fc.batches, fc.n_in, fc.n_out
    decls, rq, rq_bytes = _requant_decl(name, fc.mults, fc.shifts, fc.out_zp, fc.lo, fc.hi, fc.acc_bound, n_out,
                                        compact=ctx.compact_requant)
    if ctx.optimize == "speed":
        packed, ctype, fn = pack_weights_wide(fc.weights, 1, n_in), "int16_t", "aiot_fully_connected_s8_wide"
    else:
        packed, ctype, fn = pack_weights(fc.weights, 1, n_in), "int8_t", "aiot_fully_connected_s8"
    decls += [
        _c_array(ctype, f"{name}_w", packed),
        _c_array("int32_t", f"{name}_b", fc.bias),
        f"static const aiot_fc_params_t {name}_p = {{ {batches}, {n_in}, {n_out}, {rq} }};",
    ]
    call = f"{fn}(&{name}_p, {ctx.p(fc.x.index)}, {name}_w, {name}_b, {ctx.p(fc.out.index)})"
    return Layer(op.op, op.index, call, decls, macs=batches * n_in * n_out,
                 weights_bytes=packed.nbytes + 4 * n_out + rq_bytes)


def _padding(padding: str, in_size: int, k: int, stride: int, dil: int, out_size: int) -> int:
    eff = (k - 1) * dil + 1
    if padding == "VALID":
        return 0
    total = max((out_size - 1) * stride + eff - in_size, 0)
    return total // 2


def _nhwc(g: Graph, op: Operator, t: Tensor) -> tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise _fail(g, op, f"tensor '{t.name}' has shape {list(t.shape)}, expected NHWC with batch 1",
                    "export the model with batch size 1")
    return t.shape[1], t.shape[2], t.shape[3]


def conv_geometry(g: Graph, op: Operator, x: Tensor, out: Tensor, w: Tensor) -> tuple[int, ...]:
    """(in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride_h, stride_w, dilation_h,
    dilation_w, pad_top, pad_left) of a CONV_2D or DEPTHWISE_CONV_2D, checked."""
    in_h, in_w, in_c = _nhwc(g, op, x)
    out_h, out_w, out_c = _nhwc(g, op, out)
    o = op.options
    if len(w.shape) != 4:
        raise _fail(g, op, f"filter shape {list(w.shape)} is not 4-D", "re-export the model")
    k_h, k_w = w.shape[1], w.shape[2]
    sh, sw, dh, dw = o["stride_h"], o["stride_w"], o.get("dilation_h", 1), o.get("dilation_w", 1)
    if min(sh, sw, dh, dw) < 1:
        raise _fail(g, op, f"strides {sh}x{sw} / dilations {dh}x{dw} must be >= 1", "re-export the model")
    pad_t = _padding(o["padding"], in_h, k_h, sh, dh, out_h)
    pad_l = _padding(o["padding"], in_w, k_w, sw, dw, out_w)
    return in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, sh, sw, dh, dw, pad_t, pad_l


@dataclass
class ConvLayer:
    """One CONV_2D or DEPTHWISE_CONV_2D layer as data (aiot_conv_params_t's fields, the
    folded bias, the requantization): the C emitter prints it, the plan serializes it."""

    depthwise: bool
    dims: tuple[int, ...]     # in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride_h, stride_w,
                              # dil_h, dil_w, pad_top, pad_left, depth_multiplier, seg_len
    in_zp: int
    mults: list[int]
    shifts: list[int]
    out_zp: int
    lo: int
    hi: int
    bias: np.ndarray          # zero point folded in
    raw_bias: np.ndarray      # as the file has it (border_bias)
    acc_bound: int
    crosses: bool             # some window crosses the border: border_bias is passed
    weights: np.ndarray       # int8 as in the file
    x: Tensor
    out: Tensor

    @property
    def out_c(self) -> int:
        return self.dims[5]

    def wide(self, optimize: str) -> bool:
        return optimize == "speed" and (not self.depthwise or self.dims[14] == 1)

    def packed(self, optimize: str) -> np.ndarray:
        """The filter in the kernel's layout (int16 when wide, else int8)."""
        k_h, seg = self.dims[6], self.dims[15]
        if self.depthwise:
            return pack_depthwise_wide(self.weights) if self.wide(optimize) else np.asarray(self.weights, np.int8)
        if self.wide(optimize):
            return pack_weights_wide(_pad_cols(self.weights, seg), k_h, seg)
        return pack_weights(_pad_cols(self.weights, seg), k_h, seg)


def conv_layer(ctx: Ctx, op: Operator, depthwise: bool) -> ConvLayer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    w = _need_int8_weights(g, op, g.tensor(op.inputs[1]))
    o = op.options
    in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, sh, sw, dh, dw, pad_t, pad_l = conv_geometry(g, op, x, out, w)
    in_s, in_zp = _qp(x)
    out_s, out_zp = _qp(out)
    qdim = 3 if depthwise else 0
    if w.per_channel and (len(w.scale) != out_c or w.quantized_dimension != qdim):
        raise _fail(g, op, "per-channel scales do not match the output channels", "re-export the model")
    mults, shifts = conv_multipliers(in_s, w.scale if w.per_channel else w.scale[:1], out_s)
    lo, hi = activation_range(o.get("activation", "NONE"), out_s, out_zp)
    raw_bias = _i32(_bias(g, op, op.inputs[2] if len(op.inputs) > 2 else -1, out_c), g, op)
    wq = w.data.astype(np.int64)
    # Padding taps read the zero point, so the zero-point term is the same for every pixel.
    per_oc = wq.sum(axis=(1, 2, 3)) if not depthwise else wq.sum(axis=(0, 1, 2))
    bias = _i32(raw_bias - in_zp * per_oc, g, op)
    dm = o.get("depth_multiplier", 1) if depthwise else 1
    if depthwise:
        if w.shape[0] != 1 or w.shape[3] != out_c or out_c != in_c * max(dm, 1):
            raise _fail(g, op, f"filter {list(w.shape)} does not match {in_c} -> {out_c} channels", "re-export the model")
        dm = out_c // in_c
    elif w.shape[0] != out_c or w.shape[3] != in_c:
        raise _fail(g, op, f"filter {list(w.shape)} does not match {in_c} -> {out_c} channels (grouped convs are not supported)",
                    "use a regular or depthwise convolution")
    seg = k_w * in_c if depthwise else -(-k_w * in_c // 4) * 4
    acc_bound = _acc_bound(bias, np.abs(wq).sum(axis=(0, 1, 2) if depthwise else (1, 2, 3)))
    # Windows that cross the border sum w * (x - zero point) over their inside taps,
    # from the bias as the file has it (only needed when some window does).
    crosses = pad_t > 0 or pad_l > 0 or (out_h - 1) * sh + (k_h - 1) * dh >= in_h or \
        (out_w - 1) * sw + (k_w - 1) * dw >= in_w or (not depthwise and seg != k_w * in_c)
    dims = (in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, sh, sw, dh, dw, pad_t, pad_l, dm, seg)
    return ConvLayer(depthwise, tuple(int(v) for v in dims), in_zp, list(mults), list(shifts), out_zp, lo, hi,
                     bias, raw_bias, acc_bound, bool(crosses), w.data, x, out)


def _conv_like(ctx: Ctx, op: Operator, name: str, depthwise: bool) -> Layer:
    cv = conv_layer(ctx, op, depthwise)
    out_c = cv.out_c
    decls, rq, rq_bytes = _requant_decl(name, cv.mults, cv.shifts, cv.out_zp, cv.lo, cv.hi, cv.acc_bound, out_c,
                                        compact=ctx.compact_requant)
    wide = cv.wide(ctx.optimize)
    packed = cv.packed(ctx.optimize)
    ctype = "int16_t" if wide else "int8_t"
    border = f"{name}_b0" if cv.crosses else "NULL"
    decls += [
        _c_array(ctype, f"{name}_w", packed),
        _c_array("int32_t", f"{name}_b", cv.bias),
        *([_c_array("int32_t", f"{name}_b0", cv.raw_bias)] if cv.crosses else []),
        f"static const aiot_conv_params_t {name}_p = {{ {', '.join(map(str, cv.dims))}, {cv.in_zp}, {rq}, {border} }};",
    ]
    fn = ("aiot_depthwise_conv2d_s8" if depthwise else "aiot_conv2d_s8") + ("_wide" if wide else "")
    call = f"{fn}(&{name}_p, {ctx.p(cv.x.index)}, {name}_w, {name}_b, {ctx.p(cv.out.index)})"
    in_c, out_h, out_w, k_h, k_w = cv.dims[2], cv.dims[3], cv.dims[4], cv.dims[6], cv.dims[7]
    macs = out_h * out_w * out_c * k_h * k_w * (1 if depthwise else in_c)
    weights_bytes = packed.nbytes + 4 * out_c * (2 if cv.crosses else 1) + rq_bytes
    return Layer(op.op, op.index, call, decls, macs=macs, weights_bytes=weights_bytes)


def emit_conv2d(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _conv_like(ctx, op, name, depthwise=False)


def emit_depthwise(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _conv_like(ctx, op, name, depthwise=True)


#: AIOT_TCONV_MAX_ROWS and AIOT_TCONV_PATCH (engine.h): the sub-rows one output pixel of
#: the SIMD TRANSPOSE_CONV reads, and their input bytes (a stack copy at the edges)
TCONV_MAX_ROWS, TCONV_PATCH = 16, 768


def emit_transpose_conv(ctx: Ctx, op: Operator, name: str) -> Layer:
    # Inputs: output shape, OHWI weights, input, optional bias. TFLM derives the padding
    # from the output size as a convolution of it would (its offset unused).
    g = ctx.g
    x, out = ctx.t(op.inputs[2]), ctx.t(op.outputs[0])
    w = _need_int8_weights(g, op, g.tensor(op.inputs[1]))
    in_h, in_w, in_c = _nhwc(g, op, x)
    out_h, out_w, out_c = _nhwc(g, op, out)
    o = op.options
    if len(w.shape) != 4 or w.shape[0] != out_c or w.shape[3] != in_c:
        raise _fail(g, op, f"filter {list(w.shape)} does not match {in_c} -> {out_c} channels", "re-export the model")
    k_h, k_w = w.shape[1], w.shape[2]
    sh, sw = o.get("stride_h", 0), o.get("stride_w", 0)
    if min(sh, sw) < 1:
        raise _fail(g, op, f"strides {sh}x{sw} must be >= 1", "re-export the model")

    def pad(size: int, k: int, stride: int) -> int:
        n = (size + stride - 1) // stride if o["padding"] == "SAME" else (size - k + stride) // stride
        return _padding(o["padding"], size, k, stride, 1, n)

    pad_h, pad_w = pad(out_h, k_h, sh), pad(out_w, k_w, sw)
    in_s, in_zp = _qp(x)
    out_s, out_zp = _qp(out)
    if w.per_channel and (len(w.scale) != out_c or w.quantized_dimension != 0):
        raise _fail(g, op, "per-channel scales do not match the output channels", "re-export the model")
    mults, shifts = conv_multipliers(in_s, w.scale if w.per_channel else w.scale[:1], out_s)
    lo, hi = activation_range(o.get("activation", "NONE"), out_s, out_zp)
    has_bias = len(op.inputs) > 3 and op.inputs[3] >= 0
    bias = _i32(_bias(g, op, op.inputs[3] if has_bias else -1, out_c), g, op)
    wq = np.abs(w.data.astype(np.int64)).sum(axis=(1, 2, 3))
    # |x - zero point| <= 255 here (the zero point is not folded into the bias)
    acc_bound = int(np.max(np.abs(bias) + 255 * wq)) if out_c else 0
    decls, rq, rq_bytes = _requant_decl(name, mults, shifts, out_zp, lo, hi, acc_bound, out_c,
                                        compact=ctx.compact_requant)
    params = (f"static const aiot_transpose_conv_params_t {name}_p = {{ {in_h}, {in_w}, {in_c}, {out_h}, {out_w}, "
              f"{out_c}, {k_h}, {k_w}, {sh}, {sw}, {pad_h}, {pad_w}, {-in_zp}, {rq} }};")
    macs = in_h * in_w * in_c * out_c * k_h * k_w
    n_rows = -(-k_h // sh)
    if n_rows <= TCONV_MAX_ROWS and n_rows * -(-k_w // sw) * in_c <= TCONV_PATCH:
        # By output phase (see aiot_transpose_conv_s8_wide): per phase and fy one sub-row,
        # its taps from the phase's last fx down, as an [out_c][ni * in_c] matrix (speed:
        # wide; size: packed int8), and the input zero point's term of that sub-row.
        wide = ctx.optimize == "speed"
        pack = pack_weights_wide if wide else pack_weights
        padded = -(-out_c // 4) * 4
        first, offsets, parts, row_bias, size = [0], [], [], [], 0
        for py in range(sh):
            for px in range(sw):
                fxs = list(range(px, k_w, sw))[::-1]
                for fy in range(py, k_h, sh) if fxs else []:
                    m = np.concatenate([w.data[:, fy, fx, :] for fx in fxs], axis=1)
                    packed = pack(m, 1, m.shape[1])
                    # aiot_dot4_s8 loads its blocks with LDM: every sub-row starts on a word
                    packed = np.concatenate([packed, np.zeros(-packed.nbytes % 4 // packed.itemsize, packed.dtype)])
                    offsets.append(size)
                    parts.append(packed)
                    size += packed.size
                    rb = np.zeros(padded, np.int64)
                    rb[:out_c] = -in_zp * m.astype(np.int64).sum(axis=1)
                    row_bias.append(rb)
                first.append(len(offsets))
        ctype = "int16_t" if wide else "int8_t"
        packed = np.concatenate(parts) if parts else np.zeros(1, np.int16 if wide else np.int8)
        row_bias = _i32(np.array(row_bias if row_bias else [np.zeros(padded, np.int64)]), g, op)
        decls += [_c_array(ctype, f"{name}_w", packed), _c_array("int32_t", f"{name}_rb", row_bias),
                  _c_array("int32_t", f"{name}_b", bias), _c_array("uint16_t", f"{name}_rf", np.array(first)),
                  _c_array("uint32_t", f"{name}_ro", np.array(offsets or [0])),
                  f"static const aiot_tconv_rows_t {name}_r = {{ {name}_rf, {name}_ro }};", params]
        call = (f"aiot_transpose_conv_s8_{'wide' if wide else 'packed'}(&{name}_p, &{name}_r, {ctx.p(x.index)}, {name}_w, {name}_rb, "
                f"{name}_b, {ctx.p(out.index)})")
        return Layer(op.op, op.index, call, decls, macs=macs,
                     weights_bytes=packed.nbytes + 4 * (row_bias.size + out_c + len(offsets)) + 2 * len(first)
                     + rq_bytes)
    decls += [_c_array("int8_t", f"{name}_w", w.data), *([_c_array("int32_t", f"{name}_b", bias)] if has_bias else []),
              params]
    call = (f"aiot_transpose_conv_s8(&{name}_p, {ctx.p(x.index)}, {name}_w, {f'{name}_b' if has_bias else 'NULL'}, "
            f"{ctx.p(out.index)})")
    return Layer(op.op, op.index, call, decls, macs=macs,
                 weights_bytes=w.size + (4 * out_c if has_bias else 0) + rq_bytes)


def emit_svdf(ctx: Ctx, op: Operator, name: str) -> Layer:
    # TFLM's PrepareSvdf: the two effective scales are computed in float (scale products),
    # then widened; the bias scale must be the state scale x the time weights' scale.
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    wf = _need_int8_weights(g, op, g.tensor(op.inputs[1]))
    wt = g.tensor(op.inputs[2])
    state = g.tensor(op.inputs[4]) if len(op.inputs) > 4 else None
    if state is None or not state.is_variable or state.dtype not in ("int8", "int16") or not state.quantized:
        raise _fail(g, op, "the activation state (input 4) must be a quantized int8 or int16 variable tensor",
                    "re-export the model")
    wide = state.dtype == "int16"
    if wt is None or not wt.is_const or wt.dtype != state.dtype or not wt.quantized:
        raise _fail(g, op, f"time weights must be constant {state.dtype}, like the state", "re-export the model")
    rank = int(op.options.get("rank", 0))
    if len(x.shape) != 2 or len(wf.shape) != 2 or len(wt.shape) != 2 or rank < 1:
        raise _fail(g, op, f"input {list(x.shape)}, feature weights {list(wf.shape)}, time weights "
                    f"{list(wt.shape)}, rank {rank}", "SVDF takes [batch, input] and 2-D weights; re-export the model")
    batches, n_in = x.shape
    filters, memory = wt.shape
    units = filters // rank if filters % rank == 0 else -1
    if wf.shape != (filters, n_in) or units < 1 or tuple(out.shape) != (batches, units) or \
            tuple(state.shape) != (batches, memory * filters):
        raise _fail(g, op, f"shapes do not fit: input {list(x.shape)}, feature weights {list(wf.shape)}, time "
                    f"weights {list(wt.shape)}, rank {rank}, state {list(state.shape)}, output {list(out.shape)}",
                    "re-export the model")
    f32 = np.float32
    (in_s, in_zp), (st_s, st_zp), (out_s, out_zp) = _qp(x), _qp(state), _qp(out)
    wf_s, wt_s = f32(wf.scale[0]), f32(wt.scale[0])
    m1, s1 = quantize_multiplier(float(f32(f32(in_s) * wf_s) / f32(st_s)))
    m2, s2 = quantize_multiplier(float(f32(f32(st_s) * wt_s) / f32(out_s)))
    if len(op.inputs) < 4 or op.inputs[3] < 0:
        raise _fail(g, op, "an int8 SVDF without a bias", "tflite-micro's int8 SVDF reads the bias's scale (it "
                    "crashes without one), so there is no reference to be bit-exact with: give the layer a bias")
    bias = _bias(g, op, op.inputs[3], units)
    if abs(float(f32(g.tensor(op.inputs[3]).qparams()[0])) - float(f32(f32(st_s) * wt_s))) >= 1e-5:
        raise _fail(g, op, "the bias scale is not the state scale x the time weights' scale",
                    "tflite-micro refuses it too; re-export the model")
    ctype = "int16_t" if wide else "int8_t"
    init = 0 if wide else st_zp  # ResetVariableTensors: int8 to the zero point, others to 0
    n_state = batches * memory * filters
    decls = [
        _c_array("int8_t", f"{name}_wf", wf.data),
        _c_array(ctype, f"{name}_wt", wt.data),
        _c_array("int32_t", f"{name}_b", bias),
        # starts as after a reset (TFLM resets variables when it allocates them)
        f"static {ctype} {name}_state[{n_state}] = {{ [0 ... {n_state - 1}] = {init} }};",
        f"static const aiot_svdf_params_t {name}_p = {{ {batches}, {n_in}, {filters}, {rank}, {memory}, "
        f"{int(wide)}, {in_zp}, {st_zp}, {out_zp}, {m1}, {s1}, {m2}, {s2} }};",
    ]
    reset = [f"for (uint32_t i = 0; i < {n_state}u; i++) {name}_state[i] = {init};"]
    call = f"aiot_svdf_s8(&{name}_p, {ctx.p(x.index)}, {name}_wf, {name}_wt, {name}_b, {name}_state, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=batches * filters * (n_in + memory),
                 weights_bytes=wf.size + wt.size * (2 if wide else 1) + 4 * units, reset=reset)


#: UNIDIRECTIONAL_SEQUENCE_LSTM's inputs (tflite's lstm_shared.h order): per gate (input,
#: forget, cell, output) the input weights, the recurrent weights and the bias.
_LSTM_GATES = (("input", 1, 5, 12), ("forget", 2, 6, 13), ("cell", 3, 7, 14), ("output", 4, 8, 15))
#: The LSTM variants and the inputs that make them; tflite-micro's kernel runs none of them.
_LSTM_VARIANTS = (("CIFG (coupled input and forget gates)", (1, 5)), ("peephole", (9, 10, 11)),
                  ("projection", (16, 17)), ("layer norm", (20, 21, 22, 23)))


def emit_lstm(ctx: Ctx, op: Operator, name: str) -> Layer:
    # tflite-micro's integer LSTM (int8 activations, int16 cell state): every gate's two
    # fully connected parts output Q3.12 (scale 2^-12), their multipliers computed as its FC
    # Prepare does (double products); the gates are Q0.15, so the three products' multipliers
    # are 2^-15 x 2^-15 (or x the cell scale) / the result's scale, in double.
    g = ctx.g
    o = op.options

    def tensor(i: int) -> Tensor | None:
        return g.tensor(op.inputs[i]) if i < len(op.inputs) and op.inputs[i] >= 0 else None

    variants = [what for what, idx in _LSTM_VARIANTS
                if any((tensor(i) is None) if what.startswith("CIFG") else (tensor(i) is not None) for i in idx)]
    if len(op.inputs) != 24:
        variants.append(f"{len(op.inputs)} inputs (tflite-micro's kernel takes 24)")
    if o.get("diagonal_recurrent_tensors"):
        variants.append("diagonal recurrent weights")
    if variants:
        raise _fail(g, op, "an LSTM with " + ", ".join(variants),
                    "tflite-micro's LSTM kernel runs only the plain LSTM (no CIFG, peephole, projection or layer "
                    "norm), so there is nothing to be bit-exact with: use a plain keras.layers.LSTM")
    x, out, hidden, cell = tensor(0), ctx.t(op.outputs[0]), tensor(18), tensor(19)
    if x is None or x.dtype != "int8" or len(x.shape) != 3:
        raise _fail(g, op, f"the input must be a 3-D int8 tensor (got {x.dtype if x else None} "
                    f"{list(x.shape) if x else []})", "quantize the whole model to int8 with int8 activations")
    if hidden is None or not hidden.is_variable or hidden.dtype != "int8" or not hidden.quantized or \
            cell is None or not cell.is_variable or cell.dtype != "int16" or not cell.quantized:
        raise _fail(g, op, "the hidden state (input 18) must be an int8 and the cell state (input 19) an int16 "
                    "quantized variable tensor", "convert with full-integer int8 quantization (the int8 x int8 -> "
                    "int16 LSTM tflite-micro runs)")
    time_major = bool(o.get("time_major"))
    steps, batches = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    n_in = x.shape[2]
    n_cell = hidden.size // batches if batches else 0
    if n_cell < 1 or hidden.size != batches * n_cell or cell.size != hidden.size or \
            tuple(out.shape) != (*x.shape[:2], n_cell) or out.dtype != "int8":
        raise _fail(g, op, f"shapes do not fit: input {list(x.shape)}, hidden state {list(hidden.shape)}, cell state "
                    f"{list(cell.shape)}, output {out.dtype} {list(out.shape)}", "re-export the model")
    if o.get("activation", "NONE") != "TANH":
        raise _fail(g, op, f"cell activation {o.get('activation')}",
                    "tflite-micro's LSTM applies tanh or sigmoid only; use the default activation='tanh'")
    cell_s = float(np.float32(cell.scale[0]))
    power = int(np.round(np.log2(cell_s)))
    if cell_s != 2.0 ** power:
        raise _fail(g, op, f"the cell state scale {cell_s} is not a power of two",
                    "the converter makes it one; re-export the model")
    if float(o.get("cell_clip", 0.0)) < 0:
        raise _fail(g, op, "a negative cell clip", "tflite-micro refuses it too; re-export the model")
    (in_s, in_zp), (h_s, h_zp) = _qp(x), _qp(hidden)
    q12, q15 = 2.0 ** -12, 2.0 ** -15
    decls, gates, wide, weights_bytes = [], [], [], 0
    for gate, wi_i, wr_i, b_i in _LSTM_GATES:
        wi, wr = (_need_int8_weights(g, op, tensor(i)) for i in (wi_i, wr_i))
        if wi.shape != (n_cell, n_in) or wr.shape != (n_cell, n_cell) or wi.per_channel or wr.per_channel:
            raise _fail(g, op, f"{gate} gate weights {list(wi.shape)} and {list(wr.shape)} (per-tensor "
                        f"[{n_cell}, {n_in}] and [{n_cell}, {n_cell}] expected)", "re-export the model")
        bias = _bias(g, op, op.inputs[b_i], n_cell)
        (mi,), (si,) = conv_multipliers(in_s, wi.scale[:1], q12)
        (mr,), (sr,) = conv_multipliers(h_s, wr.scale[:1], q12)
        if ctx.optimize == "speed":
            # wide weights for aiot_dot4_wide, the zero points folded into the biases as
            # TFLM's Prepare folds them; the int8 weights are not stored
            padded = -(-n_cell // 4) * 4
            folded = np.zeros((2, padded), np.int64)
            folded[0, :n_cell] = np.asarray(bias, np.int64) - in_zp * wi.data.astype(np.int64).sum(axis=1)
            folded[1, :n_cell] = -h_zp * wr.data.astype(np.int64).sum(axis=1)
            pi, pr = pack_weights_wide(wi.data, 1, n_in), pack_weights_wide(wr.data, 1, n_cell)
            folded = _i32(folded, g, op)
            decls += [_c_array("int16_t", f"{name}_{gate}_wi", pi), _c_array("int16_t", f"{name}_{gate}_wr", pr),
                      _c_array("int32_t", f"{name}_{gate}_bi", folded[0]),
                      _c_array("int32_t", f"{name}_{gate}_br", folded[1])]
            gates.append(f"{{ NULL, NULL, NULL, {mi}, {si}, {mr}, {sr} }}")
            wide.append(f"{{ {name}_{gate}_wi, {name}_{gate}_wr, {name}_{gate}_bi, {name}_{gate}_br }}")
            weights_bytes += pi.nbytes + pr.nbytes + folded.size * 4
            continue
        decls += [_c_array("int8_t", f"{name}_{gate}_wi", wi.data), _c_array("int8_t", f"{name}_{gate}_wr", wr.data),
                  _c_array("int32_t", f"{name}_{gate}_b", bias)]
        gates.append(f"{{ {name}_{gate}_wi, {name}_{gate}_wr, {name}_{gate}_b, {mi}, {si}, {mr}, {sr} }}")
        weights_bytes += wi.size + wr.size + 4 * n_cell
    mf, sf = quantize_multiplier(q15 * cell_s / cell_s)
    mc, sc = quantize_multiplier(q15 * q15 / cell_s)
    mh, sh = quantize_multiplier(q15 * q15 / float(np.float32(h_s)))
    shift = 15 + power - 3  # the cell state to tanh's Q3.12 input: 3 << shift, or x 3 >> -shift
    tanh_m, tanh_s = (0, shift) if shift >= 0 else (3, -shift)
    clip = float(np.float32(o.get("cell_clip", 0.0)))
    q_clip = int(min(max(clip / cell_s, -32768.0), 32767.0))  # truncated, as tflite-micro's cast
    n_state = batches * n_cell
    decls += [
        # both states start as after a reset (tflite-micro resets variables when it allocates them)
        f"static int8_t {name}_hidden[{n_state}] = {{ [0 ... {n_state - 1}] = {h_zp} }};",
        f"static int16_t {name}_cell[{n_state}];",
        f"static int16_t {name}_scratch[{4 * n_cell}];",
        f"static const aiot_lstm_params_t {name}_p = {{ {batches}, {steps}, {n_in}, {n_cell}, {int(time_major)}, "
        f"{int(clip > 0)}, {q_clip}, {in_zp}, {h_zp}, {{ {', '.join(gates)} }}, {mf}, {sf}, {mc}, {sc}, {mh}, {sh}, "
        f"{tanh_m}, {tanh_s} }};",
    ]
    reset = [f"for (uint32_t i = 0; i < {n_state}u; i++) {{ {name}_hidden[i] = {h_zp}; {name}_cell[i] = 0; }}"]
    state = f"{ctx.p(x.index)}, {name}_hidden, {name}_cell, {name}_scratch, {ctx.p(out.index)}"
    if wide:
        decls.append(f"static const aiot_lstm_wide_gate_t {name}_wide[4] = {{ {', '.join(wide)} }};")
        call = f"aiot_lstm_s8_wide(&{name}_p, {name}_wide, {state})"
    else:
        call = f"aiot_lstm_s8(&{name}_p, {state})"
    return Layer(op.op, op.index, call, decls, macs=batches * steps * 4 * n_cell * (n_in + n_cell),
                 weights_bytes=weights_bytes, reset=reset)


def _same_qparams(g: Graph, op: Operator, a: Tensor, b: Tensor) -> None:
    if _qp(a)[1] != _qp(b)[1] or np.float32(_qp(a)[0]) != np.float32(_qp(b)[0]):
        raise _fail(g, op, "input and output quantization differ", "TFLite Micro requires equal scales here; re-export the model")


def pool_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_pool_params_t's fields in order) of a pooling layer."""
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    in_h, in_w, c = _nhwc(g, op, x)
    out_h, out_w, out_c = _nhwc(g, op, out)
    _same_qparams(g, op, x, out)
    o = op.options
    k_h, k_w, sh, sw = o["filter_h"], o["filter_w"], o["stride_h"], o["stride_w"]
    if min(k_h, k_w, sh, sw) < 1 or out_c != c:
        raise _fail(g, op, "invalid pool window or stride", "re-export the model")
    out_s, out_zp = _qp(out)
    lo, hi = activation_range(o.get("activation", "NONE"), out_s, out_zp, out.dtype)
    pad_t = _padding(o["padding"], in_h, k_h, sh, 1, out_h)
    pad_l = _padding(o["padding"], in_w, k_w, sw, 1, out_w)
    return x, out, [int(v) for v in (in_h, in_w, c, out_h, out_w, k_h, k_w, sh, sw, pad_t, pad_l, lo, hi)]


def _pool(ctx: Ctx, op: Operator, name: str, fn: str) -> Layer:
    x, out, f = pool_params(ctx, op)
    decls = [f"static const aiot_pool_params_t {name}_p = {{ {', '.join(map(str, f))} }};"]
    call = f"{fn}{_sfx(out)}(&{name}_p, {_cast(ctx, x)}, {_cast(ctx, out)})"
    out_h, out_w, c, k_h, k_w = f[3], f[4], f[2], f[5], f[6]
    return Layer(op.op, op.index, call, decls, macs=out_h * out_w * c * k_h * k_w)


def emit_avg_pool(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _pool(ctx, op, name, "aiot_avg_pool")


def emit_max_pool(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _pool(ctx, op, name, "aiot_max_pool")


def requantize_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_requantize_params_t's fields in order) of an int8 -> int8
    QUANTIZE or a RELU (or their 16x8 forms: int16 on either side)."""
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if op.op == "RELU":
        in_s, _ = _qp(x)
        out_s, out_zp = _qp(out)
        m, s = quantize_multiplier(float(in_s) / float(out_s))
        lo, hi = activation_range("RELU", out_s, out_zp, out.dtype)  # int8, or int16 in the 16x8 mode
    else:
        # int8 -> int8, or (16x8 mode) TFLM's Requantize between int16 and int8/int16
        if out.dtype not in ("int8", "int16"):
            raise _fail(g, op, f"output is {out.dtype}", "only int8 (or, 16x8, int16) outputs are supported")
        _same_size(g, op, x, out)
        if x.dtype not in ("int8", "int16"):
            raise _fail(g, op, f"input is {x.dtype}", "only int8 (or, 16x8, int16) requantization is supported")
        in_s, _ = _qp(x)
        m, s = quantize_multiplier(float(in_s) / float(_qp(out)[0]))
        lo, hi = activation_range("NONE", *_qp(out), out.dtype)
    _same_size(g, op, x, out)
    in_zp, out_zp = _qp(x)[1], _qp(out)[1]
    return x, out, [int(v) for v in (out.size, in_zp, m, s, out_zp, lo, hi)]


def _requantize_layer(ctx: Ctx, op: Operator, name: str) -> Layer:
    x, out, f = requantize_params(ctx, op)
    decls = [f"static const aiot_requantize_params_t {name}_p = {{ {', '.join(map(str, f))} }};"]
    if "int16" in (x.dtype, out.dtype):  # the 16x8 mode: int16 in, out or both
        call = (f"aiot_requantize_x16(&{name}_p, {int(x.dtype == 'int16')}, {ctx.p(x.index)}, "
                f"{int(out.dtype == 'int16')}, {ctx.p(out.index)})")
    else:
        call = f"aiot_requantize_s8(&{name}_p, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def emit_quantize(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if out.dtype not in ("int8", "int16"):
        raise _fail(g, op, f"output is {out.dtype}", "only int8 (or, 16x8, int16) outputs are supported")
    out_s, out_zp = _qp(out)
    _same_size(g, op, x, out)
    if x.dtype == "float32":  # the float input of an int8 (or, 16x8, int16) model
        decls: list[str] = []
        call = (f"aiot_quantize_f32{_sfx(out)}({out.size}, {_c_float(out_s)}, {out_zp}, (const float *){ctx.p(x.index)}, "
                f"{_cast(ctx, out)})")
        return Layer(op.op, op.index, call, decls, macs=out.size)
    return _requantize_layer(ctx, op, name)


def emit_dequantize(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    if x.dtype not in ("int8", "int16") or out.dtype != "float32":
        raise _fail(g, op, f"{x.dtype} -> {out.dtype}", "only int8 (or, 16x8, int16) -> float32 is supported")
    _same_size(g, op, x, out)
    s, zp = _qp(x)
    call = (f"aiot_dequantize{_sfx(x)}_f32({x.size}, {_c_float(s)}, {zp}, {_cast(ctx, x)}, "
            f"(float *){ctx.p(out.index)})")
    return Layer(op.op, op.index, call, [], macs=x.size)


def emit_relu(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _requantize_layer(ctx, op, name)


def leaky_relu_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_leaky_relu_params_t's fields in order)."""
    # TFLM's Prepare computes both ratios in float (scale * alpha / scale) before widening.
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    _same_size(ctx.g, op, x, out)
    (in_s, in_zp), (out_s, out_zp) = _qp(x), _qp(out)
    alpha = np.float32(op.options.get("alpha", 0.0))
    am, ash = quantize_multiplier(float(np.float32(np.float32(in_s) * alpha) / np.float32(out_s)))
    im, ish = quantize_multiplier(float(np.float32(in_s) / np.float32(out_s)))
    return x, out, [int(v) for v in (out.size, in_zp, out_zp, im, ish, am, ash)]


def emit_leaky_relu(ctx: Ctx, op: Operator, name: str) -> Layer:
    x, out, f = leaky_relu_params(ctx, op)
    decls = [f"static const aiot_leaky_relu_params_t {name}_p = {{ {', '.join(map(str, f))} }};"]
    call = f"aiot_leaky_relu{_sfx(out)}(&{name}_p, {_cast(ctx, x)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def relu6_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_clamp_s8's size, lo, hi)."""
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    _same_size(ctx.g, op, x, out)
    in_s, in_zp = _qp(x)
    six = round_half_away(float(np.float32(6.0) / np.float32(in_s))) + in_zp
    lo, hi = activation_range("NONE", in_s, in_zp, out.dtype)  # the type's range: int8, or int16 (16x8)
    six = max(lo, min(hi, six))
    return x, out, [int(out.size), int(in_zp), int(six)]


def emit_relu6(ctx: Ctx, op: Operator, name: str) -> Layer:
    x, out, (size, lo, hi) = relu6_params(ctx, op)
    call = f"aiot_clamp{_sfx(out)}({size}, {lo}, {hi}, {_cast(ctx, x)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, [], macs=out.size)


def _axis_list(g: Graph, op: Operator, idx: int, rank: int) -> list[int]:
    t = g.tensor(idx)
    if t is None or not t.is_const:
        raise _fail(g, op, "axes must be a constant tensor", "re-export the model")
    axes = sorted({int(a) % rank for a in np.asarray(t.data).ravel()}) if rank else []
    return axes


def mean_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_mean_params_t's fields in order)."""
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    shape = list(x.shape)
    axes = _axis_list(g, op, op.inputs[1], len(shape))
    if not axes or axes != list(range(axes[0], axes[-1] + 1)):
        raise _fail(g, op, f"MEAN over axes {axes} of {shape} (only one contiguous block of axes is supported)",
                    "average over adjacent axes, e.g. GlobalAveragePooling over (H, W)")
    outer = int(np.prod(shape[: axes[0]], dtype=np.int64))
    reduce = int(np.prod(shape[axes[0] : axes[-1] + 1], dtype=np.int64))
    inner = int(np.prod(shape[axes[-1] + 1 :], dtype=np.int64))
    if outer * inner != out.size or reduce <= 0:
        raise _fail(g, op, f"output shape {list(out.shape)} does not match MEAN over {axes} of {shape}",
                    "re-export the model")
    in_s, in_zp = _qp(x)
    out_s, out_zp = _qp(out)
    mult, shift = quantize_multiplier(float(in_s) / float(out_s))
    # TFLM folds 1/reduce into the multiplier with an integer division (QuantizedMeanOrSum).
    k = min(reduce.bit_length() - 1, 32, 31 + shift)
    mult = int((mult << k) // reduce) if k >= 0 else int((mult >> -k) // reduce)
    shift -= k
    return x, out, [int(v) for v in (outer, reduce, inner, in_zp, out_zp, mult, shift)]


def emit_mean(ctx: Ctx, op: Operator, name: str) -> Layer:
    x, out, f = mean_params(ctx, op)
    decls = [f"static const aiot_mean_params_t {name}_p = {{ {', '.join(map(str, f))} }};"]
    call = f"aiot_mean{_sfx(out)}(&{name}_p, {_cast(ctx, x)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, decls, macs=x.size)


def _paddings(g, op: Operator, x) -> tuple[np.ndarray, int, list[int], list[int], list[int]]:
    """PAD/PADV2/MIRROR_PAD's constant paddings: ``(pads, rank, dims, before, after)``, the
    last three as 4-D lists (before/after empty when the paddings do not match the rank)."""
    pads = g.tensor(op.inputs[1])
    if pads is None or not pads.is_const:
        raise _fail(g, op, "paddings must be a constant tensor", "re-export the model")
    pads = np.asarray(pads.data).reshape(-1, 2).astype(np.int64)
    rank = len(x.shape)
    dims = [1] * (4 - rank) + list(x.shape)
    if len(pads) != rank:
        return pads, rank, dims, [], []
    return (pads, rank, dims, [0] * (4 - rank) + [int(p) for p in pads[:, 0]],
            [0] * (4 - rank) + [int(p) for p in pads[:, 1]])


def _check_padded_size(g, op: Operator, out, dims: list[int], before: list[int], after: list[int]) -> None:
    if out.size != int(np.prod([b + d + a for b, d, a in zip(before, dims, after)], dtype=np.int64)):
        raise _fail(g, op, f"output shape {list(out.shape)} does not match the padding", "re-export the model")


def emit_pad(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    pads, rank, dims, before, after = _paddings(g, op, x)
    if rank > 4 or len(pads) != rank or np.any(pads < 0):
        raise _fail(g, op, f"padding {pads.tolist()} of a rank-{rank} tensor", "pad at most 4-D tensors by >= 0")
    _same_qparams(g, op, x, out)
    _check_padded_size(g, op, out, dims, before, after)
    pad_value = _qp(out)[1]
    if op.op == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        # TFLM pads with the given constant, which must share the input's quantization
        cv = g.tensor(op.inputs[2])
        if cv is None or not cv.is_const or cv.dtype != x.dtype or cv.size != 1:
            raise _fail(g, op, f"constant_values must be one constant {x.dtype} value", "re-export the model")
        if cv.quantized and _qp(cv) != _qp(x):
            raise _fail(g, op, "constant_values is quantized differently from the input",
                        "TFLite Micro requires the same scale and zero point; re-export the model")
        pad_value = int(np.asarray(cv.data).ravel()[0])
    if x.dtype == "int16":  # the 16x8 mode: bytes, the last axis twice as long; 0 pads as two zero bytes
        if pad_value != 0:
            raise _fail(g, op, f"an int16 pad value of {pad_value}", "pad int16 tensors with their zero point 0")
        dims[3], before[3], after[3] = 2 * dims[3], 2 * before[3], 2 * after[3]
    decls = [f"static const aiot_pad_params_t {name}_p = {{ {{ {', '.join(map(str, dims))} }}, "
             f"{{ {', '.join(map(str, before))} }}, {{ {', '.join(map(str, after))} }}, {pad_value} }};"]
    call = f"aiot_pad_s8(&{name}_p, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def emit_mirror_pad(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    pads, rank, dims, before, after = _paddings(g, op, x)
    mode = int(op.options.get("mode", 0))
    offset = {0: 1, 1: 0}.get(mode)  # REFLECT skips the edge element, SYMMETRIC repeats it
    if offset is None:
        raise _fail(g, op, f"unknown mirror mode {mode}", "use REFLECT or SYMMETRIC")
    if rank > 4 or len(pads) != rank or np.any(pads < 0) or any(
            b + offset > d or a + offset > d for b, a, d in zip(before, after, dims)):
        raise _fail(g, op, f"mirror padding {pads.tolist()} ({'REFLECT' if offset else 'SYMMETRIC'}) of "
                    f"{list(x.shape)}", "pad at most 4-D tensors, by less than each axis's size")
    _same_qparams(g, op, x, out)
    _check_padded_size(g, op, out, dims, before, after)
    j = lambda v: "{ " + ", ".join(map(str, v)) + " }"  # noqa: E731
    decls = [f"static const aiot_mirror_pad_params_t {name}_p = {{ {j(dims)}, {j(before)}, {j(after)}, {offset} }};"]
    call = f"aiot_mirror_pad_s8(&{name}_p, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def emit_transpose(ctx: Ctx, op: Operator, name: str) -> Layer:
    # A walk over the output whose input offset uses the input's strides in the permuted
    # order: the broadcast walk with one operand does exactly that.
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    perm_t = g.tensor(op.inputs[1])
    if perm_t is None or not perm_t.is_const:
        raise _fail(g, op, "the permutation must be a constant tensor", "re-export the model")
    perm = [int(v) for v in np.asarray(perm_t.data).ravel()]
    rank = len(x.shape)
    # an int16 tensor (16x8 mode) moves as its bytes: one more, innermost axis of 2 that stays last
    wide = x.dtype == "int16"
    if rank > 5 - wide or sorted(perm) != list(range(rank)):
        raise _fail(g, op, f"permutation {perm} of a rank-{rank} {x.dtype} tensor",
                    f"transpose at most {5 - wide}-D {x.dtype} tensors")
    if list(out.shape) != [x.shape[k] for k in perm] or x.dtype not in ("int8", "int16") or out.dtype != x.dtype:
        raise _fail(g, op, f"output {out.dtype}{list(out.shape)} is not {list(x.shape)} permuted by {perm}",
                    "re-export the model")
    _same_qparams(g, op, x, out)
    in_shape, out_shape = list(x.shape) + [2] * wide, list(out.shape) + [2] * wide
    perm = perm + [rank] * wide
    in_strides, acc = [0] * len(in_shape), 1
    for k in range(len(in_shape) - 1, -1, -1):
        in_strides[k] = acc
        acc *= in_shape[k]
    pad = 5 - len(in_shape)
    od = [1] * pad + out_shape
    st = [0] * pad + [in_strides[k] for k in perm]
    j = lambda v: "{ " + ", ".join(map(str, v)) + " }"  # noqa: E731
    decls = [f"static const aiot_bcast_t {name}_p = {{ {j(od)}, {j(st)}, {j([0] * 5)}, 1, {out.size * (1 + wide)} }};"]
    call = f"aiot_transpose_s8(&{name}_p, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def _tflm_slice_axis(size: int, begin: int, end: int, stride: int, begin_mask: bool, end_mask: bool,
                     shrink: bool) -> range:
    """The input indices tflite-micro's StridedSlice walks on one axis (its StartForAxis /
    EndForAxis and loop condition): negative indices count from the end, then clamp, then
    the masks; a shrunk axis is [start, start + 1), which a backward stride walks empty."""
    start = begin + size if begin < 0 else begin
    start = min(max(start, 0), size) if stride > 0 else min(max(start, -1), size - 1)
    if begin_mask:
        start = 0 if stride > 0 else size - 1
    if shrink:
        return range(start, start if start >= size else start + 1, stride)
    stop = end + size if end < 0 else end
    stop = min(max(stop, 0), size) if stride > 0 else min(max(stop, -1), size - 1)
    if end_mask:
        stop = size if stride > 0 else -1
    return range(start, stop, stride)


def emit_strided_slice(ctx: Ctx, op: Operator, name: str) -> Layer:
    # tflite-micro's slice (masks, clamping) is applied here, at generation time, to an
    # array of input offsets; the result must be an affine walk (it is, for any strides),
    # which the kernel then runs: no index arithmetic on the device. Like tflite-micro
    # (BuildStridedSliceParams) it reads one begin/end/stride per input axis and takes
    # ellipsis_mask, new_axis_mask and offset as 0; its output-shape check decides what
    # it accepts, and so what is compiled.
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    consts = [g.tensor(i) for i in op.inputs[1:4]]
    if len(consts) != 3 or any(t is None or not t.is_const for t in consts):
        raise _fail(g, op, "begin, end and strides must be constant tensors", "re-export the model")
    begin, end, strides = ([int(v) for v in np.asarray(t.data).ravel()] for t in consts)
    o = op.options
    rank = len(x.shape)
    if rank > 4 or min(len(begin), len(end), len(strides)) < rank or any(v == 0 for v in strides[:rank]):
        raise _fail(g, op, f"begin {begin} / end {end} / strides {strides} for a rank-{rank} tensor",
                    "tflite-micro slices tensors of at most 4 dimensions and reads one non-zero stride and one "
                    "begin and end per axis: re-export the model (the TFLite converter writes them so)")
    shrink = [bool((o.get("shrink_axis_mask", 0) >> k) & 1) for k in range(rank)]
    walks = [_tflm_slice_axis(int(x.shape[k]), begin[k], end[k], strides[k], bool((o.get("begin_mask", 0) >> k) & 1),
                              bool((o.get("end_mask", 0) >> k) & 1), shrink[k]) for k in range(rank)]
    kept = [len(w) for w, s in zip(walks, shrink) if not s]
    if any(len(w) == 0 for w in walks) or kept != [int(d) for d in out.shape]:
        what = ("walks no element on some axis (tflite-micro would leave the output unwritten: a shrunk axis with "
                "a backward stride, or a begin past the end)" if any(len(w) == 0 for w in walks) else
                f"gives shape {kept} as tflite-micro reads it (ellipsis and new-axis masks taken as 0), but output "
                f"'{out.name}' has {list(out.shape)}")
        raise _fail(g, op, f"the slice begin {begin[:rank]} / end {end[:rank]} / strides {strides[:rank]} of "
                    f"{list(x.shape)} {what}", "tflite-micro refuses or mis-runs this slice too; re-export the model "
                    "with TFLiteConverter, which writes slices with one explicit begin/end per axis")
    in_strides = np.cumprod([1, *[int(d) for d in x.shape[::-1]]])[:rank][::-1]
    offsets = sum(np.asarray(w, dtype=np.int64).reshape([-1 if a == k else 1 for a in range(rank)]) * int(st)
                  for k, (w, st) in enumerate(zip(walks, in_strides)))
    offsets = np.asarray(offsets, dtype=np.int64).reshape(kept if kept else (1,))
    if offsets.size != out.size or offsets.size == 0 or offsets.ndim > 5:
        raise _fail(g, op, f"the slice has {offsets.size} values but output '{out.name}' has {out.size}",
                    "re-export the model")
    if x.dtype == "int16":  # the 16x8 mode: the walk moves bytes, two per element
        offsets = offsets[..., None] * 2 + np.arange(2)
        if offsets.ndim > 5:
            raise _fail(g, op, f"a {offsets.ndim - 1}-D slice of an int16 tensor", "slice at most 4-D int16 tensors")
    _same_qparams(g, op, x, out)
    dims = list(offsets.shape)
    steps = [int(np.diff(offsets, axis=k).flat[0]) if dims[k] > 1 else 0 for k in range(len(dims))]
    base = int(offsets.flat[0])
    grid = base + sum(np.arange(d).reshape([-1 if a == k else 1 for a in range(len(dims))]) * st
                      for k, (d, st) in enumerate(zip(dims, steps)))
    if not np.array_equal(grid, offsets):
        raise _fail(g, op, "the slice is not a regular walk of the input", "re-export the model")
    pad = 5 - len(dims)
    j = lambda v: "{ " + ", ".join(f"{v_ % 2**32}u" if v_ < 0 else str(v_) for v_ in v) + " }"  # noqa: E731
    decls = [f"static const aiot_bcast_t {name}_p = {{ {j([1] * pad + dims)}, {j([0] * pad + steps)}, "
             f"{j([0] * 5)}, 1, {offsets.size} }};"]
    if min(steps) >= 0:
        call = f"aiot_transpose_s8(&{name}_p, {ctx.p(x.index)} + {base}, {ctx.p(out.index)})"
    else:  # a backward step: the walk starts from the input's beginning, steps modulo 2^32
        call = f"aiot_strided_slice_s8(&{name}_p, {base}u, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def emit_concat(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    out = ctx.t(op.outputs[0])
    ins = [ctx.t(i) for i in op.inputs]
    rank = len(out.shape)
    axis = op.options.get("axis", 0) % max(rank, 1)
    if op.options.get("activation", "NONE") != "NONE":
        raise _fail(g, op, "fused activation on CONCATENATION", "apply the activation before concatenating")
    for t in ins:
        _same_qparams(g, op, t, out)
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    sizes = [t.size // max(outer, 1) for t in ins]
    if outer <= 0 or sum(sizes) * outer != out.size or any(t.size % outer for t in ins):
        raise _fail(g, op, f"inputs {[list(t.shape) for t in ins]} do not concatenate to {list(out.shape)}",
                    "re-export the model")
    ptrs = ", ".join(ctx.p(t.index) for t in ins)
    item = 2 if out.dtype == "int16" else 1  # the kernel copies bytes
    decls = [f"static const uint32_t {name}_sizes[{len(ins)}] = {{ {', '.join(str(item * n) for n in sizes)} }};"]
    call = (f"aiot_concat_s8({outer}, {len(ins)}, (const int8_t *const[]){{ {ptrs} }}, {name}_sizes, "
            f"{ctx.p(out.index)})")
    return Layer(op.op, op.index, call, decls, macs=out.size)


def bcast_fields(g: Graph, op: Operator, a: Tensor, b: Tensor, out: Tensor) -> list[int]:
    """aiot_bcast_t's fields in order: out dims, in1 strides, in2 strides (5 each), broadcast, size."""
    rank = 5
    if max(len(a.shape), len(b.shape), len(out.shape)) > rank:
        raise _fail(g, op, "more than 5 dimensions", "reshape to at most 5-D")
    od = [1] * (rank - len(out.shape)) + list(out.shape)

    def strides(t: Tensor) -> list[int]:
        d = [1] * (rank - len(t.shape)) + list(t.shape)
        st, acc = [0] * rank, 1
        for k in range(rank - 1, -1, -1):
            if d[k] != od[k] and d[k] != 1:
                raise _fail(g, op, f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast to {list(out.shape)}",
                            "re-export the model")
            st[k] = 0 if (d[k] == 1 and od[k] != 1) else acc
            acc *= d[k]
        return st

    sa, sb = strides(a), strides(b)
    bc = 0 if (list(a.shape) == list(out.shape) and list(b.shape) == list(out.shape)) else 1
    return [int(v) for v in (*od, *sa, *sb, bc, out.size)]


def _bcast(g: Graph, op: Operator, a: Tensor, b: Tensor, out: Tensor) -> str:
    f = bcast_fields(g, op, a, b, out)
    j = lambda v: "{ " + ", ".join(map(str, v)) + " }"  # noqa: E731
    return f"{{ {j(f[0:5])}, {j(f[5:10])}, {j(f[10:15])}, {f[15]}, {f[16]} }}"


def _binary_operands(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, Tensor]:
    a, b, out = ctx.t(op.inputs[0]), ctx.t(op.inputs[1]), ctx.t(op.outputs[0])
    want = "int16" if out.dtype == "int16" else "int8"
    for t in (a, b):
        if t.dtype != want or not t.quantized:
            raise _fail(ctx.g, op, f"operand '{t.name}' is {t.dtype}, the output {out.dtype}",
                        f"both operands must be {want}, like the output")
    return a, b, out


def _sfx(t: Tensor) -> str:
    """The kernel suffix for a tensor's element type: _s16 in the 16x8 mode, else _s8."""
    return "_s16" if t.dtype == "int16" else "_s8"


def _cast(ctx: Ctx, t: Tensor) -> str:
    """A tensor's pointer as its element type (the arena is int8_t; int16 tensors are read as such)."""
    return f"(int16_t *){ctx.p(t.index)}" if t.dtype == "int16" else ctx.p(t.index)


def add_params(ctx: Ctx, op: Operator, subtract: bool) -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """(a, b, output, aiot_add_params_t's fields after its broadcast shape, in order)."""
    a, b, out = _binary_operands(ctx, op)
    (sa, za), (sb, zb), (so, zo) = _qp(a), _qp(b), _qp(out)
    left_shift = 15 if out.dtype == "int16" else 20  # TFLM's, per output type
    twice_max = 2.0 * float(max(np.float32(sa), np.float32(sb)))
    m1, s1 = quantize_multiplier(float(sa) / twice_max)
    m2, s2 = quantize_multiplier(float(sb) / twice_max)
    mo, so_ = quantize_multiplier(twice_max / ((1 << left_shift) * float(so)))
    lo, hi = activation_range(op.options.get("activation", "NONE"), so, zo, out.dtype)
    f = [-za, -zb, left_shift, m1, s1, m2, s2, mo, so_, zo, lo, hi, 1 if subtract else 0]
    return a, b, out, [int(v) for v in f]


def _add_sub(ctx: Ctx, op: Operator, name: str, subtract: bool) -> Layer:
    g = ctx.g
    a, b, out, f = add_params(ctx, op, subtract)
    decls = [f"static const aiot_add_params_t {name}_p = {{ {_bcast(g, op, a, b, out)}, {', '.join(map(str, f))} }};"]
    call = f"aiot_add{_sfx(out)}(&{name}_p, {_cast(ctx, a)}, {_cast(ctx, b)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def emit_add(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _add_sub(ctx, op, name, subtract=False)


def emit_sub(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _add_sub(ctx, op, name, subtract=True)


def mul_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """(a, b, output, aiot_mul_params_t's fields after its broadcast shape, in order)."""
    a, b, out = _binary_operands(ctx, op)
    (sa, za), (sb, zb), (so, zo) = _qp(a), _qp(b), _qp(out)
    m, s = quantize_multiplier(float(sa) * float(sb) / float(so))
    lo, hi = activation_range(op.options.get("activation", "NONE"), so, zo, out.dtype)
    return a, b, out, [int(v) for v in (-za, -zb, m, s, zo, lo, hi)]


def emit_mul(ctx: Ctx, op: Operator, name: str) -> Layer:
    g = ctx.g
    a, b, out, f = mul_params(ctx, op)
    decls = [f"static const aiot_mul_params_t {name}_p = {{ {_bcast(g, op, a, b, out)}, {', '.join(map(str, f))} }};"]
    call = f"aiot_mul{_sfx(out)}(&{name}_p, {_cast(ctx, a)}, {_cast(ctx, b)}, {_cast(ctx, out)})"
    return Layer(op.op, op.index, call, decls, macs=out.size)


def min_max_operands(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, Tensor]:
    # TFLM compares the raw int8 values: the converter gives both inputs the output's
    # quantization (otherwise the comparison would mean nothing), so insist on it.
    a, b, out = _binary_operands(ctx, op)
    _same_qparams(ctx.g, op, a, out)
    _same_qparams(ctx.g, op, b, out)
    return a, b, out


def _min_max(ctx: Ctx, op: Operator, name: str, is_max: bool) -> Layer:
    g = ctx.g
    a, b, out = min_max_operands(ctx, op)
    decls = [f"static const aiot_bcast_t {name}_p = {_bcast(g, op, a, b, out)};"]
    call = (f"aiot_min_max{_sfx(out)}(&{name}_p, {1 if is_max else 0}, {_cast(ctx, a)}, {_cast(ctx, b)}, "
            f"{_cast(ctx, out)})")
    return Layer(op.op, op.index, call, decls, macs=out.size)


def emit_maximum(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _min_max(ctx, op, name, is_max=True)


def emit_minimum(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _min_max(ctx, op, name, is_max=False)


def _frexp_multiplier(real: float) -> tuple[int, int]:
    """TFLM's inline frexp + round (no 2**31 correction; the C++ cast wraps it)."""
    import math

    q, shift = math.frexp(real)
    m = round_half_away(q * (1 << 31))
    if m >= 1 << 31:
        m -= 1 << 32
    return m, shift


def _input_radius(integer_bits: int, left_shift: int, total_bits: int = 31) -> int:
    import math

    return int(math.floor(((1 << integer_bits) - 1) * float(1 << (total_bits - integer_bits)) / float(1 << left_shift)))


#: the fixed output quantization TFLM requires of LOGISTIC and TANH
SIGMOID_OUTPUT = {"LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}


def sigmoid_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_sigmoid_params_t's fields in order) of a LOGISTIC or TANH."""
    g = ctx.g
    out_scale, out_zp = SIGMOID_OUTPUT[op.op]
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    _same_size(g, op, x, out)
    (in_s, in_zp), (o_s, o_zp) = _qp(x), _qp(out)
    if o_zp != out_zp or np.float32(o_s) != np.float32(out_scale):
        raise _fail(g, op, f"output quantization ({o_s}, {o_zp}) is not the fixed ({out_scale}, {out_zp}) TFLM requires",
                    "re-export with the standard int8 converter")
    mult, shift = _frexp_multiplier(float(in_s) * float(1 << 27))
    radius = _input_radius(4, shift)
    return x, out, [int(v) for v in (x.size, in_zp, radius, mult, shift)]


def _sigmoid_like(ctx: Ctx, op: Operator, name: str, fn: str) -> Layer:
    x, out, f = sigmoid_params(ctx, op)
    decls = [f"static const aiot_sigmoid_params_t {name}_p = {{ {', '.join(map(str, f))} }};"]
    call = f"{fn}(&{name}_p, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=x.size)


def emit_logistic(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _sigmoid_like(ctx, op, name, "aiot_logistic_s8")


def emit_tanh(ctx: Ctx, op: Operator, name: str) -> Layer:
    return _sigmoid_like(ctx, op, name, "aiot_tanh_s8")


def softmax_params(ctx: Ctx, op: Operator) -> tuple[Tensor, Tensor, list[int]]:
    """(input, output, aiot_softmax_params_t's fields in order)."""
    g = ctx.g
    x, out = ctx.t(op.inputs[0]), ctx.t(op.outputs[0])
    _same_size(g, op, x, out)
    (in_s, _), (o_s, o_zp) = _qp(x), _qp(out)
    if o_zp != -128 or np.float32(o_s) != np.float32(1.0 / 256):
        raise _fail(g, op, "softmax output must be quantized with scale 1/256 and zero point -128",
                    "re-export with the standard int8 converter")
    beta = float(np.float32(op.options.get("beta", 1.0)))
    diff_bits = 5
    real = min(beta * float(in_s) * float(1 << (31 - diff_bits)), float((1 << 31) - 1))
    mult, shift = quantize_multiplier(real)
    diff_min = -_input_radius(diff_bits, shift)
    depth = x.shape[-1] if x.shape else 1
    return x, out, [int(v) for v in (x.size // depth, depth, mult, shift, diff_min)]


def emit_softmax(ctx: Ctx, op: Operator, name: str) -> Layer:
    x, out, f = softmax_params(ctx, op)
    decls = [f"static const aiot_softmax_params_t {name}_p = {{ {', '.join(map(str, f))} }};"]
    call = f"aiot_softmax_s8(&{name}_p, {ctx.p(x.index)}, {ctx.p(out.index)})"
    return Layer(op.op, op.index, call, decls, macs=x.size)


EMITTERS: dict[str, Callable[[Ctx, Operator, str], Layer]] = {
    "FULLY_CONNECTED": emit_fully_connected,
    "CONV_2D": emit_conv2d,
    "DEPTHWISE_CONV_2D": emit_depthwise,
    "TRANSPOSE_CONV": emit_transpose_conv,
    "AVERAGE_POOL_2D": emit_avg_pool,
    "MAX_POOL_2D": emit_max_pool,
    "QUANTIZE": emit_quantize,
    "DEQUANTIZE": emit_dequantize,
    "RELU": emit_relu,
    "RELU6": emit_relu6,
    "MEAN": emit_mean,
    "PAD": emit_pad,
    "PADV2": emit_pad,
    "MIRROR_PAD": emit_mirror_pad,
    "LEAKY_RELU": emit_leaky_relu,
    "TRANSPOSE": emit_transpose,
    "STRIDED_SLICE": emit_strided_slice,
    "CONCATENATION": emit_concat,
    "ADD": emit_add,
    "SUB": emit_sub,
    "MUL": emit_mul,
    "MAXIMUM": emit_maximum,
    "MINIMUM": emit_minimum,
    "LOGISTIC": emit_logistic,
    "TANH": emit_tanh,
    "SOFTMAX": emit_softmax,
    "SVDF": emit_svdf,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": emit_lstm,
}
