"""`aiot bench`: flash, RAM and instructions per inference of generated models, measured
in QEMU under `-icount shift=0` (one instruction per nanosecond of virtual time, so the
SysTick tick counts convert exactly to instruction counts), with bit-exactness checked
against tflite-micro on the same inputs.

Two firmwares are built per model: a plain one (sizes and total instruction counts, no
measurement overhead inside the model) and one with -DAIOT_PROFILE for per-layer
figures."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from aiot.target.boards import Board
from aiot.errors import ToolkitError
from aiot.device.parity import instructions_from_ticks

BENCH_SEED = 0x2545F491  # must match firmware/src/bench/main.c
RUNS = 16


def load_recipes():
    """models/recipes.py (model recipes live beside the golden artifacts, not in the package)."""
    import importlib.util

    from aiot.paths import MODELS

    spec = importlib.util.spec_from_file_location("aiot_model_recipes", MODELS / "recipes.py")
    if spec is None or spec.loader is None:
        raise ToolkitError(f"model recipes not found at {MODELS / 'recipes.py'}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_inputs(n_inputs: int, input_bytes: int, seed: int = BENCH_SEED) -> np.ndarray:
    """The pseudo-random int8 inputs the bench firmware generates (same 32-bit LCG)."""
    out = np.empty((n_inputs, input_bytes), dtype=np.int8)
    state = seed
    for r in range(n_inputs):
        for i in range(input_bytes):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            out[r, i] = ((state >> 24) ^ 0x80) - 0x80  # top byte as a signed int8
    return out


def bench_float_inputs(n_inputs: int, size: int, seed: int = BENCH_SEED) -> np.ndarray:
    """The float32 inputs the bench firmware gives a float-input model: the same LCG, its
    top 16 bits as a signed integer / 4096 (exact in float32, -8 to 8)."""
    out = np.empty((n_inputs, size), dtype=np.float32)
    state = seed
    for r in range(n_inputs):
        for i in range(size):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            out[r, i] = np.float32((((state >> 16) ^ 0x8000) - 0x8000) / 4096.0)
    return out


@dataclass
class LayerFigure:
    index: int
    name: str
    instructions: float


@dataclass
class BenchResult:
    model: str
    board: str
    core: str
    flash_bytes: int
    engine_code_bytes: int
    weights_bytes: int
    ram_bytes: int
    arena_bytes: int
    tflm_arena_bytes: int | None        # TFLM's tensor arena for the same model
    tflm_arena_total_bytes: int | None  # ... plus its run-time structures (what a TFLM user must allocate)
    instructions_per_inference: float
    macs: int
    instructions_per_mac: float
    bit_exact: bool
    runs: int
    optimize: str = ""
    layers: list[LayerFigure] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


_RUN = re.compile(r"^run (\d+) ticks (\d+) out ([0-9a-f]*)$")
_LAYER = re.compile(r"^layer (\d+) (\S+) (\d+)$")


def parse_bench_output(text: str) -> tuple[list[int], list[np.ndarray], dict[tuple[int, str], list[int]]]:
    """(ticks per run, output bytes per run, {(layer, name): ticks per run}) from the UART text."""
    ticks, outs, layers = [], [], {}
    lines = text.splitlines()
    if not any(line.startswith("bench ") for line in lines):
        raise ToolkitError("the bench firmware printed no header", hint=f"UART output was: {text[:300]!r}")
    for line in lines:
        m = _RUN.match(line.strip())
        if m:
            ticks.append(int(m.group(2)))
            outs.append(np.frombuffer(bytes.fromhex(m.group(3)), dtype=np.int8))
            continue
        m = _LAYER.match(line.strip())
        if m:
            layers.setdefault((int(m.group(1)), m.group(2)), []).append(int(m.group(3)))
        elif line.startswith("error"):
            raise ToolkitError(f"the bench firmware reported: {line}")
    if "done" not in lines:
        raise ToolkitError("the bench firmware did not finish", hint=f"last output: {text[-300:]!r}")
    return ticks, outs, layers


def bench_model(board: Board, tflite: Path, name: str, out_dir: Path, runs: int = RUNS,
                opt: str = "-O2", optimize: str | None = None, profile: bool = True) -> BenchResult:
    """Build, run and check one model. ``optimize`` is the code generator's mode (default:
    its default); ``profile=False`` skips the per-layer firmware (faster, no layer figures)."""
    from aiot.codegen import DEFAULT_OPTIMIZE, generate
    from aiot.target.firmware import build
    from aiot.target.qemu import run_to_exit
    from aiot.model.reference import TflmReference

    if not board.emulated or not board.systick_hz:
        raise ToolkitError(f"aiot bench measures in QEMU; {board.name} is not an emulated board",
                           hint="pick one of the QEMU boards from `aiot boards`")
    cg = generate(tflite, out_dir / "c", name=name, **({"optimize": optimize} if optimize else {}))
    defs = [f"AIOT_BENCH_RUNS={runs}"]
    plain = build(board, out_dir / "fw", out_dir / "c", app="bench", opt=opt, defines=defs)

    code, text, err = run_to_exit(board, plain.elf, timeout=300)
    if code != 0:
        raise ToolkitError(f"bench firmware for {name} on {board.name} exited with {code}", hint=err[-400:])
    ticks, outs, _ = parse_bench_output(text)
    pouts, layer_ticks = list(outs), {}
    if profile:
        prof = build(board, out_dir / "fw-profile", out_dir / "c", app="bench", opt=opt,
                     defines=[*defs, "AIOT_PROFILE"])
        code, ptext, err = run_to_exit(board, prof.elf, timeout=300)
        if code != 0:
            raise ToolkitError(f"profiling firmware for {name} on {board.name} exited with {code}", hint=err[-400:])
        _, pouts, layer_ticks = parse_bench_output(ptext)

    ref = TflmReference(tflite)
    # a float-interface model's runs go through its float entry points (output bytes: float32)
    # several inputs: one LCG stream across them in the .tflite's order; the outputs, in
    # order, on one line
    if cg.float_input:
        xs = bench_float_inputs(runs, sum(ref.input_sizes))
    elif cg.input_dtype == "int16":  # the firmware fills the input bytes; a 16x8 model reads them as little-endian int16
        xs = bench_inputs(runs, cg.input_bytes).view("<i2")
    else:
        xs = bench_inputs(runs, sum(ref.input_sizes))
    want = [ref.invoke(x).reshape(-1).view(np.int8) for x in xs]
    exact = len(outs) == runs and all(np.array_equal(o, w) for o, w in zip(outs, want)) and \
        all(np.array_equal(o, w) for o, w in zip(pouts, want))

    ipi = instructions_from_ticks(board, float(np.mean(ticks)))
    layers = [LayerFigure(i, n, instructions_from_ticks(board, float(np.mean(t))) or 0.0)
              for (i, n), t in sorted(layer_ticks.items())]
    from aiot.model.reference import tflm_arena_usage

    tflm = tflm_arena_usage(tflite)  # head: TFLM's planned tensors (what our arena replaces)
    return BenchResult(
        model=name, board=board.name, core=board.core, flash_bytes=plain.size.flash_total,
        engine_code_bytes=plain.size.engine_code, weights_bytes=plain.size.weights,
        ram_bytes=plain.size.ram_total, arena_bytes=cg.arena_bytes, tflm_arena_bytes=tflm["head"],
        tflm_arena_total_bytes=tflm["total"],
        instructions_per_inference=round(ipi or 0.0, 1), macs=int(cg.macs),
        instructions_per_mac=round((ipi or 0.0) / max(int(cg.macs), 1), 3), bit_exact=bool(exact), runs=runs,
        optimize=optimize or DEFAULT_OPTIMIZE,
        layers=layers,
    )


def tflm_reference(tflite: Path) -> dict | None:
    """TFLM's instruction counts (reference kernels and CMSIS-NN) for this exact file, from
    models/tflm_reference.json (measured outside this repository, keyed by sha256), or None."""
    import hashlib
    import json

    from aiot.paths import MODELS

    table = MODELS / "tflm_reference.json"
    if not table.is_file():
        return None
    digest = hashlib.sha256(Path(tflite).read_bytes()).hexdigest()
    return json.loads(table.read_text())["models"].get(digest)


def comparison_table(rows: list[tuple[str, dict | None, "BenchResult | None", str]]) -> str:
    """Markdown table: per model its MACs, TFLM reference and CMSIS-NN instructions (when
    known), ours and ours / CMSIS-NN; a model we could not build or run says why."""
    out = ["| model | MACs | TFLM reference | TFLM + CMSIS-NN | aiot | aiot / CMSIS-NN | bit-exact |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, ref, r, problem in rows:
        fmt = lambda v: f"{v:,.0f}" if v is not None else "-"  # noqa: E731
        tref = fmt(ref["reference"]) if ref else "-"
        tcm = fmt(ref["cmsis_nn"]) if ref else "-"
        if r is None:
            out.append(f"| {name} | - | {tref} | {tcm} | not run: {problem} | - | - |")
            continue
        ratio = f"{r.instructions_per_inference / ref['cmsis_nn']:.2f}" if ref else "-"
        macs = ref["macs"] if ref else r.macs  # the reference's count: conv/dense MACs only
        out.append(f"| {name} | {macs:,} | {tref} | {tcm} | {r.instructions_per_inference:,.0f} | {ratio} | "
                   f"{'yes' if r.bit_exact else 'NO'} |")
    return "\n".join(out)


@dataclass
class EnergyFigures:
    """Time and energy of one inference at a board's clock, and battery life at a duty cycle."""
    board: str
    cpu_hz: int
    instructions: float
    seconds: float
    vdd: float
    active_ma: float
    sleep_ua: float
    sleep_mode: str
    verified: bool
    source: str
    energy_uj: float
    period_s: float
    average_ua: float
    battery_mah: float | None
    battery_hours: float | None

    def lines(self) -> list[str]:
        flag = "verified" if self.verified else "NOT verified"
        ms = self.seconds * 1e3
        out = [f"{self.board}: {self.instructions:,.0f} instructions at {self.cpu_hz / 1e6:g} MHz = {ms:.3f} ms per "
               "inference (assumes one instruction per cycle: no flash wait states, no stalls)",
               f"  energy per inference {self.energy_uj:.2f} uJ ({self.vdd:g} V x {self.active_ma:g} mA active; "
               f"power figures {flag}: {self.source})",
               f"  one inference every {self.period_s:g} s, {self.sleep_mode} between ({self.sleep_ua:g} uA): "
               f"average {self.average_ua:.2f} uA ({flag})"]
        if self.battery_hours is not None:
            out.append(f"  a {self.battery_mah:g} mAh battery lasts {self.battery_hours:,.0f} h "
                       f"= {self.battery_hours / 24 / 365:.2f} years (ideal capacity, no self-discharge; {flag})")
        return out


def board_power(board: Board) -> dict:
    """The [power] table of the board's TOML file, or a ToolkitError saying it is missing."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib

    raw = tomllib.loads(Path(board.source).read_text(encoding="utf-8")).get("power")
    need = ("vdd", "active_ma", "sleep_ua")
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), (int, float)) for k in need):
        raise ToolkitError(f"{board.source} has no [power] table with vdd, active_ma and sleep_ua",
                           hint="pick a board with power figures (nrf52840-dk, nucleo-f446re, nucleo-f767zi) "
                                "or add a [power] table (see docs/boards.md)")
    return raw


def energy_figures(board: Board, instructions: float, period_s: float,
                   battery_mah: float | None = None) -> EnergyFigures:
    """Instructions taken as cycles at board.cpu_hz; energy = vdd * active current * time;
    average current over a period = (active * t + sleep * (period - t)) / period."""
    power = board_power(board)
    seconds = instructions / board.cpu_hz
    if period_s <= seconds:
        raise ToolkitError(f"--period {period_s:g} s is shorter than one inference ({seconds * 1e3:.3f} ms)",
                           hint=f"use --period {max(seconds * 2, 0.001):.3g}s or longer")
    vdd, active_ma, sleep_ua = float(power["vdd"]), float(power["active_ma"]), float(power["sleep_ua"])
    energy_uj = vdd * active_ma * 1e-3 * seconds * 1e6
    average_ua = (active_ma * 1e3 * seconds + sleep_ua * (period_s - seconds)) / period_s
    hours = battery_mah * 1e3 / average_ua if battery_mah else None
    return EnergyFigures(board.name, board.cpu_hz, instructions, seconds, vdd, active_ma, sleep_ua,
                         str(power.get("sleep_mode", "sleep")), bool(power.get("verified", False)),
                         str(power.get("source", "board file")), energy_uj, period_s, average_ua, battery_mah, hours)


def measuring_board(board: Board) -> Board:
    """The board itself when QEMU runs it, else the emulated board with the same core."""
    from aiot.target.boards import list_boards

    if board.emulated and board.systick_hz:
        return board
    same = [b for b in list_boards() if b.emulated and b.systick_hz and b.core == board.core]
    if not same:
        raise ToolkitError(f"no emulated board has {board.name}'s core ({board.core}) to count its instructions",
                           hint="`aiot boards` lists the QEMU boards and their cores")
    return sorted(same, key=lambda b: b.name)[0]
