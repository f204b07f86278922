"""Chip-family ports: the pure clock/UART arithmetic (compiled from the very header the
firmware uses, checked against values worked out by hand from the reference manuals), the
board-file validation of clock trees and pins, every real board's firmware building
warning-free, and the Nucleo-F446RE firmware itself running on QEMU's STM32F405."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from aiot.testing import board_variant, requires_arm, requires_qemu
from aiot import paths
from aiot.target.boards import get_board, list_boards, load_board_file
from aiot.errors import ToolkitError
from aiot.target.ports import min_flash_latency, parse_stm32_pin

REAL = [b.name for b in list_boards() if not b.emulated]
STM32_DIR = paths.FIRMWARE / "port" / "stm32"

# --- stm32_calc.h on the host ---------------------------------------------------------------

_CALC_MAIN = r"""
#include <stdio.h>
#include "stm32_calc.h"
int main(void) {
    printf("%u %u %u %u\n", stm32_usart_brr(45000000u, 115200u), stm32_usart_brr(16000000u, 115200u),
           stm32_usart_brr(64000000u, 115200u), stm32_usart_brr(54000000u, 9600u));
    printf("%u\n", stm32_usart_actual_baud(45000000u, 391u));
    printf("%u %u %u %u %u\n", stm32_hpre_bits(1), stm32_hpre_bits(2), stm32_hpre_bits(512), stm32_hpre_bits(32),
           stm32_hpre_bits(64));
    printf("%u %u %u %u\n", stm32_ppre_bits(1), stm32_ppre_bits(2), stm32_ppre_bits(4), stm32_ppre_bits(3));
    printf("%08X %08X\n", stm32f4_pllcfgr(16, 192, 2, 4, 2, 0), stm32f4_pllcfgr(4, 180, 2, 8, 2, 1));
    printf("%08X\n", stm32g0_pllcfgr(1, 8, 2, 0));
    printf("%u %u\n", stm32_pll_out_hz(8000000u, 4, 216, 2), stm32_pll_out_hz(16000000u, 1, 8, 2));
    return 0;
}
"""


@pytest.fixture(scope="module")
def calc_output(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.skip("no host C compiler")
    d = tmp_path_factory.mktemp("calc")
    (d / "main.c").write_text(_CALC_MAIN)
    exe = d / "calc"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{STM32_DIR}", str(d / "main.c"), "-o", str(exe)],
                   check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()


def test_usart_brr_matches_reference_manual(calc_output: list[str]) -> None:
    # RM0390 §25.4.4 example: 45 MHz APB1, 115200 baud -> USARTDIV 24.4140625 -> mantissa 24
    # (0x18), fraction 0.414*16 = 6.6 -> 7: BRR 0x187 = 391. 16e6/115200 = 138.9 -> 139;
    # 64e6/115200 = 555.6 -> 556; 54e6/9600 = 5625 exactly.
    assert calc_output[0].split() == ["391", "139", "556", "5625"]
    # 45e6 / 391 = 115089.5 baud: 0.1 % off, well inside a UART's tolerance.
    assert calc_output[1] == "115090"


def test_prescaler_encodings(calc_output: list[str]) -> None:
    # RM0390 §6.3.3 RCC_CFGR: HPRE 0xxx=/1, 1000=/2, 1111=/512, 1100=/64 (no /32);
    # PPRE 0xx=/1, 100=/2, 101=/4 (no /3).
    assert calc_output[2].split() == ["0", "8", "15", "255", "12"]
    assert calc_output[3].split() == ["0", "4", "5", "255"]


def test_pllcfgr_encodings(calc_output: list[str]) -> None:
    # M=16, N=192, P=2, Q=4, R=2 from HSI is RCC_PLLCFGR's documented reset value
    # 0x24003010 (RM0390 §6.3.2). Nucleo-F446RE: 4 | 180<<6 | HSE<<22 | 8<<24 | 2<<28.
    assert calc_output[4].split() == ["24003010", "28402D04"]
    # G0 (RM0444 §5.4.4): PLLSRC=2 (HSI16), PLLM=0 (/1), PLLN=8 at bit 8, PLLREN bit 28, PLLR=1 (/2) at bit 29.
    assert calc_output[5] == "30000802"
    assert calc_output[6].split() == ["216000000", "64000000"]


# --- board-file validation of the family tables ----------------------------------------------


def test_flash_latency_tables() -> None:
    # RM0390 table 5 / RM0410 table 7 (2.7-3.6 V): one wait state per 30 MHz; RM0444 table 8: per 24 MHz.
    assert min_flash_latency("f4", 30_000_000) == 0
    assert min_flash_latency("f4", 30_000_001) == 1
    assert min_flash_latency("f4", 180_000_000) == 5
    assert min_flash_latency("f7", 216_000_000) == 7
    assert min_flash_latency("g0", 64_000_000) == 2


def test_pin_names() -> None:
    src = Path("x.toml")
    assert parse_stm32_pin("PA2", src, "uart.tx") == (0, 2)
    assert parse_stm32_pin("pd9", src, "uart.rx") == (3, 9)
    for bad in ("PA16", "A2", "PZ1", 7):
        with pytest.raises(ToolkitError, match="uart.tx"):
            parse_stm32_pin(bad, src, "uart.tx")


_variant = board_variant


@pytest.mark.parametrize(
    "board, old, new, needles",
    [
        # PLL gives 168 MHz but the board claims 180 MHz.
        ("nucleo-f446re", "n = 180", "n = 168", ["clock.pll", "168000000", "cpu_hz"]),
        # VCO input 8/2 = 4 MHz is above the 2.1 MHz limit.
        ("nucleo-f446re", "m = 4, n = 180", "m = 2, n = 90", ["clock.pll.m", "VCO input"]),
        ("nucleo-f446re", "p = 2, q = 8", "p = 3, q = 8", ["clock.pll.p", "(2, 4, 6, 8)"]),
        ("nucleo-f446re", "flash_latency = 5", "flash_latency = 4", ["clock.flash_latency", "at least 5"]),
        ("nucleo-f446re", "overdrive = true", "overdrive = false", ["clock.overdrive", "over-drive"]),
        ("nucleo-f446re", "apb1_div = 4", "apb1_div = 2", ["clock.apb1_div", "90 MHz exceeds 45 MHz"]),
        ("nucleo-f446re", 'source = "hse-bypass"', 'source = "lse"', ["clock.source", "hsi"]),
        ("nucleo-f446re", 'tx = "PA2"', 'tx = "PA17"', ["uart.tx", "PA17"]),
        ("nucleo-f446re", 'series = "f4"', 'series = "h7"', ["stm32.series", "h7"]),
        ("nucleo-f446re", "af = 7", "af = 16", ["uart.af", "0..15"]),
        ("nucleo-f767zi", "n = 216", "n = 200", ["clock.pll", "200000000"]),
        ("nucleo-f767zi", "n = 216", "n = 240", ["clock.pll.n", "VCO output 480 MHz"]),
        ("nucleo-g071rb", "flash_latency = 2", "flash_latency = 2\noverdrive = true",
         ["clock.overdrive", "no over-drive"]),
        ("nucleo-g071rb", "m = 1, n = 8", "m = 1, n = 4", ["clock.pll.n", "outside 8..86"]),
        ("nrf52840-dk", "baud = 115200", "baud = 115000", ["uart.baud", "115200"]),
        ("nrf52840-dk", "tx_pin = 6", "tx_pin = 48", ["uart.tx_pin", "48"]),
        ("microbit", "rx_pin = 25", "rx_pin = 32", ["uart.rx_pin", "nrf51"]),
        ("microbit", "stack_bytes = 2048", "stack_bytes = 12288", ["stack_bytes", "half the RAM"]),
        ("mps2-an386", "rx_irq = 0", "rx_irq = 64", ["uart.rx_irq", "64", "0..63"]),
        ("mps2-an505", "rx_irq = 32", 'rx_irq = "32"', ["uart.rx_irq", "'32'"]),
        ("microbit", "rx_pin = 25", "rx_pin = 25\nrx_irq = 2", ["uart.rx_irq", "nrf5", "no interrupt-driven"]),
    ],
)
def test_bad_family_tables_name_the_key(tmp_path: Path, board: str, old: str, new: str, needles: list[str]) -> None:
    path = _variant(tmp_path, board, old, new)
    with pytest.raises(ToolkitError) as ei:
        load_board_file(path)
    text = str(ei.value)
    assert str(path) in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in: {text}"


def test_boards_build_interrupt_driven_receive_from_their_rx_irq() -> None:
    assert get_board("mps2-an386").defines()["AIOT_UART_RX_IRQ"] == "0"
    assert get_board("mps2-an505").defines()["AIOT_UART_RX_IRQ"] == "32"  # AN505: UART0 RX is IRQ 32
    assert get_board("netduinoplus2").defines()["AIOT_UART_RX_IRQ"] == "37"  # STM32F405 USART1
    assert get_board("nucleo-f446re").defines()["AIOT_UART_RX_IRQ"] == "38"  # STM32F446 USART2
    # the STM32 v2 USART (F7, G0) interrupt path has not run anywhere yet: those boards poll
    assert "AIOT_UART_RX_IRQ" not in get_board("nucleo-f767zi").defines()


def test_cmsdk_board_without_rx_irq_polls(tmp_path: Path) -> None:
    path = _variant(tmp_path, "mps2-an385", "rx_irq = 0", "")
    assert "AIOT_UART_RX_IRQ" not in load_board_file(path).defines()


def test_qemu_boards_skip_the_clock_setup_real_boards_do_it() -> None:
    assert get_board("netduinoplus2").defines()["AIOT_CLOCK_SETUP"] == "0"
    f446 = get_board("nucleo-f446re").defines()
    assert f446["AIOT_CLOCK_SETUP"] == "1"
    assert f446["AIOT_UART_PCLK_HZ"] == "45000000u"  # USART2 on APB1 = 180 MHz / 4
    assert get_board("nucleo-f767zi").defines()["AIOT_CACHE_ENABLE"] == "1"
    assert "AIOT_CACHE_ENABLE" not in f446


# --- real boards: data completeness and warning-free builds ------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_real_board_files_are_complete(name: str) -> None:
    b = get_board(name)
    flash, power = b.extra.get("flash", {}), b.extra.get("power", {})
    assert flash.get("method") in ("pyocd", "platformio", "command", "msd")
    assert flash.get("pyocd_target") and flash.get("platformio_board")
    assert 0 < power.get("sleep_ua", 0) / 1000 < power.get("active_ma", 0), "sleep current must be below active"
    assert power.get("source")
    assert b.defines()["AIOT_SEMIHOSTING"] == "0"  # no debugger-less hang on a bkpt


def test_the_issue_boards_exist() -> None:
    # Cortex-M4F (ST and Nordic), a Cortex-M7 and an Armv6-M board.
    cores = {get_board(n).core for n in REAL}
    assert {"nucleo-f446re", "nrf52840-dk", "nucleo-f767zi", "nucleo-g071rb"} <= set(REAL)
    assert {"cortex-m4", "cortex-m7", "cortex-m0plus"} <= cores


@requires_arm
@pytest.mark.parametrize("app", ["device", "boardcheck"])
@pytest.mark.parametrize("name", REAL)
def test_real_board_firmware_builds_warning_free(name: str, app: str, tmp_path: Path) -> None:
    from aiot.target.firmware import build

    b = get_board(name)
    res = build(b, tmp_path / "fw", app=app)  # -Wall -Wextra -Werror
    assert res.size.flash_total <= b.flash.length
    assert res.size.ram_total <= b.ram.length
    # The vector table sits at the start of flash: word 0 is the initial SP (top of the
    # stack, inside RAM), word 1 the reset handler (Thumb bit set).
    words = res.bin.read_bytes()[:8]
    sp, reset = int.from_bytes(words[:4], "little"), int.from_bytes(words[4:], "little")
    assert b.ram.origin < sp <= b.ram.origin + b.ram.length
    assert reset & 1 and b.flash.origin <= reset < b.flash.origin + b.flash.length


# --- the real Nucleo-F446RE firmware on QEMU's STM32F405 -------------------------------------


@requires_arm
@requires_qemu
@pytest.mark.qemu
def test_nucleo_f446re_firmware_runs_on_qemu_stm32f405(tmp_path: Path) -> None:
    """Same F4 register layout: USART2 at 0x40004400 is QEMU's serial1. QEMU has no RCC, so
    the HSE never reports ready: the bounded wait must time out, fall back to the HSI and
    still bring the console up (what a real board with a missing MCO link would do)."""
    from aiot.target.firmware import build
    from aiot.target.qemu import Qemu

    real = get_board("nucleo-f446re")
    board = dataclasses.replace(real, emulated=True, qemu_machine="netduinoplus2", systick_hz=168_000_000)
    res = build(board, tmp_path / "fw", app="boardcheck", defines=["AIOT_SEMIHOSTING=1"])

    class Serial1(Qemu):
        def command(self) -> list[str]:
            cmd = super().command()
            i = cmd.index("-serial")
            return cmd[:i] + ["-serial", "null"] + cmd[i:]  # serial0 (USART1) unused

    with Serial1(board, res.elf, serial="tcp") as q:
        with socket.create_connection(("127.0.0.1", q.port), timeout=5) as s:
            buf, deadline = b"", time.monotonic() + 20
            s.settimeout(1)
            sent = False
            while b"echo f446\n" not in buf and time.monotonic() < deadline:
                if not sent and b"ready\n" in buf:
                    s.sendall(b"f446\n")
                    sent = True
                try:
                    chunk = s.recv(256)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
        code, _out, err = q.wait(20)
    text = buf.decode(errors="replace")
    assert "aiot boot nucleo-f446re\n" in text and "echo f446\n" in text, text
    assert code == 0, err
    assert "clock set-up timed out, running on HSI" in err


def test_clocked_stm32_board_needs_uart_enable_and_pins(tmp_path: Path) -> None:
    path = _variant(tmp_path, "nucleo-g071rb", "enable_bit = 17", "")
    with pytest.raises(ToolkitError, match="uart.enable_bit: missing"):
        load_board_file(path)
