"""aiot.model.tflite: the flatbuffer reader and its user-facing errors (fixture files)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from aiot.model import tflite
from aiot.errors import ToolkitError

FIX = Path(__file__).parent / "fixtures" / "tflite"


def _tf_schema():
    # TensorFlow's generated schema bindings: an independent reader to check ours against.
    return pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")


def test_reads_dense_model_like_tensorflow_schema_bindings():
    data = (FIX / "good_dense.tflite").read_bytes()
    g = tflite.load(data)
    s = _tf_schema()
    ref = s.ModelT.InitFromObj(s.Model.GetRootAsModel(data, 0))
    sg = ref.subgraphs[0]
    assert g.inputs == tuple(sg.inputs) and g.outputs == tuple(sg.outputs)
    assert len(g.tensors) == len(sg.tensors)
    for ours, theirs in zip(g.tensors, sg.tensors):
        assert ours.name == theirs.name.decode()
        assert ours.shape == tuple(theirs.shape)
        assert ours.dtype == {9: "int8", 2: "int32", 0: "float32"}[theirs.type]
        q = theirs.quantization
        if q is not None and q.scale is not None:
            np.testing.assert_array_equal(ours.scale, np.asarray(q.scale, dtype=np.float32))
            np.testing.assert_array_equal(ours.zero_point, np.asarray(q.zeroPoint))
        buf = ref.buffers[theirs.buffer].data
        if buf is not None and len(buf):
            assert ours.data.tobytes() == bytes(np.asarray(buf, dtype=np.uint8))
        else:
            assert ours.data is None
    for op, theirs in zip(g.operators, sg.operators):
        code = ref.operatorCodes[theirs.opcodeIndex]
        assert op.op == tflite.BUILTIN_OPS[max(code.builtinCode, code.deprecatedBuiltinCode)]
        assert op.inputs == tuple(theirs.inputs) and op.outputs == tuple(theirs.outputs)
    assert g.operators[0].options["activation"] == "RELU"
    assert g.operators[1].options["activation"] == "NONE"


def test_builtin_op_table_matches_schema():
    s = _tf_schema()
    for name, value in vars(s.BuiltinOperator).items():
        if not name.startswith("_") and isinstance(value, int) and value < len(tflite.BUILTIN_OPS):
            assert tflite.BUILTIN_OPS[value] == name


@pytest.mark.parametrize(
    "fixture, words",
    [
        ("not_a_flatbuffer.tflite", ["identifier", "b'stam'"]),
        ("wrong_identifier.tflite", ["identifier", "ONNX"]),
        ("truncated.tflite", ["truncated"]),
        ("bad_buffer_index.tflite", ["buffer 999"]),
    ],
)
def test_not_a_tflite_file(fixture, words):
    with pytest.raises(ToolkitError) as e:
        tflite.load(FIX / fixture)
    assert fixture in e.value.message
    for w in words:
        assert w in e.value.message
    assert "is this a .tflite file?" in e.value.hint


def test_float_model_says_quantize_first():
    with pytest.raises(ToolkitError) as e:
        tflite.load(FIX / "float_model.tflite")
    assert "not a full-int8 model (float or dynamic-range quantized)" in e.value.message and "node 0" in e.value.message
    assert "aiot quantize" in e.value.hint


def test_unsupported_op_names_op_node_and_alternative():
    with pytest.raises(ToolkitError) as e:
        tflite.load(FIX / "unsupported_op.tflite")
    assert "GELU" in e.value.message and "node 1" in e.value.message
    assert "ReLU" in e.value.hint


def test_two_inputs_compile_with_each_input_exposed(tmp_path):
    # Several inputs and outputs compile (bit-exactness: tests/test_engine_parity.py) and the
    # device firmware serves them all (protocol 1.2: tests/test_protocol_tensors.py).
    from aiot import codegen
    from aiot.target.boards import get_board
    from aiot.target.firmware import _sources

    g = tflite.load(FIX / "two_inputs.tflite")
    assert len(g.inputs) == 2
    res = codegen.generate(FIX / "two_inputs.tflite", tmp_path)
    assert [int(np.prod(s)) for s in res.input_shapes] == [8, 8] and res.input_bytes == 16
    assert "#define AIOT_MODEL_NUM_INPUTS 2u" in (tmp_path / "model.h").read_text()
    source = (tmp_path / "model.c").read_text()
    assert "int8_t *aiot_model_input_n(uint32_t i)" in source and "aiot_model_input_sizes[2] = { 8u, 8u }" in source
    assert tmp_path / "model.c" in _sources(tmp_path, get_board("mps2-an386"), "device")[0]
    _sources(tmp_path, get_board("mps2-an386"), "bench")  # the bench firmware takes it too


def test_two_subgraphs_rejected():
    with pytest.raises(ToolkitError) as e:
        tflite.load(FIX / "two_subgraphs.tflite")
    assert "2 subgraphs" in e.value.message


def test_int16_activations_rejected():
    with pytest.raises(ToolkitError) as e:
        tflite.load(FIX / "int16_activation.tflite")
    assert "int16" in e.value.message and "node 0" in e.value.message


def test_missing_file():
    with pytest.raises(ToolkitError) as e:
        tflite.load(FIX / "nope.tflite")
    assert "not found" in e.value.message


def test_every_truncation_is_a_toolkit_error():
    data = (FIX / "good_dense.tflite").read_bytes()
    for n in range(0, len(data) - 1):
        with pytest.raises(ToolkitError):
            tflite.load(data[:n])


def test_random_corruption_never_crashes():
    data = bytearray((FIX / "good_dense.tflite").read_bytes())
    rng = random.Random(0)
    for _ in range(300):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(8, len(bad))
            bad[pos] = rng.randrange(256)
        try:
            tflite.load(bytes(bad))
        except ToolkitError:
            pass


def test_a_model_tflite_micro_cannot_load_gets_a_hint_not_only_its_error(tmp_path):
    pytest.importorskip("tflite_micro")
    from aiot.model.reference import TflmReference

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00\x00\x00\x00TFL3" + bytes(64))  # the identifier, nothing behind it
    with pytest.raises(ToolkitError) as e:
        TflmReference(bad)
    assert e.value.message.startswith("tflite-micro could not load the model")
    assert "aiot codegen --model FILE" in e.value.hint and "no kernel" in e.value.hint


# --- hostile files (issue 22): every mutation is refused cleanly or compiles --------------------


def _repacked(mutate) -> bytes:
    """good_dense.tflite decoded by TensorFlow's own schema bindings, changed by ``mutate``
    and packed again: a well-formed flatbuffer that claims what the test wants."""
    flatbuffers = pytest.importorskip("flatbuffers")
    s = _tf_schema()
    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel((FIX / "good_dense.tflite").read_bytes(), 0))
    mutate(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_bit_flipped_models_never_crash_codegen(tmp_path):
    """A seeded fuzz run: 1-3 flipped bits anywhere in a valid model, through the reader and the
    code generator. Before the fix, an operator whose outputs vector was emptied reached
    fold_shape_computations and raised IndexError (about 4 in 10,000 mutations)."""
    from aiot import codegen

    data = (FIX / "good_dense.tflite").read_bytes()
    rng = random.Random(1)
    refused = compiled = 0
    for _ in range(3000):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        try:
            codegen.generate(bytes(bad), tmp_path)
            compiled += 1
        except ToolkitError as e:
            assert e.message  # a sentence, not a traceback
            refused += 1
    assert refused > 0 and refused + compiled == 3000


def test_an_operator_without_outputs_is_refused_by_name():
    def drop_outputs(m):
        m.subgraphs[0].operators[0].outputs = []

    with pytest.raises(ToolkitError, match="node 0 has no output"):
        tflite.load(_repacked(drop_outputs))


def test_a_shape_no_board_can_hold_is_refused_before_codegen(tmp_path):
    """A tensor claiming 2^31-1 rows used to pass codegen with a 25 GB arena."""
    from aiot import codegen

    def huge(m):
        for i in (0, 3, 4):
            t = m.subgraphs[0].tensors[i]
            t.shape = [2**31 - 1, *list(t.shape)[1:]]

    with pytest.raises(ToolkitError, match="larger than the RAM of any board") as e:
        codegen.generate(_repacked(huge), tmp_path)
    assert "serving_default_keras_tensor:0" in e.value.message
    assert not (tmp_path / "model.c").exists()


if __name__ == "__main__":  # the long .tflite fuzz, a benchmark: python tests/test_tflite.py [MUTATIONS] [SEED]
    import sys
    import tempfile
    import time
    import traceback
    from collections import Counter

    from aiot import codegen

    n, seed = (int(sys.argv[1]) if len(sys.argv) > 1 else 30_000), (int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    data, rng, crashes, refused = (FIX / "good_dense.tflite").read_bytes(), random.Random(seed), Counter(), 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        for _ in range(n):
            bad = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
            try:
                codegen.generate(bytes(bad), Path(out))
            except ToolkitError:
                refused += 1
            except Exception as e:  # noqa: BLE001 - what the benchmark counts
                where = traceback.extract_tb(e.__traceback__)[-1]
                crashes[f"{type(e).__name__} at {Path(where.filename).name}:{where.lineno}"] += 1
    print(f"tflite fuzz: {n} mutations (seed {seed}) in {time.monotonic() - t0:.0f} s: {refused} refused, "
          f"{n - refused - sum(crashes.values())} compiled, {sum(crashes.values())} crashed {dict(crashes)}")
    sys.exit(1 if crashes else 0)


def test_codegen_lists_several_inputs_in_their_order(tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    r = CliRunner().invoke(main, ["codegen", "--model", str(FIX / "two_inputs.tflite"), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "inputs:  [1, 8], [1, 8]\noutputs: [1, 4]\n" in r.output
