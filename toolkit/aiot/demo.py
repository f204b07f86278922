"""`aiot demo`: the whole pipeline on synthetic pump data, on an emulated board.

synthetic CSV -> trained autoencoder -> full-int8 .tflite -> generated C -> firmware
-> QEMU, with every output byte checked against tflite-micro. Everything lands in one
folder (default build/demo) so each intermediate can be inspected or re-run by hand."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aiot import paths
from aiot.target.boards import get_board
from aiot.errors import ToolkitError
from aiot.progress import step


@dataclass
class DemoResult:
    board: str
    windows_checked: int
    mismatches: int
    instructions_per_inference: float | None
    instructions_ci95: float | None  # half-width of its 95% interval (SysTick resolves 40 instructions)
    flash_bytes: int
    ram_bytes: int
    anomalous_windows: int
    labelled_fault_windows: int
    detected_fault_windows: int
    false_alarm_windows: int
    seconds: float


def run_demo(board_name: str = "mps2-an386", out: Path | None = None, seed: int = 0, hours: float = 4.0,
             epochs: int = 30, echo=print) -> DemoResult:
    from aiot.codegen import generate
    from aiot.data import format_time
    from aiot.data.runs import runs
    from aiot.model.features import dequantize
    from aiot.target.firmware import build
    from aiot.device.hil import open_device
    from aiot.model.package import load_package
    from aiot.device.parity import check_parity
    from aiot.model.quantize import quantize
    from aiot.data.synth import write_csv
    from aiot.model.train import train

    t0 = time.monotonic()
    board = get_board(board_name)
    if not board.emulated:
        raise ToolkitError(f"the demo runs on an emulated board; {board.name} is real hardware",
                           hint="use --board mps2-an386 (default), or see `aiot boards`")
    out = Path(out or paths.build_dir() / "demo")
    out.mkdir(parents=True, exist_ok=True)
    csv_path, pkg_dir = out / "pump.csv", out / "pkg"

    with step(f"1/6 synthetic pump data ({hours:g} h at 1 Hz, 4 sensors, labelled faults) -> {csv_path}"):
        ds = write_csv(csv_path, seed=seed, hours=hours)
    echo(f"    {ds.series.rows} rows; train on the first {ds.train_rows} (normal); incidents: "
         + ", ".join(f"{i.name} rows {i.start_row}-{i.stop_row}" for i in ds.incidents))

    with step("2/6 training the autoencoder (Keras, fixed seed)"):
        tr = train(csv_path, pkg_dir, epochs=epochs, seed=seed, train_rows=ds.train_rows)
    echo("    " + tr.summary().replace("\n", "\n    "))

    with step("3/6 quantizing to full int8 and comparing with the float model"):
        qr = quantize(pkg_dir)
    echo("    " + qr.summary().replace("\n", "\n    "))

    with step("4/6 generating C (weights, int8 kernels, static arena)"):
        cg = generate(pkg_dir / "model.tflite", pkg_dir / "c", name=load_package(pkg_dir).name)
    echo(f"    {len(cg.layers)} layers ({', '.join(cg.layers)}), {cg.macs:,} MACs, weights {cg.weights_bytes:,} B, "
         f"arena {cg.arena_bytes:,} B")

    with step(f"5/6 building firmware for {board.name} ({board.core})"):
        fw = build(board, out / "fw" / board.name, pkg_dir / "c")
    echo(fw.size.table())

    pkg = load_package(pkg_dir)
    vec = pkg.vectors()
    x = vec["x_int8"]
    with step(f"6/6 booting {board.name} in QEMU, streaming {len(x)} windows over the UART, checking every byte"):
        with open_device(board=board.name, elf=fw.elf, transport="qemu") as dev:
            info = dev.info()
            rep = check_parity(dev, board, pkg.tflite_bytes(), x, label="windows")
            dev.exit(0)
    if info.model_hash is not None and int(info.model_hash) != int(cg.hash):
        raise ToolkitError(f"the device runs model hash {info.model_hash:#010x}, expected {cg.hash:#010x}")

    # Which windows the device scored as anomalous (its own outputs, dequantized).
    m = pkg.manifest["model"]
    recon = dequantize(rep.outputs, m["output_scale"], m["output_zero_point"])
    # Same score definition as the package (train/quantize): float features vs the
    # device's dequantized reconstruction.
    scores = ((vec["x"].reshape(recon.shape) - recon) ** 2).mean(axis=1)
    flagged = scores > pkg.threshold
    labels = vec["labels"].astype(bool) if "labels" in vec else np.zeros(len(x), bool)
    ts = vec["timestamps"] if "timestamps" in vec else np.arange(len(x), dtype=float)

    res = DemoResult(
        board=board.name, windows_checked=rep.windows, mismatches=rep.mismatched_windows,
        instructions_per_inference=rep.instructions_per_inference, instructions_ci95=rep.instructions_ci95,
        flash_bytes=fw.size.flash_total, ram_bytes=fw.size.ram_total, anomalous_windows=int(flagged.sum()),
        labelled_fault_windows=int(labels.sum()), detected_fault_windows=int((flagged & labels).sum()),
        false_alarm_windows=int((flagged & ~labels).sum()), seconds=time.monotonic() - t0,
    )
    (out / "summary.json").write_text(json.dumps(res.__dict__, indent=2))

    echo("")
    echo(f"Summary ({board.name}, {board.core})")
    echo(f"  windows checked           {res.windows_checked}")
    echo(f"  mismatches vs tflite-micro {res.mismatches}  ({rep.mismatched_bytes} bytes)")
    echo(f"  instructions / inference  {rep.instructions_text()}  (QEMU -icount shift=0)")
    echo(f"  flash                     {res.flash_bytes:,} B  (engine code {fw.size.engine_code:,}, "
         f"weights {fw.size.weights:,})")
    echo(f"  RAM                       {res.ram_bytes:,} B  (arena {fw.size.arena:,}, stack {fw.size.stack:,})")
    echo(f"  anomalous windows         {res.anomalous_windows} of {len(x)} (threshold {pkg.threshold:.4g}); "
         f"labelled fault windows {res.labelled_fault_windows}, of which flagged {res.detected_fault_windows}; "
         f"flagged outside faults {res.false_alarm_windows}")
    for a, last in runs(flagged)[:12]:
        tag = "fault" if labels[a : last + 1].any() else "no label"
        echo(f"    flagged {format_time(float(ts[a]))} .. {format_time(float(ts[last]))}  ({last - a + 1} window{'s' if last > a else ''}, {tag})")
    echo(f"  total time                {res.seconds:.0f} s")
    if rep.mismatched_bytes:
        raise ToolkitError(
            f"{rep.mismatched_windows} of {rep.windows} windows differ from tflite-micro "
            f"(first at window {rep.first_mismatch}); the generated engine is not bit-exact",
            hint="please report this with the files in " + str(out), exit_code=1)
    return res
