"""Turn an int8 .tflite into straight-line C (model.c/model.h) over the aiot int8 engine.

The generated code implements firmware/include/aiot/model.h: constant weights, one
static arena laid out at generation time, one kernel call per layer, no interpreter."""

from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aiot.model import tflite
from aiot.model.tflite import describe_unsupported, unsupported_hint
from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE
from aiot.codegen.ops import ALIAS_OPS, EMITTERS, INPLACE_OPS, Ctx, Layer
from aiot.codegen.ops16 import EMITTERS16, is_16x8
from aiot.codegen.plan import MemoryPlan, plan_memory

__all__ = ["CodegenResult", "generate", "engine_sources", "OPTIMIZE", "DEFAULT_OPTIMIZE"]

_ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4, "int64": 8}


@dataclass
class LayerInfo:
    name: str  # e.g. "FULLY_CONNECTED#0" (op and node index)
    op: str
    node: int
    macs: int
    output_shape: tuple[int, ...]


@dataclass
class CodegenResult:
    files: list[Path]
    name: str
    hash: int
    arena_bytes: int
    weights_bytes: int
    layers: list[str]
    layer_info: list[LayerInfo]
    macs: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    plan: MemoryPlan = field(repr=False, default=None)  # type: ignore[assignment]
    #: the .tflite takes float32 input / gives float32 output around its int8 graph: the
    #: generated code then also has aiot_model_quantize_input / aiot_model_dequantize_output
    float_input: bool = False
    float_output: bool = False
    #: the device-side input/output element types: "int8", or "int16" for a 16x8 model
    input_dtype: str = "int8"
    output_dtype: str = "int8"

    #: every input / output in the .tflite's order (input_shape / output_shape are the first)
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def input_bytes(self) -> int:
        """Bytes of one inference's input: every input tensor, in order (an int16 one of a
        16x8 model two bytes per element)."""
        return sum(int(np.prod(s)) for s in self.input_shapes or (self.input_shape,)) * _ITEMSIZE[self.input_dtype]

    @property
    def output_bytes(self) -> int:
        """Bytes of one inference's output: every output tensor, in order."""
        return sum(int(np.prod(s)) for s in self.output_shapes or (self.output_shape,)) * _ITEMSIZE[self.output_dtype]


def engine_sources() -> list[Path]:
    """The engine C files every build of generated model code must compile."""
    return sorted((FIRMWARE / "src" / "engine").glob("*.c"))


def _nbytes(t: tflite.Tensor) -> int:
    return t.size * _ITEMSIZE.get(t.dtype, 1)


def _int8_core(g: tflite.Graph) -> tuple[tflite.Graph, tflite.Operator | None, tflite.Operator | None]:
    """Split a float-interface model into its int8 graph and the boundary QUANTIZE /
    DEQUANTIZE (None where the input or output already is int8). The int8 graph's input
    and output are the model's as the device sees them; the boundary ops become the
    generated float entry points."""
    q, d = tflite.float_input_quantize(g), tflite.float_output_dequantize(g)
    if q is None and d is None:
        return g, None, None
    edges = {op.index for op in (q, d) if op is not None}
    core = dataclasses.replace(
        g, operators=[op for op in g.operators if op.index not in edges],
        inputs=(q.outputs[0],) if q is not None else g.inputs,
        outputs=(d.inputs[0],) if d is not None else g.outputs)
    return core, q, d


def _plan(g: tflite.Graph) -> tuple[MemoryPlan, list[int]]:
    """Arena tensors, aliases and lifetimes -> offsets. Returns the plan and alias-op indices."""
    arena: dict[int, int] = {}
    for op in g.operators:
        for ti in op.inputs + op.outputs:
            t = g.tensor(ti)
            if t is not None and not t.is_const and not t.is_variable:  # a variable keeps its own storage
                arena[ti] = _nbytes(t)
    for ti in g.inputs + g.outputs:
        arena[ti] = _nbytes(g.tensors[ti])

    def reads(op: tflite.Operator) -> list[int]:
        return [i for i in op.inputs if i in arena]

    parent = {t: t for t in arena}

    def find(t: int) -> int:
        while parent[t] != t:
            t = parent[t]
        return t

    aliases: list[tuple[int, int]] = []
    alias_ops: list[int] = []
    for i, op in enumerate(g.operators):
        src, dst = op.inputs[0] if op.inputs else -1, op.outputs[0]
        if src not in arena:
            continue
        if op.op in ALIAS_OPS:
            aliases.append((src, dst))
            parent[find(dst)] = find(src)
            alias_ops.append(i)
        elif (
            op.op in INPLACE_OPS
            and arena[src] == arena[dst]
            and g.tensors[src].dtype == g.tensors[dst].dtype
            and src not in g.inputs
            and not any(find(r) == find(src) for later in g.operators[i + 1 :] for r in reads(later))
            and not any(find(o) == find(src) for o in g.outputs)
        ):
            aliases.append((src, dst))
            parent[find(dst)] = find(src)
    op_io = [(reads(op), [o for o in op.outputs if o in arena]) for op in g.operators]
    plan = plan_memory(len(g.operators), op_io, arena, list(g.inputs), list(g.outputs), aliases)
    return plan, alias_ops


#: ``optimize`` choices of generate(): "speed" stores FULLY_CONNECTED and CONV_2D weights
#: pre-widened to int16 in the SMLAD operand order (twice the weight flash, no unpacking
#: in the inner loop); "size" keeps them packed int8 (unpacked with SXTB16 at run time).
OPTIMIZE = ("speed", "size")
DEFAULT_OPTIMIZE = "speed"


def _emit_all(g: tflite.Graph, plan: MemoryPlan, alias_ops: list[int], optimize: str,
              compact: bool) -> tuple[Ctx, list[Layer]]:
    """One Layer per op (alias ops excepted); every node that cannot be compiled is
    collected and reported in one ToolkitError."""
    ctx = Ctx(g, optimize)
    ctx.compact_requant = compact
    for t, off in plan.offset_of.items():
        ctx.ptr[t] = f"(arena + {off})"
    layers: list[Layer] = []
    problems: list[str] = []  # every node we cannot compile, reported together
    hints: list[str] = []
    for i, op in enumerate(g.operators):
        if i in alias_ops:
            continue
        if op.op in ALIAS_OPS:  # alias of a constant: materialise a copy as a constant
            problems.append(f"node {op.index} ({op.op}) reshapes a constant tensor")
            hints.append("constant-fold the model (TFLiteConverter does this by default)")
            continue
        emit = (EMITTERS16 if is_16x8(g, op) else EMITTERS).get(op.op)
        if emit is None:
            problems.append(f"node {op.index}: {describe_unsupported(g, op)}")
            continue
        try:
            layers.append(emit(ctx, op, f"l{len(layers)}"))
        except ToolkitError as e:
            problems.append(e.message.replace(f"{g.source}: ", "", 1))
            if e.hint:
                hints.append(e.hint)
        except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            problems.append(f"node {op.index} ({op.op}) is malformed ({type(e).__name__}: {e})")
            hints.append("the file is corrupt or was not produced by the TFLite converter; re-export it")
    if problems:
        unsupported = sorted({op.op for op in g.operators if op.op not in EMITTERS and op.op not in ALIAS_OPS})
        if unsupported:
            hints.append(unsupported_hint(g, unsupported))
        raise ToolkitError(
            f"{g.source}: {len(problems)} node(s) cannot be compiled for the aiot int8 engine:\n  "
            + "\n  ".join(problems),
            hint="; ".join(dict.fromkeys(hints)) or None,
        )
    return ctx, layers


def generate(model: Path | str | bytes, out_dir: Path | str, name: str = "model",
             optimize: str = DEFAULT_OPTIMIZE) -> CodegenResult:
    """Write ``out_dir/model.c`` and ``out_dir/model.h`` for ``model`` and describe them."""
    if optimize not in OPTIMIZE:
        raise ToolkitError(f"unknown optimize mode '{optimize}'", hint="one of: " + ", ".join(OPTIMIZE))
    data = tflite.read_bytes(model)
    g_file = tflite.load(data if isinstance(model, (bytes, bytearray)) else Path(model))
    g, quantize_in, dequantize_out = _int8_core(g_file)
    crc = zlib.crc32(data) & 0xFFFFFFFF
    plan, alias_ops = _plan(g)
    ctx, layers = _emit_all(g, plan, alias_ops, optimize, compact=False)
    weights_bytes = sum(l.weights_bytes for l in layers) + ctx.const_bytes
    if optimize == "size" and weights_bytes > len(data):
        # size mode promises weight flash no larger than the .tflite: the per-channel copies
        # of per-tensor requantization tables are what can push it over
        ctx, layers = _emit_all(g, plan, alias_ops, optimize, compact=True)
    edges = _float_edges(g_file, ctx, quantize_in, dequantize_out)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y = g.input, g.output
    in_s, in_zp = x.qparams()
    out_s, out_zp = y.qparams()
    weights_bytes = sum(l.weights_bytes for l in layers) + ctx.const_bytes
    by_node = {op.index: op for op in g.operators}
    info = [
        LayerInfo(f"{l.op}#{l.node}", l.op, l.node, l.macs, g.tensors[by_node[l.node].outputs[0]].shape)
        for l in layers
    ]
    ins, outs = [g.tensors[i] for i in g.inputs], [g.tensors[i] for i in g.outputs]
    # sizes in bytes: an int16 (16x8) input or output is two bytes per element, little-endian
    in_total, out_total = sum(_nbytes(t) for t in ins), sum(_nbytes(t) for t in outs)
    header = _render_header(name, in_total, out_total, plan.arena_bytes, len(layers), crc, edges,
                            (len(ins), len(outs)), (sum(t.size for t in ins), sum(t.size for t in outs)))
    source = _render_source(g, name, crc, plan, ctx, layers, ctx.const_decls, info, in_total, out_total,
                            (in_s, in_zp, out_s, out_zp), edges)
    h_path, c_path = out_dir / "model.h", out_dir / "model.c"
    # private names, then renamed: a kill never leaves half a file (the build checks that
    # model.c and model.h name the same model, in case it falls between the two renames)
    for path, text in ((c_path, source), (h_path, header)):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return CodegenResult(
        files=[c_path, h_path], name=name, hash=crc, arena_bytes=plan.arena_bytes, weights_bytes=weights_bytes,
        layers=[l.op for l in layers], layer_info=info, macs=sum(l.macs for l in layers),
        input_shape=tuple(x.shape), output_shape=tuple(y.shape),
        input_scale=in_s, input_zero_point=in_zp, output_scale=out_s, output_zero_point=out_zp, plan=plan,
        float_input=quantize_in is not None, float_output=dequantize_out is not None,
        input_shapes=tuple(tuple(t.shape) for t in ins), output_shapes=tuple(tuple(t.shape) for t in outs),
        input_dtype=x.dtype, output_dtype=y.dtype,
    )


#: The float entry points of a float-interface model: (C declaration, C body expression).
_FLOAT_IN = "int aiot_model_quantize_input(const float *input)"
_FLOAT_OUT = "int aiot_model_dequantize_output(float *output)"


def _float_edges(g: tflite.Graph, ctx: Ctx, quantize_in, dequantize_out) -> list[tuple[str, str, str]]:
    """(declaration, call, comment) of each float entry point: the boundary op's own
    emitter, reading the caller's float buffer and the int8 core's arena tensor."""
    from aiot.codegen.ops import emit_dequantize, emit_quantize

    edges = []
    if quantize_in is not None:
        ctx.ptr[quantize_in.inputs[0]] = "input"
        call = emit_quantize(ctx, quantize_in, "edge_in").call
        edges.append((_FLOAT_IN, call, "float32 input -> the int8 input, as the model's QUANTIZE (TFLM AffineQuantize)"))
    if dequantize_out is not None:
        ctx.ptr[dequantize_out.outputs[0]] = "output"
        call = emit_dequantize(ctx, dequantize_out, "edge_out").call
        edges.append((_FLOAT_OUT, call, "the int8 output -> float32, as the model's DEQUANTIZE (TFLM Dequantize)"))
    return edges


def _render_header(name: str, in_bytes: int, out_bytes: int, arena: int, n_layers: int, crc: int,
                   edges: list[tuple[str, str, str]] = (), io: tuple[int, int] = (1, 1),
                   elements: tuple[int, int] = (0, 0)) -> str:
    floats = "".join(
        f"\n// {comment}; returns 0 or an aiot_status_t\n#define AIOT_MODEL_{'FLOAT_INPUT' if 'input' in decl else 'FLOAT_OUTPUT'} 1\n{decl};\n"
        for decl, _, comment in edges)
    return f"""// Generated by `aiot codegen` for model '{_printable(name)}' (tflite crc32 0x{crc:08x}). Do not edit.
// Sizes of the generated model; the functions are declared in aiot/model.h.
#ifndef AIOT_GENERATED_MODEL_H
#define AIOT_GENERATED_MODEL_H

#include "aiot/model.h"

#define AIOT_MODEL_INPUT_BYTES {in_bytes}u
#define AIOT_MODEL_OUTPUT_BYTES {out_bytes}u
#define AIOT_MODEL_NUM_INPUTS {io[0]}u
#define AIOT_MODEL_NUM_OUTPUTS {io[1]}u
// elements (int8, or int16 in the 16x8 mode; the float entry points take this many floats)
#define AIOT_MODEL_INPUT_ELEMENTS {elements[0]}u
#define AIOT_MODEL_OUTPUT_ELEMENTS {elements[1]}u
#define AIOT_MODEL_ARENA_BYTES {arena}u
#define AIOT_MODEL_NUM_LAYERS {n_layers}u
#define AIOT_MODEL_HASH 0x{crc:08x}u
{floats}
#endif
"""


def _printable(s: str) -> str:
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in s)


def _c_str(s: str) -> str:
    """C string literal; anything outside printable ASCII becomes an octal escape."""
    out = []
    for ch in s.encode("utf-8"):
        c = chr(ch)
        out.append(c if 32 <= ch < 127 and c not in '"\\?' else f"\\{ch:03o}")
    return '"' + "".join(out) + '"'


def _io_table(role: str, offsets: list[int], sizes: list[int]) -> list[str]:
    """aiot_model_<role>_sizes[] and aiot_model_<role>_n(i): every input or output tensor
    in the .tflite's order (NULL past the last)."""
    n = len(offsets)
    const = "" if role == "input" else "const "
    return [
        f"const uint32_t aiot_model_num_{role}s = {n}u;",
        f"const uint32_t aiot_model_{role}_sizes[{n}] = {{ {', '.join(f'{s}u' for s in sizes)} }};",
        f"static const uint32_t {role}_offsets[{n}] = {{ {', '.join(f'{o}u' for o in offsets)} }};",
        f"{const}int8_t *aiot_model_{role}_n(uint32_t i) {{ return i < {n}u ? arena + {role}_offsets[i] : 0; }}",
        "",
    ]


#: TFLite's TensorType codes, as the device's INFO reports each input and output (protocol 1.2)
TENSOR_TYPES = {"int8": 9, "int16": 7}


def _io_types(g) -> list[str]:
    """aiot_model_input_types[] / aiot_model_output_types[] (TFLite TensorType codes) for a
    model with an int16 (16x8) input or output; an all-int8 model has none (the firmware reads
    their absence as int8), so its generated C is what it was before the tables existed."""
    roles = (("input", g.inputs), ("output", g.outputs))
    if all(g.tensors[i].dtype == "int8" for _, ids in roles for i in ids):
        return []
    return [f"const uint8_t aiot_model_{role}_types[{len(ids)}] = "
            f"{{ {', '.join(f'{TENSOR_TYPES[g.tensors[i].dtype]}u' for i in ids)} }};" for role, ids in roles] + [""]


def _render_source(g, name, crc, plan, ctx, layers, const_decls, info, in_size, out_size, q, edges=()) -> str:
    from aiot.codegen.ops import _c_float

    in_s, in_zp, out_s, out_zp = q
    n = max(len(layers), 1)
    lines = [
        f"// Generated by `aiot codegen` for model '{_printable(name)}' (tflite crc32 0x{crc:08x}). Do not edit.",
        "// Straight-line int8 inference over the aiot engine; arena offsets planned at generation time.",
        '#include "model.h"',
        '#include "aiot/engine.h"',
        "",
        "#ifdef AIOT_PROFILE",
        '#include "aiot/port.h"',
        "#endif",
        "",
        "static int8_t arena[AIOT_MODEL_ARENA_BYTES] __attribute__((aligned(16)));",
        "",
    ]
    lines += const_decls
    for l, li in zip(layers, info):
        lines.append(f"// {li.name} -> {list(li.output_shape)}, {li.macs} MACs")
        lines += l.decls
        lines.append("")
    lines += [
        "const aiot_model_info_t aiot_model_info = {",
        f"    {_c_str(name)}, 0x{crc:08x}u, {in_size}u, {out_size}u, AIOT_MODEL_ARENA_BYTES,",
        f"    {_c_float(in_s)}, {in_zp}, {_c_float(out_s)}, {out_zp}, {len(layers)}u,",
        "};",
        "",
        f"int8_t *aiot_model_input(void) {{ return arena + {plan.offset_of[g.inputs[0]]}; }}",
        f"const int8_t *aiot_model_output(void) {{ return arena + {plan.offset_of[g.outputs[0]]}; }}",
        "",
        *_io_table("input", [plan.offset_of[i] for i in g.inputs], [_nbytes(g.tensors[i]) for i in g.inputs]),
        *_io_table("output", [plan.offset_of[i] for i in g.outputs], [_nbytes(g.tensors[i]) for i in g.outputs]),
        *_io_types(g),
        "#ifdef AIOT_PROFILE",
        f"uint32_t aiot_model_layer_ticks[{n}];",
        f"const char *const aiot_model_layer_names[{n}] = {{",
        *[f"    {_c_str(li.name)}," for li in info],
        *(['    "",'] if not info else []),
        "};",
        "#define AIOT_LAYER(i, call)                                                      \\",
        "    do {                                                                         \\",
        "        const uint64_t t0_ = aiot_port_ticks();                                  \\",
        "        const int rc_ = (int)(call);                                             \\",
        "        aiot_model_layer_ticks[i] = (uint32_t)(aiot_port_ticks() - t0_);         \\",
        "        if (rc_ != 0) return rc_;                                                \\",
        "    } while (0)",
        "#else",
        "#define AIOT_LAYER(i, call)                                                      \\",
        "    do {                                                                         \\",
        "        const int rc_ = (int)(call);                                             \\",
        "        if (rc_ != 0) return rc_;                                                \\",
        "    } while (0)",
        "#endif",
        "",
        "int aiot_model_invoke(void)",
        "{",
    ]
    for i, l in enumerate(layers):
        lines.append(f"    AIOT_LAYER({i}, {l.call});")
    lines += ["    return 0;", "}", ""]
    resets = [r for l in layers for r in l.reset]
    lines += ["void aiot_model_reset(void)", "{", *(f"    {r}" for r in resets), "}", ""]
    for decl, call, comment in edges:
        lines += [f"// {comment}", decl, "{", f"    return (int)({call});", "}", ""]
    return "\n".join(lines)
