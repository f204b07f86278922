"""Engine parity suite: many small random int8 models (shapes, strides, padding,
activations, per-tensor and per-channel), every output byte vs tflite-micro."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

from aiot import codegen
from aiot.codegen.host import HostModel
from aiot.paths import MODELS
from aiot.testing import requires_arm, requires_qemu

N_INPUTS = 64


def _recipes():
    spec = importlib.util.spec_from_file_location("aiot_model_recipes", MODELS / "recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Each builder returns (keras model, representative float data). Fixed seeds throughout.
def _seq(input_shape, *layers):
    import keras

    keras.utils.set_random_seed(sum(input_shape) + len(layers))
    return keras.Sequential([keras.Input(input_shape), *layers])


def conv1d_valid(L):
    return _seq((1, 32, 3), L.Conv2D(8, (1, 5), activation="relu"), L.Conv2D(6, (1, 3), padding="same", strides=(1, 2)),
                L.GlobalAveragePooling2D(), L.Dense(4))


def conv2d_same_stride(L):
    return _seq((9, 7, 2), L.Conv2D(5, 3, strides=2, padding="same", activation="relu6"), L.Conv2D(4, (2, 3), padding="same"),
                L.Flatten(), L.Dense(3))


def conv_dilated(L):
    return _seq((1, 40, 2), L.Conv2D(4, (1, 3), dilation_rate=(1, 3), padding="same", activation="relu"),
                L.Conv2D(4, (1, 3), dilation_rate=(1, 2)),
                L.DepthwiseConv2D((1, 3), dilation_rate=(1, 2), padding="same"), L.Flatten(), L.Dense(2))


def depthwise(L):
    return _seq((1, 24, 4), L.DepthwiseConv2D((1, 3), depth_multiplier=2, padding="same", activation="relu"),
                L.DepthwiseConv2D((1, 5), strides=(1, 2)), L.Conv2D(3, 1), L.Flatten(), L.Dense(2))


def depthwise_2d(L):
    return _seq((6, 6, 3), L.DepthwiseConv2D(3, padding="same", activation="relu6"), L.Conv2D(4, 1, activation="relu"),
                L.GlobalAveragePooling2D())


def pools(L):
    return _seq((8, 8, 3), L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                L.AveragePooling2D(3, strides=1, padding="same"), L.MaxPooling2D((2, 3), strides=(1, 2), padding="same"),
                L.Flatten(), L.Dense(3))


def pools_1d(L):
    return _seq((1, 30, 2), L.Conv2D(6, (1, 3)), L.AveragePooling2D((1, 4)), L.MaxPooling2D((1, 2), padding="same"),
                L.Flatten(), L.Dense(2))


def zero_padding(L):
    return _seq((5, 5, 2), L.ZeroPadding2D(((1, 2), (0, 1))), L.Conv2D(3, 3, activation="relu"), L.Flatten(), L.Dense(2))


def dense_acts(L):
    return _seq((12,), L.Dense(10, activation="relu6"), L.Dense(8), L.ReLU(), L.Dense(6), L.ReLU(6.0), L.Dense(5))


def residual_add_sub_mul(L):
    import keras

    keras.utils.set_random_seed(3)
    x = keras.Input((1, 16, 4))
    a = L.Conv2D(4, (1, 3), padding="same", activation="relu")(x)
    b = L.Conv2D(4, (1, 1))(x)
    s = L.Add()([a, b])
    d = L.Subtract()([s, x])
    m = L.Multiply()([d, a])
    y = L.Dense(2)(L.Flatten()(L.ReLU()(m)))
    return keras.Model(x, y)


def broadcast_mul_add(L):
    import keras

    keras.utils.set_random_seed(4)
    x = keras.Input((1, 10, 6))
    h = L.Conv2D(6, (1, 3), padding="same", activation="relu")(x)
    g = L.GlobalAveragePooling2D(keepdims=True)(h)  # (1,1,6): squeeze-excite style gate
    g = L.Dense(6, activation="relu")(g)
    y = L.Multiply()([h, g])
    y = L.Add()([y, g])
    return keras.Model(x, L.Dense(3)(L.Flatten()(y)))


def concat_channels(L):
    import keras

    keras.utils.set_random_seed(5)
    x = keras.Input((1, 12, 3))
    a = L.Conv2D(4, (1, 3), padding="same", activation="relu")(x)
    b = L.Conv2D(2, (1, 5), padding="same")(x)
    c = L.Concatenate(axis=-1)([a, b, x])
    return keras.Model(x, L.Dense(2)(L.Flatten()(c)))


def mean_time_axis(L):
    import keras

    keras.utils.set_random_seed(6)
    x = keras.Input((20, 5))
    h = L.Dense(7, activation="relu")(x)
    m = keras.ops.mean(h, axis=1)
    return keras.Model(x, L.Dense(3)(m))


def sums(L):
    # SUM over the time axis and over (time, channels) of a sensor window: the MEAN kernel
    # without tflite-micro's division by the count
    import keras

    keras.utils.set_random_seed(15)
    x = keras.Input((10, 6))
    h = L.Dense(5, activation="relu")(x)
    return keras.Model(x, L.Dense(3)(L.Concatenate()([keras.ops.sum(h, axis=1), keras.ops.sum(h, axis=(1, 2), keepdims=True)[:, 0]])))


def reshape_squeeze(L):
    return _seq((24,), L.Reshape((1, 8, 3)), L.Conv2D(4, (1, 3), activation="relu"), L.Reshape((24,)), L.Dense(6),
                L.Reshape((2, 3)), L.Dense(2))


def sigmoid_tanh_softmax(L):
    import keras

    keras.utils.set_random_seed(7)
    x = keras.Input((10,))
    h = L.Dense(12)(x)
    a = L.Activation("sigmoid")(h)
    b = L.Activation("tanh")(L.Dense(12)(x))
    y = L.Dense(6, activation="softmax")(L.Concatenate()([a, b]))
    return keras.Model(x, y)


def softmax_rows(L):
    return _seq((4, 9), L.Dense(7), L.Dense(5, activation="tanh"), L.Dense(8), L.Softmax(axis=-1))


def odd_shapes(L):
    # Shapes none of the benchmark models have: odd sizes, asymmetric SAME padding, a
    # dilated depthwise, a 5x5 stride-2 depthwise, channel counts that leave tails after
    # groups of four, a 2x3 kernel on 6 channels (rows not a multiple of 4 bytes).
    return _seq((11, 9, 5), L.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
                L.DepthwiseConv2D(3, dilation_rate=2, padding="same"),
                L.DepthwiseConv2D(5, strides=2, padding="same", activation="relu6"),
                L.Conv2D(7, (2, 3), padding="same"), L.Conv2D(5, 1), L.GlobalAveragePooling2D(), L.Dense(3))


def first_layer_one_channel(L):
    # A keyword-spotting style first layer: one input channel, a tall kernel, stride 2.
    return _seq((20, 8, 1), L.Conv2D(8, (5, 4), strides=2, padding="same", activation="relu"),
                L.DepthwiseConv2D(3, padding="same", activation="relu"), L.Conv2D(8, 1), L.Flatten(), L.Dense(3))


def depthwise_large_kernels(L):
    # 49 taps (7x7, the table path's limit) and 20 channels; then 9x9 (81 taps, beyond it).
    return _seq((6, 7, 20), L.DepthwiseConv2D(7, padding="same", activation="relu"),
                L.DepthwiseConv2D(9, padding="same"), L.GlobalAveragePooling2D(), L.Dense(2))


def minimum_maximum(L):
    import keras

    keras.utils.set_random_seed(8)
    x = keras.Input((1, 12, 4))
    a = L.Conv2D(4, (1, 3), padding="same")(x)
    b = L.Conv2D(4, (1, 1))(x)
    g = L.Dense(4)(L.GlobalAveragePooling2D(keepdims=True)(x))  # (1, 1, 4): broadcast
    h = L.Maximum()([a, b])
    h = L.Minimum()([h, g])
    return keras.Model(x, L.Dense(3)(L.Flatten()(h)))


def transpose_padv2(L):
    import keras

    keras.utils.set_random_seed(9)
    x = keras.Input((4, 6, 3))
    h = L.Conv2D(5, 1, activation="relu")(x)
    h = L.Permute((2, 1, 3))(h)  # TRANSPOSE of H and W
    h = keras.ops.pad(h, [[0, 0], [1, 0], [0, 2], [0, 0]], constant_values=0.75)  # PADV2
    h = L.Conv2D(4, (2, 2))(h)
    h = L.Permute((3, 1, 2))(h)  # channels first
    return keras.Model(x, L.Dense(3)(L.Flatten()(h)))


def strided_slices(L):
    import keras

    keras.utils.set_random_seed(10)
    x = keras.Input((7, 9, 4))
    h = L.Conv2D(6, 1, activation="relu")(x)
    a = h[:, 1:6, ::2, :]  # STRIDED_SLICE: a window, every other column
    b = h[:, ::3, 2:7, 1:5]  # a stride in H, a channel range
    y = L.Concatenate()([L.Flatten()(a), L.Flatten()(b)])
    return keras.Model(x, L.Dense(3)(y))


def leaky_relus(L):
    # alpha below and above 1 (the negative side rescaled by more than the positive one)
    return _seq((1, 14, 3), L.Conv2D(5, (1, 3), padding="same"), L.LeakyReLU(0.1), L.Conv2D(4, (1, 3)),
                L.LeakyReLU(1.7), L.Flatten(), L.Dense(6), L.LeakyReLU(0.3), L.Dense(3))


def mirror_pads(L):
    import keras

    keras.utils.set_random_seed(12)
    x = keras.Input((5, 6, 3))
    h = L.Conv2D(4, 1, activation="relu")(x)
    a = keras.ops.pad(h, [[0, 0], [2, 1], [0, 3], [0, 0]], mode="reflect")  # MIRROR_PAD REFLECT
    a = L.Conv2D(3, 3)(a)
    b = keras.ops.pad(h, [[0, 0], [1, 2], [3, 0], [1, 1]], mode="symmetric")  # SYMMETRIC, channels too
    b = L.Conv2D(3, 3)(b)
    return keras.Model(x, L.Dense(3)(L.Concatenate()([L.Flatten()(a), L.Flatten()(b)])))


def strided_slices_backward(L):
    import keras

    keras.utils.set_random_seed(13)
    x = keras.Input((7, 9, 4))
    h = L.Conv2D(6, 1, activation="relu")(x)
    a = h[:, ::-1, 1:8:3, :]  # rows reversed, a forward stride in W
    b = h[:, 5:0:-2, ::-3, 4:0:-1]  # backward strides in H, W and the channels
    c = h[:, 2, ::-1, 0]  # a shrunk axis, a reversed one
    y = L.Concatenate()([L.Flatten()(a), L.Flatten()(b), L.Flatten()(c)])
    return keras.Model(x, L.Dense(3)(y))


def transpose_convs(L):
    # An upsampling decoder: stride 2 SAME (3x3 and an even 4x4), stride (1, 3) VALID with
    # no bias, channel counts that leave tails. Random biases: zero ones are dropped.
    return _seq((3, 4, 5), L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu",
                                             bias_initializer="random_normal"),
                L.Conv2DTranspose(3, 4, strides=2, padding="same", bias_initializer="random_normal"),
                L.Conv2DTranspose(4, (2, 3), strides=(1, 3), padding="valid", use_bias=False),
                L.GlobalAveragePooling2D(), L.Dense(3))


def transpose_convs_wide(L):
    # A decoder's shapes for the SIMD path: 16 input channels (whole blocks of four), stride
    # 1 SAME (every tap lands), output_padding (an output row no input of the last phase
    # reaches), a VALID (3, 2) kernel with strides (2, 1); 7 and 5 channels leave tails.
    return _seq((4, 4, 16), L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu",
                                              bias_initializer="random_normal"),
                L.Conv2DTranspose(7, 3, strides=1, padding="same", bias_initializer="random_normal"),
                L.Conv2DTranspose(5, (3, 2), strides=(2, 1), padding="valid", output_padding=(1, 0),
                                  bias_initializer="random_normal"),
                L.GlobalAveragePooling2D(), L.Dense(3))


def transpose_conv_1d(L):
    # A time-series decoder: Conv1DTranspose (the converter's EXPAND_DIMS + TRANSPOSE_CONV),
    # stride 2 SAME, then a 2-tap kernel at stride 3 VALID (one output phase in three has no
    # tap: the bias alone), 6 -> 9 -> 4 channels.
    return _seq((12, 6), L.Conv1DTranspose(9, 5, strides=2, padding="same", activation="relu",
                                           bias_initializer="random_normal"),
                L.Conv1DTranspose(4, 2, strides=3, padding="valid", bias_initializer="random_normal"),
                L.Flatten(), L.Dense(3))


def split_pack_unpack(L):
    # SPLIT (channels in three), SPLIT_V (H as 1 + 3), PACK (two of the thirds on a new
    # axis) and UNPACK (one third along its channels, both outputs used): byte copies.
    import keras

    keras.utils.set_random_seed(50)
    x = keras.Input((4, 6, 6))
    h = L.Conv2D(6, 1, activation="relu")(x)
    a, b, c = keras.ops.split(h, 3, axis=-1)
    d, e = keras.ops.split(h, [1], axis=1)
    s = keras.ops.stack([a, c], axis=2)
    u, v = keras.ops.unstack(b, axis=-1)
    y = L.Concatenate()([L.Flatten()(s), L.Flatten()(d + 0.5 * L.Conv2D(6, 1)(e)[:, :1]), L.Flatten()(v - u)])
    return keras.Model(x, L.Dense(3)(y))


def abs_squared_difference(L):
    # ABS (its own output scale), SQUARED_DIFFERENCE of two activations and, broadcast, of
    # an activation and its mean over time (a variance's numerator).
    import keras

    keras.utils.set_random_seed(52)
    x = keras.Input((1, 12, 4))
    h = L.Conv2D(4, (1, 3), padding="same")(x)
    g = L.Conv2D(4, 1)(x)
    a = keras.ops.abs(h)
    d = keras.ops.square(h - g)
    v = keras.ops.square(h - keras.ops.mean(h, axis=2, keepdims=True))
    return keras.Model(x, L.Dense(3)(L.Concatenate()([L.Flatten()(a), L.Flatten()(d), L.Flatten()(v)])))


def rsqrts(L):
    # RSQRT of a non-negative activation (a ReLU plus one, its own scale): TFLM's
    # Newton-Raphson inverse square root per value, then two rescalings.
    import keras

    keras.utils.set_random_seed(54)
    x = keras.Input((1, 12, 4))
    h = L.Conv2D(4, 1, activation="relu", bias_initializer="random_normal")(x)
    r = keras.ops.rsqrt(h + 0.25)
    return keras.Model(x, L.Dense(3)(L.Flatten()(L.Concatenate()([r, h]))))


def batch_matmuls(L):
    # BATCH_MATMUL of two activations: attention-like scores h g^T per row of H (a batch
    # dimension, adj_y), then the scores times a third activation; and a constant [6, 8]
    # matrix times each row's activation (a constant lhs, broadcast over the batch).
    import keras

    keras.utils.set_random_seed(56)
    x = keras.Input((3, 8, 4))
    h = L.Conv2D(5, 1, bias_initializer="random_normal")(x)
    g = L.Conv2D(5, 1, activation="relu")(x)
    v = L.Conv2D(3, 1)(x)
    s = keras.ops.matmul(h, keras.ops.swapaxes(g, 2, 3))  # [3, 8, 8]
    y = keras.ops.matmul(s, v)  # [3, 8, 3]
    c = keras.ops.matmul(np.random.default_rng(5).normal(size=(6, 8)).astype(np.float32), v)  # [3, 6, 3]
    return keras.Model(x, L.Dense(3)(L.Concatenate()([L.Flatten()(y), L.Flatten()(c)])))


BUILDERS = [sigmoid_tanh_softmax, softmax_rows, conv1d_valid, conv2d_same_stride, conv_dilated, depthwise,
            depthwise_2d, pools, pools_1d, zero_padding, dense_acts, residual_add_sub_mul, broadcast_mul_add, concat_channels, mean_time_axis, reshape_squeeze,
            odd_shapes, first_layer_one_channel, depthwise_large_kernels, minimum_maximum,
            transpose_padv2, strided_slices, leaky_relus, mirror_pads, strided_slices_backward,
            transpose_convs, transpose_convs_wide, transpose_conv_1d, sums, split_pack_unpack,
            abs_squared_difference, rsqrts, batch_matmuls]
# Per-tensor weights only change the multiplier arrays: cover them on the weight-bearing families.
PER_TENSOR = [conv1d_valid, conv2d_same_stride, depthwise, dense_acts, residual_add_sub_mul, sigmoid_tanh_softmax,
              transpose_convs]
CASES = [(b, True) for b in BUILDERS] + [(b, False) for b in PER_TENSOR]
# Keras emits run-time shape arithmetic (SHAPE, GATHER, REDUCE_PROD, PACK) around these
# reshapes with a dynamic batch; tflite-micro cannot allocate such graphs, the engine folds them.
DYNAMIC_SHAPES = [broadcast_mul_add, mean_time_axis, reshape_squeeze, softmax_rows,
                  conv_dilated, odd_shapes, minimum_maximum, transpose_padv2, strided_slices, mirror_pads,
                  strided_slices_backward, transpose_convs, transpose_convs_wide,
                  transpose_conv_1d, sums, batch_matmuls]  # dilated convs turn into SPACE_TO_BATCH_ND with a dynamic batch
# Converted twice these two get identical calibration, so the static graph is an oracle.
FOLD_ORACLE = [broadcast_mul_add, mean_time_axis]


def _rep_data(model) -> np.ndarray:
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(11).normal(size=(48, *shape)).astype(np.float32) * 1.5


# Part of every conversion's key: the committed conversions (tests/fixtures/converted) must
# not outlive a change to how the models are made.
_MAKERS = inspect.getsource(_seq) + inspect.getsource(_rep_data)


@pytest.fixture(scope="module")
def recipes():
    pytest.importorskip("tensorflow")
    return _recipes()


def _tflite(recipes, builder, per_channel: bool, batch1: bool):
    def build() -> bytes:
        import keras

        model = builder(keras.layers)
        return recipes.convert_int8(model, _rep_data(model), per_channel=per_channel, batch1=batch1)

    return recipes.cached_tflite(["parity", inspect.getsource(builder), per_channel, batch1, _MAKERS], build)


def test_a_committed_conversion_is_what_the_converter_makes_now(recipes, tmp_path, monkeypatch):
    """The suite takes the models it converts from tests/fixtures/converted when they were
    made by this TensorFlow and this converter code (models/recipes.py, SEED_ENV): one of
    them, converted again here, must come out byte for byte the same."""
    import os

    seeds = Path(os.environ[recipes.SEED_ENV]) / recipes.converter_fingerprint()
    if not seeds.is_dir():
        pytest.skip(f"no committed conversions for this TensorFlow and converter ({seeds.name}): the suite "
                    "converts every model; refresh them as tests/fixtures/converted/README.md says")
    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "seeded"))
    committed = _tflite(recipes, dense_acts, False, False)
    monkeypatch.delenv(recipes.SEED_ENV)
    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "converted"))
    converted = _tflite(recipes, dense_acts, False, False)
    # The same model but for its weights and ranges: Keras draws a model's initial weights
    # from a generator that set_random_seed does not reset, so they depend on what the
    # process built before (already so for the conversions cached in one run).
    assert _structure(committed) == _structure(converted), \
        "the committed conversion differs from the converter's: refresh tests/fixtures/converted (its README)"


def _structure(path: Path) -> tuple:
    """What a .tflite says but its values: ops and their options, wiring, shapes, types, which
    tensors are constants and how each is quantized (per tensor or per channel, along which axis)."""
    from aiot.model import tflite

    g = tflite.load(path, check=False)
    return (g.inputs, g.outputs, g.num_subgraphs,
            [(op.op, op.inputs, op.outputs, repr(sorted(op.options.items())), op.version) for op in g.operators],
            [(t.shape, t.dtype, t.data is None, None if t.scale is None else len(t.scale), t.quantized_dimension,
              t.is_variable) for t in g.tensors])


def _compare(model_path, ref_path, tmp_path, seed: int, **gen) -> list[str]:
    """Every output bit of the host build against tflite-micro's: int8 vectors (the
    extremes included; int16 ones for a 16x8 model), or for a float-input model float ones (_float_inputs: ties, a hair
    either side, far out of range); a float output compared as float32 bits."""
    from aiot.model.reference import TflmReference

    res = codegen.generate(model_path, tmp_path, **gen)
    host, ref = HostModel(tmp_path), TflmReference(ref_path)
    int16 = res.input_dtype == "int16"  # the 16x8 mode: int16 vectors, their bytes to the host build
    if res.float_input:
        xs = _float_inputs(res.input_scale, res.input_zero_point, res.input_bytes)
    elif int16:
        rng = np.random.default_rng(seed)
        xs = rng.integers(-32768, 32768, size=(N_INPUTS, res.input_bytes // 2)).astype(np.int16)
        xs[0], xs[1] = -32768, 32767
        xs[2:4] = rng.integers(-300, 300, size=(2, res.input_bytes // 2))  # small values: the low bits
    else:
        xs = np.random.default_rng(seed).integers(-128, 128, size=(N_INPUTS, res.input_bytes), dtype=np.int8)
        xs[0], xs[1] = -128, 127
    for x in xs:
        if int16:
            got = host.invoke(x.view(np.int8)).view("<i2")
        else:
            got = host.invoke_float(x) if res.float_input or res.float_output else host.invoke(x)
        want = ref.invoke(x).ravel()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=f"{res.layers}, input {x[:4]}...")
    return res


@pytest.mark.parametrize("builder, per_channel", CASES, ids=[f"{b.__name__}-{'pc' if pc else 'pt'}" for b, pc in CASES])
def test_parity_with_tflite_micro(recipes, builder, per_channel, tmp_path):
    batch1 = builder in DYNAMIC_SHAPES
    path = _tflite(recipes, builder, per_channel, batch1)
    res = _compare(path, path, tmp_path, seed=BUILDERS.index(builder))
    if per_channel:  # the static plan must never need more than TFLM's tensor arena
        from aiot.model.reference import tflm_arena_usage

        assert res.arena_bytes <= tflm_arena_usage(path)["head"]


@pytest.mark.parametrize("builder", FOLD_ORACLE, ids=[b.__name__ for b in FOLD_ORACLE])
def test_dynamic_batch_shape_arithmetic_is_folded(recipes, builder, tmp_path):
    # Same weights and calibration, converted twice: the engine runs the dynamic-batch
    # graph (shape ops folded away) and must match tflite-micro on the static one.
    from aiot.model import tflite

    dynamic = _tflite(recipes, builder, True, False)
    static = _tflite(recipes, builder, True, True)
    ops = {op.op for op in tflite.load(dynamic, check=False).operators}
    assert "SHAPE" in ops
    layers = _compare(dynamic, static, tmp_path, seed=100 + BUILDERS.index(builder)).layers
    assert "SHAPE" not in layers and "PACK" not in layers


# The cases above run the default speed mode (int16 weights). The packed int8 kernels of
# the size mode, on the families with FULLY_CONNECTED and CONV_2D (border pixels included).
SIZE_MODE = [(conv2d_same_stride, True), (dense_acts, True), (conv1d_valid, False), (odd_shapes, True),
             (depthwise_large_kernels, True)]


@pytest.mark.parametrize("builder, per_channel", SIZE_MODE,
                         ids=[f"{b.__name__}-{'pc' if pc else 'pt'}" for b, pc in SIZE_MODE])
def test_parity_size_mode(recipes, builder, per_channel, tmp_path):
    path = _tflite(recipes, builder, per_channel, builder in DYNAMIC_SHAPES)
    _compare(path, path, tmp_path, seed=200 + BUILDERS.index(builder), optimize="size")
    assert "aiot_rq_ch_t" in (tmp_path / "model.c").read_text()  # the fast requantization ran


# The generator uses the generic requantization (SRDHM + rounding shift at run time) only
# where it cannot prove the fast form exact; these small models always qualify, so force
# the generic tables to keep that path checked in both modes.
GENERIC_RQ = [(conv2d_same_stride, True, "speed"), (dense_acts, False, "size")]


@pytest.mark.parametrize("builder, per_channel, optimize", GENERIC_RQ,
                         ids=[f"{b.__name__}-{'pc' if pc else 'pt'}-{o}" for b, pc, o in GENERIC_RQ])
def test_parity_generic_requantization(recipes, builder, per_channel, optimize, tmp_path, monkeypatch):
    from aiot.codegen import ops

    monkeypatch.setattr(ops, "FAST_REQUANT_LIMIT", 0)
    path = _tflite(recipes, builder, per_channel, builder in DYNAMIC_SHAPES)
    _compare(path, path, tmp_path, seed=300 + BUILDERS.index(builder), optimize=optimize)
    assert "aiot_rq_ch_t" not in (tmp_path / "model.c").read_text()


# The host build runs the portable C; the SIMD kernels (tap tables, stack patches, the
# assembly loops) only run on a DSP core. The odd shapes there, both weight layouts.
# (first_layer_one_channel's size build adds no path the others do not cover.)
QEMU_ODD = [(odd_shapes, "speed"), (odd_shapes, "size"), (first_layer_one_channel, "speed"),
            (depthwise_large_kernels, "speed"), (depthwise_large_kernels, "size"),
            # the newer ops, one sample each on the device build
            (minimum_maximum, "speed"), (transpose_padv2, "speed"), (strided_slices, "speed"),
            (leaky_relus, "speed"), (mirror_pads, "speed"), (strided_slices_backward, "speed"),
            (transpose_convs, "speed"), (transpose_convs_wide, "speed"), (transpose_conv_1d, "speed"),
            (transpose_convs_wide, "size"), (split_pack_unpack, "speed"),
            (abs_squared_difference, "speed"), (rsqrts, "speed"), (batch_matmuls, "speed")]


def transpose_conv_many_channels(L):
    # 3x3 stride 1 over 96 channels: a pixel's three runs would read 864 input bytes, past
    # the SIMD kernel's 768-byte stack copy, so the int8 gather runs it
    return _seq((3, 3, 96), L.Conv2DTranspose(4, 3, strides=1, padding="same", bias_initializer="random_normal"),
                L.Flatten(), L.Dense(2))


def test_transpose_conv_past_the_patch_takes_the_int8_gather(recipes, tmp_path):
    path = _tflite(recipes, transpose_conv_many_channels, True, True)
    _compare(path, path, tmp_path, seed=710)
    c = (tmp_path / "model.c").read_text()
    assert c.count("aiot_transpose_conv_s8(") == 1 and "aiot_transpose_conv_s8_wide(" not in c


TCONV_KERNELS = {"speed": "aiot_transpose_conv_s8_wide(", "size": "aiot_transpose_conv_s8_packed("}


@pytest.mark.parametrize("builder", [transpose_convs_wide, transpose_conv_1d, transpose_convs])
@pytest.mark.parametrize("optimize", ["speed", "size"])
def test_transpose_conv_takes_the_simd_kernel(recipes, builder, optimize, tmp_path):
    # By output phase in both modes: speed over widened weights (aiot_dot4_wide), size over
    # packed int8 ones (aiot_dot4_s8, SXTB16 + SMLAD on DSP cores); never the int8 gather.
    path = _tflite(recipes, builder, True, True)
    res = _compare(path, path, tmp_path, seed=700 + (optimize == "size"), optimize=optimize)
    n = res.layers.count("TRANSPOSE_CONV")
    assert n >= 2
    c = (tmp_path / "model.c").read_text()
    assert c.count(TCONV_KERNELS[optimize]) == n
    assert c.count("aiot_transpose_conv_s8(") == 0


@requires_arm
@requires_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("builder, optimize", QEMU_ODD, ids=[f"{b.__name__}-{o}" for b, o in QEMU_ODD])
def test_odd_shapes_bit_exact_on_a_dsp_core(recipes, builder, optimize, tmp_path):
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = _tflite(recipes, builder, True, builder in DYNAMIC_SHAPES)
    r = bench_model(get_board("mps2-an386"), path, builder.__name__, tmp_path, runs=4, optimize=optimize,
                    profile=False)
    assert r.bit_exact, f"{builder.__name__} ({optimize}) differs from tflite-micro on the M4"


# Float interface: the converter's default when inference_input/output_type are left
# float32 wraps the int8 graph in QUANTIZE (input) and DEQUANTIZE (output). The engine
# keeps the int8 core and generates the two edges as C entry points; every output bit
# must equal tflite-micro's on the float model.
FLOAT_EDGES = [("float32", "float32"), ("float32", "int8"), ("int8", "float32")]


def _dense_for_float_edges(L):
    return _seq((12,), L.Dense(10, activation="relu"), L.Dense(8), L.Dense(5))


def _float_interface_tflite(recipes, input_type: str, output_type: str, builder=_dense_for_float_edges):
    def build() -> bytes:
        import keras
        import tensorflow as tf

        recipes._tf()
        model = builder(keras.layers)
        rep = _rep_data(model)
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
        conv.inference_input_type = getattr(tf, input_type)
        conv.inference_output_type = getattr(tf, output_type)
        return conv.convert()

    key = ["parity-float-edges", input_type, output_type, _MAKERS]
    return recipes.cached_tflite(key if builder is _dense_for_float_edges else key + [inspect.getsource(builder)], build)


def _float_inputs(scale: float, zero_point: int, size: int) -> np.ndarray:
    """Random floats over the input range and far beyond it, values a hair either side
    of a rounding tie ((k + 1/2) * scale in float32), exact ties, and zeros."""
    rng = np.random.default_rng(21)
    xs = [rng.normal(size=(40, size)) * 3.0, rng.normal(size=(4, size)) * 1e4]
    k = rng.integers(-140, 140, size=(12, size)) - zero_point
    ties = ((k + 0.5) * np.float64(scale)).astype(np.float32)
    xs += [ties, np.nextafter(ties[:3], np.float32(np.inf)), np.nextafter(ties[3:6], np.float32(-np.inf)),
           np.zeros((1, size))]
    return np.concatenate(xs).astype(np.float32)


@pytest.mark.parametrize("input_type, output_type", FLOAT_EDGES, ids=[f"{i}-{o}" for i, o in FLOAT_EDGES])
def test_float_interface_bit_exact(recipes, input_type, output_type, tmp_path):
    from aiot.model import tflite

    path = _float_interface_tflite(recipes, input_type, output_type)
    g = tflite.load(path)
    assert (g.input.dtype, g.output.dtype) == (input_type, output_type)
    res = _compare(path, path, tmp_path, seed=22)
    assert (res.float_input, res.float_output) == (input_type == "float32", output_type == "float32")
    assert "QUANTIZE" not in res.layers and "DEQUANTIZE" not in res.layers  # the core stays int8


# Parity families with the converter's default float interface: convolutions and
# depthwise (with average pooling) between a float input and a float output.
FLOAT_FAMILIES = [conv2d_same_stride, depthwise_2d]


@pytest.mark.parametrize("builder", FLOAT_FAMILIES, ids=[b.__name__ for b in FLOAT_FAMILIES])
def test_parity_float_interface_families(recipes, builder, tmp_path):
    path = _float_interface_tflite(recipes, "float32", "float32", builder)
    res = _compare(path, path, tmp_path, seed=600 + BUILDERS.index(builder))
    assert res.float_input and res.float_output and res.layers[0] in ("CONV_2D", "DEPTHWISE_CONV_2D")


def test_float_input_nan_reads_as_zero_and_infinities_saturate(recipes, tmp_path):
    # Outside what TFLM defines (its float -> int cast of NaN is undefined in C; on a
    # Cortex-M it gives 0): a NaN reading quantizes to the zero point, like 0.0, and the
    # infinities to the int8 extremes, like the largest finite values.
    path = _float_interface_tflite(recipes, "float32", "float32")
    codegen.generate(path, tmp_path)
    host = HostModel(tmp_path)
    x = np.linspace(-2, 2, 12, dtype=np.float32)
    for bad, same in ((np.nan, 0.0), (np.inf, 3e38), (-np.inf, -3e38)):
        a, b = x.copy(), x.copy()
        a[3], b[3] = bad, same
        np.testing.assert_array_equal(host.invoke_float(a), host.invoke_float(b))


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_float_interface_bit_exact_on_a_dsp_core(recipes, tmp_path):
    # The bench firmware drives a float-interface model through its float entry points
    # (float inputs in, float32 output bytes out), compared with tflite-micro on the same floats.
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = _float_interface_tflite(recipes, "float32", "float32")
    r = bench_model(get_board("mps2-an386"), path, "float_edges", tmp_path, runs=4, profile=False)
    header = (tmp_path / "c" / "model.h").read_text()
    assert "#define AIOT_MODEL_FLOAT_INPUT 1" in header and "#define AIOT_MODEL_FLOAT_OUTPUT 1" in header
    assert r.bit_exact, "the float edges differ from tflite-micro on the M4"


# Several inputs and outputs: a sensor window and a feature vector in; a class score and
# an embedding out, the embedding also read by a later layer (an output that must stay
# alive past its readers). The converter orders inputs and outputs its own way; the engine,
# the host build, the bench firmware and tflite-micro all take them in the .tflite's order.
def _two_in_two_out_tflite(recipes):
    def build() -> bytes:
        import keras
        import tensorflow as tf

        recipes._tf()
        L = keras.layers
        keras.utils.set_random_seed(15)
        a = keras.Input((1, 12, 3), batch_size=1, name="window")
        b = keras.Input((6,), batch_size=1, name="features")
        h = L.Conv2D(4, (1, 3), padding="same", activation="relu")(a)
        g = L.Reshape((1, 1, 4))(L.Dense(4)(b))
        emb = L.Dense(5, name="embedding")(L.Flatten()(L.Multiply()([h, g])))
        score = L.Dense(3, name="score")(L.Concatenate()([emb, b]))
        model = keras.Model([a, b], [score, emb])
        rng = np.random.default_rng(11)
        rep = [rng.normal(size=(48, 1, 1, 12, 3)).astype(np.float32), rng.normal(size=(48, 1, 6)).astype(np.float32)]
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = lambda: ({"window": rep[0][i], "features": rep[1][i]} for i in range(48))
        conv.inference_input_type = conv.inference_output_type = tf.int8
        return conv.convert()

    return recipes.cached_tflite(["parity-two-in-two-out"], build)


def test_two_inputs_two_outputs_bit_exact(recipes, tmp_path):
    from aiot.model import tflite

    path = _two_in_two_out_tflite(recipes)
    g = tflite.load(path)
    assert (len(g.inputs), len(g.outputs)) == (2, 2)
    res = _compare(path, path, tmp_path, seed=500)
    sizes_in = [int(np.prod(g.tensors[i].shape)) for i in g.inputs]
    sizes_out = [int(np.prod(g.tensors[i].shape)) for i in g.outputs]
    assert sorted(sizes_in) == [6, 36] and sorted(sizes_out) == [3, 5]
    assert [int(np.prod(s)) for s in res.input_shapes] == sizes_in and res.input_bytes == 42
    header = (tmp_path / "model.h").read_text()
    assert "#define AIOT_MODEL_NUM_INPUTS 2u" in header and "#define AIOT_MODEL_NUM_OUTPUTS 2u" in header
    host = HostModel(tmp_path)
    assert host.input_sizes == sizes_in and host.output_sizes == sizes_out
    # each input really is read: changing one input alone changes what comes out
    x = np.random.default_rng(501).integers(-128, 128, size=42, dtype=np.int8)
    for lo, hi in ((0, sizes_in[0]), (sizes_in[0], 42)):
        y = x.copy()
        y[lo:hi] = -y[lo:hi] - 1
        assert not np.array_equal(host.invoke(x), host.invoke(y))


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_two_inputs_two_outputs_bit_exact_on_a_dsp_core(recipes, tmp_path):
    # The bench firmware fills every input (one LCG stream, in the .tflite's order) and
    # prints every output; compared with tflite-micro fed the same inputs.
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = _two_in_two_out_tflite(recipes)
    r = bench_model(get_board("mps2-an386"), path, "two_in_two_out", tmp_path, runs=4, profile=False)
    assert r.bit_exact, "the two-input, two-output model differs from tflite-micro on the M4"


class _Flatbuffer:
    """A one-subgraph .tflite written with TensorFlow's flatbuffer schema, for ops the
    converter of this environment does not make (SVDF, the fused LSTM)."""

    def __init__(self, *builtins: int):
        from tensorflow.lite.python import schema_py_generated as s

        self.s, self.model, self.sg = s, s.ModelT(), s.SubGraphT()
        self.model.version, self.model.buffers, self.model.subgraphs = 3, [s.BufferT()], [self.sg]
        self.sg.tensors, self.sg.operators, self.model.operatorCodes = [], [], []
        for builtin in builtins:
            code = s.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = builtin
            code.version = 1
            self.model.operatorCodes.append(code)

    def tensor(self, shape, dtype, scale=None, zp=0, data=None, variable=False) -> int:
        s, sg = self.s, self.sg
        t = s.TensorT()
        t.shape, t.type, t.name, t.isVariable = np.array(shape, np.int32), dtype, f"t{len(sg.tensors)}", variable
        if scale is not None:
            t.quantization = s.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [scale], [zp]
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            t.buffer = len(self.model.buffers)
            self.model.buffers.append(b)
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int, options) -> None:
        op = self.s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.sg.operators.append(op)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        self.sg.inputs, self.sg.outputs = inputs, outputs
        b = flatbuffers.Builder(4096)
        b.Finish(self.model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _svdf_tflite(wide: bool, second_bias: bool = True) -> bytes:
    """Two stacked SVDF layers (rank 2, then rank 1), int8
    input and output, int8 or (wide) int16 state and time weights, random weights. The
    TFLite converter makes no SVDF from Keras layers (TFLM's SVDF models come from the old
    TF1 converter), so the file is written with TensorFlow's flatbuffer schema."""
    from tensorflow.lite.python import schema_py_generated as s

    rng = np.random.default_rng(16 + wide)
    fb = _Flatbuffer(s.BuiltinOperator.SVDF)
    tensor = fb.tensor
    T8, T16, T32 = s.TensorType.INT8, s.TensorType.INT16, s.TensorType.INT32
    st_type, st_dtype = (T16, "<i2") if wide else (T8, "i1")
    st_s, wt_s, wt_max, st_zp = (5e-4, 2e-4, 3000, 0) if wide else (0.02, 0.01, 127, 4)

    def svdf(x: int, n_in: int, in_s: float, filters: int, rank: int, memory: int, out_s: float, out_zp: int,
             with_bias: bool) -> int:
        units = filters // rank
        wf = tensor([filters, n_in], T8, 0.0005, 0, rng.integers(-127, 128, (filters, n_in)).astype("i1"))
        wt = tensor([filters, memory], st_type, wt_s, 0,
                    rng.integers(-wt_max, wt_max + 1, (filters, memory)).astype(st_dtype))
        b = tensor([units], T32, float(np.float32(st_s) * np.float32(wt_s)), 0,
                   rng.integers(-500, 500, units).astype("<i4")) if with_bias else -1
        state = tensor([1, memory * filters], st_type, st_s, st_zp, variable=True)
        out = tensor([1, units], T8, out_s, out_zp)
        options = s.SVDFOptionsT()
        options.rank = rank
        fb.op(0, [x, wf, wt, b, state], [out], s.BuiltinOptions.SVDFOptions, options)
        return out

    x = tensor([1, 10], T8, 0.05, -3)
    h = svdf(x, 10, 0.05, 8, 2, 6, 0.03, -2, True)
    y = svdf(h, 4, 0.03, 3, 1, 5, 0.002 if wide else 0.02, 1, second_bias)
    return fb.finish([x], [y])


@pytest.mark.parametrize("wide", [False, True], ids=["int8-state", "int16-state"])
def test_svdf_bit_exact(recipes, wide, tmp_path):
    # 64 inferences in a row on one interpreter and one host build: the state carries over
    model = _svdf_tflite(wide)
    res = _compare(model, model, tmp_path, seed=700 + wide)
    assert res.layers == ["SVDF", "SVDF"]
    host = HostModel(tmp_path)  # the same library again: aiot_model_reset put the state back
    x = np.random.default_rng(702).integers(-128, 128, 10).astype(np.int8)
    runs = [host.invoke(x) for _ in range(5)]
    assert len({y.tobytes() for y in runs}) > 1  # the same input, other outputs: the memory counts
    host.lib.aiot_model_reset()
    assert np.array_equal(runs[0], host.invoke(x))


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_svdf_bit_exact_on_a_dsp_core(tmp_path):
    # the bench firmware's runs follow one another from the reset state, as tflite-micro's
    # do; the int8 state (the int16 one runs the same C; the host build checks both)
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = tmp_path / "svdf.tflite"
    path.write_bytes(_svdf_tflite(False))
    r = bench_model(get_board("mps2-an386"), path, "svdf", tmp_path / "b", runs=8, profile=False)
    assert r.bit_exact, "SVDF differs from tflite-micro on the M4"


def test_svdf_without_bias_is_refused_by_node(tmp_path):
    # tflite-micro's int8 SVDF reads the bias's scale in Prepare (it crashes without one):
    # with no reference to be bit-exact with, the engine refuses it
    from aiot.errors import ToolkitError

    with pytest.raises(ToolkitError) as e:
        codegen.generate(_svdf_tflite(False, second_bias=False), tmp_path)
    assert "node 1 (SVDF)" in e.value.message and "bias" in e.value.message


def _lstm_tflite(recipes, units: int, n_in: int, steps: int, *, sequences: bool = True, time_major: bool = False,
                 batches: int = 1, cell_clip: float = 0.0, cell_power: int | None = None,
                 variants: tuple[str, ...] = (), int16: bool = False) -> tuple[bytes, object, np.ndarray]:
    """A Keras LSTM's float weights as an int8 UNIDIRECTIONAL_SEQUENCE_LSTM (int16 cell
    state), quantized from a representative dataset (a float forward pass gives the
    input, hidden and cell ranges), plus a STRIDED_SLICE of the last step when not
    ``sequences`` (what the converter emits for return_sequences=False); ``cell_power``
    sets the cell state's scale to 2^cell_power instead of the calibrated one. Returns (file,
    keras model, representative data). Written with TensorFlow's flatbuffer schema, so the
    shapes, layouts and scales are the test's to choose: the converter makes no fused LSTM
    from a Keras 3 layer (it lowers keras.layers.LSTM to a WHILE loop and its int8
    calibrator crashes on it, tensorflow/tensorflow#101050); converter-made files from
    tf_keras layers are the fixtures of test_lstm_converter_files_bit_exact. ``variants`` ("peephole", "projection", "layer_norm", "cifg") add what
    tflite-micro's kernel refuses. ``int16``: the 16x8 flavour (int16 input, hidden state and
    output, symmetric with zero point 0, int64 biases; weights and cell state as in int8),
    which the converter refuses for an LSTM but tflite-micro runs."""
    import keras
    from tensorflow.lite.python import schema_py_generated as s

    recipes._tf()
    keras.utils.set_random_seed(units * 7 + n_in + steps)
    model = keras.Sequential([keras.Input((steps, n_in)), keras.layers.LSTM(units, return_sequences=True)])
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in model.layers[0].get_weights())
    rep = np.random.default_rng(23).normal(size=(48, batches, steps, n_in)) * 1.5

    def sig(v):
        return 1 / (1 + np.exp(-v))

    h_all, c_all = [], []
    for seq in rep:  # Keras gate order i, f, c, o; the state carries over from one sequence to the next
        h, c = np.zeros((batches, units)), np.zeros((batches, units))
        for t in range(steps):
            z = seq[:, t] @ kernel + h @ recurrent + bias
            i, f, g, o = sig(z[:, :units]), sig(z[:, units:2 * units]), np.tanh(z[:, 2 * units:3 * units]), \
                sig(z[:, 3 * units:])
            c = f * c + i * g
            h = o * np.tanh(c)
            h_all.append(h), c_all.append(c)

    def asym(lo: float, hi: float) -> tuple[float, int]:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = float(np.float32((hi - lo) / 255))
        return scale, int(np.clip(round(-128 - lo / scale), -128, 127))

    def sym(lo: float, hi: float) -> tuple[float, int]:
        return float(np.float32(max(abs(lo), abs(hi)) / 32767)), 0

    q = sym if int16 else asym
    in_s, in_zp = q(rep.min(), rep.max())
    h_s, h_zp = q(np.min(h_all), np.max(h_all))
    cell_s = 2.0 ** (np.ceil(np.log2(np.max(np.abs(c_all)))) - 15 if cell_power is None else cell_power)

    rng = np.random.default_rng(units + steps)
    fb = _Flatbuffer(s.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, s.BuiltinOperator.STRIDED_SLICE)
    tensor, scale_of = fb.tensor, lambda i: fb.sg.tensors[i].quantization.scale[0]
    T8, T16, T32 = s.TensorType.INT8, s.TensorType.INT16, s.TensorType.INT32
    TA, TB, bias_dtype = (T16, s.TensorType.INT64, "<i8") if int16 else (T8, T32, "<i4")  # activations, biases

    def weights(w: np.ndarray) -> int:  # [out][in], per-tensor symmetric
        scale = float(np.float32(np.max(np.abs(w)) / 127))
        return tensor(w.shape, T8, scale, 0, np.clip(np.round(w / scale), -127, 127).astype("i1"))

    shape_in = [steps, batches, n_in] if time_major else [batches, steps, n_in]
    shape_out = [steps, batches, units] if time_major else [batches, steps, units]
    x = tensor(shape_in, TA, in_s, in_zp)
    ins = [x] + [-1] * 23
    for k in range(4):  # TFLite's order is Keras's: input, forget, cell, output
        cols = slice(k * units, (k + 1) * units)
        ins[1 + k] = weights(kernel[:, cols].T)
        ins[5 + k] = weights(recurrent[:, cols].T)
        b_s = float(np.float32(np.float32(in_s) * scale_of(ins[1 + k])))
        ins[12 + k] = tensor([units], TB, b_s, 0, np.round(bias[cols] / b_s).astype(bias_dtype))
    ins[18] = tensor([batches, units], TA, h_s, h_zp, variable=True)
    ins[19] = tensor([batches, units], T16, cell_s, 0, variable=True)
    if "peephole" in variants:
        for i in (9, 10, 11):
            ins[i] = tensor([units], T16, 1e-3, 0, rng.integers(-999, 999, units).astype("<i2"))
    if "projection" in variants:
        ins[16] = weights(rng.normal(size=(units, units)))
    if "layer_norm" in variants:
        for i in (20, 21, 22, 23):
            ins[i] = tensor([units], T16, 1e-3, 0, rng.integers(-999, 999, units).astype("<i2"))
    if "cifg" in variants:
        ins[1] = ins[5] = -1
    seq = tensor(shape_out, TA, h_s, h_zp)
    options = s.UnidirectionalSequenceLSTMOptionsT()
    options.fusedActivationFunction = s.ActivationFunctionType.TANH
    options.cellClip, options.timeMajor = cell_clip, time_major
    fb.op(0, ins, [seq], s.BuiltinOptions.UnidirectionalSequenceLSTMOptions, options)
    y = seq
    if not sequences:  # the last step: [batches, units]
        last = [steps - 1, 0, 0] if time_major else [0, steps - 1, 0]
        end = [steps, batches, units] if time_major else [batches, steps, units]
        consts = [tensor([3], T32, data=np.array(v, "<i4")) for v in (last, end, [1, 1, 1])]
        y = tensor([batches, units], TA, h_s, h_zp)
        options = s.StridedSliceOptionsT()
        options.shrinkAxisMask = 1 if time_major else 2
        fb.op(1, [seq, *consts], [y], s.BuiltinOptions.StridedSliceOptions, options)
    return fb.finish([x], [y]), model, rep


# (units, inputs, steps, return_sequences, time_major, batches, cell clip, cell scale power).
# The calibrated cell scales are 2^-13 and 2^-14 (tanh of the cell: x 3 >> 1 or 2); 2^-11 takes
# tflite-micro's other branch (3 << 1).
LSTM_CASES = [(8, 3, 6, True, False, 1, 0.0, None), (5, 4, 7, False, False, 1, 0.0, None),
              (12, 2, 5, True, True, 2, 0.0, -11), (6, 3, 4, False, True, 3, 0.0, None),
              (7, 5, 6, True, False, 2, 0.5, None)]


@pytest.mark.parametrize("case", LSTM_CASES, ids=[f"u{c[0]}-{'seq' if c[3] else 'last'}-{'tm' if c[4] else 'bm'}"
                                                  f"-b{c[5]}{'-clip' if c[6] else ''}{'-c2^%d' % c[7] if c[7] else ''}"
                                                  for c in LSTM_CASES])
def test_lstm_bit_exact(recipes, case, tmp_path):
    # 64 inferences in a row on one interpreter and one host build: both states carry over
    units, n_in, steps, sequences, time_major, batches, clip, power = case
    data, _, _ = _lstm_tflite(recipes, units, n_in, steps, sequences=sequences, time_major=time_major,
                              batches=batches, cell_clip=clip, cell_power=power)
    res = _compare(data, data, tmp_path, seed=800 + units)
    assert res.layers == ["UNIDIRECTIONAL_SEQUENCE_LSTM"] + ([] if sequences else ["STRIDED_SLICE"])
    host = HostModel(tmp_path)  # the same library again: aiot_model_reset put both states back
    x = np.random.default_rng(801).integers(-128, 128, res.input_bytes).astype(np.int8)
    runs = [host.invoke(x) for _ in range(4)]
    assert len({y.tobytes() for y in runs}) > 1  # the same input, other outputs: the state counts
    host.lib.aiot_model_reset()
    assert np.array_equal(runs[0], host.invoke(x))



# The 16x8 flavour of LSTM_CASES' shapes: every step and the last, batch- and time-major,
# several batches, the other tanh branch (2^-11) and a clip that engages (0.5)
LSTM16_CASES = [(8, 3, 6, True, False, 1, 0.0, None), (5, 4, 7, False, False, 1, 0.0, None),
                (12, 2, 5, True, True, 2, 0.0, -11), (7, 5, 6, True, False, 2, 0.5, None)]


@pytest.mark.parametrize("optimize", ["size", "speed"])
@pytest.mark.parametrize("case", LSTM16_CASES, ids=[f"u{c[0]}-{'seq' if c[3] else 'last'}-{'tm' if c[4] else 'bm'}"
                                                    f"-b{c[5]}{'-clip' if c[6] else ''}" for c in LSTM16_CASES])
def test_lstm_16x8_bit_exact(recipes, case, optimize, tmp_path):
    # int16 input, hidden state and output, int64 biases (the int64 accumulator and 64-bit
    # requantization of tflite-micro's 16x8 gates); 48 inferences in a row on one interpreter
    # and one host build, then the states after aiot_model_reset()
    units, n_in, steps, sequences, time_major, batches, clip, power = case
    data, _, _ = _lstm_tflite(recipes, units, n_in, steps, sequences=sequences, time_major=time_major,
                              batches=batches, cell_clip=clip, cell_power=power, int16=True)
    res = _compare(data, data, tmp_path, seed=830 + units, optimize=optimize)
    assert res.layers == ["UNIDIRECTIONAL_SEQUENCE_LSTM"] + ([] if sequences else ["STRIDED_SLICE"])
    assert (tmp_path / "model.c").read_text().count("aiot_lstm_s16(") == 1
    host = HostModel(tmp_path)
    x = np.random.default_rng(831).integers(-128, 128, res.input_bytes).astype(np.int8)
    runs = [host.invoke(x) for _ in range(4)]
    assert len({y.tobytes() for y in runs}) > 1  # the same input, other outputs: the state counts
    host.lib.aiot_model_reset()
    assert np.array_equal(runs[0], host.invoke(x))


@pytest.mark.parametrize("optimize", ["speed", "size"])
def test_lstm_gates_take_the_simd_dot_product_in_speed_mode(recipes, optimize, tmp_path):
    # Speed mode: the gates' dot products over widened weights (aiot_dot4_wide, SMLAD on
    # DSP cores) with the zero points folded into the biases; size mode: the int8 loops.
    # 7 units leave a zero-padded group of four; 2 batches, time-major.
    data, _, _ = _lstm_tflite(recipes, 7, 5, 4, time_major=True, batches=2)
    res = _compare(data, data, tmp_path, seed=820, optimize=optimize)
    c = (tmp_path / "model.c").read_text()
    assert c.count("aiot_lstm_s8_wide(") == (1 if optimize == "speed" else 0)
    assert c.count("aiot_lstm_s8(") == (0 if optimize == "speed" else 1)
    assert res.layers[0] == "UNIDIRECTIONAL_SEQUENCE_LSTM"


@pytest.mark.parametrize("name", ["lstm_sequences", "lstm_last_step", "lstm_time_major"])
def test_lstm_converter_files_bit_exact(name, tmp_path):
    # Made by TensorFlow 2.21's converter from tf_keras LSTMs
    # (tests/fixtures/tflite/make_lstm_fixtures.py): 8 units, every step; 5 units, the last
    # step through a STRIDED_SLICE; 6 units time-major with 2 batches. The converter's own
    # choices: a cell clip of 10, cell scale 2^-14, bias scale input x weight scale.
    path = Path(__file__).parent / "fixtures" / "tflite" / f"{name}.tflite"
    res = _compare(path, path, tmp_path, seed=len(name))
    assert res.layers[0] == "UNIDIRECTIONAL_SEQUENCE_LSTM"

def test_lstm_is_the_keras_lstm_quantized(recipes, tmp_path):
    # the hand-written file is the Keras layer: its int8 outputs (tflite-micro's and ours)
    # dequantized follow the float LSTM within a few output steps
    data, model, rep = _lstm_tflite(recipes, 8, 3, 6)
    res = codegen.generate(data, tmp_path)
    host = HostModel(tmp_path)
    xs = rep[:8, 0]
    want = np.asarray(model(xs.astype(np.float32)))
    for x, w in zip(xs, want):
        host.lib.aiot_model_reset()
        q = np.clip(np.round(x / res.input_scale) + res.input_zero_point, -128, 127).astype(np.int8)
        got = (host.invoke(q).astype(np.float64) - res.output_zero_point) * res.output_scale
        assert np.max(np.abs(got - w.ravel())) < 6 * res.output_scale


@pytest.mark.parametrize("variants", [("peephole",), ("projection", "layer_norm"), ("cifg",)])
def test_lstm_variants_are_refused_by_name_and_node(recipes, variants, tmp_path):
    # tflite-micro's kernel refuses them (ValidateTensorStatus): nothing to be bit-exact with
    from aiot.errors import ToolkitError

    data, _, _ = _lstm_tflite(recipes, 4, 3, 3, variants=variants)
    with pytest.raises(ToolkitError) as e:
        codegen.generate(data, tmp_path)
    msg = e.value.message
    assert "node 0 (UNIDIRECTIONAL_SEQUENCE_LSTM)" in msg
    names = {"peephole": "peephole", "projection": "projection", "layer_norm": "layer norm", "cifg": "CIFG"}
    for v in variants:
        assert names[v] in msg
    assert "plain" in e.value.hint


@requires_arm
@requires_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("source", ["written", "converter", "written16x8"])
def test_lstm_bit_exact_on_a_dsp_core(recipes, source, tmp_path):
    # the bench firmware's runs follow one another from the reset state, as tflite-micro's
    # do: a written time-major file (2 batches, cell scale 2^-11), the converter's
    # last-step file (LSTM + STRIDED_SLICE) and the written file's 16x8 flavour (16 runs: in
    # 6, a 32-bit requantization of its recurrent part in place of the 64-bit one went unseen)
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board

    path = tmp_path / "lstm.tflite"
    if source == "written":
        path.write_bytes(_lstm_tflite(recipes, 12, 2, 5, time_major=True, batches=2, cell_power=-11)[0])
    elif source == "written16x8":
        path.write_bytes(_lstm_tflite(recipes, 12, 2, 5, time_major=True, batches=2, cell_power=-11, int16=True)[0])
    else:
        path.write_bytes((Path(__file__).parent / "fixtures" / "tflite" / "lstm_last_step.tflite").read_bytes())
    r = bench_model(get_board("mps2-an386"), path, "lstm", tmp_path / "b", runs=16 if source == "written16x8" else 6,
                    profile=False)
    assert r.bit_exact, f"the {source} LSTM differs from tflite-micro on the M4"


def _slice_output(L):
    # The model's output is the STRIDED_SLICE itself, so a test can rewrite its masks and
    # output shape without touching the layers after it.
    import keras

    keras.utils.set_random_seed(14)
    x = keras.Input((4, 6, 8))
    h = L.Conv2D(8, 1)(x)
    return keras.Model(x, h[:, 1:3, :, 2:6])


def _patched_slice(data: bytes, begin, end, strides, out_shape, **options) -> bytes:
    """``data`` with its STRIDED_SLICE's begin/end/strides, options (schema names:
    beginMask, ellipsisMask, ...) and output shape replaced."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(data, 0))
    sg = m.subgraphs[0]
    op = next(o for o in sg.operators
              if m.operatorCodes[o.opcodeIndex].builtinCode == s.BuiltinOperator.STRIDED_SLICE)
    for k, v in zip(op.inputs[1:4], (begin, end, strides)):
        sg.tensors[k].shape = np.array([len(v)], np.int32)
        m.buffers[sg.tensors[k].buffer].data = np.frombuffer(np.asarray(v, "<i4").tobytes(), np.uint8)
    for k, v in {"beginMask": 0, "endMask": 0, "ellipsisMask": 0, "newAxisMask": 0, "shrinkAxisMask": 0,
                 **options}.items():
        assert hasattr(op.builtinOptions, k), k
        setattr(op.builtinOptions, k, v)
    out = sg.tensors[op.outputs[0]]
    out.shape, out.shapeSignature = np.array(out_shape, np.int32), None
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# (begin, end, strides, output shape as tflite-micro computes it, options). tflite-micro
# reads one begin/end/stride per input axis and takes ellipsis_mask and new_axis_mask as 0
# (BuildStridedSliceParams); the converter never writes them (it rewrites new axes into
# RESHAPE), so these files are written by hand.
SLICE_MASKS = {
    # an ellipsis over an axis with its own begin/end/stride: tflite-micro slices it anyway
    "ellipsis-on-a-sliced-axis": ([0, 1, 1, 2], [1, 3, 5, 6], [1, 1, 2, 1], [1, 2, 2, 4], dict(ellipsisMask=4)),
    # a new-axis bit (ignored), a shrunk axis whose begin mask starts it at 0, a negative begin
    "new-axis-shrink-begin-mask": ([0, 3, -2, 0], [1, 4, 6, 8], [1, 1, 1, 3], [1, 2, 3],
                                   dict(beginMask=2, shrinkAxisMask=2, newAxisMask=1)),
    # two shrunk axes (one from a negative begin), a backward stride, an ignored ellipsis
    "shrink-negative-begin": ([0, -1, 5, 5], [1, 0, 0, 0], [1, 1, -2, 1], [1, 3],
                              dict(shrinkAxisMask=10, ellipsisMask=2)),
    "shrink-every-axis": ([0, 2, 5, 7], [1, 3, 6, 8], [1, 1, 1, 1], [], dict(shrinkAxisMask=15)),
}


@pytest.mark.parametrize("case", SLICE_MASKS)
def test_strided_slice_masks_bit_exact(recipes, case, tmp_path):
    data = _tflite(recipes, _slice_output, True, True).read_bytes()
    begin, end, strides, shape, options = SLICE_MASKS[case]
    model = _patched_slice(data, begin, end, strides, shape, **options)
    res = _compare(model, model, tmp_path, seed=400 + list(SLICE_MASKS).index(case))
    assert "STRIDED_SLICE" in res.layers and res.output_bytes == int(np.prod(shape))


# Slices tflite-micro refuses (its output-shape check) or runs without writing the output.
SLICE_REFUSED = {
    # TensorFlow's meaning of the new axis ([1, 1, ...]) is not what tflite-micro computes
    "new-axis-in-the-output": ([0, 1, 0, 2], [0, 3, 0, 6], [1, 1, 1, 1], [1, 1, 2, 6, 4],
                               dict(beginMask=5, endMask=5, newAxisMask=1), "new-axis masks taken as 0"),
    # a shrunk axis walked backwards: tflite-micro's loop never runs
    "shrink-backward": ([0, 2, 0, 0], [1, 3, 6, 8], [1, -1, 1, 1], [1, 6, 8], dict(shrinkAxisMask=2),
                        "walks no element"),
    # the ellipsis form with fewer entries than axes: tflite-micro reads past the vectors
    "short-vectors": ([0, 2], [0, 4], [1, 1], [1, 4, 6, 2], dict(ellipsisMask=1), "for a rank-4 tensor"),
}


@pytest.mark.parametrize("case", SLICE_REFUSED)
def test_strided_slice_tflite_micro_cannot_run_is_refused_by_node(recipes, case, tmp_path):
    from aiot.errors import ToolkitError

    data = _tflite(recipes, _slice_output, True, True).read_bytes()
    begin, end, strides, shape, options, why = SLICE_REFUSED[case]
    with pytest.raises(ToolkitError) as e:
        codegen.generate(_patched_slice(data, begin, end, strides, shape, **options), tmp_path)
    assert "node 1 (STRIDED_SLICE)" in e.value.message and why in e.value.message + (e.value.hint or "")


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_validate_streams_float_vectors_and_compares_float_outputs_bit_for_bit(recipes, tmp_path):
    # aiot validate on a float-interface model: float vectors in (quantized by the model's
    # own entry point), the int8 graph on the device, its output made float by the model's
    # entry point, every float32 output compared bit for bit with tflite-micro's.
    import json

    from click.testing import CliRunner

    from aiot.cli import main
    from aiot.device.parity import check_parity
    from aiot.errors import ToolkitError
    from aiot.target.boards import get_board

    path = _float_interface_tflite(recipes, "float32", "float32")
    r = CliRunner().invoke(main, ["validate", "--board", "mps2-an386", "--model", str(path), "-n", "40",
                                  "--out", str(tmp_path / "v")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rep["inputs"]["float32"] and rep["metrics"]["float32"] and rep["metrics"]["exact_match_pct"] == 100.0
    out = np.load(tmp_path / "v" / "outputs.npz")
    assert out["inputs"].dtype == np.float32 and out["device"].dtype == out["reference"].dtype == np.float32
    assert out["device"].shape == (40, 5) and np.array_equal(out["device"].view(np.uint32),
                                                             out["reference"].view(np.uint32))
    assert len(np.unique(out["device"])) > 20  # the outputs vary: not a constant compared with itself
    assert "All 200 outputs byte-identical" in (tmp_path / "v" / "report.html").read_text()
    with pytest.raises(ToolkitError, match="float32") as e:  # aiot run: a package's int8 vectors
        check_parity(None, get_board("mps2-an386"), path.read_bytes(), np.zeros((1, 12), np.int8))
    assert "aiot validate --model" in e.value.hint


def test_reflect_padding_as_wide_as_the_axis_is_refused(recipes, tmp_path):
    # REFLECT can mirror at most size - 1 elements (TFLM would read outside the tensor):
    # a file claiming more is refused by node, not compiled into an out-of-bounds walk.
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    from aiot.errors import ToolkitError

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(_tflite(recipes, mirror_pads, True, True).read_bytes(), 0))
    sg = m.subgraphs[0]
    op = next(o for o in sg.operators if m.operatorCodes[o.opcodeIndex].builtinCode == s.BuiltinOperator.MIRROR_PAD
              and o.builtinOptions.mode == s.MirrorPadMode.REFLECT)
    buf = m.buffers[sg.tensors[op.inputs[1]].buffer]
    pads = np.frombuffer(bytes(buf.data), dtype="<i4").reshape(-1, 2).copy()
    pads[1, 0] = sg.tensors[op.inputs[0]].shape[1]  # H padded before by all of H
    buf.data = np.frombuffer(pads.tobytes(), np.uint8)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(ToolkitError) as e:
        codegen.generate(bytes(b.Output()), tmp_path)
    assert "MIRROR_PAD" in e.value.message and "REFLECT" in e.value.message and "less than" in e.value.hint
