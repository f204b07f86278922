"""Read a .tflite flatbuffer into a small IR, without TensorFlow.

Only the schema facts the engine needs are decoded (tensors, quantization, operators and
their builtin options). ``load()`` also checks that the engine can compile the model and
explains, with the node index, what to change when it cannot."""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiot.errors import ToolkitError

# BuiltinOperator enum of the public schema, in value order (index == enum value).
BUILTIN_OPS: tuple[str, ...] = tuple(
    """ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
    EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
    LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1
    RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM
    CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND
    SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE
    BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM
    CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE
    SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW
    ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK
    REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR
    LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS
    WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE
    NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM
    BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG
    REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL
    CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL
    BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD
    UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR
    RIGHT_SHIFT""".split()
)

# TensorType enum -> (name, numpy dtype or None when numpy has no equivalent).
TENSOR_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("float32", "<f4"), 1: ("float16", "<f2"), 2: ("int32", "<i4"), 3: ("uint8", "u1"),
    4: ("int64", "<i8"), 5: ("string", None), 6: ("bool", "u1"), 7: ("int16", "<i2"),
    8: ("complex64", "<c8"), 9: ("int8", "i1"), 10: ("float64", "<f8"), 11: ("complex128", "<c16"),
    12: ("uint64", "<u8"), 13: ("resource", None), 14: ("variant", None), 15: ("uint32", "<u4"),
    16: ("uint16", "<u2"), 17: ("int4", None), 18: ("bfloat16", None),
}

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDINGS = {0: "SAME", 1: "VALID"}

# BuiltinOptions union type -> field specs (name, kind, default), in schema slot order.
# kinds: u8 (byte/bool), i32, f32, act (activation enum), pad (padding enum), vi32 (int vector)
_OPTIONS: dict[int, list[tuple[str, str, Any]]] = {
    1: [("padding", "pad", "SAME"), ("stride_w", "i32", 0), ("stride_h", "i32", 0),
        ("activation", "act", "NONE"), ("dilation_w", "i32", 1), ("dilation_h", "i32", 1)],
    2: [("padding", "pad", "SAME"), ("stride_w", "i32", 0), ("stride_h", "i32", 0),
        ("depth_multiplier", "i32", 0), ("activation", "act", "NONE"), ("dilation_w", "i32", 1),
        ("dilation_h", "i32", 1)],
    5: [("padding", "pad", "SAME"), ("stride_w", "i32", 0), ("stride_h", "i32", 0),
        ("filter_w", "i32", 0), ("filter_h", "i32", 0), ("activation", "act", "NONE")],
    6: [("rank", "i32", 0), ("activation", "act", "NONE"), ("asymmetric_quantize_inputs", "u8", 0)],
    8: [("activation", "act", "NONE"), ("weights_format", "u8", 0), ("keep_num_dims", "u8", 0),
        ("asymmetric_quantize_inputs", "u8", 0)],
    9: [("beta", "f32", 0.0)],
    10: [("axis", "i32", 0), ("activation", "act", "NONE")],
    11: [("activation", "act", "NONE")],
    17: [("new_shape", "vi32", None)],
    21: [("activation", "act", "NONE")],
    27: [("keep_dims", "u8", 0)],
    28: [("activation", "act", "NONE")],
    30: [("squeeze_dims", "vi32", None)],
    23: [("axis", "i32", 0), ("batch_dims", "i32", 0)],
    32: [("begin_mask", "i32", 0), ("end_mask", "i32", 0), ("ellipsis_mask", "i32", 0),
         ("new_axis_mask", "i32", 0), ("shrink_axis_mask", "i32", 0), ("offset", "u8", 0)],
    59: [("values_count", "i32", 0), ("axis", "i32", 0)],
    49: [("padding", "pad", "SAME"), ("stride_w", "i32", 0), ("stride_h", "i32", 0), ("activation", "act", "NONE")],
    75: [("alpha", "f32", 0.0)],
    77: [("mode", "u8", 0)],  # MirrorPadMode: 0 REFLECT, 1 SYMMETRIC
    71: [("activation", "act", "NONE"), ("cell_clip", "f32", 0.0), ("proj_clip", "f32", 0.0),
         ("time_major", "u8", 0), ("asymmetric_quantize_inputs", "u8", 0), ("diagonal_recurrent_tensors", "u8", 0)],
}

#: Ops the int8 engine implements (kernels in firmware/src/engine/).
SUPPORTED_OPS = frozenset(
    """FULLY_CONNECTED CONV_2D DEPTHWISE_CONV_2D AVERAGE_POOL_2D MAX_POOL_2D MEAN ADD SUB MUL
    RESHAPE SQUEEZE EXPAND_DIMS CONCATENATION PAD RELU RELU6 LOGISTIC TANH SOFTMAX QUANTIZE
    DEQUANTIZE MINIMUM MAXIMUM PADV2 TRANSPOSE STRIDED_SLICE LEAKY_RELU MIRROR_PAD TRANSPOSE_CONV SVDF
    UNIDIRECTIONAL_SEQUENCE_LSTM""".split()
)

#: Ops the engine also runs in TFLite's 16x8 mode (int16 activations, int8 weights).
SUPPORTED_OPS_16 = frozenset(
    """FULLY_CONNECTED CONV_2D DEPTHWISE_CONV_2D ADD SUB MUL RELU RELU6 LEAKY_RELU MAXIMUM MINIMUM MEAN
    PAD PADV2 TRANSPOSE STRIDED_SLICE AVERAGE_POOL_2D MAX_POOL_2D QUANTIZE
    CONCATENATION RESHAPE SQUEEZE EXPAND_DIMS LOGISTIC TANH SOFTMAX DEQUANTIZE""".split()
)

# What to use instead, for the unsupported ops people meet most often in Keras models.
_INSTEAD = {
    "HARD_SWISH": "use ReLU or ReLU6",
    "ELU": "use ReLU",
    "GELU": "use ReLU",
    "PRELU": "use ReLU",
    "BATCH_MATMUL": "use a Dense layer (FULLY_CONNECTED) on a 2-D input",
    "TRANSPOSE": "avoid Permute/transpose layers: lay the data out as (1, time, channels) NHWC",
    "STRIDED_SLICE": "slice the data before the model (feature extraction), not inside it",
    "SLICE": "slice the data before the model (feature extraction), not inside it",
    "SUM": "use GlobalAveragePooling (MEAN) instead of a sum",
    "REDUCE_MAX": "use GlobalMaxPooling2D with an explicit pool size (MAX_POOL_2D)",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "use 1-D convolutions (Conv2D 1xK) instead of recurrent layers",
    "SQUARED_DIFFERENCE": "compute reconstruction errors on the host side of the model, not in the graph",
    "DIV": "use MUL by a constant",
    "RESIZE_NEAREST_NEIGHBOR": "use Conv2D with stride or repeat the data before the model",
    "PACK": "use CONCATENATION (layers.Concatenate)",
    "SPLIT": "split the input before the model",
    "SPACE_TO_BATCH_ND": "dilated convolutions become SPACE_TO_BATCH_ND when the batch size is dynamic: "
                         "convert with a fixed batch of 1 (keras.Input(shape, batch_size=1)) to keep them CONV_2D",
    "BATCH_TO_SPACE_ND": "dilated convolutions become BATCH_TO_SPACE_ND when the batch size is dynamic: "
                         "convert with a fixed batch of 1 (keras.Input(shape, batch_size=1)) to keep them CONV_2D",
}

_NOT_TFLITE_HINT = ("is this a .tflite file? `aiot quantize --package PKG` writes PKG/model.tflite, and "
                    "`aiot quantize --keras MODEL.keras --data DATA.csv --out PKG` one for your own Keras model")


@dataclass
class Tensor:
    """One graph tensor. ``data`` is the constant contents (weights, bias, shapes) or None."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray | None = None  # float32, 1 element (per-tensor) or one per channel
    zero_point: np.ndarray | None = None  # int64, same length as scale
    quantized_dimension: int = 0
    data: np.ndarray | None = None
    is_variable: bool = False

    @property
    def size(self) -> int:
        return math.prod(int(d) for d in self.shape)  # Python ints: 2^31 x 2^31 does not wrap

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def per_channel(self) -> bool:
        return self.scale is not None and len(self.scale) > 1

    @property
    def quantized(self) -> bool:
        return self.scale is not None and len(self.scale) > 0

    def qparams(self) -> tuple[float, int]:
        """Per-tensor (scale, zero_point); (0.0, 0) if the tensor is not quantized."""
        if not self.quantized:
            return 0.0, 0
        return float(self.scale[0]), int(self.zero_point[0]) if self.zero_point is not None and len(self.zero_point) else 0


@dataclass
class Operator:
    index: int
    op: str
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    version: int = 1


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    version: int = 3
    description: str = ""
    source: str = "<bytes>"
    num_subgraphs: int = 1

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]

    def tensor(self, index: int) -> Tensor | None:
        return None if index < 0 else self.tensors[index]


class _Malformed(Exception):
    """Internal: the bytes do not follow the flatbuffer layout."""


class _Table:
    """A flatbuffer table at absolute position ``pos`` of ``buf`` (bounds-checked reads)."""

    __slots__ = ("buf", "pos", "_vt", "_vt_len")

    def __init__(self, buf: bytes, pos: int):
        self.buf = buf
        self.pos = pos
        vt = pos - _i32(buf, pos)
        self._vt = vt
        self._vt_len = _u16(buf, vt)
        if self._vt_len < 4 or self._vt_len % 2:
            raise _Malformed(f"bad vtable at byte {vt}")

    def _field(self, slot: int) -> int:
        o = 4 + 2 * slot
        if o >= self._vt_len:
            return 0
        rel = _u16(self.buf, self._vt + o)
        return self.pos + rel if rel else 0

    def scalar(self, slot: int, fmt: str, default: Any) -> Any:
        p = self._field(slot)
        return _unpack(self.buf, fmt, p) if p else default

    def _target(self, slot: int) -> int:
        p = self._field(slot)
        return p + _u32(self.buf, p) if p else 0

    def table(self, slot: int) -> "_Table | None":
        t = self._target(slot)
        return _Table(self.buf, t) if t else None

    def vector(self, slot: int, fmt: str) -> tuple:
        t = self._target(slot)
        if not t:
            return ()
        n = _u32(self.buf, t)
        size = struct.calcsize(fmt)
        if t + 4 + n * size > len(self.buf):
            raise _Malformed(f"vector at byte {t} runs past the end of the file")
        return struct.unpack_from(f"<{n}{fmt}", self.buf, t + 4)

    def raw_vector(self, slot: int) -> bytes:
        t = self._target(slot)
        if not t:
            return b""
        n = _u32(self.buf, t)
        if t + 4 + n > len(self.buf):
            raise _Malformed(f"byte vector at {t} runs past the end of the file")
        return self.buf[t + 4 : t + 4 + n]

    def string(self, slot: int) -> str:
        return self.raw_vector(slot).decode("utf-8", errors="replace")

    def tables(self, slot: int) -> list["_Table"]:
        t = self._target(slot)
        if not t:
            return []
        n = _u32(self.buf, t)
        if t + 4 + 4 * n > len(self.buf):
            raise _Malformed(f"table vector at byte {t} runs past the end of the file")
        out = []
        for i in range(n):
            p = t + 4 + 4 * i
            out.append(_Table(self.buf, p + _u32(self.buf, p)))
        return out


def _unpack(buf: bytes, fmt: str, pos: int) -> Any:
    if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
        raise _Malformed(f"read at byte {pos} past the end of the file ({len(buf)} bytes)")
    return struct.unpack_from("<" + fmt, buf, pos)[0]


def _u16(buf: bytes, pos: int) -> int:
    return _unpack(buf, "H", pos)


def _u32(buf: bytes, pos: int) -> int:
    return _unpack(buf, "I", pos)


def _i32(buf: bytes, pos: int) -> int:
    return _unpack(buf, "i", pos)


def _read_options(op_table: _Table, opts_type: int) -> dict[str, Any]:
    spec = _OPTIONS.get(opts_type)
    if not spec:
        return {}
    t = op_table.table(4)
    out: dict[str, Any] = {}
    for slot, (name, kind, default) in enumerate(spec):
        if t is None:
            out[name] = default
        elif kind == "i32":
            out[name] = t.scalar(slot, "i", default)
        elif kind == "f32":
            out[name] = t.scalar(slot, "f", default)
        elif kind == "u8":
            out[name] = t.scalar(slot, "B", default)
        elif kind == "act":
            out[name] = ACTIVATIONS.get(t.scalar(slot, "B", 0), "UNKNOWN")
        elif kind == "pad":
            out[name] = PADDINGS.get(t.scalar(slot, "B", 0), "UNKNOWN")
        elif kind == "vi32":
            v = t.vector(slot, "i")
            out[name] = list(v) if v else default
    return out


def _read_quant(q: _Table | None) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    if q is None:
        return None, None, 0
    scale = np.array(q.vector(2, "f"), dtype=np.float32)
    zp = np.array(q.vector(3, "q"), dtype=np.int64)
    if len(scale) == 0:
        return None, None, 0
    if len(zp) == 0:
        zp = np.zeros(len(scale), dtype=np.int64)
    return scale, zp, q.scalar(6, "i", 0)


def parse(data: bytes, source: str = "<bytes>") -> Graph:
    """Decode the flatbuffer structure (no check that the engine supports it)."""
    if len(data) < 8:
        raise ToolkitError(f"{source}: {len(data)} bytes is too short for a TFLite model", hint=_NOT_TFLITE_HINT)
    ident = data[4:8]
    if ident != b"TFL3":
        raise ToolkitError(
            f"{source}: file identifier is {ident!r}, expected b'TFL3' (TFLite flatbuffer)", hint=_NOT_TFLITE_HINT
        )
    try:
        return _parse(data, source)
    except (_Malformed, struct.error, UnicodeDecodeError, ValueError, IndexError) as e:
        raise ToolkitError(f"{source}: corrupt or truncated TFLite flatbuffer ({e})", hint=_NOT_TFLITE_HINT) from e


def _parse(data: bytes, source: str) -> Graph:
    model = _Table(data, _u32(data, 0))
    version = model.scalar(0, "I", 0)
    codes = []
    for oc in model.tables(1):
        dep = oc.scalar(0, "b", 0)
        code = max(int(dep), int(oc.scalar(3, "i", 0)))
        if code == 32:  # CUSTOM
            codes.append((f"CUSTOM:{oc.string(1)}", oc.scalar(2, "i", 1)))
        else:
            name = BUILTIN_OPS[code] if 0 <= code < len(BUILTIN_OPS) else f"BUILTIN_{code}"
            codes.append((name, oc.scalar(2, "i", 1)))
    buffers: list[bytes] = []
    for b in model.tables(4):
        raw = b.raw_vector(0)
        if not raw:
            off, size = b.scalar(1, "Q", 0), b.scalar(2, "Q", 0)
            if off > 1 and size:
                if off + size > len(data):
                    raise _Malformed(f"buffer at offset {off} (+{size}) runs past the end of the file")
                raw = data[off : off + size]
        buffers.append(raw)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise _Malformed("the model has no subgraph")
    sg = subgraphs[0]
    tensors: list[Tensor] = []
    for i, t in enumerate(sg.tables(0)):
        tcode = t.scalar(1, "b", 0)
        dname, npdt = TENSOR_TYPES.get(tcode, (f"type{tcode}", None))
        shape = tuple(int(s) for s in t.vector(0, "i"))
        scale, zp, qdim = _read_quant(t.table(4))
        bidx = t.scalar(2, "I", 0)
        if bidx >= len(buffers):
            raise _Malformed(f"tensor {i} refers to buffer {bidx}, the model has {len(buffers)}")
        const = None
        raw = buffers[bidx]
        if raw and npdt is not None:
            const = np.frombuffer(raw, dtype=npdt).copy()
            n = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if const.size != n:
                raise _Malformed(f"tensor {i} has shape {list(shape)} but its buffer holds {const.size} values")
            const = const.reshape(shape)
        tensors.append(
            Tensor(i, t.string(3), shape, dname, scale, zp, qdim, const, bool(t.scalar(5, "B", 0)))
        )
    ops: list[Operator] = []
    for i, o in enumerate(sg.tables(3)):
        ci = o.scalar(0, "I", 0)
        if ci >= len(codes):
            raise _Malformed(f"node {i} uses operator code {ci}, the model defines {len(codes)}")
        name, ver = codes[ci]
        ins = tuple(int(x) for x in o.vector(1, "i"))
        outs = tuple(int(x) for x in o.vector(2, "i"))
        for x in ins + outs:
            if x >= len(tensors) or x < -1:
                raise _Malformed(f"node {i} refers to tensor {x}, the subgraph has {len(tensors)}")
        # -1 marks an omitted optional input; an output is never optional, and every later
        # stage indexes op.outputs[0] (a negative index would silently pick the last tensor)
        if not outs or any(x < 0 for x in outs):
            raise _Malformed(f"node {i} has no output tensor (outputs {list(outs)})")
        ops.append(Operator(i, name, ins, outs, _read_options(o, o.scalar(3, "B", 0)), ver))
    inputs = tuple(int(x) for x in sg.vector(1, "i"))
    outputs = tuple(int(x) for x in sg.vector(2, "i"))
    for x in inputs + outputs:
        if not 0 <= x < len(tensors):
            raise _Malformed(f"graph input/output refers to tensor {x}, the subgraph has {len(tensors)}")
    return Graph(tensors, ops, inputs, outputs, version, model.string(3), source, len(subgraphs))


def _float_problem(g: Graph) -> str | None:
    for op in g.operators:
        if op.op in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for ti in op.inputs + op.outputs:
            t = g.tensor(ti)
            if t is not None and t.dtype in ("float32", "float16") and not (t.is_const and op.op in ("RESHAPE",)):
                return f"node {op.index} ({op.op}) has {t.dtype} tensor '{t.name}'"
    return None


def _strided_slice_1d(x: np.ndarray, b: int, e: int, st: int, o: dict[str, Any]) -> np.ndarray:
    n = len(x)
    if o.get("ellipsis_mask") or o.get("new_axis_mask") or st == 0:
        raise ValueError("unsupported strided slice")
    if o.get("shrink_axis_mask", 0) & 1:
        return np.array(x[b % n] if n else 0, dtype=np.int32)
    if o.get("begin_mask", 0) & 1:
        b = 0 if st > 0 else n - 1
    if o.get("end_mask", 0) & 1:
        e = n if st > 0 else -n - 1
    return np.asarray(x[slice(b, e, st)], dtype=np.int32)


def _fold_value(g: Graph, op: Operator) -> np.ndarray | None:
    """Evaluate a shape-computation op whose inputs are all known, else None."""
    if op.op == "SHAPE":
        t = g.tensors[op.inputs[0]]
        return np.array(t.shape, dtype=np.int32) if all(d > 0 for d in t.shape) else None
    ins = [g.tensor(i) for i in op.inputs]
    if not ins or any(t is None or t.data is None or t.dtype != "int32" for t in ins):
        return None
    v = [np.asarray(t.data, dtype=np.int64) for t in ins]
    o = op.options
    if op.op == "GATHER" and v[0].ndim == 1 and o.get("axis", 0) == 0:
        return v[0][v[1]].astype(np.int32)
    if op.op == "REDUCE_PROD" and v[0].ndim == 1:
        r = np.prod(v[0]).astype(np.int32)
        return r.reshape(1) if o.get("keep_dims") else np.array(r, dtype=np.int32)
    if op.op == "CONCATENATION" and all(x.ndim == 1 for x in v):
        return np.concatenate(v).astype(np.int32)
    if op.op == "PACK" and all(x.ndim == 0 for x in v) and o.get("axis", 0) == 0:
        return np.array(v, dtype=np.int32)
    if op.op == "STRIDED_SLICE" and v[0].ndim == 1 and all(x.size == 1 for x in v[1:4]):
        return _strided_slice_1d(v[0], int(v[1][0]), int(v[2][0]), int(v[3][0]), o)
    return None


_SAME_SHAPE_OPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "SOFTMAX", "QUANTIZE", "DEQUANTIZE"})

_MIN_INPUTS = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "MEAN": 2, "ADD": 2, "SUB": 2,
               "MUL": 2, "PAD": 2, "MINIMUM": 2, "MAXIMUM": 2, "PADV2": 2,
               "TRANSPOSE": 2, "STRIDED_SLICE": 4, "MIRROR_PAD": 2,
               "TRANSPOSE_CONV": 3, "SVDF": 3}

#: Inputs an op keeps in int16 without being the 16x8 mode: SVDF's time weights and state,
#: an int8 LSTM's cell state.
_INT16_INPUTS = {"SVDF": (2, 4), "UNIDIRECTIONAL_SEQUENCE_LSTM": (19,)}

# Inputs that only carry a shape: with static shapes the output tensor already says it all.
_SHAPE_ONLY_INPUTS = {"RESHAPE": (1,), "EXPAND_DIMS": (1,)}


def fold_shape_computations(g: Graph) -> list[Operator]:
    """Constant-fold the int32 shape arithmetic Keras emits for dynamic batch sizes
    (SHAPE -> STRIDED_SLICE/GATHER/REDUCE_PROD -> PACK/CONCATENATION -> RESHAPE), fix
    the RESHAPE output shapes the converter left as placeholders, then drop every op
    the graph output does not depend on. Returns the dropped ops."""
    for op in g.operators:
        try:
            val = _fold_value(g, op)
        except (ValueError, IndexError):
            val = None
        if val is not None and len(op.outputs) == 1:
            out = g.tensors[op.outputs[0]]
            out.data, out.shape = val, tuple(val.shape)
            continue
        if op.op in _SAME_SHAPE_OPS and op.inputs and op.inputs[0] >= 0:
            x, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
            if out.size != x.size:
                out.shape = x.shape
        if op.op == "FULLY_CONNECTED" and len(op.inputs) > 1 and min(op.inputs[:2]) >= 0:
            # the converter leaves placeholder output shapes behind dynamic reshapes
            x, w, out = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]], g.tensors[op.outputs[0]]
            if len(w.shape) == 2 and w.shape[1] > 0 and x.size % w.shape[1] == 0:
                rows = x.size // w.shape[1]
                want = (*x.shape[:-1], w.shape[0]) if op.options.get("keep_num_dims") else (rows, w.shape[0])
                if out.size != rows * w.shape[0]:
                    out.shape = tuple(want)
        if op.op == "RESHAPE" and len(op.inputs) > 1 and min(op.inputs[:2]) >= 0:
            shape_t = g.tensors[op.inputs[1]]
            if shape_t.data is not None and shape_t.dtype == "int32":
                new = [int(d) for d in np.asarray(shape_t.data).ravel()]
                n = g.tensors[op.inputs[0]].size
                known = int(np.prod([d for d in new if d != -1], dtype=np.int64)) if new else 1
                if new.count(-1) == 1 and known > 0 and n % known == 0:
                    new[new.index(-1)] = n // known
                if -1 not in new and int(np.prod(new, dtype=np.int64)) == n:
                    g.tensors[op.outputs[0]].shape = tuple(new)
    producer = {o: op for op in g.operators for o in op.outputs}
    needed_ops: set[int] = set()
    stack = list(g.outputs)
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if t in seen or t < 0:
            continue
        seen.add(t)
        op = producer.get(t)
        if op is None or op.index in needed_ops or g.tensors[t].data is not None:
            continue
        needed_ops.add(op.index)
        skip = _SHAPE_ONLY_INPUTS.get(op.op, ())
        for k, i in enumerate(op.inputs):
            if k not in skip:
                stack.append(i)
    dropped = [op for op in g.operators if op.index not in needed_ops]
    g.operators = [op for op in g.operators if op.index in needed_ops]
    return dropped


def float_input_quantize(g: Graph) -> Operator | None:
    """The QUANTIZE that turns a float32 model input into the int8 graph's input (the
    converter's float-interface models), or None: the input is not float or not only that."""
    if len(g.inputs) != 1 or g.input.dtype != "float32":
        return None
    readers = [op for op in g.operators if g.inputs[0] in op.inputs]
    if len(readers) != 1 or readers[0].op != "QUANTIZE" or not readers[0].outputs:
        return None
    q = g.tensor(readers[0].outputs[0])
    return readers[0] if q is not None and q.dtype in ("int8", "int16") and q.quantized and g.inputs[0] not in g.outputs \
        else None


def float_output_dequantize(g: Graph) -> Operator | None:
    """The DEQUANTIZE that turns the int8 graph's result into a float32 model output, or None."""
    if len(g.outputs) != 1 or g.output.dtype != "float32":
        return None
    writers = [op for op in g.operators if g.outputs[0] in op.outputs]
    if len(writers) != 1 or writers[0].op != "DEQUANTIZE" or not writers[0].inputs:
        return None
    d = g.tensor(writers[0].inputs[0])
    readers = [op for op in g.operators if g.outputs[0] in op.inputs]
    return writers[0] if d is not None and d.dtype in ("int8", "int16") and d.quantized and not readers else None


def require_one_input_output(n_inputs: int, n_outputs: int, what: str) -> None:
    """The device firmware (INFER, the monitor) serves a model with one input and one
    output tensor: refuse another, saying what runs it instead."""
    if n_inputs == 1 and n_outputs == 1:
        return
    raise ToolkitError(
        f"{what}: the model has {n_inputs} input{'s' * (n_inputs != 1)} and {n_outputs} "
        f"output{'s' * (n_outputs != 1)}; the device firmware (INFER, the "
        "monitor) serves a model with one input and one output",
        hint="run it on QEMU against tflite-micro with `aiot bench --model MODEL.tflite` (every input filled, "
             "every output compared), or call the generated aiot_model_input_n() / aiot_model_output_n() from "
             "your own firmware (docs/engine.md)")


def check_supported(g: Graph) -> None:
    """Raise ToolkitError unless the engine can compile ``g`` (int8, one subgraph, known ops)."""
    src = g.source
    if g.num_subgraphs != 1:
        raise ToolkitError(
            f"{src}: the model has {g.num_subgraphs} subgraphs; aiot compiles single-subgraph models",
            hint="remove control flow (tf.cond / while loops) from the model before converting it",
        )
    if not g.inputs or not g.outputs:
        raise ToolkitError(f"{src}: the model has {len(g.inputs)} inputs and {len(g.outputs)} outputs",
                           hint="the file is corrupt or was not produced by the TFLite converter; re-export it")
    problem = _float_problem(g)
    if problem:
        raise ToolkitError(
            f"{src}: not a full-int8 model (float or dynamic-range quantized): {problem}",
            hint="quantize it first, from the model it came from: aiot quantize --keras MODEL.keras --data DATA.csv --out PKG (full int8, calibrated on your data)",
        )
    several = len(g.inputs) > 1 or len(g.outputs) > 1
    for role, t in [("input", g.tensors[i]) for i in g.inputs] + [("output", g.tensors[i]) for i in g.outputs]:
        if t.dtype not in ("int8", "int16") and not (role == "input" and float_input_quantize(g)) and not (
                role == "output" and float_output_dequantize(g)):
            raise ToolkitError(
                f"{src}: the model {role} '{t.name}' is {t.dtype}; aiot needs int8 (or, 16x8, int16) inputs and "
                f"outputs (or a float32 input read by one QUANTIZE / output written by one DEQUANTIZE around the "
                f"integer graph, when it is the model's only input / output)"
                + (f"; this model has {len(g.inputs)} inputs and {len(g.outputs)} outputs" if several else ""),
                hint="quantize it with inference_input_type=tf.int8 and inference_output_type=tf.int8 (aiot quantize --keras MODEL.keras --data DATA.csv --out PKG does)",
            )
        if any(d <= 0 for d in t.shape):
            raise ToolkitError(f"{src}: the model {role} '{t.name}' has a dynamic shape {list(t.shape)}",
                               hint="give the Keras Input a fixed shape (batch 1)")
    _check_sizes(g)
    unsupported = [op for op in g.operators if op.op not in SUPPORTED_OPS]
    if unsupported:  # all of them at once, each with its node, type and shapes
        names = list(dict.fromkeys(op.op for op in unsupported))
        image = len(g.input.shape) == 4 and g.input.shape[1] > 1 and g.input.shape[2] > 1
        advice = [_INSTEAD[n] for n in names if n in _INSTEAD and not (image and n == "TRANSPOSE")]
        raise ToolkitError(
            f"{src}: {len(unsupported)} node(s) use ops the aiot int8 engine does not support:\n  "
            + "\n  ".join(f"node {op.index}: {describe_unsupported(g, op)}" for op in unsupported),
            hint="; ".join([*advice, unsupported_hint(g, names)]),
        )
    _check_16x8(g)
    for op in g.operators:
        need = _MIN_INPUTS.get(op.op, 1)
        if len(op.inputs) < need or any(i < 0 for i in op.inputs[:need]) or len(op.outputs) != 1 or op.outputs[0] < 0:
            raise ToolkitError(
                f"{src}: node {op.index} ({op.op}) has {len(op.inputs)} inputs and {len(op.outputs)} outputs "
                f"(needs {need} inputs and 1 output)",
                hint="the file is corrupt or was not produced by the TFLite converter; re-export it",
            )
        act = op.options.get("activation", "NONE")
        # an LSTM's activation is its cell's nonlinearity (its emitter takes TANH only)
        if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1") and op.op != "UNIDIRECTIONAL_SEQUENCE_LSTM":
            raise ToolkitError(
                f"{src}: node {op.index} ({op.op}) has fused activation {act}, which the engine does not support",
                hint="use relu, relu6 or no activation on that layer (a separate tanh/sigmoid layer is fine)",
            )
        if op.options.get("padding", "SAME") not in ("SAME", "VALID"):
            raise ToolkitError(f"{src}: node {op.index} ({op.op}) has an unknown padding type",
                               hint="the file is corrupt; re-export it")
        for k, ti in enumerate(op.inputs + op.outputs):
            t = g.tensor(ti)
            if t is None:
                continue
            # int16: an int8 SVDF's state, or a 16x8 activation (_check_16x8 checked which ops)
            if t.dtype not in ("int8", "int16", "int32", "int64", "float32") and not t.is_const:
                raise ToolkitError(
                    f"{src}: node {op.index} ({op.op}) has {t.dtype} tensor '{t.name}'; the engine runs int8 "
                    "activations (and int16 ones in the 16x8 mode)",
                    hint="quantize with TFLITE_BUILTINS_INT8 (or the 16x8 mode, "
                         "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)",
                )
            if t.quantized and (not np.all(np.isfinite(t.scale)) or np.any(t.scale <= 0)):
                raise ToolkitError(
                    f"{src}: node {op.index} ({op.op}) tensor '{t.name}' has an invalid scale {t.scale[:4].tolist()}",
                    hint="the file is corrupt or was not produced by the TFLite converter; re-export it",
                )
            if t.quantized and t.dtype == "int8" and np.any((t.zero_point < -128) | (t.zero_point > 127)):
                raise ToolkitError(
                    f"{src}: node {op.index} ({op.op}) tensor '{t.name}' has a zero point outside int8",
                    hint="the file is corrupt or was not produced by the TFLite converter; re-export it",
                )
            if not t.is_const and t.dtype == "int8" and not t.quantized:
                raise ToolkitError(
                    f"{src}: node {op.index} ({op.op}) tensor '{t.name}' is int8 without quantization parameters",
                    hint="re-export with full-integer quantization (aiot quantize --keras MODEL.keras --data DATA.csv --out PKG)",
                )
            if not t.is_const and any(d <= 0 for d in t.shape):
                raise ToolkitError(
                    f"{src}: node {op.index} ({op.op}) tensor '{t.name}' has a dynamic shape {list(t.shape)}",
                    hint="give every Keras layer a fixed shape (batch 1)",
                )


def activation_types(g: Graph, op: Operator) -> set[str]:
    """The integer types of a node's activations ("int8", "int16"): an int8 op's own int16
    inputs (SVDF's state and time weights) are not activations."""
    own = _INT16_INPUTS.get(op.op, ())
    ts = (g.tensor(i) for k, i in enumerate((*op.inputs, *op.outputs)) if k not in own)
    return {t.dtype for t in ts if t is not None and not t.is_const and t.dtype in ("int8", "int16")}


def _check_16x8(g: Graph) -> None:
    """Every node with an int16 activation must be one the engine runs in the 16x8 mode;
    the others are listed all at once, each with its node number, types and shapes."""
    bad = []
    for op in g.operators:
        types = activation_types(g, op)
        if "int16" not in types:
            continue
        if op.op not in SUPPORTED_OPS_16:
            bad.append((op, "has no 16x8 kernel in the engine yet"))
        elif types != {"int16"} and op.op != "QUANTIZE":  # only QUANTIZE converts int8 <-> int16
            bad.append((op, "mixes int8 and int16 activations (not TFLite's 16x8 mode)"))
    if not bad:
        return
    raise ToolkitError(
        f"{g.source}: {len(bad)} node(s) have int16 activations (TFLite's 16x8 mode) the aiot engine cannot run:\n  "
        + "\n  ".join(f"node {op.index}: {op.op} {why}; inputs "
                       f"{', '.join(_shape_text(g, i) for i in op.inputs)}; outputs "
                       f"{', '.join(_shape_text(g, i) for i in op.outputs)}" for op, why in bad),
        hint=f"the 16x8 mode runs {', '.join(sorted(SUPPORTED_OPS_16))}; quantize the model to full int8 "
             "(TFLITE_BUILTINS_INT8, as aiot quantize --keras MODEL.keras --data DATA.csv --out PKG does) "
             "to run the other ops")


#: A .tflite is read whole: larger than any board's flash by far, and than any model it can hold.
MAX_TFLITE_BYTES = 64 << 20

#: Bytes per element of the tensor types a model's sizes are checked in (others: 8, the widest).
_ITEM_BYTES = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2, "int32": 4, "float32": 4}


@functools.lru_cache(maxsize=1)
def _largest_board_memory() -> tuple[int, int]:
    """(RAM, flash) bytes of the largest board under boards/: a tensor larger than that cannot
    run anywhere, so it is refused before code generation plans an arena for it. Only the
    memory lengths are read here (aiot.target.boards validates board files; a model does not
    depend on it); a file that does not parse is skipped, MPS2's 4 MB / 4 MB is the floor."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from aiot.paths import BOARDS

    ram = flash = 4 << 20
    for src in sorted(BOARDS.glob("*.toml")):
        try:
            mem = tomllib.loads(src.read_text(encoding="utf-8"))["memory"]
            ram = max(ram, int(mem["ram"]["length"]))
            flash = max(flash, int(mem["flash"]["length"]))
        except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError):
            continue
    return ram, flash


def _check_sizes(g: Graph) -> None:
    """Refuse shapes that cannot fit any board: negative dimensions, and tensors larger than
    the largest board's RAM (activations) or flash (constants)."""
    ram, flash = _largest_board_memory()
    for t in g.tensors:
        if any(d < -1 for d in t.shape):
            raise ToolkitError(f"{g.source}: tensor '{t.name}' has an impossible shape {list(t.shape)}",
                               hint="the file is corrupt or was not produced by the TFLite converter; re-export it")
        if any(d < 0 for d in t.shape):
            continue  # dynamic: refused with its own message below
        nbytes = t.size * _ITEM_BYTES.get(t.dtype, 8)
        limit, where = (flash, "flash") if t.is_const else (ram, "RAM")
        if nbytes > limit:
            raise ToolkitError(
                f"{g.source}: tensor '{t.name}' of shape {list(t.shape)} needs {nbytes:,} bytes, larger than the "
                f"{where} of any board ({limit:,} bytes)",
                hint="the model is far too large for a microcontroller (or the file is corrupt): use fewer "
                     "channels or a shorter window, and check `aiot boards` for the memory of each board")


def load(model: Path | str | bytes, *, check: bool = True) -> Graph:
    """Read a .tflite file (or its bytes); with ``check`` also verify the engine supports it."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, src = bytes(model), "<model bytes>"
    else:
        path = Path(model)
        data, src = read_bytes(path), str(path)
    g = parse(data, src)
    if check:
        fold_shape_computations(g)
        check_supported(g)
    return g


def read_bytes(model: Path | str | bytes) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = Path(model)
    if not path.exists() and not path.is_symlink():
        raise ToolkitError(f"model file not found: {path}", hint="pass the .tflite `aiot quantize --package PKG` wrote (PKG/model.tflite)")
    from aiot.data import check_input_file

    # a FIFO would block for ever, a disk image would be read whole before the identifier check
    check_input_file(path, "a .tflite model file", MAX_TFLITE_BYTES)
    return path.read_bytes()


# -- what the engine cannot compile, said in terms of the model at hand ---------------

#: Custom ops seen in real models: what they are, for the refusal message.
CUSTOM_OPS = {
    "ethos-u": "an Arm Ethos-U NPU command stream (the model was compiled by Vela for an NPU; "
               "give the .tflite from before Vela)",
    "TFLite_Detection_PostProcess": "the SSD detection post-processing custom op",
    "AudioSpectrogram": "an audio front end (spectrogram) custom op",
    "Mfcc": "an audio front end (MFCC) custom op",
    "AudioMicrofrontend": "TFLM's audio microfrontend custom op",
}


def _shape_text(g: Graph, idx: int) -> str:
    t = g.tensor(idx) if idx >= 0 else None
    return "-" if t is None else f"{t.dtype}{list(t.shape)}"


def describe_unsupported(g: Graph, op: Operator) -> str:
    """'<OP> (what it is), inputs int8[1, 2] ..., outputs ...' for one node we cannot compile."""
    name = op.op
    if name.startswith("CUSTOM:"):
        code = name.split(":", 1)[1]
        what = CUSTOM_OPS.get(code, "a custom op (code outside the TFLite op set; no engine can run it "
                                    "without its implementation)")
        name = f"custom op '{code}': {what}"
    else:
        name = f"{name} is not supported by the engine yet"
    ins = ", ".join(_shape_text(g, i) for i in op.inputs)
    outs = ", ".join(_shape_text(g, i) for i in op.outputs)
    return f"{name}; inputs {ins}; outputs {outs}"


def unsupported_hint(g: Graph, unsupported: list[str]) -> str:
    """What to do about unsupported ops, in terms of the model at hand."""
    supported = ", ".join(sorted(SUPPORTED_OPS))
    if any(o.startswith("CUSTOM:") for o in unsupported):
        return ("export the model without custom ops (for Ethos-U: the .tflite before Vela; for audio front "
                "ends: compute the features on the device side and feed the model their output); "
                f"supported ops: {supported}")
    shape = g.input.shape
    if len(shape) == 4 and shape[1] > 1 and shape[2] > 1:  # an image: no (1, time, channels) advice
        return (f"replace {', '.join(unsupported)} in this image model ({list(shape)} NHWC input) with "
                f"supported layers and re-export it (aiot quantize); supported ops: {supported}")
    return (f"replace {', '.join(unsupported)} with supported layers and re-export (aiot quantize); "
            f"supported ops: {supported}")
