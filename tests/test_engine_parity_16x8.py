"""The 16x8 mode (TFLite's int16 activations with int8 weights): small models converted
with EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, every output value
compared with tflite-micro's (host build; one sample on the M4 in QEMU), and the ops the
engine does not run in this mode refused all at once, node by node."""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest

from aiot import codegen
from aiot.codegen.host import HostModel
from aiot.errors import ToolkitError
from aiot.testing import requires_arm, requires_qemu

N_INPUTS = 48


def _input(shape):
    import keras

    return keras.Input(shape, batch_size=1)  # static shapes: no run-time shape arithmetic


def convs_pools_add_mul(L):
    # CONV_2D (SAME, fused RELU), a depthwise with depth multiplier 2 and a stride, a 1x1
    # conv, ADD and MUL of int16 tensors, both poolings, FULLY_CONNECTED, CONCATENATION
    # (with the QUANTIZE the converter puts before it) and RESHAPE.
    import keras

    keras.utils.set_random_seed(31)
    x = _input((6, 7, 3))
    h = L.Conv2D(5, 3, padding="same", activation="relu", bias_initializer="random_normal")(x)
    h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, bias_initializer="random_normal")(h)
    a = L.Conv2D(10, 1, bias_initializer="random_normal")(h)
    s = L.Add()([a, h])
    m = L.Multiply()([s, h])
    p = L.AveragePooling2D(2, padding="same")(m)
    q = L.MaxPooling2D(2, strides=1, padding="same")(p)
    f = L.Flatten()(q)
    d = L.Dense(8, bias_initializer="random_normal", activation="relu")(f)
    e = L.Dense(6, bias_initializer="random_normal")(f)
    return keras.Model(x, L.Dense(4)(L.Concatenate()([d, e])))


def odd_convs(L):
    # A strided 5x5 depthwise (VALID), a dilated conv, a 2x3 kernel with channel counts
    # that are not multiples of four, RELU6, a stride-2 conv without bias.
    import keras

    keras.utils.set_random_seed(32)
    x = _input((11, 9, 5))
    h = L.Conv2D(6, 3, strides=2, padding="same", activation="relu6", bias_initializer="random_normal")(x)
    h = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", bias_initializer="random_normal")(h)
    h = L.Conv2D(7, (2, 3), padding="same", bias_initializer="random_normal")(h)
    h = L.Conv2D(3, 3, strides=2, use_bias=False)(h)
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(h)))


def convs_only(L):
    # CONV_2D alone: with int32 biases (the converter's option) TFLM accumulates it in
    # int32; its DEPTHWISE_CONV_2D and FULLY_CONNECTED read every 16x8 bias as int64.
    import keras

    keras.utils.set_random_seed(35)
    x = _input((7, 6, 4))
    h = L.Conv2D(6, 3, padding="same", activation="relu", bias_initializer="random_normal")(x)
    h = L.Conv2D(5, (2, 3), strides=2, bias_initializer="random_normal")(h)
    return keras.Model(x, L.Conv2D(3, 1, use_bias=False)(h))


def dense_stack(L):
    import keras

    keras.utils.set_random_seed(33)
    x = _input((24,))
    h = L.Dense(16, activation="relu", bias_initializer="random_normal")(x)
    h = L.Dense(12, bias_initializer="random_normal")(h)
    return keras.Model(x, L.Dense(24, bias_initializer="random_normal")(h))


def with_nonlinear_ops(L):
    # LOGISTIC, TANH (table interpolation) and SOFTMAX (exp and reciprocal tables) inside a net.
    import keras

    keras.utils.set_random_seed(34)
    x = _input((10,))
    a = L.Activation("sigmoid")(L.Dense(8, bias_initializer="random_normal")(x))
    b = L.Activation("tanh")(L.Dense(8, bias_initializer="random_normal")(x))
    return keras.Model(x, L.Dense(4, activation="softmax")(L.Concatenate()([a, b])))


def softmax_rows(L):
    import keras

    x = _input((16, 40))
    return keras.Model(x, L.Softmax(axis=-1)(x))


def sigmoid_tanh_of_input(L):
    # The model input straight into LOGISTIC and TANH: every int16 value reaches the tables.
    import keras

    x = _input((1024,))
    return keras.Model(x, L.Concatenate()([L.Activation("sigmoid")(x), L.Activation("tanh")(x)]))


def sub_relu(L):
    # SUB of int16 tensors, a RELU on its own (after a CONCATENATION it cannot fuse into).
    import keras

    keras.utils.set_random_seed(37)
    x = _input((1, 12, 4))
    h = L.Conv2D(4, (1, 3), padding="same", bias_initializer="random_normal")(x)
    c = L.ReLU()(L.Concatenate()([L.Subtract()([h, x]), h]))
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(c)))


def activations_min_max(L):
    # LEAKY_RELU, a RELU6 on its own, MAXIMUM and MINIMUM of int16 tensors.
    import keras

    keras.utils.set_random_seed(38)
    x = _input((1, 12, 4))
    h = L.Conv2D(4, (1, 3), padding="same", bias_initializer="random_normal")(x)
    a = L.LeakyReLU(0.2)(h)
    b = L.Conv2D(4, 1, bias_initializer="random_normal")(x)
    c = L.ReLU(6.0)(L.Concatenate()([a, b]))
    n = L.Minimum()([L.Maximum()([a, b]), h])
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(L.Concatenate()([c, n]))))


def means(L):
    # MEAN over (H, W) and over W alone, straight to the output (through the QUANTIZE and
    # CONCATENATION the converter adds).
    import keras

    keras.utils.set_random_seed(39)
    x = _input((5, 12, 4))
    h = L.Conv2D(6, 1, bias_initializer="random_normal")(x)
    return keras.Model(x, L.Concatenate()([L.GlobalAveragePooling2D()(h), L.Flatten()(keras.ops.mean(h, axis=2))]))


def sums(L):
    # SUM over (H, W) and over W alone (tflite-micro's QuantizedMeanOrSum without the
    # division), into CONCATENATION.
    import keras

    keras.utils.set_random_seed(44)
    x = _input((5, 6, 4))
    h = L.Conv2D(6, 1, bias_initializer="random_normal")(x)
    return keras.Model(x, L.Concatenate()([keras.ops.sum(h, axis=(1, 2)), L.Flatten()(keras.ops.sum(h, axis=2))]))


def shape_ops(L):
    # PAD, TRANSPOSE and STRIDED_SLICE (forward and backward) of int16 tensors: byte walks
    # two bytes per element.
    import keras

    keras.utils.set_random_seed(40)
    x = _input((4, 6, 3))
    h = L.Conv2D(5, 1, bias_initializer="random_normal")(x)
    t = L.Permute((2, 1, 3))(L.ZeroPadding2D(((1, 0), (0, 2)))(h))
    a, b = t[:, 1:6, ::2, :], t[:, ::-1, 1:4, ::-2]
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Concatenate()([L.Flatten()(a), L.Flatten()(b)])))


def wide_windows(L):
    # Speed-mode paths by size: a 3x3 conv over 64 channels (its border windows, 576
    # values, larger than the kernel's stack patch, take the per-tap path; inside pixels
    # rows of 192 values), and a 2,048-input FULLY_CONNECTED whose sums can leave int32
    # (accumulated in 64 bits, 128 pairs at a time).
    import keras

    keras.utils.set_random_seed(43)
    x = _input((4, 8, 64))
    a = L.Flatten()(L.Conv2D(4, 3, padding="same", bias_initializer="random_normal")(x))
    b = L.Dense(5, bias_initializer="random_normal")(L.Flatten()(x))
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Concatenate()([a, b])))


def depthwise_multiplier_3(L):
    # DEPTHWISE_CONV_2D with a depth multiplier of 3 (the speed mode's one-product-at-a-time
    # path) feeding one with multiplier 1 over 9 channels (two groups of four and a tail).
    import keras

    keras.utils.set_random_seed(45)
    x = _input((5, 6, 3))
    h = L.DepthwiseConv2D(3, depth_multiplier=3, padding="same", bias_initializer="random_normal")(x)
    h = L.DepthwiseConv2D(3, strides=2, bias_initializer="random_normal")(h)
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(h)))


def transpose_convs(L):
    # TRANSPOSE_CONV: stride 2 SAME with an int64 bias, stride (1, 3) VALID without bias
    # and with a fused RELU, channel counts that are not multiples of four.
    import keras

    keras.utils.set_random_seed(41)
    x = _input((4, 5, 3))
    h = L.Conv2DTranspose(5, 3, strides=2, padding="same", bias_initializer="random_normal")(x)
    h = L.Conv2DTranspose(3, (2, 3), strides=(1, 3), use_bias=False, activation="relu")(h)
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(h)))


def padv2_output(L):
    # PADV2 with a constant (0.75): the converter leaves a 16x8 model's constant_values
    # float32, which tflite-micro refuses; _int16_pad_value makes it the int16 tflite-micro
    # reads (quantized as the input, as it requires).
    import keras

    keras.utils.set_random_seed(42)
    x = _input((3, 5, 2))
    h = L.Conv2D(3, 1, bias_initializer="random_normal")(x)
    return keras.Model(x, keras.ops.pad(h, [[0, 0], [1, 1], [2, 0], [0, 1]], constant_values=0.75))


def _int16_pad_value(data: bytes) -> tuple[bytes, int]:
    """``data`` with its PADV2's constant_values an int16 tensor of the input's quantization
    (the float value quantized), and that int16 value."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(data, 0))
    sg = m.subgraphs[0]
    op = next(o for o in sg.operators if m.operatorCodes[o.opcodeIndex].builtinCode == s.BuiltinOperator.PADV2)
    x, cv = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[2]]
    assert cv.type == s.TensorType.FLOAT32  # what the converter writes (else this test is moot)
    f = np.frombuffer(bytes(m.buffers[cv.buffer].data), "<f4")[0]
    q = int(np.clip(np.round(f / x.quantization.scale[0]), -32768, 32767))
    cv.type, cv.quantization = s.TensorType.INT16, x.quantization
    m.buffers[cv.buffer].data = np.frombuffer(np.array([q], "<i2").tobytes(), np.uint8)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), q


def split_pack_unpack(L):
    # SPLIT, SPLIT_V, PACK and UNPACK of int16 tensors: the int8 byte copies, two bytes per element.
    import keras

    keras.utils.set_random_seed(51)
    x = _input((4, 6, 6))
    h = L.Conv2D(6, 1, bias_initializer="random_normal")(x)
    a, b, c = keras.ops.split(h, 3, axis=-1)
    d, e = keras.ops.split(h, [1], axis=1)
    s = keras.ops.stack([a, c], axis=2)
    u, v = keras.ops.unstack(b, axis=-1)
    y = L.Concatenate()([L.Flatten()(s), L.Flatten()(d + 0.5 * L.Conv2D(6, 1)(e)[:, :1]), L.Flatten()(v - u)])
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(y))


def abs_squared_difference(L):
    # ABS and SQUARED_DIFFERENCE (plain and broadcast) with int16 activations.
    import keras

    keras.utils.set_random_seed(53)
    x = _input((1, 12, 4))
    h = L.Conv2D(4, (1, 3), padding="same", bias_initializer="random_normal")(x)
    g = L.Conv2D(4, 1)(x)
    a = keras.ops.abs(h)
    d = keras.ops.square(h - g)
    v = keras.ops.square(h - keras.ops.mean(h, axis=2, keepdims=True))
    y = L.Concatenate()([L.Flatten()(a), L.Flatten()(d), L.Flatten()(v)])
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(y))


def rsqrts(L):
    # RSQRT with int16 activations (zero points 0): the int8 arithmetic, int16 clamps.
    import keras

    keras.utils.set_random_seed(55)
    x = _input((1, 12, 4))
    h = L.Conv2D(4, 1, activation="relu", bias_initializer="random_normal")(x)
    r = keras.ops.rsqrt(h + 0.25)
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(L.Concatenate()([r, h]))))


def batch_matmuls(L):
    # BATCH_MATMUL of int16 activations (zero points 0): one with adj_y, one plain; the int64 sum
    # and TFLM's 64-bit requantization.
    import keras

    keras.utils.set_random_seed(57)
    x = _input((3, 8, 4))
    h = L.Conv2D(5, 1, bias_initializer="random_normal")(x)
    g = L.Conv2D(5, 1, activation="relu")(x)
    v = L.Conv2D(3, 1)(x)
    s = keras.ops.matmul(h, keras.ops.swapaxes(g, 2, 3))
    y = keras.ops.matmul(s, v)
    return keras.Model(x, L.Dense(3, bias_initializer="random_normal")(L.Flatten()(y)))


def with_unsupported_ops(L):
    # MIRROR_PAD in int16: tflite-micro has no kernel for it (its MIRROR_PAD runs float32
    # and int8), so there is nothing to be bit-exact with; REDUCE_MAX is not in the engine at all.
    import keras

    keras.utils.set_random_seed(36)
    x = _input((1, 12, 4))
    h = keras.ops.pad(L.Conv2D(4, (1, 3), padding="same")(x), [[0, 0], [0, 0], [1, 2], [0, 0]], mode="reflect")
    return keras.Model(x, L.Dense(3)(L.Flatten()(keras.ops.max(L.Conv2D(4, 1)(h), axis=2))))


# (builder, per-channel weights, int32 biases instead of the converter's int64 ones)
CASES = [(convs_pools_add_mul, True, False), (odd_convs, True, False),
         (convs_only, True, False), (convs_only, True, True), (dense_stack, True, False), (dense_stack, False, False),
         (with_nonlinear_ops, True, False), (softmax_rows, True, False), (sub_relu, True, False),
         (activations_min_max, True, False), (means, True, False), (sums, True, False), (shape_ops, True, False),
         (transpose_convs, True, False), (transpose_convs, False, False), (wide_windows, True, False),
         (depthwise_multiplier_3, True, False), (split_pack_unpack, True, False),
         (abs_squared_difference, True, False), (rsqrts, True, False),
         (batch_matmuls, True, False)]


@pytest.fixture(scope="module")
def recipes():
    pytest.importorskip("tensorflow")
    from aiot.target.bench import load_recipes

    return load_recipes()


def _tflite(recipes, builder, per_channel: bool = True, bias32: bool = False, float_io: bool = False):
    def build() -> bytes:
        import keras

        model = builder(keras.layers)
        shape = tuple(model.inputs[0].shape[1:])
        rep = np.random.default_rng(11).normal(size=(48, *shape)).astype(np.float32) * 1.5
        return recipes.convert_16x8(model, rep, per_channel=per_channel, bias32=bias32, float_io=float_io)

    key = ["parity-16x8", inspect.getsource(builder), per_channel, bias32, inspect.getsource(_input)] + (["float-io"] if float_io else [])
    return recipes.cached_tflite(key, build)


@pytest.mark.parametrize("builder, per_channel, bias32", CASES,
                         ids=[f"{b.__name__}-{'pc' if pc else 'pt'}{'-bias32' if b32 else ''}" for b, pc, b32 in CASES])
def test_16x8_bit_exact_with_tflite_micro(recipes, builder, per_channel, bias32, tmp_path):
    from aiot.model import tflite
    from aiot.model.reference import TflmReference

    path = _tflite(recipes, builder, per_channel, bias32)
    g = tflite.load(path)
    assert (g.input.dtype, g.output.dtype) == ("int16", "int16")
    biases = {g.tensors[op.inputs[2]].dtype for op in g.operators
              if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 2 and op.inputs[2] >= 0}
    if biases:  # the converter made what the case says
        assert biases == ({"int32"} if bias32 else {"int64"})
    res = codegen.generate(path, tmp_path)
    assert res.input_bytes == 2 * g.input.size and res.input_dtype == "int16"
    host, ref = HostModel(tmp_path), TflmReference(path)
    rng = np.random.default_rng(CASES.index((builder, per_channel, bias32)))
    xs = rng.integers(-32768, 32768, size=(N_INPUTS, g.input.size)).astype(np.int16)
    xs[0], xs[1] = -32768, 32767
    xs[2] = rng.integers(-300, 300, size=g.input.size)  # small values: the requantization's low bits
    outs = set()
    for x in xs:
        got = host.invoke(x.view(np.int8)).view("<i2")
        want = ref.invoke(x).ravel()
        np.testing.assert_array_equal(got, want, err_msg=str(res.layers))
        outs.add(got.tobytes())
    assert len(outs) > N_INPUTS // 2  # the outputs vary with the input: not a saturated constant
    if builder is wide_windows:  # its FULLY_CONNECTED takes the 64-bit path, the others the 32-bit one
        fits = re.findall(r"\{ l\d+_mult, l\d+_shift, -?\d+, \d+, [01], 1, ([01]) \}", (tmp_path / "model.c").read_text())
        assert sorted(fits) == ["0", "1", "1"]


@pytest.mark.parametrize("builder", [convs_pools_add_mul, odd_convs], ids=lambda b: b.__name__)
def test_16x8_size_mode_bit_exact(recipes, builder, tmp_path):
    # The cases above run the default speed mode (CONV_2D/FULLY_CONNECTED weights widened
    # to int16); --optimize size keeps the file's int8 weights, another inner loop.
    from aiot.model.reference import TflmReference

    path = _tflite(recipes, builder)
    codegen.generate(path, tmp_path, optimize="size")
    assert "static const int8_t l0_w" in (tmp_path / "model.c").read_text()
    host, ref = HostModel(tmp_path), TflmReference(path)
    xs = np.random.default_rng(7).integers(-32768, 32768, size=(16, int(np.prod(ref.input_shape)))).astype(np.int16)
    for x in xs:
        np.testing.assert_array_equal(host.invoke(x.view(np.int8)).view("<i2"), ref.invoke(x).ravel())


def test_16x8_padv2_with_a_constant_bit_exact(recipes, tmp_path):
    # PADV2's constant in an int16 tensor: every padded element is that int16 value
    from aiot.model.reference import TflmReference

    data, q = _int16_pad_value(_tflite(recipes, padv2_output).read_bytes())
    assert q not in (0, -1) and (q & 0xFF) != (q >> 8) & 0xFF  # two different bytes: no byte fill can do it
    path = tmp_path / "padv2.tflite"
    path.write_bytes(data)
    res = codegen.generate(path, tmp_path / "c")
    assert res.layers[-1] == "PADV2"
    host, ref = HostModel(tmp_path / "c"), TflmReference(path)
    xs = np.random.default_rng(5).integers(-32768, 32768, size=(16, int(np.prod(ref.input_shape)))).astype(np.int16)
    for x in xs:
        got = host.invoke(x.view(np.int8)).view("<i2")
        np.testing.assert_array_equal(got, ref.invoke(x).ravel())
    assert np.count_nonzero(got == q) >= got.size - 3 * 5 * 3  # the padding (all but the 3x5x3 inside) is q


def test_16x8_logistic_and_tanh_bit_exact_on_every_int16_value(recipes, tmp_path):
    from aiot.model.reference import TflmReference

    path = _tflite(recipes, sigmoid_tanh_of_input)
    res = codegen.generate(path, tmp_path)
    assert sorted(res.layers[:2]) == ["LOGISTIC", "TANH"]  # two branches of the input: the converter orders them
    host, ref = HostModel(tmp_path), TflmReference(path)
    every = np.arange(-32768, 32768).astype(np.int16).reshape(64, 1024)
    for x in every:
        np.testing.assert_array_equal(host.invoke(x.view(np.int8)).view("<i2"), ref.invoke(x).ravel())


def test_16x8_float_interface_bit_exact(recipes, tmp_path):
    # The converter's default float32 input/output around the int16 graph: QUANTIZE
    # float32 -> int16 and DEQUANTIZE int16 -> float32 become the generated float entry
    # points; every output bit equals tflite-micro's, rounding ties included.
    from aiot.model import tflite
    from tflite_micro.python.tflite_micro import runtime

    path = _tflite(recipes, dense_stack, float_io=True)
    g = tflite.load(path)
    assert (g.input.dtype, g.output.dtype) == ("float32", "float32")
    res = codegen.generate(path, tmp_path)
    assert (res.float_input, res.float_output, res.input_dtype) == (True, True, "int16")
    assert "QUANTIZE" not in res.layers and "DEQUANTIZE" not in res.layers
    host = HostModel(tmp_path)
    interp = runtime.Interpreter.from_bytes(path.read_bytes())
    rng = np.random.default_rng(23)
    n = g.input.size
    k = rng.integers(-33000, 33000, size=(8, n))
    ties = ((k + 0.5) * np.float64(res.input_scale)).astype(np.float32)
    xs = np.concatenate([rng.normal(size=(24, n)) * 3.0, rng.normal(size=(4, n)) * 1e4, ties,
                         np.nextafter(ties[:4], np.float32(np.inf)), np.zeros((1, n))]).astype(np.float32)
    for x in xs:
        interp.set_input(x.reshape(1, -1), 0)
        interp.invoke()
        want = np.asarray(interp.get_output(0)).ravel()
        got = host.invoke_float(x)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"input {x[:4]}...")


def test_16x8_ops_without_int16_kernels_are_listed_by_node(recipes):
    path = _tflite(recipes, with_unsupported_ops)
    with pytest.raises(ToolkitError) as e:
        codegen.generate(path, "unused")
    msg = e.value.message
    assert "2 node(s) cannot be compiled" in msg and "16x8" in msg  # both problems at once
    assert "node 1: MIRROR_PAD: tflite-micro has no int16 MIRROR_PAD kernel" in msg and "int16[1, 1, 12, 4]" in msg
    assert "REDUCE_MAX is not supported by the engine yet" in msg
    assert "FULLY_CONNECTED" in e.value.hint and "TFLITE_BUILTINS_INT8" in e.value.hint


@requires_arm
@requires_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("builder, float_io, optimize, board", [
    (convs_pools_add_mul, False, "speed", "mps2-an386"), (convs_pools_add_mul, False, "size", "mps2-an386"),
    (with_nonlinear_ops, False, "speed", "mps2-an386"), (shape_ops, False, "speed", "mps2-an386"),
    (transpose_convs, False, "speed", "mps2-an386"), (wide_windows, False, "speed", "mps2-an386"),
    (convs_pools_add_mul, False, "speed", "mps2-an500"), (dense_stack, False, "speed", "mps2-an505"),
    (odd_convs, False, "speed", "mps2-an386"), (split_pack_unpack, False, "speed", "mps2-an386"),
    (abs_squared_difference, False, "speed", "mps2-an386"), (rsqrts, False, "speed", "mps2-an386"),
    (batch_matmuls, False, "speed", "mps2-an386"),
    (dense_stack, True, "speed", "mps2-an386"), (convs_pools_add_mul, False, "speed", "mps2-an385")],
    ids=lambda v: getattr(v, "__name__", str(v)))
def test_16x8_bit_exact_on_a_dsp_core(recipes, builder, float_io, optimize, board, tmp_path):
    # M4 speed: the SMLAD kernel over packed int16 weights (M7 and M33 too); size: the
    # int8-weight loop; the M3 (no DSP extension) runs the portable C the host build
    # checks, compiled for the core
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = _tflite(recipes, builder, float_io=float_io)
    r = bench_model(get_board(board), path, "s16", tmp_path, runs=4, optimize=optimize, profile=False)
    assert r.bit_exact, f"{builder.__name__} (16x8, {optimize}) differs from tflite-micro on {board}"


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_16x8_padv2_with_a_constant_on_a_dsp_core(recipes, tmp_path):
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = tmp_path / "padv2.tflite"
    path.write_bytes(_int16_pad_value(_tflite(recipes, padv2_output).read_bytes())[0])
    r = bench_model(get_board("mps2-an386"), path, "padv2", tmp_path / "b", runs=4, profile=False)
    assert r.bit_exact, "PADV2 (16x8, an int16 constant) differs from tflite-micro on the M4"


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_validate_streams_int16_vectors_through_the_device(recipes, tmp_path):
    # aiot validate on a 16x8 model: seeded int16 vectors over the whole range through the
    # device firmware on the M4 (protocol 1.2: INFO says int16), every int16 output compared
    # with tflite-micro's.
    from click.testing import CliRunner

    from aiot.cli import main

    path = _tflite(recipes, dense_stack)
    res = CliRunner().invoke(main, ["validate", "--model", str(path), "-n", "24", "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rep["device"]["inputs"] == [{"type": 7, "bytes": 48}] and rep["device"]["outputs"] == [{"type": 7, "bytes": 48}]
    assert rep["tensors"]["inputs"][0]["type"] == "int16" and rep["inputs"]["features"] == 24
    assert rep["metrics"]["exact_match_pct"] == 100.0 and rep["metrics"]["vectors"] == 24
    out = np.load(tmp_path / "v" / "outputs.npz")
    assert out["inputs"].dtype == np.int16 and np.abs(out["inputs"]).max() > 127  # int16 values, not int8
    assert out["device"].dtype == np.int16 and np.array_equal(out["device"], out["reference"])
    assert "24 x 24 outputs = 576 int16 outputs" in (tmp_path / "v" / "report.html").read_text()


def test_the_model_as_data_plan_refuses_a_16x8_model(recipes):
    # The plan runs int8 layers: a 16x8 one is refused by node for being int16 (not for its
    # int64 bias, nor serialized with int8 arithmetic had it none).
    from aiot.lifecycle.plan import build_plan

    with pytest.raises(ToolkitError) as e:
        build_plan(_tflite(recipes, dense_stack).read_bytes())
    assert "node 0 is FULLY_CONNECTED with int16 activations (16x8)" in e.value.message
    assert "aiot codegen" in e.value.hint


def test_codegen_says_a_model_is_16x8(recipes, tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    path = _tflite(recipes, dense_stack)
    res = CliRunner().invoke(main, ["codegen", "--model", str(path), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "16x8:    int16 activations; input 48 bytes, output 48 bytes" in res.output
