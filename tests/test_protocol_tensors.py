"""Protocol 1.2: the device serves every input and output of its model (docs/protocol.md,
"Every input and output"). The device app with a real model built for the host, driven
in-process: INFO lists each tensor with its type and size, INFER carries every input one
after the other and answers every output the same way (INFER_INPUT / INFER_OUTPUT cross
the tensors' boundaries), every output equal to tflite-micro's; 16x8 models move int16
values. Old hosts and 1.1 firmware (built from the commit before 1.2) still talk."""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiot.device import protocol as P
from aiot.device.hil import Device, model_tensors
from aiot.errors import ToolkitError

from test_protocol_app import HostApp
from test_protocol_large_infer import AE24, HostTransport

ROOT = Path(__file__).resolve().parents[1]
TWO_IN = ROOT / "tests" / "fixtures" / "tflite" / "two_inputs.tflite"  # 2 x int8[8] in, int8[4] out


def _c(tmp_path_factory, tflite: bytes, name: str) -> Path:
    from aiot.codegen import generate

    out = tmp_path_factory.mktemp(f"{name}-c")
    generate(tflite, out, name=name)
    return out


@pytest.fixture(scope="module")
def two_in_two_out() -> bytes:
    """The parity suite's model with two inputs (int8 36 and 6) and two outputs (3 and 5)."""
    pytest.importorskip("tensorflow")
    from test_engine_parity import _recipes, _two_in_two_out_tflite

    return _two_in_two_out_tflite(_recipes()).read_bytes()


@pytest.fixture(scope="module")
def dense_16x8() -> bytes:
    """The 16x8 suite's dense stack: int16[24] in, int16[24] out."""
    pytest.importorskip("tensorflow")
    from aiot.target.bench import load_recipes
    from test_engine_parity_16x8 import _tflite, dense_stack

    return _tflite(load_recipes(), dense_stack).read_bytes()


def _ref(tflite: bytes):
    from aiot.model.reference import TflmReference

    return TflmReference(tflite)


def _device(model_c: Path, *defines: str) -> tuple[Device, HostTransport, HostApp]:
    app = HostApp(*defines, model_c=model_c)
    t = HostTransport(app)
    return Device(t, timeout=1.0), t, app


def test_info_lists_each_input_and_output_with_its_type_and_size(tmp_path_factory, two_in_two_out, dense_16x8):
    dev, _t, _app = _device(_c(tmp_path_factory, two_in_two_out, "two2"))
    info = dev.info()
    assert (info.proto_major, info.proto_minor) == (1, 3) and info.lists_tensors
    assert info.inputs == model_tensors(two_in_two_out)[0] and info.outputs == model_tensors(two_in_two_out)[1]
    assert sorted(t.bytes for t in info.inputs) == [6, 36] and sorted(t.bytes for t in info.outputs) == [3, 5]
    assert {t.type for t in (*info.inputs, *info.outputs)} == {9}  # TFLite's INT8
    assert (info.input_bytes, info.output_bytes) == (42, 8)  # the totals, as before
    dev16, _t, _app = _device(_c(tmp_path_factory, dense_16x8, "d16"))
    info16 = dev16.info()
    assert info16.inputs == (P.TensorSpec(7, 48),) and info16.outputs == (P.TensorSpec(7, 48),)  # INT16, 24 each
    assert info16.inputs[0].dtype == np.dtype("<i2") and info16.inputs[0].elements == 24


def test_a_model_without_the_type_tables_is_int8_and_its_c_unchanged(tmp_path_factory):
    """An all-int8 model's generated C has no type table (the firmware reads none as int8), so
    it is byte for byte what it was before protocol 1.2; a 16x8 one names its types."""
    c = _c(tmp_path_factory, TWO_IN.read_bytes(), "two")
    assert "aiot_model_input_types" not in (c / "model.c").read_text()
    dev, _t, _app = _device(c)
    assert dev.info().inputs == (P.TensorSpec(9, 8), P.TensorSpec(9, 8)) and dev.info().outputs == (P.TensorSpec(9, 4),)


def test_several_inputs_and_outputs_are_bit_exact_through_the_client(tmp_path_factory, two_in_two_out):
    dev, t, _app = _device(_c(tmp_path_factory, two_in_two_out, "two2"))
    ref = _ref(two_in_two_out)
    ins, outs = model_tensors(two_in_two_out)
    xs = np.random.default_rng(7).integers(-128, 128, (6, 42), dtype=np.int16).astype(np.int8)
    for x in xs:
        got = dev.infer(x)
        want = ref.invoke(x)
        assert got.output.dtype == np.int8 and got.output.tobytes() == want.tobytes()
        assert [o.size for o in got.outputs] == [o.bytes for o in outs]
        assert np.array_equal(np.concatenate(got.outputs), want)
        # the same inference with one array per input
        split = [x[: ins[0].bytes], x[ins[0].bytes :]]
        assert dev.infer(split).output.tobytes() == want.tobytes()
    # each input reaches its own tensor: changing the second alone changes the outputs
    y = xs[0].copy()
    y[ins[0].bytes :] = -y[ins[0].bytes :] - 1
    assert dev.infer(y).output.tobytes() == ref.invoke(y).tobytes() != ref.invoke(xs[0]).tobytes()
    many = dev.infer_many(xs, depth=1)
    assert [r.output.tobytes() for r in many] == [ref.invoke(x).tobytes() for x in xs]
    assert {f.type for f in t.sent_frames()} == {P.Msg.INFO, P.Msg.INFER}  # fits one frame: the plain INFER
    with pytest.raises(ToolkitError, match="got 1 input arrays, the model on .* takes 2 inputs"):
        dev.infer([xs[0]])
    with pytest.raises(ToolkitError, match="input 1 has 5 values, the model on .* takes 6"):
        dev.infer([xs[0][:36], xs[0][36:41]])


def test_chunks_and_output_reads_cross_the_tensors_boundaries(tmp_path_factory, two_in_two_out):
    """INFER_INPUT offsets count through every input in order, INFER_OUTPUT's through every
    output: chunks of 5 bytes write the 36-byte input and the 6-byte one across their border."""
    _dev, _t, app = _device(_c(tmp_path_factory, two_in_two_out, "two2"))
    ref = _ref(two_in_two_out)
    x = np.random.default_rng(8).integers(-128, 128, 42, dtype=np.int16).astype(np.int8)
    data = x.tobytes()
    for off in range(0, 42, 5):
        f = app.request(P.Msg.INFER_INPUT, P.pack_infer_input(off, data[off : off + 5]))
        assert f.payload == struct.pack("<I", min(off + 5, 42))
    assert P.unpack_error(app.request(P.Msg.INFER_INPUT, P.pack_infer_input(40, data[40:] + b"\0")).payload)[2] \
        == "chunk runs past the input: input_bytes = 42"
    run = app.request(P.Msg.INFER, b"")
    want = ref.invoke(x).tobytes()
    assert run.type == P.Msg.INFER | P.RESPONSE and run.payload[5:] == want  # the whole output: 8 bytes
    got = b"".join(app.request(P.Msg.INFER_OUTPUT, P.pack_infer_output(off, 3)).payload[4:] for off in range(0, 8, 3))
    assert got == want  # 3-byte reads: the first output is 3 bytes, so the second starts a read


def test_a_16x8_model_moves_int16_values(tmp_path_factory, dense_16x8):
    dev, _t, _app = _device(_c(tmp_path_factory, dense_16x8, "d16"))
    ref = _ref(dense_16x8)
    rng = np.random.default_rng(9)
    xs = np.concatenate([rng.integers(-32768, 32768, (5, 24)), [[-32768] * 24, [32767] * 24]]).astype(np.int16)
    for x in xs:
        got = dev.infer(x)
        assert got.output.dtype == np.int16 and np.array_equal(got.output, ref.invoke(x).reshape(-1))
    with pytest.raises(ToolkitError, match="needs int16 input, got int8"):
        dev.infer(xs[0].astype(np.int8))


def test_the_monitor_refuses_a_model_it_cannot_score_with(tmp_path_factory, two_in_two_out):
    """The monitor scores windows with one int8 input and output: with another model, CONFIG_SET
    says why (INFER still serves it); it never reads past input 0."""
    from aiot import monitor as M

    dev, _t, _app = _device(_c(tmp_path_factory, two_in_two_out, "two2"))
    with pytest.raises(ToolkitError, match="one int8 input and one int8 output; this model serves INFER only"):
        dev.configure(M.default_config(6, 7, 1000))  # 42 = 6 x 7 values: the totals alone would pass


def _first_commit(text: str, path: str) -> str:
    """The oldest commit that changed how often ``text`` occurs in ``path`` ("" outside a checkout,
    or in a shallow one without its parent)."""
    log = subprocess.run(["git", "-C", str(ROOT), "log", "--reverse", "--format=%H", "-S", text, "--", path],
                         capture_output=True, text=True).stdout.split()
    if not log:
        return ""
    # a shallow clone may hold the commit without its parent, which the tests read
    parent = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{log[0]}~1"],
                            capture_output=True, text=True)
    return log[0] if parent.returncode == 0 else ""


def _old_firmware(tmp_path_factory) -> Path:
    """The firmware tree of the last commit before protocol 1.2 (1.1)."""
    # the oldest commit that touched the 1.2 line is the one that made it (a later bump touches it again)
    base = _first_commit("AIOT_PROTO_VERSION_MINOR 2u", "firmware/include/aiot/protocol.h")
    if not base:
        pytest.skip("no git history with the protocol 1.2 commit (not a checkout)")
    out = tmp_path_factory.mktemp("fw-1.1")
    # the firmware and the code generator of that commit: the model C a 1.1 device runs is its
    # own generator's (today's would not compile against 1.1's engine headers)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", f"{base}~1", "firmware", "toolkit/aiot"],
                         capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=tar.stdout, check=True)
    return out / "firmware"


def _c_old(fw: Path, tmp_path_factory, tflite: bytes, name: str) -> Path:
    """``tflite`` through the code generator of the old tree beside ``fw`` (a child process)."""
    out = tmp_path_factory.mktemp(f"{name}-c-old")
    (out / "in.tflite").write_bytes(tflite)
    code = ("import sys; from pathlib import Path; from aiot.codegen import generate; "
            "generate(Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]), name=sys.argv[3])")
    env = {**os.environ, "PYTHONPATH": str(fw.parent / "toolkit")}
    subprocess.run([sys.executable, "-c", code, str(out / "in.tflite"), str(out), name], env=env, check=True,
                   cwd=out, capture_output=True)
    return out


def test_a_new_host_talks_to_1_1_firmware(tmp_path_factory, monkeypatch, dense_16x8):
    """1.1 firmware sends no tensor table: its one input and output are taken from the model
    require_model() checks it runs (a 16x8 one's int16 bytes moved unchanged); a model with
    several inputs is refused before anything is sent, saying to rebuild."""
    from aiot import paths
    from aiot.target import hostbuild

    import aiot.codegen  # noqa: F401  (loaded before patching, so its FIRMWARE is patched too)
    import aiot.device.host  # noqa: F401

    fw = _old_firmware(tmp_path_factory)
    # every module that took the firmware folder at import (the engine's source list too, so a
    # C file added after 1.1 is not compiled against 1.1's headers)
    for mod in [m for name, m in sys.modules.items() if name == "aiot" or name.startswith("aiot.")]:
        if getattr(mod, "FIRMWARE", None) == paths.FIRMWARE and mod is not paths:
            monkeypatch.setattr(mod, "FIRMWARE", fw)
    monkeypatch.setattr(paths, "FIRMWARE", fw)
    assert hostbuild.FIRMWARE == fw
    assert "MINOR 1u" in (fw / "include" / "aiot" / "protocol.h").read_text()
    c16 = _c_old(fw, tmp_path_factory, dense_16x8, "d16")
    dev, t, _app = _device(c16)
    info = dev.require_model(dense_16x8, "dense_16x8")
    assert (info.proto_minor, info.inputs, info.lists_tensors) == (1, (), False)
    x = np.random.default_rng(10).integers(-32768, 32768, 24).astype(np.int16)
    assert np.array_equal(dev.infer(x).output, _ref(dense_16x8).invoke(x).reshape(-1))
    ae, _t, _app = _device(_c_old(fw, tmp_path_factory, (AE24 / "model.tflite").read_bytes(), "ae24"))
    x8 = np.load(AE24 / "vectors.npz")["x_int8"][0]
    assert ae.infer(x8).output.tobytes() == _ref((AE24 / "model.tflite").read_bytes()).invoke(x8).tobytes()
    # a 1.1 device running a two-input model (its own firmware) cannot take both: refused, nothing sent
    two, t2, _app = _device(_c_old(fw, tmp_path_factory, TWO_IN.read_bytes(), "two"))
    with pytest.raises(ToolkitError, match=r"protocol 1\.1, which serves one input and one output; .* 2 inputs") as e:
        two.require_model(TWO_IN.read_bytes(), "two_inputs.tflite")
    assert "aiot build" in e.value.hint and [f.type for f in t2.sent_frames()] == [P.Msg.INFO]


def test_an_old_host_talks_to_1_2_firmware(tmp_path_factory, monkeypatch, two_in_two_out):
    """The 1.1 host's own code (protocol.py of the commit before 1.2) reads a 1.2 INFO (the
    table is trailing bytes to it) and runs INFER with the flat input it always sent."""
    base = _first_commit("PROTO_MINOR = 2", "toolkit/aiot/device/protocol.py")
    if not base:
        pytest.skip("no git history with the protocol 1.2 commit (not a checkout)")
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{base}~1:toolkit/aiot/device/protocol.py"],
                         capture_output=True, text=True, check=True).stdout
    path = tmp_path_factory.mktemp("old-host") / "old_protocol.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_protocol", path)
    old = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "old_protocol", old)  # its dataclasses look their module up
    spec.loader.exec_module(old)
    assert old.PROTO_MINOR == 1
    _dev, _t, app = _device(_c(tmp_path_factory, two_in_two_out, "two2"))
    info = old.unpack_info(app.request(P.Msg.INFO).payload)
    assert (info.proto_minor, info.input_bytes, info.output_bytes) == (3, 42, 8)  # 1.3 firmware, read as 1.1
    x = np.random.default_rng(11).integers(-128, 128, 42, dtype=np.int16).astype(np.int8)
    f = app.request(P.Msg.INFER, x.tobytes())
    status, _ticks, out = old.unpack_infer(f.payload, info.output_bytes)
    assert status == 0 and out == _ref(two_in_two_out).invoke(x).tobytes()


def test_info_1_2_hand_made():
    """The tensor table written out by hand from docs/protocol.md."""
    from test_protocol import INFO_HAND_1_1

    hand = bytes([1, 2]) + INFO_HAND_1_1[2:] + bytes.fromhex(
        "02 01"              # 2 inputs, 1 output
        " 09 0c 00 00 00"    # int8, 12 bytes
        " 07 04 00 00 00"    # int16, 4 bytes (2 elements)
        " 07 02 00 00 00")   # int16, 2 bytes
    i = P.unpack_info(hand)
    assert i.device_id == "uid:0123abcd"
    assert i.inputs == (P.TensorSpec(9, 12), P.TensorSpec(7, 4)) and i.outputs == (P.TensorSpec(7, 2),)
    assert [t.elements for t in i.inputs] == [12, 2]
    assert P.pack_info(i) == hand and P.unpack_info(hand + b"\x01") == i  # a later version's fields ignored
    with pytest.raises(ValueError, match="tensor table"):
        P.unpack_info(hand[:-3])
    old = P.unpack_info(INFO_HAND_1_1)  # 1.1: no table, one int8 input and output of the totals
    assert old.inputs == () and old.input_tensors == (P.TensorSpec(9, 16),) and old.output_tensors == (P.TensorSpec(9, 2),)


def test_check_parity_of_aiot_run_takes_several_inputs_and_outputs(tmp_path_factory, two_in_two_out):
    from aiot.device.parity import check_parity
    from aiot.target.boards import get_board

    dev, _t, _app = _device(_c(tmp_path_factory, two_in_two_out, "two2"))
    xs = np.random.default_rng(12).integers(-128, 128, (5, 42), dtype=np.int16).astype(np.int8)
    rep = check_parity(dev, get_board("mps2-an386"), two_in_two_out, xs)
    assert rep.ok and rep.outputs.shape == (5, 8)


def test_a_tensor_type_this_host_does_not_read_is_named_not_crashed_on():
    """A 1.2 device listing a type this toolkit has no numpy type for (here TFLite's UINT8, 3):
    INFER is refused with the type and what to do, before anything is sent."""
    import dataclasses

    from test_protocol_client import INFO, FakeDevice, reply

    info = dataclasses.replace(INFO, proto_minor=2, inputs=(P.TensorSpec(3, 4),), outputs=(P.TensorSpec(9, 2),))
    fd = FakeDevice(lambda f: reply(f, P.pack_info(info)) if f.type == P.Msg.INFO else None)
    try:
        from aiot.device.hil import SerialTransport

        dev = Device(SerialTransport(fd.url), timeout=1.0)
        assert dev.info().inputs == (P.TensorSpec(3, 4),)
        with pytest.raises(ToolkitError, match="serves a tensor of type 3 .* reads int8, int16") as e:
            dev.infer(np.zeros(4, np.int8))
        assert "aiot build" in e.value.hint
    finally:
        fd.close()
