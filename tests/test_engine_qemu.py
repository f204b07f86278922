"""The engine on the emulated cores: bench firmware for conv1d and ad-small built for
each core family (M0 and M3: portable C; M4F, M7, M33: the DSP path with SMLAD, SMMULR
and the byte-wise SIMD clamp), run in QEMU, every output byte checked against
tflite-micro on the same inputs. The host parity suite cannot reach the DSP code."""

from __future__ import annotations

import pytest

from aiot.target.bench import bench_model, load_recipes
from aiot.target.boards import get_board
from aiot.testing import requires_arm, requires_qemu

pytestmark = [requires_arm, requires_qemu, pytest.mark.qemu]

BOARDS = ["microbit", "mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505"]  # M0, M3, M4F, M7, M33
MODELS = ["conv1d", "ad-small"]
# The default (speed: int16 weights) everywhere; the packed int8 kernels (size) on one DSP
# core with conv1d, which runs both their CONV_2D and FULLY_CONNECTED paths.
CASES = [(b, m, "speed") for b in BOARDS for m in MODELS] + [("mps2-an386", "conv1d", "size")]


@pytest.fixture(scope="module")
def recipes():
    pytest.importorskip("tensorflow")
    return load_recipes()


@pytest.mark.parametrize("board, model, optimize", CASES, ids=[f"{b}-{m}-{o}" for b, m, o in CASES])
def test_bench_firmware_is_bit_exact(recipes, tmp_path, board, model, optimize):
    r = bench_model(get_board(board), recipes.build_model(model), model.replace("-", "_"), tmp_path,
                    runs=4, optimize=optimize, profile=False)
    assert r.runs == 4 and r.optimize == optimize
    assert r.bit_exact, f"{model} on {board} ({optimize}) differs from tflite-micro"


def test_generic_requantization_on_a_dsp_core(recipes, tmp_path, monkeypatch):
    # Models this small always get the proven fast requantization; force the generic
    # SRDHM + rounding-shift tables so their DSP build is checked against tflite-micro too.
    from aiot.codegen import ops

    monkeypatch.setattr(ops, "FAST_REQUANT_LIMIT", 0)
    r = bench_model(get_board("mps2-an386"), recipes.build_model("ad-small"), "ad_small", tmp_path, runs=4,
                    profile=False)
    assert "aiot_rq_ch_t" not in (tmp_path / "c" / "model.c").read_text()
    assert r.bit_exact
