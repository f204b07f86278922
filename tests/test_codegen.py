"""aiot.codegen on dense autoencoders: bit-exact vs tflite-micro, model.h contract,
warning-free Cortex-M builds, profiling hooks, memory plan, CLI."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from aiot import codegen
from aiot.codegen.host import HostModel
from aiot.codegen.plan import plan_memory
from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE, MODELS

FIX = Path(__file__).parent / "fixtures" / "tflite"


def _recipes():
    spec = importlib.util.spec_from_file_location("aiot_model_recipes", MODELS / "recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dense_models() -> dict[str, Path]:
    """The 32-16-8-16-32 demo autoencoder, per-channel and per-tensor (cached .tflite)."""
    pytest.importorskip("tensorflow")
    r = _recipes()

    def build(per_channel: bool) -> bytes:
        model, x = r.ad_small()
        return r.convert_int8(model, x[:64], per_channel=per_channel)

    return {
        "per_channel": r.build_model("ad-small"),
        "per_tensor": r.cached_tflite(["test_codegen", "ad-small", "per-tensor", inspect.getsource(build)],
                                      lambda: build(False)),
    }


def _tflm(path: Path):
    from aiot.model.reference import TflmReference

    return TflmReference(path)


@pytest.mark.parametrize("variant", ["per_channel", "per_tensor"])
def test_dense_autoencoder_bit_exact(dense_models, tmp_path, variant):
    path = dense_models[variant]
    res = codegen.generate(path, tmp_path, name="ad")
    assert res.layers == ["FULLY_CONNECTED"] * 4
    from aiot.model import tflite

    g = tflite.load(path)
    w = g.tensors[g.operators[0].inputs[1]]
    assert w.per_channel == (variant == "per_channel")
    host, ref = HostModel(tmp_path), _tflm(path)
    rng = np.random.default_rng(7)
    xs = rng.integers(-128, 128, size=(300, 32), dtype=np.int8)
    xs[0] = -128  # extremes saturate the accumulators' ranges
    xs[1] = 127
    for x in xs:
        np.testing.assert_array_equal(host.invoke(x), ref.invoke(x).ravel())


def test_model_info_and_header_contract(dense_models, tmp_path):
    path = dense_models["per_channel"]
    res = codegen.generate(path, tmp_path, name="pump-ae")
    data = path.read_bytes()
    assert res.hash == zlib.crc32(data)
    host = HostModel(tmp_path)
    info = host.info
    assert info.name == b"pump-ae" and info.hash == zlib.crc32(data)
    assert (info.input_bytes, info.output_bytes, info.num_layers) == (32, 32, 4)
    assert info.arena_bytes == res.arena_bytes
    ref = _tflm(path)
    assert np.float32(info.input_scale) == np.float32(ref.input_details["quantization_parameters"]["scales"][0])
    assert info.input_zero_point == int(ref.input_details["quantization_parameters"]["zero_points"][0])
    assert np.float32(info.output_scale) == np.float32(ref.output_details["quantization_parameters"]["scales"][0])
    assert info.output_zero_point == int(ref.output_details["quantization_parameters"]["zero_points"][0])
    h = (tmp_path / "model.h").read_text()
    assert '#include "aiot/model.h"' in h
    for macro, value in [("INPUT_BYTES", 32), ("OUTPUT_BYTES", 32), ("ARENA_BYTES", res.arena_bytes), ("NUM_LAYERS", 4)]:
        assert re.search(rf"#define AIOT_MODEL_{macro} {value}u\b", h), macro
    c = (tmp_path / "model.c").read_text()
    assert "static int8_t arena[AIOT_MODEL_ARENA_BYTES] __attribute__((aligned(16)))" in c
    assert res.macs == 32 * 16 + 16 * 8 + 8 * 16 + 16 * 32
    # weights + folded biases + per-channel multipliers/shifts; the weights are int16 in
    # the default speed mode (every layer's row count is a multiple of 4: no padding rows)
    # and int8 with optimize="size"
    n_w, n_ch = 32 * 16 + 16 * 8 + 8 * 16 + 16 * 32, 16 + 8 + 16 + 32
    assert res.weights_bytes == 2 * n_w + 12 * n_ch
    assert codegen.generate(path, tmp_path / "size", name="pump-ae", optimize="size").weights_bytes == n_w + 12 * n_ch


def test_odd_model_names_are_escaped(dense_models, tmp_path):
    name = 'pump "A"\nline2 \\ é */'
    codegen.generate(dense_models["per_channel"], tmp_path, name=name)
    assert HostModel(tmp_path).info.name == name.encode()


def test_arena_not_larger_than_tflm(dense_models, tmp_path):
    from aiot.model.reference import tflm_arena_usage

    path = dense_models["per_channel"]
    res = codegen.generate(path, tmp_path)
    usage = tflm_arena_usage(path)
    assert res.arena_bytes <= usage["head"] <= usage["total"]
    # hand plan: in(32) | h1(16) ; h2(8) ; h3(16) ; out(32): peak is 32 + 16
    assert res.arena_bytes == 48


PORT_STUB = r"""
#include "aiot/port.h"
static uint64_t fake_ticks;
uint64_t aiot_port_ticks(void) { fake_ticks += 5; return fake_ticks; }
"""


def test_profile_build_fills_layer_ticks(dense_models, tmp_path):
    import ctypes

    res = codegen.generate(dense_models["per_channel"], tmp_path / "c")
    stub = tmp_path / "port_stub.c"
    stub.write_text(PORT_STUB)
    host = HostModel(tmp_path / "c", defines=["AIOT_PROFILE"], extra_sources=[stub])
    host.invoke(np.zeros(32, np.int8))
    ticks = (ctypes.c_uint32 * 4).in_dll(host.lib, "aiot_model_layer_ticks")
    assert list(ticks) == [5, 5, 5, 5]  # one tick read before and one after each layer
    names = (ctypes.c_char_p * 4).in_dll(host.lib, "aiot_model_layer_names")
    assert [n.decode() for n in names] == [f"FULLY_CONNECTED#{i}" for i in range(4)]
    assert len(res.layers) == 4


CORES = ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33"]


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("cpu", CORES)
def test_generated_code_builds_warning_free_for_cortex_m(dense_models, tmp_path, cpu):
    codegen.generate(dense_models["per_channel"], tmp_path)
    srcs = [str(tmp_path / "model.c"), *map(str, codegen.engine_sources())]
    for profile in ([], ["-DAIOT_PROFILE"]) if cpu == "cortex-m4" else ([],):
        cmd = ["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-std=c99", "-Os", "-Wall", "-Wextra", "-Werror",
               "-Wshadow", f"-I{FIRMWARE / 'include'}", f"-I{tmp_path}", *profile, "-c", *srcs]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "model.o").is_file() and (tmp_path / "matvec.o").is_file()


def test_plan_reuses_dead_buffers_hand_computed():
    # chain a(64) -> op0 -> b(16) -> op1 -> c(64) -> op2 -> d(8); a is the graph input, d the output
    sizes = {0: 64, 1: 16, 2: 64, 3: 8}
    op_io = [([0], [1]), ([1], [2]), ([2], [3])]
    plan = plan_memory(3, op_io, sizes, [0], [3], [])
    off = plan.offset_of
    # a and c never live together: both 64 bytes at offset 0; b sits above a, d above c
    assert off[0] == off[2] == 0
    assert off[1] == 64 and off[3] == 64
    assert plan.arena_bytes == 80


def test_plan_alias_shares_storage_and_extends_lifetime():
    # a -> RESHAPE -> a' -> op1 -> b ; a' must not overlap b though a was "dead" after op0
    sizes = {0: 32, 1: 32, 2: 32}
    op_io = [([0], [1]), ([1], [2])]
    plan = plan_memory(2, op_io, sizes, [0], [2], [(0, 1)])
    assert plan.offset_of[0] == plan.offset_of[1]
    assert plan.offset_of[2] != plan.offset_of[1]
    assert plan.arena_bytes == 64


def test_codegen_rejects_broken_files(tmp_path):
    for name in ["not_a_flatbuffer.tflite", "float_model.tflite", "unsupported_op.tflite"]:
        with pytest.raises(ToolkitError):
            codegen.generate(FIX / name, tmp_path / name)
        assert not (tmp_path / name / "model.c").exists()  # nothing half-written


def test_cli_package_mode(dense_models, tmp_path):
    from click.testing import CliRunner

    from aiot.cli import main

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(dense_models["per_channel"], pkg / "model.tflite")
    out = CliRunner().invoke(main, ["codegen", "--package", str(pkg), "--compare-tflm"])
    assert out.exit_code == 0, out.output
    assert (pkg / "c" / "model.c").is_file() and (pkg / "c" / "model.h").is_file()
    assert "arena:   48 bytes" in out.output and "MACs:    1280" in out.output
    assert re.search(r"TFLM arena for the same model: \d+ bytes \(48 tensors", out.output)
    bad = CliRunner().invoke(main, ["codegen", "--model", str(FIX / "float_model.tflite"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "quantize it first" in bad.output and "Traceback" not in bad.output


def test_corrupted_models_give_toolkit_errors_not_crashes(tmp_path):
    import random

    data = (FIX / "good_dense.tflite").read_bytes()
    rng = random.Random(5)
    for i in range(400):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            bad[rng.randrange(8, len(bad))] = rng.randrange(256)
        try:
            codegen.generate(bytes(bad), tmp_path / "out")
        except ToolkitError:
            pass


def test_codegen_of_a_package_names_the_model_as_its_manifest_does(tmp_path):
    """`aiot run` showed the device's model as 'pkg' (the folder) where train, validate and the
    manifest call it 'pump7'; a package without a readable manifest still gets its folder's."""
    import json

    from click.testing import CliRunner

    from aiot.cli import main
    from aiot.codegen.host import HostModel

    ae24 = Path(__file__).resolve().parent.parent / "hil_tests" / "fixtures" / "ae24"
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for f in ("model.tflite", "vectors.npz"):
        shutil.copy(ae24 / f, pkg / f)
    (pkg / "manifest.json").write_text(json.dumps({
        "format": 1, "name": "pump7", "channels": ["s"], "window": 24, "sample_period_s": 1.0,
        "normalization": {"mean": [0.0], "std": [1.0]}, "model": {"tflite": "model.tflite"},
        "score": {"threshold": 1.0}, "training": {}}))
    r = CliRunner().invoke(main, ["codegen", "--package", str(pkg)])
    assert r.exit_code == 0, r.output
    assert HostModel(pkg / "c").info.name == b"pump7"
    (pkg / "manifest.json").write_text("{broken")
    r = CliRunner().invoke(main, ["codegen", "--package", str(pkg), "--out", str(tmp_path / "c2")])
    assert r.exit_code == 0, r.output
    assert HostModel(tmp_path / "c2").info.name == b"pkg"


def test_codegen_of_a_package_copes_with_any_name_its_manifest_gives(tmp_path, monkeypatch):
    """The manifest's name is data: SKAB's files are 0.csv, 1.csv ..., so `aiot train` names the
    model '0', which --format tflm refused as no C identifier (the folder's name, before, was
    one); a name of null became 'None'; '--package .' without a readable manifest gave the
    model no name; a manifest the system cannot read stopped codegen with a traceback."""
    import errno
    import json
    import os

    from click.testing import CliRunner

    from aiot.model import package as package_mod
    from aiot.cli import main
    from aiot.codegen.host import HostModel

    ae24 = Path(__file__).resolve().parent.parent / "hil_tests" / "fixtures" / "ae24"
    pkg = tmp_path / "pump"
    pkg.mkdir()
    shutil.copy(ae24 / "model.tflite", pkg / "model.tflite")

    def manifest(name):
        (pkg / "manifest.json").write_text(json.dumps({
            "format": 1, "name": name, "channels": ["s"], "window": 24, "sample_period_s": 1.0,
            "normalization": {"mean": [0.0], "std": [1.0]}, "model": {"tflite": "model.tflite"},
            "score": {"threshold": 1.0}, "training": {}}))

    def codegen_(*args):
        r = CliRunner().invoke(main, ["codegen", "--package", str(pkg), *args])
        assert r.exit_code == 0, r.output
        return r.output

    for name, stem in (("0", "model_0"), ("pümpe-7", "p_mpe_7"), ("", "pump"), ("x" * 300, "x" * 64)):
        manifest(name)
        out = codegen_("--format", "tflm", "--out", str(tmp_path / "tflm"))
        assert f"{stem}_data.h" in out
    r = CliRunner().invoke(main, ["codegen", "--package", str(pkg), "--format", "tflm", "--name", "0",
                                  "--out", str(tmp_path / "t2")])
    assert r.exit_code == 2 and "'0' is not a valid C identifier" in r.output  # a name the user gave is theirs
    for name in (None, 42, ["a"], "  "):
        manifest(name)
        codegen_("--out", str(tmp_path / "c"))
        assert HostModel(tmp_path / "c").info.name == b"pump"
    (pkg / "manifest.json").write_text("{broken")
    monkeypatch.chdir(pkg)
    r = CliRunner().invoke(main, ["codegen", "--package", ".", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert HostModel(tmp_path / "c").info.name == b"pump"

    def unreadable(path):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(package_mod, "load_package", unreadable)
    r = CliRunner().invoke(main, ["codegen", "--package", ".", "--out", str(tmp_path / "c3")])
    assert r.exit_code == 0, r.output
    assert HostModel(tmp_path / "c3").info.name == b"pump"


def test_every_unsupported_op_is_listed_at_once_with_advice_for_an_image_model(tmp_path):
    # An image model with two GELUs and a HARD_SWISH: one error names all three nodes
    # with their types and shapes, and gives no "(1, time, channels)" advice to an image.
    pytest.importorskip("tensorflow")
    import importlib.util

    import keras
    import numpy as np

    from aiot.paths import MODELS

    spec = importlib.util.spec_from_file_location("aiot_model_recipes", MODELS / "recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    keras.utils.set_random_seed(1)
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3), L.Activation("gelu"), L.Activation("hard_silu"),
                              L.Conv2D(4, 3), L.Activation("gelu"), L.Flatten(), L.Dense(2)])
    data = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    path = tmp_path / "image.tflite"
    path.write_bytes(recipes.convert_int8(model, data, per_channel=True, batch1=True))
    with pytest.raises(ToolkitError) as e:
        codegen.generate(path, tmp_path / "out")
    msg = e.value.message
    assert msg.count("GELU") == 2 and "HARD_SWISH" in msg and "3 node(s)" in msg
    assert "int8[1, 6, 6, 4]" in msg  # the first GELU's shapes
    assert "(1, time, channels)" not in e.value.hint and "image model" in e.value.hint


def test_custom_ops_are_refused_by_name_saying_what_they_are():
    from aiot.codegen import describe_unsupported, unsupported_hint
    from aiot.model import tflite
    from aiot.model.tflite import Operator

    g = tflite.load(FIX / "good_dense.tflite")
    ethos = Operator(index=0, op="CUSTOM:ethos-u", inputs=(g.inputs[0],), outputs=(g.outputs[0],))
    text = describe_unsupported(g, ethos)
    assert "custom op 'ethos-u'" in text and "Ethos-U" in text and "before Vela" in text
    assert "int8[" in text  # the node's input and output types and shapes
    other = Operator(index=3, op="CUSTOM:MyOp", inputs=(g.inputs[0],), outputs=(g.outputs[0],))
    assert "custom op 'MyOp'" in describe_unsupported(g, other)
    assert "without custom ops" in unsupported_hint(g, ["CUSTOM:ethos-u"])


def test_host_build_of_c_from_an_older_codegen_says_generate_again(tmp_path):
    # model.c from before several inputs and outputs (no aiot_model_input_n): named, not a crash
    (tmp_path / "model.c").write_text(
        '#include "aiot/model.h"\n'
        "static int8_t arena[16];\n"
        'const aiot_model_info_t aiot_model_info = {"old", 0, 8, 8, 16, 0.05f, -3, 0.1f, 2, 1};\n'
        "int8_t *aiot_model_input(void) { return arena; }\n"
        "const int8_t *aiot_model_output(void) { return arena + 8; }\n"
        "int aiot_model_invoke(void) { return 0; }\n")
    with pytest.raises(ToolkitError) as e:
        HostModel(tmp_path)
    assert "older aiot codegen" in e.value.message and "aiot codegen --model" in e.value.hint
