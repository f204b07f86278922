"""The model as data (the PLAN section of a model package): the layers the generated C
would call, serialized so the firmware can walk them (firmware/src/update/plan.c) with
the same kernels and the same numbers. The code generator's own preparation functions
(aiot.codegen.ops: fully_connected_layer, conv_layer, requant_form, pool_params,
add_params, mul_params, min_max_operands, bcast_fields, softmax_params, mean_params,
requantize_params, relu6_params, sigmoid_params, leaky_relu_params) compute every
parameter for both paths.

Layout (little-endian), docs/lifecycle.md "The plan format". Header ``magic "PLN1" u32,
version u16, layers u16, arena u32, input offset u32, output offset u32, input bytes u32,
output bytes u32, input scale f32, input zero point i32, output scale f32, output zero
point i32`` (44 bytes).

Version 2 (written now): per layer a record ``kind u16, record bytes u16, input offset
u32, second input offset u32, output offset u32`` (arena offsets) then the kind's
parameters, one 32-bit word each (KIND_WORDS); then the weight, bias and requantization
arrays, each 4-byte aligned, their offsets (from the plan start) in the parameters.

Version 1 (still loaded by the firmware): FULLY_CONNECTED only, fixed 48-byte records
``op u16 (1), rq kind u16, batches u16, in u16, out u16, per_channel u16, input offset u32,
output offset u32, weights u32, bias u32, rq u32, shift u32, output zero point i32,
act min i32, act max i32``."""

from __future__ import annotations

import struct

import numpy as np

from aiot.errors import ToolkitError

MAGIC = 0x314E4C50
VERSION = 2
HEADER = struct.Struct("<IHHIIIIIfifi")
LAYER = struct.Struct("<HHHHHHIIIIIIiii")  # version 1 records
RECORD = struct.Struct("<HHIII")           # version 2 record head
OP_FC_WIDE = 1

#: version 2 layer kinds (firmware/include/aiot/update.h AIOT_PLAN_*) and their parameter words
(KIND_FC, KIND_CONV, KIND_DEPTHWISE, KIND_AVG_POOL, KIND_MAX_POOL, KIND_ADD, KIND_SOFTMAX, KIND_MEAN, KIND_MUL,
 KIND_REQUANTIZE, KIND_CLAMP, KIND_LOGISTIC, KIND_TANH, KIND_LEAKY_RELU, KIND_MIN_MAX) = range(1, 16)
RQ_WORDS = 7  # fast, per_channel, output zero point, act min, act max, table, shift table
KIND_WORDS = {KIND_FC: 5 + RQ_WORDS, KIND_CONV: 16 + 5 + RQ_WORDS, KIND_DEPTHWISE: 16 + 5 + RQ_WORDS,
              KIND_AVG_POOL: 13, KIND_MAX_POOL: 13, KIND_ADD: 17 + 13, KIND_SOFTMAX: 5, KIND_MEAN: 7,
              KIND_MUL: 17 + 7, KIND_REQUANTIZE: 7, KIND_CLAMP: 3, KIND_LOGISTIC: 5, KIND_TANH: 5,
              KIND_LEAKY_RELU: 7, KIND_MIN_MAX: 17 + 1}
#: ops the plan runs (ALIAS_OPS cost nothing: the memory plan gives them their input's bytes)
PLAN_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "SUB",
            "SOFTMAX", "MEAN", "MUL", "QUANTIZE", "RELU", "RELU6", "LOGISTIC", "TANH", "LEAKY_RELU", "MAXIMUM",
            "MINIMUM")


def plan_arena(plan: bytes) -> int:
    """The arena bytes a plan needs (its header's arena field)."""
    fields = HEADER.unpack_from(plan)
    if fields[0] != MAGIC:
        raise ToolkitError("not a model-as-data plan (no PLN1 magic)", hint="make it with aiot release")
    return int(fields[3])


def plan_layers(plan: bytes) -> int:
    """The layer records a plan has (its header's layers field)."""
    plan_arena(plan)
    return int(HEADER.unpack_from(plan)[2])


def plan_kinds(plan: bytes) -> set[int]:
    """The layer kinds a plan uses (version 1: FULLY_CONNECTED only)."""
    plan_arena(plan)  # a plan at all
    head = HEADER.unpack_from(plan)
    if head[1] == 1:
        return {KIND_FC}
    kinds, pos = set(), HEADER.size
    for _ in range(head[2]):
        kind, size = struct.unpack_from("<HH", plan, pos)
        kinds.add(kind)
        pos += size
    return kinds


def check_fits(plan: bytes, name: str, *, arena: int, layers: int, dense_only: bool, where: str) -> None:
    """Refuse release ``name``'s plan (ToolkitError naming the build option that fits) when
    the firmware described by ``where`` (its arena bytes, layer slots, dense-only build)
    would not load it."""
    need, n = plan_arena(plan), plan_layers(plan)
    fix = f"build the firmware with room for it (aiot build --update-key KEY --plan-arena {max(need, arena)}"
    fix += f" --plan-layers {max(n, layers)}) and give its build.json (--firmware)"
    no_plan = "ship it without its plan (--no-plan: the device then serves its compiled-in model)"
    if need > arena:
        raise ToolkitError(f"{name}: its plan needs a {need:,}-byte arena, the target firmware's plan arena is {arena:,} bytes "
                           f"({where}): the device would not load it, and its trial would fail",
                           hint=f"{fix}, release a smaller model (aiot train --hidden), or {no_plan}")
    if n > layers:
        raise ToolkitError(f"{name}: its plan has {n} layers, the target firmware's plan takes at most {layers} ({where}): "
                           "the device would not load it, and its trial would fail", hint=f"{fix}, or {no_plan}")
    if dense_only and plan_kinds(plan) != {KIND_FC}:
        raise ToolkitError(f"{name}: its plan has layers other than FULLY_CONNECTED, the target firmware runs dense plans only "
                           f"({where}, built with --plan-ops dense): the device would refuse it",
                           hint=f"build the firmware with aiot build --update-key KEY --plan-ops all, or {no_plan}")


class _Blob:
    """An array placed after the records; its word holds its offset from the plan start."""

    def __init__(self, arr: np.ndarray):
        self.data = arr.tobytes()
        self.offset = 0


def _rq(fast_form, mults, shifts, out_zp, lo, hi) -> list:
    fast, mults, shifts = fast_form
    if fast:
        return [1, 1, out_zp, lo, hi, _Blob(np.array([(m, -s - 1) for m, s in zip(mults, shifts)], "<i4")), 0]
    return [0, int(len(mults) > 1), out_zp, lo, hi, _Blob(np.array(mults, "<i4")), _Blob(np.array(shifts, "<i4"))]


def build_plan(model: bytes) -> bytes:
    """The version-2 plan of an int8 .tflite (the ops in PLAN_OPS and aliases); a model
    with any other op is refused with its nodes named."""
    from aiot.codegen import _plan
    from aiot.codegen.ops import (ALIAS_OPS, Ctx, add_params, bcast_fields, conv_layer, fully_connected_layer,
                                  leaky_relu_params, mean_params, min_max_operands, mul_params, pack_weights_wide,
                                  pool_params, relu6_params, requant_form, requantize_params, sigmoid_params,
                                  softmax_params)
    from aiot.model import tflite

    g = tflite.load(bytes(model))
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ToolkitError(f"the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs: the model-as-data "
                           "plan runs one input and one output",
                           hint="ship this model compiled in (aiot codegen + aiot build); the package then carries no plan")
    plan, alias_ops = _plan(g)
    other = [f"node {op.index} is {op.op}" + (" with int16 activations (16x8)" if "int16" in tflite.activation_types(g, op)
                                               else " from float32" if op.op == "QUANTIZE" else "")
             for i, op in enumerate(g.operators) if i not in alias_ops and (
                 op.op not in PLAN_OPS or (op.op == "QUANTIZE" and g.tensors[op.inputs[0]].dtype != "int8")
                 or "int16" in tflite.activation_types(g, op))]
    if other:
        raise ToolkitError(f"{'; '.join(other)}: the model-as-data plan runs {', '.join(PLAN_OPS)} and reshapes only",
                           hint="ship this model compiled in (aiot codegen + aiot build); the package then carries no plan")
    ctx = Ctx(g, "speed")
    at = plan.offset_of
    records: list[tuple[int, int, int, int, list]] = []
    for i, op in enumerate(g.operators):
        if i in alias_ops:
            continue
        if op.op in ALIAS_OPS:
            raise ToolkitError(f"node {op.index} ({op.op}) reshapes a constant tensor",
                               hint="constant-fold the model (TFLiteConverter does this by default)")
        if op.op == "FULLY_CONNECTED":
            fc = fully_connected_layer(ctx, op)
            rq = _rq(requant_form(fc.mults, fc.shifts, fc.acc_bound, fc.n_out), fc.mults, fc.shifts, fc.out_zp,
                     fc.lo, fc.hi)
            words = [fc.batches, fc.n_in, fc.n_out, _Blob(pack_weights_wide(fc.weights, 1, fc.n_in).astype("<i2")),
                     _Blob(np.asarray(fc.bias, "<i4")), *rq]
            records.append((KIND_FC, at[fc.x.index], 0, at[fc.out.index], words))
        elif op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cv = conv_layer(ctx, op, depthwise=op.op != "CONV_2D")
            wide = cv.wide("speed")
            rq = _rq(requant_form(cv.mults, cv.shifts, cv.acc_bound, cv.out_c), cv.mults, cv.shifts, cv.out_zp,
                     cv.lo, cv.hi)
            packed = cv.packed("speed").astype("<i2" if wide else "i1")
            words = [*cv.dims, cv.in_zp, _Blob(packed), _Blob(np.asarray(cv.bias, "<i4")),
                     _Blob(np.asarray(cv.raw_bias, "<i4")) if cv.crosses else 0, int(wide), *rq]
            kind = KIND_DEPTHWISE if cv.depthwise else KIND_CONV
            records.append((kind, at[cv.x.index], 0, at[cv.out.index], words))
        elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            x, out, f = pool_params(ctx, op)
            records.append((KIND_AVG_POOL if op.op == "AVERAGE_POOL_2D" else KIND_MAX_POOL, at[x.index], 0,
                            at[out.index], f))
        elif op.op in ("ADD", "SUB"):
            a, b, out, f = add_params(ctx, op, subtract=op.op == "SUB")
            records.append((KIND_ADD, at[a.index], at[b.index], at[out.index],
                            [*bcast_fields(g, op, a, b, out), *f]))
        elif op.op == "SOFTMAX":
            x, out, f = softmax_params(ctx, op)
            records.append((KIND_SOFTMAX, at[x.index], 0, at[out.index], f))
        elif op.op == "MEAN":
            x, out, f = mean_params(ctx, op)
            records.append((KIND_MEAN, at[x.index], 0, at[out.index], f))
        elif op.op == "MUL":
            a, b, out, f = mul_params(ctx, op)
            records.append((KIND_MUL, at[a.index], at[b.index], at[out.index], [*bcast_fields(g, op, a, b, out), *f]))
        elif op.op in ("MAXIMUM", "MINIMUM"):
            a, b, out = min_max_operands(ctx, op)
            records.append((KIND_MIN_MAX, at[a.index], at[b.index], at[out.index],
                            [*bcast_fields(g, op, a, b, out), int(op.op == "MAXIMUM")]))
        else:
            unary = {"QUANTIZE": (KIND_REQUANTIZE, requantize_params), "RELU": (KIND_REQUANTIZE, requantize_params),
                     "RELU6": (KIND_CLAMP, relu6_params), "LOGISTIC": (KIND_LOGISTIC, sigmoid_params),
                     "TANH": (KIND_TANH, sigmoid_params), "LEAKY_RELU": (KIND_LEAKY_RELU, leaky_relu_params)}
            kind, params = unary[op.op]
            x, out, f = params(ctx, op)
            records.append((kind, at[x.index], 0, at[out.index], f))
    base = HEADER.size + sum(RECORD.size + 4 * len(r[4]) for r in records)
    blobs = bytearray()
    for *_, words in records:
        for w in words:
            if isinstance(w, _Blob):
                blobs.extend(b"\0" * (-len(blobs) % 4))
                w.offset = base + len(blobs)
                blobs.extend(w.data)
    body = bytearray()
    for kind, in0, in1, out, words in records:
        assert len(words) == KIND_WORDS[kind], (kind, len(words))
        body += RECORD.pack(kind, RECORD.size + 4 * len(words), in0, in1, out)
        body += b"".join(struct.pack("<I", (w.offset if isinstance(w, _Blob) else int(w)) & 0xFFFFFFFF) for w in words)
    x, y = g.input, g.output
    in_s, in_zp = x.qparams()
    out_s, out_zp = y.qparams()
    head = HEADER.pack(MAGIC, VERSION, len(records), plan.arena_bytes, at[x.index], at[y.index],
                       x.size, y.size, in_s, in_zp, out_s, out_zp)
    return head + bytes(body) + bytes(blobs)
