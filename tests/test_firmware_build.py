"""Firmware build and its flash/RAM accounting, checked against independent figures:
arm-none-eabi-size for totals, the model's own parameter count for weights."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import numpy as np
import pytest

from aiot.testing import requires_arm
from aiot.target.bench import load_recipes
from aiot.target.boards import get_board
from aiot.codegen import generate
from aiot.errors import ToolkitError
from aiot.target.firmware import build
from aiot.model.reference import TflmReference

pytestmark = requires_arm


@pytest.fixture(scope="module")
def ad_small(tmp_path_factory):
    tflite = load_recipes().build_model("ad-small")
    out = tmp_path_factory.mktemp("ad_small")
    cg = generate(tflite, out / "c", name="ad_small")
    return tflite, cg, out


def _berkeley(elf):
    text, data, bss = subprocess.run(["arm-none-eabi-size", "-B", "-d", str(elf)], capture_output=True,
                                     text=True, check=True).stdout.splitlines()[-1].split()[:3]
    return int(text), int(data), int(bss)


def test_size_split_adds_up_and_matches_arm_size(ad_small, tmp_path):
    tflite, cg, out = ad_small
    res = build(get_board("mps2-an386"), tmp_path / "fw", out / "c")
    text, data, bss = _berkeley(res.elf)
    s = res.size
    assert s.flash_total == text + data
    assert s.ram_total == data + bss
    assert s.engine_code + s.weights + s.app_code == s.flash_total
    assert s.arena + s.stack + s.app_ram == s.ram_total
    assert s.arena == cg.arena_bytes


@pytest.mark.parametrize("optimize, weight_size", [("speed", 2), ("size", 1)])
def test_weights_hold_at_least_every_parameter(ad_small, tmp_path, optimize, weight_size):
    # ad-small is 32-16-8-16-32: kernels (int16 pre-widened in the speed mode, int8 in the
    # size mode) + int32 biases, counted from the layer sizes.
    sizes = [32, 16, 8, 16, 32]
    kernel_bytes = weight_size * sum(a * b for a, b in zip(sizes, sizes[1:]))
    bias_bytes = 4 * sum(sizes[1:])
    tflite, _cg, _out = ad_small
    generate(tflite, tmp_path / "c", name="ad_small", optimize=optimize)
    res = build(get_board("mps2-an385"), tmp_path / "fw", tmp_path / "c")
    assert res.size.weights >= kernel_bytes + bias_bytes
    # ...and not wildly more: per-channel multipliers/shifts are 8 bytes per output channel.
    assert res.size.weights <= kernel_bytes + bias_bytes + 8 * sum(sizes[1:]) + 256
    assert 0 < res.size.engine_code < res.size.flash_total


def test_firmware_without_model_has_no_engine(tmp_path):
    res = build(get_board("mps2-an386"), tmp_path / "fw")
    assert res.size.engine_code == 0 and res.size.weights == 0 and res.size.arena == 0


def test_missing_generated_model_is_a_clear_error(tmp_path):
    with pytest.raises(ToolkitError) as e:
        build(get_board("mps2-an386"), tmp_path / "fw", tmp_path / "nowhere")
    assert "model.c missing" in e.value.message and "aiot codegen" in e.value.hint


@pytest.mark.qemu
def test_bench_is_bit_exact_and_profile_is_consistent(ad_small, tmp_path):
    from aiot.target.bench import bench_model

    tflite, cg, _out = ad_small
    r = bench_model(get_board("mps2-an386"), tflite, "ad_small", tmp_path, runs=10)
    assert r.bit_exact
    assert r.tflm_arena_bytes is not None and r.arena_bytes <= r.tflm_arena_bytes  # never larger than TFLM's
    assert r.macs == cg.macs == 32 * 16 + 16 * 8 + 8 * 16 + 16 * 32
    # At least one instruction per MAC on a core without SIMD in this path, and finite.
    assert r.macs * 0.25 < r.instructions_per_inference < r.macs * 50
    # Per-layer figures (profiling build) must account for the whole inference.
    total_layers = sum(layer.instructions for layer in r.layers)
    assert len(r.layers) == len(cg.layers)
    assert 0.8 * r.instructions_per_inference < total_layers < 1.3 * r.instructions_per_inference


def test_bench_inputs_follow_the_documented_lcg():
    from aiot.target.bench import BENCH_SEED, bench_inputs

    # Numerical Recipes LCG, top byte as int8, recomputed independently here.
    state, want = BENCH_SEED, []
    for _ in range(5):
        state = (1664525 * state + 1013904223) % 2**32
        want.append(int(np.array([state >> 24], dtype=np.uint8).view(np.int8)[0]))
    assert bench_inputs(1, 5)[0].tolist() == want


def test_bench_output_parser_rejects_truncated_runs():
    from aiot.target.bench import parse_bench_output

    ok = "bench m runs 1\nrun 0 ticks 12 out 01ff\nlayer 0 FC#0 10\ndone\n"
    ticks, outs, layers = parse_bench_output(ok)
    assert ticks == [12] and outs[0].tolist() == [1, -1] and layers == {(0, "FC#0"): [10]}
    with pytest.raises(ToolkitError, match="did not finish"):
        parse_bench_output("bench m runs 1\nrun 0 ticks 12 out 01ff\n")
    with pytest.raises(ToolkitError, match="no header"):
        parse_bench_output("garbage")
    with pytest.raises(ToolkitError, match="reported"):
        parse_bench_output("bench m runs 1\nerror invoke 3\ndone\n")


def test_recipe_is_int8_in_and_out(ad_small):
    # Guard for the fixture: the recipe is int8 in/out with the expected shapes.
    tflite, cg, _ = ad_small
    ref = TflmReference(tflite)
    assert ref.input_details["dtype"] == np.int8 and ref.output_details["dtype"] == np.int8
    assert int(np.prod(ref.input_shape)) == 32 == int(np.prod(cg.input_shape))


def _core_variants():
    from aiot.target.boards import list_boards

    seen = {}
    for b in list_boards():
        seen.setdefault(tuple(b.cpu_flags()), b.name)
    return sorted(seen.items(), key=lambda kv: kv[1])


@pytest.mark.parametrize("flags,board", _core_variants(), ids=lambda v: v if isinstance(v, str) else "")
def test_generated_c_is_warning_free_for_every_core(ad_small, flags, board):
    # Compile the generated model and every engine kernel with each distinct core/FPU flag
    # set of the board files, with all warnings as errors (host build is covered by
    # hostbuild's -Wall -Wextra -Werror in the parity tests). The flags are a firmware
    # build's for the board, through its object cache: an object there was compiled from
    # these very bytes with these flags (-Werror among them), so the kernels the suite's
    # builds for the same core compiled already are not compiled again.
    from aiot.codegen import engine_sources
    from aiot.target import firmware, hostbuild
    from aiot.target.toolchain import require

    _tflite, _cg, out = ad_small
    b = get_board(board)
    assert tuple(b.cpu_flags()) == flags
    gcc = require("arm-none-eabi-gcc")
    cflags = [*flags, "-O2", *firmware.COMMON_CFLAGS,
              *(f"-D{k}={v}" for k, v in firmware.build_defines(b, out / "c").items())]
    assert {"-Wall", "-Wextra", "-Werror"} <= set(cflags)
    srcs = [out / "c" / "model.c", *engine_sources()]
    private: list = []
    try:
        objs = [hostbuild.cached_object(gcc, src, cflags, firmware.include_dirs(out / "c"),
                                        lambda args: firmware._run([gcc, *args], f"{board}: {src.name}"), private)
                for src in srcs]
        assert len(objs) == len(srcs) and all(o.is_file() and o.stat().st_size > 0 for o in objs)
    finally:
        for folder in private:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("region", ["flash", "ram"])
def test_an_image_too_big_for_the_board_is_a_clear_error(tmp_path, region):
    from aiot.target.boards import load_board_file
    from aiot.target.firmware import DoesNotFit

    src = get_board("mps2-an386").source.read_text()
    src = src[:src.index("[mcuboot]")]  # its slots lie beyond a 4 KB flash: the loader would refuse them first
    if region == "flash":  # the protocol app alone is larger than 4 KB of flash
        src = src.replace("flash = { origin = 0x00000000, length = 0x00400000 }",
                          "flash = { origin = 0x00000000, length = 0x00001000 }")
    else:  # ... and needs more than 2 KB of RAM with its 4 KB stack
        src = src.replace("ram   = { origin = 0x20000000, length = 0x00400000 }",
                          "ram   = { origin = 0x20000000, length = 0x00000800 }")
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(src)
    board = load_board_file(tiny)
    assert (board.flash.length, board.ram.length) != (0x400000, 0x400000)
    with pytest.raises(DoesNotFit) as e:
        build(board, tmp_path / "fw")
    what = "flash" if region == "flash" else "RAM"
    assert f"bytes more {what} than the board's" in e.value.message
    assert e.value.overflow > 0
    assert "aiot boards" in e.value.hint


def test_a_second_build_reuses_the_objects_and_links_the_same_image(ad_small, tmp_path, monkeypatch):
    # the objects come from the cache (aiot.target.hostbuild.cached_object), those of the files
    # that read the model's folder too (keyed by the folder's bytes); a frame-limit variant
    # compiles again the files that read the limit, not the model's C
    from aiot.target import firmware

    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "cache"))
    compiled: list[str] = []
    real = firmware._run
    monkeypatch.setattr(firmware, "_run", lambda cmd, what: (compiled.append(what), real(cmd, what))[1])
    board = get_board("mps2-an386")
    _, _, out = ad_small
    one = build(board, tmp_path / "one", out / "c")
    first = [w for w in compiled if w.startswith("compiling")]
    compiled.clear()
    two = build(board, tmp_path / "two", out / "c")
    again = [w for w in compiled if w.startswith("compiling")]
    assert "compiling firmware/src/engine/conv.c" in first and len(first) > 10
    assert again == [], again  # the same model's folder: nothing to compile
    assert one.bin.read_bytes() == two.bin.read_bytes() and one.size == two.size
    compiled.clear()
    three = build(board, tmp_path / "three", out / "c", defines=["AIOT_FRAME_MAX_PAYLOAD=300u"])
    limit = [w for w in compiled if w.startswith("compiling")]
    assert "compiling firmware/src/protocol/frame.c" in limit and not any("model.c" in w for w in limit), limit
    assert three.defines["AIOT_FRAME_MAX_PAYLOAD"] == "300u" and three.bin.read_bytes() != one.bin.read_bytes()


def test_a_build_for_another_model_in_the_cache_compiles_only_the_files_that_read_it(ad_small, tmp_path,
                                                                                      monkeypatch):
    # The models evaluate, commission and tune train live in the cache (cache_dir()/models): a
    # folder of generated C is a caller's wherever it lies, so the engine, ports and monitor
    # compiled for one model serve the next. Include folders in the cache counted as unpacked
    # third-party C, keyed by their path: every file was compiled again for each model. The
    # same model in another folder compiles nothing; another model only the files reading it.
    import shutil

    from aiot import paths
    from aiot.target import firmware

    compiled: list[str] = []
    real = firmware._run
    monkeypatch.setattr(firmware, "_run", lambda cmd, what: (compiled.append(what), real(cmd, what))[1])
    tflite, _, _ = ad_small
    board = get_board("mps2-an386")
    models = paths.cache_dir() / "models" / f"test-{tmp_path.name}"  # as a trained model's folder
    try:
        for name in ("one", "two"):
            generate(tflite, models / name / "c", name="ad_small")
        generate(tflite, models / "other" / "c", name="ad_small", optimize="size")  # other C, same sizes
        with (models / "other" / "c" / "model.c").open("a") as f:  # ... and bytes no earlier run compiled
            f.write(f"/* {uuid.uuid4()} */\n")
        one = build(board, tmp_path / "one", models / "one" / "c")
        compiled.clear()
        two = build(board, tmp_path / "two", models / "two" / "c")
        same = [w for w in compiled if w.startswith("compiling")]
        compiled.clear()
        other = build(board, tmp_path / "other", models / "other" / "c")
    finally:
        shutil.rmtree(models, ignore_errors=True)
    again = [w for w in compiled if w.startswith("compiling")]
    assert same == [], same
    assert again and all("model.c" in w or "/app/" in w or "/bench/" in w for w in again), again
    assert one.bin.read_bytes() == two.bin.read_bytes() != other.bin.read_bytes()
