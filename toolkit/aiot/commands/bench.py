"""`aiot bench`: size and speed of generated models on an emulated board."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from aiot.commands import Command, json_option, write_json, wrote

BUILTIN = ("ad-mlperf", "ad-small", "conv1d", "conv-ae", "conv1d-ae")


@click.command("bench", cls=Command)
@click.option("--board", "-b", default="mps2-an386", show_default=True, help="Emulated board (see `aiot boards`).")
@click.option("--model", "-m", "models", multiple=True,
              help=f"Built-in model ({', '.join(BUILTIN)}) or a path to an int8 .tflite; repeatable "
                   "[default: all built-in models].")
@json_option("the results")
@click.option("--runs", default=16, show_default=True, help="Inferences averaged per model (>= 10).")
@click.option("--opt", default="-O2", show_default=True, type=click.Choice(["-O2", "-O3", "-Os"]),
              help="gcc optimization level of the bench firmware (engine and generated model).")
@click.option("--optimize", type=click.Choice(["auto", "speed", "size"]), default="auto", show_default=True,
              help="Code generator mode: speed = dense/conv weights pre-widened to int16 (about 2x weight "
                   "flash, fastest on DSP cores); size = packed int8 weights; auto = speed on cores with the "
                   "DSP extension (M4/M7/M33), size on the others (M0/M3, where speed buys nothing).")
@click.option("--energy", is_flag=True,
              help="Also give time and energy per inference at --board's clock from its [power] figures "
                   "(instructions counted on the emulated board with the same core).")
@click.option("--period", default="1s", show_default=True,
              help="With --energy: one inference every PERIOD (e.g. 1s, 250ms, 10min) for the average current.")
@click.option("--battery-mah", type=float, default=None, help="With --energy: battery capacity for the life estimate.")
def command(board: str, models: tuple[str, ...], json_out: Path | None, runs: int, opt: str,
            optimize: str = "auto", energy: bool = False, period: str = "1s",
            battery_mah: float | None = None) -> None:
    """Build each model into a bench firmware (under build/bench/BOARD/MODEL of the current
    folder), run it in QEMU with -icount shift=0 and
    report flash (total, engine code, weights), RAM (total, arena), instructions per
    inference and per MAC, per-layer instructions, and whether every output byte matched
    tflite-micro on the same inputs.

    \b
    Examples:
      aiot bench                                   # all built-in models on mps2-an386
      aiot bench --board mps2-an385 --model ad-small --json out/bench.json
      aiot bench --json - > bench.json                # the table on stderr, the JSON on stdout
      aiot bench --model build/pkg/model.tflite
      aiot bench --optimize size                   # packed int8 weights (half the weight flash)
      aiot bench --board nrf52840-dk --energy --period 1s --battery-mah 1000
    """
    from aiot import paths
    from aiot.outputs import FolderInUse, output_folder
    from aiot.target.bench import bench_model
    from aiot.target.boards import get_board
    from aiot.errors import ToolkitError
    from aiot.progress import step

    if runs < 10:
        raise ToolkitError(f"--runs {runs} is too few for a stable average", hint="use --runs 10 or more")
    from aiot.target.firmware import DoesNotFit

    target = get_board(board)
    b = target
    period_s = None
    if energy:
        from aiot.target.bench import board_power, measuring_board

        period_s = _seconds(period)
        board_power(target)  # refuse before any build when the board has no power figures
        b = measuring_board(target)
    say = functools.partial(click.echo, err=json_out == "-")  # stdout carries the JSON then
    if optimize == "auto":
        optimize = "speed" if b.has_dsp else "size"
    from aiot.target.bench import comparison_table, tflm_reference

    results, skipped, table_rows = [], [], []
    for m in models or BUILTIN:
        p = Path(m)
        if p.suffix == ".tflite" or p.exists():
            if not p.is_file():
                raise ToolkitError(f"model file not found: {p}")
            tflite, name = p, p.stem
        elif m in BUILTIN:
            from aiot.target.bench import load_recipes

            tflite, name = load_recipes().build_model(m, paths.cache_dir() / "recipes"), m
        else:
            raise ToolkitError(f"unknown model '{m}'", hint=f"a built-in ({', '.join(BUILTIN)}) or a .tflite path")
        ref = tflm_reference(Path(tflite))
        try:
            # each model's C and firmware appear together when its bench is done; one bench at a
            # time writes them (a second one would rebuild the images the first is running)
            with output_folder(paths.build_dir() / "bench" / b.name / name, "aiot bench") as run, \
                    step(f"bench {name} on {b.name} (--optimize {optimize})"):
                r = bench_model(b, Path(tflite), name.replace("-", "_"), run.folder, runs=runs, opt=opt,
                                optimize=optimize)
                for record in ("fw/build.json", "fw-profile/build.json"):
                    if (run.folder / record).is_file():
                        run.relocate(record)  # they name the images where they will be
        except DoesNotFit as e:  # a model larger than the board is a result, not a crash
            say(f"{name:<10} does not fit: {e.message}")
            skipped.append({"model": name, "fits": False, "region": e.region, "overflow_bytes": e.overflow,
                            "error": e.message})
            table_rows.append((name, ref, None, "does not fit"))
            continue
        except FolderInUse:  # not this model's result: another bench is writing its folder
            raise
        except ToolkitError as e:  # one model we cannot compile or run is a result too: go on
            say(f"{name:<10} not run: {e.message}" + (f" (to fix: {e.hint})" if e.hint else ""))
            skipped.append({"model": name, "fits": None, "error": e.message, "hint": e.hint})
            table_rows.append((name, ref, None, e.message.splitlines()[0][:120]))
            continue
        table_rows.append((name, ref, r, ""))
        r.model = name
        results.append(r)
        say(f"{name:<10} flash {r.flash_bytes:>7,} B (engine {r.engine_code_bytes:,}, weights {r.weights_bytes:,})"
                   f"  RAM {r.ram_bytes:>6,} B (arena {r.arena_bytes:,}"
                   + (f"; TFLM {r.tflm_arena_bytes:,} + {r.tflm_arena_total_bytes - r.tflm_arena_bytes:,} run-time"
                      if r.tflm_arena_bytes is not None else "") + ")"
                   f"  {r.instructions_per_inference:>10,.0f} instr/inf  {r.instructions_per_mac:.3f} instr/MAC"
                   f"  bit-exact: {'yes' if r.bit_exact else 'NO'}")
        for layer in r.layers:
            say(f"    layer {layer.index:>2} {layer.name:<28} {layer.instructions:>10,.0f} instr")
        if energy:
            from aiot.target.bench import energy_figures

            figs = energy_figures(target, r.instructions_per_inference, period_s, battery_mah)
            say(f"  instructions counted on {b.name} ({b.core}); clock and power figures of {target.name}")
            for line in figs.lines():
                say("  " + line)
    if any(ref is not None for _, ref, _, _ in table_rows) or len(table_rows) > 1:
        say(f"\ninstructions per inference on {b.name} (QEMU -icount shift=0, --optimize {optimize}, {opt}); "
            "TFLM columns: models/tflm_reference.json")
        say(comparison_table(table_rows))
    if results:
        wrote(paths.build_dir() / "bench" / b.name, "a firmware per model", err=json_out == "-")
    write_json(json_out, {"board": b.name, "core": b.core, "opt": opt, "optimize": optimize,
                          "results": [r.to_json() for r in results], "does_not_fit": skipped})
    if not all(r.bit_exact for r in results):
        raise ToolkitError("some model's outputs differ from tflite-micro (bit_exact: false above)", exit_code=1)


def _seconds(text: str) -> float:
    """'1s', '250ms', '10min', '2h' or a plain number of seconds."""
    from aiot.errors import ToolkitError

    units = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    t = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit):
            t, scale = t[: -len(unit)], units[unit]
            break
    else:
        scale = 1.0
    try:
        value = float(t) * scale
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ToolkitError(f"--period {text!r} is not a duration", hint="e.g. --period 1s, 250ms, 10min or 2h")
    return value
