"""aiot bench's derived figures: the comparison table with TFLM and CMSIS-NN, and time and
energy per inference from a board's [power] figures (no firmware is built here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiot.errors import ToolkitError
from aiot.paths import BOARDS
from aiot.target.bench import BenchResult, comparison_table, energy_figures
from aiot.target.boards import load_board_file


def _board_with_power(tmp_path: Path, power: str) -> Path:
    text = (BOARDS / "nrf52840-dk.toml").read_text()
    text = re.sub(r"\[power\][^\[]*", power, text, flags=re.S)
    path = tmp_path / "nrf52840-dk.toml"
    path.write_text(text)
    return path


def test_energy_per_inference_and_battery_life(tmp_path):
    src = _board_with_power(tmp_path, '[power]\nvdd = 2.0\nactive_ma = 5.0\nsleep_ua = 2.0\n'
                                      'sleep_mode = "idle"\nverified = false\nsource = "test"\n\n')
    board = load_board_file(src)
    instructions = board.cpu_hz / 100  # 10 ms at the board's clock
    f = energy_figures(board, instructions, period_s=1.0, battery_mah=1000)
    # by hand: 2 V * 5 mA * 10 ms = 100 uJ; (5000 uA * 0.01 s + 2 uA * 0.99 s) / 1 s = 51.98 uA;
    # 1000 mAh / 51.98 uA = 19238.2 h
    assert f.seconds == pytest.approx(0.01)
    assert f.energy_uj == pytest.approx(100.0)
    assert f.average_ua == pytest.approx(51.98)
    assert f.battery_hours == pytest.approx(1e6 / 51.98)
    text = "\n".join(f.lines())
    # energy, average current and battery life come from the power table: each says so
    assert text.count("NOT verified") == 3
    assert "one instruction per cycle" in text


def test_energy_refuses_a_board_without_power_figures_and_a_too_short_period(tmp_path):
    runner = CliRunner()
    from aiot.cli import main

    out = runner.invoke(main, ["bench", "--board", "mps2-an386", "--energy"])
    assert out.exit_code == 2 and "no [power] table" in out.output and "nrf52840-dk" in out.output
    src = _board_with_power(tmp_path, '[power]\nvdd = 3.0\nactive_ma = 3.0\nsleep_ua = 1.0\n\n')
    with pytest.raises(ToolkitError) as e:
        energy_figures(load_board_file(src), 64e6, period_s=0.5)
    assert "shorter than one inference" in e.value.message


def _result(name: str, instructions: float, exact: bool = True) -> BenchResult:
    return BenchResult(model=name, board="mps2-an386", core="cortex-m4", flash_bytes=0, engine_code_bytes=0,
                       weights_bytes=0, ram_bytes=0, arena_bytes=0, tflm_arena_bytes=None,
                       tflm_arena_total_bytes=None, instructions_per_inference=instructions, macs=1000,
                       instructions_per_mac=0.0, bit_exact=exact, runs=10)


def test_comparison_table_ratio_and_a_model_that_did_not_run():
    ref = {"macs": 2000, "reference": 40000, "cmsis_nn": 10000}
    table = comparison_table([("a", ref, _result("a", 6700.0), ""), ("b", None, _result("b", 500.0, exact=False), ""),
                              ("c", ref, None, "node 3: TRANSPOSE_CONV is not supported")])
    rows = table.splitlines()
    assert rows[2] == "| a | 2,000 | 40,000 | 10,000 | 6,700 | 0.67 | yes |"
    assert rows[3] == "| b | 1,000 | - | - | 500 | - | NO |"
    assert rows[4].startswith("| c | - | 40,000 | 10,000 | not run: node 3: TRANSPOSE_CONV")
