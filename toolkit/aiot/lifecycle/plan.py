"""The model as data (the PLAN section of a model package): the layers the generated C
would call, serialized so the firmware can walk them (firmware/src/update/plan.c) with
the same kernels and the same numbers (aiot.codegen.ops.fully_connected_layer computes
them for both). Only FULLY_CONNECTED models (dense autoencoders) so far.

Layout (little-endian): header ``magic "PLN1" u32, version 1 u16, layers u16, arena u32,
input offset u32, output offset u32, input bytes u32, output bytes u32, input scale f32,
input zero point i32, output scale f32, output zero point i32`` (44 bytes); per layer
``op u16 (1 = FC, int16 weights), rq kind u16 (1 = fast table), batches u16, in u16,
out u16, per_channel u16, input offset u32, output offset u32, weights u32, bias u32,
rq u32, shift u32, output zero point i32, act min i32, act max i32`` (48 bytes); then the
weight, bias and requantization arrays, each 4-byte aligned, offsets from the plan start."""

from __future__ import annotations

import struct

import numpy as np

from aiot.errors import ToolkitError

MAGIC = 0x314E4C50
HEADER = struct.Struct("<IHHIIIIIfifi")
LAYER = struct.Struct("<HHHHHHIIIIIIiii")
OP_FC_WIDE = 1


def plan_arena(plan: bytes) -> int:
    """The arena bytes a plan needs (its header's arena field)."""
    fields = HEADER.unpack_from(plan)
    if fields[0] != MAGIC:
        raise ToolkitError("not a model-as-data plan (no PLN1 magic)", hint="make it with aiot release")
    return int(fields[3])


def build_plan(model: bytes) -> bytes:
    from aiot.codegen import _plan
    from aiot.codegen.ops import FAST_REQUANT_LIMIT, Ctx, fully_connected_layer, pack_weights_wide
    from aiot.model import tflite

    g = tflite.load(bytes(model))
    plan, alias_ops = _plan(g)
    ctx = Ctx(g, "speed")
    records: list[tuple] = []
    blobs = bytearray()
    base = HEADER.size + LAYER.size * sum(1 for i, _ in enumerate(g.operators) if i not in alias_ops)

    def put(arr: np.ndarray) -> int:
        blobs.extend(b"\0" * (-len(blobs) % 4))
        off = base + len(blobs)
        blobs.extend(arr.tobytes())
        return off

    for i, op in enumerate(g.operators):
        if i in alias_ops:
            continue
        if op.op != "FULLY_CONNECTED":
            raise ToolkitError(f"node {op.index} is {op.op}: the model-as-data plan runs FULLY_CONNECTED layers only",
                               hint="ship this model compiled in (aiot codegen + aiot build); the package then carries no plan")
        fc = fully_connected_layer(ctx, op)
        w = put(pack_weights_wide(fc.weights, 1, fc.n_in).astype("<i2"))
        b = put(np.asarray(fc.bias, "<i4"))
        mults, shifts = fc.mults, fc.shifts
        fast = fc.acc_bound < FAST_REQUANT_LIMIT and all(s <= -1 for s in shifts) and all(m >= 0 for m in mults)
        if fast:
            if len(mults) == 1:
                mults, shifts = mults * fc.n_out, shifts * fc.n_out
            rq = put(np.array([(m, -s - 1) for m, s in zip(mults, shifts)], "<i4"))
            sh, per_channel = 0, 1
        else:
            rq, sh, per_channel = put(np.array(mults, "<i4")), put(np.array(shifts, "<i4")), int(len(mults) > 1)
        records.append((OP_FC_WIDE, int(fast), fc.batches, fc.n_in, fc.n_out, per_channel,
                        plan.offset_of[fc.x.index], plan.offset_of[fc.out.index], w, b, rq, sh, fc.out_zp, fc.lo, fc.hi))
    x, y = g.input, g.output
    in_s, in_zp = x.qparams()
    out_s, out_zp = y.qparams()
    head = HEADER.pack(MAGIC, 1, len(records), plan.arena_bytes, plan.offset_of[x.index], plan.offset_of[y.index],
                       x.size, y.size, in_s, in_zp, out_s, out_zp)
    return head + b"".join(LAYER.pack(*r) for r in records) + bytes(blobs)
