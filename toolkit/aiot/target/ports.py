"""Chip-family knowledge that turns a board file's family tables into -D defines.

A board file describes hardware in datasheet terms (``[clock] pll = {m = 4, n = 180,
p = 2}``, ``tx = "PA2"``); this module checks those values against the limits the
reference manuals give and derives the defines firmware/port/<family>/ compiles with.
Boards stay data: adding a Nucleo is a new TOML file, and a typo in it is a clear error
at load time naming the file and key, not a board that silently runs at the wrong baud.

Pure functions only (no I/O besides the error messages): tests check them directly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiot.errors import ToolkitError

DEFAULT_STACK_BYTES = 4096


def _err(src: Path, key: str, msg: str, hint: str | None = None) -> ToolkitError:
    return ToolkitError(f"board file {src}: {key}: {msg}", hint=hint)


def _series(raw: dict[str, Any], family: str, known: dict, src: Path) -> str:
    """The board's ``[family] series``, lower-case, checked against ``known``."""
    table = raw.get(family)
    hint = f"one of: {', '.join(known)}"
    if not isinstance(table, dict) or "series" not in table:
        raise _err(src, f"{family}.series", "missing", hint=hint)
    series = str(table["series"]).lower()
    if series not in known:
        raise _err(src, f"{family}.series", f"unknown series '{table['series']}'", hint=hint)
    return series


def _int(table: dict[str, Any], key: str, src: Path, where: str, default: Any = None) -> int:
    if key not in table:
        if default is not None:
            return default
        raise _err(src, f"{where}{key}", "missing", hint="see docs/boards.md for the keys of this family")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(src, f"{where}{key}", f"must be an integer, got {value!r}")
    return value


# ---------------------------------------------------------------------------- common


def stack_bytes(extra: dict[str, Any], ram_length: int, src: Path) -> int:
    """The board's main stack size: ``stack_bytes`` (default 4 KiB), 8-byte aligned (AAPCS)."""
    if "stack_bytes" not in extra:
        return DEFAULT_STACK_BYTES
    n = extra["stack_bytes"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 512 or n % 8:
        raise _err(src, "stack_bytes", f"must be an integer >= 512 and a multiple of 8, got {n!r}")
    if n > ram_length // 2:
        raise _err(src, "stack_bytes", f"{n} B leaves too little of the {ram_length} B of RAM for the model",
                   hint="keep the stack at most half the RAM")
    return n


#: optimisation levels a board file may ask for its app code (app_opt)
APP_OPT_LEVELS = ("-O1", "-O2", "-O3", "-Os")


def app_opt(extra: dict[str, Any], src: Path) -> str | None:
    """The board's ``app_opt``: the level the app, protocol, monitor and port code compile at
    on a flash-tight part (None: the build's own level); the engine always keeps the build's."""
    if "app_opt" not in extra:
        return None
    v = extra["app_opt"]
    if not isinstance(v, str) or v not in APP_OPT_LEVELS:
        raise _err(src, "app_opt", f"must be one of {', '.join(APP_OPT_LEVELS)}, got {v!r}",
                   hint='app_opt = "-Os" builds the app code for size (the engine keeps -O2)')
    return v


# ---------------------------------------------------------------------------- STM32

@dataclass(frozen=True)
class _Stm32Series:
    """Limits of one STM32 series, from its reference manual and datasheet."""

    name: str
    manual: str
    max_sysclk: int
    max_apb: tuple[int, int]          # APB1, APB2 maximum (G0: one APB, same value twice)
    pll_m: tuple[int, int]
    pll_n: tuple[int, int]
    pll_div: tuple[int, ...]          # allowed dividers of the system-clock PLL output
    vco_in: tuple[int, int]
    vco_out: tuple[int, int]
    hz_per_wait_state: int            # flash: max HCLK per wait state at 2.7-3.6 V
    overdrive_above: int | None       # over-drive needed above this HCLK
    usart_v2: bool


_STM32 = {
    # RM0390 §6.3.2 (PLL), §3.4 table 5 (wait states), DS10693 §6.3.1 (limits, F446).
    "f4": _Stm32Series("f4", "RM0390/RM0090", 180_000_000, (45_000_000, 90_000_000), (2, 63), (50, 432),
                       (2, 4, 6, 8), (950_000, 2_100_000), (100_000_000, 432_000_000), 30_000_000,
                       168_000_000, False),
    # RM0410 §5.3.2 (PLL), §3.3.2 table 7 (wait states), DS11532 §6.3.1 (F767 limits).
    "f7": _Stm32Series("f7", "RM0410", 216_000_000, (54_000_000, 108_000_000), (2, 63), (50, 432),
                       (2, 4, 6, 8), (950_000, 2_100_000), (100_000_000, 432_000_000), 30_000_000,
                       180_000_000, True),
    # RM0444 §5.4.4 (PLL: R output 2..8, VCO 64..344 MHz), §3.3.4 table 8 (range 1).
    "g0": _Stm32Series("g0", "RM0444", 64_000_000, (64_000_000, 64_000_000), (1, 8), (8, 86),
                       tuple(range(2, 9)), (2_660_000, 16_000_000), (64_000_000, 344_000_000), 24_000_000,
                       None, True),
}
_HSI_HZ = 16_000_000
_CLOCK_SOURCES = {"hsi": 0, "hse": 1, "hse-bypass": 2}
_AHB_DIVS = (1, 2, 4, 8, 16, 64, 128, 256, 512)
_APB_DIVS = (1, 2, 4, 8, 16)
_PIN = re.compile(r"^P([A-K])([0-9]{1,2})$")


def parse_stm32_pin(name: Any, src: Path, key: str) -> tuple[int, int]:
    """``"PA2"`` -> (port 0, pin 2)."""
    m = _PIN.match(str(name).upper())
    if not m or int(m.group(2)) > 15:
        raise _err(src, key, f"not an STM32 pin name: {name!r}", hint='write it like "PA2" or "PD9"')
    return ord(m.group(1)) - ord("A"), int(m.group(2))


def min_flash_latency(series: str, hclk: int) -> int:
    """Fewest flash wait states the series allows at ``hclk`` (2.7-3.6 V supply)."""
    return max(0, math.ceil(hclk / _STM32[series].hz_per_wait_state) - 1)


def stm32_defines(raw: dict[str, Any], cpu_hz: int, baud: int, src: Path) -> dict[str, str]:
    """Validate an stm32 board's [stm32], [clock] and [uart] tables; return its defines.

    ``raw`` is the board's whole TOML document."""
    series = _series(raw, "stm32", _STM32, src)
    s = _STM32[series]
    d: dict[str, str] = {f"AIOT_STM32_{series.upper()}": "1"}

    # Clock tree. No [clock] table: the chip stays on its reset clock (QEMU's STM32
    # machines model no RCC, and their timers run at the board's cpu_hz regardless).
    clk = raw.get("clock")
    pclk = (cpu_hz, cpu_hz)
    uart = raw["uart"]
    bus = str(uart.get("bus", "apb2" if series != "g0" else "apb1")).lower()
    if bus not in ("apb1", "apb2"):
        raise _err(src, "uart.bus", f"must be apb1 or apb2, got {bus!r}")
    if clk is not None:
        pclk = _stm32_clock(clk, s, cpu_hz, src, d)
        # A board that sets up its clocks is real hardware: without the USART's clock
        # enable and pin mux it would run and print nothing.
        for key in ("enable_bit", "tx", "rx", "af"):
            if key not in uart:
                raise _err(src, f"uart.{key}", "missing (needed on hardware: USART clock enable, pins, "
                           "alternate function)", hint="see the reference manual's RCC chapter and the pin table")
    d["AIOT_CLOCK_SETUP"] = "1" if clk is not None else "0"
    uart_pclk = pclk[0] if bus == "apb1" else pclk[1]
    d["AIOT_UART_PCLK_HZ"] = f"{uart_pclk}u"
    brr = (uart_pclk + baud // 2) // baud
    if brr < 16:
        raise _err(src, "uart.baud", f"{baud} baud is too fast for a {uart_pclk} Hz USART clock (BRR {brr} < 16)")
    actual = uart_pclk / brr
    if abs(actual - baud) / baud > 0.02:
        raise _err(src, "uart.baud", f"{baud} baud is off by {abs(actual - baud) / baud:.1%} at {uart_pclk} Hz",
                   hint="a UART tolerates about 2%: pick another baud rate or APB clock")

    # USART peripheral clock enable and pins. Optional (QEMU needs neither), but a real
    # board without them prints nothing, so real boards must give them.
    if "enable_bit" in uart:
        d["AIOT_UART_RCC_BUS"] = "2" if bus == "apb2" else "1"
        d["AIOT_UART_RCC_BIT"] = str(_int(uart, "enable_bit", src, "uart."))
    if "tx" in uart or "rx" in uart:
        for role in ("tx", "rx"):
            if role not in uart:
                raise _err(src, f"uart.{role}", "missing (give both tx and rx pins)")
            port, pin = parse_stm32_pin(uart[role], src, f"uart.{role}")
            d[f"AIOT_UART_{role.upper()}_PORT"] = f"{port}u"
            d[f"AIOT_UART_{role.upper()}_PIN"] = f"{pin}u"
        af = _int(uart, "af", src, "uart.")
        if not 0 <= af <= 15:
            raise _err(src, "uart.af", f"alternate function must be 0..15, got {af}")
        d["AIOT_UART_AF"] = f"{af}u"
    return d


def _stm32_clock(clk: dict[str, Any], s: _Stm32Series, cpu_hz: int, src: Path, d: dict[str, str]) -> tuple[int, int]:
    """Check the PLL set-up against the series limits; fill ``d``; return (APB1, APB2) Hz."""
    source = str(clk.get("source", "hsi")).lower()
    if source not in _CLOCK_SOURCES:
        raise _err(src, "clock.source", f"unknown source {source!r}", hint=f"one of: {', '.join(_CLOCK_SOURCES)}")
    f_in = _HSI_HZ if source == "hsi" else _int(clk, "hse_hz", src, "clock.")
    pll = clk.get("pll")
    if not isinstance(pll, dict):
        raise _err(src, "clock.pll", "missing", hint="e.g. pll = { m = 4, n = 180, p = 2, q = 8 }")
    m = _int(pll, "m", src, "clock.pll.")
    n = _int(pll, "n", src, "clock.pll.")
    for key, value, (lo, hi) in (("m", m, s.pll_m), ("n", n, s.pll_n)):
        if not lo <= value <= hi:
            raise _err(src, f"clock.pll.{key}", f"{value} is outside {lo}..{hi} ({s.manual})")
    # The system clock comes from the P output on F4/F7 and the R output on the G0.
    out_key = "r" if s.name == "g0" else "p"
    div = _int(pll, out_key, src, "clock.pll.")
    if div not in s.pll_div:
        raise _err(src, f"clock.pll.{out_key}", f"{div} is not one of {s.pll_div} ({s.manual})")
    vco_in, vco_out = f_in / m, f_in / m * n
    if not s.vco_in[0] <= vco_in <= s.vco_in[1]:
        raise _err(src, "clock.pll.m", f"VCO input {vco_in / 1e6:g} MHz is outside "
                   f"{s.vco_in[0] / 1e6:g}..{s.vco_in[1] / 1e6:g} MHz ({s.manual})")
    if not s.vco_out[0] <= vco_out <= s.vco_out[1]:
        raise _err(src, "clock.pll.n", f"VCO output {vco_out / 1e6:g} MHz is outside "
                   f"{s.vco_out[0] / 1e6:g}..{s.vco_out[1] / 1e6:g} MHz ({s.manual})")
    sysclk = int(f_in // m * n // div)
    ahb = _int(clk, "ahb_div", src, "clock.", default=1)
    if ahb not in _AHB_DIVS:
        raise _err(src, "clock.ahb_div", f"{ahb} is not one of {_AHB_DIVS}")
    hclk = sysclk // ahb
    if hclk != cpu_hz:
        raise _err(src, "clock.pll", f"gives HCLK {hclk} Hz but cpu_hz is {cpu_hz}",
                   hint="the PLL and ahb_div must produce exactly cpu_hz (SysTick and the UART use it)")
    if sysclk > s.max_sysclk:
        raise _err(src, "clock.pll", f"SYSCLK {sysclk / 1e6:g} MHz exceeds the {s.name.upper()} maximum "
                   f"{s.max_sysclk / 1e6:g} MHz")
    apb1 = _int(clk, "apb1_div", src, "clock.", default=1)
    apb2 = _int(clk, "apb2_div", src, "clock.", default=apb1 if s.name == "g0" else 1)
    for key, div_, lim in (("apb1_div", apb1, s.max_apb[0]), ("apb2_div", apb2, s.max_apb[1])):
        if div_ not in _APB_DIVS:
            raise _err(src, f"clock.{key}", f"{div_} is not one of {_APB_DIVS}")
        if hclk // div_ > lim:
            raise _err(src, f"clock.{key}", f"APB clock {hclk // div_ / 1e6:g} MHz exceeds {lim / 1e6:g} MHz")
    if s.name == "g0" and apb2 != apb1:
        raise _err(src, "clock.apb2_div", "the G0 has a single APB bus: leave apb2_div out")
    latency = _int(clk, "flash_latency", src, "clock.")
    need = min_flash_latency(s.name, hclk)
    if latency < need or latency > 15:
        raise _err(src, "clock.flash_latency", f"{latency} wait states; {hclk / 1e6:g} MHz needs at least {need} "
                   f"({s.manual}, 2.7-3.6 V)")
    overdrive = bool(clk.get("overdrive", False))
    if s.overdrive_above is None and overdrive:
        raise _err(src, "clock.overdrive", f"the {s.name.upper()} has no over-drive mode")
    if s.overdrive_above is not None and hclk > s.overdrive_above and not overdrive:
        raise _err(src, "clock.overdrive", f"HCLK {hclk / 1e6:g} MHz needs over-drive (above "
                   f"{s.overdrive_above / 1e6:g} MHz)", hint="add overdrive = true")
    q = _int(pll, "q", src, "clock.pll.", default=4)  # 48 MHz domain: unused by the toolkit
    r = _int(pll, "r", src, "clock.pll.", default=2)
    d.update({
        "AIOT_CLOCK_SRC": str(_CLOCK_SOURCES[source]),
        "AIOT_PLL_M": f"{m}u", "AIOT_PLL_N": f"{n}u", "AIOT_PLL_P": f"{_int(pll, 'p', src, 'clock.pll.', default=2)}u",
        "AIOT_PLL_Q": f"{q}u", "AIOT_PLL_R": f"{r}u",
        "AIOT_AHB_DIV": f"{ahb}u", "AIOT_APB1_DIV": f"{apb1}u", "AIOT_APB2_DIV": f"{apb2}u",
        "AIOT_FLASH_LATENCY": f"{latency}u", "AIOT_OVERDRIVE": "1" if overdrive else "0",
    })
    if source != "hsi":
        d["AIOT_CLOCK_HSE_HZ"] = f"{f_in}u"
    return hclk // apb1, hclk // apb2


# ---------------------------------------------------------------------------- nRF5

# UART BAUDRATE register values: nRF51 RM v3.0 §29.10, nRF52840 PS v1.7 §6.34.10 (UART,
# legacy, same values except 921600 which nRF52 corrects).
_NRF_BAUD = {
    9600: 0x00275000, 19200: 0x004EA000, 38400: 0x009D5000, 57600: 0x00EBF000,
    115200: 0x01D7E000, 230400: 0x03AFB000, 460800: 0x075F7000, 1_000_000: 0x10000000,
}
_NRF_SERIES = {"nrf51": 32, "nrf52": 48}  # GPIO pins (nRF52840: P0.00-P0.31, P1.00-P1.15)


def nrf5_defines(raw: dict[str, Any], baud: int, src: Path) -> dict[str, str]:
    series = _series(raw, "nrf5", _NRF_SERIES, src)
    if baud not in _NRF_BAUD:
        raise _err(src, "uart.baud", f"the nRF UART cannot do {baud} baud",
                   hint=f"one of: {', '.join(map(str, _NRF_BAUD))}")
    uart = raw["uart"]
    d = {f"AIOT_NRF5_{series[3:]}": "1", "AIOT_NRF_BAUDRATE": f"0x{_NRF_BAUD[baud]:08X}u"}
    for role in ("tx", "rx"):
        pin = _int(uart, f"{role}_pin", src, "uart.")
        if not 0 <= pin < _NRF_SERIES[series]:
            raise _err(src, f"uart.{role}_pin", f"{pin} is not a GPIO of the {series} "
                       f"(0..{_NRF_SERIES[series] - 1}; P1.x is 32 + x)")
        d[f"AIOT_UART_{role.upper()}_PIN"] = f"{pin}u"
    clk = raw.get("clock", {})
    hfxo = str(clk.get("source", "hfint")).lower()
    if hfxo not in ("hfint", "hfxo"):
        raise _err(src, "clock.source", f"unknown source {hfxo!r}", hint="hfint (internal RC) or hfxo (crystal)")
    d["AIOT_CLOCK_SETUP"] = "1" if hfxo == "hfxo" else "0"
    return d


# ---------------------------------------------------------------------------- dispatch

def family_defines(family: str, raw: dict[str, Any], cpu_hz: int, baud: int, core: str, src: Path) -> dict[str, str]:
    """The family-specific defines of a board (validated); {} for families with none."""
    d: dict[str, str] = {}
    if family == "stm32":
        d = stm32_defines(raw, cpu_hz, baud, src)
        if core == "cortex-m7":
            d["AIOT_CACHE_ENABLE"] = "1"
    elif family == "nrf5":
        d = nrf5_defines(raw, baud, src)
    return {**d, **rx_irq_define(family, raw, src)}


#: External interrupts the shared Cortex-M vector table has room for (startup.c AIOT_MAX_IRQ).
MAX_IRQ = 64
#: Families whose console driver has an interrupt-driven receive path.
RX_IRQ_FAMILIES = ("cmsdk", "stm32")


def rx_irq_define(family: str, raw: dict[str, Any], src: Path) -> dict[str, str]:
    """``uart.rx_irq`` (the NVIC line of the console UART's receive interrupt) makes receive
    interrupt driven, with the core asleep (WFI) between requests; without it the port
    polls, which also works but keeps the core busy."""
    irq = raw.get("uart", {}).get("rx_irq")
    if irq is None:
        return {}
    if family not in RX_IRQ_FAMILIES:
        raise _err(src, "uart.rx_irq", f"the {family} port has no interrupt-driven receive yet",
                   hint=f"drop the key (the port polls); supported on: {', '.join(RX_IRQ_FAMILIES)}")
    if isinstance(irq, bool) or not isinstance(irq, int) or not 0 <= irq < MAX_IRQ:
        raise _err(src, "uart.rx_irq", f"{irq!r} is not an interrupt line 0..{MAX_IRQ - 1}",
                   hint="the receive IRQ number from the board's interrupt table (e.g. 0 for MPS2 UART0)")
    return {"AIOT_UART_RX_IRQ": str(irq)}
